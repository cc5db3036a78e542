package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// wireBatch builds a produce record batch the way a client does, through kmsg
// and kgo's compressor, so the decoder is checked against an independent encoder.
type wireBatch struct {
	codec    kgo.CompressionCodec
	firstTs  int64
	records  []kmsg.Record
	producer *shardstore.Producer // nil: not idempotent
	attrs    int16                // extra attribute bits
	// mutate edits the batch before Length and CRC are computed.
	mutate func(b *kmsg.RecordBatch)
}

func testKmsgRecord(i int, key, value []byte, tsDelta int64) kmsg.Record {
	return kmsg.Record{OffsetDelta: int32(i), Key: key, Value: value, TimestampDelta64: tsDelta}
}

func encodeKmsgRecords(recs []kmsg.Record) []byte {
	var out []byte
	for i := range recs {
		r := recs[i]
		r.Length = 0
		body := r.AppendTo(nil)[1:] // drop the 1 byte varint 0 length
		r.Length = int32(len(body))
		out = r.AppendTo(out)
	}
	return out
}

func (w wireBatch) build(tb testing.TB) []byte {
	tb.Helper()
	raw := encodeKmsgRecords(w.records)
	var codecType int16
	if w.codec != (kgo.CompressionCodec{}) && w.codec != kgo.NoCompression() {
		c, err := kgo.DefaultCompressor(w.codec)
		if err != nil {
			tb.Fatal(err)
		}
		var buf bytes.Buffer
		out, ct := c.Compress(&buf, raw)
		raw = append([]byte(nil), out...)
		codecType = int16(ct)
	}
	p := shardstore.NoProducer
	if w.producer != nil {
		p = *w.producer
	}
	b := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           codecType | w.attrs,
		LastOffsetDelta:      int32(len(w.records) - 1),
		FirstTimestamp:       w.firstTs,
		MaxTimestamp:         w.firstTs,
		ProducerID:           p.ID,
		ProducerEpoch:        p.Epoch,
		FirstSequence:        p.BaseSequence,
		NumRecords:           int32(len(w.records)),
		Records:              raw,
	}
	if w.mutate != nil {
		w.mutate(&b)
	}
	return sealKmsgBatch(b)
}

// sealKmsgBatch encodes b with its Length and CRC computed.
func sealKmsgBatch(b kmsg.RecordBatch) []byte {
	b.Length = 0
	b.CRC = 0
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

func threeRecords() []kmsg.Record {
	return []kmsg.Record{
		testKmsgRecord(0, []byte("k0"), []byte("v0"), 0),
		testKmsgRecord(1, []byte{}, nil, 5),
		{OffsetDelta: 2, Key: []byte("k2"), Value: []byte("v2"), TimestampDelta64: 2,
			Headers: []kmsg.Header{{Key: "h", Value: []byte("hv")}, {Key: "", Value: nil}}},
	}
}

var compressionCodecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()},
	{"gzip", kgo.GzipCompression()},
	{"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()},
	{"zstd", kgo.ZstdCompression()},
}

func TestDecodeBatchCodecs(t *testing.T) {
	want := []shardstore.Record{
		{Timestamp: 1000, Key: []byte("k0"), Value: []byte("v0")},
		{Timestamp: 1005, Key: []byte{}, Value: nil},
		{Timestamp: 1002, Key: []byte("k2"), Value: []byte("v2"),
			Headers: []shardstore.Header{{Key: "h", Value: []byte("hv")}, {Key: "", Value: nil}}},
	}
	for i, c := range compressionCodecs {
		t.Run(c.name, func(t *testing.T) {
			raw := wireBatch{codec: c.codec, firstTs: 1000, records: threeRecords(),
				producer: &shardstore.Producer{ID: 7, Epoch: 2, BaseSequence: 40}}.build(t)
			// Each record keeps the batch's codec (compressionCodecs is in
			// codec order).
			for j := range want {
				want[j].Codec = shardstore.Codec(i)
			}
			got, err := decodeBatch(raw, batchLimits{MaxMessageBytes: 1 << 20, MaxDecompressedBytes: 1 << 20, Policy: shardstore.PolicyDelete})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Records, want) {
				t.Fatalf("records\n got %+v\nwant %+v", got.Records, want)
			}
			if p := got.Producer; p != (shardstore.Producer{ID: 7, Epoch: 2, BaseSequence: 40}) {
				t.Fatalf("producer %+v", p)
			}
			if got.Records[1].Key == nil || got.Records[1].Value != nil {
				t.Fatal("empty key must stay non-nil and the null value nil")
			}
		})
	}
}

