package shardstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

var errBatchDone = errors.New("shardstore: batch already committed or closed")

// Batch collects the writes of one or more Raft entries into one Pebble batch. A
// later operation in a batch sees the effects of earlier ones. Nothing is visible to
// readers until Commit.
//
// A Batch is not safe for concurrent use. Its operations see each other through
// an in-memory overlay per shard (counters, key index changes, producer state),
// so the write path never reads its own Pebble batch. The scans of the expiry
// operations and DeleteRecordsBefore do read it: when the shard already has
// writes in the batch, the batch is converted once into an indexed Pebble batch.
type Batch struct {
	s       *Store
	b       *pebble.Batch
	indexed bool
	done    bool
	err     error // first error of a write to the Pebble batch; returned by Commit
	pending map[ShardID]*pendingShard

	kbuf, vbuf []byte // scratch for keys and values copied into the Pebble batch
	offsets    []int  // Append's scratch: 0..n-1 (allOffsets)

	appended, replaced int64 // metrics, added on Commit
	// reserved is what Commit charged to the key caches for cache-only
	// shards before the Pebble commit (settleCacheOnly), given back if the
	// commit fails.
	reserved int64
}

// pendingShard is a shard as the batch sees it.
type pendingShard struct {
	id ShardID
	sh *shard // the store's shard when the batch first touched it, or nil

	exists  bool // the shard exists at this point of the batch
	fresh   bool // (re)created in this batch: nothing of it is in the database or cache
	removed bool // the batch deletes the store's shard sh
	dirty   bool // the Pebble batch holds writes in this shard's key range
	changed bool // Commit writes meta and wakes waiters
	// cacheOnly: the shard keeps its key index in its key cache only
	// (cacheonly.go), so the batch writes no k entries; writeIndex: an
	// operation needs the index in Pebble, and Commit writes it.
	cacheOnly  bool
	writeIndex bool
	// draining: the shard is writing its key index to Pebble a chunk per
	// batch (cacheonly.go); drain is what is left after this batch's
	// chunk, set once Commit wrote one (drained). charged: Commit charged
	// the batch's new keys to the key caches.
	draining  bool
	drained   bool
	drain     []string
	drainSort *drainSort
	charged   bool
	// newCost: what the keys the batch's Appends found in neither the batch
	// nor the key cache cost the cache; apply corrects the charge to what
	// mergeCache adds.
	newCost int64

	st        State
	group     uint32 // the shard's Raft group, when grouped (see shard.group)
	grouped   bool
	keys      map[string]ovEntry // key index changes made by the batch
	producers map[int64]*producerState
	// txns are open transactions changed by the batch: producer id -> first
	// offset, -1 once ended (txn.go).
	txns map[int64]int64
	// dead are offsets of records the batch deleted or never wrote (keys
	// repeated within an Append), for the shard's liveHint (livehint.go).
	dead deadRuns
	// due is what the batch added to the shard's expiry indexes (due.go).
	due dueAdds
}

// ovEntry is a key index change: the new entry, or live=false for a removal.
type ovEntry struct {
	e    keyEntry
	live bool
}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch {
	return &Batch{s: s, b: s.db.NewBatch(), pending: make(map[ShardID]*pendingShard)}
}

// pend returns the batch's view of shard id, creating it from the store's.
func (b *Batch) pend(id ShardID) *pendingShard {
	if p := b.pending[id]; p != nil {
		return p
	}
	p := &pendingShard{id: id, sh: b.s.shard(id)}
	if p.sh != nil {
		p.exists = true
		p.sh.mu.Lock()
		p.st = p.sh.st
		p.group, p.grouped = p.sh.group, p.sh.grouped
		p.cacheOnly, p.draining = p.sh.cacheOnly, p.sh.draining
		p.sh.mu.Unlock()
	}
	b.pending[id] = p
	return p
}

// need is pend for an operation on an existing shard.
func (b *Batch) need(id ShardID) (*pendingShard, error) {
	if b.done {
		return nil, errBatchDone
	}
	p := b.pend(id)
	if !p.exists {
		return nil, ErrUnknownShard
	}
	return p, nil
}

// reserveKeys sizes the batch's key index changes for n more keys before the
// first is set, so a large append does not grow the map step by step (on
// every replica, for every batch).
func (p *pendingShard) reserveKeys(n int) {
	if p.keys == nil {
		p.keys = make(map[string]ovEntry, n)
	}
}

func (p *pendingShard) setKey(key string, e keyEntry, live bool) {
	if p.keys == nil {
		p.keys = make(map[string]ovEntry)
	}
	p.keys[key] = ovEntry{e: e, live: live}
}

