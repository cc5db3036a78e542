package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
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
// franz-go's compressors is exact (snappy, lz4, zstd) or the true size
// (gzip), and decompressing with it as the limit works.
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

// FuzzDeclaredSize: whatever the bytes, declaredSize does not panic; when it
// claims a bound, data that decompresses at all never decompresses to more,
// and when it claims an exact size, to exactly that.
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
		out, err := decompressBounded(src, int16(codec), 4<<20)
		if err == nil && (int64(len(out)) > n || kind == sizeExact && int64(len(out)) != n) {
			t.Fatalf("codec %d: declared %d (kind %d), decompresses to %d", codec, n, kind, len(out))
		}
	})
}

// FuzzLz4AgainstReader: lz4Decode, which decodes each block in place, agrees
// with pierrec/lz4's stream reader (which franz-go's consumers use) on every
// input the reader accepts. lz4Decode skips checksums, so it may accept
// frames the reader refuses for a checksum alone.
func FuzzLz4AgainstReader(f *testing.F) {
	for _, raw := range [][]byte{nil, {1}, bytes.Repeat([]byte("abc"), 1000), payloads()["text"][:10_000]} {
		src, _ := compressWith(f, kgo.Lz4Compression(), raw)
		f.Add(src)
	}
	f.Add(linkedLz4Frame())
	f.Fuzz(func(t *testing.T, src []byte) {
		want, werr := io.ReadAll(io.LimitReader(lz4.NewReader(bytes.NewReader(src)), 8<<20))
		got, err := lz4Decode(src, 8<<20)
		if werr == nil && len(want) < 8<<20 && (err != nil || !bytes.Equal(got, want)) {
			t.Fatalf("the reader decodes %d bytes; lz4Decode: %d bytes, %v", len(want), len(got), err)
		}
	})
}

// linkedLz4Frame returns an lz4 frame in linked-block mode whose second
// block copies from its first: a stored block "hello, world", then a
// compressed one of the literal "X", a 5 byte match 13 bytes back (into the
// first block) and the last literals "YYYYY". It decodes to
// "hello, worldXhelloYYYYY".
func linkedLz4Frame() []byte {
	frame := []byte{0x04, 0x22, 0x4d, 0x18, 0x40, 0x40, 0xc0} // magic; version 1, linked blocks; 64 KiB blocks; header checksum
	stored := []byte("hello, world")
	frame = binary.LittleEndian.AppendUint32(frame, uint32(len(stored))|0x80000000)
	frame = append(frame, stored...)
	seq := []byte{0x11, 'X', 13, 0, 0x50, 'Y', 'Y', 'Y', 'Y', 'Y'}
	frame = binary.LittleEndian.AppendUint32(frame, uint32(len(seq)))
	frame = append(frame, seq...)
	return binary.LittleEndian.AppendUint32(frame, 0) // end mark
}

// TestLz4LinkedBlocks: a block of a linked-mode frame may copy from the
// block before it, and lz4Decode gives it that block as its dictionary.
func TestLz4LinkedBlocks(t *testing.T) {
	src := linkedLz4Frame()
	n, kind := declaredSize(src, codecLz4)
	if kind != sizeExact || n != 23 {
		t.Fatalf("declaredSize = %d (kind %d), want 23 exact", n, kind)
	}
	got, err := decompressBounded(src, codecLz4, 23)
	if err != nil || string(got) != "hello, worldXhelloYYYYY" {
		t.Fatalf("decoded %q, %v", got, err)
	}
	// Two frames: the second's blocks may not reach into the first's.
	two := append(append([]byte(nil), src...), src...)
	if got, err := decompressBounded(two, codecLz4, 46); err != nil || string(got) != strings.Repeat("hello, worldXhelloYYYYY", 2) {
		t.Fatalf("two frames decoded %q, %v", got, err)
	}
	cut := append([]byte(nil), src...)
	cut[len(cut)-12] = 14 // the match's offset now reaches before the frame
	if _, err := decompressBounded(append(append([]byte(nil), src...), cut...), codecLz4, 46); err == nil {
		t.Fatal("a match before its frame's first byte decoded")
	}
	if _, err := decompressBounded(src, codecLz4, 22); !errors.Is(err, errDecompressTooLarge) {
		t.Fatalf("one byte under the size: %v, want errDecompressTooLarge", err)
	}
}
