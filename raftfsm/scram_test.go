package raftfsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/shardcache/shardcache/internal/scram"
)

func testScram(tb testing.TB, user string, m scram.Mechanism, password string) ScramCredential {
	tb.Helper()
	c, err := scram.NewCredential(m, password, scram.MinIterations)
	if err != nil {
		tb.Fatal(err)
	}
	return ScramCredential{User: user, Credential: c}
}

func TestNodeScramCredentials(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	alice256 := testScram(t, "alice", scram.SHA256, "a")
	alice512 := testScram(t, "alice", scram.SHA512, "a")
	bob := testScram(t, "bob", scram.SHA256, "b")
	for _, cr := range []ScramCredential{alice256, alice512, bob} {
		if err := c.node.UpsertScramCredential(ctx, cr); err != nil {
			t.Fatal(err)
		}
	}
	// An upsert replaces.
	bob2 := testScram(t, "bob", scram.SHA256, "b2")
	if err := c.node.UpsertScramCredential(ctx, bob2); err != nil {
		t.Fatal(err)
	}
	if err := c.node.DeleteScramCredential(ctx, "alice", scram.SHA256); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		c    ScramCredential
	}{
		{"empty user", testScram(t, "", scram.SHA256, "x")},
		{"few iterations", func() ScramCredential { x := testScram(t, "x", scram.SHA256, "x"); x.Iterations = 4095; return x }()},
		{"short key", func() ScramCredential {
			x := testScram(t, "x", scram.SHA256, "x")
			x.StoredKey = x.StoredKey[:5]
			return x
		}()},
		{"unknown mechanism", func() ScramCredential { x := testScram(t, "x", scram.SHA256, "x"); x.Mechanism = 3; return x }()},
	}
	for _, tt := range bad {
		if err := c.node.UpsertScramCredential(ctx, tt.c); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: err %v, want ErrBadRequest", tt.name, err)
		}
	}
	if err := c.node.DeleteScramCredential(ctx, "carol", scram.SHA256); !errors.Is(err, ErrUnknownCredential) {
		t.Fatalf("delete unknown: %v", err)
	}
	check := func() {
		t.Helper()
		got := c.node.ScramCredentials()
		if len(got) != 2 || got[0].User != "alice" || got[0].Mechanism != scram.SHA512 || got[1].User != "bob" {
			t.Fatalf("credentials %+v", got)
		}
		if _, ok := c.node.ScramCredential("alice", scram.SHA256); ok {
			t.Fatal("deleted credential still there")
		}
		b, ok := c.node.ScramCredential("bob", scram.SHA256)
		if !ok || !bytes.Equal(b.StoredKey, bob2.StoredKey) || !scram.VerifyPassword(b, "b2") {
			t.Fatal("bob's credential is not the replaced one")
		}
	}
	check()
	c.restart() // from the stored metadata (and the log)
	check()
}

// TestClusterScramFromAnyNode changes credentials on a node that does not
// lead the metadata group, and sees them on every node, a node that joins
// later included (it gets them from the metadata log or snapshot).
func TestClusterScramFromAnyNode(t *testing.T) {
	nodes := newTCPCluster(t, 2)
	ctx := testCtx(t)
	follower := metaFollower(t, nodes)
	cr := testScram(t, "alice", scram.SHA512, "pw")
	if err := follower.node.UpsertScramCredential(ctx, cr); err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, newTCPNode(t, 3, []string{nodes[0].addr}))
	if err := nodes[2].node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the credential on every node", 30*time.Second, func() bool {
		for _, n := range nodes {
			got, ok := n.node.ScramCredential("alice", scram.SHA512)
			if !ok || !scram.VerifyPassword(got, "pw") {
				return false
			}
		}
		return true
	})
	if err := nodes[2].node.DeleteScramCredential(ctx, "alice", scram.SHA512); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion on every node", 30*time.Second, func() bool {
		for _, n := range nodes {
			if _, ok := n.node.ScramCredential("alice", scram.SHA512); ok {
				return false
			}
		}
		return true
	})
}
