package shardstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// A group snapshot stream carries one Raft group's state from one node's
// database to another's: every key of the group's shards, its registry and its
// applied index, plus the caller's extra spans (raftfsm's metadata keys for the
// metadata group). Export writes it, Ingest reads it.
//
// Version 1, integers big-endian unless uvarint:
//
//	prefix   "SCGS" | version:1 | group:4 | applied index:8   (SnapshotPrefixLen bytes)
//	header   uvarint n | n × shard:8 (strictly increasing)
//	         uvarint m | m × { uvarint len, start, uvarint len, end }   extra spans
//	entries  { uvarint len(key) > 0 | key | uvarint len(value) | value }, keys strictly increasing
//	end      0x00
//	trailer  entry count:8 | CRC-32C:4 of every byte before the CRC
//
// The prefix has a fixed length so that a stored stream's group and index can
// be read without decoding the rest (ParseSnapshotPrefix). The CRC is checked
// before anything is ingested, so a corrupt or truncated stream changes nothing.
const (
	snapshotMagic   = "SCGS"
	snapshotVersion = 1

	// SnapshotPrefixLen is the length of the fixed start of a group snapshot
	// stream: magic, version, group and applied index.
	SnapshotPrefixLen = 4 + 1 + 4 + 8

	snapshotTrailerLen = 8 + 4

	// Decoder limits: a corrupt length fails instead of allocating.
	maxSnapshotShards = 1 << 22
	maxSnapshotSpans  = 1 << 10
	maxSpanKeyLen     = 1 << 12
	maxSnapshotKey    = 64 << 20
	maxSnapshotValue  = 256 << 20
)

// ErrBadSnapshot is wrapped by every error about a group snapshot stream that
// cannot be ingested: truncated, corrupt, of another version, another group or
// other extra spans than the receiver expects.
var ErrBadSnapshot = errors.New("shardstore: bad group snapshot stream")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Span is the key range [Start, End) of the database.
type Span struct {
	Start, End []byte
}

// SnapshotHeader is what a group snapshot stream says about itself before its
// entries.
type SnapshotHeader struct {
	// Group is the Raft group whose state the stream carries.
	Group uint32
	// Applied is the group's applied index in the captured state.
	Applied uint64
	// Shards are the group's shards (its registry), in id order.
	Shards []ShardID
	// Extra are the caller's spans sent with the group (ExportOptions.Extra).
	Extra []Span
}

// ParseSnapshotPrefix reads the group and applied index from the first
// SnapshotPrefixLen bytes of b; the error wraps ErrBadSnapshot when b does not
// start a group snapshot stream of a known version.
func ParseSnapshotPrefix(b []byte) (group uint32, applied uint64, err error) {
	if len(b) < SnapshotPrefixLen || string(b[:4]) != snapshotMagic {
		return 0, 0, fmt.Errorf("%w: not a group snapshot stream", ErrBadSnapshot)
	}
	if b[4] != snapshotVersion {
		return 0, 0, fmt.Errorf("%w: version %d", ErrBadSnapshot, b[4])
	}
	return binary.BigEndian.Uint32(b[5:]), binary.BigEndian.Uint64(b[9:]), nil
}

func appendSnapshotHeader(b []byte, h *SnapshotHeader) []byte {
	b = append(b, snapshotMagic...)
	b = append(b, snapshotVersion)
	b = binary.BigEndian.AppendUint32(b, h.Group)
	b = binary.BigEndian.AppendUint64(b, h.Applied)
	b = binary.AppendUvarint(b, uint64(len(h.Shards)))
	for _, id := range h.Shards {
		b = binary.BigEndian.AppendUint64(b, uint64(id))
	}
	b = binary.AppendUvarint(b, uint64(len(h.Extra)))
	for _, sp := range h.Extra {
		b = binary.AppendUvarint(b, uint64(len(sp.Start)))
		b = append(b, sp.Start...)
		b = binary.AppendUvarint(b, uint64(len(sp.End)))
		b = append(b, sp.End...)
	}
	return b
}

