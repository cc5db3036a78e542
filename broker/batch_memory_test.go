package broker

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// memoryBatches are produce batches of the shapes that cost the most memory
// per byte sent: large compressed batches, many small records, many headers.
func memoryBatches() []struct {
	name  string
	batch wireBatch
} {
	value := bytes.Repeat([]byte("v"), 1024)
	var distinct, oneKey, small, headers []kmsg.Record
	for i := 0; i < 4096; i++ {
		distinct = append(distinct, testKmsgRecord(i, []byte(fmt.Sprintf("key-%06d", i)), value, 0))
	}
	for i := 0; i < 200_000; i++ {
		oneKey = append(oneKey, testKmsgRecord(i, []byte("k"), []byte("0123456789"), 0))
	}
	for i := 0; i < 1000; i++ {
		small = append(small, testKmsgRecord(i, []byte(fmt.Sprintf("key-%06d", i)), value, 0))
	}
	for i := 0; i < 20_000; i++ {
		r := testKmsgRecord(i, []byte("k"), nil, 0)
		for j := 0; j < 20; j++ {
			r.Headers = append(r.Headers, kmsg.Header{Key: "h", Value: []byte("v")})
		}
		headers = append(headers, r)
	}
	return []struct {
		name  string
		batch wireBatch
	}{
		{"zstd 4 MiB distinct keys", wireBatch{codec: kgo.ZstdCompression(), records: distinct}},
		{"gzip 4 MiB distinct keys", wireBatch{codec: kgo.GzipCompression(), records: distinct}},
		{"lz4 2 MiB tiny records one key", wireBatch{codec: kgo.Lz4Compression(), records: oneKey}},
		{"snappy headers", wireBatch{codec: kgo.SnappyCompression(), records: headers}},
		{"uncompressed 1 MiB", wireBatch{records: small}},
	}
}

// TestBatchMemoryCoversProduce measures what a produce of one large batch
// allocates in the whole process, from the request's arrival to its
// response, and checks that decodeProduceBatch charged at least that: the
// memory budget's produce accounting (batch_memory.go) is calibrated here.
func TestBatchMemoryCoversProduce(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("produces several large batches; measures allocations, which the race detector changes")
	}
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	// The topic's creation is not a batch's cost.
	c.write(kmsg.NewRequestFormatter().AppendRequest(nil, produceBatch("memory", 0, wireBatch{records: threeRecords()}.build(t)), 99))
	c.response(kmsg.Produce.Int16(), 9)
	for i, bt := range memoryBatches() {
		raw := bt.batch.build(t)
		req := produceBatch("memory", 0, raw)
		framed := kmsg.NewRequestFormatter().AppendRequest(nil, req, int32(i))
		h, err := parseBatchHeader(raw, batchLimits{})
		if err != nil {
			t.Fatal(err)
		}
		body := raw[batchHeaderSize:]
		if h.codec != codecNone {
			if body, err = decompressBounded(body, h.codec, DefaultMaxDecompressedBytes); err != nil {
				t.Fatal(err)
			}
		}
		shape, err := scanRecords(body, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		charged := batchMemory(int64(len(body)), decompressedSize(h.codec != codecNone, int64(len(body))), h.numRecords, shape)
		// The first send warms up decoders and pools; the next ones, each
		// replacing every key the one before wrote, are measured. The
		// count is process-wide, so Pebble's background work (a memtable
		// rotating or flushing) can land in a window and add a few MB;
		// that only ever adds, so the least of three sends is the
		// produce's own cost (without it, about 1 run in 12 failed).
		c.write(framed)
		c.response(kmsg.Produce.Int16(), 9)
		var got uint64
		var each []uint64
		for range 3 {
			var resp kmsg.Response
			n := allocated(func() {
				c.write(framed)
				_, resp = c.response(kmsg.Produce.Int16(), 9)
			})
			if code := producePartitionResp(t, resp.(*kmsg.ProduceResponse)).ErrorCode; code != 0 {
				t.Fatalf("%s: produce error %v", bt.name, kerr.ErrorForCode(code))
			}
			each = append(each, n)
			if got == 0 || n < got {
				got = n
			}
		}
		t.Logf("%s: %d bytes sent, %d records, %d decompressed: allocated %d (least of %v), charged %d (%.2f)",
			bt.name, len(raw), h.numRecords, len(body), got, each, charged, float64(got)/float64(charged))
		if uint64(charged) < got {
			t.Errorf("%s: produce allocated %d bytes, batchMemory charges %d", bt.name, got, charged)
		}
	}
}

