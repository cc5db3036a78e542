package shardstore

import (
	"slices"
	"strings"
)

// Append assigns the next offsets to recs in order and writes them. Under
// PolicyCompact every key's previous record is removed (or kept until
// MinCompactionLagMs passes), and records that repeat a key inside recs collapse
// to the last one (offsets stay dense: the collapsed records' offsets are simply
// never readable). Idempotent producers follow Kafka's sequence rules; a duplicate
// returns the original base offset with Duplicate set and writes nothing.
//
// Errors (ErrUnknownShard, ErrEmptyBatch, ErrKeyRequired, ErrOutOfOrderSequence,
// ErrInvalidProducerEpoch, or a read error of the key index) leave the batch as
// it was before the call: everything is checked and looked up before the first
// write.
func (b *Batch) Append(id ShardID, opts AppendOptions, pr Producer, recs []Record) (AppendResult, error) {
	p, err := b.need(id)
	if err != nil {
		return AppendResult{}, err
	}
	if len(recs) == 0 {
		return AppendResult{}, ErrEmptyBatch
	}
	compact := opts.Policy == PolicyCompact
	if compact {
		for i := range recs {
			if recs[i].Key == nil {
				return AppendResult{}, ErrKeyRequired
			}
		}
	}
	if err := b.s.acquire(); err != nil {
		return AppendResult{}, err
	}
	defer b.s.life.RUnlock()

	var ps *producerState
	if pr.ID >= 0 {
		if ps, err = b.producer(p, pr.ID); err != nil {
			return AppendResult{}, err
		}
		if pr.Transactional && pr.BaseSequence < 0 {
			// A coordinator's write for the producer (TxnOffsetCommit): no
			// sequence, only the epoch is checked (Kafka's coordinator
			// origin).
			if ps != nil && pr.Epoch < ps.epoch {
				return AppendResult{}, ErrInvalidProducerEpoch
			}
			_, open, err := b.openTxn(p, pr.ID)
			if err != nil {
				return AppendResult{}, err
			}
			return b.appendStaged(p, opts, pr, ps, recs, open), nil
		}
		dupBase, dup, err := ps.check(pr, len(recs))
		if err != nil {
			return AppendResult{}, err
		}
		if dup {
			return AppendResult{BaseOffset: dupBase, LogStartOffset: p.st.LogStartOffset, Duplicate: true}, nil
		}
		_, open, err := b.openTxn(p, pr.ID)
		if err != nil {
			return AppendResult{}, err
		}
		if open && !pr.Transactional {
			return AppendResult{}, ErrInvalidTxnState
		}
		if pr.Transactional {
			return b.appendStaged(p, opts, pr, ps, recs, open), nil
		}
	}

	var res resolved
	if compact {
		if res, err = b.resolve(p, recs); err != nil {
			return AppendResult{}, err
		}
		p.newCost += res.newCost
	}

	// Nothing can fail from here on.
	//
	// The writes go in the order of their kinds' keys in the shard's span
	// (keys.go): key index entries, producer state, deletes of replaced
	// records, the new records at consecutive offsets, then tombstones' timed
	// entries. Pebble inserts a batch into its memtable skiplist key by key.
	// It skips the search from the top only for a key that lands right after
	// the previous one with nothing between: the new records do, and so do the
	// deletes of records at consecutive offsets that have left the memtable (a
	// key set rewritten in the order it was written). Every other key is a
	// search, and a search near the previous one walks skiplist nodes still in
	// the CPU's cache. Against the order before (the records, then each index
	// entry and delete interleaved) it costs less CPU per record, with 4
	// partitions and with 10,000 (profiles README, "An append's writes in key
	// order"). The index entries hold the records' sizes, so recordSize
	// computes them before the records are encoded.
	base := p.st.HighWatermark
	st := p.st
	appendMs := opts.AppendTimeMs
	for i := range recs {
		if recs[i].Timestamp > st.MaxTimestamp {
			st.MaxTimestamp, st.MaxTimestampOffset = recs[i].Timestamp, base+int64(i)
		}
	}
	kept := res.kept
	if !compact {
		kept = b.allOffsets(len(recs))
		// A cache-only shard's records must all be keyed records of the
		// index (cacheonly.go).
		p.needIndex()
	}
	if compact {
		p.reserveKeys(len(kept))
		for j, i := range kept {
			r := &recs[i]
			e := keyEntry{offset: base + int64(i), appendMs: appendMs, tomb: r.Value == nil, size: recordSize(r)}
			if !p.cacheOnly || p.draining {
				b.kbuf = keyIndexKeyInto(b.kbuf, id, r.Key)
				b.vbuf = e.appendTo(b.vbuf[:0])
				b.set(b.kbuf, b.vbuf)
			}
			p.setKey(res.keys[j], e, true)
		}
	}
	if pr.ID >= 0 {
		next := ps.add(pr, len(recs), base, appendMs)
		if p.producers == nil {
			p.producers = make(map[int64]*producerState)
		}
		p.producers[pr.ID] = next
		b.set(producerKey(id, pr.ID), next.encode())
	}
	if compact {
		var run offsetRun
		for j := range kept {
			if res.found[j] {
				b.supersede(p, &st, res.olds[j], opts, &run)
			}
		}
		b.deleteRecords(id, run)
	}
	for _, i := range kept {
		b.vbuf = appendRecord(b.vbuf[:0], &recs[i], appendMs)
		b.kbuf = recordKeyInto(b.kbuf, id, base+int64(i))
		b.set(b.kbuf, b.vbuf)
		st.LiveRecords++
		st.LiveBytes += int64(len(b.vbuf))
	}
	if compact {
		for _, i := range kept {
			r := &recs[i]
			if r.Value == nil {
				b.setTimed(p, subTombstone, appendMs, base+int64(i), sizedValue(recordSize(r), r.Key))
				st.Tombstones++
			} else {
				st.LiveKeys++
			}
		}
		b.replaced += int64(len(recs) - len(kept))
		if len(kept) < len(recs) {
			// The offsets of repeated keys' earlier records are never readable.
			j := 0
			for i := range recs {
				if j < len(kept) && kept[j] == i {
					j++
					continue
				}
				p.dead.add(base + int64(i))
			}
		}
	}
	st.HighWatermark += int64(len(recs))

	p.st = st
	p.dirty, p.changed = true, true
	p.due.add(dueRecords, appendMs)
	b.appended += int64(len(recs))
	return AppendResult{BaseOffset: base, LogStartOffset: st.LogStartOffset}, nil
}

