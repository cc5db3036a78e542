package raftfsm

// Leader loss, as a replica sees it. The leader table (view.go) names a data
// group's leader until the next leader's report is committed, and that report
// needs an election first, plus, when the dead node also led the metadata
// group, a second one. A replica of the group knows sooner: its leader stops
// sending, then its Raft forgets the leader and elects another. Kafka answers
// a partition whose leader is not alive with LEADER_NOT_AVAILABLE and leader
// -1, never with the dead broker; LeaderLost lets Metadata do the same, and
// AwaitLeaders lets it wait out the election so that a client that refreshes
// once, right after the failure, learns the new leader (docs/ARCHITECTURE.md,
// "Failover").

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// leaderSilentAfter, in heartbeat timeouts, is how long a follower may go
// without hearing from its leader before LeaderLost reports the group leaderless.
// hashicorp/raft's leader sends a heartbeat every 1/10 to 2/10 of
// HeartbeatTimeout, and appends in between, so a live leader is silent for
// longer than 2/10 only when something is wrong: it is dead, stopped or cut
// off, or this node is too loaded to read. A false alarm ends at the next
// heartbeat.
const leaderSilentAfter = 0.2

// leaderPoll is how often AwaitLeaders looks again.
const leaderPoll = 20 * time.Millisecond

// LeaderLost reports whether this node, a follower of data group g, sees that
// the group has no live leader although the leader table may still name one:
// its Raft knows no leader (an election is under way), names another leader
// than the table (the new leader's report is not committed yet), has heard
// nothing from the leader since a connection the leader dialed here was
// closed by the leader's end (a killed process: its sockets close at once),
// or has not heard from it for leaderSilentAfter heartbeat timeouts (a
// stopped or cut-off leader). A connection the leader closes on purpose
// (its pool is full) raises a false alarm that its next heartbeat ends. On
// the group's Raft leader it reports whether the table still names another
// node (this node's report is not committed yet). It is false on nodes that
// do not carry g and for the metadata group; there the leader table, or
// GroupLeader, is the answer.
func (n *Node) LeaderLost(g uint32) bool {
	if g == metaGroup {
		return false
	}
	grp := n.group(g)
	if grp == nil || grp.raft.State() == raft.Shutdown {
		return false
	}
	tl, known := n.metadata().leaders[g]
	if grp.raft.State() == raft.Leader {
		// A new leader: the table names the old one until this node's
		// report is committed.
		return known && tl.Node >= 0 && tl.Node != n.cfg.NodeID
	}
	_, id := grp.raft.LeaderWithID()
	leader, ok := parseServerID(id)
	if id == "" || !ok {
		return true
	}
	if known && tl.Node >= 0 && tl.Node != leader {
		return true
	}
	last := grp.raft.LastContact()
	if last.IsZero() {
		return true
	}
	if n.mux != nil && n.mux.peerClosedAt(g, leader).After(last) {
		return true // the leader's connection closed, nothing heard since
	}
	return time.Since(last) > time.Duration(leaderSilentAfter*float64(n.cfg.HeartbeatTimeout))
}

// LeaderWait is the longest AwaitLeaders waits: a follower notices a dead
// leader within two heartbeat timeouts, and an election, split votes
// included, ends within about two election timeouts.
func (n *Node) LeaderWait() time.Duration {
	return 2 * (n.cfg.HeartbeatTimeout + n.cfg.ElectionTimeout)
}

// AwaitLeaders waits while LeaderLost holds for any of groups: until each has
// a live leader that the leader table names, for at most LeaderWait, or until
// ctx ends or the node closes. It returns at once when no group is lost, the
// usual case; a false alarm (a late heartbeat) costs one heartbeat.
func (n *Node) AwaitLeaders(ctx context.Context, groups []uint32) {
	lost := func() bool {
		for _, g := range groups {
			if n.LeaderLost(g) {
				return true
			}
		}
		return false
	}
	if !lost() {
		return
	}
	deadline := time.NewTimer(n.LeaderWait())
	defer deadline.Stop()
	tick := time.NewTicker(leaderPoll)
	defer tick.Stop()
	for lost() {
		select {
		case <-ctx.Done():
			return
		case <-n.shutdownCh:
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}
