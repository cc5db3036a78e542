package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

// tcpNode is one node of an in-process cluster over real TCP on loopback:
// its own store, its own node-to-node listener, restartable on the same port.
type tcpNode struct {
	tb     testing.TB
	id     int32
	dir    string
	addr   string
	join   []string
	adjust func(*Config)
	store  *shardstore.Store
	node   *Node
}

func newTCPNode(tb testing.TB, id int32, join []string) *tcpNode {
	tb.Helper()
	return newTCPNodeWith(tb, id, join, nil)
}

// newTCPNodeWith is newTCPNode with a hook that adjusts the node's Config.
func newTCPNodeWith(tb testing.TB, id int32, join []string, adjust func(*Config)) *tcpNode {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	n := &tcpNode{tb: tb, id: id, dir: tb.TempDir(), addr: ln.Addr().String(), join: join, adjust: adjust}
	n.start(ln)
	tb.Cleanup(n.stop)
	return n
}

func (n *tcpNode) start(ln net.Listener) {
	n.tb.Helper()
	if ln == nil {
		var err error
		// The port was ours a moment ago; retry briefly while the old
		// listener's socket goes away.
		deadline := time.Now().Add(5 * time.Second)
		for ln, err = net.Listen("tcp", n.addr); err != nil && time.Now().Before(deadline); ln, err = net.Listen("tcp", n.addr) {
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			n.tb.Fatal(err)
		}
	}
	store, err := shardstore.Open(filepath.Join(n.dir, "data"), shardstore.Options{Logger: testLogger(n.tb), CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		n.tb.Fatal(err)
	}
	cfg := testConfig(n.dir, store)
	cfg.NodeID = n.id
	cfg.Logger = testLogger(n.tb)
	cfg.Listener = ln
	cfg.ClusterAddr = n.addr
	cfg.KafkaAddr = "127.0.0.1:1"
	cfg.Join = n.join
	// Several processes' worth of groups share two cores: timeouts as a real
	// cluster on one box would use (docs/ARCHITECTURE.md, Raft timeouts).
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	if n.adjust != nil {
		n.adjust(&cfg)
	}
	node, err := Open(cfg)
	if err != nil {
		store.Close()
		n.tb.Fatal(err)
	}
	n.store, n.node = store, node
}

func (n *tcpNode) stop() {
	if n.node != nil {
		n.node.Close()
		n.node = nil
	}
	if n.store != nil {
		n.store.Close()
		n.store = nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metaFollower returns a node of nodes that does not lead the metadata group.
func metaFollower(tb testing.TB, nodes []*tcpNode) *tcpNode {
	tb.Helper()
	for _, n := range nodes {
		if !n.node.leadsMeta() {
			return n
		}
	}
	tb.Fatal("no node follows the metadata group")
	return nil
}

// newTCPCluster starts node 1, which bootstraps, and nodes 2..size joining it,
// and waits until every data group has a voter on every node.
func newTCPCluster(tb testing.TB, size int) []*tcpNode {
	tb.Helper()
	nodes := []*tcpNode{newTCPNode(tb, 1, nil)}
	for id := 2; id <= size; id++ {
		nodes = append(nodes, newTCPNode(tb, int32(id), []string{nodes[0].addr}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.node.WaitReady(ctx); err != nil {
			tb.Fatalf("node %d: WaitReady: %v", n.id, err)
		}
	}
	waitFor(tb, "every group to have voters on every node", 30*time.Second, func() bool {
		for _, n := range nodes {
			for _, s := range n.node.GroupStatuses() {
				if len(s.Voters) != min(size, 3) && s.Group != metaGroup {
					return false
				}
				if s.Group == metaGroup && len(s.Voters) != metaVoterTarget(size) {
					return false
				}
			}
			if len(n.node.GroupStatuses()) != 1+n.node.metadata().settings.dataGroups {
				return false
			}
		}
		return true
	})
	return nodes
}

// leaderOf returns the node that leads group g, waiting for one.
func readyLeaderOf(tb testing.TB, nodes []*tcpNode, g uint32) *tcpNode {
	tb.Helper()
	var out *tcpNode
	waitFor(tb, "a ready leader", 20*time.Second, func() bool {
		for _, n := range nodes {
			if n.node != nil && n.node.IsLeader(g) {
				out = n
				return true
			}
		}
		return false
	})
	return out
}

// produceOnLeader produces recs on the partition's current leader, retrying
// while leadership moves (elections happen when two cores are busy).
func produceOnLeader(tb testing.TB, nodes []*tcpNode, topic string, p PartitionInfo, recs []shardstore.Record) (*tcpNode, shardstore.AppendResult) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := readyLeaderOf(tb, nodes, p.Group)
		res, err := l.node.Produce(testCtx(tb), topic, p.Partition, shardstore.NoProducer, recs)
		if err == nil {
			return l, res
		}
		// A topic created through another node reaches this one's metadata a
		// moment later.
		retriable := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNotReady) || errors.Is(err, ErrUnknownTopic)
		if !retriable || time.Now().After(deadline) {
			tb.Fatalf("produce %s/%d on node %d: %v", topic, p.Partition, l.id, err)
		}
	}
}

func TestClusterFormsAndReplicates(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	ctx := testCtx(t)

	// Every node knows every node, the cluster id and the placement.
	for _, n := range nodes {
		if got := len(n.node.Nodes()); got != 3 {
			t.Fatalf("node %d knows %d nodes", n.id, got)
		}
		if n.node.ClusterID() != nodes[0].node.ClusterID() || n.node.ClusterID() == "" {
			t.Fatalf("node %d cluster id %q, node 1 %q", n.id, n.node.ClusterID(), nodes[0].node.ClusterID())
		}
	}
	m := nodes[0].node.metadata()
	lead := map[int32]int{}
	for g := uint32(1); g <= uint32(m.settings.dataGroups); g++ {
		if rs := m.placement[g]; len(rs) != 3 {
			t.Fatalf("group %d placed on %v", g, rs)
		}
		lead[m.placement[g][0]]++
	}
	if len(lead) < 2 {
		t.Fatalf("preferred leaders not spread: %v", lead)
	}

	// A topic created through a node that does not lead the metadata group.
	creator := metaFollower(t, nodes)
	info, err := creator.node.CreateTopic(ctx, "orders", 4, nil, false)
	if err != nil {
		t.Fatalf("CreateTopic via node %d: %v", creator.id, err)
	}
	for _, n := range nodes {
		if _, ok := n.node.Topic("orders"); !ok {
			waitFor(t, "topic on every node", 10*time.Second, func() bool { _, ok := n.node.Topic("orders"); return ok })
		}
	}

	// Produce on each partition's leader; a non-leader refuses.
	for _, p := range info.Partitions {
		l, res := produceOnLeader(t, nodes, "orders", p, keyed("k", 10))
		if res.BaseOffset != 0 {
			t.Fatalf("produce p%d on leader %d: %+v", p.Partition, l.id, res)
		}
		for _, n := range nodes {
			if n == l {
				continue
			}
			if _, err := n.node.Produce(ctx, "orders", p.Partition, shardstore.NoProducer, keyed("k", 1)); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("produce on follower %d: %v, want ErrNotLeader", n.id, err)
			}
		}
	}
	// Every replica applies every record.
	for _, n := range nodes {
		for _, p := range info.Partitions {
			waitFor(t, "records on every replica", 10*time.Second, func() bool {
				st, err := n.store.State(p.Shard)
				return err == nil && st.HighWatermark == 10
			})
			if got := readAll(t, n.store, p.Shard); len(got) != 10 {
				t.Fatalf("node %d p%d has %d records", n.id, p.Partition, len(got))
			}
		}
	}

	// Producer ids are unique across nodes.
	seen := map[int64]int32{}
	for _, n := range nodes {
		for i := 0; i < 3; i++ {
			id, _, err := n.node.InitProducerID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if other, dup := seen[id]; dup {
				t.Fatalf("producer id %d handed out by nodes %d and %d", id, other, n.id)
			}
			seen[id] = n.id
		}
	}
}

func TestClusterFailover(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	ctx := testCtx(t)
	info, err := nodes[0].node.CreateTopic(ctx, "events", 1, map[string]string{"cleanup.policy": "delete"}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	old, _ := produceOnLeader(t, nodes, "events", p, keyed("a", 5))
	epoch := old.node.LeaderEpoch(p.Group)

	// Stop the leader without handing leadership over: the others elect.
	old.node.noHandOff = true
	old.stop()
	var rest []*tcpNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	nl, res := produceOnLeader(t, rest, "events", p, keyed("b", 5))
	// The new leader's epoch reaches the leader table a moment after it wins.
	waitFor(t, "the new leader's epoch", 10*time.Second, func() bool { return nl.node.LeaderEpoch(p.Group) > epoch })
	if res.BaseOffset != 5 {
		t.Fatalf("produce on new leader %d: %+v", nl.id, res)
	}

	// The old leader comes back, catches up and follows.
	old.start(nil)
	if err := old.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old leader to catch up", 10*time.Second, func() bool {
		st, err := old.store.State(p.Shard)
		return err == nil && st.HighWatermark == 10
	})
	if got := readAll(t, old.store, p.Shard); len(got) != 10 || string(got[9].Value) != "b-value-4" {
		t.Fatalf("old leader has %d records", len(got))
	}
}

