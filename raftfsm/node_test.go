package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/internal/metricstest"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

func TestNodeProduceAndRestart(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	clusterID := c.node.ClusterID()
	if len(clusterID) != 22 {
		t.Fatalf("ClusterID %q: want 22 characters", clusterID)
	}
	info, err := c.node.CreateTopic(ctx, "orders", 3, map[string]string{topicconfig.MinCompactionLagMs: "0"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID == ([16]byte{}) || len(info.Partitions) != 3 {
		t.Fatalf("CreateTopic = %+v", info)
	}
	groups := map[uint32]bool{}
	for i, p := range info.Partitions {
		if p.Partition != int32(i) || p.Group < 1 || p.Group > 2 {
			t.Fatalf("partition %d placed as %+v", i, p)
		}
		groups[p.Group] = true
		if _, err := c.store.State(p.Shard); err != nil {
			t.Fatalf("shard of partition %d: %v", i, err)
		}
	}
	if len(groups) != 2 {
		t.Fatalf("3 partitions over 2 groups used groups %v", groups)
	}

	want := map[int32][]shardstore.Record{}
	for p := int32(0); p < 3; p++ {
		for batch := 0; batch < 3; batch++ {
			recs := keyed(fmt.Sprintf("p%d-b%d", p, batch), 4)
			res, err := c.node.Produce(ctx, "orders", p, shardstore.NoProducer, recs)
			if err != nil {
				t.Fatalf("Produce(%d): %v", p, err)
			}
			if res.BaseOffset != int64(batch*4) {
				t.Fatalf("Produce(%d) batch %d base offset %d", p, batch, res.BaseOffset)
			}
			want[p] = append(want[p], recs...)
		}
	}
	check := func(t *testing.T) {
		t.Helper()
		ti, ok := c.node.Topic("orders")
		if !ok {
			t.Fatal("topic orders missing")
		}
		for p := int32(0); p < 3; p++ {
			got := readAll(t, c.store, ti.Partitions[p].Shard)
			if len(got) != len(want[p]) {
				t.Fatalf("partition %d: read %d records, want %d", p, len(got), len(want[p]))
			}
			for i, r := range got {
				if r.Offset != int64(i) || string(r.Key) != string(want[p][i].Key) || string(r.Value) != string(want[p][i].Value) {
					t.Fatalf("partition %d record %d = %+v, want %+v", p, i, r, want[p][i])
				}
			}
			st, err := c.store.State(ti.Partitions[p].Shard)
			if err != nil || st.HighWatermark != int64(len(want[p])) {
				t.Fatalf("partition %d state %+v, %v", p, st, err)
			}
		}
	}
	check(t)

	c.restart()
	t.Run("after restart", func(t *testing.T) {
		if got := c.node.ClusterID(); got != clusterID {
			t.Fatalf("ClusterID %q after restart, was %q", got, clusterID)
		}
		ti, ok := c.node.Topic("orders")
		if !ok || ti.ID != info.ID || !slices.Equal(ti.Partitions, info.Partitions) {
			t.Fatalf("topic after restart %+v, was %+v", ti, info)
		}
		if byID, ok := c.node.TopicByID(info.ID); !ok || byID.Name != "orders" {
			t.Fatalf("TopicByID after restart: %+v %v", byID, ok)
		}
		// Raft re-delivered the log after the restart; the FSM skipped
		// every entry at or below the applied index, so nothing doubled.
		check(t)
		if n := metricValue(t, c.node.metrics.applied.WithLabelValues(CmdProduce.String())); n != 0 {
			t.Fatalf("%v produce commands re-applied after restart", n)
		}
		for _, g := range c.node.groups {
			if g.fsm.skipped.Load() == 0 {
				t.Fatalf("group %d: raft re-delivered nothing to skip", g.id)
			}
		}
		res, err := c.node.Produce(ctx, "orders", 0, shardstore.NoProducer, keyed("after", 1))
		if err != nil || res.BaseOffset != 12 {
			t.Fatalf("Produce after restart = %+v, %v", res, err)
		}
	})
}

func TestNodeReplayRespectsAppliedIndex(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "t", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.node.Produce(ctx, "t", 0, shardstore.NoProducer, keyed("a", 2)); err != nil {
		t.Fatal(err)
	}
	g := info.Partitions[0].Group
	applied, err := c.store.Applied(g)
	if err != nil || applied == 0 {
		t.Fatalf("Applied(%d) = %d, %v", g, applied, err)
	}
	// Feed the FSM the already applied entries again, as Raft does after a
	// restart: nothing changes.
	grp := c.node.groups[g]
	var logs []*raft.Log
	first, _ := grp.logs.FirstIndex()
	for i := first; i <= applied; i++ {
		var l raft.Log
		if err := grp.logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &l)
	}
	before, _ := c.store.State(info.Partitions[0].Shard)
	resp := grp.fsm.ApplyBatch(logs)
	for i, r := range resp {
		if r != nil {
			t.Fatalf("replayed entry %d answered %v", i, r)
		}
	}
	after, _ := c.store.State(info.Partitions[0].Shard)
	if before != after {
		t.Fatalf("replay changed the shard: %+v -> %+v", before, after)
	}
}

func TestNodeIdempotentDuplicate(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	if _, err := c.node.CreateTopic(ctx, "idem", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := c.node.InitProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := shardstore.Producer{ID: pid, Epoch: epoch, BaseSequence: 0}
	first, err := c.node.Produce(ctx, "idem", 0, p, keyed("x", 3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.node.Produce(ctx, "idem", 0, shardstore.Producer{ID: pid, Epoch: epoch, BaseSequence: 3}, keyed("y", 2)); err != nil {
		t.Fatal(err)
	}
	dup, err := c.node.Produce(ctx, "idem", 0, p, keyed("x", 3))
	if err != nil {
		t.Fatal(err)
	}
	if !dup.Duplicate || dup.BaseOffset != first.BaseOffset {
		t.Fatalf("retried batch = %+v, want duplicate of %+v", dup, first)
	}
	_, err = c.node.Produce(ctx, "idem", 0, shardstore.Producer{ID: pid, Epoch: epoch, BaseSequence: 99}, keyed("z", 1))
	if !errors.Is(err, shardstore.ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v, want ErrOutOfOrderSequence", err)
	}
	ti, _ := c.node.Topic("idem")
	if got := len(readAll(t, c.store, ti.Partitions[0].Shard)); got != 5 {
		t.Fatalf("read %d records, want 5", got)
	}
}

func TestNodeDeleteTopic(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "gone", 4, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	keep, err := c.node.CreateTopic(ctx, "kept", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.node.Produce(ctx, "gone", 1, shardstore.NoProducer, keyed("a", 3)); err != nil {
		t.Fatal(err)
	}
	if err := c.node.DeleteTopic(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Partitions {
		if _, err := c.store.State(p.Shard); !errors.Is(err, shardstore.ErrUnknownShard) {
			t.Fatalf("shard %d after delete: %v", p.Shard, err)
		}
	}
	if _, ok := c.node.Topic("gone"); ok {
		t.Fatal("topic still listed")
	}
	if _, err := c.node.Produce(ctx, "gone", 0, shardstore.NoProducer, keyed("a", 1)); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("produce to deleted topic: %v", err)
	}
	if err := c.node.DeleteTopic(ctx, "gone"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("second delete: %v", err)
	}
	// A re-created topic gets fresh shards and a fresh id.
	again, err := c.node.CreateTopic(ctx, "gone", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == info.ID || again.Partitions[0].Shard <= keep.Partitions[0].Shard {
		t.Fatalf("re-created topic reuses id or shard: %+v", again)
	}
	c.restart()
	if got := c.store.Shards(); len(got) != 2 {
		t.Fatalf("shards after restart %v, want 2", got)
	}
}

func TestNodeProducerIDsUniqueAcrossRestart(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	seen := map[int64]bool{}
	take := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			id, epoch, err := c.node.InitProducerID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if epoch != 0 || id < 0 || seen[id] {
				t.Fatalf("InitProducerID = %d, %d (seen %v)", id, epoch, seen[id])
			}
			seen[id] = true
		}
	}
	take(producerIDBlock + 5) // crosses a block
	c.restart()
	take(10)
	c.restart()
	take(10)
}

func TestNodeMetadataSurvivesRestart(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	if _, err := c.node.CreateTopic(ctx, "b-events", 2, map[string]string{topicconfig.CleanupPolicy: "delete"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.node.CreateTopic(ctx, "a-table", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := c.node.CreatePartitions(ctx, "a-table", 3, false); err != nil {
		t.Fatal(err)
	}
	if err := c.node.SetTopicConfig(ctx, "a-table", map[string]string{topicconfig.DeleteRetentionMs: "1000"}, false); err != nil {
		t.Fatal(err)
	}
	before := c.node.Topics()
	c.restart()
	after := c.node.Topics()
	if len(after) != 2 || after[0].Name != "a-table" || after[1].Name != "b-events" {
		t.Fatalf("topics after restart: %+v", after)
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.ID != b.ID || !slices.Equal(a.Partitions, b.Partitions) || a.Config != b.Config || fmt.Sprint(a.Overrides) != fmt.Sprint(b.Overrides) {
			t.Fatalf("topic %s changed over restart:\n%+v\n%+v", b.Name, b, a)
		}
	}
	if after[0].Config.DeleteRetentionMs != 1000 || len(after[0].Partitions) != 3 {
		t.Fatalf("a-table: %+v", after[0])
	}
	if after[1].Config.CleanupPolicy != shardstore.PolicyDelete {
		t.Fatalf("b-events policy %v", after[1].Config.CleanupPolicy)
	}
	for _, ti := range after {
		for _, p := range ti.Partitions {
			if _, err := c.store.State(p.Shard); err != nil {
				t.Fatalf("%s/%d: %v", ti.Name, p.Partition, err)
			}
		}
	}
	// The keyless record rule follows the resolved policy.
	if _, err := c.node.Produce(ctx, "b-events", 0, shardstore.NoProducer, []shardstore.Record{{Value: []byte("v")}}); err != nil {
		t.Fatalf("keyless on delete policy: %v", err)
	}
	if _, err := c.node.Produce(ctx, "a-table", 2, shardstore.NoProducer, []shardstore.Record{{Value: []byte("v")}}); !errors.Is(err, shardstore.ErrKeyRequired) {
		t.Fatalf("keyless on compact policy: %v", err)
	}
}

func TestNodeReconcileAfterCrash(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	// Crash after the metadata command, before the shard command.
	half := &Command{Type: CmdCreateTopic, Topic: topicMeta{Name: "half", ID: newTopicID(), Partitions: c.node.newPartitions(0, 2)}}
	if _, _, err := c.node.propose(ctx, c.node.groups[metaGroup], half); err != nil {
		t.Fatal(err)
	}
	// Crash after a delete's metadata command: a shard no topic owns.
	gone, err := c.node.CreateTopic(ctx, "gone", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	orphan := gone.Partitions[0].Shard
	if _, _, err := c.node.propose(ctx, c.node.groups[metaGroup], &Command{Type: CmdDeleteTopic, Topic: topicMeta{Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	c.restart()
	for _, p := range half.Topic.Partitions {
		if _, err := c.store.State(p.Shard); err != nil {
			t.Fatalf("missing shard %d not created: %v", p.Shard, err)
		}
	}
	if _, err := c.store.State(orphan); !errors.Is(err, shardstore.ErrUnknownShard) {
		t.Fatalf("orphan shard not deleted: %v", err)
	}
	if _, err := c.node.Produce(ctx, "half", 1, shardstore.NoProducer, keyed("k", 1)); err != nil {
		t.Fatal(err)
	}
}

func TestNodeErrors(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	if _, err := c.node.CreateTopic(ctx, "exists", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"empty name", second(c.node.CreateTopic(ctx, "", 1, nil, false)), ErrInvalidTopic},
		{"dot", second(c.node.CreateTopic(ctx, ".", 1, nil, false)), ErrInvalidTopic},
		{"dotdot", second(c.node.CreateTopic(ctx, "..", 1, nil, false)), ErrInvalidTopic},
		{"bad char", second(c.node.CreateTopic(ctx, "a/b", 1, nil, false)), ErrInvalidTopic},
		{"too long", second(c.node.CreateTopic(ctx, strings.Repeat("a", 250), 1, nil, false)), ErrInvalidTopic},
		{"zero partitions", second(c.node.CreateTopic(ctx, "z", 0, nil, false)), ErrInvalidPartitions},
		{"too many partitions", second(c.node.CreateTopic(ctx, "z", maxPartitions+1, nil, false)), ErrInvalidPartitions},
		{"exists", second(c.node.CreateTopic(ctx, "exists", 1, nil, false)), ErrTopicExists},
		{"unknown config", second(c.node.CreateTopic(ctx, "z", 1, map[string]string{"nope": "1"}, false)), topicconfig.ErrUnknown},
		{"invalid config", second(c.node.CreateTopic(ctx, "z", 1, map[string]string{topicconfig.RetentionMs: "x"}, false)), topicconfig.ErrInvalid},
		{"unknown topic", second(c.node.Produce(ctx, "nope", 0, shardstore.NoProducer, keyed("a", 1))), ErrUnknownTopic},
		{"unknown partition", second(c.node.Produce(ctx, "exists", 1, shardstore.NoProducer, keyed("a", 1))), ErrUnknownPartition},
		{"negative partition", second(c.node.Produce(ctx, "exists", -1, shardstore.NoProducer, keyed("a", 1))), ErrUnknownPartition},
		{"empty batch", second(c.node.Produce(ctx, "exists", 0, shardstore.NoProducer, nil)), shardstore.ErrEmptyBatch},
		{"shrink partitions", c.node.CreatePartitions(ctx, "exists", 1, false), ErrInvalidPartitions},
		{"partitions of unknown", c.node.CreatePartitions(ctx, "nope", 3, false), ErrUnknownTopic},
		{"config of unknown", c.node.SetTopicConfig(ctx, "nope", nil, false), ErrUnknownTopic},
		{"bad config", c.node.SetTopicConfig(ctx, "exists", map[string]string{"x": "y"}, false), topicconfig.ErrUnknown},
		{"delete unknown", c.node.DeleteTopic(ctx, "nope"), ErrUnknownTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Fatalf("got %v, want %v", tt.err, tt.want)
			}
		})
	}
	t.Run("validate only creates nothing", func(t *testing.T) {
		if _, err := c.node.CreateTopic(ctx, "dry", 2, nil, true); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.node.Topic("dry"); ok {
			t.Fatal("validateOnly created the topic")
		}
	})
	t.Run("closed", func(t *testing.T) {
		c.node.Close()
		if err := c.node.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := c.node.Produce(ctx, "exists", 0, shardstore.NoProducer, keyed("a", 1)); !errors.Is(err, ErrClosed) {
			t.Fatalf("produce after close: %v", err)
		}
		if err := c.node.WaitReady(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("WaitReady after close: %v", err)
		}
	})
}

func second[T any](_ T, err error) error { return err }

func TestNodeLeadership(t *testing.T) {
	c := newTestCluster(t)
	if !c.node.Ready() {
		t.Fatal("not ready after WaitReady")
	}
	for g := uint32(0); g <= 2; g++ {
		if !c.node.IsLeader(g) || c.node.LeaderEpoch(g) < 1 {
			t.Fatalf("group %d: leader %v epoch %d", g, c.node.IsLeader(g), c.node.LeaderEpoch(g))
		}
		if v := metricValue(t, c.node.metrics.leader.WithLabelValues(groupLabel(g))); v != 1 {
			t.Fatalf("leader gauge of group %d = %v", g, v)
		}
	}
	if c.node.IsLeader(99) || c.node.LeaderEpoch(99) != -1 {
		t.Fatal("unknown group reported as led")
	}
}

func TestMetricsLint(t *testing.T) {
	c := newTestCluster(t)
	if _, err := c.node.CreateTopic(testCtx(t), "m", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	mfs := metricstest.Lint(t, c.reg)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"shardcache_raft_apply_duration_seconds", "shardcache_raft_commands_applied_total", "shardcache_raft_leader"} {
		if !names[want] {
			t.Errorf("metric %s not registered or never set", want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig(t.TempDir(), &shardstore.Store{})
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		mod   func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = -1 }},
		{"Dir", func(c *Config) { c.Dir = "" }},
		{"Store", func(c *Config) { c.Store = nil }},
		{"DataGroups", func(c *Config) { c.DataGroups = 0 }},
		{"HeartbeatTimeout", func(c *Config) { c.HeartbeatTimeout = 0 }},
		{"ElectionTimeout", func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }},
		{"LeaderLeaseTimeout", func(c *Config) { c.LeaderLeaseTimeout = c.HeartbeatTimeout * 2 }},
		{"CommitTimeout", func(c *Config) { c.CommitTimeout = 0 }},
		{"SnapshotThreshold", func(c *Config) { c.SnapshotThreshold = 0 }},
		{"MaxApplyBatchBytes", func(c *Config) { c.MaxApplyBatchBytes = MaxApplyBatchBytesLimit + 1 }},
		{"MaxPendingProposalBytes", func(c *Config) { c.MaxPendingProposalBytes = MinPendingProposalBytes - 1 }},
		{"BrokerTopicDefaults", func(c *Config) { c.BrokerTopicDefaults = map[string]string{"cleanup.policy": "both"} }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

// BenchmarkNodeProduce measures produce through Raft into the store: batches of
// 100 records with 100-byte values, from parallel producers over 8 partitions.
func BenchmarkNodeProduce(b *testing.B) {
	c := newTestCluster(b)
	ctx := testCtx(b)
	const parts = 8
	if _, err := c.node.CreateTopic(ctx, "bench", parts, nil, false); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetBytes(100 * 100)
	b.RunParallel(func(pb *testing.PB) {
		part := int32(next.Add(1) % parts)
		recs := make([]shardstore.Record, 100)
		i := 0
		for pb.Next() {
			for j := range recs {
				recs[j] = shardstore.Record{Key: fmt.Appendf(nil, "key-%d", (i*100+j)%10000), Value: make([]byte, 100)}
			}
			i++
			if _, err := c.node.Produce(ctx, "bench", part, shardstore.NoProducer, recs); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// lateContext is a context whose deadline has passed while its Done channel
// is still open and Err still nil, as a context.WithTimeout is between its
// deadline and its timer firing on a loaded machine.
type lateContext struct{ context.Context }

func (lateContext) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestProposePastDeadlineBeforeCtxErr: a proposal whose deadline has passed
// before ctx reports it fails with context.DeadlineExceeded. It answered a nil
// error and no response, which Produce turned into "produce applied with
// response <nil>" (UNKNOWN_SERVER_ERROR to the client) in
// TestSlowDiskFloodMemoryFlat.
func TestProposePastDeadlineBeforeCtxErr(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	if _, err := c.node.CreateTopic(ctx, "late", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	_, err := c.node.Produce(lateContext{context.Background()}, "late", 0, shardstore.NoProducer, keyed("k", 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Produce past its deadline = %v, want context.DeadlineExceeded", err)
	}
}

// TestNodeProduceManyOneEntryPerGroup: ProduceMany puts the batches of one
// Raft group in one entry, and each batch still has its own result: an
// out-of-order sequence, an unknown partition or topic fails only its batch,
// and a retry of the whole call answers every batch with its original
// offsets, also after a restart.
func TestNodeProduceManyOneEntryPerGroup(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "many", 8, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	groups := map[uint32]bool{}
	for _, p := range info.Partitions {
		groups[p.Group] = true
	}
	pid, epoch, err := c.node.InitProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var batches []PartBatch
	for p := int32(0); p < 8; p++ {
		batches = append(batches, PartBatch{Topic: "many", Partition: p,
			Producer: shardstore.Producer{ID: pid, Epoch: epoch}, Records: keyed(fmt.Sprintf("p%d-", p), 2)})
	}
	batches[3].Producer.BaseSequence = 5 // a gap: a new producer may start anywhere, so first write 0..1
	first := c.node.ProduceMany(ctx, []PartBatch{{Topic: "many", Partition: 3,
		Producer: shardstore.Producer{ID: pid, Epoch: epoch}, Records: keyed("p3-first", 2)}})
	if first[0].Err != nil {
		t.Fatal(first[0].Err)
	}
	batches = append(batches,
		PartBatch{Topic: "many", Partition: 8, Producer: shardstore.NoProducer, Records: keyed("x", 1)},
		PartBatch{Topic: "nope", Partition: 0, Producer: shardstore.NoProducer, Records: keyed("x", 1)})
	before := metricValue(t, c.node.metrics.applied.WithLabelValues(CmdProduceParts.String()))
	check := func(t *testing.T, res []PartResult, wantDup bool) {
		t.Helper()
		if len(res) != len(batches) {
			t.Fatalf("%d results for %d batches", len(res), len(batches))
		}
		for i, r := range res[:8] {
			if i == 3 {
				if !errors.Is(r.Err, shardstore.ErrOutOfOrderSequence) {
					t.Fatalf("partition 3: %+v, want ErrOutOfOrderSequence", r)
				}
				continue
			}
			if r.Err != nil || r.BaseOffset != 0 || r.Duplicate != wantDup {
				t.Fatalf("partition %d: %+v, want offset 0, duplicate %v", i, r, wantDup)
			}
		}
		if !errors.Is(res[8].Err, ErrUnknownPartition) || !errors.Is(res[9].Err, ErrUnknownTopic) {
			t.Fatalf("unknown partition %v, unknown topic %v", res[8].Err, res[9].Err)
		}
	}
	check(t, c.node.ProduceMany(ctx, batches), false)
	if got := metricValue(t, c.node.metrics.applied.WithLabelValues(CmdProduceParts.String())) - before; got != float64(len(groups)) {
		t.Fatalf("%v produce_parts entries for %d groups", got, len(groups))
	}
	check(t, c.node.ProduceMany(ctx, batches), true)
	c.restart()
	check(t, c.node.ProduceMany(ctx, batches), true)
	for p := int32(0); p < 8; p++ { // partition 3 holds its first write only
		if got := len(readAll(t, c.store, info.Partitions[p].Shard)); got != 2 {
			t.Fatalf("partition %d: read %d records, want 2", p, got)
		}
	}
}
