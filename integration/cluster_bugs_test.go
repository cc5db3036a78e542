//go:build unix

package integration

// Regression tests for cluster bugs found by the fault tests, named after the
// bug; each comment says what broke and how it was fixed.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// TestClusterBugPausedLeaderAnswersStale: a leader that was paused past the
// election timeout must not answer, when it resumes, the requests that waited
// in its sockets from its own now-stale state: ListOffsets(latest) went back,
// and committed offsets could go back.
//
// Fixed in raftfsm.Node.VerifyLeader and its callers (ListOffsets,
// OffsetFetch): the leader commits a Raft Barrier in its term before it
// reads. A first fix with raft.VerifyLeader still answered stale in one run
// of three under load (its quorum counts answers to requests sent before the
// pause). What broke: TestClusterPauseLeader's checker in CI,
// "nonmonotonic-list-offsets log/0@492: latest offset 492 observed after 493
// had been", on both partitions the paused node had led. While node 1 was
// stopped a client, whose metadata still named it, sent it a ListOffsets;
// node 3 meanwhile took over and answered 493. On SIGCONT node 1 read the
// waiting request and answered from its own store (492) before hashicorp/raft
// stepped it down (its lease check, or its first heartbeat answered with a
// newer term), since partitionRole only asks raft.State().
//
// Each round queues both requests at the paused leader of the partition and
// of a group's offsets, after the new leaders took newer writes, and resumes
// it: each answer must be an error or at least as new as those writes. On
// resuming, the node either handles its waiting requests before its Raft
// steps down or after (all of them the same way); the old code answered stale
// in about half the rounds, so the test runs three.
func TestClusterBugPausedLeaderAnswersStale(t *testing.T) {
	// Each round holds the pause as long as the fault tests do: the old
	// code answered stale in no round of six with 2 s pauses, in about half
	// the rounds with 8 s (why the length matters was not traced).
	const rounds, pauseHold = 3, 8 * time.Second
	c := startCluster(t, 3)
	topic := topicName(t)
	cl := c.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createClusterTopic(t, cl, topic, 1, nil)
	c.WaitLeaders(topic)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	produced := int64(0)
	for round := range rounds {
		produceN(ctx, t, cl, 10)
		produced += 10
		victim, group, direct := pausedLeaderSetup(ctx, t, c, topic, fmt.Sprintf("%s-r%d", topic, round), produced)

		pausedAt := time.Now()
		c.Pause(victim)
		t.Logf("round %d: paused node %d, which leads %s/0 and coordinates %s", round, victim, topic, group)
		var coord int32
		c.waitFor("a new leader and coordinator", func(ctx context.Context) error {
			for _, id := range c.live() {
				ps, err := c.partitions(ctx, id, topic)
				if err != nil {
					return err
				}
				if l := ps[0].Leader; l < 0 || l == victim {
					return fmt.Errorf("node %d names leader %d", id, l)
				}
				var code int16
				if coord, code, err = c.findGroupCoordinator(ctx, id, group); err != nil || code != 0 || coord == victim {
					return fmt.Errorf("node %d names coordinator %d (code %d, %v)", id, coord, code, err)
				}
			}
			return nil
		})
		// Through the live nodes only: a request sent to the stopped one
		// waits for its timeout. Not idempotent, since InitProducerID may
		// go to any broker the metadata lists, the stopped one too.
		var live []string
		for _, id := range c.live() {
			live = append(live, c.Node(id).KafkaAddr)
		}
		liveCl := c.Client(t, kgo.SeedBrokers(live...), kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
		produceN(ctx, t, liveCl, 10)
		produced += 10
		coordCl := c.nodeClient(coord)
		for i := 0; ; i++ { // it may still be loading the group's offsets
			err := commitAt(ctx, coordCl, topic, group, produced)
			if err == nil {
				break
			}
			if !kerr.IsRetriable(err) || i == 100 {
				t.Fatalf("round %d: commit %d at node %d: %v", round, produced, coord, err)
			}
			time.Sleep(100 * time.Millisecond)
		}

		type answer struct {
			off int64
			err error
		}
		// Queued a second before the resume: the connections time a
		// request out after 3 s (nodeClient).
		time.Sleep(time.Until(pausedAt.Add(pauseHold - time.Second)))
		latestCh, committedCh := make(chan answer, len(direct)), make(chan answer, 1)
		for _, d := range direct {
			go func() { off, err := latestOffset(ctx, d, topic); latestCh <- answer{off, err} }()
		}
		go func() { off, err := committedOffset(ctx, direct[0], topic, group); committedCh <- answer{off, err} }()
		// The requests reach the stopped node's socket buffers; it reads
		// them when it resumes.
		time.Sleep(time.Until(pausedAt.Add(pauseHold)))
		c.Resume(victim)
		answered := 0
		for range direct {
			a := <-latestCh
			var kafkaErr *kerr.Error
			if a.err == nil || errors.As(a.err, &kafkaErr) {
				answered++
			}
			if a.err == nil && a.off < produced {
				t.Errorf("round %d: node %d answered latest offset %d on resuming; the new leader had acknowledged up to %d", round, victim, a.off, produced)
			} else {
				t.Logf("round %d: resumed node %d, ListOffsets(latest): %d, %v", round, victim, a.off, a.err)
			}
		}
		if answered == 0 {
			t.Errorf("round %d: node %d answered none of the waiting requests: the round tested nothing", round, victim)
		}
		if a := <-committedCh; a.err == nil && a.off < produced {
			t.Errorf("round %d: node %d answered committed offset %d on resuming; the new coordinator had taken %d", round, victim, a.off, produced)
		} else {
			t.Logf("round %d: resumed node %d, OffsetFetch: %d, %v", round, victim, a.off, a.err)
		}
		c.WaitReady()
		c.WaitLeaders(topic)
	}
}

// pausedLeaderSetup finds the leader of partition 0 of topic and a group
// (named from prefix) it coordinates, commits produced for the group there,
// and returns eight connections to it that each answered ListOffsets(latest)
// with produced (the first also the commit). Leaderships move now and then
// (a node given back the groups it is preferred for), so it tries again
// until all that holds at once.
func pausedLeaderSetup(ctx context.Context, t *testing.T, c *testCluster, topic, prefix string, produced int64) (victim int32, group string, direct []*kgo.Client) {
	t.Helper()
	var last error
	for try := range 20 {
		if try > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		victim = c.Leaders(topic)[0]
		group = ""
		for i := range 500 { // a group whose offsets partition the victim leads
			name := fmt.Sprintf("%s-%d", prefix, i)
			if coord, code, err := c.findGroupCoordinator(ctx, victim, name); err == nil && code == 0 && coord == victim {
				group = name
				break
			}
		}
		if group == "" {
			last = fmt.Errorf("no group among 500 is coordinated by node %d", victim)
			continue
		}
		direct = make([]*kgo.Client, 8)
		for i := range direct {
			direct[i] = c.nodeClient(victim)
		}
		if last = commitAt(ctx, direct[0], topic, group, produced); last != nil {
			continue
		}
		for _, d := range direct {
			if off, err := latestOffset(ctx, d, topic); err != nil || off != produced {
				last = fmt.Errorf("node %d: latest offset %d (%v), want %d", victim, off, err, produced)
				break
			}
		}
		if last != nil {
			continue
		}
		if off, err := committedOffset(ctx, direct[0], topic, group); err != nil || off != produced {
			last = fmt.Errorf("node %d: committed offset %d (%v), want %d", victim, off, err, produced)
			continue
		}
		return victim, group, direct
	}
	t.Fatalf("no leader to pause: %v", last)
	return 0, "", nil
}

// produceN produces n records to partition 0 of cl's default topic, waiting
// for each acknowledgement.
func produceN(ctx context.Context, t *testing.T, cl *kgo.Client, n int) {
	t.Helper()
	for i := range n {
		r := &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte("v")}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// commitAt commits offset at on partition 0 of topic for group, as a group
// without members (generation -1), at the one broker direct knows.
func commitAt(ctx context.Context, direct *kgo.Client, topic, group string, at int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = group
	req.Generation = -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Offset = at
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := direct.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return err
	}
	ts := resp.(*kmsg.OffsetCommitResponse).Topics
	if len(ts) != 1 || len(ts[0].Partitions) != 1 {
		return fmt.Errorf("OffsetCommit answered %+v", ts)
	}
	return kerr.ErrorForCode(ts[0].Partitions[0].ErrorCode)
}

// latestOffset sends ListOffsets(latest) for partition 0 of topic to the one
// broker direct knows (testCluster.nodeClient).
func latestOffset(ctx context.Context, direct *kgo.Client, topic string) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := direct.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return 0, err
	}
	p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	return p.Offset, kerr.ErrorForCode(p.ErrorCode)
}

// committedOffset sends OffsetFetch for group's offset on partition 0 of
// topic to the one broker direct knows, in v8's form (by group).
func committedOffset(ctx context.Context, direct *kgo.Client, topic, group string) (int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic = topic
	rt.Partitions = []int32{0}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	resp, err := direct.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return 0, err
	}
	gs := resp.(*kmsg.OffsetFetchResponse).Groups
	if len(gs) != 1 {
		return 0, fmt.Errorf("OffsetFetch answered %d groups", len(gs))
	}
	if err := kerr.ErrorForCode(gs[0].ErrorCode); err != nil {
		return 0, err
	}
	if len(gs[0].Topics) != 1 || len(gs[0].Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("OffsetFetch answered %+v", gs[0].Topics)
	}
	p := gs[0].Topics[0].Partitions[0]
	return p.Offset, kerr.ErrorForCode(p.ErrorCode)
}
