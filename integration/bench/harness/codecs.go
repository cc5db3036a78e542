package harness

import "github.com/twmb/franz-go/pkg/kgo"

// Codecs are the producer compressions the benchmarks' -codec flags name,
// as franz-go codecs.
var Codecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

// CodecNames spells the keys of Codecs for flag help and errors.
const CodecNames = "none, gzip, snappy, lz4 or zstd"
