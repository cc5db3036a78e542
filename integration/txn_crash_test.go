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

// readControl reads every partition of topic read_uncommitted up to its high
// watermark and returns its records, control records included, per partition.
func readControl(t testing.TB, b *testBroker, topic string) (map[int32][]*kgo.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ends := endOffsets(t, b.Admin(t), topic)
	want := map[int32]int64{}
	for p, o := range ends {
		if o > 0 {
			want[p] = o - 1
		}
	}
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
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

// TestTxnKillNineBetweenEndTxnAndMarkers commits a transaction over
// crashPartitions partitions and kills the broker with SIGKILL as soon as the
// commit returns, while another transaction over the same partitions is open.
// The markers written before the restart carry the coordinator epoch of the first
// run; the test requires some written by the restarted coordinator (a newer epoch),
// which proves the kill landed in the window. After the restart every committed
// record is visible to read_committed, each once, and no record of the open
// transaction ever is (its successor fences and aborts it).
func TestTxnKillNineBetweenEndTxnAndMarkers(t *testing.T) {
	b := startBroker(t)
	topic, warm := topicName(t), topicName(t)+"-warm"
	adm := b.Admin(t)
	createTopic(t, adm, topic, crashPartitions, nil)
	createTopic(t, adm, warm, 1, nil)
	const id = "crash-window"
	newProducer := func(txnID string) *kgo.Client {
		return b.Client(t, kgo.TransactionalID(txnID), kgo.TransactionTimeout(time.Minute),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(2*crashPartitions))
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	transact := func(cl *kgo.Client, topic string, partitions int32, value string, commit bool) {
		t.Helper()
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

	// A first transaction of the same id, complete before the crash, shows the
	// first run's coordinator epoch in its marker.
	p := newProducer(id)
	transact(p, warm, 1, "warm", true)
	var firstEpoch int32
	waitFor(t, opTimeout, 50*time.Millisecond, "the warm-up transaction's marker", func() error {
		recs, err := readControl(t, b, warm)
		if err != nil {
			return err
		}
		for _, r := range recs[0] {
			if r.Attrs.IsControl() {
				m, err := decodeControl(r)
				if err != nil {
					t.Fatal(err)
				}
				firstEpoch = m.coordinatorEpoch
				return nil
			}
		}
		return fmt.Errorf("no marker yet")
	})

	open := newProducer(id + "-open")
	transact(open, topic, crashPartitions, "open", false)
	transact(p, topic, crashPartitions, "committed", true) // EndTxn answered: PrepareCommit is durable
	b.Kill(t)
	b.Start(t)

	// The open transaction's successor fences and aborts it.
	successor := newProducer(id + "-open")
	transact(successor, warm, 1, "successor", true)

	var recs []*kgo.Record
	waitFor(t, opTimeout, 100*time.Millisecond, "every committed record read_committed", func() error {
		var err error
		if recs, err = readCommittedAll(t, b, topic); err != nil {
			return err
		}
		for _, r := range recs {
			if string(r.Value) != "committed" {
				t.Fatalf("read_committed sees %s=%s at %d/%d", r.Key, r.Value, r.Partition, r.Offset)
			}
		}
		if len(recs) < crashPartitions {
			return fmt.Errorf("%d of %d committed records visible", len(recs), crashPartitions)
		}
		return nil
	})
	seen := map[int32]int{}
	for _, r := range recs {
		seen[r.Partition]++
	}
	for p := range int32(crashPartitions) {
		if seen[p] != 1 {
			t.Errorf("partition %d: %d committed records read_committed, want 1", p, seen[p])
		}
	}

	// Where each partition's COMMIT markers came from: a partition may hold one
	// from before the crash and one from the restarted coordinator (a marker
	// written again is harmless).
	all, err := readControl(t, b, topic)
	if err != nil {
		t.Fatal(err)
	}
	var before, after, aborts int
	for p := range int32(crashPartitions) {
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
			case m.coordinatorEpoch == firstEpoch:
				before++
				commits++
			default:
				after++
				commits++
			}
		}
		if commits == 0 {
			t.Errorf("partition %d has no COMMIT marker", p)
		}
	}
	t.Logf("COMMIT markers: %d written before the kill (coordinator epoch %d), %d after it by the restarted coordinator; %d ABORT markers",
		before, firstEpoch, after, aborts)
	if after == 0 {
		t.Fatalf("every COMMIT marker was written before the kill: the kill missed the window between EndTxn's answer and the markers (raise crashPartitions)")
	}
	if aborts < crashPartitions {
		t.Errorf("%d ABORT markers for the open transaction over %d partitions", aborts, crashPartitions)
	}
}
