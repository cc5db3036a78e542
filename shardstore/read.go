package shardstore

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// readView returns the shard's counters and holds the store open; release with
// s.life.RUnlock.
func (s *Store) readView(id ShardID) (State, error) {
	if err := s.acquire(); err != nil {
		return State{}, err
	}
	st, err := s.State(id)
	if err != nil {
		s.life.RUnlock()
	}
	return st, err
}

// recordIter iterates the readable records of a shard in [from, to).
func (s *Store) recordIter(id ShardID, from, to int64) (*pebble.Iterator, error) {
	return s.db.NewIter(&pebble.IterOptions{
		LowerBound: recordKey(id, from),
		UpperBound: recordKey(id, to),
	})
}

// Read returns readable records with offset >= from in offset order: at most
// maxRecords, and stopping once maxBytes of encoded records are collected (the
// first record is returned whatever its size, KIP-74). A limit <= 0 means no
// limit. An empty result with from < HighWatermark means nothing is readable in
// [from, HighWatermark). Records past the high watermark seen at the start of the
// call are never returned.
//
// The records, their keys, values and headers are owned by the caller. They share
// one backing array per call (values are never copied twice), so keeping one
// small record alive keeps the whole call's memory.
func (s *Store) Read(id ShardID, from int64, maxBytes, maxRecords int) ([]Record, error) {
	// Copy the encoded records into one arena, then decode in place: keys, values
	// and header values alias the arena; headers share one slice.
	type span struct {
		offset     int64
		start, end int
	}
	var arena []byte
	var spans []span
	headers := 0
	err := s.scan(id, from, func(st State, from int64) {
		estRecs, estBytes := readEstimate(st, from, maxBytes, maxRecords)
		arena = make([]byte, 0, estBytes)
		spans = make([]span, 0, estRecs)
	}, func(offset int64, v []byte) (bool, error) {
		if len(spans) > 0 && maxBytes > 0 && len(arena)+len(v) > maxBytes {
			return false, nil
		}
		nh, err := recordHeaderCount(v)
		if err != nil {
			return false, err
		}
		headers += nh
		spans = append(spans, span{offset: offset, start: len(arena), end: len(arena) + len(v)})
		arena = append(arena, v...)
		return maxRecords <= 0 || len(spans) < maxRecords, nil
	})
	if err != nil || len(spans) == 0 {
		return nil, err
	}
	recs := make([]Record, len(spans))
	hs := make([]Header, headers)
	for i, sp := range spans {
		recs[i].Offset = sp.offset
		if hs, err = decodeRecord(arena[sp.start:sp.end:sp.end], &recs[i], hs); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// ReadFunc calls fn with the readable records with offset >= from in offset
// order, as Read returns them, until fn returns false. Nothing is copied: rec,
// its key, value and headers alias the store's memory and are valid only
// during the call (fn copies what it keeps; it must not call back into the
// store). Records past the high watermark seen at the start of the call are
// never passed.
func (s *Store) ReadFunc(id ShardID, from int64, fn func(rec *Record) bool) error {
	var rec Record
	var hs []Header
	return s.scan(id, from, nil, func(offset int64, v []byte) (bool, error) {
		nh, err := recordHeaderCount(v)
		if err != nil {
			return false, err
		}
		if cap(hs) < nh {
			hs = make([]Header, nh)
		}
		rec = Record{Offset: offset}
		if _, err := decodeRecord(v, &rec, hs[:nh]); err != nil {
			return false, err
		}
		return fn(&rec), nil
	})
}

// scan iterates a shard's readable records with offset >= from, below the
// high watermark, passing each one's offset and encoding (valid until fn
// returns) to fn until it returns false or an error. start, when set, is
// called once before the first record with the counters and the offset the
// scan starts at. The scan starts at the shard's dead prefix's end at the
// earliest (livehint.go), and moves that end when it finds more of it.
func (s *Store) scan(id ShardID, from int64, start func(st State, from int64), fn func(offset int64, v []byte) (bool, error)) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	sh := s.shard(id)
	if sh == nil {
		return ErrUnknownShard
	}
	sh.mu.Lock()
	st, dead, gen := sh.st, sh.hint.from, sh.hint.gen
	sh.mu.Unlock()
	// Below the hint nothing is readable: seek past the dead prefix.
	from = max(from, st.LogStartOffset, dead)
	if from >= st.HighWatermark {
		return nil
	}
	it, err := s.recordIter(id, from, st.HighWatermark)
	if err != nil {
		return err
	}
	defer it.Close()
	if start != nil {
		start(st, from)
	}
	firstLive := int64(-1)
	for ok := it.First(); ok; ok = it.Next() {
		offset := recordOffset(it.Key())
		if firstLive < 0 {
			firstLive = offset
		}
		more, err := fn(offset, it.Value())
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	// Nothing in [from, first record found) is readable, nor will be: records
	// are only written at new offsets (livehint.go). When the scan began at the
	// dead prefix's end, the prefix now reaches the first record.
	if firstLive < 0 {
		firstLive = st.HighWatermark
	}
	if firstLive > from {
		sh.mu.Lock()
		if sh.hint.gen == gen && from <= max(sh.hint.from, st.LogStartOffset) {
			sh.hint.learn(firstLive)
		}
		sh.mu.Unlock()
	}
	return nil
}

// Lookup returns the live record of key, found through the key index. A tombstone
// is returned as a record with a nil Value; ok is false when the key has no record.
// Only compacted shards keep a key index: on a delete-policy shard ok is false.
// The record is owned by the caller.
func (s *Store) Lookup(id ShardID, key []byte) (rec Record, ok bool, err error) {
	st, err := s.readView(id)
	if err != nil {
		return Record{}, false, err
	}
	defer s.life.RUnlock()
	if st.LiveKeys+st.Tombstones == 0 {
		return Record{}, false, nil
	}
	// The key index and the record are two reads without a snapshot (a Pebble
	// snapshot per lookup costs more than the lookup). A replacement that lands
	// between them deletes the record the index named, so the second read
	// misses; read the index again. A record found is one that was live when
	// the index was read.
	for attempt := 0; ; attempt++ {
		if rec, ok, err, done := s.lookupCacheOnly(id, key); done {
			if errors.Is(err, errLookupAgain) && attempt < lookupRetries {
				continue
			}
			return rec, ok, err
		}
		e, found, err := s.readKeyEntry(keyIndexKey(id, key))
		if err != nil || !found {
			return Record{}, false, err
		}
		v, closer, err := s.db.Get(recordKey(id, e.offset))
		if errors.Is(err, pebble.ErrNotFound) && attempt < lookupRetries {
			continue
		}
		if err != nil {
			return Record{}, false, err
		}
		rec, err = decodeOwnedRecord(v, e.offset)
		_ = closer.Close()
		return rec, err == nil, err
	}
}

// lookupCacheOnly is Lookup on a cache-only shard (cacheonly.go), whose key
// index is its key cache: done is false for any other shard. Holding the
// shard's commitMu shared keeps a commit of the shard from landing between
// the cache read and the record read (Batch.Commit takes it exclusively until
// the cache has the commit's keys).
func (s *Store) lookupCacheOnly(id ShardID, key []byte) (rec Record, ok bool, err error, done bool) {
	sh := s.shard(id)
	if sh == nil {
		return Record{}, false, nil, false
	}
	sh.commitMu.RLock()
	defer sh.commitMu.RUnlock()
	sh.mu.Lock()
	e, found := sh.cache.get(bytesView(key))
	cacheOnly := sh.cacheOnly
	sh.mu.Unlock()
	if !cacheOnly {
		return Record{}, false, nil, false
	}
	if !found {
		return Record{}, false, nil, true
	}
	v, closer, err := s.db.Get(recordKey(id, e.offset))
	if errors.Is(err, pebble.ErrNotFound) {
		// An Ingest replaced the shard (reloadShards updates the cache
		// after it): read again.
		return Record{}, false, errLookupAgain, true
	}
	if err != nil {
		return Record{}, false, err, true
	}
	defer closer.Close()
	rec, err = decodeOwnedRecord(v, e.offset)
	return rec, err == nil, err, true
}

// errLookupAgain: a cache-only shard's cache named a record that is gone.
var errLookupAgain = errors.New("shardstore: the key's record was replaced while it was read")

// readKeyEntry reads the key index entry under k (keyIndexKey) from Pebble.
func (s *Store) readKeyEntry(k []byte) (keyEntry, bool, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return keyEntry{}, false, nil
	}
	if err != nil {
		return keyEntry{}, false, err
	}
	e, err := decodeKeyEntry(v)
	_ = closer.Close()
	return e, err == nil, err
}

// lookupRetries bounds Lookup's re-reads when the key is replaced between its
// two reads; a key rewritten that often answers the last error.
const lookupRetries = 8

// OffsetForTime returns the first readable offset whose record timestamp is >= ts,
// with that timestamp; ok is false when there is none. Timestamps are the
// producers' and need not grow with offsets, so this is a scan of the readable
// records from the log start (stopping at the first match; none at all when ts
// exceeds the shard's maximum timestamp).
func (s *Store) OffsetForTime(id ShardID, ts int64) (offset, timestamp int64, ok bool, err error) {
	st, err := s.readView(id)
	if err != nil {
		return 0, 0, false, err
	}
	defer s.life.RUnlock()
	if st.HighWatermark <= st.LogStartOffset || ts > st.MaxTimestamp {
		return 0, 0, false, nil
	}
	it, err := s.recordIter(id, st.LogStartOffset, st.HighWatermark)
	if err != nil {
		return 0, 0, false, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		rts, _, err := recordTimes(it.Value())
		if err != nil {
			return 0, 0, false, err
		}
		if rts >= ts {
			return recordOffset(it.Key()), rts, true, nil
		}
	}
	return 0, 0, false, it.Error()
}

// MaxTimestamp returns the readable record with the largest timestamp (the
// first in offset order among equal timestamps) and that timestamp; ok is
// false when nothing is readable. State.MaxTimestampOffset names the largest
// timestamp ever appended: while that record is readable the answer is one
// seek; once compaction, tombstone expiry or DeleteRecordsBefore took it, it is
// a scan of the readable records, like OffsetForTime.
func (s *Store) MaxTimestamp(id ShardID) (offset, timestamp int64, ok bool, err error) {
	st, err := s.readView(id)
	if err != nil {
		return 0, 0, false, err
	}
	defer s.life.RUnlock()
	if st.HighWatermark <= st.LogStartOffset {
		return 0, 0, false, nil
	}
	if o := st.MaxTimestampOffset; o >= st.LogStartOffset && o < st.HighWatermark {
		it, err := s.recordIter(id, o, o+1)
		if err != nil {
			return 0, 0, false, err
		}
		found := it.First()
		if err := it.Close(); err != nil {
			return 0, 0, false, err
		}
		if found {
			return o, st.MaxTimestamp, true, nil
		}
	}
	it, err := s.recordIter(id, st.LogStartOffset, st.HighWatermark)
	if err != nil {
		return 0, 0, false, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		rts, _, err := recordTimes(it.Value())
		if err != nil {
			return 0, 0, false, err
		}
		if !ok || rts > timestamp {
			offset, timestamp, ok = recordOffset(it.Key()), rts, true
		}
	}
	return offset, timestamp, ok, it.Error()
}

// RetentionOffset returns the log start offset that retention of a delete-policy
// shard asks for: past every record appended before olderThanMs (when >= 0) and
// past the oldest records until at most maxBytes remain (when maxBytes >= 0).
// It returns the current log start offset when nothing is due.
//
// The scan walks from the log start and stops at the first record that neither
// rule removes, so its cost is proportional to the records due; append times are
// the leaders' clocks and taken as non-decreasing in offset order. When the
// bytes are within maxBytes and the shard's due bound (due.go) says the first
// readable record is not older than olderThanMs, nothing is read.
func (s *Store) RetentionOffset(id ShardID, olderThanMs, maxBytes int64) (int64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	// The bound before the counters: a batch applied after this moves b.gen,
	// so the walk below (up to the high watermark read next) is learned only
	// if it saw every record the bound does not cover.
	sh, b := s.dueBound(id, dueRecords)
	if sh == nil {
		return 0, ErrUnknownShard
	}
	st, err := s.State(id)
	if err != nil {
		return 0, err
	}
	start := st.LogStartOffset
	bytesDue := maxBytes >= 0 && st.LiveBytes > maxBytes
	if !bytesDue && (olderThanMs < 0 || (b.known && b.ms >= olderThanMs)) {
		return start, nil
	}
	it, err := s.recordIter(id, start, st.HighWatermark)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	remaining := st.LiveBytes
	firstMs, seen := int64(noEntry), false
	for valid := it.First(); valid; valid = it.Next() {
		_, appendMs, err := recordTimes(it.Value())
		if err != nil {
			return 0, err
		}
		if !seen {
			firstMs, seen = appendMs, true
		}
		byTime := olderThanMs >= 0 && appendMs < olderThanMs
		byBytes := maxBytes >= 0 && remaining > maxBytes
		if !byTime && !byBytes {
			break
		}
		start = recordOffset(it.Key()) + 1
		remaining -= int64(len(it.Value()))
	}
	if err := it.Error(); err != nil {
		return 0, err
	}
	if start == st.LogStartOffset {
		// Nothing due: the first readable record's append time is the bound.
		sh.learnDue(dueRecords, b.gen, firstMs)
	}
	return start, nil
}

// readEstimate sizes Read's arena and record count from the shard's counters, so
// that a read usually allocates each once: at most the records between from and
// the high watermark, the limits, and the live bytes.
func readEstimate(st State, from int64, maxBytes, maxRecords int) (recs, bytes int) {
	const maxEstimate = 64 << 20
	n := min(st.LiveRecords, st.HighWatermark-from)
	if maxRecords > 0 {
		n = min(n, int64(maxRecords))
	}
	avg := int64(1)
	if st.LiveRecords > 0 {
		avg = max(st.LiveBytes/st.LiveRecords, 1)
	}
	if maxBytes > 0 {
		n = min(n, int64(maxBytes)/avg+1)
	}
	n = max(n, 1)
	b := min(n*avg+avg/2, st.LiveBytes)
	if maxBytes > 0 {
		b = min(b, int64(maxBytes))
	}
	return int(min(n, maxEstimate/16)), int(min(max(b, 64), maxEstimate))
}

// TombstonesDue reports whether the shard keeps a tombstone appended before
// beforeMs, that is whether ExpireTombstones(id, beforeMs) would remove one.
// The compaction loop asks on every pass instead of proposing a Raft command
// that may find nothing to do, so the answer comes from the shard's due bound
// (due.go) where it can, else from one seek.
func (s *Store) TombstonesDue(id ShardID, beforeMs int64) (bool, error) {
	return s.timedDue(id, subTombstone, beforeMs)
}

// SupersededDue reports whether ExpireSuperseded(id, beforeMs) would remove a
// record held back by min.compaction.lag.ms. As TombstonesDue.
func (s *Store) SupersededDue(id ShardID, beforeMs int64) (bool, error) {
	return s.timedDue(id, subSuperseded, beforeMs)
}

// TxnMarkersDue reports whether ExpireTxnMarkers(id, beforeMs) would remove a
// transaction marker. As TombstonesDue.
func (s *Store) TxnMarkersDue(id ShardID, beforeMs int64) (bool, error) {
	return s.timedDue(id, subMarker, beforeMs)
}

// timedDue answers from the due bound when no entry of the tag index can be
// older than beforeMs; else it seeks the index's oldest entry, and learns it
// as the bound when it is not due.
func (s *Store) timedDue(id ShardID, tag byte, beforeMs int64) (bool, error) {
	if _, err := s.readView(id); err != nil {
		return false, err
	}
	defer s.life.RUnlock()
	kind := dueKind(tag)
	sh, b := s.dueBound(id, kind)
	if sh == nil {
		return false, ErrUnknownShard
	}
	if b.known && b.ms >= beforeMs {
		return false, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, tag), UpperBound: sub(id, tag+1)})
	if err != nil {
		return false, err
	}
	oldest := int64(noEntry)
	if it.First() {
		pk, good := parseKey(it.Key())
		if !good || pk.shard != id || pk.kind != timedKeyKind(tag) {
			_ = it.Close()
			return false, fmt.Errorf("shardstore: index key %x: %w", it.Key(), errCorrupt)
		}
		oldest = pk.ms
	}
	if err := it.Close(); err != nil {
		return false, err
	}
	if oldest < beforeMs {
		return true, nil
	}
	sh.learnDue(kind, b.gen, oldest)
	return false, nil
}