func appendSnapshotEntry(b, k, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(k)))
	b = append(b, k...)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func uvarintLen(v uint64) int64 {
	n := int64(1)
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func snapshotEntrySize(k, v int) int64 {
	return uvarintLen(uint64(k)) + int64(k) + uvarintLen(uint64(v)) + int64(v)
}

// checkExtraSpans checks that spans are non-empty, sorted, disjoint, bounded in
// size and outside shardstore's own keys (prefix 's').
func checkExtraSpans(spans []Span) error {
	for i, sp := range spans {
		switch {
		case len(sp.Start) > maxSpanKeyLen || len(sp.End) > maxSpanKeyLen:
			return fmt.Errorf("extra span %d: bound longer than %d bytes", i, maxSpanKeyLen)
		case bytes.Compare(sp.Start, sp.End) >= 0:
			return fmt.Errorf("extra span %d: empty [%x, %x)", i, sp.Start, sp.End)
		case bytes.Compare(sp.Start, []byte{prefixStore + 1}) < 0 && bytes.Compare(sp.End, []byte{prefixStore}) > 0:
			return fmt.Errorf("extra span %d [%x, %x) overlaps the store's keys", i, sp.Start, sp.End)
		case i > 0 && bytes.Compare(spans[i-1].End, sp.Start) > 0:
			return fmt.Errorf("extra spans %d and %d overlap or are out of order", i-1, i)
		}
	}
	return nil
}

func equalSpans(a, b []Span) bool {
	return slices.EqualFunc(a, b, func(x, y Span) bool {
		return bytes.Equal(x.Start, y.Start) && bytes.Equal(x.End, y.End)
	})
}

// spanKind says what a groupSpan holds, for the checks of Ingest.
type spanKind uint8

const (
	spanApplied spanKind = iota
	spanRegistry
	spanShard
	spanExtra
)

// groupSpan is one key range of a group snapshot.
type groupSpan struct {
	Span
	kind  spanKind
	shard ShardID // spanShard
	// local marks a span only the receiver has (a shard of the group the
	// snapshot lacks): Ingest clears it, and the stream may not write in it.
	local bool
	// occupied: the receiver holds keys in the span, so Ingest clears it.
	occupied bool
}

// snapshotSpans lists the spans of h in key order: the applied key, the
// registry, every shard and the extra spans (which checkExtraSpans keeps
// disjoint from the rest).
func snapshotSpans(h *SnapshotHeader) []groupSpan {
	ak := appliedKey(h.Group)
	spans := make([]groupSpan, 0, 2+len(h.Shards)+len(h.Extra))
	spans = append(spans,
		groupSpan{Span: Span{ak, append(ak[:len(ak):len(ak)], 0)}, kind: spanApplied},
		groupSpan{Span: Span{groupPrefix(h.Group), groupEnd(h.Group)}, kind: spanRegistry})
	for _, id := range h.Shards {
		spans = append(spans, groupSpan{Span: Span{shardPrefix(id), shardEnd(id)}, kind: spanShard, shard: id})
	}
	for _, sp := range h.Extra {
		spans = append(spans, groupSpan{Span: sp, kind: spanExtra})
	}
	sortSpans(spans)
	return spans
}

func sortSpans(spans []groupSpan) {
	slices.SortFunc(spans, func(a, b groupSpan) int { return bytes.Compare(a.Start, b.Start) })
}

// snapshotDecoder reads a group snapshot stream: the header when it is made,
// then one entry per next. It checks the framing, the limits, the key order
// and (at the end) the entry count and the CRC; what the entries mean is
// Ingest's concern.
//
// It decodes in place from its own buffer: a value that fits in the buffer is
// handed out as a slice of it, and the CRC is computed over consumed bytes a
// buffer at a time (when the buffer is refilled, and at the trailer), not a
// field at a time.
type snapshotDecoder struct {
	src io.Reader
	// buf[r:w] is read but not decoded; buf[crcAt:r] is decoded but not yet
	// in crc. err is the error the source returned last (io.EOF at the end).
	buf         []byte
	r, w, crcAt int
	crc         uint32
	err         error
	big         []byte // a value longer than buf, copied

	hdr SnapshotHeader
	// key and value are the current entry; valid until the next call of next.
	key, value []byte
	prev       []byte
	count      uint64
	done       bool
}

// snapshotDecodeBuf is the decoder's buffer size: values up to it are not
// copied.
const snapshotDecodeBuf = 256 << 10

func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, args...)...)
}

// newSnapshotDecoder reads and checks the prefix and header of a stream.
func newSnapshotDecoder(r io.Reader) (*snapshotDecoder, error) {
	d := &snapshotDecoder{src: r, buf: make([]byte, snapshotDecodeBuf)}
	prefix, err := d.take(SnapshotPrefixLen)
	if err != nil {
		return nil, err
	}
	if d.hdr.Group, d.hdr.Applied, err = ParseSnapshotPrefix(prefix); err != nil {
		return nil, err
	}
	n, err := d.uvarint(maxSnapshotShards, "shard count")
	if err != nil {
		return nil, err
	}
	d.hdr.Shards = make([]ShardID, 0, min(n, 1<<12))
	for i := uint64(0); i < n; i++ {
		b, err := d.take(8)
		if err != nil {
			return nil, err
		}
		id := ShardID(binary.BigEndian.Uint64(b))
		if i > 0 && id <= d.hdr.Shards[i-1] {
			return nil, badSnapshot("shard %d after %d", id, d.hdr.Shards[i-1])
		}
		d.hdr.Shards = append(d.hdr.Shards, id)
	}
	if n, err = d.uvarint(maxSnapshotSpans, "span count"); err != nil {
		return nil, err
	}
	for i := uint64(0); i < n; i++ {
		var sp Span
		if sp.Start, err = d.bytes(maxSpanKeyLen, "span start"); err != nil {
			return nil, err
		}
		if sp.End, err = d.bytes(maxSpanKeyLen, "span end"); err != nil {
			return nil, err
		}
		d.hdr.Extra = append(d.hdr.Extra, sp)
	}
	if err := checkExtraSpans(d.hdr.Extra); err != nil {
		return nil, badSnapshot("%v", err)
	}
	return d, nil
}

