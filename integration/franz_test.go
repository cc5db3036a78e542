package integration

// Black-box tests of one shardcache process through franz-go: compression codecs,
// compaction on write, tombstones, gaps at the tail, ListOffsets by timestamp and
// hostile input on the wire.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

func TestCompressionRoundTrip(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
		attr  uint8 // the batch attribute bits the producer must use
		// fetched is the codec the consumer's batches come back with: the
		// producer's, as Kafka answers.
		fetched uint8
	}{
		{"none", kgo.NoCompression(), 0, 0},
		{"gzip", kgo.GzipCompression(), 1, 1},
		{"snappy", kgo.SnappyCompression(), 2, 2},
		{"lz4", kgo.Lz4Compression(), 3, 3},
		{"zstd", kgo.ZstdCompression(), 4, 4},
	}
	for _, tc := range codecs {
		t.Run(tc.name, func(t *testing.T) {
			topic := topicName(t)
			createTopic(t, adm, topic, 2, nil)
			var mu sync.Mutex
			used := map[uint8]int{}
			cl := b.Client(t,
				kgo.ProducerBatchCompression(tc.codec),
				kgo.ProducerLinger(5*time.Millisecond),
				kgo.WithHooks(batchCodecHook(func(c uint8) {
					mu.Lock()
					used[c]++
					mu.Unlock()
				})),
			)
			const n = 500
			var recs []*kgo.Record
			for i := range n {
				// Repetitive values so every codec really compresses them.
				v := fmt.Sprintf("%s-value-%04d-%s", tc.name, i, strings.Repeat("abc", 20))
				recs = append(recs, kv(topic, fmt.Sprintf("key-%04d", i), &v))
			}
			produceSync(t, cl, recs...)
			// kgo may run the batch-written hook after the promise, so wait for it.
			waitFor(t, 10*time.Second, 5*time.Millisecond, "producer reports its codec", func() error {
				mu.Lock()
				defer mu.Unlock()
				if used[tc.attr] == 0 {
					return fmt.Errorf("batches written with codecs %v, want %d", used, tc.attr)
				}
				return nil
			})

			got, fetched := consumeCodecs(t, b, topic)
			mu.Lock()
			if len(used) != 1 {
				t.Errorf("producer wrote batches with codecs %v, want only %d", used, tc.attr)
			}
			if len(fetched) != 1 || fetched[tc.fetched] == 0 {
				t.Errorf("consumer read batches with codecs %v, want only %d", fetched, tc.fetched)
			}
			mu.Unlock()
			checkLatest(t, got, recs)
			if tc.attr != 4 {
				return
			}
			// A Fetch before v10 cannot carry zstd (KIP-110): such a
			// consumer reads the same records uncompressed.
			got, old := consumeCodecs(t, b, topic, kgo.MaxVersions(kversion.V2_0_0()))
			if len(old) != 1 || old[0] == 0 {
				t.Errorf("a Fetch v8 consumer read batches with codecs %v, want only uncompressed", old)
			}
			checkLatest(t, got, recs)
		})
	}
}

// TestTopicCompressionType: a topic's compression.type, when it names a
// codec, is what every fetched batch comes compressed with, whatever the
// producer used, as on Kafka (where the broker recompresses at produce); a
// change applies to the next fetch.
func TestTopicCompressionType(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	topic := topicName(t)
	createTopic(t, adm, topic, 1, map[string]string{"compression.type": "lz4"})
	cl := b.Client(t, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	const n = 200
	var recs []*kgo.Record
	for i := range n {
		v := fmt.Sprintf("value-%04d-%s", i, strings.Repeat("xyz", 30))
		recs = append(recs, kv(topic, fmt.Sprintf("key-%04d", i), &v))
	}
	produceSync(t, cl, recs...)
	read := func(want uint8) {
		t.Helper()
		got, fetched := consumeCodecs(t, b, topic)
		if len(fetched) != 1 || fetched[want] == 0 {
			t.Errorf("read batches with codecs %v, want only %d", fetched, want)
		}
		checkLatest(t, got, recs)
	}
	read(3) // lz4, the topic's, not the producer's snappy
	for _, step := range []struct {
		value string
		codec uint8
	}{{"uncompressed", 0}, {"producer", 2}} {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "compression.type", Value: &step.value}}, topic)
		cancel()
		if err == nil {
			err = resps[0].Err
		}
		if err != nil {
			t.Fatalf("set compression.type=%s: %v", step.value, err)
		}
		waitFor(t, 10*time.Second, 20*time.Millisecond, "compression.type="+step.value+" in force", func() error {
			if _, fetched := consumeCodecs(t, b, topic); fetched[step.codec] == 0 {
				return fmt.Errorf("read batches with codecs %v", fetched)
			}
			return nil
		})
		read(step.codec)
	}
}

