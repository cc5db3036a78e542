package shardstore

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// A cache-only shard keeps its key index in its key cache alone: its appends
// write no k entries to Pebble. While the cache holds every key of a shard
// (cacheComplete), the k entries are read by nothing but the next Open, and
// writing one cost about 30% of a node's CPU per record: each is a full
// search of the memtable's skiplist, since the key's older entry sits right
// after where the new one goes, and the entries were half of what a flush
// wrote (profiles README, "Write path: the key index entry").
//
// The rules:
//   - A shard is created cache-only (unless KeyCacheBytes turns the cache
//     off). Its meta carries the flag (metaFlagCacheOnly), written in the same
//     batch as the records, so the state DB, which has no WAL and is
//     replayed from its flushed applied index, is consistent at every flush.
//   - Commit charges the batch's new keys to the key caches before the Pebble
//     commit (settleCacheOnly). When they do not fit, or an operation needs
//     the index in Pebble (a delete-policy append, a transaction's commit:
//     writeIndex), the same batch writes every key's entry and clears the
//     flag. From then on the shard is an indexed shard like any other, for
//     good: its cache may evict, and the key filter takes over.
//   - A cache-only shard's cache entries are never evicted.
//   - Open and a snapshot's Ingest rebuild a cache-only shard's cache from its
//     records (rebuildIndex): in offset order, the last record of a key wins;
//     a control marker, or a record staged by an open transaction, is no
//     key's record. If the keys do not fit in the cache budget, the shard is
//     indexed there and then.
//
// Why a transaction's commit ends it: a committed record's index entry holds
// the commit's append time (the tombstone index is keyed by it), while the
// record holds the time it was staged, so the records alone could not rebuild
// the entry.

// settleCacheOnly runs in Commit for each shard whose meta it writes: for a
// cache-only shard it charges the keys the batch adds to the key caches, or,
// when they do not fit or writeIndex is set, writes the shard's whole key
// index into the batch and ends cache-only.
func (b *Batch) settleCacheOnly(p *pendingShard) {
	if !p.cacheOnly {
		return
	}
	var cache map[string]keyEntry
	if !p.fresh && p.sh != nil {
		// Batches of a shard commit one at a time, so its cache is what
		// this batch was built on until apply merges it.
		p.sh.mu.Lock()
		defer p.sh.mu.Unlock()
		cache = p.sh.cache
	}
	if !p.writeIndex {
		var cost int64
		for k, ov := range p.keys {
			if _, had := cache[k]; ov.live && !had {
				cost += keyCacheCost(k)
			}
		}
		if cost == 0 {
			return
		}
		if b.s.cached.Add(cost) <= b.s.cacheCap {
			b.reserved += cost
			return
		}
		b.s.cached.Add(-cost)
	}
	entries := make([]string, 0, len(cache)+len(p.keys))
	for k := range cache {
		if _, changed := p.keys[k]; !changed {
			entries = append(entries, k)
		}
	}
	for k, ov := range p.keys {
		if ov.live {
			entries = append(entries, k)
		}
	}
	// In key order: each Set then lands next to the previous one in the
	// memtable's skiplist.
	slices.Sort(entries)
	for _, k := range entries {
		e, ok := p.keys[k]
		if !ok {
			e = ovEntry{e: cache[k], live: true}
		}
		b.kbuf = keyIndexKeyInto(b.kbuf, p.id, []byte(k))
		b.vbuf = e.e.appendTo(b.vbuf[:0])
		b.set(b.kbuf, b.vbuf)
	}
	p.cacheOnly, p.writeIndex = false, false
	p.dirty = true
	b.s.log.Debug("shard key index written to Pebble", "shard", p.id, "keys", len(entries))
}

// releaseReserved gives back what settleCacheOnly charged, after a failed
// commit.
func (b *Batch) releaseReserved() {
	b.s.cached.Add(-b.reserved)
	b.reserved = 0
}

// needIndex marks that the batch's operation on p needs the shard's key index
// in Pebble: Commit writes it and ends cache-only.
func (p *pendingShard) needIndex() {
	if p.cacheOnly {
		p.writeIndex = true
	}
}

