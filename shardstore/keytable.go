package shardstore

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// keyTable is a shard's key cache: record key -> keyEntry. It replaces a Go
// map[string]keyEntry, which cost 128 bytes per 16-byte key (a 48-byte slot
// with a string header, the key as its own heap object, control bytes, load
// factor) and two or three cache misses per lookup (control word, slot, key),
// and whose key pointers the garbage collector scanned on every cycle. The
// key cache is looked up for every record a compacted shard takes and
// written for every record applied, so those misses were most of the write
// path's map cost (README, Benchmarks, "The key cache as a table").
//
// Layout: an open-addressed table of 8-byte slots with linear probing, and
// the entries in byte chunks. A slot holds a 20-bit tag of the key's hash
// and a 44-bit reference into the chunks, so a probe compares tags without
// touching a chunk. A chunk record is the keyEntry (20 bytes), the key's
// length (uvarint) and the key, so the key and its entry share a cache line.
// Neither slots nor chunks hold pointers: the garbage collector never scans
// them. About 37 + 8/load bytes per 16-byte key (keyCacheCost).
//
// A keyTable is not safe for concurrent use; the shard's mu guards it.
type keyTable struct {
	seed  maphash.Seed
	slots []uint64 // 0: empty; else tag<<refBits | ref
	shift uint     // 64 - log2(len(slots)): a hash's home slot is hash >> shift
	n     int      // entries

	chunks [][]byte
	cur    int // the chunk records are appended to, -1 for none
	used   int // bytes of the entries' records in chunks
	dead   int // bytes of removed entries' records, until compact
	cursor int // where anyKey looks next
	// fromTag is the largest log2 table size whose home slots come from the
	// tags (tagBits); tests lower it to reach the rehashing path with small
	// tables.
	fromTag uint
}

const (
	// A slot's reference is (chunk index + 1) << posBits | position, never 0.
	refBits  = 44
	posBits  = 16
	refMask  = 1<<refBits - 1
	posMask  = 1<<posBits - 1
	tagBits  = 64 - refBits
	maxChunk = 1<<(refBits-posBits) - 2

	// chunkMax is the largest shared chunk (positions are 16 bits). A new
	// chunk is a sixteenth of the records the table holds, at least chunkMin,
	// so a shard with a few keys costs a few hundred bytes. A record over
	// bigRecord gets a chunk of its own, so a shared chunk wastes little at
	// its end.
	chunkMin  = 256
	chunkMax  = 1 << posBits
	bigRecord = 4096

	// entryBytes: offset:8 appendMs:8 size:4, little-endian; the size's top
	// bit is tomb (a record's size is below 2^31).
	entryBytes = 20
	tombBit    = 1 << 31

	minSlots = 8
	// maxPresize bounds newKeyTable's size hint, which may come from a
	// stored count.
	maxPresize = 1 << 20
)

// newKeyTable returns an empty table with room for n entries before it grows.
func newKeyTable(n int) *keyTable {
	t := &keyTable{seed: maphash.MakeSeed(), cur: -1, fromTag: tagBits}
	if n > 0 {
		t.resize(slotsFor(min(n, maxPresize)))
	}
	return t
}

// slotsFor is the table size that holds n entries at a load of at most 3/4.
func slotsFor(n int) int {
	s := minSlots
	for s*3/4 < n {
		s *= 2
	}
	return s
}

