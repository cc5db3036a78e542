//go:build unix

package integration

// Fault tests: a 3-node cluster under the Jepsen-style workload
// (cluster_workload_test.go) through one fault, healed, then drained from
// every replica and judged by the checker. Each test also asserts that the
// fault moved some leadership away from its victim, so a clean verdict means
// something.
//
// SHARDCACHE_SOAK_DURATION (a Go duration, e.g. 5m; `make soak`) repeats each
// test's fault cycle until that much time has passed, on a new victim each
// cycle.

import (
	"os"
	"testing"
	"time"
)

const (
	// progressSends is how many more acknowledged sends every partition must
	// take before a calm phase ends and after each restart of a rolling
	// restart; progressTimeout bounds the wait for them.
	progressSends   = 20
	progressTimeout = 30 * time.Second
	// moveTimeout bounds the wait for a leadership to leave the victim.
	moveTimeout = 20 * time.Second
)

// faultPlan is how a fault test runs.
type faultPlan struct {
	Workload workloadConfig
	// Cycles is the number of fault cycles; more while soaking.
	Cycles int
	// Calm is how long the workload runs before each fault and after the
	// last heal (at least: every partition must also make progress).
	Calm time.Duration
	// Hold is how long each fault lasts.
	Hold time.Duration
}

// defaultPlan: one fault held for sixteen election timeouts, in about 16s of
// workload (each calm phase also waits for progressSends on every partition).
var defaultPlan = faultPlan{Workload: defaultWorkload, Cycles: 1, Calm: 3 * time.Second, Hold: 8 * time.Second}

// calm lets the workload run for d and until every partition has made
// progress.
func calm(w *workload, d time.Duration) {
	w.t.Helper()
	until := time.Now().Add(d)
	w.WaitProgress(progressSends, progressTimeout)
	time.Sleep(time.Until(until))
}

// soakDuration is SHARDCACHE_SOAK_DURATION, or 0.
func soakDuration(t testing.TB) time.Duration {
	t.Helper()
	s := os.Getenv("SHARDCACHE_SOAK_DURATION")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("SHARDCACHE_SOAK_DURATION=%q: %v", s, err)
	}
	return d
}

// leaderFault breaks the cluster around victim, a partition leader, and
// returns what heals it.
type leaderFault func(t *testing.T, c *testCluster, victim int32) (heal func())

// runLeaderFault runs the workload on a new 3-node cluster through cycles of
// f, each on the leader of the next partition of the delete-policy topic: a
// calm phase, inject, wait until a leadership leaves the victim, hold, heal,
// wait until the cluster is ready and led. plan.Cycles cycles, or as many as
// fit in the soak duration. Then a calm phase, stop, drain, check.
func runLeaderFault(t *testing.T, plan faultPlan, f leaderFault) *workload {
	began := time.Now()
	c := startCluster(t, 3)
	w := startWorkload(t, c, plan.Workload)
	soak := soakDuration(t)
	for cycle := 0; ; cycle++ {
		calm(w, plan.Calm)
		victim := w.LeaderOf(w.LogTopic, int32(cycle)%plan.Workload.Partitions)
		at := time.Now()
		t.Logf("cycle %d: fault on node %d", cycle, victim)
		heal := f(t, c, victim)
		w.WaitLeaderMoved(victim, at, moveTimeout)
		time.Sleep(time.Until(at.Add(plan.Hold)))
		heal()
		c.WaitReady()
		c.WaitLeaders(w.Topics()...)
		if t.Failed() || cycle+1 >= plan.Cycles && time.Since(began) >= soak {
			break
		}
	}
	calm(w, plan.Calm)
	w.Stop()
	w.Drain()
	w.Check()
	t.Logf("test took %v", time.Since(began).Round(100*time.Millisecond))
	return w
}

// TestClusterKillLeader: kill -9 of a partition leader, restarted on its
// data dir afterwards.
func TestClusterKillLeader(t *testing.T) {
	runLeaderFault(t, defaultPlan, func(t *testing.T, c *testCluster, victim int32) func() {
		c.Kill(victim)
		return func() { c.Start(victim) }
	})
}

// TestClusterWipedLeaderRejoins: kill -9 of a partition leader, its data dir
// deleted, and the node started again empty: it joins under its old node id
// as a new Raft server (a new incarnation), catches up from the leaders (the
// log, or a streamed snapshot), and the drain reads every record from it too.
func TestClusterWipedLeaderRejoins(t *testing.T) {
	runLeaderFault(t, defaultPlan, func(t *testing.T, c *testCluster, victim int32) func() {
		c.Kill(victim)
		c.Wipe(victim)
		return func() { c.Start(victim) }
	})
}

