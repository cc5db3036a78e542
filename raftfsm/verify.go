package raftfsm

// Reads that must never go back. A leader that was stopped (SIGSTOP, a long
// GC or VM pause) or cut off still believes it leads until it next hears
// from the others: hashicorp/raft steps it down at its first heartbeat
// answered with a newer term, or when its lease check finds no quorum. A
// request already waiting in its socket when it resumes can be answered in
// between, from state the new leader has since moved past: ListOffsets
// latest going back, committed offsets going back (found by
// TestClusterPauseLeader's checker). VerifyLeader closes that window with
// an entry this leader must commit in its own term before the read.
//
// Not raft.VerifyLeader: its quorum counts any successful answer a follower
// gives after the call began, including answers to requests sent before it.
// A leader stopped with AppendEntries answers in flight reads them on
// resuming and counts them as a quorum for a term that is over
// (TestClusterBugPausedLeaderAnswersStale failed so under make test's load).
// A Barrier's index is new, so only answers to requests that carry it, sent
// after the call began, can commit it.

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// VerifyLeader returns nil once this node has committed a Barrier in group
// g as its leader, after the call began, and applied every entry before it:
// state read after it is at least as new as anything another leader of g
// answered before the call. A group whose only voter is this node returns at
// once (no other node can lead it). ErrNotLeader when this node does not
// lead g or loses the leadership meanwhile; ctx's error or ErrClosed when
// those end first. It costs one round of log replication (with the disk
// writes it takes); concurrent calls share raft's batches.
func (n *Node) VerifyLeader(ctx context.Context, g uint32) error {
	grp := n.group(g)
	if grp == nil {
		return fmt.Errorf("%w: group %d is not on this node", ErrNotLeader, g)
	}
	if grp.raft.State() != raft.Leader {
		return fmt.Errorf("%w: group %d", ErrNotLeader, g)
	}
	if n.soleVoter(grp) {
		return nil
	}
	f := grp.raft.Barrier(n.cfg.ElectionTimeout)
	done := make(chan error, 1)
	// raft answers the future once the Barrier applied, or when this node
	// steps down (at the latest at its lease check, LeaderLeaseTimeout
	// without a quorum) or shuts down; the goroutine ends then, as
	// barrier's does.
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return n.raftError(ctx, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.shutdownCh:
		return ErrClosed
	case <-grp.stop:
		return ErrClosed
	}
}

// soleVoter reports whether this node is the only voter of grp's latest
// configuration.
func (n *Node) soleVoter(grp *group) bool {
	f := grp.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			id, ok := parseServerID(s.ID)
			self = self || ok && id == n.cfg.NodeID
		}
	}
	return voters == 1 && self
}