// bytesView returns b's bytes as a string without copying, for a lookup
// that does not keep it.
func bytesView(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (t *keyTable) hash(key string) uint64 { return maphash.String(t.seed, key) }

// len returns the number of entries. The read methods (get, len, each,
// anyKey) and update and delete take a nil table as an empty one, as a Go
// map reads nil; a dropped shard's cache is nil.
func (t *keyTable) len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// record returns the chunk bytes of the entry at ref, from its entry on.
func (t *keyTable) record(ref uint64) []byte {
	return t.chunks[ref>>posBits-1][ref&posMask:]
}

// keyOf returns the key of a chunk record.
func keyOf(rec []byte) []byte {
	n, w := binary.Uvarint(rec[entryBytes:])
	start := entryBytes + w
	return rec[start : start+int(n)]
}

// find returns the slot of key (hashed to h) and true, or the empty slot
// where it would go and false. The table has slots.
func (t *keyTable) find(key string, h uint64) (int, bool) {
	mask := len(t.slots) - 1
	tag := h >> refBits
	for i := int(h >> t.shift); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, false
		}
		if s>>refBits == tag && bytesView(keyOf(t.record(s&refMask))) == key {
			return i, true
		}
	}
}

// get returns key's entry.
func (t *keyTable) get(key string) (keyEntry, bool) {
	if t == nil || t.n == 0 {
		return keyEntry{}, false
	}
	i, ok := t.find(key, t.hash(key))
	if !ok {
		return keyEntry{}, false
	}
	return decodeTableEntry(t.record(t.slots[i] & refMask)), true
}

// update replaces the entry of key if the table has it, and reports whether
// it did.
func (t *keyTable) update(key string, e keyEntry) bool {
	if t == nil || t.n == 0 {
		return false
	}
	i, ok := t.find(key, t.hash(key))
	if ok {
		putTableEntry(t.record(t.slots[i]&refMask), e)
	}
	return ok
}

// set stores key's entry, adding key if the table does not have it, and
// reports whether it added it.
func (t *keyTable) set(key string, e keyEntry) bool {
	if len(t.slots) == 0 || (t.n+1) > len(t.slots)*3/4 {
		t.resize(slotsFor(t.n + 1))
	}
	h := t.hash(key)
	i, ok := t.find(key, h)
	if ok {
		putTableEntry(t.record(t.slots[i]&refMask), e)
		return false
	}
	ref := t.appendRecord(key, e)
	t.slots[i] = (h>>refBits)<<refBits | ref
	t.n++
	return true
}

// delete removes key and reports whether the table had it.
func (t *keyTable) delete(key string) bool {
	if t == nil || t.n == 0 {
		return false
	}
	i, ok := t.find(key, t.hash(key))
	if !ok {
		return false
	}
	rec := t.record(t.slots[i] & refMask)
	size := recordLen(rec)
	t.used -= size
	t.dead += size
	t.n--
	// Backward-shift deletion (Knuth's Algorithm R): move each later entry
	// of the probe run into the hole unless its home lies cyclically in
	// (hole, its slot], so every entry stays reachable from its home.
	mask := len(t.slots) - 1
	for hole := i; ; {
		t.slots[hole] = 0
		j := hole
		for {
			j = (j + 1) & mask
			s := t.slots[j]
			if s == 0 {
				t.maybeCompact()
				return true
			}
			home := t.home(s)
			if hole <= j {
				if hole < home && home <= j {
					continue
				}
			} else if hole < home || home <= j {
				continue
			}
			t.slots[hole] = s
			hole = j
			break
		}
	}
}

// home returns the home slot of the entry in slot s: from its tag while the
// table has at most 2^tagBits slots, else from its key's hash.
func (t *keyTable) home(s uint64) int {
	if b := 64 - t.shift; b <= t.fromTag {
		return int((s >> refBits) >> (tagBits - b))
	}
	return int(t.hash(bytesView(keyOf(t.record(s&refMask)))) >> t.shift)
}

// each calls fn for every entry, in no particular order. key aliases the
// table: fn copies what it keeps, and must not change the table.
func (t *keyTable) each(fn func(key []byte, e keyEntry)) {
	if t == nil {
		return
	}
	for _, s := range t.slots {
		if s != 0 {
			rec := t.record(s & refMask)
			fn(keyOf(rec), decodeTableEntry(rec))
		}
	}
}

