package integration

// Crash windows of a transaction's end on one broker. EndTxn is answered once
// PrepareCommit is durable in __transaction_state, before the markers (as in Kafka:
// broker/26_end_txn.go, txnCoordinator.endTxn), and the markers then go through
// Raft one proposal per partition. So a real window exists between the client's
// commit returning and the last marker: a kill -9 there leaves a PrepareCommit that
// the restarted coordinator must finish when it loads the partition.

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// crashPartitions is the partition count of the transaction killed in its
// window: each partition takes one marker proposal, and together they take far
// longer than the kill needs to arrive after the commit returns.
const crashPartitions = 400

// controlRecord is a transaction marker as a test reads it.
type controlRecord struct {
	commit           bool
	coordinatorEpoch int32
}

// decodeControl reads a transaction marker's key (version, type) and value
// (version, coordinator epoch).
func decodeControl(r *kgo.Record) (controlRecord, error) {
	if len(r.Key) != 4 || len(r.Value) < 6 {
		return controlRecord{}, fmt.Errorf("control record at %d/%d: key %x value %x", r.Partition, r.Offset, r.Key, r.Value)
	}
	typ := binary.BigEndian.Uint16(r.Key[2:])
	if typ > 1 {
		return controlRecord{}, fmt.Errorf("control record at %d/%d: type %d", r.Partition, r.Offset, typ)
	}
	return controlRecord{commit: typ == 1, coordinatorEpoch: int32(binary.BigEndian.Uint32(r.Value[2:]))}, nil
}

// clientFunc makes a client of the broker or cluster under test with opts
// added, closed when the test ends.
type clientFunc func(opts ...kgo.Opt) *kgo.Client

// brokerClients is b's clientFunc.
func brokerClients(t testing.TB, b *testBroker) clientFunc {
	return func(opts ...kgo.Opt) *kgo.Client { return b.Client(t, opts...) }
}

