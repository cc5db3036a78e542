package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txnClient is a franz-go transactional producer writing to partition 0 of topic.
func txnClient(t testing.TB, b *testBroker, id, topic string) *kgo.Client {
	return b.Client(t, kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
		kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

// txnProduce writes key=value pairs in one transaction, leaving it open
// unless end is set; commit says how it ends.
func txnProduce(t testing.TB, cl *kgo.Client, end, commit bool, kvs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kvs); i += 2 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(kvs[i]), Value: []byte(kvs[i+1])}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", kvs[i], err)
		}
	}
	if end {
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction: %v", err)
		}
	}
}

// readCommitted reads partition 0 of topic with a read_committed consumer
// until every key of want has been seen, and returns key -> values seen.
func readCommitted(t testing.TB, b *testBroker, topic string, want map[string]string) map[string][]string {
	t.Helper()
	cl := b.Client(t, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	seen := map[string][]string{}
	for {
		missing := 0
		for k, v := range want {
			if vs := seen[k]; len(vs) == 0 || vs[len(vs)-1] != v {
				missing++
			}
		}
		if missing == 0 {
			return seen
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed of %s: %d keys missing within %v; seen %v", topic, missing, opTimeout, seen)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = append(seen[string(r.Key)], string(r.Value)) })
	}
}

// TestTxnKillNine: kill -9 of the broker with one transaction open and one
// committed just before (its markers possibly not written yet). After the
// restart nothing committed is lost and nothing aborted becomes visible: the
// open transaction is fenced and aborted by its producer's successor, the
// committed one is completed by the coordinator's load.
func TestTxnKillNine(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 1, nil)

	a := txnClient(t, b, "kill-a", topic)
	var committed []string
	for i := range 10 {
		committed = append(committed, fmt.Sprintf("k%d", i), "committed")
	}
	txnProduce(t, a, true, true, committed...)
	open := txnClient(t, b, "kill-open", topic)
	txnProduce(t, open, false, false, "o1", "open", "o2", "open")
	late := txnClient(t, b, "kill-late", topic)
	txnProduce(t, late, true, true, "late", "committed") // EndTxn answered; markers may still be on their way
	b.Kill(t)
	b.Start(t)

	// The open transaction's successor fences it (its abort is written
	// before the successor may start) and commits its own.
	successor := txnClient(t, b, "kill-open", topic)
	txnProduce(t, successor, true, true, "o1", "successor")

	want := map[string]string{"late": "committed", "o1": "successor"}
	for i := 0; i < len(committed); i += 2 {
		want[committed[i]] = "committed"
	}
	seen := readCommitted(t, b, topic, want)
	for k, vs := range seen {
		for _, v := range vs {
			if v == "open" {
				t.Fatalf("aborted record %s=%s visible to read_committed", k, v)
			}
		}
		if len(vs) != 1 {
			t.Fatalf("key %s read %d times: %v", k, len(vs), vs)
		}
	}
	if _, ok := seen["o2"]; ok {
		t.Fatalf("aborted key o2 visible: %v", seen["o2"])
	}
}