// anyKey returns a key of the table, a different one on each call while
// the table does not change (a cursor walks the slots), for eviction.
func (t *keyTable) anyKey() (string, bool) {
	if t == nil || t.n == 0 {
		return "", false
	}
	for range len(t.slots) {
		t.cursor = (t.cursor + 1) & (len(t.slots) - 1)
		if s := t.slots[t.cursor]; s != 0 {
			return string(keyOf(t.record(s & refMask))), true
		}
	}
	return "", false
}

// resize moves every entry into a table of n slots (a power of two).
func (t *keyTable) resize(n int) {
	old := t.slots
	t.slots = make([]uint64, n)
	t.shift = uint(64 - bits.TrailingZeros(uint(n)))
	mask := n - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		home := t.home(s)
		for t.slots[home] != 0 {
			home = (home + 1) & mask
		}
		t.slots[home] = s
	}
	t.cursor = 0
}

// recordLen returns the length of a chunk record.
func recordLen(rec []byte) int {
	n, w := binary.Uvarint(rec[entryBytes:])
	return entryBytes + w + int(n)
}

// appendRecord writes key's record to the chunks and returns its reference.
func (t *keyTable) appendRecord(key string, e keyEntry) uint64 {
	size := entryBytes + int(uvarintLen(uint64(len(key)))) + len(key)
	var c int
	switch {
	case size > bigRecord:
		c = t.newChunk(size)
	case t.cur >= 0 && cap(t.chunks[t.cur])-len(t.chunks[t.cur]) >= size:
		c = t.cur
	default:
		// A sixteenth of what the table holds: the unused end of the
		// newest chunk stays below that.
		c = t.newChunk(max(min(t.used/16, chunkMax), chunkMin, size))
		t.cur = c
	}
	chunk := t.chunks[c]
	pos := len(chunk)
	chunk = chunk[:pos+entryBytes]
	putTableEntry(chunk[pos:], e)
	chunk = binary.AppendUvarint(chunk, uint64(len(key)))
	chunk = append(chunk, key...)
	t.chunks[c] = chunk
	t.used += size
	return uint64(c+1)<<posBits | uint64(pos)
}

// newChunk adds an empty chunk of capacity size and returns its index.
// The key cache's byte bound keeps a table far below maxChunk chunks
// (keyCacheCost charges a record over bigRecord more than a chunk's bytes).
func (t *keyTable) newChunk(size int) int {
	if len(t.chunks) >= maxChunk {
		panic("shardstore: key table has more chunks than it can address")
	}
	t.chunks = append(t.chunks, make([]byte, 0, size))
	return len(t.chunks) - 1
}

// maybeCompact copies the live records to new chunks once removed ones take
// an eighth of the chunks' bytes, so removed keys cost at most that.
func (t *keyTable) maybeCompact() {
	if t.dead < 4096 || t.dead < t.used/8 {
		return
	}
	old := t.chunks
	t.chunks, t.cur, t.dead, t.used = nil, -1, 0, 0
	for i, s := range t.slots {
		if s == 0 {
			continue
		}
		ref := s & refMask
		rec := old[ref>>posBits-1][ref&posMask:]
		ref = t.appendRecord(bytesView(keyOf(rec)), decodeTableEntry(rec))
		t.slots[i] = s&^refMask | ref
	}
}

func putTableEntry(b []byte, e keyEntry) {
	binary.LittleEndian.PutUint64(b[0:], uint64(e.offset))
	binary.LittleEndian.PutUint64(b[8:], uint64(e.appendMs))
	size := uint32(e.size) &^ tombBit
	if e.tomb {
		size |= tombBit
	}
	binary.LittleEndian.PutUint32(b[16:], size)
}

func decodeTableEntry(b []byte) keyEntry {
	size := binary.LittleEndian.Uint32(b[16:])
	return keyEntry{
		offset:   int64(binary.LittleEndian.Uint64(b[0:])),
		appendMs: int64(binary.LittleEndian.Uint64(b[8:])),
		size:     int32(size &^ tombBit),
		tomb:     size&tombBit != 0,
	}
}