func TestClusterReplaceDeadNode(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	ctx := testCtx(t)
	info, err := nodes[0].node.CreateTopic(ctx, "kept", 2, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Partitions {
		produceOnLeader(t, nodes, "kept", p, keyed("x", 20))
	}
	// A fourth node joins: every group is full, so it carries none yet but
	// follows the metadata group.
	spare := newTCPNode(t, 4, []string{nodes[0].addr})
	if err := spare.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(spare.node.openGroups()); got != 1 {
		t.Fatalf("spare node opened %d groups, want only metadata", got)
	}

	// Node 2 dies for good; an operator removes it through node 3.
	dead := nodes[1]
	dead.node.noHandOff = true
	dead.stop()
	live := []*tcpNode{nodes[0], nodes[2], spare}
	if err := nodes[2].node.RemoveNode(ctx, dead.id); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	waitFor(t, "node 4 to replace node 2 in every group", 30*time.Second, func() bool {
		for _, n := range live {
			for _, s := range n.node.GroupStatuses() {
				if containsNode(s.Voters, dead.id) || containsNode(s.Nonvoters, dead.id) {
					return false
				}
				if s.Group != metaGroup && !containsNode(s.Voters, spare.id) {
					return false
				}
			}
		}
		return len(spare.node.openGroups()) == 1+spare.node.metadata().settings.dataGroups
	})
	// The new replica holds every record.
	for _, p := range info.Partitions {
		waitFor(t, "records on the new replica", 10*time.Second, func() bool {
			st, err := spare.store.State(p.Shard)
			return err == nil && st.HighWatermark == 20
		})
	}
	for _, n := range live {
		if got := len(n.node.Nodes()); got != 3 {
			t.Fatalf("node %d lists %d live nodes", n.id, got)
		}
	}
	// The removed id cannot come back.
	if err := nodes[0].node.RemoveNode(ctx, 99); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("RemoveNode(99) = %v", err)
	}
}