func TestDecodeBatchXerialSnappy(t *testing.T) {
	raw := encodeKmsgRecords(threeRecords())
	// Java's xerial framing: magic, version 1, compatible 1, then chunks.
	x := append([]byte{}, xerialMagic...)
	x = binary.BigEndian.AppendUint32(x, 1)
	x = binary.BigEndian.AppendUint32(x, 1)
	for _, part := range [][]byte{raw[:5], raw[5:]} {
		blk := s2.EncodeSnappy(nil, part)
		x = binary.BigEndian.AppendUint32(x, uint32(len(blk)))
		x = append(x, blk...)
	}
	b := wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) {
		b.Attributes = codecSnappy
		b.Records = x
	}}.build(t)
	got, err := decodeBatch(b, batchLimits{Policy: shardstore.PolicyDelete})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 3 || string(got.Records[2].Value) != "v2" {
		t.Fatalf("records %+v", got.Records)
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	valid := wireBatch{firstTs: 1, records: threeRecords()}
	big := make([]byte, 4<<20) // compresses to a few KiB
	bomb := wireBatch{codec: kgo.GzipCompression(), records: []kmsg.Record{testKmsgRecord(0, []byte("k"), big, 0)}}
	tests := []struct {
		name    string
		raw     func(t *testing.T) []byte
		lim     batchLimits
		code    *kerr.Error
		records []int
	}{
		{"empty", func(*testing.T) []byte { return nil }, batchLimits{}, kerr.CorruptMessage, nil},
		{"short header", func(t *testing.T) []byte { return valid.build(t)[:40] }, batchLimits{}, kerr.CorruptMessage, nil},
		{"truncated", func(t *testing.T) []byte { b := valid.build(t); return b[:len(b)-1] }, batchLimits{}, kerr.CorruptMessage, nil},
		{"two batches", func(t *testing.T) []byte { b := valid.build(t); return append(b, b...) }, batchLimits{}, kerr.InvalidRecord, nil},
		{"bad crc", func(t *testing.T) []byte { b := valid.build(t); b[len(b)-1] ^= 1; return b }, batchLimits{}, kerr.CorruptMessage, nil},
		{"magic 1", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) { b.Magic = 1 }}.build(t)
		}, batchLimits{}, kerr.InvalidRecord, nil},
		{"control bit", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), attrs: attrControl}.build(t)
		}, batchLimits{}, kerr.InvalidRecord, nil},
		{"codec 5", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), attrs: 5}.build(t)
		}, batchLimits{}, kerr.UnsupportedCompressionType, nil},
		{"last offset delta", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) { b.LastOffsetDelta = 5 }}.build(t)
		}, batchLimits{}, kerr.InvalidRecord, nil},
		{"huge record count", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) {
				b.NumRecords = math.MaxInt32
				b.LastOffsetDelta = math.MaxInt32 - 1
			}}.build(t)
		}, batchLimits{}, kerr.CorruptMessage, nil},
		{"missing record", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) {
				b.NumRecords = 4
				b.LastOffsetDelta = 3
			}}.build(t)
		}, batchLimits{}, kerr.CorruptMessage, nil},
		{"trailing bytes", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) {
				b.Records = append(b.Records, 0, 0, 0)
			}}.build(t)
		}, batchLimits{}, kerr.CorruptMessage, nil},
		{"bad offset delta", func(t *testing.T) []byte {
			recs := threeRecords()
			recs[1].OffsetDelta = 7
			return wireBatch{records: recs}.build(t)
		}, batchLimits{}, kerr.CorruptMessage, nil},
		{"key length past the end", func(t *testing.T) []byte {
			return wireBatch{records: threeRecords(), mutate: func(b *kmsg.RecordBatch) {
				b.Records = append([]byte(nil), b.Records...)
				b.Records[4] = 0x7e // record 0's key length: 63
			}}.build(t)
		}, batchLimits{}, kerr.CorruptMessage, nil},
		{"over max.message.bytes", func(t *testing.T) []byte { return valid.build(t) },
			batchLimits{MaxMessageBytes: batchHeaderSize + 10}, kerr.MessageTooLarge, nil},
		{"decompression bomb", func(t *testing.T) []byte { return bomb.build(t) },
			batchLimits{MaxDecompressedBytes: 1 << 20}, kerr.MessageTooLarge, nil},
		{"keyless on compact", func(t *testing.T) []byte {
			recs := threeRecords()
			recs[0].Key = nil
			recs[2].Key = nil
			return wireBatch{records: recs}.build(t)
		}, batchLimits{Policy: shardstore.PolicyCompact}, kerr.InvalidRecord, []int{0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.lim.Policy == 0 && tt.records == nil {
				tt.lim.Policy = shardstore.PolicyDelete
			}
			_, err := decodeBatch(tt.raw(t), tt.lim)
			var be *batchError
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want a batch error", err)
			}
			if !errors.Is(err, tt.code) || errorCode(err) != tt.code.Code {
				t.Fatalf("err = %v (code %d), want %v", err, errorCode(err), tt.code)
			}
			if !reflect.DeepEqual(be.records, tt.records) {
				t.Fatalf("record indexes %v, want %v", be.records, tt.records)
			}
			if m := errorMessage(err); m == nil || *m == "" {
				t.Fatal("no error message for the client")
			}
		})
	}
}

