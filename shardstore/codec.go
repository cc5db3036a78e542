package shardstore

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Value encodings. Each persisted structure starts with a version byte so that a
// later format can be told apart; integers are big-endian.

const (
	recordVersion   = 1
	metaVersion     = 1
	producerVersion = 2
	// producerVersion1 is producer state without its last append time.
	producerVersion1 = 1
	// groupEntryVersion is the whole value of a group registry entry.
	groupEntryVersion = 1

	recFlagKeyNil   = 1 << 0
	recFlagValueNil = 1 << 1
	// recFlagMarker: a transaction marker; the key field holds producer id:8
	// epoch:2 coordinator epoch:4, the value field commit:1.
	recFlagMarker = 1 << 2
	// The record's Codec sits in flag bits 3-5 (recFlagCodecShift); records
	// written before codecs were kept have 0 there, CodecNone.
	recFlagCodecShift = 3
	recFlagCodecMask  = 7 << recFlagCodecShift
	// recFlagsKnown are the flag bits a record may have set.
	recFlagsKnown = recFlagKeyNil | recFlagValueNil | recFlagMarker | recFlagCodecMask

	// recordHeaderLen is version, flags, timestamp and append time.
	recordHeaderLen = 1 + 1 + 8 + 8
)

var errCorrupt = errors.New("shardstore: corrupt value")

// appendRecord encodes r (appended at appendMs) to buf:
//
//	version:1 flags:1 timestamp:8 appendMs:8
//	uvarint(len key) key  uvarint(len value) value
//
// flags: key nil, value nil, marker, and the codec in bits 3-5.
//
//	uvarint(headers) { uvarint(len key) key  uvarint(len value + 1, 0 = nil) value }
func appendRecord(buf []byte, r *Record, appendMs int64) []byte {
	var flags byte
	if r.Marker != nil {
		m := r.Marker
		buf = append(buf, recordVersion, recFlagMarker)
		buf = binary.BigEndian.AppendUint64(buf, uint64(r.Timestamp))
		buf = binary.BigEndian.AppendUint64(buf, uint64(appendMs))
		buf = append(buf, 14)
		buf = binary.BigEndian.AppendUint64(buf, uint64(m.ProducerID))
		buf = binary.BigEndian.AppendUint16(buf, uint16(m.ProducerEpoch))
		buf = binary.BigEndian.AppendUint32(buf, uint32(m.CoordinatorEpoch))
		commit := byte(0)
		if m.Commit {
			commit = 1
		}
		return append(buf, 1, commit, 0)
	}
	if r.Key == nil {
		flags |= recFlagKeyNil
	}
	if r.Value == nil {
		flags |= recFlagValueNil
	}
	if r.Codec <= MaxCodec { // no producer batch names another codec (the broker refuses it)
		flags |= byte(r.Codec) << recFlagCodecShift
	}
	buf = append(buf, recordVersion, flags)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Timestamp))
	buf = binary.BigEndian.AppendUint64(buf, uint64(appendMs))
	buf = binary.AppendUvarint(buf, uint64(len(r.Key)))
	buf = append(buf, r.Key...)
	buf = binary.AppendUvarint(buf, uint64(len(r.Value)))
	buf = append(buf, r.Value...)
	buf = binary.AppendUvarint(buf, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		buf = binary.AppendUvarint(buf, uint64(len(h.Key)))
		buf = append(buf, h.Key...)
		if h.Value == nil {
			buf = append(buf, 0)
			continue
		}
		buf = binary.AppendUvarint(buf, uint64(len(h.Value))+1)
		buf = append(buf, h.Value...)
	}
	return buf
}

// recordSize is len(appendRecord(nil, r, _)), computed without encoding: an
// append writes each record's index entry, which holds its size, before the
// record (Append's write order).
func recordSize(r *Record) int32 {
	if r.Marker != nil {
		return recordHeaderLen + 1 + 14 + 3
	}
	n := int64(recordHeaderLen)
	n += uvarintLen(uint64(len(r.Key))) + int64(len(r.Key))
	n += uvarintLen(uint64(len(r.Value))) + int64(len(r.Value))
	n += uvarintLen(uint64(len(r.Headers)))
	for _, h := range r.Headers {
		n += uvarintLen(uint64(len(h.Key))) + int64(len(h.Key))
		if h.Value == nil {
			n++
			continue
		}
		n += uvarintLen(uint64(len(h.Value))+1) + int64(len(h.Value))
	}
	return int32(n)
}