// readControl reads every partition of topic read_uncommitted up to its high
// watermark and returns its records, control records included, per partition.
func readControl(t testing.TB, newClient clientFunc, topic string) (map[int32][]*kgo.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ends := endOffsets(t, kadm.NewClient(newClient()), topic)
	want := map[int32]int64{}
	for p, o := range ends {
		if o > 0 {
			want[p] = o - 1
		}
	}
	cl := newClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	out := map[int32][]*kgo.Record{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s: partitions %v not read within %v", topic, want, opTimeout)
		}
		if err := fs.Err0(); err != nil {
			return nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			if w, ok := want[r.Partition]; ok && r.Offset >= w {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}

// crashedCommit is a transaction committed over every partition of a topic
// with the broker that coordinates it killed as soon as the commit returns,
// while another transaction over the same partitions is open.
type crashedCommit struct {
	t          testing.TB
	newClient  clientFunc
	topic      string
	partitions int32
	id         string
	producer   *kgo.Client
	// firstEpoch is the coordinator epoch of the markers written before the kill.
	firstEpoch int32
}

const crashTxnID = "crash-window"

func (cc *crashedCommit) newProducer(txnID string) *kgo.Client {
	return cc.newClient(kgo.TransactionalID(txnID), kgo.TransactionTimeout(time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(2*int(cc.partitions)))
}

// transact writes value to partitions 0..partitions-1 of topic in one
// transaction, committing it when commit is set, else leaving it open.
func (cc *crashedCommit) transact(cl *kgo.Client, topic string, partitions int32, value string, commit bool) {
	t := cc.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for p := range partitions {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k%d", p)), Value: []byte(value)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %s: %v", value, err)
	}
	if commit {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatalf("commit %s: %v", value, err)
		}
	}
}

// warmUp commits a first transaction of the id into warm (one partition) and
// reads its marker's coordinator epoch: that of the coordinator before the kill.
func (cc *crashedCommit) warmUp(warm string) {
	t := cc.t
	t.Helper()
	cc.producer = cc.newProducer(cc.id)
	cc.transact(cc.producer, warm, 1, "warm", true)
	waitFor(t, opTimeout, 50*time.Millisecond, "the warm-up transaction's marker", func() error {
		recs, err := readControl(t, cc.newClient, warm)
		if err != nil {
			return err
		}
		for _, r := range recs[0] {
			if r.Attrs.IsControl() {
				m, err := decodeControl(r)
				if err != nil {
					t.Fatal(err)
				}
				cc.firstEpoch = m.coordinatorEpoch
				return nil
			}
		}
		return fmt.Errorf("no marker yet")
	})
}

// commitThenKill opens the other transaction, writes the id's transaction over
// every partition, calls beforeCommit (unless nil), commits, and calls kill as
// soon as EndTxn has answered (PrepareCommit is durable, the markers are on
// their way).
func (cc *crashedCommit) commitThenKill(beforeCommit, kill func()) {
	t := cc.t
	t.Helper()
	open := cc.newProducer(cc.id + "-open")
	cc.transact(open, cc.topic, cc.partitions, "open", false)
	cc.transact(cc.producer, cc.topic, cc.partitions, "committed", false)
	if beforeCommit != nil {
		beforeCommit()
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cc.producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	kill()
}

// check runs after the restart or failover: the open transaction's successor
// fences and aborts it; every committed record becomes visible to
// read_committed, each once, and no record of the open transaction ever does;
// some COMMIT markers carry a newer coordinator epoch than firstEpoch, written
// by the coordinator that finished the commit after the kill (which proves
// that the kill landed in the window).
func (cc *crashedCommit) check(warm string) {
	t := cc.t
	t.Helper()
	successor := cc.newProducer(cc.id + "-open")
	cc.transact(successor, warm, 1, "successor", true)

	var recs []*kgo.Record
	waitFor(t, opTimeout, 100*time.Millisecond, "every committed record read_committed", func() error {
		var err error
		if recs, err = readCommittedAll(t, cc.newClient, cc.topic); err != nil {
			return err
		}
		for _, r := range recs {
			if string(r.Value) != "committed" {
				t.Fatalf("read_committed sees %s=%s at %d/%d", r.Key, r.Value, r.Partition, r.Offset)
			}
		}
		if len(recs) < int(cc.partitions) {
			return fmt.Errorf("%d of %d committed records visible", len(recs), cc.partitions)
		}
		return nil
	})
	seen := map[int32]int{}
	for _, r := range recs {
		seen[r.Partition]++
	}
	for p := range cc.partitions {
		if seen[p] != 1 {
			t.Errorf("partition %d: %d committed records read_committed, want 1", p, seen[p])
		}
	}

	// Where each partition's COMMIT markers came from: a partition may hold one
	// from before the kill and one from the next coordinator (a marker written
	// again is harmless). When the kill landed in the window, the next
	// coordinator finishes the commit once it has loaded the partition, which
	// may come after the records are visible (markers in flight at the kill can
	// land with the old epoch).
	var before, after, aborts int
	waitFor(t, opTimeout, 200*time.Millisecond, "COMMIT markers written by the coordinator after the kill", func() error {
		all, err := readControl(t, cc.newClient, cc.topic)
		if err != nil {
			return err
		}
		before, after, aborts = 0, 0, 0
		for p := range cc.partitions {
			var commits int
			for _, r := range all[p] {
				if !r.Attrs.IsControl() {
					continue
				}
				m, err := decodeControl(r)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case !m.commit:
					aborts++
				case m.coordinatorEpoch == cc.firstEpoch:
					before++
					commits++
				default:
					after++
					commits++
				}
			}
			if commits == 0 {
				t.Fatalf("partition %d has no COMMIT marker", p)
			}
		}
		if after == 0 {
			return fmt.Errorf("all %d COMMIT markers carry coordinator epoch %d: the kill missed the window between EndTxn's answer and the end of the markers, or the next coordinator has not finished yet", before, cc.firstEpoch)
		}
		return nil
	})
	t.Logf("COMMIT markers: %d with the coordinator epoch before the kill (%d), %d written by the next coordinator; %d ABORT markers",
		before, cc.firstEpoch, after, aborts)
	if aborts < int(cc.partitions) {
		t.Errorf("%d ABORT markers for the open transaction over %d partitions", aborts, cc.partitions)
	}
}

// TestTxnKillNineBetweenEndTxnAndMarkers commits a transaction over
// crashPartitions partitions and kills the broker with SIGKILL as soon as the
// commit returns, while another transaction over the same partitions is open.
// The restarted broker's coordinator finds PrepareCommit when it loads the
// partition and writes the markers (crashedCommit.check).
func TestTxnKillNineBetweenEndTxnAndMarkers(t *testing.T) {
	b := startBroker(t)
	topic, warm := topicName(t), topicName(t)+"-warm"
	adm := b.Admin(t)
	createTopic(t, adm, topic, crashPartitions, nil)
	createTopic(t, adm, warm, 1, nil)
	cc := &crashedCommit{t: t, newClient: brokerClients(t, b), topic: topic, partitions: crashPartitions, id: crashTxnID}
	cc.warmUp(warm)
	cc.commitThenKill(nil, func() { b.Kill(t) })
	b.Start(t)
	cc.check(warm)
}
