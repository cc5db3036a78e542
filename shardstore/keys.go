package shardstore

import (
	"encoding/binary"
	"math"
)

// Key layout. Every key shardstore writes starts with prefixStore ('s'); raftfsm
// keeps its Raft logs and metadata under other first bytes of the same database.
//
//	s h <shard:8> 0x00                          meta: shard counters (shardMeta)
//	s h <shard:8> k <record key>                key index: live offset, size, append time, flags (not for cache-only shards: cacheonly.go)
//	s h <shard:8> p <producer id:8>             idempotent producer state
//	s h <shard:8> r <offset:8>                  record (encodeRecord)
//	s h <shard:8> t <append ms:8> <offset:8>    tombstone due for expiry -> size, record key
//	s h <shard:8> x <append ms:8> <offset:8>    superseded record held by min.compaction.lag -> size
//	s h <shard:8> o <producer id:8>             open transaction of a producer -> first offset
//	s h <shard:8> n <producer id:8> <offset:8>  staged transactional record -> size, flags, record key
//	s h <shard:8> c <append ms:8> <offset:8>    transaction marker due for expiry (compacted shards) -> size
//	s a <group:4>                               last applied Raft index of a group
//	s g <group:4> <shard:8>                     registry: the shard is carried by the group -> version
//
// Integers are big-endian and fixed-width so that they sort; signed values (offsets
// are never negative, times may be) have their sign bit flipped. A shard is the
// contiguous range [shardPrefix(id), shardPrefix(id+1)), with its meta key first,
// so Open finds every shard with one seek per shard. A group's registry entries
// are the contiguous range [groupPrefix(g), groupEnd(g)), so the shards of a
// group are one scan away (snapshot export) and a group snapshot clears and
// rewrites its registry with one range.
const (
	prefixStore = 's'
	tagShard    = 'h'
	tagApplied  = 'a'
	tagGroup    = 'g'

	subMeta       = 0x00
	subKey        = 'k'
	subProducer   = 'p'
	subRecord     = 'r'
	subTombstone  = 't'
	subSuperseded = 'x'
	subOpenTxn    = 'o'
	subStaged     = 'n'
	subMarker     = 'c'

	shardPrefixLen = 2 + 8
)

// shardPrefix returns s h <id>.
func shardPrefix(id ShardID) []byte {
	b := make([]byte, shardPrefixLen, shardPrefixLen+17)
	b[0], b[1] = prefixStore, tagShard
	binary.BigEndian.PutUint64(b[2:], uint64(id))
	return b
}

// shardEnd returns the exclusive upper bound of a shard's key range.
func shardEnd(id ShardID) []byte {
	if id == math.MaxUint64 {
		return []byte{prefixStore, tagShard + 1}
	}
	return shardPrefix(id + 1)
}

// shardsStart and shardsEnd bound every shard's keys.
func shardsStart() []byte { return []byte{prefixStore, tagShard} }
func shardsEnd() []byte   { return []byte{prefixStore, tagShard + 1} }

func sub(id ShardID, tag byte) []byte {
	return append(shardPrefix(id), tag)
}

func metaKey(id ShardID) []byte { return sub(id, subMeta) }

func keyIndexKey(id ShardID, key []byte) []byte {
	return append(sub(id, subKey), key...)
}

// keyIndexKeyInto is keyIndexKey reusing buf.
func keyIndexKeyInto(buf []byte, id ShardID, key []byte) []byte {
	buf = append(buf[:0], prefixStore, tagShard)
	buf = binary.BigEndian.AppendUint64(buf, uint64(id))
	buf = append(buf, subKey)
	return append(buf, key...)
}

func producerKey(id ShardID, pid int64) []byte {
	return binary.BigEndian.AppendUint64(sub(id, subProducer), flip(pid))
}

// producersEnd bounds a shard's producer state keys.
func producersEnd(id ShardID) []byte { return sub(id, subProducer+1) }