// TestClusterPauseLeader: SIGSTOP of a partition leader, well past the
// election timeout, then SIGCONT: the old leader wakes up deposed.
func TestClusterPauseLeader(t *testing.T) {
	runLeaderFault(t, defaultPlan, func(t *testing.T, c *testCluster, victim int32) func() {
		c.Pause(victim)
		return func() { c.Resume(victim) }
	})
}

// TestClusterPartitionLeaderMinority: a leader cut off from both other nodes
// (a minority of one; clients still reach it), then healed.
func TestClusterPartitionLeaderMinority(t *testing.T) {
	runLeaderFault(t, defaultPlan, func(t *testing.T, c *testCluster, victim int32) func() {
		c.Partition([]int32{victim}, others(c, victim))
		return c.Heal
	})
}

// TestClusterAsymmetricPartition: everything a leader sends to the other nodes
// is dropped, while what they send still reaches it. The others elect a new
// leader whose messages depose the old one, which cannot answer them.
func TestClusterAsymmetricPartition(t *testing.T) {
	runLeaderFault(t, defaultPlan, func(t *testing.T, c *testCluster, victim int32) func() {
		for _, j := range others(c, victim) {
			c.IsolateOneWay(victim, j)
		}
		return c.Heal
	})
}

// TestClusterIdempotentProducerLeaderKill: one fast franz-go idempotent
// producer (up to 5 requests in flight) on one partition through two kills of
// its leader. A request cut by a kill has an unknown outcome and is retried on
// the new leader; if the old leader had replicated it, the retry must get the
// original offset back rather than a second copy. The checker's duplicate and
// inconsistent-offsets checks judge that; the test also requires that some
// request was actually in doubt.
func TestClusterIdempotentProducerLeaderKill(t *testing.T) {
	plan := faultPlan{
		Workload: workloadConfig{
			Partitions:     1,
			Producers:      1,
			SendInterval:   time.Millisecond,
			MaxOutstanding: 1000,
		},
		Cycles: 2,
		Calm:   3 * time.Second,
		Hold:   3 * time.Second,
	}
	kills := 0
	w := runLeaderFault(t, plan, func(t *testing.T, c *testCluster, victim int32) func() {
		kills++
		c.Kill(victim)
		return func() { c.Start(victim) }
	})
	if w.inDoubt.Load() == 0 {
		t.Errorf("no produce request was in flight at any of %d kills: nothing was retried, the test proved nothing", kills)
	}
}

// TestClusterRollingRestart: SIGTERM each node in turn, start it again and
// wait until it is ready and every partition makes progress before the next.
// A stopping node hands its leaderships away, so no Raft group may time out
// waiting for the node being restarted (other election timeouts are not
// counted: on a loaded 2-core machine, and with the link proxies inside the
// -race test process, a heartbeat is now and then late).
func TestClusterRollingRestart(t *testing.T) {
	began := time.Now()
	// The default 1s timeouts: a hand-off must not need them, and a late
	// heartbeat is less likely to call an election that is not about the
	// restart.
	c := startCluster(t, 3, withRaftTimeouts(time.Second, time.Second))
	w := startWorkload(t, c, defaultWorkload)
	calm(w, defaultPlan.Calm)
	soak := soakDuration(t)
	for round := 0; ; round++ {
		for _, id := range c.IDs() {
			leads := w.leads(id)
			at := time.Now()
			t.Logf("round %d: restarting node %d (leads %d of the workload's partitions)", round, id, leads)
			c.Stop(id)
			if leads > 0 {
				w.WaitLeaderMoved(id, at, moveTimeout)
			}
			c.Start(id)
			c.WaitReady()
			c.WaitLeaders(w.Topics()...)
			w.WaitProgress(progressSends, progressTimeout)
			for _, e := range c.ElectionTimeouts(at) {
				if e.LastLeader == id {
					t.Errorf("node %d, raft group %s: timed out waiting for node %d, which was stopped with SIGTERM: it should have handed its leadership over", e.Node, e.Group, id)
				}
			}
		}
		if t.Failed() || time.Since(began) >= soak {
			break
		}
	}
	calm(w, defaultPlan.Calm)
	w.Stop()
	w.Drain()
	w.Check()
	t.Logf("test took %v", time.Since(began).Round(100*time.Millisecond))
}

// others returns every node id but id.
func others(c *testCluster, id int32) []int32 {
	var out []int32
	for _, j := range c.IDs() {
		if j != id {
			out = append(out, j)
		}
	}
	return out
}
