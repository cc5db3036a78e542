package shardstore

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
//     commit (settleCacheOnly). Once the caches would pass half their bound,
//     the shard writes its index to Pebble over its next batches (a drain),
//     and the batch that writes the last of it clears the flag. An operation
//     that needs the index in Pebble at once (a delete-policy append, a
//     transaction's commit: writeIndex) writes all of it in its own batch.
//     From then on the shard is an indexed shard like any other, for good:
//     its cache may evict, and the key filter takes over.
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

// settleCacheOnly runs in Commit for each shard whose meta it writes. For a
// cache-only shard:
//   - writeIndex set: it writes the shard's whole key index into the batch and
//     ends cache-only;
//   - else it charges the keys the batch adds to the key caches. When that
//     takes them past 1/drainAt of their bound, the shard starts draining:
//     this batch and each later one write their own keys' entries and a
//     chunk of the older ones (drainChunk), and the batch that writes the
//     last chunk ends cache-only.
//
// Why a drain, and why from half the bound: writing the whole index in the
// batch that filled the cache held the shard's Raft group for tens of
// milliseconds per 100k keys, in every shard at about the same time, and
// doubled a produce's p99 (182 against 62 ms with 1M keys over a 48 MiB
// cache); a drain that wrote 4 old entries per new key still did (124
// against 60 ms). One per new key from half the bound costs a record at most
// two index entries while it lasts, and ends as the caches reach their
// bound, so they do not run over it. (Open keeps up to the whole bound
// cache-only; a drain from there may run over, and its last batch evicts
// back under it.)
//
// A drain keeps the flag set until its last chunk, so a crash in between opens
// the shard cache-only again and any entries written so far are left: they
// are never read while the flag is set, and a later drain, or Open writing
// the index, rewrites every live key's entry. A removed key's entry is
// deleted whatever the shard's state (expire.go).
func (b *Batch) settleCacheOnly(p *pendingShard) {
	if !p.cacheOnly {
		return
	}
	// The common case, without the shard's lock. A failed check leaves its
	// charge in place: the drain that starts below keeps it.
	cost := p.newCost
	if !p.writeIndex && !p.draining && (cost == 0 || b.s.cached.Add(cost) <= b.s.cacheCap/drainAt) {
		b.reserved += cost
		p.charged = true
		return
	}
	var cache *keyTable
	if !p.fresh && p.sh != nil {
		// Batches of a shard commit one at a time, so its cache is what
		// this batch was built on until apply merges it.
		p.sh.mu.Lock()
		defer p.sh.mu.Unlock()
		cache = p.sh.cache
	}
	if p.writeIndex {
		b.writeIndex(p, cache)
		return
	}
	if !p.draining {
		// Start draining: this batch's Appends wrote no entries.
		p.draining = true
		b.setEntries(p, sortedLiveKeys(p.keys), cache)
		keys := make([]string, 0, cache.len())
		cache.each(func(k []byte, _ keyEntry) {
			if _, changed := p.keys[string(k)]; !changed {
				keys = append(keys, string(k))
			}
		})
		if len(keys) <= b.s.drainSortAside {
			slices.Sort(keys)
			p.drain = keys
		} else {
			p.drain, p.drainSort = nil, startDrainSort(keys)
		}
		b.s.log.Debug("shard key index: drain to Pebble started", "shard", p.id, "keys", len(keys))
	} else {
		b.s.cached.Add(cost)
		p.drain, p.drainSort = p.sh.drain, p.sh.drainSort
		if p.drainSort != nil && p.drainSort.done.Load() {
			p.drain, p.drainSort = p.drainSort.keys, nil
		}
	}
	b.reserved += cost
	p.charged = true
	n := min(len(p.drain), drainChunk(b.s.drainMin, len(p.keys)))
	b.setEntries(p, p.drain[:n], cache)
	p.drain, p.drained = p.drain[n:], true
	if len(p.drain) == 0 && p.drainSort == nil {
		p.cacheOnly, p.draining, p.drain = false, false, nil
		b.s.log.Debug("shard key index: drain to Pebble done", "shard", p.id)
	}
	p.dirty = true
}

// drainSort is a drain's list of keys, sorted by a goroutine of its own.
//
// A drain writes the old entries in key order, so each chunk continues where
// the last one ended: Pebble's memtable inserts a key that lands right after
// the previous insert without a search from the top. With each chunk sorted
// on its own (keys from all over the index), every entry was a search: with
// keys written once, in order, the memtable insert took 3x the CPU of the
// build that wrote every entry as it came (profiles README). Sorting the
// whole list in the batch that starts the drain held the shard's Raft group
// for tens of milliseconds (p99 76 against 60 ms, 1M keys written once), so
// a list longer than drainSortAside is sorted aside, and the drain's batches
// write only their own keys until it is done.
type drainSort struct {
	keys []string // the goroutine's until done
	done atomic.Bool
}

