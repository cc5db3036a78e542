// Package raftfsm is shardcache's replication layer: every write to a shard and
// every change of cluster metadata is a command in a hashicorp/raft log, applied
// by a deterministic state machine to the node's shard store.
//
// A Node runs a fixed pool of Raft groups over the node's store: group 0
// carries cluster metadata (topics, partition placement, producer id blocks,
// the cluster id) and groups 1..DataGroups carry the partitions placed on them.
// Each group's log and stable state live in the store's Raft log DB (LogStore,
// synced writes); its FSM applies a batch of committed entries in one batch of
// the state DB, which has no WAL, together with the group's applied index, so
// applying writes nothing twice and replay after a crash re-applies what the
// state DB had not flushed (logdb.go). Snapshots are logical (a flush of the
// state DB and a marker); a follower behind the leader's log receives a stream
// of the group's state from Pebble and ingests it atomically.
//
// Nodes form a cluster over one node-to-node port per node (transport.go):
// every group runs raft's NetworkTransport over it, and control RPCs (joining,
// forwarding metadata changes to the metadata leader) share it, in plain TCP or
// TLS with mutual authentication (transport_tls.go). Cluster
// metadata also holds the registered nodes and which nodes carry each data
// group (placement.go); each group's leader moves its Raft configuration
// toward that placement (membership.go).
//
// The write path, the key prefixes, the cluster's moving parts and what is not
// done yet are described in DESIGN.md (the whole system: docs/ARCHITECTURE.md).
//
// Concurrency: Node's methods are safe for concurrent use. TopicInfo values are
// copies owned by the caller. Decoded commands alias their input buffer.
package raftfsm
