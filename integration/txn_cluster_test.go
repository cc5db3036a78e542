//go:build unix

package integration

// Transactions on a 3-node cluster: the coordinator of a transactional id is the
// leader of the __transaction_state partition the id hashes to, and its data
// partitions have their own leaders. An Ongoing transaction is state in that
// partition (replicated through Raft), so it survives a kill -9 of its
// coordinator: the next leader loads it and commits it, writing markers to
// partitions on the other nodes.

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// findTxnCoordinator asks node for the coordinator of transactional id.
func (c *testCluster) findTxnCoordinator(ctx context.Context, node int32, id string) (int32, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorType = 1 // TRANSACTION
	req.CoordinatorKeys = []string{id}
	resp, err := c.requestNode(ctx, node, req)
	if err != nil {
		return 0, err
	}
	cs := resp.(*kmsg.FindCoordinatorResponse).Coordinators
	if len(cs) != 1 {
		return 0, fmt.Errorf("FindCoordinator from node %d: %d coordinators", node, len(cs))
	}
	if err := kerr.ErrorForCode(cs[0].ErrorCode); err != nil {
		return 0, fmt.Errorf("FindCoordinator from node %d: %w", node, err)
	}
	return cs[0].NodeID, nil
}

// endTxnOn sends EndTxn(commit) for id to node only and returns its error code.
func (c *testCluster) endTxnOn(ctx context.Context, node int32, id string, pid int64, epoch int16) (int16, error) {
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID = id
	req.ProducerID = pid
	req.ProducerEpoch = epoch
	req.Commit = true
	resp, err := c.requestNode(ctx, node, req)
	if err != nil {
		return 0, err
	}
	return resp.(*kmsg.EndTxnResponse).ErrorCode, nil
}

// txnStatePartition is the __transaction_state partition of a transactional id:
// Kafka's abs(String.hashCode) mod 50, as the broker computes it.
func txnStatePartition(id string) int32 {
	var h int32
	for _, r := range id { // ASCII ids only: one UTF-16 unit per rune
		h = 31*h + r
	}
	return (h & 0x7fffffff) % 50
}

// waitTxnCoordinatorPreferred waits until the coordinator of transactional id
// is the preferred leader (the first replica) of the id's __transaction_state
// partition, which every group's leadership returns to 10 s after another node
// took it (docs/ARCHITECTURE.md "Membership reconcile"), and returns it. From
// then on the coordinator stays put until a fault moves it.
func (c *testCluster) waitTxnCoordinatorPreferred(id string) int32 {
	c.t.Helper()
	statePart := txnStatePartition(id)
	var coord int32
	c.waitFor("the coordinator of "+id+" is its partition's preferred leader", func(ctx context.Context) error {
		ps, err := c.partitions(ctx, c.live()[0], "__transaction_state")
		if err != nil {
			return err
		}
		st := ps[statePart]
		if len(st.Replicas) == 0 || st.Leader != st.Replicas[0] {
			return fmt.Errorf("__transaction_state/%d: leader %d, replicas %v", statePart, st.Leader, st.Replicas)
		}
		if coord, err = c.findTxnCoordinator(ctx, c.live()[0], id); err != nil {
			return err
		}
		if coord != st.Leader {
			return fmt.Errorf("FindCoordinator names %d, the partition's leader is %d", coord, st.Leader)
		}
		return nil
	})
	return coord
}