// supersede retires old, the live record of a key that a new record replaces:
// it is deleted, or held (readable) while younger than MinCompactionLagMs.
// The delete joins run when old follows it; otherwise run's records are
// deleted first and old starts a new run.
func (b *Batch) supersede(p *pendingShard, st *State, old keyEntry, opts AppendOptions, run *offsetRun) {
	if opts.MinCompactionLagMs > 0 && opts.AppendTimeMs-old.appendMs < opts.MinCompactionLagMs {
		b.setTimed(p, subSuperseded, old.appendMs, old.offset, sizedValue(old.size, nil))
	} else {
		if run.end != old.offset || run.end == run.start {
			b.deleteRecords(p.id, *run)
			*run = offsetRun{start: old.offset}
		}
		run.end = old.offset + 1
		p.dead.add(old.offset)
		st.LiveRecords--
		st.LiveBytes -= int64(old.size)
		b.replaced++
	}
	if old.tomb {
		b.singleDelete(tombstoneKey(p.id, old.appendMs, old.offset))
		st.Tombstones--
	} else {
		st.LiveKeys--
	}
}

// minRangeDelete is the shortest run of replaced records deleted with one
// range deletion rather than a SingleDelete each. A SingleDelete of a record
// still in the memtable is a search of the memtable's skiplist from the top
// (the record's own entry lies between it and the next one), the biggest cost
// of applying a replacing record; a key set rewritten in the order it was
// written replaces runs of consecutive offsets. A range deletion goes into the
// memtable's separate range-deletion list instead. Each one, though, makes
// the next iterator or Get over the memtable re-fragment that whole list
// (Pebble's keySpanCache: about 40 µs plus 45 ns per range deletion measured),
// so a run must be long for its deletion to pay: at 256 a memtable holds at
// most one per 256 records it took, and shorter runs keep their SingleDeletes
// (profiles README, "Write path: replaced records deleted by range").
const minRangeDelete = 256

// offsetRun is the offsets [start, end) of records to delete.
type offsetRun struct{ start, end int64 }

