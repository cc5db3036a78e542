package broker

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// compressWith compresses raw the way a franz-go producer does.
func compressWith(tb testing.TB, codec kgo.CompressionCodec, raw []byte) ([]byte, int16) {
	tb.Helper()
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	out, ct := c.Compress(&buf, raw)
	return append([]byte(nil), out...), int16(ct)
}

func payloads() map[string][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 300<<10)
	for i := range random {
		random[i] = byte(r.UintN(256))
	}
	text := bytes.Repeat([]byte("key-000123 value with some words in it; "), 20_000)
	return map[string][]byte{
		"random":   random,
		"text":     text,
		"zeros":    make([]byte, 8<<20),
		"one byte": {7},
	}
}

// TestDeclaredSizeOfRealOutput: what declaredSize reads from the output of
// the compressors clients use is exact (snappy), an upper bound (lz4, zstd)
// or the true size (gzip), and decompressing with it as the limit works.
func TestDeclaredSizeOfRealOutput(t *testing.T) {
	for name, raw := range payloads() {
		for _, c := range compressionCodecs[1:] {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				src, codec := compressWith(t, c.codec, raw)
				n, kind := declaredSize(src, codec)
				switch {
				case kind == sizeUnknown:
					t.Fatalf("nothing declared")
				case kind == sizeExact || kind == sizeStated:
					if n != int64(len(raw)) {
						t.Fatalf("declared %d, actual %d", n, len(raw))
					}
				case n < int64(len(raw)):
					t.Fatalf("bound %d below the actual %d", n, len(raw))
				}
				t.Logf("%d bytes compressed to %d; declared %d (kind %d)", len(raw), len(src), n, kind)
				out, err := decompressBounded(src, codec, int(n))
				if err != nil || !bytes.Equal(out, raw) {
					t.Fatalf("decompress with the declared size: %v", err)
				}
			})
		}
	}
}

// TestDecompressBoundedStopsAtLimit: a bomb fails at the limit, having
// allocated no more than the limit.
func TestDecompressBoundedStopsAtLimit(t *testing.T) {
	raw := make([]byte, 32<<20)
	const limit = 1 << 20
	for _, c := range compressionCodecs[1:] {
		t.Run(c.name, func(t *testing.T) {
			src, codec := compressWith(t, c.codec, raw)
			var err error
			got := allocated(func() { _, err = decompressBounded(src, codec, limit) })
			if !errors.Is(err, errDecompressTooLarge) {
				t.Fatalf("err = %v, want errDecompressTooLarge", err)
			}
			t.Logf("%d compressed bytes of a 32 MiB bomb: %d bytes allocated at a %d byte limit", len(src), got, limit)
			// The limit's buffer, plus the decoders' own state (an lz4
			// reader's 4 MiB block buffer on first use).
			if !raceEnabled && got > limit+5<<20 {
				t.Fatalf("allocated %d bytes", got)
			}
		})
	}
}

// FuzzDeclaredSize: whatever the bytes, declaredSize does not panic, and
// when it claims an exact size or a bound, data that decompresses at all
// never decompresses to more.
func FuzzDeclaredSize(f *testing.F) {
	for _, raw := range [][]byte{nil, {1}, bytes.Repeat([]byte("abc"), 1000)} {
		for _, c := range compressionCodecs[1:] {
			src, codec := compressWith(f, c.codec, raw)
			f.Add(src, uint8(codec))
		}
	}
	f.Fuzz(func(t *testing.T, src []byte, codec uint8) {
		codec = codec%4 + 1
		n, kind := declaredSize(src, int16(codec))
		if kind != sizeBound && kind != sizeExact || n > 1<<20 {
			return
		}
		if out, err := decompressBounded(src, int16(codec), 4<<20); err == nil && int64(len(out)) > n {
			t.Fatalf("codec %d: declared %d (kind %d), decompresses to %d", codec, n, kind, len(out))
		}
	})
}
