// Package httpapi serves shardcache's HTTP port: Prometheus metrics, liveness and
// readiness probes, point lookups of live keys, the cluster view and node
// removal, and the status page.
//
// Endpoints:
//
//	GET  /metrics  Prometheus text exposition of the registry shared by every
//	               component (NewRegistry adds the Go and process collectors).
//	GET  /healthz  200 "ok" while the process serves HTTP.
//	GET  /readyz   200 "ready" once the node's Raft groups have leaders and have
//	               replayed their logs; 503 before that and during shutdown.
//	GET  /v1/topics/{topic}/keys/{key}       the live value of a key (lookup.go).
//	POST /v1/topics/{topic}/keys:batchGet    many keys in one request (lookup.go).
//	GET  /v1/status  node, Raft, topic, consumer group and rate figures as JSON
//	                 (status.go).
//	GET  /v1/cluster        every node and every Raft group, as this node and
//	                        the nodes it reaches within 500 ms see them (cluster.go).
//	GET  /v1/cluster/local  this node's own Raft groups; /v1/cluster asks it of
//	                        the other nodes.
//	DELETE /v1/cluster/nodes/{id}  remove a node that is gone for good.
//	GET  /           the status page, embedded from status/ (status.go).
//	GET  /debug/pprof/...  Go's runtime profiles (net/http/pprof), only with
//	                       Config.Pprof (the --pprof flag).
//
// HEAD is accepted wherever GET is. A known path with another method answers 405
// with an Allow header; an unknown path answers 404. Every error body is JSON:
// {"error": "...", "code": "..."} (lookups, cluster) or {"error": "..."}. A
// lookup this node cannot serve answers 421 and names the partition's leader
// (lookup.go).
//
// Authentication (auth.go, auth_tokens.go) is on with Config.Tokens (bearer
// tokens whose SHA-256 hashes a tokens file maps to principals) or
// Config.ClientCerts (a verified client certificate is User:<CN>). Then every
// endpoint but the probes (unless Config.ProbesNeedAuth) answers 401 without
// a principal, and Config.Authorizer decides the rest, 403 when it denies:
// lookups READ on the topic, the cluster view and the status page DESCRIBE
// on the cluster, node removal and the profiles ALTER on the cluster.
//
// The cluster endpoints read raftfsm.Node only; /v1/cluster's requests to other
// nodes are bounded in time (500 ms in all), size and concurrency, and
// /v1/cluster/local never asks another node.
//
// New routes are added to the route table in handler.go.
package httpapi
