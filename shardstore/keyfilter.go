package shardstore

import (
	"errors"
	"hash/maphash"
	"log/slog"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

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
// A shard opened with keys (a restart, a snapshot ingest) gets its filter
// from a goroutine that scans its key index (the builder, below); until then
// its appends read the index. All filters together are bounded by half of
// KeyCacheBytes (Store.filterCap); a filter that would grow past it is
// dropped, and one that would not fit is not built.
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
	filterMinPartRoom = 256
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

// The builder gives a filter to each shard opened with keys (at Open, and
// after an Ingest reloads shards): it installs an empty filter as the shard's
// building, scans the shard's key index into it, and then makes it the
// shard's filter. Keys applied while it scans are added by mergeCache, so
// none is missed: a batch committed before the scan's iterator was opened is
// in what the iterator reads, and one committed after it is applied (Commit
// applies right after Pebble's commit) while building is installed.

// builderChunk is how many keys the builder adds per hold of the shard's mu.
const builderChunk = 1024

// filterBuildHook, set by tests before Open, runs on the builder once a
// scan's iterator is open.
var filterBuildHook func(*Store, ShardID)

func (s *Store) startFilterBuilder() {
	s.filterWake = make(chan struct{}, 1)
	s.bgDone.Add(1)
	go s.filterBuilder()
	s.wakeFilterBuilder()
}

// wakeFilterBuilder asks the builder to look for shards without a filter.
func (s *Store) wakeFilterBuilder() {
	select {
	case s.filterWake <- struct{}{}:
	default:
	}
}

func (s *Store) filterBuilder() {
	defer s.bgDone.Done()
	for {
		select {
		case <-s.bgStop:
			return
		case <-s.filterWake:
		}
		ids := s.shardsToFilter()
		if len(ids) == 0 {
			continue
		}
		start, built, keys := time.Now(), 0, 0
		for _, id := range ids {
			n, ok, more := s.buildFilter(id)
			if ok {
				built++
				keys += n
			}
			if !more {
				return
			}
		}
		s.log.Info("key filters built", slog.Int("shards", built), slog.Int("of_shards", len(ids)),
			slog.Int("keys", keys), slog.Int64("filter_bytes", s.filtered.Load()), slog.Duration("took", time.Since(start)))
	}
}

// needsFilter: the shard was opened with keys (so its cache never held them
// all) and has no filter, built or being built. sh.mu is held.
func (sh *shard) needsFilter() bool {
	return !sh.cacheComplete && sh.filter == nil && sh.building == nil && sh.st.LiveKeys+sh.st.Tombstones > 0
}

func (s *Store) shardsToFilter() []ShardID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []ShardID
	for id, sh := range s.shards {
		sh.mu.Lock()
		if sh.needsFilter() {
			ids = append(ids, id)
		}
		sh.mu.Unlock()
	}
	slices.Sort(ids)
	return ids
}

// buildFilter builds shard id's filter: the keys it scanned, whether the
// filter is the shard's now, and false for more once the store is closing.
func (s *Store) buildFilter(id ShardID) (keys int, ok, more bool) {
	sh := s.shard(id)
	if sh == nil {
		return 0, false, true
	}
	sh.mu.Lock()
	room := 2 * int(sh.st.LiveKeys+sh.st.Tombstones)
	if !sh.needsFilter() || s.filtered.Load()+keyFilterPartBytes(room) > s.filterCap {
		sh.mu.Unlock()
		return 0, false, true
	}
	f := newKeyFilter(room)
	s.filtered.Add(f.bytes)
	sh.building = f
	sh.mu.Unlock()

	keys, done, err := s.scanKeysInto(sh, f)
	sh.mu.Lock()
	if sh.building == f {
		sh.building = nil
		if done {
			sh.filter, ok = f, true
		} else {
			s.filtered.Add(-f.bytes)
		}
	}
	sh.mu.Unlock()
	if err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("key filter not built; the shard's appends read the key index", slog.Uint64("shard", uint64(id)), slog.Any("error", err))
	}
	select {
	case <-s.bgStop:
		return keys, ok, false
	default:
		return keys, ok, true
	}
}

// scanKeysInto adds every key of sh's key index to f, which is sh.building,
// builderChunk keys per hold of sh.mu. It returns the keys it read and
// whether it read them all into f: not if the store is closing, or f stopped
// being sh.building (the shard was reloaded or removed, or f outgrew the
// filters' bound).
func (s *Store) scanKeysInto(sh *shard, f *keyFilter) (int, bool, error) {
	if err := s.acquire(); err != nil {
		return 0, false, err
	}
	defer s.life.RUnlock()
	lower := sub(sh.id, subKey)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: sub(sh.id, subKey+1)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if filterBuildHook != nil {
		filterBuildHook(s, sh.id)
	}
	hashes := make([]uint64, 0, builderChunk)
	add := func() bool {
		select {
		case <-s.bgStop:
			return false
		default:
		}
		sh.mu.Lock()
		defer sh.mu.Unlock()
		for _, h := range hashes {
			if sh.building != f {
				return false
			}
			s.filterAdd(&sh.building, h)
		}
		hashes = hashes[:0]
		return sh.building == f
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		hashes = append(hashes, f.hashBytes(it.Key()[len(lower):]))
		n++
		if len(hashes) == builderChunk && !add() {
			return n, false, nil
		}
	}
	if err := it.Error(); err != nil {
		return n, false, err
	}
	return n, add(), nil
}
