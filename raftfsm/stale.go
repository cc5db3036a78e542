package raftfsm

// Stale replicas. When a data group's placement no longer names this node
// (DELETE /v1/cluster/nodes/{id} of another node re-placed replicas, or a new
// node took this one's place), the group's leader removes this node from the
// group's configuration (membership.go). hashicorp/raft never tells a removed
// follower: the leader simply stops replicating to it. So each control round
// this node asks the group's leader, as the replicated leader table names it,
// for its status, and once that leader reports a configuration without this
// node (and not before) the node shuts its replica down and deletes the
// group's local state: its snapshots, its Raft log and stable store, its
// shards and its applied index. If the placement names the node again later,
// the control loop opens the group afresh and the leader adds it back as a new
// non-voter, which receives a snapshot.
//
// Crash safety: the snapshot folder goes first, then the shards and applied
// index in the state DB (one batch, flushed), and last the Raft log and
// stable store in the Raft log DB (one synced range delete). A crash before
// the last step leaves the group's Raft state, so the restarted node opens
// the group again and the next control round drops it again; no crash leaves
// snapshots without Raft state (which a later replica of the group on this
// node would wrongly start from).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// dropStaleGroups closes and deletes the data groups this node carries but
// is no longer placed on, once their leaders have removed it.
func (n *Node) dropStaleGroups(ctx context.Context, m *metadata) {
	for _, g := range n.openGroups() {
		if g.id == metaGroup {
			continue
		}
		rs := n.placed(m, g.id)
		if len(rs) == 0 || containsNode(rs, n.cfg.NodeID) {
			continue // not placed yet, or still wanted
		}
		if g.raft.State() == raft.Leader {
			continue // it hands leadership away first (membership.go)
		}
		if !n.removedFromGroup(ctx, g.id, m) {
			continue
		}
		n.log.Info("closing raft group this node was removed from", keyGroup, g.id)
		if err := n.dropGroup(g); err != nil && ctx.Err() == nil {
			n.log.Warn("dropping removed raft group failed", keyGroup, g.id, keyError, err)
		}
	}
}

// removedFromGroup reports whether data group g's leader, as m's leader table
// names it, leads g and reports a configuration (voters and non-voters, as it
// last read them) without this node. Any doubt (no known leader, no answer, no
// configuration read yet) is a no.
func (n *Node) removedFromGroup(ctx context.Context, g uint32, m *metadata) bool {
	tl, ok := m.leaders[g]
	if !ok || tl.Node < 0 || tl.Node == n.cfg.NodeID {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := n.call(ctx, n.dialAddr(tl.Node), &rpcRequest{Op: opStatus})
	if err != nil || resp.err() != nil {
		return false
	}
	for _, s := range resp.Status {
		if s.Group != g || s.State != raft.Leader.String() || s.Term < tl.Term {
			continue
		}
		self := n.cfg.NodeID
		return len(s.Voters) > 0 && !slices.Contains(s.Voters, self) && !slices.Contains(s.Nonvoters, self)
	}
	return false
}

// dropGroup shuts group g down and deletes its local state (see the file
// comment). Only the control loop calls it.
func (n *Node) dropGroup(g *group) error {
	n.groupsMu.Lock()
	if n.groups[g.id] != g {
		n.groupsMu.Unlock()
		return nil
	}
	delete(n.groups, g.id)
	n.groupsMu.Unlock()
	close(g.stop)
	f := g.raft.Shutdown()
	closeTransport(g.trans) // as shutdownGroups: unblocks a pipelined write
	err := f.Error()
	g.snaps.closeOffers()
	n.metrics.setLeader(g.id, false)
	n.changed()
	if err != nil {
		return fmt.Errorf("raft shutdown: %w", err)
	}
	if err := os.RemoveAll(n.groupDir(g.id)); err != nil {
		return err
	}
	b := n.store.NewBatch()
	defer b.Close()
	for _, s := range n.store.GroupShards(g.id) {
		if err := b.DeleteShard(s); err != nil {
			return fmt.Errorf("shard %d: %w", s, err)
		}
	}
	b.DeleteApplied(g.id)
	if err := b.Commit(); err != nil {
		return err
	}
	// The state DB has no WAL: flush the removal before the Raft state goes,
	// so a crash in between leaves Raft state and the group is dropped again.
	if err := n.store.Flush(); err != nil {
		return err
	}
	start, end := raftGroupPrefix(g.id, 0)[:5], raftGroupPrefix(g.id+1, 0)[:5]
	if g.id == ^uint32(0) {
		end = []byte{prefixRaft + 1}
	}
	return n.store.LogDB().DeleteRange(start, end, pebble.Sync)
}

// placed returns the nodes data group g should have, preferred leader first:
// m's placement, as placementFilter rewrites it in tests.
func (n *Node) placed(m *metadata, g uint32) []int32 {
	rs := m.placement[g]
	if f := n.placementFilter.Load(); f != nil {
		return (*f)(g, rs)
	}
	return rs
}

// groupDir is the folder of group id's snapshots.
func (n *Node) groupDir(id uint32) string {
	return filepath.Join(n.cfg.Dir, "group-"+strconv.FormatUint(uint64(id), 10))
}
