package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the HTTP server's collectors. Labels are bounded: handler is a
// route name from the route table (or "notfound"), code an HTTP status code.
type metrics struct {
	requests *prometheus.CounterVec // handler, code
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_http_requests_total",
			Help: "HTTP requests served, by route and status code.",
		}, []string{"handler", "code"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests)
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
