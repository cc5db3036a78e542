package compaction

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/internal/metricstest"
	"github.com/shardcache/shardcache/internal/nodetest"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// clock is a settable test clock shared by the Node and the Loop.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

type fixture struct {
	node  *raftfsm.Node
	store *shardstore.Store
	loop  *Loop
	clock *clock
	reg   *prometheus.Registry
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	log := nodetest.Logger(tb, slog.LevelWarn)
	f := &fixture{clock: &clock{}, reg: prometheus.NewRegistry()}
	f.clock.ms.Store(1_700_000_000_000)
	f.store, f.node = nodetest.Open(tb, nodetest.WithLogger(log),
		nodetest.StoreOptions(func(o *shardstore.Options) { o.MemTableBytes = 4 << 20 }),
		nodetest.NodeConfig(func(c *raftfsm.Config) {
			c.LeaderLeaseTimeout = 25 * time.Millisecond
			c.Now = f.clock.now
		}))
	var err error
	f.loop, err = New(Config{Node: f.node, Store: f.store, Interval: 10 * time.Millisecond, Now: f.clock.now, Logger: log, Registerer: f.reg})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func (f *fixture) produce(tb testing.TB, topic string, recs ...shardstore.Record) {
	tb.Helper()
	if _, err := f.node.Produce(testCtx(tb), topic, 0, shardstore.NoProducer, recs); err != nil {
		tb.Fatal(err)
	}
}

func (f *fixture) state(tb testing.TB, topic string) shardstore.State {
	tb.Helper()
	ti, ok := f.node.Topic(topic)
	if !ok {
		tb.Fatalf("no topic %s", topic)
	}
	st, err := f.store.State(ti.Partitions[0].Shard)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func rec(key, value string) shardstore.Record {
	r := shardstore.Record{Timestamp: 1, Key: []byte(key)}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

func TestTombstoneExpiresAfterRetention(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "table", 1, map[string]string{topicconfig.DeleteRetentionMs: "1000"}, false); err != nil {
		t.Fatal(err)
	}
	f.produce(t, "table", rec("a", "1"), rec("b", "2"))
	f.produce(t, "table", rec("a", "")) // tombstone
	if st := f.state(t, "table"); st.Tombstones != 1 {
		t.Fatalf("state before: %+v", st)
	}
	ti, _ := f.node.Topic("table")
	shard := ti.Partitions[0].Shard

	f.clock.advance(999 * time.Millisecond)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("pass before delete.retention.ms proposed %d commands, want none", n)
	}
	if st := f.state(t, "table"); st.Tombstones != 1 {
		t.Fatalf("tombstone removed before delete.retention.ms: %+v", st)
	}
	if r, ok, err := f.store.Lookup(shard, []byte("a")); err != nil || !ok || r.Value != nil {
		t.Fatalf("Lookup(a) before expiry = %+v, %v, %v: want the tombstone", r, ok, err)
	}

	f.clock.advance(2 * time.Millisecond)
	if n := f.loop.RunOnce(ctx); n != 1 {
		t.Fatalf("RunOnce proposed %d commands, want 1", n)
	}
	st := f.state(t, "table")
	if st.Tombstones != 0 || st.LiveKeys != 1 {
		t.Fatalf("state after expiry: %+v", st)
	}
	if _, ok, err := f.store.Lookup(shard, []byte("a")); err != nil || ok {
		t.Fatalf("Lookup(a) after expiry: ok=%v err=%v", ok, err)
	}
	if st.LogStartOffset != 0 {
		t.Fatalf("compaction moved the log start: %+v", st)
	}
	// Nothing left to do: no more commands.
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("idle pass proposed %d commands", n)
	}
}

// TestTxnMarkersExpireAfterRetention: repeated small transactions on a
// compacted topic leave a commit marker each; once delete.retention.ms has
// passed the loop removes them, so the partition's readable records come back
// to its live keys, offsets stay put, and an abort marker goes the same way.
func TestTxnMarkersExpireAfterRetention(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "table", 1, map[string]string{topicconfig.DeleteRetentionMs: "1000"}, false); err != nil {
		t.Fatal(err)
	}
	const txns, keys = 40, 3
	pr := shardstore.Producer{ID: 77, Epoch: 0, Transactional: true}
	for i := 0; i < txns; i++ {
		pr.BaseSequence = int32(i)
		r := rec(string(rune('a'+i%keys)), "v")
		if _, err := f.node.Produce(ctx, "table", 0, pr, []shardstore.Record{r}); err != nil {
			t.Fatal(err)
		}
		m := shardstore.Marker{ProducerID: 77, Commit: i%5 != 4}
		if err := f.node.WriteTxnMarker(ctx, "table", 0, m); err != nil {
			t.Fatal(err)
		}
	}
	before := f.state(t, "table")
	if before.LiveKeys != keys || before.LiveRecords != keys+txns || before.HighWatermark != 2*txns {
		t.Fatalf("state before expiry: %+v", before)
	}
	f.clock.advance(999 * time.Millisecond)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("pass before delete.retention.ms proposed %d commands", n)
	}
	f.clock.advance(2 * time.Millisecond)
	if n := f.loop.RunOnce(ctx); n != 1 {
		t.Fatalf("pass after delete.retention.ms proposed %d commands, want 1", n)
	}
	st := f.state(t, "table")
	if st.LiveRecords != keys || st.LiveKeys != keys || st.HighWatermark != before.HighWatermark || st.LogStartOffset != 0 {
		t.Fatalf("state after expiry: %+v (before %+v)", st, before)
	}
	recs, err := f.store.Read(f.shard(t, "table"), 0, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Marker != nil {
			t.Fatalf("marker left at %d", r.Offset)
		}
	}
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("idle pass proposed %d commands", n)
	}
}

