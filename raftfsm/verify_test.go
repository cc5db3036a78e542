package raftfsm

import (
	"errors"
	"testing"
)

// TestVerifyLeaderNeedsQuorum: VerifyLeader confirms the group's leader while
// a quorum answers, refuses followers, and refuses the leader too once its
// followers are gone, though it believed itself leader when the call began.
func TestVerifyLeaderNeedsQuorum(t *testing.T) {
	nodes := newTCPCluster(t, 3)
	ctx := testCtx(t)
	info, err := nodes[0].node.CreateTopic(ctx, "events", 1, map[string]string{"cleanup.policy": "delete"}, false)
	if err != nil {
		t.Fatal(err)
	}
	g := info.Partitions[0].Group
	leader := readyLeaderOf(t, nodes, g)
	if err := leader.node.VerifyLeader(ctx, g); err != nil {
		t.Fatalf("leader %d: VerifyLeader: %v", leader.id, err)
	}
	var followers []*tcpNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
			if err := n.node.VerifyLeader(ctx, g); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("follower %d: VerifyLeader: %v, want ErrNotLeader", n.id, err)
			}
		}
	}
	if err := leader.node.VerifyLeader(ctx, 1<<20); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a group not on the node: %v, want ErrNotLeader", err)
	}

	for _, f := range followers {
		f.node.noHandOff = true
		f.stop()
	}
	if err := leader.node.VerifyLeader(ctx, g); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("leader %d without followers: VerifyLeader: %v, want ErrNotLeader", leader.id, err)
	}
}

// TestVerifyLeaderSoleVoter: a group whose only voter is this node is
// confirmed at once, without an entry in its log.
func TestVerifyLeaderSoleVoter(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	g := c.node.group(1)
	before := g.raft.LastIndex()
	if err := c.node.VerifyLeader(ctx, 1); err != nil {
		t.Fatalf("VerifyLeader: %v", err)
	}
	if after := g.raft.LastIndex(); after != before {
		t.Fatalf("the log went from index %d to %d", before, after)
	}
}