func openTxnKey(id ShardID, pid int64) []byte {
	return binary.BigEndian.AppendUint64(sub(id, subOpenTxn), flip(pid))
}

func stagedKey(id ShardID, pid, offset int64) []byte {
	return binary.BigEndian.AppendUint64(stagedPrefix(id, pid), flip(offset))
}

// stagedPrefix is the start of a producer's staged records; stagedPrefix of
// pid+1 bounds them.
func stagedPrefix(id ShardID, pid int64) []byte {
	return binary.BigEndian.AppendUint64(sub(id, subStaged), flip(pid))
}

func recordKey(id ShardID, offset int64) []byte {
	return binary.BigEndian.AppendUint64(sub(id, subRecord), flip(offset))
}

// recordKeyInto is recordKey reusing buf.
func recordKeyInto(buf []byte, id ShardID, offset int64) []byte {
	buf = append(buf[:0], prefixStore, tagShard)
	buf = binary.BigEndian.AppendUint64(buf, uint64(id))
	buf = append(buf, subRecord)
	return binary.BigEndian.AppendUint64(buf, flip(offset))
}

// recordsEnd bounds a shard's records.
func recordsEnd(id ShardID) []byte { return sub(id, subRecord+1) }

func timedKey(id ShardID, tag byte, ms, offset int64) []byte {
	b := binary.BigEndian.AppendUint64(sub(id, tag), flip(ms))
	return binary.BigEndian.AppendUint64(b, flip(offset))
}

func tombstoneKey(id ShardID, ms, offset int64) []byte {
	return timedKey(id, subTombstone, ms, offset)
}

func supersededKey(id ShardID, ms, offset int64) []byte {
	return timedKey(id, subSuperseded, ms, offset)
}

func markerKey(id ShardID, ms, offset int64) []byte {
	return timedKey(id, subMarker, ms, offset)
}

// timedBound is the exclusive bound of tag entries appended before ms.
func timedBound(id ShardID, tag byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64(sub(id, tag), flip(ms))
}

func appliedKey(group uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixStore, tagApplied}, group)
}

// groupPrefix returns s g <group>, the start of the group's registry.
func groupPrefix(group uint32) []byte {
	b := make([]byte, 0, 2+4+8)
	b = append(b, prefixStore, tagGroup)
	return binary.BigEndian.AppendUint32(b, group)
}

// groupEnd returns the exclusive upper bound of a group's registry.
func groupEnd(group uint32) []byte {
	if group == math.MaxUint32 {
		return []byte{prefixStore, tagGroup + 1}
	}
	return groupPrefix(group + 1)
}

// groupShardKey returns s g <group> <shard>: the shard is carried by the group.
func groupShardKey(group uint32, id ShardID) []byte {
	return binary.BigEndian.AppendUint64(groupPrefix(group), uint64(id))
}

// groupsStart and groupsEnd bound every group's registry.
func groupsStart() []byte { return []byte{prefixStore, tagGroup} }
func groupsEnd() []byte   { return []byte{prefixStore, tagGroup + 1} }

// flip maps int64 to uint64 preserving order.
func flip(v int64) uint64 { return uint64(v) ^ (1 << 63) }

func unflip(u uint64) int64 { return int64(u ^ (1 << 63)) }

// keyKind is what parseKey found.
type keyKind uint8

const (
	kindInvalid keyKind = iota
	kindMeta
	kindKeyIndex
	kindProducer
	kindRecord
	kindTombstone
	kindSuperseded
	kindApplied
	kindGroupShard
	kindOpenTxn
	kindStaged
	kindMarker
)

// parsedKey is a decoded store key; which fields are set depends on kind.
type parsedKey struct {
	kind   keyKind
	shard  ShardID
	group  uint32
	key    []byte // record key of kindKeyIndex (aliases the input)
	id     int64  // producer id
	offset int64
	ms     int64
}

