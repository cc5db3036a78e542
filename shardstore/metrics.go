package shardstore

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors. Per-shard gauges are read from
// the in-memory counters at scrape time (liveCollector), so the write path only
// bumps two counters per commit.
type metrics struct {
	reg      prometheus.Registerer
	appended prometheus.Counter
	replaced prometheus.Counter
	keyCache prometheus.GaugeFunc
	filter   prometheus.GaugeFunc
	reads    prometheus.CounterFunc
	idle     prometheus.CounterFunc
	live     *liveCollector
	pebble   *pebbleCollector
}

func newMetrics(s *Store, reg prometheus.Registerer) *metrics {
	return &metrics{
		reg: reg,
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_shardstore_appended_records_total",
			Help: "Records appended to shards (offsets assigned), duplicates excluded.",
		}),
		replaced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardcache_shardstore_replaced_records_total",
			Help: "Records removed by compaction on write because a later record of the same key replaced them.",
		}),
		keyCache: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shardcache_shardstore_key_cache_bytes",
			Help: "Memory charged by the key cache of all shards, bounded by --key-cache-bytes.",
		}, func() float64 { return float64(s.cached.Load()) }),
		filter: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shardcache_shardstore_key_filter_bytes",
			Help: "Memory of the key filters of shards with more keys than the key cache holds, bounded by half of --key-cache-bytes.",
		}, func() float64 { return float64(s.filtered.Load()) }),
		reads: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shardcache_shardstore_key_index_reads_total",
			Help: "Keys the write path looked up in the key index in Pebble: neither the key cache nor the key filter could answer.",
		}, func() float64 { return float64(s.indexReads.Load()) }),
		idle: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shardcache_shardstore_idle_compactions_total",
			Help: "Compactions of the shards' L0 run after the store went without a write for --idle-compaction.",
		}, func() float64 { return float64(s.idleCompactions.Load()) }),
		live:   newLiveCollector(s),
		pebble: newPebbleCollector(s),
	}
}

func (m *metrics) register() error {
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.appended, m.replaced, m.keyCache, m.filter, m.reads, m.idle, m.live, m.pebble} {
		if err := m.reg.Register(c); err != nil {
			for _, d := range done {
				m.reg.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister() {
	m.reg.Unregister(m.appended)
	m.reg.Unregister(m.replaced)
	m.reg.Unregister(m.keyCache)
	m.reg.Unregister(m.filter)
	m.reg.Unregister(m.reads)
	m.reg.Unregister(m.idle)
	m.reg.Unregister(m.live)
	m.reg.Unregister(m.pebble)
}

// liveCollector reports every shard's live keys, records and bytes. The label
// shard is bounded by configuration (the topics and partitions on the node).
type liveCollector struct {
	s                      *Store
	keys, records, byteCnt *prometheus.Desc
}

func newLiveCollector(s *Store) *liveCollector {
	label := []string{"shard"}
	return &liveCollector{
		s: s,
		keys: prometheus.NewDesc("shardcache_shardstore_live_keys",
			"Keys of the shard whose live record is not a tombstone.", label, nil),
		records: prometheus.NewDesc("shardcache_shardstore_live_records",
			"Records readable in the shard: the backlog of a reader at the log start.", label, nil),
		byteCnt: prometheus.NewDesc("shardcache_shardstore_live_bytes",
			"Encoded size of the records readable in the shard.", label, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.keys
	ch <- c.records
	ch <- c.byteCnt
}

// Collect implements prometheus.Collector.
func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.s.Shards() {
		st, err := c.s.State(id)
		if errors.Is(err, ErrUnknownShard) {
			continue // deleted since Shards
		}
		label := strconv.FormatUint(uint64(id), 10)
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(st.LiveKeys), label)
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(st.LiveRecords), label)
		ch <- prometheus.MustNewConstMetric(c.byteCnt, prometheus.GaugeValue, float64(st.LiveBytes), label)
	}
}
