package raftfsm

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Raft layer's collectors. Group labels are bounded by
// Config.DataGroups; type labels by the command types.
type metrics struct {
	applyDuration *prometheus.HistogramVec
	applied       *prometheus.CounterVec
	leader        *prometheus.GaugeVec
	// pending and pendingBytes are the data-group proposals handed to Raft
	// and not finished (pending.go), read from the budget at each scrape: a
	// gauge set after each change could be left stale when two changes
	// raced (each reading the budget, the older read written last).
	pending      prometheus.GaugeFunc
	pendingBytes prometheus.GaugeFunc
	// refused counts node-to-node connections the Mux refused, by reason
	// (a fixed set: MuxConfig.OnRefused).
	refused *prometheus.CounterVec
	// idleLogTrims counts data groups whose log was trimmed at idle
	// (idletrim.go).
	idleLogTrims prometheus.Counter
}

// newMetrics builds the collectors, registered with reg when it is not nil;
// pending is the node's proposal budget, which the pending gauges read.
func newMetrics(reg prometheus.Registerer, pending *pendingBudget) (*metrics, error) {
	m := &metrics{
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shardcache_raft_apply_duration_seconds",
			Help:    "Time to apply one batch of committed Raft entries to the store.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}, []string{"raft_group"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_raft_commands_applied_total",
			Help: "Raft commands applied, by command type.",
		}, []string{"type"}),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shardcache_raft_leader",
			Help: "1 when this node leads the Raft group, else 0.",
		}, []string{"raft_group"}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shardcache_raft_pending_proposals",
			Help: "Data-group proposals handed to Raft and not yet applied or failed, including those whose caller timed out.",
		}, func() float64 { count, _ := pending.stats(); return float64(count) }),
		pendingBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shardcache_raft_pending_proposal_bytes",
			Help: "Bytes charged by pending data-group proposals (encoded size plus 4 KiB each), bounded by MaxPendingProposalBytes.",
		}, func() float64 { _, bytes := pending.stats(); return float64(bytes) }),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardcache_cluster_connections_refused_total",
			Help: "Node-to-node connections refused, by reason: tls_handshake (no or an invalid client certificate), tls_required, certificate_does_not_name_sender, cluster_id_mismatch, busy, ...",
		}, []string{"reason"}),
		idleLogTrims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_raft_idle_log_trims_total",
			Help: "Raft groups whose log was deleted up to a new snapshot because the store went quiet and this node is the group's only replica.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.applyDuration, m.applied, m.leader, m.pending, m.pendingBytes, m.refused, m.idleLogTrims} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) connRefused(reason string) { m.refused.WithLabelValues(reason).Inc() }

func groupLabel(g uint32) string { return strconv.FormatUint(uint64(g), 10) }

func (m *metrics) observeApply(g uint32, d time.Duration) {
	m.applyDuration.WithLabelValues(groupLabel(g)).Observe(d.Seconds())
}

func (m *metrics) commandApplied(t CommandType) {
	m.applied.WithLabelValues(t.String()).Inc()
}

func (m *metrics) setLeader(g uint32, leader bool) {
	v := 0.0
	if leader {
		v = 1
	}
	m.leader.WithLabelValues(groupLabel(g)).Set(v)
}
