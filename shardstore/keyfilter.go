package shardstore

import "hash/maphash"

// A shard's key filter answers "is this key certainly not in the key index?"
// without a Pebble read. It takes over from the key cache when the cache
// stops holding every key of the shard (cacheComplete turns false): the
// filter is then built from the cache's keys, which at that moment are all of
// the shard's keys, and every key written afterwards is added as its batch is
// applied (Store.mergeCache). A key it rules out is new to the shard, so an
// append writes it with no key index read. With more live keys than the key
// cache holds, every new key used to cost a SeekPrefixGE through every
// level's bloom filters: 15% of the broker's CPU with 10M live keys (README,
// "Many live keys").
//
// The filter is a Bloom filter that grows in parts (a scalable Bloom filter):
// keys go into the newest part; when it holds the keys it was sized for, a
// part twice as large is added. A lookup probes every part, one 64-byte block
// each (a blocked Bloom filter: all of a key's bits in one cache line), about
// 1% false positives per part. Keys removed from the index stay in the
// filter; they only make a later lookup of them read Pebble.
//
// A shard opened with keys (a restart, a snapshot ingest) has no filter: its
// cache is incomplete from the start, so nothing holds all of its keys to
// build one from, and its appends read the index as before. All filters
// together are bounded by half of KeyCacheBytes (Store.filterCap); a filter
// that would grow past it is dropped.
//
// keyFilter is guarded by its shard's mu.
type keyFilter struct {
	seed  maphash.Seed
	parts []filterPart
	bytes int64 // the parts' bits
}

type filterPart struct {
	blocks [][filterBlockWords]uint64
	keys   int // keys added to this part
	room   int // keys it was sized for
}

const (
	filterBitsPerKey  = 10
	filterProbes      = 7
	filterBlockWords  = 8 // 512 bits, one cache line
	filterBlockBits   = filterBlockWords * 64
	filterBlockMaxBit = filterBlockBits - 1
	filterMinPartRoom = 1024
	filterPartGrowth  = 2
	filterBlockBytes  = filterBlockWords * 8
)

// keyFilterPartBytes is the size of a part with room for n keys.
func keyFilterPartBytes(n int) int64 {
	return int64(filterBlocks(n)) * filterBlockBytes
}

func filterBlocks(n int) int {
	return (max(n, filterMinPartRoom)*filterBitsPerKey + filterBlockBits - 1) / filterBlockBits
}

// newKeyFilter returns a filter with room for n keys before it grows.
func newKeyFilter(n int) *keyFilter {
	f := &keyFilter{seed: maphash.MakeSeed()}
	f.addPart(max(n, filterMinPartRoom))
	return f
}

func (f *keyFilter) addPart(room int) int64 {
	b := keyFilterPartBytes(room)
	f.parts = append(f.parts, filterPart{blocks: make([][filterBlockWords]uint64, filterBlocks(room)), room: room})
	f.bytes += b
	return b
}

// full reports whether the newest part holds the keys it was sized for.
func (f *keyFilter) full() bool {
	last := &f.parts[len(f.parts)-1]
	return last.keys >= last.room
}

// nextPartBytes is the size of the part grow would add.
func (f *keyFilter) nextPartBytes() int64 {
	return keyFilterPartBytes(f.parts[len(f.parts)-1].room * filterPartGrowth)
}

// grow adds a part twice the size of the newest and returns its bytes.
func (f *keyFilter) grow() int64 {
	return f.addPart(f.parts[len(f.parts)-1].room * filterPartGrowth)
}

func (f *keyFilter) hash(key string) uint64 { return maphash.String(f.seed, key) }

// hashBytes is hash for a key as bytes (the same value).
func (f *keyFilter) hashBytes(key []byte) uint64 { return maphash.Bytes(f.seed, key) }

// block picks the part's block for hash h from its high 32 bits (a
// multiply-shift range reduction: any block count works).
func (p *filterPart) block(h uint64) *[filterBlockWords]uint64 {
	return &p.blocks[(h>>32)*uint64(len(p.blocks))>>32]
}

// probeStart gives the double hashing of a hash's filterProbes bits within
// its block, from its low 32 bits: bit i is (a + i*d) mod 512.
func probeStart(h uint64) (a, d uint32) { return uint32(h), uint32(h>>16) | 1 }

// mayContain is false only for a key (by its hash) that was never added.
func (f *keyFilter) mayContain(h uint64) bool {
	a, d := probeStart(h)
parts:
	for i := range f.parts {
		b := f.parts[i].block(h)
		for j := range uint32(filterProbes) {
			bit := (a + j*d) & filterBlockMaxBit
			if b[bit/64]&(1<<(bit%64)) == 0 {
				continue parts
			}
		}
		return true
	}
	return false
}

// add sets a key's bits (by its hash) in the newest part. The caller checks
// mayContain first (a key already in counts once) and grows a full filter.
func (f *keyFilter) add(h uint64) {
	last := &f.parts[len(f.parts)-1]
	b := last.block(h)
	a, d := probeStart(h)
	for j := range uint32(filterProbes) {
		bit := (a + j*d) & filterBlockMaxBit
		b[bit/64] |= 1 << (bit % 64)
	}
	last.keys++
}
