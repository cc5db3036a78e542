package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnProducer is a franz-go transactional producer on the test broker.
func txnProducer(t testing.TB, gb *groupBroker, id, topic string) *kgo.Client {
	return gb.client(t, kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
		kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

// produceTxn produces recs (key=value strings) to partition 0 in one
// transaction and ends it with commit.
func produceTxn(t testing.TB, cl *kgo.Client, commit bool, kvs ...string) {
	t.Helper()
	ctx := dataCtx(t)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kvs); i += 2 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(kvs[i]), Value: []byte(kvs[i+1])}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", kvs[i], err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction: %v", err)
	}
}

// waitStable waits until partition 0 of topic has no open transaction (its
// markers are written after EndTxn answers, as in Kafka).
func waitStable(t testing.TB, gb *groupBroker, topic string) {
	t.Helper()
	adm := kadm.NewClient(gb.client(t))
	waitUntil(t, 20*time.Second, "stable "+topic, func() error {
		ends, err := adm.ListEndOffsets(dataCtx(t), topic)
		if err != nil {
			return err
		}
		lsos, err := adm.ListCommittedOffsets(dataCtx(t), topic)
		if err != nil {
			return err
		}
		if e, l := ends[topic][0].Offset, lsos[topic][0].Offset; e != l {
			return fmt.Errorf("high watermark %d, last stable offset %d", e, l)
		}
		return nil
	})
}

// consumeAll reads partition 0 of topic from the start with the given
// isolation until it has reached the partition's end as the broker reports
// it for that isolation, and returns key=value pairs in order.
func consumeAll(t testing.TB, gb *groupBroker, topic string, committed bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	adm := kadm.NewClient(gb.client(t))
	var end int64
	if committed {
		offs, err := adm.ListCommittedOffsets(dataCtx(t), topic)
		if err != nil {
			t.Fatal(err)
		}
		end = offs[topic][0].Offset
	} else {
		offs, err := adm.ListEndOffsets(dataCtx(t), topic)
		if err != nil {
			t.Fatal(err)
		}
		end = offs[topic][0].Offset
	}
	cl := gb.client(t, kgo.FetchIsolationLevel(iso), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart()}}), kgo.FetchMaxWait(200*time.Millisecond))
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pos := int64(0)
	for pos < end {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %v up to %d, want %d", out, pos, end)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				out = append(out, string(r.Key)+"="+string(r.Value))
			}
			if p.HighWatermark > 0 {
				if committed {
					pos = max(pos, p.LastStableOffset)
				} else {
					pos = max(pos, p.HighWatermark)
				}
			}
		})
		if pos >= end {
			break
		}
	}
	return out
}

// TestTxnProduceReadCommitted: a franz-go transactional producer commits and
// aborts; a read_committed consumer sees exactly the committed records, and
// stops at an open transaction; read_uncommitted sees the open one too. Key
// lookups see committed data only.
func TestTxnProduceReadCommitted(t *testing.T) {
	gb, _ := newTxnBroker(t)
	createTopic(t, gb, "orders", 1)
	p := txnProducer(t, gb, "orders-tx", "orders")
	produceTxn(t, p, true, "a", "1", "b", "1")
	produceTxn(t, p, false, "a", "aborted", "c", "aborted")
	produceTxn(t, p, true, "b", "2")
	waitStable(t, gb, "orders")
	got := consumeAll(t, gb, "orders", true)
	if want := []string{"a=1", "b=2"}; !slices.Equal(got, want) {
		t.Fatalf("read_committed after commits and an abort: %v, want %v", got, want)
	}

	// An open transaction holds read_committed readers at its first offset.
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("d"), Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	plain := gb.client(t, kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := plain.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("e"), Value: []byte("plain")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := consumeAll(t, gb, "orders", true); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Fatalf("read_committed with an open transaction: %v", got)
	}
	if got := consumeAll(t, gb, "orders", false); !slices.Contains(got, "d=open") || !slices.Contains(got, "e=plain") {
		t.Fatalf("read_uncommitted with an open transaction: %v", got)
	}
	ti, _ := gb.Node.Topic("orders")
	shard := ti.Partitions[0].Shard
	if r, ok, _ := gb.Store.Lookup(shard, []byte("d")); ok {
		t.Fatalf("lookup of a staged key: %q", r.Value)
	}
	if err := p.EndTransaction(dataCtx(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "commit visible", func() error {
		if r, ok, _ := gb.Store.Lookup(shard, []byte("d")); !ok || string(r.Value) != "open" {
			return fmt.Errorf("lookup d: %v", ok)
		}
		return nil
	})
	waitStable(t, gb, "orders")
	if got := consumeAll(t, gb, "orders", true); !slices.Equal(got, []string{"a=1", "b=2", "d=open", "e=plain"}) {
		t.Fatalf("read_committed after the commit: %v", got)
	}
}

// TestTxnZombieFencing: a second producer with the same transactional id
// fences the first, whose open transaction is aborted.
func TestTxnZombieFencing(t *testing.T) {
	gb, _ := newTxnBroker(t)
	createTopic(t, gb, "fenced", 1)
	zombie := txnProducer(t, gb, "same-id", "fenced")
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("k"), Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fresh := txnProducer(t, gb, "same-id", "fenced")
	produceTxn(t, fresh, true, "k", "fresh")
	err := zombie.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("k"), Value: []byte("late")}).FirstErr()
	if err == nil {
		err = zombie.EndTransaction(dataCtx(t), kgo.TryCommit)
	}
	if !errors.Is(err, kerr.InvalidProducerEpoch) && !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("zombie: %v, want INVALID_PRODUCER_EPOCH or PRODUCER_FENCED", err)
	}
	waitStable(t, gb, "fenced")
	if got := consumeAll(t, gb, "fenced", true); !slices.Equal(got, []string{"k=fresh"}) {
		t.Fatalf("read_committed: %v", got)
	}
}