func (f *fixture) shard(tb testing.TB, topic string) shardstore.ShardID {
	tb.Helper()
	ti, ok := f.node.Topic(topic)
	if !ok {
		tb.Fatalf("no topic %s", topic)
	}
	return ti.Partitions[0].Shard
}

func TestSupersededExpiresAfterLag(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "lagged", 1, map[string]string{topicconfig.MinCompactionLagMs: "5000"}, false); err != nil {
		t.Fatal(err)
	}
	f.produce(t, "lagged", rec("k", "old"))
	f.produce(t, "lagged", rec("k", "new"))
	if st := f.state(t, "lagged"); st.LiveRecords != 2 {
		t.Fatalf("superseded record not held by the lag: %+v", st)
	}
	f.clock.advance(6 * time.Second)
	f.loop.RunOnce(ctx)
	if st := f.state(t, "lagged"); st.LiveRecords != 1 || st.LiveKeys != 1 {
		t.Fatalf("superseded record kept past the lag: %+v", st)
	}
}

// TestSupersededReleasedWhenLagLowered is the regression test for records held
// by min.compaction.lag.ms staying after the lag was lowered to 0: each pass
// applies the lag in force, so lowering it releases what it no longer holds.
func TestSupersededReleasedWhenLagLowered(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "lagged", 1, map[string]string{topicconfig.MinCompactionLagMs: "3600000"}, false); err != nil {
		t.Fatal(err)
	}
	setLag := func(lag string) {
		t.Helper()
		if err := f.node.SetTopicConfig(ctx, "lagged", map[string]string{topicconfig.MinCompactionLagMs: lag}, false); err != nil {
			t.Fatal(err)
		}
	}
	f.produce(t, "lagged", rec("k", "v1"))
	f.produce(t, "lagged", rec("k", "v2")) // v1 held for an hour
	f.clock.advance(time.Minute)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("pass within the lag proposed %d commands", n)
	}
	if st := f.state(t, "lagged"); st.LiveRecords != 2 {
		t.Fatalf("held record released within the lag: %+v", st)
	}

	// Lowered below the record's age: released on the next pass.
	setLag("30000")
	f.loop.RunOnce(ctx)
	if st := f.state(t, "lagged"); st.LiveRecords != 1 {
		t.Fatalf("lag lowered to 30 s: held record of 1 min kept: %+v", st)
	}

	// Lowered to 0: nothing is held any more.
	f.produce(t, "lagged", rec("k", "v3")) // v2 is older than 30 s: replaced at once
	f.produce(t, "lagged", rec("k", "v4")) // v3 held for 30 s
	if st := f.state(t, "lagged"); st.LiveRecords != 2 {
		t.Fatalf("v3 not held by the 30 s lag: %+v", st)
	}
	setLag("0")
	if n := f.loop.RunOnce(ctx); n != 1 {
		t.Fatalf("pass after the lag went to 0 proposed %d commands, want 1", n)
	}
	if st := f.state(t, "lagged"); st.LiveRecords != 1 || st.LiveKeys != 1 {
		t.Fatalf("lag lowered to 0: held record kept: %+v", st)
	}
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("idle pass proposed %d commands", n)
	}
}