// ProducersDue reports whether ExpireProducers(id, beforeMs, ...) would change
// anything: whether the shard keeps state of a producer that last wrote before
// beforeMs, or undated state from before append times were kept. It answers
// from the shard's due bound (due.go) when no producer can have last written
// before beforeMs; else it scans the shard's producers, stopping at the first
// due one, and when none is, learns the earliest last write as the bound.
func (s *Store) ProducersDue(id ShardID, beforeMs int64) (bool, error) {
	if _, err := s.readView(id); err != nil {
		return false, err
	}
	defer s.life.RUnlock()
	sh, b := s.dueBound(id, dueProducers)
	if sh == nil {
		return false, ErrUnknownShard
	}
	if b.known && b.ms >= beforeMs {
		return false, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subProducer), UpperBound: producersEnd(id)})
	if err != nil {
		return false, err
	}
	defer it.Close()
	oldest := int64(noEntry)
	for ok := it.First(); ok; ok = it.Next() {
		ps, err := decodeProducer(it.Value())
		if err != nil {
			return false, fmt.Errorf("shardstore: producer state %x: %w", it.Key(), err)
		}
		if ps.undated {
			return true, nil
		}
		// A producer with an open transaction is kept in the bound: its
		// marker need not write its state (EndTxn), so it may become due
		// with no batch applied to lower the bound.
		oldest = min(oldest, ps.dueMs())
		if !ps.expired(beforeMs) {
			continue
		}
		// A producer with an open transaction is never expired
		// (ExpireProducers), so it alone does not make the shard due: the
		// compaction loop would propose a no-op at every check.
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindProducer {
			return false, fmt.Errorf("shardstore: producer key %x: %w", it.Key(), errCorrupt)
		}
		_, closer, err := s.db.Get(openTxnKey(id, pk.id))
		if errors.Is(err, pebble.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		_ = closer.Close()
	}
	if err := it.Error(); err != nil {
		return false, err
	}
	sh.learnDue(dueProducers, b.gen, oldest)
	return false, nil
}
