package broker

// Compressed fetch answers: a batch a fetch answers is compressed with the
// codec of the producer batch its records came in (shardstore Record.Codec),
// as Kafka answers with the producer's batches under its default
// compression.type=producer. The store keeps records uncompressed, so each
// answered batch is compressed as the fetch closes it (batchWriter.close).
//
// Measured before this was built (README, Benchmarks: "Compressed fetch
// answers"): with 1 KiB values the bytes a fetch writes to the socket, and
// the consumer reads, cost more than compressing them; with 100-byte values
// the two were level.
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
// measured it at about the cost of lz4.
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

// zstdEncoder is shared; EncodeAll is safe for concurrent use. A 64 KiB
// window, as franz-go's producer uses, keeps each decoder's memory small.
var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(64<<10),
		zstd.WithZeroFrames(true), zstd.WithEncoderConcurrency(2))
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
		scratch.Grow(s2.MaxEncodedLen(len(src)))
		return s2.EncodeSnappy(scratch.AvailableBuffer()[:s2.MaxEncodedLen(len(src))], src)
	case shardstore.CodecLz4:
		return compressStream(&lz4Writers, scratch, src)
	case shardstore.CodecZstd:
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