func TestRetentionByBytesMovesLogStart(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "events", 1, map[string]string{
		topicconfig.CleanupPolicy:  "delete",
		topicconfig.RetentionMs:    "-1",
		topicconfig.RetentionBytes: "1000",
	}, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		f.produce(t, "events", shardstore.Record{Timestamp: 1, Value: make([]byte, 200)})
	}
	before := f.state(t, "events")
	if before.LiveBytes <= 1000 {
		t.Fatalf("test needs more than 1000 bytes: %+v", before)
	}
	f.loop.RunOnce(ctx)
	after := f.state(t, "events")
	if after.LogStartOffset <= 0 || after.LiveBytes > 1000 || after.HighWatermark != 20 {
		t.Fatalf("retention.bytes not applied: before %+v after %+v", before, after)
	}
	ti, _ := f.node.Topic("events")
	recs, err := f.store.Read(ti.Partitions[0].Shard, 0, 1<<20, 100)
	if err != nil || len(recs) == 0 || recs[0].Offset != after.LogStartOffset {
		t.Fatalf("read from 0 after retention: %d records, %v", len(recs), err)
	}
}

func TestRetentionByTime(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "aging", 1, map[string]string{
		topicconfig.CleanupPolicy: "delete",
		topicconfig.RetentionMs:   "60000",
	}, false); err != nil {
		t.Fatal(err)
	}
	f.produce(t, "aging", shardstore.Record{Value: []byte("old1")}, shardstore.Record{Value: []byte("old2")})
	f.clock.advance(time.Minute)
	f.produce(t, "aging", shardstore.Record{Value: []byte("new")})
	f.clock.advance(time.Second)
	f.loop.RunOnce(ctx)
	if st := f.state(t, "aging"); st.LogStartOffset != 2 {
		t.Fatalf("retention.ms: log start %d, want 2 (%+v)", st.LogStartOffset, st)
	}
}

// TestCompactDeleteRetention is the regression test for cleanup.policy=
// compact,delete (Kafka Streams' windowed changelogs), which was refused: keys
// compact on write, and records older than retention.ms leave from the log
// start, taking their keys with them.
func TestCompactDeleteRetention(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "windows", 1, map[string]string{
		topicconfig.CleanupPolicy: "compact,delete",
		topicconfig.RetentionMs:   "60000",
	}, false); err != nil {
		t.Fatal(err)
	}
	ti, _ := f.node.Topic("windows")
	shard := ti.Partitions[0].Shard
	if _, err := f.node.Produce(ctx, "windows", 0, shardstore.NoProducer, []shardstore.Record{{Value: []byte("x")}}); err == nil {
		t.Fatal("keyless record accepted on a compact,delete topic")
	}
	f.produce(t, "windows", rec("a", "a1"), rec("b", "b1")) // offsets 0, 1
	f.clock.advance(time.Minute)
	f.produce(t, "windows", rec("c", "c1"), rec("a", "a2")) // offsets 2, 3; a1 compacted at once
	if st := f.state(t, "windows"); st.LiveKeys != 3 || st.LiveRecords != 3 {
		t.Fatalf("before retention: %+v", st)
	}
	f.clock.advance(time.Second)
	if n := f.loop.RunOnce(ctx); n != 1 {
		t.Fatalf("RunOnce proposed %d commands, want 1", n)
	}
	st := f.state(t, "windows")
	if st.LogStartOffset != 2 || st.LiveKeys != 2 || st.LiveRecords != 2 || st.HighWatermark != 4 {
		t.Fatalf("after retention: %+v", st)
	}
	if _, ok, err := f.store.Lookup(shard, []byte("b")); err != nil || ok {
		t.Fatalf("key b outlived retention: ok=%v err=%v", ok, err)
	}
	if r, ok, err := f.store.Lookup(shard, []byte("a")); err != nil || !ok || string(r.Value) != "a2" {
		t.Fatalf("Lookup(a) = %+v, %v, %v", r, ok, err)
	}
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("idle pass proposed %d commands", n)
	}

	// retention.bytes applies too.
	if _, err := f.node.CreateTopic(ctx, "sized", 1, map[string]string{
		topicconfig.CleanupPolicy:  "delete,compact",
		topicconfig.RetentionMs:    "-1",
		topicconfig.RetentionBytes: "500",
	}, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		f.produce(t, "sized", rec(string(rune('k'+i)), string(make([]byte, 200))))
	}
	f.loop.RunOnce(ctx)
	if st := f.state(t, "sized"); st.LiveBytes > 500 || st.LogStartOffset == 0 || st.LiveKeys != st.LiveRecords {
		t.Fatalf("retention.bytes on compact,delete: %+v", st)
	}
}

// TestEmptyCleanupPolicyKeepsEverything: cleanup.policy="" (Kafka: no cleanup
// at all) is an append-only log that retention never trims.
func TestEmptyCleanupPolicyKeepsEverything(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "forever", 1, map[string]string{
		topicconfig.CleanupPolicy: "", topicconfig.RetentionMs: "1000", topicconfig.RetentionBytes: "1",
	}, false); err != nil {
		t.Fatal(err)
	}
	f.produce(t, "forever", shardstore.Record{Value: []byte("keyless")}, rec("k", "v"), rec("k", "v2"))
	f.clock.advance(time.Hour)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("RunOnce proposed %d commands on a topic without cleanup", n)
	}
	if st := f.state(t, "forever"); st.LogStartOffset != 0 || st.LiveRecords != 3 {
		t.Fatalf("records removed: %+v", st)
	}
}