// Pebble batch writes. They fail only on a broken batch; the first error is kept
// and returned by Commit.
func (b *Batch) set(k, v []byte) {
	if b.done {
		b.err = errBatchDone
		return
	}
	if err := b.b.Set(k, v, nil); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *Batch) singleDelete(k []byte) {
	if err := b.b.SingleDelete(k, nil); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *Batch) deleteRange(start, end []byte) {
	if err := b.b.DeleteRange(start, end, nil); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *Batch) del(k []byte) {
	if err := b.b.Delete(k, nil); err != nil && b.err == nil {
		b.err = err
	}
}

// reader returns what scans of shard p must read: the database, or the batch
// merged over it once the batch holds writes of p.
func (b *Batch) reader(p *pendingShard) pebble.Reader {
	if !p.dirty {
		return b.s.db
	}
	if !b.indexed {
		nb := b.s.db.NewIndexedBatch()
		if err := nb.Apply(b.b, nil); err != nil {
			_ = nb.Close()
			if b.err == nil {
				b.err = err
			}
			return b.s.db
		}
		_ = b.b.Close()
		b.b, b.indexed = nb, true
	}
	return b.b
}

// CreateShard adds an empty shard carried by Raft group group, and records it in
// the group's registry (ErrShardExists).
func (b *Batch) CreateShard(id ShardID, group uint32) error {
	if b.done {
		return errBatchDone
	}
	p := b.pend(id)
	if p.exists {
		return ErrShardExists
	}
	b.set(groupShardKey(group, id), []byte{groupEntryVersion})
	p.exists, p.fresh, p.dirty, p.changed = true, true, true, true
	p.group, p.grouped = group, true
	p.st = State{MaxTimestamp: -1, MaxTimestampOffset: -1}
	p.keys, p.producers, p.txns, p.dead = nil, nil, nil, nil
	p.cacheOnly, p.writeIndex, p.draining = b.s.cacheCap > 0, false, false
	return nil
}

// DeleteShard removes a shard, all its keys and its group registry entry
// (ErrUnknownShard).
func (b *Batch) DeleteShard(id ShardID) error {
	p, err := b.need(id)
	if err != nil {
		return err
	}
	if err := b.b.DeleteRange(shardPrefix(id), shardEnd(id), nil); err != nil {
		return err
	}
	if p.grouped {
		b.del(groupShardKey(p.group, id))
	}
	p.grouped = false
	p.removed = p.removed || p.sh != nil
	p.exists, p.fresh, p.dirty, p.changed = false, false, false, true
	p.st = State{}
	p.keys, p.producers, p.txns, p.dead = nil, nil, nil, nil
	p.cacheOnly, p.writeIndex, p.draining = false, false, false
	return nil
}

// SetApplied records the last Raft index applied for a group, in this batch. It
// is a no-op on a committed or closed batch.
func (b *Batch) SetApplied(group uint32, index uint64) {
	if b.done {
		return
	}
	b.set(appliedKey(group), binary.BigEndian.AppendUint64(nil, index))
}

// DeleteApplied forgets the last Raft index applied for a group, in this
// batch: for a replica that leaves the group for good, so a later replica of
// the same group on this node starts from nothing. It is a no-op on a
// committed or closed batch.
func (b *Batch) DeleteApplied(group uint32) {
	if b.done {
		return
	}
	b.del(appliedKey(group))
}

// Len is the size of the Pebble batch so far, in bytes. Pebble refuses (panics
// on) a batch of 4 GiB; raftfsm commits a Raft batch in pieces well below it.
func (b *Batch) Len() int { return b.b.Len() }

// Raw is the Pebble batch, for raftfsm's metadata keys (outside shardstore's
// prefix) written atomically with the shards. The returned batch is valid until
// the next call of another Batch method (ExpireTombstones, ExpireSuperseded and
// DeleteRecordsBefore may replace it by an indexed copy) and never after Commit
// or Close: call Raw for each use and do not keep it.
func (b *Batch) Raw() *pebble.Batch { return b.b }

