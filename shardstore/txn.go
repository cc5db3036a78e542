package shardstore

// Transactions on a shard (docs/ARCHITECTURE.md rule 7). A transactional
// batch takes its offsets at once, so the produce response and idempotent
// retries have them, and its records are readable by offset (read_uncommitted),
// but the key index is left alone: each record is staged under
// n <producer id> <offset> and the producer's open transaction is noted under
// o <producer id> with its first offset. The last stable offset is the
// smallest such first offset (or the high watermark). EndTxn writes the
// marker at the next offset and then, on commit, makes each staged record its
// key's live record if its offset is above the live one's (else deletes it),
// or, on abort, deletes the staged records: aborted data never stays below
// the last stable offset, so readers need no list of aborted transactions.
// On a compacted shard the marker is also indexed under c <append ms> <offset>,
// and ExpireTxnMarkers removes it once delete.retention.ms has passed, so
// repeated transactions leave a bounded number of markers behind.

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// openTxn reports whether producer pid has an open transaction on p, and its
// first offset.
func (b *Batch) openTxn(p *pendingShard, pid int64) (int64, bool, error) {
	if first, ok := p.txns[pid]; ok {
		return first, first >= 0, nil
	}
	if p.fresh {
		return 0, false, nil
	}
	if first, ok := p.sh.committedTxn(pid); ok {
		return first, first >= 0, nil
	}
	first := int64(-1)
	v, closer, err := b.s.db.Get(openTxnKey(p.id, pid))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return 0, false, err
	default:
		ok := len(v) == 8
		if ok {
			first = int64(binary.BigEndian.Uint64(v))
		}
		closer.Close()
		if !ok {
			return 0, false, errCorrupt
		}
	}
	// Remembered in the overlay, so the commit publishes it to the shard's
	// cache, as Batch.producer does (with many partitions a batch holds a
	// record or two, and this read was a Pebble Get per batch).
	p.setTxn(pid, first)
	return first, first >= 0, nil
}

func (p *pendingShard) setTxn(pid, first int64) {
	if p.txns == nil {
		p.txns = make(map[int64]int64)
	}
	p.txns[pid] = first
}