// TestDecodeProduceBatchCharges checks the budget side of decoding a batch:
// the charge covers the batch, a batch that can never fit is refused with
// MESSAGE_TOO_LARGE without decompressing, and a full budget makes decoding
// wait until memory is released.
func TestDecodeProduceBatchCharges(t *testing.T) {
	value := bytes.Repeat([]byte("x"), 1000)
	var recs []kmsg.Record
	for i := 0; i < 1000; i++ {
		recs = append(recs, testKmsgRecord(i, []byte(fmt.Sprintf("k%d", i)), value, 0))
	}
	lim := batchLimits{MaxDecompressedBytes: 16 << 20, Policy: shardstore.PolicyCompact}
	for _, c := range compressionCodecs {
		t.Run(c.name, func(t *testing.T) {
			raw := wireBatch{codec: c.codec, records: recs}.build(t)
			b := &Broker{budget: newBudget(64<<20, 32<<20)}
			batch, charged, err := b.decodeProduceBatch(t.Context(), raw, lim)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch.Records) != 1000 || b.budget.inUse() != charged || charged < 1000*1000 {
				t.Fatalf("%d records, charged %d, in use %d", len(batch.Records), charged, b.budget.inUse())
			}
			b.budget.release(charged)

			// A budget whose work half is smaller than the batch refuses it.
			small := &Broker{budget: newBudget(2<<20, 1<<20)}
			_, _, err = small.decodeProduceBatch(t.Context(), raw, lim)
			if !errors.Is(err, kerr.MessageTooLarge) || small.budget.inUse() != 0 {
				t.Fatalf("err = %v, in use %d; want MESSAGE_TOO_LARGE and nothing charged", err, small.budget.inUse())
			}
		})
	}
}

// TestDecodeProduceBatchStreamedZstd: a zstd frame without a content size
// (what streaming encoders, the Java producer's among them, write) that
// decompresses to far more than the first estimate of 8 times its size is
// decoded again with room for its bound, not refused as corrupt. A Java
// producer sending such a batch (one 200 KiB value of a repeated word) was
// answered CORRUPT_MESSAGE, retried, and stalled to its delivery timeout.
func TestDecodeProduceBatchStreamedZstd(t *testing.T) {
	recs := []kmsg.Record{testKmsgRecord(0, []byte("k"), bytes.Repeat([]byte("big-"), 50<<10), 0)}
	var stream bytes.Buffer
	w, err := zstd.NewWriter(&stream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(encodeKmsgRecords(recs)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(stream.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("the stream's frame header: %+v, %v; want no content size", h, err)
	}
	raw := wireBatch{codec: kgo.ZstdCompression(), records: recs, mutate: func(b *kmsg.RecordBatch) {
		b.Records = stream.Bytes()
	}}.build(t)
	lim := batchLimits{MaxDecompressedBytes: 16 << 20, Policy: shardstore.PolicyCompact}
	b := &Broker{budget: newBudget(64<<20, 32<<20)}
	batch, charged, err := b.decodeProduceBatch(t.Context(), raw, lim)
	if err != nil {
		t.Fatal(err)
	}
	defer b.budget.release(charged)
	if len(batch.Records) != 1 || !bytes.Equal(batch.Records[0].Value, recs[0].Value) {
		t.Fatalf("decoded %d records", len(batch.Records))
	}

	// Corrupt data is still refused as corrupt once decoded with room for
	// its bound: here the frame's content checksum, its last 4 bytes.
	bad := bytes.Clone(stream.Bytes())
	bad[len(bad)-1] ^= 0xff
	raw = wireBatch{codec: kgo.ZstdCompression(), records: recs, mutate: func(b *kmsg.RecordBatch) {
		b.Records = bad
	}}.build(t)
	if _, _, err := b.decodeProduceBatch(t.Context(), raw, lim); !errors.Is(err, kerr.CorruptMessage) {
		t.Fatalf("corrupt frame: %v, want CORRUPT_MESSAGE", err)
	}
}

// TestDecodeBatchCountPastRecords: a compressed batch of three records whose
// header claims 200,000 is refused as corrupt once decompressed, before the
// records are allocated (about 20 MB for that count), by both decoders; the
// produce decoder gives back everything it charged.
func TestDecodeBatchCountPastRecords(t *testing.T) {
	const claimed = 200_000
	raw := wireBatch{codec: kgo.SnappyCompression(), records: threeRecords(), mutate: func(b *kmsg.RecordBatch) {
		b.NumRecords = claimed
		b.LastOffsetDelta = claimed - 1
	}}.build(t)
	lim := batchLimits{MaxDecompressedBytes: 16 << 20, Policy: shardstore.PolicyDelete}
	// Room for what the claimed count is charged (about 320 bytes a record).
	b := &Broker{budget: newBudget(256<<20, 32<<20)}
	decoders := map[string]func() error{
		"decodeBatch": func() error { _, err := decodeBatch(raw, lim); return err },
		"decodeProduceBatch": func() error {
			_, charged, err := b.decodeProduceBatch(t.Context(), raw, lim)
			b.budget.release(charged)
			return err
		},
	}
	for name, decode := range decoders {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := decode()
			runtime.ReadMemStats(&after)
			if !errors.Is(err, kerr.CorruptMessage) || !strings.Contains(err.Error(), "claims 200000 records") {
				t.Fatalf("err = %v, want CORRUPT_MESSAGE naming the claimed count", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Fatalf("allocated %d bytes refusing a batch of %d bytes", n, len(raw))
			}
			if n := b.budget.inUse(); n != 0 {
				t.Fatalf("%d bytes still charged to the budget", n)
			}
		})
	}
}
