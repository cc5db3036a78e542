package shardstore

import (
	"bytes"
	"testing"
)

func txnPID(id int64, epoch int16, seq int32) Producer {
	return Producer{ID: id, Epoch: epoch, BaseSequence: seq, Transactional: true}
}

func (h *h) endTxn(id ShardID, o AppendOptions, m Marker) int64 {
	h.t.Helper()
	var off int64
	h.batch(func(b *Batch) {
		var err error
		if off, err = b.EndTxn(id, o, m); err != nil {
			h.t.Fatalf("end txn: %v", err)
		}
	})
	return off
}

func (h *h) lso(id ShardID) int64 {
	h.t.Helper()
	lso, err := h.s.LastStableOffset(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return lso
}

func (h *h) lookupValue(id ShardID, key string) string {
	h.t.Helper()
	r, ok, err := h.s.Lookup(id, []byte(key))
	if err != nil {
		h.t.Fatal(err)
	}
	if !ok {
		return "<none>"
	}
	return string(r.Value)
}

// testTxnCommit: staged records take offsets at once, stay out of the key
// index and hold the last stable offset until the commit; at commit each
// becomes live only if its offset is above the key's live record.
func testTxnCommit(h *h) {
	h.create(1)
	h.mustAppend(1, compact, NoProducer, kv("a", "a0"), kv("b", "b0"))
	if got := h.mustAppend(1, compact, txnPID(7, 0, 0), kv("a", "a1"), kv("c", "c1")); got.BaseOffset != 2 {
		h.t.Fatalf("staged base = %d, want 2", got.BaseOffset)
	}
	// A plain write to b after the transaction started: above the LSO too.
	h.mustAppend(1, compact, NoProducer, kv("b", "b2"))
	h.mustAppend(1, compact, txnPID(7, 0, 2), kv("b", "b-txn"))
	if lso := h.lso(1); lso != 2 {
		h.t.Fatalf("LSO = %d, want 2", lso)
	}
	if v := h.lookupValue(1, "a"); v != "a0" {
		h.t.Fatalf("lookup a before commit = %s", v)
	}
	if v := h.lookupValue(1, "c"); v != "<none>" {
		h.t.Fatalf("lookup c before commit = %s", v)
	}
	// read_uncommitted sees the staged records.
	wantOffsets(h.t, h.read(1, 0), 0, 2, 3, 4, 5) // b0 at 1 replaced by b2
	// A plain batch from the producer with its transaction open.
	_, err := h.append(1, compact, pid(7, 0, 3), kv("x", "1"))
	wantErr(h.t, err, ErrInvalidTxnState)

	h.restart()
	off := h.endTxn(1, at(compact, 100), Marker{ProducerID: 7, ProducerEpoch: 0, Commit: true, CoordinatorEpoch: 3})
	if off != 6 || h.lso(1) != 7 || h.state(1).HighWatermark != 7 {
		h.t.Fatalf("marker at %d, LSO %d, HW %d", off, h.lso(1), h.state(1).HighWatermark)
	}
	for k, want := range map[string]string{"a": "a1", "b": "b-txn", "c": "c1"} {
		if v := h.lookupValue(1, k); v != want {
			h.t.Fatalf("lookup %s = %s, want %s", k, v, want)
		}
	}
	recs := h.read(1, 0)
	wantOffsets(h.t, recs, 2, 3, 5, 6)
	m := recs[3].Marker
	if m == nil || !m.Commit || m.ProducerID != 7 || m.CoordinatorEpoch != 3 || recs[3].Key != nil {
		h.t.Fatalf("marker record %+v", recs[3])
	}
	if st := h.state(1); st.LiveKeys != 3 || st.LiveRecords != 4 {
		h.t.Fatalf("state after commit %+v", st)
	}
	// Sequences go on across transactions of one epoch (transactions v1).
	h.mustAppend(1, compact, txnPID(7, 0, 3), kv("a", "a3"))
	if h.lso(1) != 7 {
		h.t.Fatalf("LSO = %d, want 7", h.lso(1))
	}
}

// testTxnStateCached: the shard's cache of open transactions (a read of
// "none", an open, an end) answers every later batch as the stored keys
// would, with no restart between them.
func testTxnStateCached(h *h) {
	h.create(1)
	h.mustAppend(1, compact, pid(7, 0, 0), kv("a", "a0")) // caches "none"
	h.mustAppend(1, compact, pid(7, 0, 1), kv("a", "a1"))
	h.mustAppend(1, compact, txnPID(7, 0, 2), kv("b", "b2")) // opens at 2
	_, err := h.append(1, compact, pid(7, 0, 3), kv("x", "1"))
	wantErr(h.t, err, ErrInvalidTxnState)
	h.mustAppend(1, compact, txnPID(7, 0, 3), kv("c", "c3")) // still open
	if lso := h.lso(1); lso != 2 {
		h.t.Fatalf("LSO = %d, want 2", lso)
	}
	h.endTxn(1, compact, Marker{ProducerID: 7, Commit: true})
	h.mustAppend(1, compact, pid(7, 0, 4), kv("a", "a5"))    // closed again
	h.mustAppend(1, compact, txnPID(7, 0, 5), kv("d", "d6")) // a new one
	_, err = h.append(1, compact, pid(7, 0, 6), kv("x", "1"))
	wantErr(h.t, err, ErrInvalidTxnState)
	h.restart()
	_, err = h.append(1, compact, pid(7, 0, 6), kv("x", "1"))
	wantErr(h.t, err, ErrInvalidTxnState)
}

// testTxnAbort: aborted records are deleted and never reach the key index.
func testTxnAbort(h *h) {
	h.create(1)
	h.mustAppend(1, compact, NoProducer, kv("a", "a0"))
	h.mustAppend(1, compact, txnPID(9, 2, 0), kv("a", "bad"), tomb("a"))
	h.mustAppend(1, del, NoProducer, kv("z", "z"))
	h.restart()
	h.endTxn(1, at(compact, 5), Marker{ProducerID: 9, ProducerEpoch: 2})
	if v := h.lookupValue(1, "a"); v != "a0" {
		h.t.Fatalf("lookup a after abort = %s", v)
	}
	recs := h.read(1, 0)
	wantOffsets(h.t, recs, 0, 3, 4)
	if recs[2].Marker == nil || recs[2].Marker.Commit {
		h.t.Fatalf("abort marker %+v", recs[2])
	}
	if st := h.state(1); st.LiveKeys != 1 || st.LiveRecords != 3 || st.Tombstones != 0 || h.lso(1) != 5 {
		h.t.Fatalf("state after abort %+v, LSO %d", st, h.lso(1))
	}
	// A marker for a producer with nothing staged still takes an offset.
	if off := h.endTxn(1, compact, Marker{ProducerID: 11, Commit: true}); off != 5 {
		h.t.Fatalf("empty marker at %d", off)
	}
	// Delete policy: commit keeps the records, abort deletes them.
	h.create(2)
	h.mustAppend(2, del, txnPID(1, 0, 0), Record{Value: []byte("k1")}, Record{Value: []byte("k2")})
	h.endTxn(2, del, Marker{ProducerID: 1, Commit: true})
	h.mustAppend(2, del, txnPID(1, 0, 2), Record{Value: []byte("gone")})
	h.endTxn(2, del, Marker{ProducerID: 1})
	recs = h.read(2, 0)
	wantOffsets(h.t, recs, 0, 1, 2, 4)
	if !bytes.Equal(recs[1].Value, []byte("k2")) {
		h.t.Fatalf("delete-policy records %+v", recs)
	}
}

// testTxnFencing: a marker with a bumped epoch (a fenced and aborted
// transaction) refuses the zombie's later batches and older markers.
func testTxnFencing(h *h) {
	h.create(1)
	h.mustAppend(1, compact, txnPID(5, 3, 0), kv("a", "zombie"))
	h.endTxn(1, compact, Marker{ProducerID: 5, ProducerEpoch: 4})
	_, err := h.append(1, compact, txnPID(5, 3, 1), kv("a", "late"))
	wantErr(h.t, err, ErrInvalidProducerEpoch)
	b := h.s.NewBatch()
	defer b.Close()
	_, err = b.EndTxn(1, compact, Marker{ProducerID: 5, ProducerEpoch: 3, Commit: true})
	wantErr(h.t, err, ErrInvalidProducerEpoch)
	h.mustAppend(1, compact, txnPID(5, 4, 0), kv("a", "new"))
	h.endTxn(1, compact, Marker{ProducerID: 5, ProducerEpoch: 4, Commit: true})
	if v := h.lookupValue(1, "a"); v != "new" {
		h.t.Fatalf("lookup a = %s", v)
	}
}

// TestCoordinatorTxnWrite: a transactional write without a sequence (the
// group coordinator's TxnOffsetCommit) is staged, checked by epoch only, and
// listed by StagedOffsets until its marker.
func TestCoordinatorTxnWrite(t *testing.T) {
	s, reopen := backends[0].open(t)
	hh := &h{t: t, s: s, reopen: reopen}
	hh.create(1)
	coord := Producer{ID: 4, Epoch: 2, BaseSequence: -1, Transactional: true}
	hh.mustAppend(1, compact, coord, kv("g/t/0", "10"))
	hh.mustAppend(1, compact, coord, kv("g/t/0", "12"))
	staged, err := hh.s.StagedOffsets(1)
	if err != nil || len(staged) != 2 || staged[0] != 4 || staged[1] != 4 {
		t.Fatalf("staged %v, %v", staged, err)
	}
	if open, _ := hh.s.OpenTxn(1, 4); !open {
		t.Fatal("no open transaction")
	}
	_, err = hh.append(1, compact, Producer{ID: 4, Epoch: 1, BaseSequence: -1, Transactional: true}, kv("g/t/0", "old"))
	wantErr(t, err, ErrInvalidProducerEpoch)
	hh.endTxn(1, compact, Marker{ProducerID: 4, ProducerEpoch: 2, Commit: true})
	if v := hh.lookupValue(1, "g/t/0"); v != "12" {
		t.Fatalf("committed offset %s", v)
	}
	if staged, _ := hh.s.StagedOffsets(1); len(staged) != 0 {
		t.Fatalf("staged after commit %v", staged)
	}
	if open, _ := hh.s.OpenTxn(1, 4); open {
		t.Fatal("open after commit")
	}
}

func (h *h) expireMarkers(id ShardID, beforeMs int64) int {
	h.t.Helper()
	var n int
	h.batch(func(b *Batch) {
		var err error
		if n, err = b.ExpireTxnMarkers(id, beforeMs); err != nil {
			h.t.Fatalf("expire markers: %v", err)
		}
	})
	return n
}

func (h *h) markersDue(id ShardID, beforeMs int64) bool {
	h.t.Helper()
	due, err := h.s.TxnMarkersDue(id, beforeMs)
	if err != nil {
		h.t.Fatal(err)
	}
	return due
}

// testTxnMarkerExpiry: on a compacted shard a commit or abort marker is
// removed once it is older than the cutoff (delete.retention.ms), the
// committed records stay, offsets stay where they were and reads step over
// the gap; a delete-policy shard's markers are left to retention.
func testTxnMarkerExpiry(h *h) {
	h.create(1)
	h.mustAppend(1, at(compact, 10), txnPID(7, 0, 0), kv("a", "a1"), kv("b", "b1")) // 0, 1
	h.endTxn(1, at(compact, 20), Marker{ProducerID: 7, Commit: true})               // 2
	h.mustAppend(1, at(compact, 30), txnPID(7, 0, 2), kv("a", "gone"))              // 3
	h.endTxn(1, at(compact, 40), Marker{ProducerID: 7})                             // 4
	h.mustAppend(1, at(compact, 50), NoProducer, kv("c", "c0"))                     // 5
	before := h.state(1)
	if h.markersDue(1, 20) || !h.markersDue(1, 21) {
		h.t.Fatal("markers due: want the marker at 20 due only from 21")
	}
	if n := h.expireMarkers(1, 20); n != 0 {
		h.t.Fatalf("expired %d markers before any was due", n)
	}
	h.restart()
	if n := h.expireMarkers(1, 41); n != 2 {
		h.t.Fatalf("expired %d markers, want 2", n)
	}
	wantOffsets(h.t, h.read(1, 0), 0, 1, 5)
	st := h.state(1)
	if st.HighWatermark != before.HighWatermark || st.LiveRecords != 3 || st.LiveKeys != 3 || st.LogStartOffset != 0 {
		h.t.Fatalf("state after expiry %+v (before %+v)", st, before)
	}
	if h.markersDue(1, 1<<62) {
		h.t.Fatal("markers still due after expiry")
	}
	for k, want := range map[string]string{"a": "a1", "b": "b1", "c": "c0"} {
		if v := h.lookupValue(1, k); v != want {
			h.t.Fatalf("lookup %s = %s, want %s", k, v, want)
		}
	}
	h.restart()
	if again := h.state(1); again != st {
		h.t.Fatalf("state after restart %+v, before it %+v", again, st)
	}
	if recs := h.read(1, 0); st.LiveBytes <= 0 || len(recs) != 3 {
		h.t.Fatalf("live bytes %d, records %+v", st.LiveBytes, recs)
	}
	// Delete policy: no expiry index, the marker stays for retention.
	h.create(2)
	h.mustAppend(2, at(del, 1), txnPID(8, 0, 0), Record{Value: []byte("x")})
	h.endTxn(2, at(del, 2), Marker{ProducerID: 8, Commit: true})
	if h.markersDue(2, 1<<62) || h.expireMarkers(2, 1<<62) != 0 {
		h.t.Fatal("a delete-policy marker is due for expiry")
	}
	wantOffsets(h.t, h.read(2, 0), 0, 1)
}

// testTxnMarkerBelowLogStart: DeleteRecordsBefore past a marker also drops
// its expiry entry, so a later expiry does not count it twice.
func testTxnMarkerBelowLogStart(h *h) {
	h.create(1)
	h.mustAppend(1, at(compact, 1), txnPID(3, 0, 0), kv("a", "1"))
	h.endTxn(1, at(compact, 2), Marker{ProducerID: 3, Commit: true})
	h.mustAppend(1, at(compact, 3), NoProducer, kv("b", "2"))
	h.batch(func(b *Batch) {
		if err := b.DeleteRecordsBefore(1, 2); err != nil {
			h.t.Fatal(err)
		}
	})
	if h.markersDue(1, 1<<62) || h.expireMarkers(1, 1<<62) != 0 {
		h.t.Fatal("marker below the log start still indexed")
	}
	if st := h.state(1); st.LiveRecords != 1 || st.LiveKeys != 1 {
		h.t.Fatalf("state %+v", st)
	}
}

// testProducers: Producers lists each producer's epoch, last sequence, last
// append time and open transaction.
func testProducers(h *h) {
	h.create(1)
	if ps, err := h.s.Producers(1); err != nil || len(ps) != 0 {
		h.t.Fatalf("producers of an empty shard: %v, %v", ps, err)
	}
	h.mustAppend(1, at(compact, 5), pid(2, 1, 0), kv("a", "1"), kv("b", "2"))    // 0, 1
	h.mustAppend(1, at(compact, 6), txnPID(9, 3, 0), kv("c", "3"))               // 2
	h.mustAppend(1, at(compact, 7), txnPID(9, 3, 1), kv("d", "4"), kv("e", "5")) // 3, 4
	h.endTxn(1, at(compact, 8), Marker{ProducerID: 11, ProducerEpoch: 4})        // 5
	want := []ProducerInfo{
		{ID: 2, Epoch: 1, LastSequence: 1, LastAppendMs: 5, TxnStartOffset: -1},
		{ID: 9, Epoch: 3, LastSequence: 2, LastAppendMs: 7, TxnStartOffset: 2},
		{ID: 11, Epoch: 4, LastSequence: -1, LastAppendMs: 8, TxnStartOffset: -1},
	}
	for round := 0; round < 2; round++ {
		got, err := h.s.Producers(1)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(got) != len(want) {
			h.t.Fatalf("producers %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				h.t.Fatalf("producer %d: %+v, want %+v", i, got[i], want[i])
			}
		}
		h.restart()
	}
	if _, err := h.s.Producers(99); err == nil {
		h.t.Fatal("Producers of an unknown shard succeeded")
	}
}

// testTxnProducerExpiry: ExpireProducers keeps a producer whose transaction is
// open in the shard however old its last batch (Kafka never expires a
// producer with an ongoing transaction): its retry is still answered from its
// state and a zombie of an older epoch still refused. Once the marker ends
// the transaction, it expires like any other producer.
func testTxnProducerExpiry(h *h) {
	expire := func(beforeMs int64, want int) {
		h.t.Helper()
		h.batch(func(b *Batch) {
			if n, err := b.ExpireProducers(1, beforeMs, beforeMs); err != nil || n != want {
				h.t.Fatalf("ExpireProducers(%d) = %d, %v; want %d", beforeMs, n, err, want)
			}
		})
	}
	h.create(1)
	h.mustAppend(1, at(compact, 1000), txnPID(7, 2, 0), kv("a", "1")) // 0, open
	h.mustAppend(1, at(compact, 1000), pid(8, 0, 0), kv("b", "1"))    // 1, idempotent only
	due := func(beforeMs int64, want bool) {
		h.t.Helper()
		if got, err := h.s.ProducersDue(1, beforeMs); err != nil || got != want {
			h.t.Fatalf("ProducersDue(%d) = %v, %v; want %v", beforeMs, got, err, want)
		}
	}
	due(5000, true)
	expire(5000, 1) // 8 only
	h.restart()
	due(6000, false) // 7 is past due but kept: nothing to propose
	expire(6000, 0)
	if r := h.mustAppend(1, at(compact, 7000), txnPID(7, 2, 0), kv("a", "1")); !r.Duplicate || r.BaseOffset != 0 {
		h.t.Fatalf("retry of the open transaction's batch = %+v, want a duplicate at 0", r)
	}
	_, err := h.append(1, at(compact, 7000), txnPID(7, 1, 0), kv("a", "zombie"))
	wantErr(h.t, err, ErrInvalidProducerEpoch)
	if ps, err := h.s.Producers(1); err != nil || len(ps) != 1 || ps[0].ID != 7 || ps[0].Epoch != 2 || ps[0].TxnStartOffset != 0 {
		h.t.Fatalf("producers with the transaction open: %+v, %v", ps, err)
	}
	h.endTxn(1, at(compact, 8000), Marker{ProducerID: 7, ProducerEpoch: 2, Commit: true})
	due(9000, true)
	expire(9000, 1)
	if ps, err := h.s.Producers(1); err != nil || len(ps) != 0 {
		h.t.Fatalf("producers after the commit and expiry: %+v, %v", ps, err)
	}
}