// committedTxn returns the cached first offset of producer pid's open
// transaction on sh (-1 for none), if the cache knows it.
func (sh *shard) committedTxn(pid int64) (int64, bool) {
	if sh == nil {
		return 0, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	first, ok := sh.txns[pid]
	return first, ok
}

// mergeTxns publishes a committed batch's open-transaction changes and reads
// to sh's cache. sh.mu is held.
func mergeTxns(sh *shard, txns map[int64]int64) {
	for pid, first := range txns {
		if sh.txns == nil {
			sh.txns = make(map[int64]int64)
		}
		sh.txns[pid] = first
	}
}

// stagedEntry is the value of a staged record's entry: size:4 tomb:1 key.
func stagedEntry(size int32, tomb bool, key []byte) []byte {
	b := make([]byte, 0, 5+len(key))
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	if tomb {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, key...)
}

// appendStaged writes a transactional batch (the checks of Append passed).
func (b *Batch) appendStaged(p *pendingShard, opts AppendOptions, pr Producer, ps *producerState, recs []Record, open bool) AppendResult {
	id := p.id
	base := p.st.HighWatermark
	st := p.st
	if !open {
		b.set(openTxnKey(id, pr.ID), binary.BigEndian.AppendUint64(nil, uint64(base)))
		p.setTxn(pr.ID, base)
	}
	for i := range recs {
		r := &recs[i]
		off := base + int64(i)
		b.vbuf = appendRecord(b.vbuf[:0], r, opts.AppendTimeMs)
		size := int32(len(b.vbuf))
		b.kbuf = recordKeyInto(b.kbuf, id, off)
		b.set(b.kbuf, b.vbuf)
		st.LiveRecords++
		st.LiveBytes += int64(size)
		b.set(stagedKey(id, pr.ID, off), stagedEntry(size, r.Value == nil, r.Key))
		if r.Timestamp > st.MaxTimestamp {
			st.MaxTimestamp, st.MaxTimestampOffset = r.Timestamp, off
		}
	}
	st.HighWatermark += int64(len(recs))
	var next *producerState
	switch {
	case pr.BaseSequence >= 0:
		next = ps.add(pr, len(recs), base, opts.AppendTimeMs)
	case ps == nil || ps.epoch != pr.Epoch:
		// A coordinator's write has no sequence: only its epoch is kept, so
		// older epochs are refused.
		next = &producerState{epoch: pr.Epoch, lastMs: opts.AppendTimeMs}
	}
	if next != nil {
		if p.producers == nil {
			p.producers = make(map[int64]*producerState)
		}
		p.producers[pr.ID] = next
		b.set(producerKey(id, pr.ID), next.encode())
	}
	p.st = st
	p.dirty, p.changed = true, true
	p.due.add(dueRecords, opts.AppendTimeMs)
	b.appended += int64(len(recs))
	return AppendResult{BaseOffset: base, LogStartOffset: st.LogStartOffset}
}

// EndTxn writes m, the marker that ends producer m.ProducerID's transaction,
// at the shard's next offset and commits or aborts what the producer staged
// (see the file comment). A marker is written also when nothing was staged
// (Kafka marks every partition of the transaction). The marker's epoch
// becomes the producer's: a fenced producer's later batches are refused with
// ErrInvalidProducerEpoch. Errors: ErrUnknownShard, ErrInvalidProducerEpoch
// (a marker older than the producer's epoch), read errors; nothing is written
// then. It returns the marker's offset.
func (b *Batch) EndTxn(id ShardID, opts AppendOptions, m Marker) (int64, error) {
	p, err := b.need(id)
	if err != nil {
		return 0, err
	}
	if err := b.s.acquire(); err != nil {
		return 0, err
	}
	defer b.s.life.RUnlock()
	ps, err := b.producer(p, m.ProducerID)
	if err != nil {
		return 0, err
	}
	if ps != nil && m.ProducerEpoch < ps.epoch {
		return 0, ErrInvalidProducerEpoch
	}
	_, open, err := b.openTxn(p, m.ProducerID)
	if err != nil {
		return 0, err
	}
	type staged struct {
		offset int64
		size   int32
		tomb   bool
		key    []byte
	}
	var recs []staged
	if open {
		it, err := b.reader(p).NewIter(&pebble.IterOptions{
			LowerBound: stagedPrefix(id, m.ProducerID),
			UpperBound: stagedBound(id, m.ProducerID),
		})
		if err != nil {
			return 0, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			k, v := it.Key(), it.Value()
			if len(v) < 5 {
				it.Close()
				return 0, errCorrupt
			}
			recs = append(recs, staged{
				offset: unflip(binary.BigEndian.Uint64(k[len(k)-8:])),
				size:   int32(binary.BigEndian.Uint32(v)),
				tomb:   v[4] == 1,
				key:    append([]byte(nil), v[5:]...),
			})
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return 0, err
		}
	}
	// Look every key up before the first write, so nothing fails after it.
	compact := opts.Policy == PolicyCompact
	olds := make([]keyEntry, len(recs))
	found := make([]bool, len(recs))
	if m.Commit && compact {
		for i := range recs {
			if olds[i], found[i], err = b.lookupKey(p, recs[i].key); err != nil {
				return 0, err
			}
		}
	}

	if m.Commit && len(recs) > 0 {
		// The committed records' index entries hold the commit's append
		// time, which their records do not: a cache-only shard could not
		// rebuild them (cacheonly.go).
		p.needIndex()
	}
	st := p.st
	var run offsetRun // replaced records to delete (supersede)
	for i, r := range recs {
		b.del(stagedKey(id, m.ProducerID, r.offset))
		switch {
		case !m.Commit:
			b.kbuf = recordKeyInto(b.kbuf, id, r.offset)
			b.singleDelete(b.kbuf)
			st.LiveRecords--
			st.LiveBytes -= int64(r.size)
			b.replaced++
		case !compact:
		default:
			// The key's live record now, which an earlier staged record of
			// this same commit may have become.
			old, ok := olds[i], found[i]
			if ov, seen := p.keys[string(r.key)]; seen {
				old, ok = ov.e, ov.live
			}
			if ok && old.offset > r.offset {
				b.kbuf = recordKeyInto(b.kbuf, id, r.offset)
				b.singleDelete(b.kbuf)
				st.LiveRecords--
				st.LiveBytes -= int64(r.size)
				b.replaced++
				continue
			}
			if ok {
				b.supersede(p, &st, old, opts, &run)
			}
			e := keyEntry{offset: r.offset, appendMs: opts.AppendTimeMs, tomb: r.tomb, size: r.size}
			b.set(keyIndexKey(id, r.key), e.appendTo(nil))
			if e.tomb {
				b.setTimed(p, subTombstone, opts.AppendTimeMs, r.offset, sizedValue(e.size, r.key))
				st.Tombstones++
			} else {
				st.LiveKeys++
			}
			p.setKey(string(r.key), e, true)
		}
	}
	b.deleteRecords(id, run)
	if open {
		b.del(openTxnKey(id, m.ProducerID))
	}
	p.setTxn(m.ProducerID, -1)

	off := st.HighWatermark
	mr := Record{Offset: off, Timestamp: opts.AppendTimeMs, Marker: &m}
	b.vbuf = appendRecord(b.vbuf[:0], &mr, opts.AppendTimeMs)
	b.kbuf = recordKeyInto(b.kbuf, id, off)
	b.set(b.kbuf, b.vbuf)
	st.LiveRecords++
	st.LiveBytes += int64(len(b.vbuf))
	st.HighWatermark++
	if compact {
		// The transaction is settled in this same batch (its records are
		// live or deleted), so the marker only waits for delete.retention.ms
		// like a tombstone (ExpireTxnMarkers).
		b.setTimed(p, subMarker, opts.AppendTimeMs, off, sizedValue(int32(len(b.vbuf)), nil))
	}

	// The marker's epoch becomes the producer's (a fenced zombie's batches
	// are refused); its sequences start again.
	if ps == nil || ps.epoch != m.ProducerEpoch {
		next := &producerState{epoch: m.ProducerEpoch, lastMs: opts.AppendTimeMs}
		if p.producers == nil {
			p.producers = make(map[int64]*producerState)
		}
		p.producers[m.ProducerID] = next
		b.set(producerKey(id, m.ProducerID), next.encode())
	}
	p.st = st
	p.dirty, p.changed = true, true
	p.due.add(dueRecords, opts.AppendTimeMs)
	b.appended++
	return off, nil
}

// stagedBound bounds a producer's staged records.
func stagedBound(id ShardID, pid int64) []byte {
	if pid == math.MaxInt64 {
		return sub(id, subStaged+1)
	}
	return stagedPrefix(id, pid+1)
}

// OpenTxn reports whether producer pid has an open transaction in the shard.
func (s *Store) OpenTxn(id ShardID, pid int64) (bool, error) {
	if _, err := s.readView(id); err != nil {
		return false, err
	}
	defer s.life.RUnlock()
	_, closer, err := s.db.Get(openTxnKey(id, pid))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// StagedOffsets returns the offsets of the shard's staged records, each with
// its producer id: readers that load a shard's state (the group coordinator)
// leave them out until their transaction commits.
func (s *Store) StagedOffsets(id ShardID) (map[int64]int64, error) {
	if _, err := s.readView(id); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	return s.stagedOffsets(id)
}

// stagedOffsets is StagedOffsets for a caller that holds the store open (and
// for a shard not yet published: Open, Ingest).
func (s *Store) stagedOffsets(id ShardID) (map[int64]int64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subStaged), UpperBound: sub(id, subStaged+1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[int64]int64{}
	for ok := it.First(); ok; ok = it.Next() {
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindStaged {
			return nil, errCorrupt
		}
		out[pk.offset] = pk.id
	}
	return out, it.Error()
}

// LastStableOffset is the first offset of the oldest open transaction in the
// shard, or the high watermark when none is open (rule 7): read_committed
// readers stop there.
func (s *Store) LastStableOffset(id ShardID) (int64, error) {
	st, err := s.readView(id)
	if err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subOpenTxn), UpperBound: sub(id, subOpenTxn+1)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	lso := st.HighWatermark
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) != 8 {
			return 0, errCorrupt
		}
		lso = min(lso, int64(binary.BigEndian.Uint64(v)))
	}
	return lso, it.Error()
}