// rebuildIndex reads the key index of cache-only shard id from its records:
// record key -> entry. keys is the live keys and tombstones its meta counts,
// which the result must match.
func (s *Store) rebuildIndex(id ShardID, keys int64) (map[string]keyEntry, error) {
	staged, err := s.stagedOffsets(id)
	if err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subRecord), UpperBound: recordsEnd(id)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	index := make(map[string]keyEntry, keys)
	for ok := it.First(); ok; ok = it.Next() {
		off := recordOffset(it.Key())
		if _, open := staged[off]; open {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		if len(v) < recordHeaderLen || v[1]&recFlagMarker != 0 {
			if len(v) < recordHeaderLen {
				return nil, fmt.Errorf("shardstore: record %d of shard %d: %w", off, id, errCorrupt)
			}
			continue
		}
		key, appendMs, err := recordKeyOf(v)
		if err != nil || v[1]&recFlagKeyNil != 0 {
			return nil, fmt.Errorf("shardstore: record %d of cache-only shard %d: no key: %w", off, id, errCorrupt)
		}
		index[string(key)] = keyEntry{offset: off, appendMs: appendMs, size: int32(len(v)), tomb: v[1]&recFlagValueNil != 0}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if int64(len(index)) != keys {
		return nil, fmt.Errorf("shardstore: cache-only shard %d: its records hold %d keys, its meta counts %d: %w", id, len(index), keys, errCorrupt)
	}
	return index, nil
}

// stagedOffsets returns the offsets of shard id's records staged by open
// transactions.
func (s *Store) stagedOffsets(id ShardID) (map[int64]struct{}, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subStaged), UpperBound: sub(id, subStaged+1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	staged := make(map[int64]struct{})
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		staged[unflip(binary.BigEndian.Uint64(k[len(k)-8:]))] = struct{}{}
	}
	return staged, it.Error()
}

// loadCacheOnlyShards runs loadCacheOnly for every cache-only shard of an
// opening store, on as many goroutines as there are CPUs: it is most of the
// time to serving after a restart (about 0.5 s for 1M keys on one CPU).
func (s *Store) loadCacheOnlyShards() error {
	work := make(chan *shard)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sh := range work {
				if err := s.loadCacheOnly(sh); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, sh := range s.shards {
		if sh.cacheOnly {
			work <- sh
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// loadCacheOnly gives cache-only shard sh (being opened or reloaded, not yet
// visible to batches) its key cache, rebuilt from its records. When the keys
// do not fit in the cache budget, it writes the index to Pebble and clears the
// flag instead: sh is then an indexed shard with an empty cache, whose key
// filter the builder makes. A crash before the state DB's next flush leaves
// the flag set, and the next Open rebuilds again.
func (s *Store) loadCacheOnly(sh *shard) error {
	index, err := s.rebuildIndex(sh.id, sh.st.LiveKeys+sh.st.Tombstones)
	if err != nil {
		return err
	}
	var cost int64
	for k := range index {
		cost += keyCacheCost(k)
	}
	if s.cached.Add(cost) <= s.cacheCap {
		sh.cache, sh.cacheBytes, sh.cacheComplete = index, cost, true
		return nil
	}
	s.cached.Add(-cost)
	keys := make([]string, 0, len(index))
	for k := range index {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pb := s.db.NewBatch()
	defer pb.Close()
	var kbuf, vbuf []byte
	for _, k := range keys {
		kbuf = keyIndexKeyInto(kbuf, sh.id, []byte(k))
		vbuf = index[k].appendTo(vbuf[:0])
		if err := pb.Set(kbuf, vbuf, nil); err != nil {
			return err
		}
	}
	if err := pb.Set(metaKey(sh.id), encodeMeta(sh.st, false), nil); err != nil {
		return err
	}
	if err := pb.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("shardstore: write key index of shard %d: %w", sh.id, err)
	}
	sh.cache, sh.cacheBytes, sh.cacheComplete, sh.cacheOnly = make(map[string]keyEntry), 0, sh.st.LiveKeys+sh.st.Tombstones == 0, false
	s.log.Info("shard key index written to Pebble: its keys do not fit in the key cache", "shard", sh.id, "keys", len(keys))
	return nil
}