// TestIdleProducerExpires: the state of an idempotent producer idle for
// ProducerIDExpiration is forgotten through Raft, after which its next batch
// may start at any sequence (Kafka 4 accepts a new sequence from an unknown
// producer id); a producer that kept writing keeps its state. Producer
// checks run at most every ProducerCheckInterval.
func TestIdleProducerExpires(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	const expiration = 24 * time.Hour
	var err error
	f.loop, err = New(Config{Node: f.node, Store: f.store, Now: f.clock.now, ProducerIDExpiration: expiration,
		ProducerCheckInterval: time.Hour, Logger: nodetest.Logger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"table", "events"} {
		policy := map[string]string{topicconfig.CleanupPolicy: "compact"}
		if topic == "events" {
			policy[topicconfig.CleanupPolicy] = "delete"
		}
		if _, err := f.node.CreateTopic(ctx, topic, 1, policy, false); err != nil {
			t.Fatal(err)
		}
	}
	produce := func(topic string, id int64, seq int32) error {
		_, err := f.node.Produce(ctx, topic, 0, shardstore.Producer{ID: id, BaseSequence: seq}, []shardstore.Record{rec("k", "v")})
		return err
	}
	for _, topic := range []string{"table", "events"} {
		for _, id := range []int64{7, 8} {
			if err := produce(topic, id, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("first pass proposed %d commands", n)
	}
	f.clock.advance(expiration / 2)
	if err := produce("table", 8, 1); err != nil { // 8 keeps writing on table
		t.Fatal(err)
	}
	f.clock.advance(expiration/2 - time.Millisecond)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("pass before the expiration proposed %d commands", n)
	}
	for _, topic := range []string{"table", "events"} {
		if err := produce(topic, 7, 5); !errors.Is(err, shardstore.ErrOutOfOrderSequence) {
			t.Fatalf("%s: a sequence gap before the expiration: %v, want out of order", topic, err)
		}
	}

	f.clock.advance(2 * time.Millisecond)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("pass within ProducerCheckInterval of the last check proposed %d commands", n)
	}
	f.clock.advance(time.Hour)
	if n := f.loop.RunOnce(ctx); n != 2 {
		t.Fatalf("pass after the expiration proposed %d commands, want one per partition", n)
	}
	for _, topic := range []string{"table", "events"} {
		if err := produce(topic, 7, 5); err != nil {
			t.Fatalf("%s: expired producer 7 starting at sequence 5: %v", topic, err)
		}
	}
	if err := produce("events", 8, 3); err != nil {
		t.Fatalf("events: expired producer 8: %v", err)
	}
	if err := produce("table", 8, 5); !errors.Is(err, shardstore.ErrOutOfOrderSequence) {
		t.Fatalf("table: producer 8, active 12h ago, lost its state: %v", err)
	}
	if err := produce("table", 8, 2); err != nil {
		t.Fatalf("table: producer 8's next batch: %v", err)
	}
	f.clock.advance(time.Hour)
	if n := f.loop.RunOnce(ctx); n != 0 {
		t.Fatalf("nothing due, yet %d commands", n)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	if _, err := f.node.CreateTopic(ctx, "table", 1, map[string]string{topicconfig.DeleteRetentionMs: "0"}, false); err != nil {
		t.Fatal(err)
	}
	f.produce(t, "table", rec("a", ""))
	f.clock.advance(time.Millisecond)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.loop.Run(runCtx) }()
	ti, _ := f.node.Topic("table")
	timeout := time.After(5 * time.Second)
	for {
		changed := f.store.Wait(ti.Partitions[0].Shard)
		if f.state(t, "table").Tombstones == 0 {
			break
		}
		select {
		case <-changed:
		case <-timeout:
			cancel()
			t.Fatal("Run did not expire the tombstone")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestMetricsLint(t *testing.T) {
	f := newFixture(t)
	f.loop.RunOnce(testCtx(t))
	if mfs := metricstest.Lint(t, f.reg); len(mfs) == 0 {
		t.Fatal("no metrics gathered")
	}
}

func TestNewValidates(t *testing.T) {
	n, s := &raftfsm.Node{}, &shardstore.Store{}
	for _, cfg := range []Config{{}, {Node: n}, {Node: n, Store: s, Interval: -1},
		{Node: n, Store: s, ProducerIDExpiration: MinProducerIDExpiration - 1},
		{Node: n, Store: s, ProducerIDExpiration: MaxProducerIDExpiration + time.Millisecond},
		{Node: n, Store: s, ProducerCheckInterval: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