// next reads the next entry into d.key and d.value. At the end of the entries
// it checks the trailer and that nothing follows, and returns false.
func (d *snapshotDecoder) next() (bool, error) {
	if d.done {
		return false, nil
	}
	kl, err := d.uvarint(maxSnapshotKey, "key length")
	if err != nil {
		return false, err
	}
	if kl == 0 {
		return false, d.trailer()
	}
	k, err := d.take(kl)
	if err != nil {
		return false, err
	}
	// The key is kept (as prev) past the next refill of buf: copy it.
	d.prev, d.key = d.key, append(d.prev[:0], k...)
	if d.count > 0 && bytes.Compare(d.key, d.prev) <= 0 {
		return false, badSnapshot("key %x after %x", d.key, d.prev)
	}
	vl, err := d.uvarint(maxSnapshotValue, "value length")
	if err != nil {
		return false, err
	}
	if d.value, err = d.take(vl); err != nil {
		return false, err
	}
	d.count++
	return true, nil
}

func (d *snapshotDecoder) trailer() error {
	b, err := d.take(8)
	if err != nil {
		return err
	}
	if n := binary.BigEndian.Uint64(b); n != d.count {
		return badSnapshot("trailer counts %d entries, stream has %d", n, d.count)
	}
	d.sum()
	if b, err = d.take(4); err != nil {
		return err
	}
	d.crcAt = d.r // the CRC is not part of itself
	if got := binary.BigEndian.Uint32(b); got != d.crc {
		return badSnapshot("checksum %08x, computed %08x", got, d.crc)
	}
	switch err := d.fill(1); {
	case d.w > d.r:
		return badSnapshot("bytes after the trailer")
	case err != io.EOF:
		return fmt.Errorf("shardstore: read group snapshot: %w", err)
	}
	d.done = true
	return nil
}

func (d *snapshotDecoder) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badSnapshot("truncated")
	}
	return fmt.Errorf("shardstore: read group snapshot: %w", err)
}

// sum adds the decoded bytes not yet in the CRC to it.
func (d *snapshotDecoder) sum() {
	d.crc = crc32.Update(d.crc, castagnoli, d.buf[d.crcAt:d.r])
	d.crcAt = d.r
}

// fill reads until buf holds at least n (at most len(buf)) undecoded bytes,
// moving them to its start first when they would not fit. It returns the
// source's error, io.EOF included, when the stream ends first.
func (d *snapshotDecoder) fill(n int) error {
	if d.w-d.r >= n {
		return nil
	}
	if d.r+n > len(d.buf) {
		d.sum()
		d.w = copy(d.buf, d.buf[d.r:d.w])
		d.r, d.crcAt = 0, 0
	}
	for d.w-d.r < n {
		if d.err != nil {
			return d.err
		}
		m, err := d.src.Read(d.buf[d.w:])
		d.w += m
		if err != nil {
			d.err = err
		} else if m == 0 {
			d.err = io.ErrNoProgress
		}
	}
	return nil
}

// take returns the next n bytes: a slice of buf, valid until the next fill,
// when they fit in it, else a copy grown as the bytes arrive, so that a
// corrupt length fails at the end of the stream instead of allocating it.
func (d *snapshotDecoder) take(n uint64) ([]byte, error) {
	if n <= uint64(len(d.buf)) {
		if err := d.fill(int(n)); err != nil {
			return nil, d.readErr(err)
		}
		p := d.buf[d.r : d.r+int(n) : d.r+int(n)]
		d.r += int(n)
		return p, nil
	}
	d.big = d.big[:0]
	for n > 0 {
		if err := d.fill(1); err != nil {
			return nil, d.readErr(err)
		}
		step := int(min(n, uint64(d.w-d.r)))
		d.big = append(d.big, d.buf[d.r:d.r+step]...)
		d.r += step
		n -= uint64(step)
	}
	return d.big, nil
}

func (d *snapshotDecoder) uvarint(limit uint64, what string) (uint64, error) {
	// A stream may end in fewer bytes than the longest varint: the loop
	// below reports a varint cut short.
	_ = d.fill(binary.MaxVarintLen64)
	var v uint64
	for i, shift := 0, uint(0); ; i, shift = i+1, shift+7 {
		if d.r+i == d.w {
			return 0, d.readErr(cmp.Or(d.err, io.ErrUnexpectedEOF))
		}
		c := d.buf[d.r+i]
		if shift == 63 && c > 1 {
			return 0, badSnapshot("%s overflows", what)
		}
		if c == 0 && shift > 0 {
			// Only the minimal encoding is valid: one stream, one encoding.
			return 0, badSnapshot("%s not minimally encoded", what)
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			d.r += i + 1
			break
		}
	}
	if v > limit {
		return 0, badSnapshot("%s %d over the limit %d", what, v, limit)
	}
	return v, nil
}

// bytes reads a uvarint length and that many bytes, copied.
func (d *snapshotDecoder) bytes(limit uint64, what string) ([]byte, error) {
	n, err := d.uvarint(limit, what)
	if err != nil {
		return nil, err
	}
	b, err := d.take(n)
	return bytes.Clone(b), err
}
