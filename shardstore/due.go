package shardstore

import "math"

// The compaction loop asks each shard it leads, on every pass, whether an
// expiry has work (TombstonesDue, SupersededDue, TxnMarkersDue, every few
// minutes ProducersDue, and RetentionOffset on topics with retention.ms).
// Each answer was a Pebble iterator per shard (a scan of its producers for
// ProducersDue), so a pass over 10,000 idle-looking shards cost a seek each
// in every level. Each shard now keeps, per expiry index, a lower bound on
// the append time of its oldest entry (producers: of their last writes;
// retention: of the first readable record), and a check whose time bound is
// at or below it answers "not due" from memory.
//
// The bound only ever errs low ("maybe due"), never high:
//   - Store.apply lowers it by what a committed batch added (Batch.setTimed
//     notes each timed index entry, and every producer state a batch wrote is
//     in pendingShard.producers), before the batch's effects are published;
//   - removals (expiries, DeleteRecordsBefore) leave it as it was: a bound on
//     more entries is a bound on fewer. Except the first readable record's:
//     removing records can make a later one first, so a batch that removes
//     any record (or leaves an offset unwritten) forgets that bound;
//   - it is unknown after Open and after an Ingest reloads the shard
//     (dropCache), so the first check there reads Pebble, as before;
//   - a shard Store.apply creates is empty, so its bounds start known, at
//     "no entry".
//
// A check that cannot answer from the bound reads Pebble: the index's first
// entry (the oldest: timed keys sort by append time), every producer, or
// the records from the log start; and
// when it finds nothing due it stores what it read as the new bound. That
// store is dropped if a batch was applied to the index meanwhile (the bound's
// generation moved), since the read may predate that batch's entries. So a
// bound that erred low is corrected by one read, and with nothing due a pass
// reads Pebble only for shards whose oldest entry has come within the
// expiry's time bound.

// Expiry indexes with a due bound.
const (
	dueTombstones = iota
	dueSuperseded
	dueMarkers
	dueProducers
	// dueRecords bounds the append time of the first readable record, for
	// retention by time (RetentionOffset).
	dueRecords
	dueKinds
)

// dueKind maps a timed index tag to its bound.
func dueKind(tag byte) int {
	switch tag {
	case subTombstone:
		return dueTombstones
	case subSuperseded:
		return dueSuperseded
	case subMarker:
		return dueMarkers
	}
	panic("shardstore: no due bound for index tag " + string(rune(tag)))
}

// timedKeyKind is what parseKey says of a tag index entry.
func timedKeyKind(tag byte) keyKind {
	switch tag {
	case subTombstone:
		return kindTombstone
	case subSuperseded:
		return kindSuperseded
	}
	return kindMarker
}

// noEntry is the bound of an empty index.
const noEntry = math.MaxInt64

// dueBound is a lower bound on the append times of one index's entries.
type dueBound struct {
	// known says ms holds: no entry of the index is older than ms (noEntry:
	// the index is empty).
	known bool
	ms    int64
	// gen moves with every batch applied that added to the index and every
	// reset, so a Pebble read begun before it does not become the bound.
	gen uint64
}

// dueBounds are a shard's bounds, guarded by shard.mu.
type dueBounds [dueKinds]dueBound

// emptyDue are the bounds of a shard with nothing in its indexes.
func emptyDue() dueBounds {
	var d dueBounds
	for k := range d {
		d[k] = dueBound{known: true, ms: noEntry}
	}
	return d
}

// reset forgets the bounds (the shard's keys were replaced).
func (d *dueBounds) reset() {
	for k := range d {
		d[k].known = false
		d[k].gen++
	}
}

// lower takes an entry appended at ms into the bound.
func (b *dueBound) lower(ms int64) {
	b.gen++
	if b.known {
		b.ms = min(b.ms, ms)
	}
}

// dueAdds is what a batch added to a shard's timed indexes: per index, the
// oldest append time (pendingShard.due).
type dueAdds struct {
	set uint8 // bit k: ms[k] holds
	ms  [dueKinds]int64
}

func (a *dueAdds) add(kind int, ms int64) {
	if a.set&(1<<kind) == 0 || ms < a.ms[kind] {
		a.ms[kind] = ms
	}
	a.set |= 1 << kind
}

// setTimed writes a tag index entry of shard p appended at ms and notes it for
// the shard's due bound.
func (b *Batch) setTimed(p *pendingShard, tag byte, ms, offset int64, v []byte) {
	b.set(timedKey(p.id, tag, ms, offset), v)
	p.due.add(dueKind(tag), ms)
}

// dueMs is the time ExpireProducers compares with its bound: the last write,
// or, for state from before those were kept, earlier than any bound (always
// due until dated).
func (ps *producerState) dueMs() int64 {
	if ps.undated {
		return math.MinInt64
	}
	return ps.lastMs
}

// mergeDue lowers sh's bounds by what the committed batch added to p. sh.mu
// is held, and sh.st is still the state before the batch.
func mergeDue(sh *shard, p *pendingShard) {
	// Every offset the batch took holds a record, and nothing moved the log
	// start: no record was removed, so the first readable one is the same
	// or one the batch appended.
	if p.changed && (p.st.LogStartOffset != sh.st.LogStartOffset ||
		p.st.HighWatermark-sh.st.HighWatermark != p.st.LiveRecords-sh.st.LiveRecords) {
		b := &sh.due[dueRecords]
		b.known = false
		b.gen++
	}
	for k := range dueKinds {
		if p.due.set&(1<<k) != 0 {
			sh.due[k].lower(p.due.ms[k])
		}
	}
	if len(p.producers) > 0 {
		b := &sh.due[dueProducers]
		b.gen++
		for _, ps := range p.producers {
			if ps != nil && b.known {
				b.ms = min(b.ms, ps.dueMs())
			}
		}
	}
}

// dueBound returns shard id's bound of an index, with the shard for learnDue
// (nil: unknown shard).
func (s *Store) dueBound(id ShardID, kind int) (*shard, dueBound) {
	sh := s.shard(id)
	if sh == nil {
		return nil, dueBound{}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh, sh.due[kind]
}

// learnDue makes ms the bound of an index of sh, read from Pebble while the
// bound's generation was gen, unless a batch or a reset moved it since.
func (sh *shard) learnDue(kind int, gen uint64, ms int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := &sh.due[kind]; b.gen == gen {
		b.known, b.ms = true, ms
	}
}