// recordTimes returns the timestamp and append time of an encoded record without
// decoding the rest.
func recordTimes(b []byte) (ts, appendMs int64, err error) {
	if len(b) < recordHeaderLen || b[0] != recordVersion {
		return 0, 0, errCorrupt
	}
	return int64(binary.BigEndian.Uint64(b[2:])), int64(binary.BigEndian.Uint64(b[10:])), nil
}

// recordHeaderCount returns how many headers an encoded record has, so that Read
// can size one header arena for a whole call.
func recordHeaderCount(b []byte) (int, error) {
	if len(b) < recordHeaderLen || b[0] != recordVersion {
		return 0, errCorrupt
	}
	pos := recordHeaderLen
	for range 2 {
		n, w := binary.Uvarint(b[pos:])
		if w <= 0 || uint64(len(b)-pos-w) < n {
			return 0, errCorrupt
		}
		pos += w + int(n)
	}
	n, w := binary.Uvarint(b[pos:])
	if w <= 0 || n > uint64(len(b)) {
		return 0, errCorrupt
	}
	return int(n), nil
}

// decodeRecord decodes b into r. Key, Value, header values and header keys alias
// b (header keys through unsafe.String), so b must never be modified afterwards:
// callers pass memory they own and hand over. Headers are taken from the front
// of arena (which must have room for them); the rest of arena is returned.
func decodeRecord(b []byte, r *Record, arena []Header) ([]Header, error) {
	if len(b) < recordHeaderLen || b[0] != recordVersion {
		return arena, errCorrupt
	}
	flags := b[1]
	if flags&^recFlagsKnown != 0 || Codec((flags&recFlagCodecMask)>>recFlagCodecShift) > MaxCodec {
		return arena, errCorrupt
	}
	r.Codec = Codec((flags & recFlagCodecMask) >> recFlagCodecShift)
	r.Timestamp = int64(binary.BigEndian.Uint64(b[2:]))
	pos := recordHeaderLen
	field := func() ([]byte, error) {
		n, w := binary.Uvarint(b[pos:])
		if w <= 0 || uint64(len(b)-pos-w) < n {
			return nil, errCorrupt
		}
		v := b[pos+w : pos+w+int(n) : pos+w+int(n)]
		pos += w + int(n)
		return v, nil
	}
	var err error
	if r.Key, err = field(); err != nil {
		return arena, err
	}
	if flags&recFlagKeyNil != 0 {
		r.Key = nil
	}
	if r.Value, err = field(); err != nil {
		return arena, err
	}
	if flags&recFlagValueNil != 0 {
		r.Value = nil
	}
	r.Marker = nil
	if flags&recFlagMarker != 0 {
		if len(r.Key) != 14 || len(r.Value) != 1 || r.Value[0] > 1 {
			return arena, errCorrupt
		}
		r.Marker = &Marker{
			ProducerID:       int64(binary.BigEndian.Uint64(r.Key)),
			ProducerEpoch:    int16(binary.BigEndian.Uint16(r.Key[8:])),
			CoordinatorEpoch: int32(binary.BigEndian.Uint32(r.Key[10:])),
			Commit:           r.Value[0] == 1,
		}
		r.Key, r.Value = nil, nil
	}
	nh, w := binary.Uvarint(b[pos:])
	if w <= 0 || nh > uint64(len(arena)) {
		return arena, errCorrupt
	}
	pos += w
	r.Headers = nil
	if nh == 0 {
		return arena, nil
	}
	hs := arena[:nh:nh]
	for i := range hs {
		k, err := field()
		if err != nil {
			return arena, err
		}
		hs[i].Key = unsafe.String(unsafe.SliceData(k), len(k))
		n, w := binary.Uvarint(b[pos:])
		if w <= 0 || n > uint64(len(b)-pos-w)+1 {
			return arena, errCorrupt
		}
		pos += w
		if n == 0 {
			hs[i].Value = nil
			continue
		}
		hs[i].Value = b[pos : pos+int(n-1) : pos+int(n-1)]
		pos += int(n - 1)
	}
	if pos != len(b) {
		return arena, errCorrupt
	}
	r.Headers = hs
	return arena[nh:], nil
}

