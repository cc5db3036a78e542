package shardstore

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
)

// FuzzKeys checks that every key kind round-trips through parseKey, that keys of
// one shard stay inside its range, that offsets and times sort as integers, and
// that parseKey accepts arbitrary bytes only when they re-encode to themselves.
func FuzzKeys(f *testing.F) {
	f.Add(uint64(0), int64(0), int64(0), []byte(nil), uint32(0), []byte(nil))
	f.Add(uint64(1), int64(1), int64(-1), []byte("key"), uint32(7), []byte("sh"))
	f.Add(uint64(math.MaxUint64), int64(math.MaxInt64), int64(math.MinInt64), []byte{0, 0xff}, uint32(math.MaxUint32), []byte{'s', 'h', 0, 0, 0, 0, 0, 0, 0, 1, 'r'})
	f.Add(uint64(42), int64(-5), int64(99), bytes.Repeat([]byte{0xff}, 300), uint32(1), append(recordKey(3, 9), 0))
	f.Fuzz(func(t *testing.T, shard uint64, a, b int64, key []byte, group uint32, raw []byte) {
		id := ShardID(shard)
		keys := []parsedKey{
			{kind: kindMeta, shard: id},
			{kind: kindKeyIndex, shard: id, key: key},
			{kind: kindProducer, shard: id, id: a},
			{kind: kindRecord, shard: id, offset: a},
			{kind: kindTombstone, shard: id, ms: a, offset: b},
			{kind: kindMarker, shard: id, ms: a, offset: b},
			{kind: kindSuperseded, shard: id, ms: b, offset: a},
			{kind: kindOpenTxn, shard: id, id: a},
			{kind: kindStaged, shard: id, id: a, offset: b},
			{kind: kindApplied, group: group},
			{kind: kindGroupShard, group: group, shard: id},
		}
		for _, want := range keys {
			enc := want.encode()
			got, ok := parseKey(enc)
			if !ok || got.kind != want.kind || got.shard != want.shard || got.group != want.group ||
				!bytes.Equal(got.key, want.key) || got.id != want.id || got.offset != want.offset || got.ms != want.ms {
				t.Fatalf("round trip of %+v: %x -> %+v %v", want, enc, got, ok)
			}
			if want.kind == kindApplied {
				continue
			}
			if want.kind == kindGroupShard {
				if bytes.Compare(enc, groupPrefix(group)) < 0 || bytes.Compare(enc, groupEnd(group)) >= 0 ||
					bytes.Compare(enc, groupsStart()) < 0 || bytes.Compare(enc, groupsEnd()) >= 0 {
					t.Fatalf("registry key %x outside group %d's range", enc, group)
				}
				continue
			}
			if bytes.Compare(enc, shardPrefix(id)) < 0 || bytes.Compare(enc, shardEnd(id)) >= 0 {
				t.Fatalf("key %x outside shard %d's range", enc, id)
			}
			if bytes.Compare(enc, shardsStart()) < 0 || bytes.Compare(enc, shardsEnd()) >= 0 {
				t.Fatalf("key %x outside the shards' range", enc)
			}
		}
		if c := bytes.Compare(recordKey(id, a), recordKey(id, b)); c != cmpInt(a, b) {
			t.Fatalf("record keys of %d and %d compare %d", a, b, c)
		}
		if c := bytes.Compare(tombstoneKey(id, a, 0), tombstoneKey(id, b, 0)); c != cmpInt(a, b) {
			t.Fatalf("tombstone keys of %d and %d compare %d", a, b, c)
		}
		if a < b && bytes.Compare(tombstoneKey(id, a, math.MaxInt64), timedBound(id, subTombstone, b)) >= 0 {
			t.Fatalf("tombstone at %d not below the bound %d", a, b)
		}
		if got := recordOffset(recordKey(id, a)); got != a {
			t.Fatalf("recordOffset = %d, want %d", got, a)
		}
		if got := keyIndexKeyInto(nil, id, key); !bytes.Equal(got, keyIndexKey(id, key)) {
			t.Fatalf("keyIndexKeyInto differs")
		}
		if got := recordKeyInto([]byte("junk"), id, a); !bytes.Equal(got, recordKey(id, a)) {
			t.Fatalf("recordKeyInto differs")
		}
		if p, ok := parseKey(raw); ok {
			if enc := p.encode(); !bytes.Equal(enc, raw) {
				t.Fatalf("parseKey(%x) = %+v re-encodes to %x", raw, p, enc)
			}
		}
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// FuzzRecord checks that arbitrary bytes never crash the record decoder and that
// whatever decodes survives a re-encoding unchanged (the decoder tolerates
// non-minimal varints, so the bytes themselves may differ).
func FuzzRecord(f *testing.F) {
	rec := Record{Key: []byte("k"), Value: []byte("v"), Timestamp: 9, Headers: []Header{{Key: "a", Value: nil}, {Key: "b", Value: []byte{}}}}
	valid := appendRecord(nil, &rec, 77)
	f.Add([]byte{})
	f.Add([]byte{recordVersion})
	f.Add(valid)
	f.Add(append(append([]byte(nil), valid...), 0xff))
	f.Add(appendRecord(nil, &Record{}, -1))
	f.Add(appendRecord(nil, &Record{Key: []byte("z"), Value: []byte("v"), Codec: CodecZstd}, 5))
	f.Fuzz(func(t *testing.T, b []byte) {
		b = append([]byte(nil), b...)
		nh, err := recordHeaderCount(b)
		if err != nil {
			return
		}
		var r Record
		if _, err := decodeRecord(b, &r, make([]Header, min(nh, 1<<16))); err != nil {
			return
		}
		_, appendMs, err := recordTimes(b)
		if err != nil {
			t.Fatalf("decoded but recordTimes fails: %v", err)
		}
		enc := appendRecord(nil, &r, appendMs)
		if got := recordSize(&r); int(got) != len(enc) {
			t.Fatalf("recordSize %d, encoded %d bytes", got, len(enc))
		}
		var again Record
		if _, err := decodeRecord(enc, &again, make([]Header, len(r.Headers))); err != nil || !sameRecord(r, again) {
			t.Fatalf("%x decodes to %+v, re-encodes to %x, decodes to %+v (%v)", b, r, enc, again, err)
		}
		key, ms, err := recordKeyOf(b)
		if err != nil || !bytes.Equal(key, r.Key) || (key == nil) != (r.Key == nil) || ms != appendMs {
			t.Fatalf("recordKeyOf = %q, %d, %v; want %q", key, ms, err, r.Key)
		}
	})
}

// TestRecordCodec: a record keeps the codec of the batch that carried it;
// flag bits no record is written with, and codecs past zstd, are corrupt.
func TestRecordCodec(t *testing.T) {
	for c := CodecNone; c <= MaxCodec; c++ {
		enc := appendRecord(nil, &Record{Key: []byte("k"), Value: nil, Codec: c}, 1)
		var r Record
		if _, err := decodeRecord(enc, &r, nil); err != nil || r.Codec != c || r.Value != nil || string(r.Key) != "k" {
			t.Fatalf("codec %d: decoded %+v, %v", c, r, err)
		}
	}
	enc := appendRecord(nil, &Record{Key: []byte("k"), Value: []byte("v")}, 1)
	for _, flags := range []byte{5 << recFlagCodecShift, 7 << recFlagCodecShift, 1 << 6, 1 << 7} {
		bad := append([]byte(nil), enc...)
		bad[1] |= flags
		var r Record
		if _, err := decodeRecord(bad, &r, nil); !errors.Is(err, errCorrupt) {
			t.Fatalf("flags %08b: err %v, want errCorrupt", bad[1], err)
		}
	}
}

// sameRecord compares records including nil against empty.
func sameRecord(a, b Record) bool {
	same := func(x, y []byte) bool { return bytes.Equal(x, y) && (x == nil) == (y == nil) }
	if a.Offset != b.Offset || a.Timestamp != b.Timestamp || a.Codec != b.Codec || !same(a.Key, b.Key) || !same(a.Value, b.Value) ||
		len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !same(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

// FuzzProducerState: decodeProducer never panics, reads both versions, and
// what it decodes encodes (as the current version) to bytes that decode to the
// same state, dated unless it came from version 1.
func FuzzProducerState(f *testing.F) {
	ps := &producerState{epoch: 3, lastMs: 1_700_000_000_000, batches: []producerBatch{{0, 4, 10}, {5, 5, 15}}}
	valid := ps.encode()
	f.Add([]byte{})
	f.Add([]byte{producerVersion})
	f.Add(valid)
	f.Add(append(append([]byte(nil), valid...), 0))
	f.Add([]byte{producerVersion1, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := decodeProducer(b)
		if err != nil {
			return
		}
		if ps.undated != (b[0] == producerVersion1) {
			t.Fatalf("%x: undated = %v", b, ps.undated)
		}
		enc := ps.encode()
		again, err := decodeProducer(enc)
		if err != nil || again.undated || again.epoch != ps.epoch || again.lastMs != ps.lastMs || !slices.Equal(again.batches, ps.batches) {
			t.Fatalf("%x decodes to %+v, re-encodes to %x, decodes to %+v (%v)", b, ps, enc, again, err)
		}
		if b[0] == producerVersion && !bytes.Equal(enc, b) {
			t.Fatalf("%x re-encodes to %x", b, enc)
		}
	})
}
