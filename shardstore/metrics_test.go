package shardstore

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shardcache/shardcache/internal/metricstest"
)

// The module's go.sum lacks testutil's diff dependency, so this test lints with
// internal/metricstest (testutil's promlint package) and reads values from a
// Gather directly.

// gathered maps "name{shard}" (or "name" without labels) to a value.
func gathered(t *testing.T, reg *prometheus.Registry) (map[string]float64, []*dto.MetricFamily) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out, mfs
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	opts := testOptions(t, vfs.NewMem())
	opts.Registerer = reg
	s := openStore(t, "db", opts)
	hd := &h{t: t, s: s}
	hd.create(1, 2)
	hd.mustAppend(1, compact, NoProducer, kv("a", "1"), kv("a", "2"), kv("b", "1")) // one collapsed
	hd.mustAppend(1, compact, NoProducer, kv("b", "2"), tomb("c"))                  // one replaced
	hd.mustAppend(2, del, NoProducer, Record{Value: []byte("x")})
	if _, err := hd.append(1, compact, NoProducer, Record{Value: []byte("keyless")}); err == nil {
		t.Fatal("keyless append accepted")
	}

	got, mfs := gathered(t, reg)
	metricstest.LintFamilies(t, mfs)
	st1, st2 := hd.state(1), hd.state(2)
	want := map[string]float64{
		"shardcache_shardstore_appended_records_total": 6,
		"shardcache_shardstore_replaced_records_total": 2,
		"shardcache_shardstore_live_keys{1}":           2,
		"shardcache_shardstore_live_keys{2}":           0,
		"shardcache_shardstore_live_records{1}":        3,
		"shardcache_shardstore_live_records{2}":        1,
		"shardcache_shardstore_live_bytes{1}":          float64(st1.LiveBytes),
		"shardcache_shardstore_live_bytes{2}":          float64(st2.LiveBytes),
		"shardcache_shardstore_key_cache_bytes":        float64(3 * keyCacheCost("a")), // a, b, c
		"shardcache_shardstore_key_filter_bytes":       0,                              // the cache holds every key
		"shardcache_shardstore_key_index_reads_total":  0,
		"shardcache_shardstore_idle_compactions_total": 0,
	}
	store := 0
	for k := range got {
		if strings.HasPrefix(k, "shardcache_shardstore_") {
			store++
		}
	}
	if store != len(want) {
		t.Errorf("gathered %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Pebble's counters, per DB: the appends stayed out of the WAL (the state
	// DB has none); a synced write to the Raft log DB went through its WAL; a
	// flush writes L0.
	if err := s.LogDB().Set([]byte("r-test"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	got, _ = gathered(t, reg)
	if got["shardcache_pebble_wal_logical_bytes_total{state}"] != 0 || got["shardcache_pebble_wal_bytes_written_total{state}"] != 0 {
		t.Errorf("state WAL counters: %v", got)
	}
	if got["shardcache_pebble_wal_logical_bytes_total{raft}"] <= 0 || got["shardcache_pebble_wal_bytes_written_total{raft}"] < got["shardcache_pebble_wal_logical_bytes_total{raft}"] {
		t.Errorf("raft WAL counters: %v", got)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	got, _ = gathered(t, reg)
	if got["shardcache_pebble_wal_bytes_written_total{state}"] != 0 {
		t.Errorf("a flush of the WAL-less state DB counted as WAL bytes: %v", got)
	}
	if got["shardcache_pebble_flushes_total{state}"] < 1 || got["shardcache_pebble_flushed_bytes_total{state}{0}"] <= 0 || got["shardcache_pebble_level_bytes{state}{0}"] <= 0 {
		t.Errorf("after a flush: %v", got)
	}

	// Close unregisters, so a reopened store can register again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openStore(t, "db", opts)
	got, _ = gathered(t, reg)
	if got["shardcache_shardstore_appended_records_total"] != 0 || got["shardcache_shardstore_live_records{1}"] != 3 {
		t.Errorf("after reopen: %v", got)
	}
}
