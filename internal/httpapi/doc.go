// Package httpapi serves shardcache's HTTP port: Prometheus metrics, liveness and
// readiness probes, point lookups of live keys, and the status page.
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
//	GET  /v1/status  node, Raft, topic, group and rate figures as JSON (status.go).
//	GET  /           the status page, embedded from status/ (status.go).
//
// HEAD is accepted wherever GET is. A known path with another method answers 405
// with an Allow header; an unknown path answers 404. Every error body is JSON:
// {"error": "...", "code": "..."} (lookups) or {"error": "..."}.
//
// New routes are added to the route table in handler.go.
package httpapi