// TestTxnProducerKilledTimesOut: a producer that dies mid-transaction holds
// the last stable offset until its transaction times out (from its first
// add); then the coordinator fences and aborts it, its data is gone and
// read_committed readers move on.
func TestTxnProducerKilledTimesOut(t *testing.T) {
	gb, clock := newTxnBroker(t)
	createTopic(t, gb, "jobs", 1)
	committed := txnProducer(t, gb, "ok", "jobs")
	produceTxn(t, committed, true, "a", "1")
	dead, err := kgo.NewClient(kgo.SeedBrokers(gb.Addr), kgo.TransactionalID("dies"), kgo.DefaultProduceTopic("jobs"),
		kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := dead.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("b"), Value: []byte("lost")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dead.Close() // killed: no EndTxn
	produceTxn(t, committed, true, "c", "3")
	adm := kadm.NewClient(gb.client(t))
	lsos, err := adm.ListCommittedOffsets(dataCtx(t), "jobs")
	if err != nil || lsos["jobs"][0].Offset != 2 {
		t.Fatalf("LSO held by the dead producer: %v %v", lsos, err)
	}
	clock.add(time.Minute + time.Second)
	gb.Broker.txns.abortTimedOut(clock.now())
	waitStable(t, gb, "jobs")
	if got := consumeAll(t, gb, "jobs", true); !slices.Equal(got, []string{"a=1", "c=3"}) {
		t.Fatalf("read_committed after the timeout: %v", got)
	}
	if got := consumeAll(t, gb, "jobs", false); slices.Contains(got, "b=lost") {
		t.Fatalf("aborted data still readable: %v", got)
	}
}

// BenchmarkTxnCommit measures one transaction of one record (begin, produce,
// commit) from a franz-go producer against a plain acks=all produce of one
// record in the same run: go test -run '^$' -bench TxnCommit ./broker/
func BenchmarkTxnCommit(b *testing.B) {
	gb, _ := newTxnBroker(b)
	createTopic(b, gb, "bench", 1)
	ctx := context.Background()
	rec := func(i int) *kgo.Record {
		return &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%1000), Value: []byte("value")}
	}
	b.Run("plain", func(b *testing.B) {
		cl := gb.client(b, kgo.DefaultProduceTopic("bench"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for i := 0; b.Loop(); i++ {
			if err := cl.ProduceSync(ctx, rec(i)).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transaction", func(b *testing.B) {
		cl := txnProducer(b, gb, "bench-tx", "bench")
		for i := 0; b.Loop(); i++ {
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
			if err := cl.ProduceSync(ctx, rec(i)).FirstErr(); err != nil {
				b.Fatal(err)
			}
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				b.Fatal(err)
			}
		}
	})
}
