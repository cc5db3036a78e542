package compaction

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/internal/nodetest"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// TestDueWorkFoundAfterRestart: passes with nothing due teach the store's
// shards their due bounds; after the node restarts over the same data, the
// loop still finds each expiry when it falls due (tombstones and markers
// after delete.retention.ms, idle producers, retention.ms), one command each.
func TestDueWorkFoundAfterRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{}
	c.ms.Store(1_700_000_000_000)
	log := nodetest.Logger(t, slog.LevelWarn)
	start := func() (*raftfsm.Node, *Loop, func()) {
		store, node, closeFn := nodetest.Start(t, nodetest.Dir(dir), nodetest.WithLogger(log),
			nodetest.NodeConfig(func(nc *raftfsm.Config) {
				nc.LeaderLeaseTimeout = 25 * time.Millisecond
				nc.Now = c.now
			}))
		loop, err := New(Config{Node: node, Store: store, Now: c.now, Logger: log, Registerer: prometheus.NewRegistry(),
			ProducerIDExpiration: 2 * time.Second, ProducerCheckInterval: time.Millisecond})
		if err != nil {
			closeFn()
			t.Fatal(err)
		}
		return node, loop, closeFn
	}
	node, loop, stop := start()
	ctx := testCtx(t)
	conf := map[string]string{
		topicconfig.CleanupPolicy:     "compact,delete",
		topicconfig.DeleteRetentionMs: "1000",
		topicconfig.RetentionMs:       "5000",
	}
	if _, err := node.CreateTopic(ctx, "table", 1, conf, false); err != nil {
		stop()
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error {
			_, err := node.Produce(ctx, "table", 0, shardstore.Producer{ID: 7}, []shardstore.Record{rec("a", "1")})
			return err
		},
		func() error {
			_, err := node.Produce(ctx, "table", 0, shardstore.NoProducer, []shardstore.Record{{Timestamp: 1, Key: []byte("b")}})
			return err
		},
		func() error {
			_, err := node.Produce(ctx, "table", 0, shardstore.Producer{ID: 9, Transactional: true}, []shardstore.Record{rec("c", "1")})
			return err
		},
		func() error {
			return node.WriteTxnMarker(ctx, "table", 0, shardstore.Marker{ProducerID: 9, Commit: true})
		},
	} {
		if err := step(); err != nil {
			stop()
			t.Fatal(err)
		}
	}
	c.advance(500 * time.Millisecond)
	for range 2 {
		if n := loop.RunOnce(ctx); n != 0 {
			stop()
			t.Fatalf("pass before anything is due proposed %d commands", n)
		}
	}
	stop()

	node, loop, stop = start()
	t.Cleanup(stop)
	if n := loop.RunOnce(ctx); n != 0 {
		t.Fatalf("pass after the restart, before anything is due, proposed %d commands", n)
	}
	for _, want := range []struct {
		at   time.Duration // after the writes
		n    int
		what string
	}{
		{1001 * time.Millisecond, 2, "the tombstone's and the marker's expiry"},
		{2001 * time.Millisecond, 1, "the idle producers' expiry"},
		{5001 * time.Millisecond, 1, "retention"},
	} {
		c.ms.Store(1_700_000_000_000 + want.at.Milliseconds())
		if n := loop.RunOnce(ctx); n != want.n {
			t.Fatalf("pass at %v proposed %d commands, want %d (%s)", want.at, n, want.n, want.what)
		}
		if n := loop.RunOnce(ctx); n != 0 {
			t.Fatalf("pass at %v after %s proposed %d commands", want.at, want.what, n)
		}
	}
}