// consumeCodecs reads topic as consumeAll does and returns the latest value of
// each key and how many fetched batches came with each codec.
func consumeCodecs(t *testing.T, b *testBroker, topic string, opts ...kgo.Opt) (map[string]*string, map[uint8]int) {
	t.Helper()
	var mu sync.Mutex
	codecs := map[uint8]int{}
	recs := consumeAll(t, b, topic, append(opts, kgo.WithHooks(fetchCodecHook(func(c uint8) {
		mu.Lock()
		codecs[c]++
		mu.Unlock()
	})))...)
	mu.Lock()
	defer mu.Unlock()
	return latestByKey(t, recs), codecs
}

// checkLatest checks that got, the latest value of each key read back, holds
// the value of every record of recs (one per key) and no other key.
func checkLatest(t *testing.T, got map[string]*string, recs []*kgo.Record) {
	t.Helper()
	if len(got) != len(recs) {
		t.Fatalf("read %d keys, want %d", len(got), len(recs))
	}
	for _, r := range recs {
		if v := got[string(r.Key)]; v == nil || *v != string(r.Value) {
			t.Fatalf("key %s: read %v, want %q", r.Key, v, r.Value)
		}
	}
}

// batchCodecHook reports the compression codec of every produced batch.
type batchCodecHook func(codec uint8)

func (h batchCodecHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h(m.CompressionType)
}

// fetchCodecHook reports the compression codec of every fetched batch.
type fetchCodecHook func(codec uint8)

func (h fetchCodecHook) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	h(m.CompressionType)
}

func TestCompactionKeepsLatestValue(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 3, nil)
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))

	const keys, rounds = 1000, 10
	for round := range rounds {
		recs := make([]*kgo.Record, 0, keys)
		for k := range keys {
			recs = append(recs, kv(topic, fmt.Sprintf("k%04d", k), strp(fmt.Sprintf("k%04d-r%d", k, round))))
		}
		produceSync(t, cl, recs...)
	}
	var total int64
	for _, end := range endOffsets(t, b.Admin(t), topic) {
		total += end
	}
	if total != keys*rounds {
		t.Fatalf("high watermarks sum to %d, want %d (one offset per record written)", total, keys*rounds)
	}

	recs := consumeAll(t, b, topic)
	if len(recs) != keys {
		t.Fatalf("full read returned %d records, want exactly %d:%s", len(recs), keys, describe(recs))
	}
	got := latestByKey(t, recs)
	for k := range keys {
		key := fmt.Sprintf("k%04d", k)
		want := fmt.Sprintf("k%04d-r%d", k, rounds-1)
		if v := got[key]; v == nil || *v != want {
			t.Errorf("key %s: read %v, want %q", key, v, want)
		}
	}
}

func TestTombstoneHidesKeyThenExpires(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	adm := b.Admin(t)
	createTopic(t, adm, topic, 1, map[string]string{"delete.retention.ms": "1000"})
	cl := b.Client(t)

	produceSync(t, cl,
		kv(topic, "a", strp("a1")),
		kv(topic, "b", strp("b1")),
		kv(topic, "c", strp("c1")),
	)
	produceSync(t, cl, kv(topic, "b", nil)) // tombstone
	produceSync(t, cl, kv(topic, "d", strp("d1")))

	recs := consumeAll(t, b, topic)
	got := latestByKey(t, recs)
	if n := countKeys(recs)["b"]; n != 1 {
		t.Fatalf("full read holds %d records for the deleted key b, want exactly the tombstone:%s", n, describe(recs))
	}
	if v, ok := got["b"]; !ok || v != nil {
		t.Fatalf("full read right after the delete: key b = %v, want a visible tombstone:%s", v, describe(recs))
	}
	for k, want := range map[string]string{"a": "a1", "c": "c1", "d": "d1"} {
		if v := got[k]; v == nil || *v != want {
			t.Fatalf("key %s = %v, want %q", k, v, want)
		}
	}

	// delete.retention.ms is 1 s and compaction runs every 100 ms; allow plenty.
	waitFor(t, 30*time.Second, 100*time.Millisecond, "tombstone removed after delete.retention.ms", func() error {
		recs := consumeAll(t, b, topic)
		if n := countKeys(recs)["b"]; n != 0 {
			return fmt.Errorf("full read still holds %d record(s) for b:%s", n, describe(recs))
		}
		if len(recs) != 3 {
			return fmt.Errorf("full read holds %d records, want a, c and d:%s", len(recs), describe(recs))
		}
		return nil
	})
	// The log start stays put under compaction (offset 0 is a's live record anyway).
	if start := startOffsets(t, adm, topic)[0]; start != 0 {
		t.Fatalf("log start offset %d after tombstone expiry, want 0", start)
	}
}