// decodeOwnedRecord decodes a private copy of b.
func decodeOwnedRecord(b []byte, offset int64) (Record, error) {
	own := append([]byte(nil), b...)
	nh, err := recordHeaderCount(own)
	if err != nil {
		return Record{}, err
	}
	r := Record{Offset: offset}
	_, err = decodeRecord(own, &r, make([]Header, nh))
	return r, err
}

// keyEntry is the key index value: where a key's live record is.
type keyEntry struct {
	offset   int64
	appendMs int64
	size     int32 // encoded record size
	tomb     bool  // the live record is a tombstone
}

const keyEntryLen = 8 + 8 + 4 + 1

func (e keyEntry) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.offset))
	b = binary.BigEndian.AppendUint64(b, uint64(e.appendMs))
	b = binary.BigEndian.AppendUint32(b, uint32(e.size))
	if e.tomb {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeKeyEntry(b []byte) (keyEntry, error) {
	if len(b) != keyEntryLen {
		return keyEntry{}, errCorrupt
	}
	return keyEntry{
		offset:   int64(binary.BigEndian.Uint64(b)),
		appendMs: int64(binary.BigEndian.Uint64(b[8:])),
		size:     int32(binary.BigEndian.Uint32(b[16:])),
		tomb:     b[20] == 1,
	}, nil
}

// shardMeta is the persisted form of State. Version 1 is the counters alone;
// version 2 adds a flags byte, written only while a flag is set (so a data dir
// whose shards have none stays readable by a build from before version 2).
const (
	metaLen        = 1 + 8*8
	metaLenFlagged = metaLen + 1
	metaVersion2   = 2

	// metaFlagCacheOnly: the shard's key index is kept in its key cache only
	// (no k entries in Pebble); Open rebuilds the cache from the records
	// (cacheonly.go).
	metaFlagCacheOnly = 1 << 0
)

func encodeMeta(st State, cacheOnly bool) []byte {
	b := make([]byte, 0, metaLenFlagged)
	if cacheOnly {
		b = append(b, metaVersion2)
	} else {
		b = append(b, metaVersion)
	}
	for _, v := range [...]int64{st.HighWatermark, st.LogStartOffset, st.LiveKeys, st.LiveRecords,
		st.LiveBytes, st.Tombstones, st.MaxTimestamp, st.MaxTimestampOffset} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	if cacheOnly {
		b = append(b, metaFlagCacheOnly)
	}
	return b
}

func decodeMeta(b []byte) (st State, cacheOnly bool, err error) {
	switch {
	case len(b) == metaLen && b[0] == metaVersion:
	case len(b) == metaLenFlagged && b[0] == metaVersion2 && b[metaLen]&^metaFlagCacheOnly == 0:
		cacheOnly = b[metaLen]&metaFlagCacheOnly != 0
	default:
		return State{}, false, errCorrupt
	}
	v := func(i int) int64 { return int64(binary.BigEndian.Uint64(b[1+8*i:])) }
	return State{
		HighWatermark: v(0), LogStartOffset: v(1), LiveKeys: v(2), LiveRecords: v(3),
		LiveBytes: v(4), Tombstones: v(5), MaxTimestamp: v(6), MaxTimestampOffset: v(7),
	}, cacheOnly, nil
}

// sizedValue encodes the value of tombstone and superseded entries: the record's
// encoded size, then (tombstones only) its key.
func sizedValue(size int32, key []byte) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(key)), uint32(size))
	return append(b, key...)
}

func decodeSizedValue(b []byte) (size int32, key []byte, err error) {
	if len(b) < 4 {
		return 0, nil, errCorrupt
	}
	return int32(binary.BigEndian.Uint32(b)), b[4:], nil
}

// recordKeyOf returns the key of an encoded record (aliasing b; nil for a keyless
// record), with its append time.
func recordKeyOf(b []byte) (key []byte, appendMs int64, err error) {
	if len(b) < recordHeaderLen || b[0] != recordVersion {
		return nil, 0, errCorrupt
	}
	appendMs = int64(binary.BigEndian.Uint64(b[10:]))
	if b[1]&recFlagKeyNil != 0 {
		return nil, appendMs, nil
	}
	n, w := binary.Uvarint(b[recordHeaderLen:])
	if w <= 0 || uint64(len(b)-recordHeaderLen-w) < n {
		return nil, 0, errCorrupt
	}
	start := recordHeaderLen + w
	return b[start : start+int(n)], appendMs, nil
}