// parseKey decodes a key written by this file. It is the inverse of the
// constructors above and is used by Open, the expiry scans and FuzzKeys.
func parseKey(k []byte) (parsedKey, bool) {
	if len(k) < 2 || k[0] != prefixStore {
		return parsedKey{}, false
	}
	switch k[1] {
	case tagApplied:
		if len(k) != 6 {
			return parsedKey{}, false
		}
		return parsedKey{kind: kindApplied, group: binary.BigEndian.Uint32(k[2:])}, true
	case tagGroup:
		if len(k) != 2+4+8 {
			return parsedKey{}, false
		}
		return parsedKey{kind: kindGroupShard, group: binary.BigEndian.Uint32(k[2:]), shard: ShardID(binary.BigEndian.Uint64(k[6:]))}, true
	case tagShard:
	default:
		return parsedKey{}, false
	}
	if len(k) < shardPrefixLen+1 {
		return parsedKey{}, false
	}
	p := parsedKey{shard: ShardID(binary.BigEndian.Uint64(k[2:]))}
	rest := k[shardPrefixLen+1:]
	switch k[shardPrefixLen] {
	case subMeta:
		if len(rest) != 0 {
			return parsedKey{}, false
		}
		p.kind = kindMeta
	case subKey:
		p.kind, p.key = kindKeyIndex, rest
	case subProducer:
		if len(rest) != 8 {
			return parsedKey{}, false
		}
		p.kind, p.id = kindProducer, unflip(binary.BigEndian.Uint64(rest))
	case subRecord:
		if len(rest) != 8 {
			return parsedKey{}, false
		}
		p.kind, p.offset = kindRecord, unflip(binary.BigEndian.Uint64(rest))
	case subOpenTxn:
		if len(rest) != 8 {
			return parsedKey{}, false
		}
		p.kind, p.id = kindOpenTxn, unflip(binary.BigEndian.Uint64(rest))
	case subStaged:
		if len(rest) != 16 {
			return parsedKey{}, false
		}
		p.kind, p.id = kindStaged, unflip(binary.BigEndian.Uint64(rest))
		p.offset = unflip(binary.BigEndian.Uint64(rest[8:]))
	case subTombstone, subSuperseded, subMarker:
		if len(rest) != 16 {
			return parsedKey{}, false
		}
		switch k[shardPrefixLen] {
		case subTombstone:
			p.kind = kindTombstone
		case subSuperseded:
			p.kind = kindSuperseded
		default:
			p.kind = kindMarker
		}
		p.ms = unflip(binary.BigEndian.Uint64(rest))
		p.offset = unflip(binary.BigEndian.Uint64(rest[8:]))
	default:
		return parsedKey{}, false
	}
	return p, true
}

// encode rebuilds the key p describes (the inverse of parseKey).
func (p parsedKey) encode() []byte {
	switch p.kind {
	case kindMeta:
		return metaKey(p.shard)
	case kindKeyIndex:
		return keyIndexKey(p.shard, p.key)
	case kindProducer:
		return producerKey(p.shard, p.id)
	case kindRecord:
		return recordKey(p.shard, p.offset)
	case kindTombstone:
		return tombstoneKey(p.shard, p.ms, p.offset)
	case kindSuperseded:
		return supersededKey(p.shard, p.ms, p.offset)
	case kindMarker:
		return markerKey(p.shard, p.ms, p.offset)
	case kindOpenTxn:
		return openTxnKey(p.shard, p.id)
	case kindStaged:
		return stagedKey(p.shard, p.id, p.offset)
	case kindApplied:
		return appliedKey(p.group)
	case kindGroupShard:
		return groupShardKey(p.group, p.shard)
	}
	return nil
}

// recordOffset decodes the offset of a record key of any shard (no checks; the
// caller iterates within a shard's record range).
func recordOffset(k []byte) int64 {
	return unflip(binary.BigEndian.Uint64(k[shardPrefixLen+1:]))
}
