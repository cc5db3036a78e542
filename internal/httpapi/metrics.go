package httpapi

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the HTTP server's collectors. Labels are bounded: handler is a
// route name from the route table (or "notfound"), code an HTTP status code.
type metrics struct {
	requests *prometheus.CounterVec // handler, code
	// authFailures counts refused requests by reason (auth.go).
	authFailures *prometheus.CounterVec // reason
}

// newMetrics builds the collectors and registers them with reg (nil:
// none); tokens, when set, adds its load counters.
func newMetrics(reg prometheus.Registerer, tokens *TokenFile) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_http_requests_total",
			Help: "HTTP requests served, by route and status code.",
		}, []string{"handler", "code"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_http_auth_failures_total",
			Help: "HTTP requests refused: missing, malformed or invalid credentials (401), or denied by the authorizer (403).",
		}, []string{"reason"}),
	}
	for _, r := range []string{authMissing, authMalformed, authInvalid, authDenied} {
		m.authFailures.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.authFailures)
	if tokens != nil {
		loads := func(result string, n *atomic.Uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "shardcache_http_tokens_file_loads_total",
				Help:        "Reads of --http-tokens-file: ok took effect, error kept the tokens in force.",
				ConstLabels: prometheus.Labels{"result": result},
			}, func() float64 { return float64(n.Load()) })
		}
		reg.MustRegister(loads("ok", &tokens.loaded), loads("error", &tokens.failed))
	}
	return m
}

// NewRegistry returns the registry a process shares between all its components,
// with the Go runtime and process collectors already registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
