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

// TestTxnClusterCoordinatorKillNine: a transaction open over partitions led by the
// two other nodes survives kill -9 of its coordinator and is committed through the
// new one, which writes the markers on the other leaders; an aborted transaction
// before it stays invisible. The restarted old coordinator answers NOT_COORDINATOR
// to the producer's EndTxn, FindCoordinator names the new one, and the retried
// COMMIT there answers NONE. A read_committed consumer sees exactly the committed
// records.
func TestTxnClusterCoordinatorKillNine(t *testing.T) {
	c := startCluster(t, 3)
	admin := c.Client(t)
	topic := topicName(t)
	createClusterTopic(t, admin, topic, 6, nil)
	// Leaders spread once each group's preferred leader takes over (after 10 s of
	// another node leading it, docs/ARCHITECTURE.md "Membership reconcile").
	c.waitFor("partition leaders on every node", func(ctx context.Context) error {
		ps, err := c.partitions(ctx, 1, topic)
		if err != nil {
			return err
		}
		nodes := map[int32]bool{}
		for _, st := range ps {
			nodes[st.Leader] = true
		}
		if len(nodes) < 3 {
			return fmt.Errorf("leaders %v", ps)
		}
		return nil
	})
	c.WaitLeaders(topic)
	const id = "cluster-txn"
	ctx, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
	defer cancel()

	p := c.Client(t, kgo.TransactionalID(id), kgo.TransactionTimeout(time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// The first InitProducerId creates __transaction_state.
	pid, epoch, err := p.ProducerID(ctx)
	if err != nil {
		t.Fatalf("init producer id: %v", err)
	}
	var coord int32
	c.waitFor("the coordinator of "+id, func(ctx context.Context) error {
		coord, err = c.findTxnCoordinator(ctx, 1, id)
		return err
	})
	leaders := c.Leaders(topic)
	var others []int32 // partitions led by nodes other than the coordinator
	for part, l := range leaders {
		if l != coord {
			others = append(others, part)
		}
	}
	slices.Sort(others)
	if len(others) < 2 {
		t.Fatalf("partition leaders %v: fewer than two partitions away from the coordinator %d", leaders, coord)
	}
	t.Logf("coordinator of %s: node %d (producer %d epoch %d); data partitions %v on other leaders %v", id, coord, pid, epoch, others, leaders)

	produce := func(value string) {
		t.Helper()
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, part := range others {
			r := &kgo.Record{Topic: topic, Partition: part, Key: []byte(fmt.Sprintf("k%d", part)), Value: []byte(value)}
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

	// The old coordinator comes back as a follower: a producer that still sends to
	// it gets NOT_COORDINATOR, and FindCoordinator (even from it) names the new one,
	// where the retried COMMIT answers NONE.
	c.Start(coord)
	c.WaitReady()
	c.waitFor("NOT_COORDINATOR from the old coordinator", func(ctx context.Context) error {
		code, err := c.endTxnOn(ctx, coord, id, pid, epoch)
		if err != nil {
			return err
		}
		if code != kerr.NotCoordinator.Code {
			t.Fatalf("EndTxn on the old coordinator %d: %v, want NOT_COORDINATOR", coord, kerr.ErrorForCode(code))
		}
		return nil
	})
	c.waitFor("FindCoordinator from the old coordinator", func(ctx context.Context) error {
		got, err := c.findTxnCoordinator(ctx, coord, id)
		if err != nil {
			return err
		}
		if got == coord {
			return fmt.Errorf("node %d names itself", coord)
		}
		code, err := c.endTxnOn(ctx, got, id, pid, epoch)
		if err != nil {
			return err
		}
		if code != 0 {
			t.Fatalf("retried COMMIT on the new coordinator %d: %v, want NONE", got, kerr.ErrorForCode(code))
		}
		return nil
	})

	// The same producer goes on through the new coordinator.
	produce("after")
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit after the failover: %v", err)
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
			t.Fatalf("read_committed: %v within %v", seen, 2*opTimeout)
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
