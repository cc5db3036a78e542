package raftfsm

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

// TestClusterDropsRemovedReplica: a node taken out of a data group's placement
// keeps its replica while the group's leader still has it in the
// configuration, closes it and deletes its local state once the leader has
// removed it, and receives the group afresh when it is placed there again.
// Today's placement never takes a live node out of a group, so the test
// rewrites the placement the control loops act on (placementFilter).
func TestClusterDropsRemovedReplica(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	spare := newTCPNode(t, 4, []string{nodes[0].addr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := spare.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(nodes), spare)
	info, err := nodes[0].node.CreateTopic(ctx, "moved", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Partitions[0]
	g := p.Group
	produceOnLeader(t, nodes, "moved", p, keyed("x", 20))
	hasRecords := func(n *tcpNode) bool {
		st, err := n.store.State(p.Shard)
		return err == nil && st.HighWatermark == 20
	}
	var victim *tcpNode
	waitFor(t, "a follower of the group with every record", 30*time.Second, func() bool {
		for _, n := range nodes {
			if !n.node.IsLeader(g) && n.node.Carries(g) && hasRecords(n) {
				victim = n
				return true
			}
		}
		return false
	})
	swap := func(gg uint32, rs []int32) []int32 {
		if gg != g {
			return rs
		}
		out := slices.Clone(rs)
		for i, id := range out {
			if id == victim.id {
				out[i] = spare.id
			}
		}
		return out
	}

	// Only the victim sees itself out of the placement: the leader still has
	// it in the configuration, so it must keep its replica.
	victim.node.placementFilter.Store(&swap)
	if victim.node.removedFromGroup(ctx, g, victim.node.metadata()) {
		t.Fatal("removedFromGroup is true while the leader's configuration has the node")
	}
	if !victim.node.Carries(g) || !hasRecords(victim) {
		t.Fatal("the victim dropped its replica before its leader removed it")
	}

	// Every node acts on the new placement: the leader removes the victim and
	// adds the spare; the victim drops the group.
	for _, n := range all {
		n.node.placementFilter.Store(&swap)
	}
	// The Raft state goes last (after the shards, flushed): wait for it too.
	waitFor(t, "the victim to drop the group and the spare to carry it", time.Minute, func() bool {
		withState, err := groupsWithState(victim.store.LogDB())
		return !victim.node.Carries(g) && len(victim.store.GroupShards(g)) == 0 && err == nil && !slices.Contains(withState, g) &&
			spare.node.Carries(g) && hasRecords(spare)
	})
	if _, err := victim.store.State(p.Shard); err == nil {
		t.Fatal("the victim still has the partition's shard")
	}
	if applied, err := victim.store.Applied(g); err != nil || applied != 0 {
		t.Fatalf("the victim's applied index of group %d: %d, %v", g, applied, err)
	}
	withState, err := groupsWithState(victim.store.LogDB())
	if err != nil || slices.Contains(withState, g) {
		t.Fatalf("the victim's raft state: groups %v (%v), want none for group %d", withState, err, g)
	}
	if _, err := os.Stat(victim.node.groupDir(g)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the victim's snapshot folder of group %d: %v", g, err)
	}
	for _, s := range victim.node.GroupStatuses() {
		if s.Group == g {
			t.Fatal("the victim still reports the group")
		}
	}
	// The victim's other groups are untouched.
	if !victim.node.Carries(metaGroup) {
		t.Fatal("the victim dropped the metadata group")
	}

	// Placed back: the victim opens the group afresh and receives the records;
	// the spare, no longer placed, drops it.
	for _, n := range all {
		n.node.placementFilter.Store(nil)
	}
	waitFor(t, "the victim to receive the group again and the spare to drop it", time.Minute, func() bool {
		return victim.node.Carries(g) && hasRecords(victim) && !spare.node.Carries(g) && len(spare.store.GroupShards(g)) == 0
	})
}
