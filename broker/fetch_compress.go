package broker

// Compressed fetch answers: a batch a fetch answers is compressed with the
// codec of the producer batch its records came in (shardstore Record.Codec),
// as Kafka answers with the producer's batches under its default
// compression.type=producer. The store keeps records uncompressed, so each
// answered batch is compressed as the fetch closes it (batchWriter.close).
//
// What it costs (README, Benchmarks: "Compressed fetch answers"): on
// loopback the bytes saved are nearly free, so the consumer's decompression
// decides. With 1 KiB values snappy answers read faster than uncompressed
// ones (the broker's socket writes and CRC shrink with the bytes), lz4 and
// gzip ones slower (franz-go decodes their frames through stream readers);
// with 100-byte values every codec reads within the noise. Across a network
// the bytes saved are what the producer compressed them for.
//
// zstd goes uncompressed to a Fetch before v10, which cannot carry it
// (KIP-110; Kafka answers UNSUPPORTED_COMPRESSION_TYPE there).

import (
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/shardcache/shardcache/shardstore"
)

// codecSet is a set of codecs, one bit per shardstore.Codec.
type codecSet uint8

func (s codecSet) has(c shardstore.Codec) bool { return c != shardstore.CodecNone && s&(1<<c) != 0 }

// fetchCodecs is the set of codecs a Fetch of version v answers with.
func fetchCodecs(v int16) codecSet {
	s := codecSet(1<<shardstore.CodecGzip | 1<<shardstore.CodecSnappy | 1<<shardstore.CodecLz4)
	if v >= 10 {
		s |= 1 << shardstore.CodecZstd
	}
	return s
}

// compressBuf pools the scratch a batch is compressed into before it is
// copied over its records.
var compressBuf = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// gzipWriters compress at gzip's fastest level: BenchmarkCompressFetchBatch
// measured it at about half lz4's speed, ahead of zstd's.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

var lz4Writers = sync.Pool{New: func() any {
	w := lz4.NewWriter(nil)
	// 64 KiB blocks, as the Java producer writes them: every client's
	// decoder takes them.
	_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb))
	return w
}}

// zstdEncoder is shared; EncodeAll is safe for concurrent use, GOMAXPROCS
// calls at a time (zstd's default). A 64 KiB window, as franz-go's producer
// uses, keeps each decoder's memory small.
var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(64<<10),
		zstd.WithZeroFrames(true))
	if err != nil {
		panic(err) // only for invalid options
	}
	return e
})

// compressRecords returns src compressed with codec c, or nil when c is not
// one a fetch compresses with, or compressing fails. The result lives in
// scratch.
func compressRecords(scratch *bytes.Buffer, c shardstore.Codec, src []byte) []byte {
	scratch.Reset()
	switch c {
	case shardstore.CodecSnappy:
		n := s2.MaxEncodedLen(len(src))
		if n < 0 { // over 4 GiB: never a fetch answer, but Grow would panic
			return nil
		}
		scratch.Grow(n)
		return s2.EncodeSnappy(scratch.AvailableBuffer()[:n], src)
	case shardstore.CodecLz4:
		return compressStream(&lz4Writers, scratch, src)
	case shardstore.CodecZstd:
		// Room for the worst case first, so the pooled buffer grows to it
		// once rather than EncodeAll allocating per answer.
		scratch.Grow(zstdEncoder().MaxEncodedSize(len(src)))
		return zstdEncoder().EncodeAll(src, scratch.AvailableBuffer())
	case shardstore.CodecGzip:
		return compressStream(&gzipWriters, scratch, src)
	}
	return nil
}

// streamWriter is a pooled stream compressor: gzip's, or lz4's frames.
type streamWriter interface {
	io.WriteCloser
	Reset(io.Writer)
}

// compressStream compresses src into scratch with a streamWriter of pool.
func compressStream(pool *sync.Pool, scratch *bytes.Buffer, src []byte) []byte {
	w := pool.Get().(streamWriter)
	defer pool.Put(w)
	w.Reset(scratch)
	if _, err := w.Write(src); err != nil {
		return nil
	}
	if err := w.Close(); err != nil {
		return nil
	}
	return scratch.Bytes()
}
