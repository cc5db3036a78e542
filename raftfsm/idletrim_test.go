package raftfsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardcache/shardcache/shardstore"
)

// TestIdleLogTrim: on a node that is its groups' only replica, a quiet store
// has the log of a group that wrote entries deleted up to a new snapshot; the
// records survive a restart (which then replays nothing) and writes go on.
func TestIdleLogTrim(t *testing.T) {
	c := &testCluster{tb: t, dir: t.TempDir(), now: time.Now, idle: 500 * time.Millisecond}
	c.start()
	t.Cleanup(c.stop)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "trim", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	const entries = 40
	for i := range entries {
		if _, err := c.node.Produce(ctx, "trim", 0, shardstore.NoProducer, keyed(fmt.Sprintf("e%d", i), 5)); err != nil {
			t.Fatal(err)
		}
	}
	g := c.node.group(p.Group)
	// A loaded machine may space two produces past the idle delay, so a trim
	// may come before the last entry; the one after it empties the log.
	waitFor(t, "an idle trim that empties the log", 20*time.Second, func() bool {
		first, _ := g.logs.FirstIndex()
		return testutil.ToFloat64(c.node.metrics.idleLogTrims) >= 1 && first == 0
	})
	metas, err := g.snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("no snapshot after the idle trim (%v)", err)
	}
	if got := len(readAll(t, c.store, p.Shard)); got != entries*5 {
		t.Fatalf("read %d records after the trim, want %d", got, entries*5)
	}

	c.restart()
	ctx = testCtx(t)
	if got := len(readAll(t, c.store, p.Shard)); got != entries*5 {
		t.Fatalf("read %d records after a restart, want %d", got, entries*5)
	}
	if _, err := c.node.Produce(ctx, "trim", 0, shardstore.NoProducer, keyed("after", 5)); err != nil {
		t.Fatal(err)
	}
	if got := len(readAll(t, c.store, p.Shard)); got != entries*5+5 {
		t.Fatalf("read %d records after a write past the restart, want %d", got, entries*5+5)
	}
}

// TestIdleLogTrimKeepsReplicatedLogs: a group with another replica keeps its
// log for that replica, on its leader and its follower.
func TestIdleLogTrimKeepsReplicatedLogs(t *testing.T) {
	nodes := newTCPCluster(t, 2)
	ctx := testCtx(t)
	info, err := nodes[0].node.CreateTopic(ctx, "kept", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	for i := range 20 {
		produceOnLeader(t, nodes, "kept", p, keyed(fmt.Sprintf("e%d", i), 1))
	}
	for _, n := range nodes {
		g := n.node.group(p.Group)
		if g == nil {
			t.Fatalf("node %d: raft group %d not open", n.id, p.Group)
		}
		waitFor(t, "two replicas in the group's configuration", 20*time.Second, func() bool {
			f := g.raft.GetConfiguration()
			return f.Error() == nil && len(f.Configuration().Servers) == 2
		})
		first, _ := g.logs.FirstIndex()
		last, _ := g.logs.LastIndex()
		if first == 0 || last < first {
			t.Fatalf("node %d: log holds %d..%d before the trim", n.id, first, last)
		}
		n.node.trimIdleLogs(ctx)
		if f, _ := g.logs.FirstIndex(); f != first {
			t.Errorf("node %d: log started at %d, after an idle trim at %d; want it kept", n.id, first, f)
		}
		if got := testutil.ToFloat64(n.node.metrics.idleLogTrims); got != 0 {
			t.Errorf("node %d: %v idle trims counted, want 0", n.id, got)
		}
	}
}

// TestClusterJoinAfterIdleTrim: a single node whose data groups' logs the idle
// trim emptied takes a second node: the new replicas start from streamed
// snapshots, and the writes after the join reach both nodes.
func TestClusterJoinAfterIdleTrim(t *testing.T) {
	first := newTCPNode(t, 1, nil)
	ctx := testCtx(t)
	if err := first.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := first.node.CreateTopic(ctx, "trimmed", 2, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		for _, p := range info.Partitions {
			if _, err := first.node.Produce(ctx, "trimmed", p.Partition, shardstore.NoProducer, keyed(fmt.Sprintf("b%d", i), 5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	first.node.trimIdleLogs(ctx)
	for _, p := range info.Partitions {
		g := first.node.group(p.Group)
		if last, _ := g.logs.LastIndex(); last != 0 {
			t.Fatalf("raft group %d: log ends at %d after the idle trim, want it empty", p.Group, last)
		}
	}

	nodes := []*tcpNode{first, newTCPNode(t, 2, []string{first.addr})}
	if err := nodes[1].node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Partitions {
		waitFor(t, "the joined node's copy of the records", 30*time.Second, func() bool {
			st, err := nodes[1].store.State(p.Shard)
			return err == nil && st.HighWatermark == 50
		})
		produceOnLeader(t, nodes, "trimmed", p, keyed("after", 5))
		for _, n := range nodes {
			waitFor(t, "the write after the join on both nodes", 30*time.Second, func() bool {
				st, err := n.store.State(p.Shard)
				return err == nil && st.HighWatermark == 55
			})
			if got := readAll(t, n.store, p.Shard); len(got) != 55 {
				t.Fatalf("node %d, partition %d: %d records, want 55", n.id, p.Partition, len(got))
			}
		}
	}
}
