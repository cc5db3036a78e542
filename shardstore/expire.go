package shardstore

import (
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Removal of records: tombstone and transaction marker expiry
// (delete.retention.ms), the end of the hold
// on superseded records (min.compaction.lag.ms) and moves of the log start
// (DeleteRecords, retention of delete-policy shards); and of idle producers'
// state (producer.id.expiration.ms). Each is a scan of a small index range,
// run from the Raft FSM like appends, so every replica removes the same
// records.

// timedEntry is a tombstone or superseded index entry.
type timedEntry struct {
	ms, offset int64
	size       int32
	key        []byte // tombstones only
}

// scanTimed lists the tag entries of shard p appended before beforeMs.
func (b *Batch) scanTimed(p *pendingShard, tag byte, beforeMs int64) ([]timedEntry, error) {
	it, err := b.reader(p).NewIter(&pebble.IterOptions{
		LowerBound: sub(p.id, tag),
		UpperBound: timedBound(p.id, tag, beforeMs),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []timedEntry
	for ok := it.First(); ok; ok = it.Next() {
		pk, good := parseKey(it.Key())
		if !good {
			return nil, fmt.Errorf("shardstore: index key %x: %w", it.Key(), errCorrupt)
		}
		size, key, err := decodeSizedValue(it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, timedEntry{ms: pk.ms, offset: pk.offset, size: size, key: append([]byte(nil), key...)})
	}
	return out, it.Error()
}

// ExpireTombstones removes tombstones appended before beforeMs (their keys become
// absent) and returns how many it removed.
func (b *Batch) ExpireTombstones(id ShardID, beforeMs int64) (int, error) {
	p, err := b.need(id)
	if err != nil || p.st.Tombstones == 0 {
		return 0, err
	}
	if err := b.s.acquire(); err != nil {
		return 0, err
	}
	defer b.s.life.RUnlock()
	ents, err := b.scanTimed(p, subTombstone, beforeMs)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		b.singleDelete(recordKey(id, e.offset))
		b.singleDelete(tombstoneKey(id, e.ms, e.offset))
		// Also on a cache-only shard: an entry left by an unfinished drain
		// (cacheonly.go) must not outlive its key.
		b.del(keyIndexKey(id, e.key))
		p.setKey(string(e.key), keyEntry{}, false)
		p.st.Tombstones--
		p.st.LiveRecords--
		p.st.LiveBytes -= int64(e.size)
	}
	if len(ents) > 0 {
		p.dirty, p.changed = true, true
	}
	return len(ents), nil
}

// ExpireTxnMarkers removes the transaction markers of a compacted shard that
// were appended before beforeMs (the compaction policy passes now -
// delete.retention.ms) and returns how many it removed. A marker settles its
// transaction in the batch that writes it (rule 7: the staged records become
// live or are deleted at once), so what Kafka's cleaner waits for, the
// transaction's data being gone, holds from the start and only the retention
// is left, as for tombstones. Offsets stay as they were: a fetch over a
// removed marker reads forward (rules 1 to 3).
func (b *Batch) ExpireTxnMarkers(id ShardID, beforeMs int64) (int, error) {
	return b.removeTimed(id, subMarker, beforeMs)
}

// ExpireSuperseded removes the superseded records held back by
// min.compaction.lag.ms that were appended before beforeMs (the compaction
// policy passes now - lag, so a record stays readable until it is that old, as
// Kafka's min.compaction.lag.ms does), and returns how many it removed.
func (b *Batch) ExpireSuperseded(id ShardID, beforeMs int64) (int, error) {
	return b.removeTimed(id, subSuperseded, beforeMs)
}

// removeTimed removes the records that the tag index (superseded records,
// transaction markers: records no key index entry points at) lists as
// appended before beforeMs, with their index entries, and returns how many.
func (b *Batch) removeTimed(id ShardID, tag byte, beforeMs int64) (int, error) {
	p, err := b.need(id)
	if err != nil {
		return 0, err
	}
	if err := b.s.acquire(); err != nil {
		return 0, err
	}
	defer b.s.life.RUnlock()
	ents, err := b.scanTimed(p, tag, beforeMs)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		b.singleDelete(recordKey(id, e.offset))
		b.singleDelete(timedKey(id, tag, e.ms, e.offset))
		p.st.LiveRecords--
		p.st.LiveBytes -= int64(e.size)
	}
	if len(ents) > 0 {
		p.dirty, p.changed = true, true
	}
	return len(ents), nil
}

// DeleteRecordsBefore moves the log start offset to offset, removing every record
// below it (ErrOffsetOutOfRange past the high watermark; a lower offset than the
// current log start is a no-op). Its cost is proportional to the records removed.
func (b *Batch) DeleteRecordsBefore(id ShardID, offset int64) error {
	p, err := b.need(id)
	if err != nil {
		return err
	}
	if offset > p.st.HighWatermark {
		return ErrOffsetOutOfRange
	}
	if offset <= p.st.LogStartOffset {
		return nil
	}
	if err := b.s.acquire(); err != nil {
		return err
	}
	defer b.s.life.RUnlock()

	// Plan first (reads only), then write, so an error leaves the batch as it was.
	type victim struct {
		offset int64
		size   int32
		key    []byte
		index  *keyEntry // the key index entry pointing at this record, if any
	}
	var victims []victim
	r := b.reader(p)
	it, err := r.NewIter(&pebble.IterOptions{
		LowerBound: recordKey(id, p.st.LogStartOffset),
		UpperBound: recordKey(id, offset),
	})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		key, _, err := recordKeyOf(it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		v := victim{offset: recordOffset(it.Key()), size: int32(len(it.Value()))}
		if key != nil {
			v.key = append([]byte{}, key...)
		}
		victims = append(victims, v)
	}
	if err := it.Close(); err != nil {
		return err
	}
	for i := range victims {
		v := &victims[i]
		if v.key == nil {
			continue
		}
		e, ok, err := b.lookupKey(p, v.key)
		if err != nil {
			return err
		}
		if ok && e.offset == v.offset {
			v.index = &e
		}
	}
	held, err := b.scanTimed(p, subSuperseded, math.MaxInt64)
	if err != nil {
		return err
	}
	markers, err := b.scanTimed(p, subMarker, math.MaxInt64)
	if err != nil {
		return err
	}

	for _, v := range victims {
		b.singleDelete(recordKey(id, v.offset))
		p.st.LiveRecords--
		p.st.LiveBytes -= int64(v.size)
		if v.index == nil {
			continue
		}
		b.del(keyIndexKey(id, v.key)) // also cache-only: see ExpireTombstones
		p.setKey(string(v.key), keyEntry{}, false)
		if v.index.tomb {
			b.singleDelete(tombstoneKey(id, v.index.appendMs, v.offset))
			p.st.Tombstones--
		} else {
			p.st.LiveKeys--
		}
	}
	for _, h := range held {
		if h.offset < offset {
			b.singleDelete(supersededKey(id, h.ms, h.offset))
		}
	}
	for _, m := range markers {
		if m.offset < offset {
			b.singleDelete(markerKey(id, m.ms, m.offset))
		}
	}
	p.st.LogStartOffset = offset
	p.dirty, p.changed = true, true
	return nil
}

// ExpireProducers forgets the state of producers whose last batch was appended
// before beforeMs (Kafka's producer.id.expiration.ms: the compaction policy
// passes now - expiration) and have no open transaction in the shard, and
// returns how many it forgot. A forgotten
// producer is unknown again: its next batch may start at any sequence and is
// never taken for a retry of an earlier one. State written before append times
// were kept is dated nowMs instead, so it expires one expiration period after
// the first pass that sees it. Both times come from the command, never from a
// clock, so every replica forgets the same producers.
func (b *Batch) ExpireProducers(id ShardID, beforeMs, nowMs int64) (int, error) {
	p, err := b.need(id)
	if err != nil {
		return 0, err
	}
	if err := b.s.acquire(); err != nil {
		return 0, err
	}
	defer b.s.life.RUnlock()
	type change struct {
		pid int64
		ps  *producerState // nil: forget
	}
	var changes []change
	it, err := b.reader(p).NewIter(&pebble.IterOptions{LowerBound: sub(id, subProducer), UpperBound: producersEnd(id)})
	if err != nil {
		return 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindProducer {
			_ = it.Close()
			return 0, fmt.Errorf("shardstore: producer key %x: %w", it.Key(), errCorrupt)
		}
		ps, err := decodeProducer(it.Value())
		if err != nil {
			_ = it.Close()
			return 0, err
		}
		switch {
		case ps.undated:
			ps.lastMs, ps.undated = nowMs, false
			changes = append(changes, change{pk.id, ps})
		case ps.expired(beforeMs):
			// Kafka never expires a producer with an ongoing transaction
			// (ProducerStateManager.isProducerExpired): its epoch fences
			// zombies and its sequences deduplicate retries until the
			// marker, after which it expires as any other.
			_, open, err := b.openTxn(p, pk.id)
			if err != nil {
				_ = it.Close()
				return 0, err
			}
			if !open {
				changes = append(changes, change{pk.id, nil})
			}
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if p.producers == nil {
		p.producers = make(map[int64]*producerState)
	}
	forgotten := 0
	for _, c := range changes {
		p.producers[c.pid] = c.ps
		if c.ps == nil {
			b.del(producerKey(id, c.pid))
			forgotten++
		} else {
			b.set(producerKey(id, c.pid), c.ps.encode())
		}
	}
	p.dirty = true
	return forgotten, nil
}
