package broker

// Bounded decompression of produce batches.
//
// decompressBounded never allocates more than the limit it is given: gzip
// streams are read into a buffer of exactly that size, lz4 frames and
// snappy and zstd blocks have their sizes checked before anything is
// allocated, and zstd decodes into a buffer whose capacity it may not pass.
// It does the job of kgo.DefaultDecompressor, whose bound is fixed at
// MaxInt32 (a decompression bomb would be an OOM, not an error).
//
// declaredSize reads, without decompressing, what the compressed bytes say
// they decompress to, so that the memory can be reserved first (see
// batch_memory.go): snappy states each block's length; an lz4 block's
// sequences add up to its exact length (lz4BlockLen); a zstd frame states its
// exact size or, written as a stream, is walked block by block for an upper
// bound (a block is at most 128 KiB, raw and RLE blocks state their length);
// gzip's trailer states the size mod 2^32, which a sender may fake, so it is
// only an estimate.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// errDecompressTooLarge: the records decompress past the limit.
var errDecompressTooLarge = errors.New("decompressed size over the limit")

var (
	gzipReaders sync.Pool // *gzip.Reader
	xerialMagic = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}
)

// decompressBounded decompresses src, failing with errDecompressTooLarge as
// soon as the output would exceed limit bytes; it never allocates more than
// limit bytes for the output.
func decompressBounded(src []byte, codec int16, limit int) ([]byte, error) {
	switch codec {
	case codecGzip:
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(src))
		} else {
			err = zr.Reset(bytes.NewReader(src))
		}
		if err != nil {
			return nil, err
		}
		defer gzipReaders.Put(zr)
		return readBounded(zr, limit)
	case codecLz4:
		return lz4Decode(src, limit)
	case codecSnappy:
		if len(src) > 16 && bytes.HasPrefix(src, xerialMagic) {
			return xerialDecode(src[16:], limit)
		}
		return snappyBlock(nil, src, limit)
	case codecZstd:
		d, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		out, err := d.DecodeAll(src, make([]byte, 0, limit))
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
				return nil, errDecompressTooLarge
			}
			// Out of room, the decoder does not always say so: a block
			// whose output passes the buffer's capacity fails with "output
			// bigger than max block size". That is how a frame without a
			// content size (Java's and other streaming producers') fails
			// when it decompresses past the first limit, an estimate, and
			// answering CORRUPT_MESSAGE, which clients retry, stalled such a
			// producer until its delivery timeout. So below the frames'
			// bound any failure counts as too large: the caller decodes
			// again with room for the bound, and only that decode tells
			// corrupt data apart.
			if n, _, ok := zstdBound(src); ok && n > int64(limit) {
				return nil, errDecompressTooLarge
			}
			return nil, err
		}
		if len(out) > limit {
			return nil, errDecompressTooLarge
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// readBounded reads r to its end into one buffer of limit bytes, failing
// with errDecompressTooLarge if there is more.
func readBounded(r io.Reader, limit int) ([]byte, error) {
	buf := make([]byte, limit)
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return buf[:n], nil
	case err != nil:
		return nil, err
	}
	// The buffer is full: the stream must end here. Reading on also checks a
	// gzip stream's trailer.
	var one [1]byte
	switch _, err := io.ReadFull(r, one[:]); {
	case err == io.EOF:
		return buf, nil
	case err == nil:
		return nil, errDecompressTooLarge
	default:
		return nil, err
	}
}

// snappyBlock appends one snappy block to dst, checking its declared size first.
func snappyBlock(dst, src []byte, max int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n > max-len(dst) {
		return nil, errDecompressTooLarge
	}
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	if _, err := s2.Decode(dst[len(dst):len(dst)+n], src); err != nil {
		return nil, err
	}
	return dst[:len(dst)+n], nil
}

// xerialDecode decodes the xerial framing Java clients use for snappy: after a
// 16 byte header, chunks of a 4 byte big-endian length and a snappy block.
func xerialDecode(src []byte, max int) ([]byte, error) {
	total, err := xerialSize(src)
	if err != nil {
		return nil, err
	}
	if total > max {
		return nil, errDecompressTooLarge
	}
	dst := make([]byte, 0, total)
	for len(src) > 0 {
		size := binary.BigEndian.Uint32(src)
		if dst, err = snappyBlock(dst, src[4:4+size], max); err != nil {
			return nil, err
		}
		src = src[4+size:]
	}
	return dst, nil
}

