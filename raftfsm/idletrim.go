package raftfsm

// Idle log trim: a data group whose only replica is this node drops its Raft
// log once the store goes quiet, so the data dir holds the shards' records
// once, not also as the log entries that wrote them.
//
// Raft snapshots a group every snapshotInterval once SnapshotThreshold (2048)
// entries gathered past the last snapshot, and keeps trailingLogs (1024)
// entries after it for followers that lag. A load smaller than that stays
// whole in the log: after 1M records over 200k keys on 4 partitions each
// group's log held all of its 142 entries, 8 MB compressed, beside 5 MB of
// compacted tables (README, Data directory). A group with no other replica
// has no follower to send them to, and a server added later is sent a
// snapshot whatever the log holds (trimLogForNewServer), so once the store has
// taken no write for --idle-compaction (shardstore.Store.OnIdle), such a group
// is snapshotted with no trailing entries: the snapshot flushes the state DB
// (logicalSnapshot.Persist), Raft deletes the log up to it, and a compaction of
// the log DB's Raft span drops the deleted entries and the WAL files that
// held them. Groups with other replicas keep their log for those replicas.

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// trimIdleLogs is the store's idle hook (Open sets it, Close clears it).
func (n *Node) trimIdleLogs(ctx context.Context) {
	start := time.Now()
	var trimmed []uint32
	for _, g := range n.openGroups() {
		if ctx.Err() != nil || n.closed.Load() {
			return
		}
		if g.id == metaGroup || !n.onlyReplica(g) || !logPastSnapshot(g) {
			continue
		}
		if n.trimLog(g, 0) {
			trimmed = append(trimmed, g.id)
		}
	}
	if len(trimmed) == 0 {
		return
	}
	n.metrics.idleLogTrims.Add(float64(len(trimmed)))
	// The entries Raft deleted sit in the log DB's memtable (and, after a
	// long load, in its tables) under a range delete; compacting the Raft
	// span flushes the memtable, so its WAL files go, and drops them.
	span := []byte{prefixRaft}
	if err := n.store.LogDB().Compact(ctx, span, []byte{prefixRaft + 1}, false); err != nil && ctx.Err() == nil {
		n.log.Warn("compacting the raft log after an idle trim failed", keyError, err)
		return
	}
	n.log.Info("raft logs trimmed at idle", "raft_groups", len(trimmed), "took", time.Since(start))
}

// onlyReplica reports whether this node is the only server in group g's
// configuration.
func (n *Node) onlyReplica(g *group) bool {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	servers := f.Configuration().Servers
	return len(servers) == 1 && servers[0].ID == n.selfServerID()
}

// logPastSnapshot reports whether group g's log holds an entry its latest
// snapshot does not cover (or it has no snapshot), so a new one would delete
// something.
func logPastSnapshot(g *group) bool {
	last, err := g.logs.LastIndex()
	if err != nil || last == 0 {
		return false
	}
	metas, err := g.snaps.List()
	if err != nil {
		return false
	}
	return len(metas) == 0 || metas[0].Index < last // List is newest first
}

// trimLog snapshots group g with Raft's TrailingLogs lowered to at most keep
// for this one snapshot, so the log is deleted up to the snapshot but for its
// last keep entries, and reports whether the snapshot was taken. Calls are
// serialized (trimMu): each lowers TrailingLogs and puts back what it read, so
// two at once could leave the lowered value in force.
func (n *Node) trimLog(g *group, keep uint64) bool {
	n.trimMu.Lock()
	defer n.trimMu.Unlock()
	restore := g.raft.ReloadableConfig()
	trim := restore
	trim.TrailingLogs = min(restore.TrailingLogs, keep)
	if err := g.raft.ReloadConfig(trim); err != nil {
		n.log.Warn("lowering the raft log's trailing entries failed", keyGroup, g.id, keyError, err)
		return false
	}
	err := g.raft.Snapshot().Error()
	if rerr := g.raft.ReloadConfig(restore); rerr != nil {
		n.log.Warn("restoring the raft log's trailing entries failed", keyGroup, g.id, keyError, rerr)
	}
	if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) && !errors.Is(err, raft.ErrRaftShutdown) {
		n.log.Warn("trimming the raft log failed", keyGroup, g.id, keyError, err)
	}
	return err == nil
}
