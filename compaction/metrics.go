package compaction

import "github.com/prometheus/client_golang/prometheus"

// metrics are the loop's collectors; labels are bounded (op: five values,
// result: ok or error).
type metrics struct {
	commands *prometheus.CounterVec
	pass     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_compaction_commands_total",
			Help: "Cleanup commands proposed by the compaction loop, by operation and result.",
		}, []string{"op", "result"}),
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shardcache_compaction_pass_duration_seconds",
			Help:    "Time of one pass of the compaction loop over every led partition.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.commands, m.pass} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) command(op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.commands.WithLabelValues(op, result).Inc()
}