// xerialSize adds up the decoded lengths of xerial chunks (after the header).
func xerialSize(src []byte) (int, error) {
	var total int
	for rem := src; len(rem) > 0; {
		if len(rem) < 4 {
			return 0, errors.New("truncated xerial chunk")
		}
		size := binary.BigEndian.Uint32(rem)
		rem = rem[4:]
		if uint64(size) > uint64(len(rem)) {
			return 0, errors.New("xerial chunk longer than its data")
		}
		n, err := s2.DecodedLen(rem[:size])
		if err != nil {
			return 0, err
		}
		if total += n; total > math.MaxInt32 {
			return 0, errors.New("xerial chunks decode to more than 2 GiB")
		}
		rem = rem[size:]
	}
	return total, nil
}

// zstdDecoder returns the shared zstd decoder. DecodeAll is safe for
// concurrent use (two at a time, the others wait). It decodes into the
// buffer it is given, used as the window too, and may not grow it
// (WithDecodeAllCapLimit): a frame that declares, or grows to, more than its
// capacity fails before anything more is allocated. Declared window sizes
// therefore cost nothing and are not limited beyond the format's maximum.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderConcurrency(2),
		zstd.WithDecoderMaxMemory(math.MaxInt32),
		zstd.WithDecoderMaxWindow(zstd.MaxWindowSize),
		zstd.WithDecodeAllCapLimit(true),
	)
})

// sizeKind says how far declaredSize's answer can be trusted.
type sizeKind int

const (
	sizeUnknown sizeKind = iota // nothing declared; the caller estimates
	sizeStated                  // the sender's word (gzip's trailer): may be false
	sizeBound                   // an upper bound: valid data never decompresses to more
	sizeExact                   // the exact size (snappy): valid data decompresses to it
)

// declaredSize reads from src, compressed records, what they decompress to
// (see the file comment), without decompressing or allocating.
func declaredSize(src []byte, codec int16) (int64, sizeKind) {
	switch codec {
	case codecGzip:
		// RFC 1952: the last four bytes of a member are its size mod 2^32.
		if len(src) < 18 {
			return 0, sizeUnknown
		}
		return int64(binary.LittleEndian.Uint32(src[len(src)-4:])), sizeStated
	case codecSnappy:
		if len(src) > 16 && bytes.HasPrefix(src, xerialMagic) {
			n, err := xerialSize(src[16:])
			if err != nil {
				return 0, sizeUnknown
			}
			return int64(n), sizeExact
		}
		n, err := s2.DecodedLen(src)
		if err != nil {
			return 0, sizeUnknown
		}
		return int64(n), sizeExact
	case codecLz4:
		if n, err := lz4Size(src); err == nil {
			return n, sizeExact
		}
	case codecZstd:
		if n, stated, ok := zstdBound(src); ok {
			if stated {
				// Every frame states its content size, and the decoder
				// refuses a frame that decodes to anything else.
				return n, sizeExact
			}
			return n, sizeBound
		}
	}
	return 0, sizeUnknown
}

// lz4Block is one data block of an lz4 frame (lz4 frame format 1.6.x).
type lz4Block struct {
	data       []byte
	stored     bool  // the block's bytes are the data, uncompressed
	linked     bool  // the block may copy from the 64 KiB decoded before it in its frame
	frameStart bool  // the first block of its frame
	max        int64 // the frame's block size: no block decodes to more
}

// errLz4Truncated: an lz4 frame ends inside its header, a block or a checksum.
var errLz4Truncated = errors.New("truncated lz4 frame")

