package raftfsm

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shardcache/shardcache/shardstore"
)

// testWriter sends log lines to t.Log so only failing tests print.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testCluster is a Node and its store in one directory, restartable.
type testCluster struct {
	tb    testing.TB
	dir   string
	store *shardstore.Store
	node  *Node
	reg   *prometheus.Registry
	now   func() time.Time
	// idle is the store's IdleCompaction (0: off, as by default in tests).
	idle time.Duration
	// adjust, when set, changes the node's Config before each start.
	adjust func(*Config)
}

func testConfig(dir string, store *shardstore.Store) Config {
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(dir, "raft")
	cfg.Store = store
	cfg.DataGroups = 2
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.LeaderLeaseTimeout = 25 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	return cfg
}

// newTestCluster opens a store and a ready Node in a fresh directory; both are
// closed at cleanup.
func newTestCluster(tb testing.TB) *testCluster {
	tb.Helper()
	c := &testCluster{tb: tb, dir: tb.TempDir(), now: time.Now}
	c.start()
	tb.Cleanup(c.stop)
	return c
}

func (c *testCluster) start() {
	c.tb.Helper()
	store, err := shardstore.Open(filepath.Join(c.dir, "data"), shardstore.Options{Logger: testLogger(c.tb), CacheBytes: 8 << 20, MemTableBytes: 4 << 20, IdleCompaction: c.idle,
		NewLogDir: CheckNewLogDB}) // as the binary opens it
	if err != nil {
		c.tb.Fatal(err)
	}
	c.store = store
	c.reg = prometheus.NewRegistry()
	cfg := testConfig(c.dir, store)
	cfg.Logger = testLogger(c.tb)
	cfg.Registerer = c.reg
	cfg.Now = func() time.Time { return c.now() }
	if c.adjust != nil {
		c.adjust(&cfg)
	}
	n, err := Open(cfg)
	if err != nil {
		store.Close()
		c.tb.Fatal(err)
	}
	c.node = n
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		c.tb.Fatalf("WaitReady: %v", err)
	}
}

func (c *testCluster) stop() {
	c.tb.Helper()
	if c.node != nil {
		if err := c.node.Close(); err != nil {
			c.tb.Errorf("node close: %v", err)
		}
		c.node = nil
	}
	if c.store != nil {
		if err := c.store.Close(); err != nil {
			c.tb.Errorf("store close: %v", err)
		}
		c.store = nil
	}
}

func (c *testCluster) restart() {
	c.tb.Helper()
	c.stop()
	c.start()
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func keyed(prefix string, n int) []shardstore.Record {
	recs := make([]shardstore.Record, n)
	for i := range recs {
		recs[i] = shardstore.Record{
			Timestamp: int64(1000 + i),
			Key:       []byte(fmt.Sprintf("%s-key-%d", prefix, i)),
			Value:     []byte(fmt.Sprintf("%s-value-%d", prefix, i)),
		}
	}
	return recs
}

// readAll reads every readable record of a shard.
func readAll(tb testing.TB, s *shardstore.Store, id shardstore.ShardID) []shardstore.Record {
	tb.Helper()
	var out []shardstore.Record
	from := int64(0)
	for {
		recs, err := s.Read(id, from, 1<<20, 1000)
		if err != nil {
			tb.Fatalf("Read(%d, %d): %v", id, from, err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		from = recs[len(recs)-1].Offset + 1
	}
}

// metricValue reads a counter or gauge.
func metricValue(tb testing.TB, m prometheus.Metric) float64 {
	tb.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		tb.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	tb.Fatalf("metric %v is neither counter nor gauge", m.Desc())
	return 0
}
