package raftfsm

import "github.com/hashicorp/raft"

// GroupStatus is a read-only view of one Raft group on this node, for the status
// page and operators. Values are read without locks from the raft library's
// atomics, so fields may come from slightly different instants.
type GroupStatus struct {
	// Group is the group id: 0 is cluster metadata, 1..N carry partitions.
	Group uint32
	// State is the raft role: "Leader", "Follower", "Candidate" or "Shutdown".
	State string
	// Leader is the address of the group's current leader ("" when unknown);
	// LeaderID its server id.
	Leader   string
	LeaderID string
	// LeaderNode is the leader's node id, -1 when unknown.
	LeaderNode int32
	// Term is the current Raft term (a data group's Kafka leader epoch).
	Term uint64
	// LastIndex is the last index in the log; CommitIndex the last committed
	// one; AppliedIndex the last one raft has applied, no-op, barrier and
	// configuration entries included (the FSM sees only commands), so a
	// caught-up replica's AppliedIndex reaches its CommitIndex.
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// StoreApplied is the group's applied index in the store: the last
	// command the state machine has written. Raft's AppliedIndex counts
	// entries handed to the state machine, which may still be writing them
	// (up to 128 batches behind on a replica that catches up from the log).
	StoreApplied uint64
	// Ready: this node leads the group and has applied its whole log.
	Ready bool
	// Voters and Nonvoters are the group's configuration as this node last
	// read it (node ids).
	Voters    []int32 `json:",omitempty"`
	Nonvoters []int32 `json:",omitempty"`
}

// GroupStatuses returns the status of every Raft group of the node, by group id.
// It is safe for concurrent use and never blocks on Raft.
func (n *Node) GroupStatuses() []GroupStatus {
	groups := n.openGroups()
	out := make([]GroupStatus, 0, len(groups))
	for _, g := range groups {
		addr, id := g.raft.LeaderWithID()
		var voters, nonvoters []int32
		if p := g.servers.Load(); p != nil {
			for _, s := range *p {
				if node, ok := parseServerID(s.ID); ok {
					if s.Suffrage == raft.Voter {
						voters = append(voters, node)
					} else {
						nonvoters = append(nonvoters, node)
					}
				}
			}
		}
		leaderNode := int32(-1)
		if node, ok := parseServerID(id); ok && id != "" {
			leaderNode = node
		}
		out = append(out, GroupStatus{
			LeaderNode:   leaderNode,
			Group:        g.id,
			State:        g.raft.State().String(),
			Leader:       string(addr),
			LeaderID:     string(id),
			Term:         g.raft.CurrentTerm(),
			LastIndex:    g.raft.LastIndex(),
			CommitIndex:  g.raft.CommitIndex(),
			AppliedIndex: g.raft.AppliedIndex(),
			StoreApplied: g.fsm.appliedIndex.Load(),
			Ready:        g.ready.Load(),
			Voters:       sortedNodeIDs(voters),
			Nonvoters:    sortedNodeIDs(nonvoters),
		})
	}
	return out
}