// lz4Frames walks the lz4 frames of src, skippable frames included, and calls
// block for each data block in order. Checksums (of the header, the blocks
// and the content) are skipped, not verified: the record batch's CRC-32C
// covers these bytes already, and Kafka's own LZ4 reader ignores the content
// checksum too.
func lz4Frames(src []byte, block func(lz4Block) error) error {
	for len(src) > 0 {
		if len(src) < 8 {
			return errLz4Truncated
		}
		magic := binary.LittleEndian.Uint32(src)
		if magic&0xfffffff0 == 0x184d2a50 { // skippable frame
			size := int64(binary.LittleEndian.Uint32(src[4:]))
			if size > int64(len(src)-8) {
				return errLz4Truncated
			}
			src = src[8+size:]
			continue
		}
		if magic != 0x184d2204 {
			return errors.New("not an lz4 frame")
		}
		flg, bd := src[4], src[5]
		if flg>>6 != 1 {
			return fmt.Errorf("lz4 frame version %d", flg>>6)
		}
		b := lz4Block{linked: flg&0x20 == 0, frameStart: true}
		switch bd >> 4 & 7 {
		case 4:
			b.max = 64 << 10
		case 5:
			b.max = 256 << 10
		case 6:
			b.max = 1 << 20
		case 7:
			b.max = 4 << 20
		default:
			return fmt.Errorf("lz4 block size code %d", bd>>4&7)
		}
		p := 6
		if flg&0x08 != 0 {
			p += 8 // content size: what the blocks decode to is counted instead
		}
		if flg&0x01 != 0 {
			p += 4 // dictionary id
		}
		p++ // header checksum
		if len(src) < p {
			return errLz4Truncated
		}
		src = src[p:]
		for {
			if len(src) < 4 {
				return errLz4Truncated
			}
			bs := binary.LittleEndian.Uint32(src)
			src = src[4:]
			if bs == 0 {
				break // end mark
			}
			size := int64(bs & 0x7fffffff)
			if size > int64(len(src)) {
				return errLz4Truncated
			}
			b.data, b.stored = src[:size], bs&0x80000000 != 0
			if err := block(b); err != nil {
				return err
			}
			b.frameStart = false
			src = src[size:]
			if flg&0x10 != 0 { // block checksum
				if len(src) < 4 {
					return errLz4Truncated
				}
				src = src[4:]
			}
		}
		if flg&0x04 != 0 { // content checksum
			if len(src) < 4 {
				return errLz4Truncated
			}
			src = src[4:]
		}
	}
	return nil
}

// lz4BlockLen returns what an lz4 block decodes to, reading only its
// sequences' tokens and lengths: each sequence is a token, literals, and
// (but for the last) a 2 byte offset and a match of at least 4 bytes.
// Decoding the block yields exactly this many bytes or fails.
func lz4BlockLen(b []byte) (int64, error) {
	length := func(i int, n int64) (int, int64, error) {
		for {
			if i >= len(b) {
				return 0, 0, errors.New("lz4 block ends inside a length")
			}
			x := b[i]
			i++
			n += int64(x)
			if x != 255 {
				return i, n, nil
			}
		}
	}
	var n int64
	for i := 0; ; {
		if i == len(b) {
			// The format ends a block with literals, but decoders (the
			// consumers' among them) accept one that ends after a match.
			return n, nil
		}
		token := b[i]
		i++
		lit := int64(token >> 4)
		var err error
		if lit == 15 {
			if i, lit, err = length(i, lit); err != nil {
				return 0, err
			}
		}
		if lit > int64(len(b)-i) {
			return 0, errors.New("lz4 literals run past their block")
		}
		i += int(lit)
		n += lit
		if i == len(b) {
			return n, nil // the last sequence: literals only
		}
		if len(b)-i < 2 {
			return 0, errors.New("lz4 block ends inside an offset")
		}
		if b[i] == 0 && b[i+1] == 0 {
			return 0, errors.New("lz4 match at offset 0")
		}
		i += 2
		match := int64(token&15) + 4
		if match == 19 {
			if i, match, err = length(i, match); err != nil {
				return 0, err
			}
		}
		n += match
	}
}

