package shardstore

import (
	"strconv"

	"github.com/cockroachdb/pebble/v2"

	"github.com/prometheus/client_golang/prometheus"
)

// pebbleCollector reports Pebble's write counters at scrape time
// (db.Metrics()): what the WAL, flushes, compactions and ingests wrote since
// the store was opened, so write amplification is a ratio of two scrapes. The
// label db is "state" (the shards, no WAL) or "raft" (the Raft log DB); level
// is bounded by Pebble's 7 levels.
type pebbleCollector struct {
	s                                        *Store
	walIn, walWritten                        *prometheus.Desc
	flushed, compacted, ingested, levelBytes *prometheus.Desc
	flushes, compactions                     *prometheus.Desc
}

func newPebbleCollector(s *Store) *pebbleCollector {
	db := []string{"db"}
	level := []string{"db", "level"}
	return &pebbleCollector{
		s: s,
		walIn: prometheus.NewDesc("shardcache_pebble_wal_logical_bytes_total",
			"Bytes of batches written to Pebble's write-ahead log since the store opened.", db, nil),
		walWritten: prometheus.NewDesc("shardcache_pebble_wal_bytes_written_total",
			"Bytes written to Pebble's write-ahead log files (with record framing) since the store opened.", db, nil),
		flushed: prometheus.NewDesc("shardcache_pebble_flushed_bytes_total",
			"Table bytes written to the level by memtable flushes since the store opened.", level, nil),
		compacted: prometheus.NewDesc("shardcache_pebble_compacted_bytes_total",
			"Table bytes written to the level by compactions since the store opened.", level, nil),
		ingested: prometheus.NewDesc("shardcache_pebble_ingested_bytes_total",
			"Table bytes ingested into the level (snapshots) since the store opened.", level, nil),
		levelBytes: prometheus.NewDesc("shardcache_pebble_level_bytes",
			"Size of the level's tables.", level, nil),
		flushes: prometheus.NewDesc("shardcache_pebble_flushes_total",
			"Memtable flushes since the store opened.", db, nil),
		compactions: prometheus.NewDesc("shardcache_pebble_compactions_total",
			"Compactions since the store opened.", db, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.walIn, c.walWritten, c.flushed, c.compacted, c.ingested, c.levelBytes, c.flushes, c.compactions} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; a closed store reports nothing.
func (c *pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.life.RLock()
	defer c.s.life.RUnlock()
	if c.s.closed {
		return
	}
	c.collect(ch, c.s.db, "state", false)
	c.collect(ch, c.s.logDB, "raft", true)
}

// collect reports db's counters under the label name. Pebble estimates the
// WAL's bytes written as what L0 took in from flushes plus the live WAL, which
// for a DB without a WAL (wal false) counts its flushes again: its WAL bytes
// are reported as they are, none.
func (c *pebbleCollector) collect(ch chan<- prometheus.Metric, db *pebble.DB, name string, wal bool) {
	m := db.Metrics()
	walWritten := m.WAL.BytesWritten
	if !wal {
		walWritten = 0
	}
	ch <- prometheus.MustNewConstMetric(c.walIn, prometheus.CounterValue, float64(m.WAL.BytesIn), name)
	ch <- prometheus.MustNewConstMetric(c.walWritten, prometheus.CounterValue, float64(walWritten), name)
	ch <- prometheus.MustNewConstMetric(c.flushes, prometheus.CounterValue, float64(m.Flush.Count), name)
	ch <- prometheus.MustNewConstMetric(c.compactions, prometheus.CounterValue, float64(m.Compact.Count), name)
	for i := range m.Levels {
		l := &m.Levels[i]
		label := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(c.flushed, prometheus.CounterValue, float64(l.TableBytesFlushed+l.BlobBytesFlushed), name, label)
		ch <- prometheus.MustNewConstMetric(c.compacted, prometheus.CounterValue, float64(l.TableBytesCompacted+l.BlobBytesCompacted), name, label)
		ch <- prometheus.MustNewConstMetric(c.ingested, prometheus.CounterValue, float64(l.TableBytesIngested), name, label)
		ch <- prometheus.MustNewConstMetric(c.levelBytes, prometheus.GaugeValue, float64(l.TablesSize), name, label)
	}
}
