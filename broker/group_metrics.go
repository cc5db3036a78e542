package broker

// Group metrics. Backlog series are labelled by group, topic and partition;
// group names are chosen by users, so one scrape exports at most
// GroupConfig.MaxLagSeries of them (groups in name order, partitions in
// order) and reports how many it left out in
// shardcache_group_lag_series_dropped. A scrape reads memory only: the live
// backlog figures come from the background refresh of group_backlog.go.

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// groupMetrics are the coordinator's collectors.
type groupMetrics struct {
	commits    prometheus.Counter
	rebalances prometheus.Counter
	collector  *groupCollector
}

func newGroupMetrics(b *Broker, reg prometheus.Registerer) *groupMetrics {
	m := &groupMetrics{
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_group_offset_commits_total",
			Help: "Partition offsets committed through OffsetCommit.",
		}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_group_rebalances_total",
			Help: "Join barriers completed (each starts a new generation).",
		}),
		collector: &groupCollector{b: b},
	}
	if reg != nil {
		reg.MustRegister(m.commits, m.rebalances, m.collector)
	}
	return m
}

var (
	descGroups = prometheus.NewDesc("shardcache_group_groups",
		"Consumer groups this node coordinates, by state.", []string{"state"}, nil)
	descMembers = prometheus.NewDesc("shardcache_group_members",
		"Members of consumer groups this node coordinates (all groups).", nil, nil)
	descLag = prometheus.NewDesc("shardcache_group_lag_offsets",
		"High watermark minus the group's committed offset (minus the log start without a commit).",
		[]string{"group", "topic", "partition"}, nil)
	descBacklog = prometheus.NewDesc("shardcache_group_backlog_records",
		"Live records at or after the group's committed offset: what the group still has to read (counted in the background, at most the refresh interval old).",
		[]string{"group", "topic", "partition"}, nil)
	descDropped = prometheus.NewDesc("shardcache_group_lag_series_dropped",
		"Group partitions left out of this scrape's lag and backlog series by the series cap.", nil, nil)
)

// groupCollector computes group gauges at scrape time.
type groupCollector struct{ b *Broker }

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descGroups
	ch <- descMembers
	ch <- descLag
	ch <- descBacklog
	ch <- descDropped
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	if b.groups == nil {
		return
	}
	states := map[string]int{}
	for _, s := range []groupState{stateEmpty, statePreparingRebalance, stateCompletingRebalance, stateStable} {
		states[s.String()] = 0
	}
	members := 0
	series, dropped := 0, 0
	limit := b.groups.cfg.MaxLagSeries
	for _, s := range b.Groups() {
		states[s.State]++
		members += len(s.Members)
		for _, p := range s.Partitions {
			if p.HighWatermark < 0 {
				continue
			}
			if series >= limit {
				dropped++
				continue
			}
			series++
			part := strconv.Itoa(int(p.Partition))
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(p.Lag), s.Group, p.Topic, part)
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(p.LiveBacklog), s.Group, p.Topic, part)
		}
	}
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(descGroups, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(members))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.GaugeValue, float64(dropped))
}
