//go:build unix

package integration

// Regression tests for cluster bugs found by the fault tests, named after the
// bug; each comment says what broke and how it was fixed.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterBugStaleLeaderWithNewEpoch: Metadata must never name two
// different leaders for one partition in one leader epoch.
//
// Fixed in raftfsm: GroupLeader answers for this node only when it leads and
// its Barrier applied, with the term it won (recorded with the Barrier), and
// otherwise from the leader table; reportLeader reports that recorded term;
// a restarted node reports ready only once its metadata caught up with the
// leader. What broke:
//
// A partition's leader and epoch come from GroupLeader, which reads the
// group's term (raft.CurrentTerm) and its leader (raft.LeaderWithID) one
// after the other. hashicorp/raft bumps a follower's term as soon as it
// grants a vote to a candidate of a newer term, but keeps the old leader
// until the new leader's first AppendEntries arrives (raft.go requestVote:
// setState(Follower); setCurrentTerm(req.Term); no setLeader). A leadership
// transfer (every SIGTERM hands leaderships over) skips the "we have a
// leader" vote check, so in that window the follower's GroupLeader answers
// (old leader, new term): the new epoch with the old leader. Seconds later
// every node answers (new leader, same epoch). reportLeader has the same race
// in the replicated leader table: it checks State() == Leader, then reads
// CurrentTerm(), which a step-down may have bumped in between, so a deposed
// leader can record itself as leader of the next term.
//
// Clients take a newer epoch as the truth (KIP-951 CurrentLeader, Metadata)
// and ignore an equal one, so a client that saw (old leader, new epoch) is
// sent back to the old leader and then disregards the correct answer for that
// epoch until a Metadata refresh. Found by the fault tests' leader watcher
// (TestClusterRollingRestart: "node 3 named leader 2 for epoch 4", then every
// node named leader 3 for epoch 4).
//
// A fix: read leader and term together and consistently (for example take the
// leader only from a LeaderObservation recorded with the term it was seen in,
// or answer "no leader" while LeaderWithID's leader was seen in an older term
// than CurrentTerm), and in reportLeader propose the term observed when
// leadership was gained, not CurrentTerm() read later.
//
// The test also fails when one node's epoch for a partition goes back. Seen
// now and then just after a node restarts (SIGTERM here; kill -9 in
// TestClusterKillLeader: "node 1: leader epoch of compact/0 went back from 3
// to 2 (leader 1)", the restarted node naming itself at its old epoch). Not
// traced to a line; the likely path is GroupLeader's fallback to the leader
// table (no local leader known, or the local term below the table's) while
// the restarted node's copy of the metadata group, and so the table, is
// still behind.
//
// The test polls every node's Metadata as fast as it answers while each node
// in turn is stopped with SIGTERM (handing its leaderships over) and started
// again, twice round.
func TestClusterBugStaleLeaderWithNewEpoch(t *testing.T) {
	c := startCluster(t, 3)
	topic := topicName(t)
	// Eight partitions span every data group.
	createClusterTopic(t, c.Client(t), topic, 8, nil)
	c.WaitReplicated(topic)
	c.WaitLeaders(topic)

	type report struct {
		node, leader int32
		at           time.Time
	}
	type key struct{ partition, epoch int32 }
	var (
		mu        sync.Mutex
		byEpoch   = make(map[key][]report) // distinct leaders per epoch, first report of each
		lastEpoch = make(map[[2]int32]int32)
		backwards []string
		polls     int
	)
	record := func(node int32, ps map[int32]partitionState) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		polls++
		for p, st := range ps {
			if st.Leader < 0 {
				continue
			}
			np := [2]int32{node, p}
			if prev, ok := lastEpoch[np]; ok && st.Epoch < prev {
				backwards = append(backwards, fmt.Sprintf("node %d at %s: partition %d: epoch %d (leader %d) after epoch %d",
					node, now.Format("15:04:05.000"), p, st.Epoch, st.Leader, prev))
			}
			lastEpoch[np] = max(lastEpoch[np], st.Epoch)
			k := key{p, st.Epoch}
			if !slices.ContainsFunc(byEpoch[k], func(r report) bool { return r.leader == st.Leader }) {
				byEpoch[k] = append(byEpoch[k], report{node, st.Leader, now})
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, id := range c.IDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if !slices.Contains(c.live(), id) {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				rctx, rcancel := context.WithTimeout(ctx, time.Second)
				ps, err := c.partitions(rctx, id, topic)
				rcancel()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				record(id, ps)
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	for round := range 2 {
		for _, id := range c.IDs() {
			t.Logf("round %d: restarting node %d", round, id)
			c.Stop(id)
			c.Start(id)
			t.Logf("node %d ready again at %s", id, time.Now().Format("15:04:05.000"))
			c.WaitLeaders(topic)
		}
	}
	cancel()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d Metadata answers read", polls)
	var bad []string
	for k, rs := range byEpoch {
		if len(rs) < 2 {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].at.Before(rs[j].at) })
		var parts []string
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("leader %d (first named by node %d at %s)", r.leader, r.node, r.at.Format("15:04:05.000")))
		}
		bad = append(bad, fmt.Sprintf("partition %d, epoch %d: %s", k.partition, k.epoch, strings.Join(parts, ", then ")))
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Errorf("two leaders named for one epoch: %s", b)
	}
	for _, b := range backwards {
		t.Errorf("leader epoch went back: %s", b)
	}
}