// TestTxnClusterCoordinatorKillNine: a transaction open over partitions led by the
// two other nodes survives kill -9 of its coordinator and is committed through the
// new one, which writes the markers on the other leaders; an aborted transaction
// before it stays invisible. The third node answers the producer's EndTxn with
// NOT_COORDINATOR and FindCoordinator there names the new coordinator, where the
// retried COMMIT answers NONE. Once the old coordinator is back and has taken its
// partition back (it is the preferred leader), the producer's cached coordinator
// answers NOT_COORDINATOR and the producer finds the moved one by itself. A
// read_committed consumer sees exactly the committed records.
func TestTxnClusterCoordinatorKillNine(t *testing.T) {
	c := startCluster(t, 3)
	admin := c.Client(t)
	topic := topicName(t)
	createClusterTopic(t, admin, topic, 6, nil)
	const id = "cluster-txn"
	ctx, cancel := context.WithTimeout(context.Background(), 3*opTimeout)
	defer cancel()

	p := c.Client(t, kgo.TransactionalID(id), kgo.TransactionTimeout(time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// The first InitProducerId creates __transaction_state.
	pid, epoch, err := p.ProducerID(ctx)
	if err != nil {
		t.Fatalf("init producer id: %v", err)
	}
	// The coordinator killed below takes the partition back once it returns.
	coord := c.waitTxnCoordinatorPreferred(id)
	var others []int32 // partitions led by nodes other than the coordinator
	var leaders map[int32]int32
	c.waitFor("partition leaders on every node", func(ctx context.Context) error {
		ps, err := c.partitions(ctx, 1, topic)
		if err != nil {
			return err
		}
		others, leaders = nil, map[int32]int32{}
		nodes := map[int32]bool{}
		for part, st := range ps {
			if st.Leader < 0 {
				return fmt.Errorf("%s/%d has no leader", topic, part)
			}
			nodes[st.Leader] = true
			leaders[part] = st.Leader
			if st.Leader != coord {
				others = append(others, part)
			}
		}
		if len(nodes) < 3 {
			return fmt.Errorf("leaders %v", leaders)
		}
		return nil
	})
	slices.Sort(others)
	t.Logf("coordinator of %s: node %d (producer %d epoch %d); data partitions %v on other leaders %v", id, coord, pid, epoch, others, leaders)

	// The topic is compacted: "aborted" and "committed" share each partition's key
	// (the abort must not touch the live record), "after" has its own key, so
	// that it does not replace "committed".
	produce := func(value string) {
		t.Helper()
		key := "k%d"
		if value == "after" {
			key = "after-%d"
		}
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, part := range others {
			r := &kgo.Record{Topic: topic, Partition: part, Key: []byte(fmt.Sprintf(key, part)), Value: []byte(value)}
			if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce %s to %d: %v", value, part, err)
			}
		}
	}
	produce("aborted")
	if err := p.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}
	produce("committed") // Ongoing, its partitions added on the coordinator

	c.Kill(coord)
	var next int32
	c.waitFor("a new coordinator of "+id, func(ctx context.Context) error {
		for _, n := range c.live() {
			got, err := c.findTxnCoordinator(ctx, n, id)
			if err != nil {
				return err
			}
			if got == coord {
				return fmt.Errorf("node %d still names node %d", n, got)
			}
			next = got
			return nil
		}
		return fmt.Errorf("no live node")
	})
	t.Logf("node %d killed; node %d coordinates %s", coord, next, id)
	// The producer's commit goes to the new coordinator, which loaded the Ongoing
	// transaction and its partition set from the replicated partition.
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit through the new coordinator: %v", err)
	}

	// The third node does not coordinate the id: NOT_COORDINATOR, and its
	// FindCoordinator names the new coordinator, where the retried COMMIT
	// answers NONE.
	third := 6 - coord - next
	code, err := c.endTxnOn(ctx, third, id, pid, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if code != kerr.NotCoordinator.Code {
		t.Fatalf("EndTxn on node %d, which does not coordinate %s: %v, want NOT_COORDINATOR", third, id, kerr.ErrorForCode(code))
	}
	if got, err := c.findTxnCoordinator(ctx, third, id); err != nil || got != next {
		t.Fatalf("FindCoordinator from node %d: %d, %v; want %d", third, got, err, next)
	}
	if code, err := c.endTxnOn(ctx, next, id, pid, epoch); err != nil || code != 0 {
		t.Fatalf("retried COMMIT on the new coordinator %d: %v, %v; want NONE", next, kerr.ErrorForCode(code), err)
	}

	// The old coordinator comes back and, as the preferred leader, takes the
	// partition back. The producer still has the new coordinator cached: its next
	// AddPartitionsToTxn there answers NOT_COORDINATOR, and it finds the old one.
	c.Start(coord)
	c.WaitReady()
	c.waitFor("the coordinator moves back to node "+fmt.Sprint(coord), func(ctx context.Context) error {
		got, err := c.findTxnCoordinator(ctx, next, id)
		if err != nil {
			return err
		}
		if got != coord {
			return fmt.Errorf("node %d names node %d", next, got)
		}
		return nil
	})
	produce("after")
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit after the coordinator moved back: %v", err)
	}

	// read_committed sees, per partition, "committed" then "after", nothing else.
	cl := c.Client(t, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[int32][]string{}
	for {
		done := true
		for _, part := range others {
			if vs := seen[part]; len(vs) < 2 {
				done = false
			}
		}
		if done {
			break
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed: %v within %v", seen, 3*opTimeout)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) { seen[r.Partition] = append(seen[r.Partition], string(r.Value)) })
	}
	for part, vs := range seen {
		if !slices.Contains(others, part) || !slices.Equal(vs, []string{"committed", "after"}) {
			t.Errorf("partition %d read_committed: %v, want [committed after]", part, vs)
		}
	}
}

// clusterCrashPartitions is the partition count of the transaction whose
// coordinator is killed in its window on a cluster.
const clusterCrashPartitions = 60

// TestTxnClusterKillNineBetweenEndTxnAndMarkers: on a cluster, the node that
// coordinates a transaction over clusterCrashPartitions partitions is killed
// with SIGKILL as soon as EndTxn has answered. On a cluster the markers and
// CompleteCommit can all be written before the kill lands, so the test holds
// them up: just before the commit it pauses (SIGSTOP) another node that leads
// some of the partitions; the markers for those cannot be written while it is
// stopped, while PrepareCommit needs only the coordinator and the third node.
// Once the coordinator is dead the paused node resumes (markers in flight may
// land then, with the old coordinator epoch); the next leader of the id's
// __transaction_state partition loads PrepareCommit from the replicated
// partition and writes the markers with its own coordinator epoch
// (crashedCommit.check).
//
// It pins a bug: a node that came to lead a __transaction_state partition
// loaded it only when a request for one of its ids arrived, so the markers of
// a commit whose coordinator died were never written, and the last stable
// offset of every partition of the transaction stayed behind it.
func TestTxnClusterKillNineBetweenEndTxnAndMarkers(t *testing.T) {
	c := startCluster(t, 3)
	admin := c.Client(t)
	topic, warm := topicName(t), topicName(t)+"-warm"
	createClusterTopic(t, admin, topic, clusterCrashPartitions, nil)
	createClusterTopic(t, admin, warm, 1, nil)
	cc := &crashedCommit{t: t, newClient: func(opts ...kgo.Opt) *kgo.Client { return c.Client(t, opts...) },
		topic: topic, partitions: clusterCrashPartitions, id: crashTxnID}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// __transaction_state comes with the first InitProducerId; the coordinator
	// must not move between the warm-up and the kill, so that the warm-up's
	// marker shows the epoch of the markers written before the kill.
	if _, _, err := cc.newProducer(crashTxnID + "-init").ProducerID(ctx); err != nil {
		t.Fatalf("init producer id: %v", err)
	}
	coord := c.waitTxnCoordinatorPreferred(crashTxnID)
	// A node other than the coordinator that leads some of the partitions.
	var held int32
	c.waitFor("a partition led by a node other than the coordinator", func(ctx context.Context) error {
		ps, err := c.partitions(ctx, coord, topic)
		if err != nil {
			return err
		}
		for _, st := range ps {
			if st.Leader > 0 && st.Leader != coord {
				held = st.Leader
				return nil
			}
		}
		return fmt.Errorf("every partition led by node %d", coord)
	})
	c.WaitLeaders(topic, warm)
	cc.warmUp(warm)
	if got := c.waitTxnCoordinatorPreferred(crashTxnID); got != coord {
		t.Fatalf("the coordinator moved from node %d to %d during the warm-up", coord, got)
	}
	cc.commitThenKill(func() { c.Pause(held) }, func() {
		c.Kill(coord)
		c.Resume(held)
	})
	t.Logf("node %d, the coordinator, killed after EndTxn answered, with node %d paused meanwhile", coord, held)
	cc.check(warm)
}
