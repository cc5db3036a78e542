package raftfsm

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
	// Term is the current Raft term (a data group's Kafka leader epoch).
	Term uint64
	// LastIndex is the last index in the log; CommitIndex the last committed
	// one; AppliedIndex the last one applied to the FSM.
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// Ready: this node leads the group and has applied its whole log.
	Ready bool
}

// GroupStatuses returns the status of every Raft group of the node, by group id.
// It is safe for concurrent use and never blocks on Raft.
func (n *Node) GroupStatuses() []GroupStatus {
	out := make([]GroupStatus, 0, len(n.groups))
	for _, g := range n.groups {
		addr, id := g.raft.LeaderWithID()
		out = append(out, GroupStatus{
			Group:        g.id,
			State:        g.raft.State().String(),
			Leader:       string(addr),
			LeaderID:     string(id),
			Term:         g.raft.CurrentTerm(),
			LastIndex:    g.raft.LastIndex(),
			CommitIndex:  g.raft.CommitIndex(),
			AppliedIndex: g.raft.AppliedIndex(),
			Ready:        g.ready.Load(),
		})
	}
	return out
}