// TestConsumerReachesHighWatermarkOverDeadTail pins the gap rule: when nothing live
// is left between a consumer's position and the high watermark, fetches must still
// move the position to the high watermark (kafkajs, brod and Redpanda consumers have
// hung on such tails).
func TestConsumerReachesHighWatermarkOverDeadTail(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	adm := b.Admin(t)
	createTopic(t, adm, topic, 1, map[string]string{"delete.retention.ms": "1000"})
	cl := b.Client(t)

	var live []*kgo.Record
	for i := range 10 {
		live = append(live, kv(topic, fmt.Sprintf("live-%d", i), strp(fmt.Sprintf("v%d", i))))
	}
	produceSync(t, cl, live...)

	// A consumer reads everything there is: its position is N.
	first := fetchFrom(t, cl, adm, topic, 0, 0, 20)
	if len(first.Records) != 10 || first.Position != 10 {
		t.Fatalf("first read: %d records, position %d; want 10 and 10", len(first.Records), first.Position)
	}
	n := first.Position

	// Everything written after N is superseded: values, overwrites, then tombstones
	// for all those keys. Once the tombstones expire, [N, HWM) holds nothing live.
	for round := range 3 {
		var recs []*kgo.Record
		for i := range 20 {
			recs = append(recs, kv(topic, fmt.Sprintf("dead-%d", i), strp(fmt.Sprintf("r%d", round))))
		}
		produceSync(t, cl, recs...)
	}
	var tombs []*kgo.Record
	for i := range 20 {
		tombs = append(tombs, kv(topic, fmt.Sprintf("dead-%d", i), nil))
	}
	produceSync(t, cl, tombs...)
	hwm := endOffsets(t, adm, topic)[0]
	if want := n + 80; hwm != want {
		t.Fatalf("high watermark %d, want %d", hwm, want)
	}

	// Before expiry the consumer at N sees exactly the 20 tombstones.
	mid := fetchFrom(t, cl, adm, topic, 0, n, 20)
	if mid.Position != hwm {
		t.Fatalf("consumer at %d stopped at %d, want the high watermark %d", n, mid.Position, hwm)
	}
	for _, r := range mid.Records {
		if r.Value != nil {
			t.Fatalf("superseded record visible in the tail:%s", describe(mid.Records))
		}
	}

	waitFor(t, 30*time.Second, 100*time.Millisecond, "tail tombstones expired", func() error {
		res := fetchFrom(t, cl, adm, topic, 0, n, 20)
		if len(res.Records) != 0 {
			return fmt.Errorf("tail still returns %d records:%s", len(res.Records), describe(res.Records))
		}
		if res.Position != hwm {
			return fmt.Errorf("position %d, want high watermark %d", res.Position, hwm)
		}
		return nil
	})

	// A fresh consumer at N over the dead tail reaches the high watermark, and a full
	// read from 0 returns exactly the live records and also ends at the high watermark.
	tail := fetchFrom(t, cl, adm, topic, 0, n, 20)
	if tail.Position != hwm || len(tail.Records) != 0 {
		t.Fatalf("consumer at %d: position %d with %d records, want position %d with none", n, tail.Position, len(tail.Records), hwm)
	}
	full := fetchFrom(t, cl, adm, topic, 0, 0, 20)
	if full.Position != hwm || len(full.Records) != 10 {
		t.Fatalf("full read: position %d with %d records, want position %d with 10:%s", full.Position, len(full.Records), hwm, describe(full.Records))
	}

	// A kgo consumer parked at N keeps working: the next write reaches it.
	consumer := b.Client(t,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(n)}}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	produceSync(t, cl, kv(topic, "after-gap", strp("x")))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("kgo consumer at %d never received the record written after the dead tail", n)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("consume: %v", err) })
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if len(recs) != 1 || string(recs[0].Key) != "after-gap" || recs[0].Offset != hwm {
			t.Fatalf("kgo consumer at %d read%s, want only after-gap at %d", n, describe(recs), hwm)
		}
		break
	}
}