// Commit writes the batch without fsync (the Raft log is the durable record) and
// wakes Wait channels of the shards it changed. On error nothing is applied (the
// in-memory state is untouched) and the batch must be closed.
func (b *Batch) Commit() error {
	if b.done {
		return errBatchDone
	}
	if b.err != nil {
		return b.err
	}
	if err := b.s.acquire(); err != nil {
		return err
	}
	defer b.s.life.RUnlock()
	// The metas in shard order rather than the map's: each is a search of
	// Pebble's memtable skiplist, and one near the previous walks nodes
	// still in the CPU's cache. With thousands of shards in a batch this
	// cost 7% less CPU per record (profiles README, "An append's writes in
	// key order").
	var metas []ShardID
	for id, p := range b.pending {
		if p.exists && p.changed {
			metas = append(metas, id)
		}
	}
	slices.Sort(metas)
	var locked []*shard // cache-only shards' commitMu, in shard order
	defer func() {
		for _, sh := range locked {
			sh.commitMu.Unlock()
		}
	}()
	for _, id := range metas {
		p := b.pending[id]
		if p.cacheOnly && p.sh != nil && !p.fresh {
			p.sh.commitMu.Lock()
			locked = append(locked, p.sh)
		}
		b.settleCacheOnly(p)
		b.set(metaKey(id), encodeMeta(p.st, p.cacheOnly))
	}
	if b.err != nil {
		b.releaseReserved()
		return b.err
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		b.releaseReserved()
		return fmt.Errorf("shardstore: commit: %w", err)
	}
	b.done = true
	_ = b.b.Close()
	b.s.commits.Add(1)
	b.s.apply(b)
	return nil
}

// Close releases a batch that was not committed. Safe after Commit.
func (b *Batch) Close() {
	if b.done {
		return
	}
	b.done = true
	_ = b.b.Close()
}

// apply publishes a committed batch: counters, key caches, shard set, wakeups.
func (s *Store) apply(b *Batch) {
	var wake []chan struct{}
	s.mu.Lock()
	for id, p := range b.pending {
		if !p.changed {
			// ExpireProducers, and reads of producer state, change no meta.
			if sh := s.shards[id]; sh != nil && len(p.producers)+len(p.txns) > 0 {
				sh.mu.Lock()
				mergeProducers(sh, p.producers)
				mergeTxns(sh, p.txns)
				mergeDue(sh, p)
				sh.mu.Unlock()
			}
			continue
		}
		if p.removed {
			if old := s.shards[id]; old != nil {
				old.mu.Lock()
				s.dropCache(old)
				if old.wait != nil {
					wake = append(wake, old.wait)
					old.wait = nil
				}
				old.mu.Unlock()
				delete(s.shards, id)
			}
		}
		if !p.exists {
			continue
		}
		sh := s.shards[id]
		if sh == nil {
			sh = &shard{id: id, cache: newKeyTable(0), cacheComplete: true, due: emptyDue()}
			s.shards[id] = sh
		}
		sh.mu.Lock()
		mergeDue(sh, p) // before sh.st changes: it compares the two
		sh.st = p.st
		sh.hint.deleted(p.st.LogStartOffset, p.dead)
		sh.group, sh.grouped = p.group, p.grouped
		wasCacheOnly := sh.cacheOnly
		sh.cacheOnly, sh.draining = p.cacheOnly, p.draining
		if p.drained || !p.draining {
			sh.drain, sh.drainSort = p.drain, p.drainSort
		}
		if added := s.mergeCache(sh, p.keys, p.charged); p.charged {
			// Commit charged newCost; a key the batch also removed
			// (an expired tombstone) was charged and not added.
			s.cached.Add(added - p.newCost)
		}
		if wasCacheOnly && !sh.cacheOnly {
			// A drain lets the caches run over their bound (cacheonly.go).
			for s.cached.Load() > s.cacheCap && s.evictOne(sh) {
			}
		}
		mergeProducers(sh, p.producers)
		mergeTxns(sh, p.txns)
		if sh.wait != nil {
			wake = append(wake, sh.wait)
			sh.wait = nil
		}
		sh.mu.Unlock()
	}
	s.mu.Unlock()
	for _, c := range wake {
		close(c)
	}
	if s.metrics != nil {
		s.metrics.appended.Add(float64(b.appended))
		s.metrics.replaced.Add(float64(b.replaced))
	}
}

// keyCacheEntryOverhead is what one key cache entry (keytable.go) costs
// beyond its key's bytes, at worst: its record's entry and length (20 + 3),
// and its 8-byte slot at the table's lowest load, 3/8 (21.3). keyCacheCost
// adds a quarter of the key's length for the newest chunk's unused end (up
// to a sixteenth) and, for a key with a chunk of its own, the allocation's
// size-class rounding (up to 25% just above 32 KiB, where allocations round
// to 8 KiB pages) and the chunk's slice header (bigKeyOverhead).
// TestKeyCacheEntryCost checks it against measured memory.
const (
	keyCacheEntryOverhead = 44
	bigKeyOverhead        = 64
)

