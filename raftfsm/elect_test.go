package raftfsm

import (
	"context"
	"testing"
	"time"
)

// TestSingleNodeElectsAtOnce: a single node's groups, each with this node as
// their only voter, elect it without waiting out their heartbeat timeout, on
// the first start (bootstrap) and on a restart, and keep running with the
// configured timeout (electAloneAtOnce). The heartbeat timeout here is 40 s, so
// an ordinary election would come 40-80 s after the open; the test cluster
// waits 10 s for the node to be ready.
func TestSingleNodeElectsAtOnce(t *testing.T) {
	const heartbeat = 40 * time.Second
	c := &testCluster{tb: t, dir: t.TempDir(), now: time.Now}
	c.adjust = func(cfg *Config) {
		cfg.HeartbeatTimeout = heartbeat
		cfg.ElectionTimeout = heartbeat
		cfg.LeaderLeaseTimeout = time.Second
	}
	c.start()
	t.Cleanup(c.stop)
	check := func(when string) {
		t.Helper()
		groups := c.node.openGroups()
		if len(groups) < 2 {
			t.Fatalf("%s: %d raft groups open", when, len(groups))
		}
		for _, g := range groups {
			if got := g.raft.ReloadableConfig().HeartbeatTimeout; got != heartbeat {
				t.Errorf("%s: raft group %d runs with a heartbeat timeout of %s, want %s", when, g.id, got, heartbeat)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.node.CreateTopic(ctx, "elect-"+when, 1, nil, false); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check("bootstrap")
	c.restart()
	check("restart")
}