func TestDecodeBatchCodecBombs(t *testing.T) {
	big := make([]byte, 8<<20)
	for _, c := range compressionCodecs[1:] {
		t.Run(c.name, func(t *testing.T) {
			raw := wireBatch{codec: c.codec, records: []kmsg.Record{testKmsgRecord(0, []byte("k"), big, 0)}}.build(t)
			_, err := decodeBatch(raw, batchLimits{MaxDecompressedBytes: 1 << 20, Policy: shardstore.PolicyDelete})
			if !errors.Is(err, kerr.MessageTooLarge) {
				t.Fatalf("err = %v, want MESSAGE_TOO_LARGE", err)
			}
			// The same batch passes when the bound allows it.
			got, err := decodeBatch(raw, batchLimits{MaxDecompressedBytes: 16 << 20, Policy: shardstore.PolicyDelete})
			if err != nil || len(got.Records[0].Value) != len(big) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// fetchRecords parses fetch output with kgo, which checks CRCs and lengths.
func fetchRecords(tb testing.TB, raw []byte, offset int64) ([]*kgo.Record, int64) {
	tb.Helper()
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: offset, Topic: "t"},
		&kmsg.FetchResponseTopicPartition{RecordBatches: raw, HighWatermark: math.MaxInt64}, kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		tb.Fatalf("kgo rejects the batch: %v", fp.Err)
	}
	return fp.Records, next
}

func TestAppendBatch(t *testing.T) {
	recs := []shardstore.Record{
		{Offset: 10, Timestamp: 500, Key: []byte("a"), Value: []byte("1")},
		{Offset: 14, Timestamp: 400, Key: []byte{}, Value: nil, Headers: []shardstore.Header{{Key: "x", Value: []byte("y")}}},
		{Offset: 15, Timestamp: 900, Key: nil, Value: []byte{}},
	}
	raw := appendBatch([]byte("prefix"), 7, recs)
	if !bytes.HasPrefix(raw, []byte("prefix")) {
		t.Fatal("appendBatch must append")
	}
	raw = raw[len("prefix"):]
	var b kmsg.RecordBatch
	if err := b.ReadFrom(raw); err != nil {
		t.Fatal(err)
	}
	// The base timestamp is the first record's (Kafka's baseTimestamp); the
	// second record's older one is a negative delta.
	if b.FirstOffset != 10 || b.LastOffsetDelta != 5 || b.FirstTimestamp != 500 || b.MaxTimestamp != 900 ||
		b.NumRecords != 3 || b.ProducerID != -1 || b.ProducerEpoch != -1 || b.FirstSequence != -1 ||
		b.Attributes != 0 || b.PartitionLeaderEpoch != 7 || int(b.Length) != len(raw)-12 {
		t.Fatalf("header %+v", b)
	}
	got, next := fetchRecords(t, raw, 10)
	if next != 16 || len(got) != 3 {
		t.Fatalf("next %d, %d records", next, len(got))
	}
	for i, r := range got {
		w := recs[i]
		if r.Offset != w.Offset || r.Timestamp.UnixMilli() != w.Timestamp || !bytes.Equal(r.Key, w.Key) ||
			(r.Key == nil) != (w.Key == nil) || (r.Value == nil) != (w.Value == nil) || !bytes.Equal(r.Value, w.Value) {
			t.Fatalf("record %d: got %+v want %+v", i, r, w)
		}
	}
	if h := got[1].Headers; len(h) != 1 || h[0].Key != "x" || string(h[0].Value) != "y" {
		t.Fatalf("headers %+v", h)
	}
	// Our own decoder reads it back too (a fetch batch is a valid produce batch
	// once its base offset is 0 and offsets are dense).
	dense := []shardstore.Record{recs[0], recs[1]}
	dense[0].Offset, dense[1].Offset = 0, 1
	if _, err := decodeBatch(appendBatch(nil, 7, dense), batchLimits{Policy: shardstore.PolicyDelete}); err != nil {
		t.Fatal(err)
	}
}

func TestAppendBatchWideGap(t *testing.T) {
	recs := []shardstore.Record{
		{Offset: 1, Key: []byte("a")},
		{Offset: 1 + math.MaxInt32, Key: []byte("b")},
		{Offset: 2 + math.MaxInt32, Key: []byte("c")},
	}
	raw := appendBatch(nil, 7, recs)
	got, next := fetchRecords(t, raw, 1)
	if len(got) != 3 || next != 3+math.MaxInt32 {
		t.Fatalf("%d records, next %d", len(got), next)
	}
}

func TestAppendGapBatch(t *testing.T) {
	tests := []struct {
		from, hwm, next int64
	}{
		{0, 1, 1},
		{5, 100, 100},
		{7, 7 + math.MaxInt32 + 10, 8 + math.MaxInt32},
	}
	for _, tt := range tests {
		raw := appendGapBatch(nil, 7, tt.from, tt.hwm)
		got, next := fetchRecords(t, raw, tt.from)
		if len(got) != 0 || next != tt.next {
			t.Fatalf("gap [%d,%d): %d records, next %d, want %d", tt.from, tt.hwm, len(got), next, tt.next)
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw); err != nil || b.NumRecords != 0 || b.FirstOffset != tt.from || b.PartitionLeaderEpoch != 7 {
			t.Fatalf("batch %+v, err %v", b, err)
		}
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	recs := make([]shardstore.Record, 1000)
	for i := range recs {
		recs[i] = shardstore.Record{Offset: int64(i * 2), Timestamp: int64(i), Key: []byte("key-000000"), Value: make([]byte, 100)}
	}
	buf := make([]byte, 0, 256<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendBatch(buf[:0], 7, recs)
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// TestRecordReaderVarint checks the reader's one- and two-byte shortcuts
// against binary.Varint on every two-byte input, each with a third byte
// that continues or ends it, and on short inputs.
func TestRecordReaderVarint(t *testing.T) {
	check := func(in []byte) {
		t.Helper()
		want, n := binary.Varint(in)
		r := recordReader{b: in}
		got, err := r.varint()
		if n <= 0 {
			if err == nil {
				t.Fatalf("% x: got %d, binary.Varint fails (%d)", in, got, n)
			}
			return
		}
		if err != nil || got != want || len(r.b) != len(in)-n {
			t.Fatalf("% x: got %d (%v), %d bytes left; want %d, %d left", in, got, err, len(r.b), want, len(in)-n)
		}
	}
	check(nil)
	for b0 := range 256 {
		check([]byte{byte(b0)})
		for b1 := range 256 {
			check([]byte{byte(b0), byte(b1)})
			check([]byte{byte(b0), byte(b1), 0x01})
			check([]byte{byte(b0), byte(b1), 0x81, 0x02})
		}
	}
}

// BenchmarkDecodeBatch decodes a produce batch of 1,000 records (16-byte
// keys, 100-byte values, no headers), uncompressed so the records' decoding
// is what is measured.
func BenchmarkDecodeBatch(b *testing.B) {
	recs := make([]kmsg.Record, 1000)
	for i := range recs {
		recs[i] = testKmsgRecord(i, fmt.Appendf(nil, "key-%012d", i), make([]byte, 100), int64(i%50))
	}
	raw := wireBatch{firstTs: 1, records: recs}.build(b)
	lim := batchLimits{MaxMessageBytes: 1 << 20, MaxDecompressedBytes: 1 << 20, Policy: shardstore.PolicyCompact}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeBatch(raw, lim); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 49}, true)
	valid := wireBatch{firstTs: 1, records: threeRecords()}.build(f)
	f.Add(valid, false)
	f.Add(valid, true)
	f.Add(append(append([]byte(nil), valid...), 0xff, 0, 1), false)
	for _, c := range compressionCodecs {
		f.Add(wireBatch{codec: c.codec, firstTs: 99, records: threeRecords()}.build(f), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, fixCRC bool) {
		if fixCRC && len(raw) >= batchCRCStart {
			// Let the fuzzer past the CRC to the fields and records behind it.
			raw = append([]byte(nil), raw...)
			binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[batchCRCStart:], castagnoli))
		}
		got, err := decodeBatch(raw, batchLimits{MaxMessageBytes: 1 << 20, MaxDecompressedBytes: 1 << 20, Policy: shardstore.PolicyDelete})
		if err != nil {
			var be *batchError
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a batch error", err)
			}
			return
		}
		// What decodes re-encodes into a batch that decodes to the same records.
		recs := append([]shardstore.Record(nil), got.Records...)
		for i := range recs {
			recs[i].Offset = int64(i)
		}
		again, err := decodeBatch(appendBatch(nil, 7, recs), batchLimits{Policy: shardstore.PolicyDelete})
		if err != nil {
			t.Fatalf("re-encoded batch: %v", err)
		}
		if len(again.Records) != len(got.Records) {
			t.Fatalf("%d records, then %d", len(got.Records), len(again.Records))
		}
		for i := range got.Records {
			a, b := got.Records[i], again.Records[i]
			if a.Timestamp != b.Timestamp || !bytes.Equal(a.Key, b.Key) || (a.Key == nil) != (b.Key == nil) ||
				!bytes.Equal(a.Value, b.Value) || (a.Value == nil) != (b.Value == nil) || len(a.Headers) != len(b.Headers) {
				t.Fatalf("record %d: %+v then %+v", i, a, b)
			}
		}
	})
}

// fitBatches returns how many of recs, from the first, appendBatch encodes in
// at most limit bytes (0 when not even the first record fits), with the sizes
// the fetch path checks its limit with.
func fitBatches(recs []shardstore.Record, limit int) int {
	w := batchWriter{}
	for i := range recs {
		if w.len()+w.size(&recs[i]) > limit {
			return i
		}
		w.add(&recs[i])
	}
	return len(recs)
}