// keyCacheCost is what caching key is charged against KeyCacheBytes: 64
// bytes for a 16-byte key (128 with the Go map the cache was before).
func keyCacheCost(key string) int64 {
	n := int64(len(key))
	if n+entryBytes+3 > bigRecord {
		return n + n/4 + keyCacheEntryOverhead + bigKeyOverhead
	}
	return n + n/4 + keyCacheEntryOverhead
}

// mergeCache applies a batch's key index changes to sh's cache, evicting
// entries of sh while the store-wide byte bound would be exceeded; charged
// says Commit charged the new keys already (settleCacheOnly), and it returns
// what they cost then. sh.mu is held.
func (s *Store) mergeCache(sh *shard, keys map[string]ovEntry, charged bool) (added int64) {
	for k, ov := range keys {
		if !ov.live {
			s.uncache(sh, k)
			continue
		}
		// One probe for a key the cache has, the common case.
		if !sh.cache.update(k, ov.e) {
			cost := keyCacheCost(k)
			if charged {
				// Commit charged it (settleCacheOnly); a cache-only
				// shard evicts nothing.
				sh.cacheBytes += cost
				sh.cache.set(k, ov.e)
				added += cost
				continue
			}
			full := s.cached.Load()+cost > s.cacheCap
			if full && sh.admit() {
				for full && s.evictOne(sh) {
					full = s.cached.Load()+cost > s.cacheCap
				}
			}
			if full {
				s.spill(sh) // the cache will not hold k
			}
			if sh.filter != nil {
				s.filterAdd(&sh.filter, sh.filter.hash(k))
			}
			if sh.building != nil {
				s.filterAdd(&sh.building, sh.building.hash(k))
			}
			if full {
				continue
			}
			s.cached.Add(cost)
			sh.cacheBytes += cost
			sh.cache.set(k, ov.e)
		}
	}
	return added
}

// keyCacheAdmitEvery: once the key cache is full, one key in this many that
// it does not hold takes the place of another; the rest are not cached.
// Evicting for every new key cost a fifth of the write path's CPU with 10M
// live keys (map iteration and deletes in mergeCache), while with more keys
// than room, and keys written uniformly, what is cached decides the hit rate
// no more than how often it changes. Keys written often still get in, after
// a few writes on average (README, Benchmarks, "Many live keys").
const keyCacheAdmitEvery = 8

// admit reports whether a key the full cache does not hold may take another's
// place: one call in keyCacheAdmitEvery. sh.mu is held.
func (sh *shard) admit() bool {
	sh.admitCount++
	return sh.admitCount%keyCacheAdmitEvery == 0
}

// spill is called before sh's cache stops holding every key of the shard:
// while it still does, it builds the shard's key filter from the cache's keys
// (keyfilter.go), if the filters' bound has room. sh.mu is held.
func (s *Store) spill(sh *shard) {
	if !sh.cacheComplete {
		return
	}
	sh.cacheComplete = false
	room := 2 * sh.cache.len()
	if s.filtered.Load()+keyFilterPartBytes(room) > s.filterCap {
		return
	}
	f := newKeyFilter(room)
	sh.cache.each(func(k []byte, _ keyEntry) { f.add(f.hashBytes(k)) })
	sh.filter = f
	s.filtered.Add(f.bytes)
}

// filterAdd adds a key, by its hash under the filter's seed, to the filter
// in *slot (a shard's filter or building). A filter that would grow past the
// filters' bound is dropped: the shard's appends read the key index again.
// The shard's mu is held.
func (s *Store) filterAdd(slot **keyFilter, h uint64) {
	f := *slot
	if f.mayContain(h) {
		return
	}
	if f.full() {
		if next := f.nextPartBytes(); s.filtered.Load()+next > s.filterCap {
			s.dropFilter(slot)
			return
		}
		s.filtered.Add(f.grow())
	}
	f.add(h)
}

// dropFilter removes the filter in *slot and its charge. The shard's mu is
// held.
func (s *Store) dropFilter(slot **keyFilter) {
	if *slot != nil {
		s.filtered.Add(-(*slot).bytes)
		*slot = nil
	}
}

// uncache removes key from sh's cache and its charge, if the cache has it.
// sh.mu is held.
func (s *Store) uncache(sh *shard, key string) {
	if !sh.cache.delete(key) {
		return
	}
	cost := keyCacheCost(key)
	s.cached.Add(-cost)
	sh.cacheBytes -= cost
}

// evictOne drops an arbitrary entry of sh's cache; false if it is empty.
// sh.mu is held.
func (s *Store) evictOne(sh *shard) bool {
	k, ok := sh.cache.anyKey()
	if !ok {
		return false
	}
	s.spill(sh)
	s.uncache(sh, k)
	return true
}