// lz4Size returns what src's lz4 frames decode to: the exact size of data that
// decodes at all, read from the blocks themselves, not from what a frame
// header claims.
func lz4Size(src []byte) (int64, error) {
	var total int64
	err := lz4Frames(src, func(b lz4Block) error {
		n := int64(len(b.data))
		if !b.stored {
			var err error
			if n, err = lz4BlockLen(b.data); err != nil {
				return err
			}
		}
		if n > b.max {
			return fmt.Errorf("lz4 block decodes to %d bytes, over its frame's block size %d", n, b.max)
		}
		total += n
		return nil
	})
	return total, err
}

// lz4Decode decodes src's lz4 frames into one buffer of exactly their size
// (lz4Size), failing with errDecompressTooLarge before allocating it if that
// is over limit. Blocks are decoded in place, each straight into the buffer:
// a stream reader would decode each into its own block-sized buffer (4 MiB
// for franz-go's frames) and copy it out, and the output's size would not be
// known in advance. With franz-go's lz4 producer (100 B values, 200k keys x
// 25) the broker spent 10.9 against 8.5 s of CPU with snappy; see
// integration/bench/profiles/README.md, "Produce: lz4 batches decoded in place".
func lz4Decode(src []byte, limit int) ([]byte, error) {
	n, err := lz4Size(src)
	if err != nil {
		return nil, err
	}
	if n > int64(limit) {
		return nil, errDecompressTooLarge
	}
	dst := make([]byte, n)
	off, frame := 0, 0
	err = lz4Frames(src, func(b lz4Block) error {
		if b.frameStart {
			frame = off
		}
		if b.stored {
			off += copy(dst[off:], b.data)
			return nil
		}
		var k int
		var err error
		if b.linked {
			k, err = lz4.UncompressBlockWithDict(b.data, dst[off:], dst[max(frame, off-64<<10):off])
		} else {
			k, err = lz4.UncompressBlock(b.data, dst[off:])
		}
		off += k
		return err
	})
	if err == nil && off != len(dst) {
		err = fmt.Errorf("lz4 blocks decoded to %d bytes, not the %d their sequences add up to", off, len(dst))
	}
	if err != nil {
		return nil, err
	}
	return dst, nil
}

// zstdBlockMax is the most one zstd block decompresses to (RFC 8878 3.1.1.2.4).
const zstdBlockMax = 128 << 10

// zstdBound walks zstd frames (RFC 8878) and returns the most their blocks
// can decompress to: raw and RLE blocks state their size, a compressed block
// is at most 128 KiB; a declared frame content size caps its frame. stated
// reports whether every frame declared its content size (franz-go's do; the
// Java producer's, written as a stream, do not), which makes the bound exact.
func zstdBound(src []byte) (bound int64, stated, ok bool) {
	var total int64
	stated = true
	for len(src) > 0 {
		var h zstd.Header
		if err := h.Decode(src); err != nil {
			return 0, false, false
		}
		if h.Skippable {
			n := int64(h.HeaderSize) + int64(h.SkippableSize)
			if n > int64(len(src)) {
				return 0, false, false
			}
			src = src[n:]
			continue
		}
		src = src[h.HeaderSize:]
		var frame int64
		for {
			if len(src) < 3 {
				return 0, false, false
			}
			bh := uint32(src[0]) | uint32(src[1])<<8 | uint32(src[2])<<16
			src = src[3:]
			size := int64(bh >> 3)
			switch bh >> 1 & 3 {
			case 0: // raw
				if size > int64(len(src)) {
					return 0, false, false
				}
				frame += size
				src = src[size:]
			case 1: // RLE: one byte, repeated size times
				if len(src) < 1 {
					return 0, false, false
				}
				frame += size
				src = src[1:]
			case 2: // compressed
				if size > int64(len(src)) {
					return 0, false, false
				}
				frame += zstdBlockMax
				src = src[size:]
			default:
				return 0, false, false
			}
			if bh&1 != 0 { // last block
				break
			}
		}
		if h.HasCheckSum {
			if len(src) < 4 {
				return 0, false, false
			}
			src = src[4:]
		}
		if !h.HasFCS {
			stated = false
		} else if int64(min(h.FrameContentSize, math.MaxInt64)) < frame {
			frame = int64(h.FrameContentSize)
		}
		total = min(total+frame, math.MaxInt32)
	}
	return total, stated, true
}