// deleteRecords deletes the records of shard id at the offsets of run: one
// range deletion for a run of minRangeDelete or more, else a SingleDelete
// each. Every offset in a run holds a record the append replaced, so the
// range covers nothing else.
func (b *Batch) deleteRecords(id ShardID, run offsetRun) {
	if run.end-run.start >= minRangeDelete {
		b.deleteRange(recordKey(id, run.start), recordKey(id, run.end))
		return
	}
	for o := run.start; o < run.end; o++ {
		b.kbuf = recordKeyInto(b.kbuf, id, o)
		b.singleDelete(b.kbuf)
	}
}

// resolved is the plan of a compacted Append: which records are written (the
// last of each key, in offset order) and the live record each one replaces.
type resolved struct {
	kept  []int      // indexes into recs
	keys  []string   // kept records' keys
	olds  []keyEntry // the key's live record before the Append ...
	found []bool     // ... if it has one
	// newCost is what the kept keys that neither the batch nor the key
	// cache has would cost the cache (keyCacheCost), for a cache-only
	// shard's Commit (settleCacheOnly).
	newCost int64
}

// resolve collapses repeated keys and looks up the live record of every kept key:
// batch overlay and key cache first (one lock for the whole Append), a key the
// shard's key filter rules out is new, then the key index in Pebble for the
// rest (a Get each, or one iterator for lookupBatchMin or more).
func (b *Batch) resolve(p *pendingShard, recs []Record) (resolved, error) {
	n := len(recs)
	var res resolved
	if n == 1 {
		res.kept = []int{0}
		res.keys = []string{string(recs[0].Key)}
	} else {
		seen := make(map[string]struct{}, n)
		res.kept = make([]int, 0, n)
		res.keys = make([]string, 0, n)
		for i := n - 1; i >= 0; i-- {
			if _, dup := seen[string(recs[i].Key)]; dup {
				continue
			}
			k := string(recs[i].Key)
			seen[k] = struct{}{}
			res.kept = append(res.kept, i)
			res.keys = append(res.keys, k)
		}
		for l, r := 0, len(res.kept)-1; l < r; l, r = l+1, r-1 {
			res.kept[l], res.kept[r] = res.kept[r], res.kept[l]
			res.keys[l], res.keys[r] = res.keys[r], res.keys[l]
		}
	}
	res.olds = make([]keyEntry, len(res.kept))
	res.found = make([]bool, len(res.kept))
	if p.fresh && len(p.keys) == 0 {
		for _, k := range res.keys {
			res.newCost += keyCacheCost(k)
		}
		return res, nil
	}
	var miss []int
	useCache := !p.fresh && p.sh != nil && p.st.LiveKeys+p.st.Tombstones > 0
	if useCache {
		p.sh.mu.Lock()
	}
	for j, k := range res.keys {
		if ov, ok := p.keys[k]; ok {
			res.olds[j], res.found[j] = ov.e, ov.live
			continue
		}
		if !useCache {
			res.newCost += keyCacheCost(k)
			continue
		}
		if e, ok := p.sh.cache.get(k); ok {
			res.olds[j], res.found[j] = e, true
			continue
		}
		res.newCost += keyCacheCost(k)
		if !p.sh.cacheComplete && (p.sh.filter == nil || p.sh.filter.mayContain(p.sh.filter.hash(k))) {
			miss = append(miss, j)
		}
	}
	if useCache {
		p.sh.mu.Unlock()
	}
	if len(miss) < lookupBatchMin {
		for _, j := range miss {
			e, ok, err := b.getKey(p.id, recs[res.kept[j]].Key)
			if err != nil {
				return resolved{}, err
			}
			res.olds[j], res.found[j] = e, ok
		}
		return res, nil
	}
	slices.SortFunc(miss, func(x, y int) int { return strings.Compare(res.keys[x], res.keys[y]) })
	err := b.getKeys(p.id, len(miss),
		func(i int) []byte { return recs[res.kept[miss[i]]].Key },
		func(i int, e keyEntry) { res.olds[miss[i]], res.found[miss[i]] = e, true })
	if err != nil {
		return resolved{}, err
	}
	return res, nil
}

// allOffsets returns 0..n-1, the indexes of every record of an append that
// keeps them all (a delete-policy shard).
func (b *Batch) allOffsets(n int) []int {
	for len(b.offsets) < n {
		b.offsets = append(b.offsets, len(b.offsets))
	}
	return b.offsets[:n]
}