// dropCache empties sh's cache (the shard is removed or reloaded). sh.mu is
// held.
func (s *Store) dropCache(sh *shard) {
	s.cached.Add(-sh.cacheBytes)
	sh.cache, sh.cacheBytes = nil, 0
	s.dropFilter(&sh.filter)
	s.dropFilter(&sh.building)
	sh.producers, sh.txns = nil, nil
	sh.due.reset()
}

// lookupKey finds key's live record through the batch overlay, the key cache,
// the key filter (a key it rules out has none) and then the key index in the
// database (which the batch has not changed for this key, or the overlay
// would know).
func (b *Batch) lookupKey(p *pendingShard, key []byte) (keyEntry, bool, error) {
	if ov, ok := p.keys[string(key)]; ok {
		return ov.e, ov.live, nil
	}
	if p.fresh || p.sh == nil || p.st.LiveKeys+p.st.Tombstones == 0 {
		return keyEntry{}, false, nil
	}
	p.sh.mu.Lock()
	e, ok := p.sh.cache.get(bytesView(key))
	known := ok || p.sh.cacheComplete || p.sh.filter != nil && !p.sh.filter.mayContain(p.sh.filter.hashBytes(key))
	p.sh.mu.Unlock()
	if known {
		return e, ok, nil
	}
	return b.getKey(p.id, key)
}

// getKey reads the key index in the database.
func (b *Batch) getKey(id ShardID, key []byte) (keyEntry, bool, error) {
	b.s.indexReads.Add(1)
	b.kbuf = keyIndexKeyInto(b.kbuf, id, key)
	return b.s.readKeyEntry(b.kbuf)
}

// lookupBatchMin is how many key index reads an append needs before it makes
// them with one iterator (getKeys) instead of a Get each.
const lookupBatchMin = 8

// getKeys reads the key index entries of n keys of shard id, given in
// ascending order by key(i), with one Pebble iterator, and calls found for
// each that has one. A Get builds an iterator over every level for one key
// (most of its cost with more live keys than the key cache holds); one
// iterator seeking forward through sorted keys opens each table once and
// moves on within it. SeekPrefixGE (the whole key is the prefix, Pebble's
// default Split) still consults each table's bloom filter, so a new key
// costs no data block reads.
func (b *Batch) getKeys(id ShardID, n int, key func(i int) []byte, found func(i int, e keyEntry)) error {
	b.s.indexReads.Add(int64(n))
	it, err := b.s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subKey), UpperBound: sub(id, subKey+1)})
	if err != nil {
		return err
	}
	for i := range n {
		b.kbuf = keyIndexKeyInto(b.kbuf, id, key(i))
		if !it.SeekPrefixGE(b.kbuf) || !bytes.Equal(it.Key(), b.kbuf) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		e, err := decodeKeyEntry(v)
		if err != nil {
			_ = it.Close()
			return err
		}
		found(i, e)
	}
	return it.Close()
}

// producer returns the producer's state on shard p (nil if unknown).
func (b *Batch) producer(p *pendingShard, pid int64) (*producerState, error) {
	if ps, ok := p.producers[pid]; ok {
		return ps, nil
	}
	if p.fresh {
		return nil, nil
	}
	if ps, ok := p.sh.committedProducer(pid); ok {
		return ps, nil
	}
	v, closer, err := b.s.db.Get(producerKey(p.id, pid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	ps, err := decodeProducer(v)
	if err != nil {
		return nil, err
	}
	// Remembered in the overlay, so the commit publishes it to the shard's
	// producer cache (batches of a shard are applied one at a time, so it
	// is still the committed state then, or replaced by this batch's own).
	if p.producers == nil {
		p.producers = make(map[int64]*producerState)
	}
	p.producers[pid] = ps
	return ps, nil
}

// committedProducer returns the shard's cached committed state of producer
// pid; ok is false when the cache does not know it (sh may be nil).
func (sh *shard) committedProducer(pid int64) (*producerState, bool) {
	if sh == nil {
		return nil, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ps, ok := sh.producers[pid]
	return ps, ok
}

// mergeProducers publishes a committed batch's producer states to sh's cache;
// a nil state (forgotten by ExpireProducers) leaves it. sh.mu is held.
func mergeProducers(sh *shard, producers map[int64]*producerState) {
	for pid, ps := range producers {
		if ps == nil {
			delete(sh.producers, pid)
			continue
		}
		if sh.producers == nil {
			sh.producers = make(map[int64]*producerState)
		}
		sh.producers[pid] = ps
	}
}
