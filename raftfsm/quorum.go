package raftfsm

// The metadata group as a Raft quorum, for Kafka's DescribeQuorum
// (kafka-metadata-quorum describe --status): who leads, in which term, how far
// the log is committed and how far each replica's log reaches. Each replica's
// log end comes from that node's own status (the control RPC's status
// operation, as the membership loop asks it before promoting a non-voter), so
// a node may answer whichever node leads.

import (
	"context"
	"sync"
	"time"
)

// QuorumReplica is one replica of the metadata group.
type QuorumReplica struct {
	// Node is the replica's node id.
	Node int32
	// LogEndIndex is the last index in its Raft log, -1 when it did not
	// answer.
	LogEndIndex int64
	// AppliedIndex is the last index it has applied, -1 when it did not
	// answer.
	AppliedIndex int64
	// Answered is when it answered the status request; zero when it did not.
	Answered time.Time
}

// QuorumStatus is the metadata group's state as DescribeQuorum reports it.
type QuorumStatus struct {
	// Leader is the leading node, -1 when none is known.
	Leader int32
	// Term is the Raft term (Kafka's leader epoch of the quorum).
	Term uint64
	// CommitIndex is the leader's commit index (Kafka's high watermark of the
	// metadata log); this node's own when the leader did not answer.
	CommitIndex uint64
	// Voters and Observers (non-voters) by node id, as this node last read
	// the group's configuration.
	Voters, Observers []QuorumReplica
}

// MetadataQuorum asks every replica of the metadata group for its status and
// returns the quorum as seen from here. A replica that does not answer within
// a second keeps LogEndIndex -1. It never proposes anything.
func (n *Node) MetadataQuorum(ctx context.Context) (QuorumStatus, error) {
	g := n.group(metaGroup)
	if g == nil {
		return QuorumStatus{}, ErrNotReady
	}
	q := QuorumStatus{Leader: -1, Term: g.raft.CurrentTerm(), CommitIndex: g.raft.CommitIndex()}
	if id, ok := n.metaLeader(); ok {
		q.Leader = id
	}
	var voters, observers []int32
	for _, s := range n.GroupStatuses() {
		if s.Group == metaGroup {
			voters, observers = s.Voters, s.Nonvoters
		}
	}
	ids := append(append([]int32(nil), voters...), observers...)
	reps := make([]QuorumReplica, len(ids))
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, id := range ids {
		reps[i] = QuorumReplica{Node: id, LogEndIndex: -1, AppliedIndex: -1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sts []GroupStatus
			if id == n.cfg.NodeID {
				sts = n.GroupStatuses()
			} else {
				resp, err := n.call(ctx, n.dialAddr(id), &rpcRequest{Op: opStatus})
				if err != nil || resp.err() != nil {
					return
				}
				sts = resp.Status
			}
			for _, s := range sts {
				if s.Group == metaGroup {
					reps[i].LogEndIndex, reps[i].AppliedIndex = int64(s.LastIndex), int64(s.AppliedIndex)
					reps[i].Answered = n.cfg.Now()
					if id == q.Leader {
						q.CommitIndex = s.CommitIndex
					}
				}
			}
		}()
	}
	wg.Wait()
	q.Voters, q.Observers = reps[:len(voters)], reps[len(voters):]
	return q, nil
}
