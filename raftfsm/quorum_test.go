package raftfsm

import (
	"testing"
	"time"
)

// TestMetadataQuorum: every node describes the same metadata quorum, each
// replica's log end read from that replica over the control RPC; a stopped
// replica is reported without a log end.
func TestMetadataQuorum(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	// A fourth node carries the metadata group as a non-voter.
	nodes = append(nodes, newTCPNode(t, 4, []string{nodes[0].addr}))
	if err := nodes[3].node.WaitReady(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	leader := readyLeaderOf(t, nodes, metaGroup)
	for _, n := range nodes {
		var q QuorumStatus
		waitFor(t, "a quorum with every replica answering", 20*time.Second, func() bool {
			var err error
			if q, err = n.node.MetadataQuorum(testCtx(t)); err != nil {
				t.Fatalf("node %d: %v", n.id, err)
			}
			for _, r := range append(append([]QuorumReplica(nil), q.Voters...), q.Observers...) {
				if r.LogEndIndex < 1 || r.Answered.IsZero() {
					return false
				}
			}
			return q.Leader == leader.id && len(q.Voters)+len(q.Observers) == 4
		})
		if len(q.Voters) != 3 || len(q.Observers) != 1 || q.Term < 1 || q.CommitIndex < 1 {
			t.Fatalf("node %d: quorum %+v; want 3 voters, 1 observer, a term and a commit index", n.id, q)
		}
		seen := map[int32]bool{}
		for _, r := range append(append([]QuorumReplica(nil), q.Voters...), q.Observers...) {
			seen[r.Node] = true
		}
		if len(seen) != 4 {
			t.Fatalf("node %d: replicas %v, want all 4 nodes once", n.id, seen)
		}
	}

	// Stop a voter that does not lead: the others report it without a log end.
	var gone *tcpNode
	q, err := leader.node.MetadataQuorum(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range q.Voters {
		if r.Node != leader.id {
			gone = nodes[r.Node-1]
			break
		}
	}
	gone.stop()
	q, err = leader.node.MetadataQuorum(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(append([]QuorumReplica(nil), q.Voters...), q.Observers...) {
		if answered := r.LogEndIndex >= 0 && !r.Answered.IsZero(); answered == (r.Node == gone.id) {
			t.Fatalf("replica %+v; node %d is stopped", r, gone.id)
		}
	}
}
