// Package httpapi serves shardcache's HTTP port: Prometheus metrics, liveness and
// readiness probes, and (later) point lookups of live keys and a status page.
//
// Endpoints:
//
//	GET /metrics  Prometheus text exposition of the registry shared by every
//	              component (NewRegistry adds the Go and process collectors).
//	GET /healthz  200 "ok" while the process serves HTTP.
//	GET /readyz   200 "ready" once the node's Raft groups have leaders and have
//	              replayed their logs; 503 before that and during shutdown.
//
// HEAD is accepted wherever GET is. A known path with another method answers 405
// with an Allow header; an unknown path answers 404. Every error body is JSON:
// {"error": "..."}.
//
// New routes are added to the route table in handler.go; the lookup API
// (GET /v1/topics/{topic}/keys/{key}) and the status page belong here.
package httpapi
