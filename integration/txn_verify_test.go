package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawInitTxn sends InitProducerId for transactional id id (none when id is
// empty: an idempotent producer's id) and returns the producer id and epoch.
func rawInitTxn(t testing.TB, cl *kgo.Client, id string) (int64, int16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req := kmsg.NewPtrInitProducerIDRequest()
	if id != "" {
		req.TransactionalID = kmsg.StringPtr(id)
	}
	req.TransactionTimeoutMillis = 60000
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("InitProducerId %s: %v", id, err)
	}
	return resp.ProducerID, resp.ProducerEpoch
}

// rawTxnRequest sends a transactional request and fails on any error code
// code returns.
func rawTxnRequest(t testing.TB, cl *kgo.Client, req kmsg.Request, code func(kmsg.Response) int16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err == nil {
		err = kerr.ErrorForCode(code(resp))
	}
	if err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
}

// TestTxnProduceVerification: the leader refuses a transactional batch for a
// partition that the producer's coordinator has not added to its ongoing
// transaction, as Kafka 3.6+ does (KIP-890 part 1), so no batch can open a
// transaction that no marker will end: an unknown transactional id (also
// before any exists) or a producer id the id does not hold answers
// INVALID_PRODUCER_ID_MAPPING, another epoch INVALID_PRODUCER_EPOCH, a
// transaction not begun or a partition not added INVALID_TXN_STATE. Nothing
// refused is written, the last stable offset of the untouched partition
// follows its high watermark, and the added partition's batch commits.
func TestTxnProduceVerification(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	adm := b.Admin(t)
	createTopic(t, adm, topic, 2, nil)
	cl := b.Client(t)
	// Before any transactional id exists (no __transaction_state yet), with
	// an idempotent producer's id.
	idemPID, idemEpoch := rawInitTxn(t, cl, "")
	if p := rawTxnProduce(t, cl, "first", topic, 0, txnRecordBatch(idemPID, idemEpoch, 0, "first", "v")); p.ErrorCode != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("produce before any transactional id: %v, want INVALID_PRODUCER_ID_MAPPING", kerr.ErrorForCode(p.ErrorCode))
	}
	pid, epoch := rawInitTxn(t, cl, "verify-a")
	otherPID, otherEpoch := rawInitTxn(t, cl, "verify-b")

	type attempt struct {
		name      string
		txnID     string
		pid       int64
		epoch     int16
		partition int32
		want      error
	}
	try := func(cases []attempt) {
		t.Helper()
		for _, c := range cases {
			p := rawTxnProduce(t, cl, c.txnID, topic, c.partition, txnRecordBatch(c.pid, c.epoch, 0, c.name, "v"))
			if err := kerr.ErrorForCode(p.ErrorCode); err != c.want {
				t.Errorf("%s: produce answered %v, want %v", c.name, err, c.want)
			}
		}
	}
	try([]attempt{
		{"unknown transactional id", "never-initialized", pid, epoch, 0, kerr.InvalidProducerIDMapping},
		{"producer id of another transactional id", "verify-a", otherPID, otherEpoch, 0, kerr.InvalidProducerIDMapping},
		{"no transaction begun", "verify-a", pid, epoch, 0, kerr.InvalidTxnState},
	})

	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch = "verify-a", pid, epoch
	add.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: topic, Partitions: []int32{0}}}
	rawTxnRequest(t, cl, add, func(r kmsg.Response) int16 {
		for _, rt := range r.(*kmsg.AddPartitionsToTxnResponse).Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					return rp.ErrorCode
				}
			}
		}
		return 0
	})
	try([]attempt{
		{"partition not added", "verify-a", pid, epoch, 1, kerr.InvalidTxnState},
		{"another epoch", "verify-a", pid, epoch + 1, 0, kerr.InvalidProducerEpoch},
		{"added partition", "verify-a", pid, epoch, 0, nil},
	})
	if t.Failed() {
		t.FailNow()
	}

	// Partition 1 holds no transaction: a plain record there is at once
	// below the last stable offset.
	produceSync(t, b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner())),
		&kgo.Record{Topic: topic, Partition: 1, Key: []byte("plain"), Value: []byte("1")})
	hw := endOffsets(t, adm, topic)
	if hw[1] != 1 {
		t.Fatalf("high watermark of partition 1 = %d, want 1 (only the plain record)", hw[1])
	}
	lso := listOffsets(t, topic, func(ctx context.Context) (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if lso[0] != 0 || lso[1] != hw[1] {
		t.Fatalf("last stable offsets %v, want 0 (open transaction) and %d", lso, hw[1])
	}

	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = "verify-a", pid, epoch, true
	rawTxnRequest(t, cl, end, func(r kmsg.Response) int16 { return r.(*kmsg.EndTxnResponse).ErrorCode })
	readCommitted(t, b, topic, map[string]string{"added partition": "v"})
}

// TestTxnProducerKeptWhileOpen: producer state expires after
// --producer-id-expiration, but not while the producer's transaction is open
// in the partition (Kafka never expires such a producer): once an idle
// idempotent producer that wrote after it has been forgotten,
// DescribeProducers still shows the transactional producer's epoch and last
// sequence beside its open transaction. The transaction then commits, and
// the producer expires like any other.
func TestTxnProducerKeptWhileOpen(t *testing.T) {
	b := startBroker(t, "--producer-id-expiration=1s", "--compaction-interval=100ms")
	topic := topicName(t)
	adm := b.Admin(t)
	createTopic(t, adm, topic, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	txn := txnClient(t, b, "kept-while-open", topic)
	txnProduce(t, txn, false, false, "t", "1") // offset 0, left open
	txnPID, txnEpoch, err := txn.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idem := b.Client(t, kgo.DefaultProduceTopic(topic))
	produceSync(t, idem, &kgo.Record{Key: []byte("i"), Value: []byte("1")})
	idemPID, _, err := idem.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	producers := func() kadm.DescribedProducers {
		t.Helper()
		d, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: {0: {}}})
		if err != nil {
			t.Fatalf("describe producers: %v", err)
		}
		p := d[topic].Partitions[0]
		if p.Err != nil {
			t.Fatalf("describe producers: %v", p.Err)
		}
		return p.ActiveProducers
	}
	// The idempotent producer wrote last: once it is forgotten, the
	// transactional one has been idle past the expiration too.
	waitFor(t, opTimeout, 100*time.Millisecond, "the idle idempotent producer expired", func() error {
		if _, ok := producers()[idemPID]; ok {
			return fmt.Errorf("producer %d still described", idemPID)
		}
		return nil
	})
	if p, ok := producers()[txnPID]; !ok || p.ProducerEpoch != txnEpoch || p.LastSequence != 0 || p.CurrentTxnStartOffset != 0 {
		t.Fatalf("transactional producer %d: %+v (described %v), want epoch %d, last sequence 0, transaction from 0", txnPID, p, ok, txnEpoch)
	}

	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	readCommitted(t, b, topic, map[string]string{"t": "1", "i": "1"})
	waitFor(t, opTimeout, 100*time.Millisecond, "the committed producer expired", func() error {
		if _, ok := producers()[txnPID]; ok {
			return fmt.Errorf("producer %d still described", txnPID)
		}
		return nil
	})
}