func TestListOffsetsByTimestamp(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	adm := b.Admin(t)
	createTopic(t, adm, topic, 1, nil)
	cl := b.Client(t)

	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	rec := func(key string, sec int) *kgo.Record {
		r := kv(topic, key, strp(fmt.Sprintf("%s@%d", key, sec)))
		r.Timestamp = at(sec)
		return r
	}
	// Offsets 0 and 1 are superseded by 3 and 5, so the log is gappy:
	// live: 2 c@3, 3 a@4, 4 d@5, 5 b@6.
	for _, r := range []*kgo.Record{rec("a", 1), rec("b", 2), rec("c", 3), rec("a", 4), rec("d", 5), rec("b", 6)} {
		produceSync(t, cl, r)
	}

	if got := startOffsets(t, adm, topic)[0]; got != 0 {
		t.Errorf("earliest = %d, want 0 (log start stays put under compaction)", got)
	}
	if got := endOffsets(t, adm, topic)[0]; got != 6 {
		t.Errorf("latest = %d, want 6", got)
	}
	tests := []struct {
		name string
		ms   int64
		want int64
	}{
		{"before everything", at(0).UnixMilli(), 2},
		{"inside the compacted range", at(1).UnixMilli() + 500, 2},
		{"exact live timestamp", at(3).UnixMilli(), 2},
		{"between live records", at(3).UnixMilli() + 1, 3},
		{"exact later timestamp", at(5).UnixMilli(), 4},
		{"last record", at(6).UnixMilli(), 5},
		{"after everything (kadm answers the end offset)", at(7).UnixMilli(), 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			listed, err := adm.ListOffsetsAfterMilli(ctx, tc.ms, topic)
			if err != nil {
				t.Fatal(err)
			}
			if err := listed.Error(); err != nil {
				t.Fatal(err)
			}
			o, ok := listed.Lookup(topic, 0)
			if !ok {
				t.Fatalf("no answer for %s/0", topic)
			}
			if o.Offset != tc.want {
				t.Fatalf("offset after %d ms = %d (timestamp %d), want %d", tc.ms, o.Offset, o.Timestamp, tc.want)
			}
		})
	}
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 1, nil)
	cl := b.Client(t)
	produceSync(t, cl, kv(topic, "before", strp("1")))

	frame := func(body []byte) []byte {
		out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(out, body...)
	}
	header := func(key, version int16) []byte {
		h := binary.BigEndian.AppendUint16(nil, uint16(key))
		h = binary.BigEndian.AppendUint16(h, uint16(version))
		h = binary.BigEndian.AppendUint32(h, 7)              // correlation id
		h = binary.BigEndian.AppendUint16(h, uint16(0xFFFF)) // null client id
		return h
	}
	tests := []struct {
		name  string
		input []byte
	}{
		{"huge frame size", append(binary.BigEndian.AppendUint32(nil, 0x7FFFFFF0), 0, 1, 2, 3)},
		{"negative frame size", binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF)},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"garbage produce body", frame(append(header(0, 3), 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0x7f))},
		{"unknown api key 200", frame(header(200, 0))},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", b.KafkaAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.input); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := waitClosed(conn, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			// Another connection is unaffected.
			produceSync(t, cl, kv(topic, fmt.Sprintf("after-%d", i), strp("1")))
		})
	}
	recs := consumeAll(t, b, topic)
	if len(recs) != 1+len(tests) {
		t.Fatalf("read %d records, want %d:%s", len(recs), 1+len(tests), describe(recs))
	}
}

// waitClosed reads (and discards) until the peer closes conn; it fails if the
// connection is still open at the deadline.
func waitClosed(conn net.Conn, timeout time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("connection still open %v after bad input", timeout)
		}
		if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset by peer") {
			return nil
		}
		return fmt.Errorf("read: %v", err)
	}
}