// A node whose data dir was wiped joins again under its old node id: it is a
// new Raft server (new incarnation), so the leaders swap the old server for it
// and it catches up before it votes.
func TestClusterWipedNodeRejoins(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	ctx := testCtx(t)
	info, err := nodes[0].node.CreateTopic(ctx, "wiped", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	produceOnLeader(t, nodes, "wiped", p, keyed("w", 30))
	// A log longer than what trimLogForNewServer keeps: one entry each.
	for i := range newServerTrailingLogs + 20 {
		produceOnLeader(t, nodes, "wiped", p, keyed(fmt.Sprintf("x%d-", i), 1))
	}
	records := int64(30 + newServerTrailingLogs + 20)

	victim := nodes[2]
	oldSID := victim.node.selfServerID()
	victim.node.noHandOff = true
	victim.stop()
	if err := os.RemoveAll(victim.dir); err != nil {
		t.Fatal(err)
	}
	victim.dir = t.TempDir()
	victim.join = []string{nodes[0].addr}
	victim.start(nil)
	if err := victim.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	newSID := victim.node.selfServerID()
	if newSID == oldSID {
		t.Fatalf("wiped node kept server id %s", oldSID)
	}
	waitFor(t, "the wiped node to be a voter again with its new server id everywhere", 30*time.Second, func() bool {
		for _, n := range nodes {
			for _, g := range n.node.openGroups() {
				sp := g.servers.Load()
				if sp == nil {
					return false
				}
				var hasNew, hasOld bool
				for _, s := range *sp {
					hasNew = hasNew || (s.ID == newSID && s.Suffrage == raft.Voter)
					hasOld = hasOld || s.ID == oldSID
				}
				if !hasNew || hasOld {
					return false
				}
			}
		}
		return true
	})
	waitFor(t, "records on the rejoined node", 10*time.Second, func() bool {
		st, err := victim.store.State(p.Shard)
		return err == nil && st.HighWatermark == records
	})
	// The partition's group came as a snapshot, not as its log from index 1
	// (trimLogForNewServer): a log it was sent whole would start at 1.
	g := victim.node.group(p.Group)
	if g == nil {
		t.Fatalf("raft group %d not open on the wiped node", p.Group)
	}
	if fi, err := g.logs.FirstIndex(); err != nil || fi == 1 {
		t.Errorf("raft group %d on the wiped node: log starts at %d (%v), so it was sent the log, not a snapshot", p.Group, fi, err)
	}
	// No node dials the old server any more: its address is where the new
	// incarnation listens.
	for _, n := range nodes[:2] {
		addr, err := n.node.ServerAddr(oldSID)
		if err != nil {
			t.Fatal(err)
		}
		layer, err := n.node.mux.Layer(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if conn, err := layer.Dial(addr, time.Second); !errors.Is(err, errStaleServer) {
			if conn != nil {
				conn.Close()
			}
			t.Errorf("node %d dialing the wiped node's old server %s at %q: %v, want %v", n.id, oldSID, addr, err, errStaleServer)
		}
		layer.Close()
		if addr, err := n.node.ServerAddr(newSID); err != nil || addr != raft.ServerAddress(victim.addr) {
			t.Errorf("node %d: address of the new server %s is %q (%v), want %q", n.id, newSID, addr, err, victim.addr)
		}
	}
}

// A node that joins after the leaders trimmed their logs catches up from a
// streamed snapshot of each group, over the real transport.
func TestClusterJoinFromSnapshot(t *testing.T) { testJoinFromSnapshot(t, func(*Config) {}) }

// testJoinFromSnapshot is TestClusterJoinFromSnapshot with adjust applied to
// both nodes' configs.
func testJoinFromSnapshot(t *testing.T, adjust func(*Config)) {
	first := newTCPNodeWith(t, 1, nil, func(c *Config) { c.trailingLogs = 4; adjust(c) })
	ctx := testCtx(t)
	if err := first.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := first.node.CreateTopic(ctx, "snapped", 2, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		for _, p := range info.Partitions {
			if _, err := first.node.Produce(ctx, "snapped", p.Partition, shardstore.NoProducer, keyed(fmt.Sprintf("b%d", i), 5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, g := range first.node.openGroups() {
		if err := g.raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot of group %d: %v", g.id, err)
		}
		if fi, _ := g.logs.FirstIndex(); fi <= 1 {
			t.Fatalf("group %d log not trimmed (first index %d)", g.id, fi)
		}
	}
	second := newTCPNodeWith(t, 2, []string{first.addr}, adjust)
	if err := second.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new node's groups", 20*time.Second, func() bool {
		return len(second.node.openGroups()) == 1+second.node.metadata().settings.dataGroups
	})
	for _, p := range info.Partitions {
		waitFor(t, "records on the new node", 20*time.Second, func() bool {
			st, err := second.store.State(p.Shard)
			return err == nil && st.HighWatermark == 100
		})
		want := readAll(t, first.store, p.Shard)
		got := readAll(t, second.store, p.Shard)
		if len(got) != len(want) || len(got) != 100 {
			t.Fatalf("partition %d: %d records on the new node, %d on the first", p.Partition, len(got), len(want))
		}
	}
	if _, ok := second.node.Topic("snapped"); !ok {
		t.Fatal("metadata from the snapshot does not have the topic")
	}
}

// TestClusterSnapshotPull: an offered export is pulled over the control RPC
// as the same bytes a sized export streams, once; a ref to an offer that is
// gone or to a group not carried is answered with an error that says so.
func TestClusterSnapshotPull(t *testing.T) {
	nodes := newTCPCluster(t, 2)
	ctx := testCtx(t)
	info, err := nodes[0].node.CreateTopic(ctx, "pulled", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	produceOnLeader(t, nodes, "pulled", p, keyed("k", 50))
	src := nodes[0]
	g := src.node.group(p.Group)
	if g == nil {
		t.Fatalf("raft group %d not open on node %d", p.Group, src.id)
	}
	sized, err := src.store.Export(p.Group, shardstore.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(sized)
	sized.Close()
	if err != nil || int64(len(want)) != sized.Size() {
		t.Fatalf("sized export: %d of %d bytes: %v", len(want), sized.Size(), err)
	}
	unsized, err := src.store.Export(p.Group, shardstore.ExportOptions{Unsized: true})
	if err != nil {
		t.Fatal(err)
	}
	if unsized.Size() != -1 {
		t.Errorf("unsized export: size %d, want -1", unsized.Size())
	}
	ref := snapshotRef{group: p.Group, applied: unsized.Applied(), node: src.id, export: g.snaps.offer(unsized)}
	rc, err := nodes[1].node.pullSnapshot(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("pulled %d bytes (%v), want the sized export's %d", len(got), err, len(want))
	}
	for name, bad := range map[string]snapshotRef{
		"taken":       ref,
		"never made":  {group: p.Group, node: src.id, export: ref.export + 1},
		"other group": {group: 1 << 20, node: src.id, export: 1},
	} {
		if _, err := nodes[1].node.pullSnapshot(ctx, bad); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "no snapshot offer") {
			t.Errorf("%s: pull answered %v, want a bad request naming the missing offer", name, err)
		}
	}
	if _, err := nodes[1].node.pullSnapshot(ctx, snapshotRef{group: p.Group, node: 99, export: 1}); err == nil || !strings.Contains(err.Error(), "no address known for node 99") {
		t.Errorf("pull from an unknown node: %v", err)
	}
}

// A data group's leader snapshots and trims its log before adding a server
// only when its last snapshot would leave the server more than
// newServerTrailingLogs entries to apply, or the log still starts at index 1
// (recentSnapshotSuffices): each snapshot flushes the state DB.
func TestTrimLogForNewServerSkipsRecentSnapshot(t *testing.T) {
	nodes := newTCPCluster(t, 1)
	n := nodes[0]
	ctx := testCtx(t)
	info, err := n.node.CreateTopic(ctx, "trim", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	g := n.node.group(p.Group)
	if g == nil {
		t.Fatalf("raft group %d not open", p.Group)
	}
	// newest is the index of the group's latest snapshot, 0 for none.
	newest := func() uint64 {
		t.Helper()
		metas, err := g.snaps.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(metas) == 0 {
			return 0
		}
		return metas[0].Index
	}
	produce := func(entries int) {
		t.Helper()
		for i := range entries {
			produceOnLeader(t, nodes, "trim", p, keyed(fmt.Sprintf("e%d-", i), 1))
		}
	}

	// More than the trim keeps, so the trim moves the log's start.
	produce(newServerTrailingLogs + 20)
	if first, err := g.logs.FirstIndex(); err != nil || first != 1 {
		t.Fatalf("log starts at %d (%v) before any snapshot, want 1", first, err)
	}
	n.node.trimLogForNewServer(g)
	s1 := newest()
	if first, err := g.logs.FirstIndex(); err != nil || first <= 1 || s1 == 0 {
		t.Fatalf("a log from index 1: after the trim it starts at %d (%v), latest snapshot at %d; want a snapshot and a trimmed log", first, err, s1)
	}

	produce(5)
	n.node.trimLogForNewServer(g)
	if s := newest(); s != s1 {
		t.Errorf("5 entries after the snapshot at %d: a new snapshot at %d, want none", s1, s)
	}

	produce(newServerTrailingLogs + 1)
	n.node.trimLogForNewServer(g)
	if s := newest(); s <= s1 {
		t.Errorf("%d entries after the snapshot at %d: latest snapshot at %d, want a new one", newServerTrailingLogs+6, s1, s)
	}
}