// TestTxnClusterProduceVerification: on a cluster the partition leader is
// often not the transaction's coordinator; it then asks the coordinator's
// node (a broker RPC on the cluster port) and answers as on one node: a
// batch for a transaction not begun or a partition not added is
// INVALID_TXN_STATE, another epoch INVALID_PRODUCER_EPOCH, an added
// partition's batch is written and commits.
func TestTxnClusterProduceVerification(t *testing.T) {
	c := startCluster(t, 3)
	admin := c.Client(t)
	topic := topicName(t)
	createClusterTopic(t, admin, topic, 6, nil)
	const id = "cluster-verify"
	cl := c.Client(t)
	pid, epoch := rawInitTxn(t, cl, id)
	coord := c.waitTxnCoordinatorPreferred(id)
	var remote []int32 // partitions led by another node than the coordinator
	leaders := map[int32]int32{}
	c.waitFor("a partition led away from the coordinator", func(ctx context.Context) error {
		ps, err := c.partitions(ctx, 1, topic)
		if err != nil {
			return err
		}
		remote = remote[:0]
		for part, st := range ps {
			// Leadership returns to each group's preferred leader (its first
			// replica) some seconds after the topic is made; from then on
			// it stays put, so the leaders found here are the ones asked.
			if len(st.Replicas) == 0 || st.Leader != st.Replicas[0] {
				return fmt.Errorf("%s/%d: leader %d, replicas %v", topic, part, st.Leader, st.Replicas)
			}
			leaders[part] = st.Leader
			if st.Leader != coord {
				remote = append(remote, part)
			}
		}
		if len(remote) < 2 {
			return fmt.Errorf("partitions led by others than coordinator %d: %v", coord, remote)
		}
		return nil
	})
	added, notAdded := remote[0], remote[1]
	t.Logf("coordinator of %s: node %d; partition %d (leader %d) is added, %d (leader %d) is not",
		id, coord, added, leaders[added], notAdded, leaders[notAdded])

	// The coordinator may still be loading its partition, or move once to
	// its preferred node: the retriable answers (NOT_ENOUGH_REPLICAS from a
	// leader that cannot verify yet, COORDINATOR_* from the coordinator) are
	// retried, as a producer does, until opTimeout.
	retry := func(what string, send func() (int16, string)) (int16, string) {
		t.Helper()
		deadline := time.Now().Add(opTimeout)
		for {
			code, msg := send()
			if err := kerr.ErrorForCode(code); err == nil || !kerr.IsRetriable(err) || time.Now().After(deadline) {
				return code, msg
			}
			t.Logf("%s: %v (%s), retrying", what, kerr.ErrorForCode(code), msg)
			time.Sleep(100 * time.Millisecond) // polling with a deadline
		}
	}
	produce := func(name string, partition int32, ep int16, want error) {
		t.Helper()
		code, msg := retry(name, func() (int16, string) {
			// Produce goes to the partition's leader, as a producer sends it;
			// should leadership move anyway, the next attempt follows it.
			p := rawTxnProduce(t, cl.Broker(int(leaders[partition])), id, topic, partition, txnRecordBatch(pid, ep, 0, name, "v"))
			if p.ErrorCode == kerr.NotLeaderForPartition.Code {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				defer cancel()
				if ps, err := c.partitions(ctx, c.live()[0], topic); err == nil && ps[partition].Leader >= 0 {
					leaders[partition] = ps[partition].Leader
				}
			}
			if p.ErrorMessage != nil {
				return p.ErrorCode, *p.ErrorMessage
			}
			return p.ErrorCode, ""
		})
		if err := kerr.ErrorForCode(code); err != want {
			t.Errorf("%s: produce to partition %d answered %v (%q), want %v", name, partition, err, msg, want)
		}
	}
	produce("no transaction begun", added, epoch, kerr.InvalidTxnState)
	add := kmsg.NewPtrAddPartitionsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch = id, pid, epoch
	add.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: topic, Partitions: []int32{added}}}
	if code, _ := retry("AddPartitionsToTxn", func() (int16, string) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		r, err := cl.Request(ctx, add)
		if err != nil {
			t.Fatalf("AddPartitionsToTxn: %v", err)
		}
		for _, rt := range r.(*kmsg.AddPartitionsToTxnResponse).Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					return rp.ErrorCode, ""
				}
			}
		}
		return 0, ""
	}); code != 0 {
		t.Fatalf("AddPartitionsToTxn: %v", kerr.ErrorForCode(code))
	}
	produce("partition not added", notAdded, epoch, kerr.InvalidTxnState)
	produce("another epoch", added, epoch+1, kerr.InvalidProducerEpoch)
	produce("added partition", added, epoch, nil)
	if t.Failed() {
		t.FailNow()
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = id, pid, epoch, true
	rawTxnRequest(t, cl, end, func(r kmsg.Response) int16 { return r.(*kmsg.EndTxnResponse).ErrorCode })
	// Only the added partition's batch was written, and it committed: the
	// high watermark of the partition not added is still 0.
	hw := endOffsets(t, kadm.NewClient(admin), topic)
	if hw[notAdded] != 0 {
		t.Errorf("high watermark of the partition not added = %d, want 0 (nothing written)", hw[notAdded])
	}
	if hw[added] < 1 {
		t.Errorf("high watermark of the added partition = %d, want the batch and its marker", hw[added])
	}
}
