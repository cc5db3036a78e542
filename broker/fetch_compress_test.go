package broker

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// compressBench is a fetch answer's worth of records (about 1 MiB) whose
// values look like JSON events: a shared shape, different numbers.
func compressBench(codec shardstore.Codec) []shardstore.Record {
	var recs []shardstore.Record
	for i := 0; i < 8000; i++ {
		recs = append(recs, shardstore.Record{
			Offset: int64(i), Timestamp: 1_700_000_000_000 + int64(i), Codec: codec,
			Key:   fmt.Appendf(nil, "customer-%08d", i*7919%100000),
			Value: fmt.Appendf(nil, `{"id":%d,"status":"shipped","amount":%d.%02d,"region":"eu-west-%d"}`, i*31, i%977, i%100, i%3),
		})
	}
	return recs
}

// BenchmarkCompressFetchBatch: what compressing one fetch answer costs per
// codec (the bytes counted are the uncompressed records').
func BenchmarkCompressFetchBatch(b *testing.B) {
	for _, c := range []shardstore.Codec{shardstore.CodecSnappy, shardstore.CodecLz4, shardstore.CodecZstd, shardstore.CodecGzip} {
		recs := compressBench(c)
		body := appendBatch(nil, 1, recs)[batchHeaderSize:]
		b.Run(fmt.Sprint(c), func(b *testing.B) {
			var scratch bytes.Buffer
			b.SetBytes(int64(len(body)))
			var out int
			for b.Loop() {
				out = len(compressRecords(&scratch, c, body))
			}
			b.ReportMetric(float64(len(body))/float64(out), "ratio")
		})
	}
}

// batchCodecs walks the batches of a fetch answer and returns each one's
// codec attribute and record count, checking each batch's CRC.
func batchCodecs(t *testing.T, raw []byte) (codecs []int16, counts []int32) {
	t.Helper()
	for len(raw) > 0 {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw); err != nil {
			t.Fatalf("batch %d: %v", len(codecs), err)
		}
		n := int(b.Length) + batchLenEnd
		if got := crc32.Checksum(raw[batchCRCStart:n], castagnoli); got != uint32(b.CRC) {
			t.Fatalf("batch %d: CRC %08x, computed %08x", len(codecs), uint32(b.CRC), got)
		}
		codecs, counts = append(codecs, b.Attributes&0x7), append(counts, b.NumRecords)
		raw = raw[n:]
	}
	return codecs, counts
}

// TestBatchWriterCodecs: a fetch answer's batches take their records'
// codecs, or the topic's compression.type when it names one; a batch ends
// where the codec changes; a codec the fetch may not answer with (zstd
// before Fetch v10) and a batch that compression does not shrink go
// uncompressed; and kgo reads every record back.
func TestBatchWriterCodecs(t *testing.T) {
	noise := make([]byte, 3000)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(noise)
	var recs []shardstore.Record
	add := func(c shardstore.Codec, n int, value []byte) {
		for range n {
			off := int64(len(recs)) * 2 // compacted gaps
			recs = append(recs, shardstore.Record{Offset: off, Timestamp: 1000 + off, Codec: c,
				Key: fmt.Appendf(nil, "key-%d", off), Value: value})
		}
	}
	text := bytes.Repeat([]byte("compressible "), 20)
	add(shardstore.CodecSnappy, 3, text)
	add(shardstore.CodecNone, 2, text)
	add(shardstore.CodecLz4, 2, text)
	add(shardstore.CodecZstd, 2, text)
	add(shardstore.CodecGzip, 2, text)
	add(shardstore.CodecLz4, 1, noise) // lz4 cannot shrink it
	add(shardstore.CodecNone, 1, text)

	for _, tc := range []struct {
		version int16
		fixed   bool // the topic's compression.type names fixedCodec
		codec   shardstore.Codec
		codecs  []int16
		counts  []int32
	}{
		{12, false, 0, []int16{2, 0, 3, 4, 1, 0, 0}, []int32{3, 2, 2, 2, 2, 1, 1}},
		// zstd records go uncompressed; they follow lz4 ones, so they
		// still start a batch of their own.
		{9, false, 0, []int16{2, 0, 3, 0, 1, 0, 0}, []int32{3, 2, 2, 2, 2, 1, 1}},
		{12, true, shardstore.CodecLz4, []int16{3}, []int32{13}},
		{12, true, shardstore.CodecNone, []int16{0}, []int32{13}},
		{9, true, shardstore.CodecZstd, []int16{0}, []int32{13}},
	} {
		w := batchWriter{epoch: 1, codecs: fetchCodecs(tc.version), fixed: tc.fixed, fixedCodec: tc.codec}
		for i := range recs {
			w.add(&recs[i])
		}
		raw := w.bytes()
		codecs, counts := batchCodecs(t, raw)
		if !slices.Equal(codecs, tc.codecs) {
			t.Errorf("fetch v%d, fixed %v %d: batch codecs %v, want %v", tc.version, tc.fixed, tc.codec, codecs, tc.codecs)
		}
		if !slices.Equal(counts, tc.counts) {
			t.Errorf("fetch v%d: batch record counts %v, want %v", tc.version, counts, tc.counts)
		}
		got, next := fetchRecords(t, raw, 0)
		if len(got) != len(recs) || next != recs[len(recs)-1].Offset+1 {
			t.Fatalf("fetch v%d: kgo read %d records up to %d, want %d", tc.version, len(got), next, len(recs))
		}
		for i, r := range got {
			if r.Offset != recs[i].Offset || !bytes.Equal(r.Key, recs[i].Key) || !bytes.Equal(r.Value, recs[i].Value) {
				t.Fatalf("fetch v%d: record %d: offset %d key %q, want %d %q", tc.version, i, r.Offset, r.Key, recs[i].Offset, recs[i].Key)
			}
		}
	}
}
