// Package broker serves the Kafka wire protocol over shardcache's Raft layer
// (raftfsm) and shard store (shardstore), so stock Kafka clients use it as
// their Kafka.
//
// # Request path
//
//	listener (Broker.Serve)  accept (up to MaxConnections), TCP no-delay,
//	                         one conn per socket
//	  -> conn (conn.go)      reader goroutine: 4-byte size, checked against
//	                         Config.MaxRequestBytes before any allocation;
//	                         frame bytes charged to the memory budget
//	                         (budget.go) as they arrive
//	  -> frame (frame.go)    header v1/v2, registry lookup, version check,
//	                         body walked (walk.go) and its decoded size
//	                         charged, then decoded by kmsg (pure: fuzzed
//	                         without a server)
//	  -> registry            registry.go: api key -> versions and handler
//	  -> handler             NN_api_name.go: validate, call raftfsm/shardstore,
//	                         map errors to Kafka codes (errors.go)
//	  -> conn                processor writes the response, in request order;
//	                         a produce's successor starts once its proposals
//	                         are in Raft's queues (pipelined, up to 5)
//
// Writes (produce, topic changes, configs) go through raftfsm.Node and are
// answered once Raft has committed and applied them; reads (fetch, list
// offsets) read shardstore.Store directly.
//
// # One file per API key
//
// Each supported API lives in broker/NN_api_name.go, NN its zero-padded key,
// opening with its served version range, behavior and version notes, and
// registering itself from init. The registry drives both dispatch and the
// ApiVersions answer, so the versions advertised are exactly the versions
// served, and the folder listing is the list of supported APIs.
//
// # Guard rails
//
// Bad input never crashes the broker or affects another connection: a frame
// size out of range, an unknown api key, a version outside the served range
// (ApiVersions above its maximum excepted: KIP-511), a body whose lengths do
// not fit its bytes or that would decode to more than the memory budget
// allows, a body that does not parse, a handler error or a handler panic each
// close only that connection, logged at Warn with the remote address and api
// key. Responses carry Kafka error codes, never Go error strings; unexpected
// errors are logged and answered UNKNOWN_SERVER_ERROR.
//
// # Memory and time
//
// Config.MaxInflightBytes is one budget that every connection shares,
// charged before memory is used: frames as they arrive and what they decode
// to, produce batches before they are decompressed (each held until its
// proposal ends), fetch responses while they are built, responses until they
// are written. When it is full, connections stop being read: TCP pushes back
// on clients. Connections are capped (MaxConnections) and closed when idle
// (ConnectionsMaxIdle), when a request arrives too slowly
// (RequestReadTimeout) or when a response stays unread (WriteTimeout).
// DESIGN.md's "Memory budget" follows the charges.
//
// # Lifecycle
//
// New builds a Broker, Serve accepts on a listener until Close, and Close
// stops accepting, lets in-flight requests finish until its context ends,
// then closes every connection and waits for every goroutine the broker
// started.
package broker
