package integration

// Helpers shared by the franz-go and kcat tests: topic creation, synchronous
// produce, and two ways to read a whole partition back (a kgo consumer, and a
// hand-driven Fetch loop that tracks the consumer position exactly).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// opTimeout bounds one admin call, one produce or one full read.
const opTimeout = 60 * time.Second

// topicName returns a topic name unique to the test (and to the run, so tests can
// share an external cluster).
func topicName(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	// Kafka topic names allow [a-zA-Z0-9._-] and at most 249 characters.
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		case r == '/':
			return '-'
		}
		return '_'
	}, t.Name())
	if len(name) > 200 {
		name = name[:200]
	}
	return name + "-" + hex.EncodeToString(b[:])
}

// createTopic creates a topic with replication factor 1 and the given configs and
// fails the test on any error.
func createTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cfg := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	resp, err := adm.CreateTopic(ctx, partitions, 1, cfg, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
}

// produceSync produces records and fails the test if any is not acknowledged.
func produceSync(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", len(recs), err)
	}
}

// kv builds a record for topic with a string key and value; a nil value is a
// tombstone.
func kv(topic, key string, value *string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte(key)}
	if value != nil {
		r.Value = []byte(*value)
	}
	return r
}

func strp(s string) *string { return &s }

// endOffsets returns the high watermark of every partition of topic.
func endOffsets(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	return listOffsets(t, topic, func(ctx context.Context) (kadm.ListedOffsets, error) {
		return adm.ListEndOffsets(ctx, topic)
	})
}

// startOffsets returns the log start offset of every partition of topic.
func startOffsets(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	return listOffsets(t, topic, func(ctx context.Context) (kadm.ListedOffsets, error) {
		return adm.ListStartOffsets(ctx, topic)
	})
}

func listOffsets(t testing.TB, topic string, list func(context.Context) (kadm.ListedOffsets, error)) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	listed, err := list(ctx)
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	if err := listed.Error(); err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	out := make(map[int32]int64)
	for p, o := range listed[topic] {
		out[p] = o.Offset
	}
	if len(out) == 0 {
		t.Fatalf("list offsets of %s: no partitions", topic)
	}
	return out
}

// consumeAll reads every partition of topic from the start with a fresh kgo consumer
// until it has seen the record just below each partition's high watermark (taken
// before reading). It needs the last record of each non-empty partition to be live,
// which holds for any log whose last record is not an expired tombstone.
func consumeAll(t testing.TB, b *testBroker, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ends := endOffsets(t, b.Admin(t), topic)
	starts := startOffsets(t, b.Admin(t), topic)
	want := make(map[int32]int64) // partition -> offset still to be seen
	for p, end := range ends {
		if end > starts[p] {
			want[p] = end - 1
		}
	}
	if len(want) == 0 {
		return nil
	}
	cl := b.Client(t, append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var recs []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: partitions %v did not reach their high watermarks %v within %v (got %d records)",
				topic, want, ends, opTimeout, len(recs))
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, r)
			if w, ok := want[r.Partition]; ok && r.Offset >= w {
				delete(want, r.Partition)
			}
		})
	}
	return recs
}

// fetchResult is one partition read by fetchFrom.
type fetchResult struct {
	Records []*kgo.Record
	// Position is the consumer position after the last fetch.
	Position int64
	// HighWatermark is the last high watermark the broker reported.
	HighWatermark int64
	// Fetches counts the Fetch requests sent.
	Fetches int
}

// fetchFrom acts as a minimal consumer of one partition: it sends Fetch requests
// from offset, advances its position the way Kafka clients do (past the last offset
// of every returned batch, empty batches included), and stops when the position
// reaches the high watermark. It fails the test if the position stalls below the
// high watermark for maxFetches requests in a row.
func fetchFrom(t testing.TB, cl *kgo.Client, adm *kadm.Client, topic string, partition int32, offset int64, maxFetches int) fetchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatalf("list topic %s: %v", topic, err)
	}
	td, ok := details[topic]
	if !ok || td.Err != nil {
		t.Fatalf("list topic %s: missing (%v)", topic, td.Err)
	}
	res := fetchResult{Position: offset, HighWatermark: -1}
	stalled := 0
	for {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 100
		req.MinBytes = 1
		req.MaxBytes = 4 << 20
		req.SessionEpoch = -1 // no fetch session (KIP-227)
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic   // Fetch < v13
		rt.TopicID = td.ID // Fetch >= v13
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = partition
		rp.FetchOffset = res.Position
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)

		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, partition, res.Position, err)
		}
		res.Fetches++
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, partition, res.Position, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("fetch %s/%d: want one topic with one partition in the response, got %+v", topic, partition, resp.Topics)
		}
		rpr := &resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(rpr.ErrorCode); err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, partition, res.Position, err)
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:    res.Position,
			Topic:     topic,
			Partition: partition,
		}, rpr, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			t.Fatalf("fetch %s/%d at %d: decoding records: %v", topic, partition, res.Position, fp.Err)
		}
		res.Records = append(res.Records, fp.Records...)
		res.HighWatermark = rpr.HighWatermark
		if next > res.Position {
			res.Position = next
			stalled = 0
		} else {
			stalled++
		}
		if res.Position >= res.HighWatermark {
			return res
		}
		if stalled >= maxFetches {
			t.Fatalf("fetch %s/%d: position stuck at %d below the high watermark %d after %d fetches without progress",
				topic, partition, res.Position, res.HighWatermark, stalled)
		}
	}
}

// latestByKey folds records into key -> value (nil for a tombstone), later offsets
// winning, and fails on a record without a key.
func latestByKey(t testing.TB, recs []*kgo.Record) map[string]*string {
	t.Helper()
	sorted := append([]*kgo.Record(nil), recs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Partition != sorted[j].Partition {
			return sorted[i].Partition < sorted[j].Partition
		}
		return sorted[i].Offset < sorted[j].Offset
	})
	out := make(map[string]*string, len(recs))
	for _, r := range sorted {
		if r.Key == nil {
			t.Fatalf("record at %d/%d has no key", r.Partition, r.Offset)
		}
		if r.Value == nil {
			out[string(r.Key)] = nil
			continue
		}
		out[string(r.Key)] = strp(string(r.Value))
	}
	return out
}

// countKeys returns key -> number of records with that key.
func countKeys(recs []*kgo.Record) map[string]int {
	out := make(map[string]int, len(recs))
	for _, r := range recs {
		out[string(r.Key)]++
	}
	return out
}

// waitFor polls cond every interval until it returns nil or the timeout passes, and
// then fails the test with cond's last error.
func waitFor(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

func describe(recs []*kgo.Record) string {
	var sb strings.Builder
	for i, r := range recs {
		if i == 20 {
			fmt.Fprintf(&sb, " ... (%d more)", len(recs)-i)
			break
		}
		v := "<nil>"
		if r.Value != nil {
			v = string(r.Value)
		}
		fmt.Fprintf(&sb, " %d/%d %s=%s", r.Partition, r.Offset, r.Key, v)
	}
	return sb.String()
}

// scrapeMetric reads one sample of a node's /metrics, named as the exposition
// writes it (with its labels); a missing series fails the test.
func scrapeMetric(t testing.TB, httpAddr, series string) float64 {
	t.Helper()
	v, ok := scrapeSample(t, httpAddr, series)
	if !ok {
		t.Fatalf("%s exports no %s", httpAddr, series)
	}
	return v
}

// scrapeSample is scrapeMetric that reports a missing series instead.
func scrapeSample(t testing.TB, httpAddr, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && name == series {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return 0, false
}