// TestClusterBugShutdownHangs: SIGTERM to all three nodes at once (Ctrl-C on
// `make cluster`, a whole-cluster stop) must stop every node.
//
// Fixed in raftfsm: Node.barrier waits on the Barrier future or Close,
// whichever comes first. What broke:
//
// While the nodes shut down together each hands its leaderships to the others,
// so a node that is already in Node.Close can win an election. Its
// watchLeadership goroutine then waits on g.raft.Barrier(...).Error(). The
// timeout given to Barrier bounds only the enqueue: hashicorp/raft sets no
// ShutdownCh on Apply and Barrier futures, so a barrier that was handed to
// the FSM goroutine (fsmMutateCh) just before raft.Shutdown is never answered
// (hashicorp/raft#498, open). Close waits for watchLeadership (n.wg.Wait in
// lifecycle.go) and the process never exits; a second signal or SIGKILL is
// needed. Goroutine dump of a hung node (node 1, after "leaderships handed
// over" and "election won" for groups it received during its own shutdown):
//
//	goroutine 1 [sync.WaitGroup.Wait]: raftfsm.(*Node).Close.func1 lifecycle.go:426
//	goroutine 82 [select]: raft.(*deferError).Error future.go:113
//	    raft.(*logFuture).Error; raftfsm.(*Node).watchLeadership
//
// A fix: never block on a raft future's Error() in a goroutine Close waits
// for without also selecting on shutdown (wait for the future in a select with
// n.shutdownCh, or a helper that does), or stop tracking that goroutine.
//
// The test stops (SIGTERMs 10 to 30 ms apart) and restarts the whole cluster
// up to ten times; the harness dumps a hung node's goroutines (SIGQUIT) into
// the log. On this 2-core machine it hung within ten rounds in every run
// tried (about one whole-cluster stop in six hangs).
func TestClusterBugShutdownHangs(t *testing.T) {
	// More groups, more leaderships moving during each stop.
	c := startCluster(t, 3, withNodeArgs("--raft-groups=16"))
	// SIGTERMs 10 to 30 ms apart reproduce it more often than all at once.
	for round := range 10 {
		if hung := c.stopAll(allStopTimeout, time.Duration(round%3+1)*10*time.Millisecond); len(hung) > 0 {
			t.Fatalf("round %d: nodes %v did not exit within %v of SIGTERM; their goroutines are above (SIGQUIT)", round, hung, allStopTimeout)
		}
		c.StartAll()
	}
}