func startDrainSort(keys []string) *drainSort {
	d := &drainSort{keys: keys}
	go func() {
		slices.Sort(d.keys)
		d.done.Store(true)
	}()
	return d
}

// drainMinChunk is the fewest old entries a draining shard's batch writes;
// each batch also writes drainPerKey per key it changes, so a drain ends
// before the keys added meanwhile outnumber those it started with. drainAt:
// a drain starts once the caches pass 1/drainAt of their bound.
const (
	drainMinChunk = 256
	drainPerKey   = 1
	drainAt       = 2
	// drainSortAside: a drain's list up to this long is sorted in the
	// batch that starts it (about 2 ms).
	drainSortAside = 16384
)

// drainChunk is how many old entries a batch that changes keys keys writes.
func drainChunk(least, keys int) int { return least + drainPerKey*keys }

// sortedLiveKeys returns the keys the batch set live, in order.
func sortedLiveKeys(keys map[string]ovEntry) []string {
	out := make([]string, 0, len(keys))
	for k, ov := range keys {
		if ov.live {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// setEntries writes the key index entries of keys (in the given order): the
// batch's own entry for a key it changed, else the cache's. A key neither has
// live is skipped.
func (b *Batch) setEntries(p *pendingShard, keys []string, cache *keyTable) {
	for _, k := range keys {
		var e keyEntry
		if ov, changed := p.keys[k]; changed {
			if !ov.live {
				continue
			}
			e = ov.e
		} else if ce, ok := cache.get(k); ok {
			e = ce
		} else {
			continue
		}
		b.kbuf = keyIndexKeyInto(b.kbuf, p.id, []byte(k))
		b.vbuf = e.appendTo(b.vbuf[:0])
		b.set(b.kbuf, b.vbuf)
	}
}

// writeIndex writes shard p's whole key index into the batch, in key order,
// and ends cache-only (a drain in progress with it). The batch's new keys
// are charged by apply, as for any indexed shard.
func (b *Batch) writeIndex(p *pendingShard, cache *keyTable) {
	keys := make([]string, 0, cache.len()+len(p.keys))
	cache.each(func(k []byte, _ keyEntry) {
		if _, changed := p.keys[string(k)]; !changed {
			keys = append(keys, string(k))
		}
	})
	for k, ov := range p.keys {
		if ov.live {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b.setEntries(p, keys, cache)
	p.cacheOnly, p.writeIndex, p.draining, p.drain, p.drainSort = false, false, false, nil, nil
	p.dirty = true
	b.s.log.Debug("shard key index written to Pebble", "shard", p.id, "keys", len(keys))
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
func (s *Store) rebuildIndex(id ShardID, keys int64) (*keyTable, error) {
	staged, err := s.stagedOffsets(id)
	if err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subRecord), UpperBound: recordsEnd(id)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	index := newKeyTable(int(min(keys, maxPresize)))
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
		index.set(bytesView(key), keyEntry{offset: off, appendMs: appendMs, size: int32(len(v)), tomb: v[1]&recFlagValueNil != 0})
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if int64(index.len()) != keys {
		return nil, fmt.Errorf("shardstore: cache-only shard %d: its records hold %d keys, its meta counts %d: %w", id, index.len(), keys, errCorrupt)
	}
	return index, nil
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
	index.each(func(k []byte, _ keyEntry) { cost += keyCacheCost(bytesView(k)) })
	if s.cached.Add(cost) <= s.cacheCap {
		sh.cache, sh.cacheBytes, sh.cacheComplete = index, cost, true
		return nil
	}
	s.cached.Add(-cost)
	type indexed struct {
		key string
		e   keyEntry
	}
	keys := make([]indexed, 0, index.len())
	index.each(func(k []byte, e keyEntry) { keys = append(keys, indexed{string(k), e}) })
	slices.SortFunc(keys, func(a, b indexed) int { return strings.Compare(a.key, b.key) })
	pb := s.db.NewBatch()
	defer pb.Close()
	var kbuf, vbuf []byte
	for _, k := range keys {
		kbuf = keyIndexKeyInto(kbuf, sh.id, []byte(k.key))
		vbuf = k.e.appendTo(vbuf[:0])
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
	sh.cache, sh.cacheBytes, sh.cacheComplete, sh.cacheOnly = newKeyTable(0), 0, sh.st.LiveKeys+sh.st.Tombstones == 0, false
	s.log.Info("shard key index written to Pebble: its keys do not fit in the key cache", "shard", sh.id, "keys", len(keys))
	return nil
}
