package shardstore

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// dueTimes are the cutoffs checkDue asks at: around every append time the
// tests use.
var dueTimes = []int64{math.MinInt64, 0, 49, 50, 51, 99, 100, 101, 150, 199, 200, 201, 250, 999, 1000, 1001, 2000, 5000, math.MaxInt64}

// exactTimedDue is what TombstonesDue and its kin answered before the due
// bounds: whether the tag index holds an entry older than beforeMs, read
// from Pebble.
func exactTimedDue(tb testing.TB, s *Store, id ShardID, tag byte, beforeMs int64) bool {
	tb.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, tag), UpperBound: timedBound(id, tag, beforeMs)})
	if err != nil {
		tb.Fatal(err)
	}
	due := it.First()
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return due
}

// exactProducersDue is ExpireProducers' rule read from Pebble: an undated
// producer, or one idle since before beforeMs without an open transaction.
func exactProducersDue(tb testing.TB, s *Store, id ShardID, beforeMs int64) bool {
	tb.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: sub(id, subProducer), UpperBound: producersEnd(id)})
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		ps, err := decodeProducer(it.Value())
		if err != nil {
			tb.Fatal(err)
		}
		if ps.undated {
			return true
		}
		if !ps.expired(beforeMs) {
			continue
		}
		pk, _ := parseKey(it.Key())
		_, closer, err := s.db.Get(openTxnKey(id, pk.id))
		if errors.Is(err, pebble.ErrNotFound) {
			return true
		}
		if err != nil {
			tb.Fatal(err)
		}
		closer.Close()
	}
	return false
}

// checkDue asks each due check of shard id at every cutoff in dueTimes and
// wants the answer read from Pebble. The checks learn bounds as they go, so
// the steps between two calls test that writes lower them.
func (h *h) checkDue(id ShardID) {
	h.t.Helper()
	checks := []struct {
		name  string
		tag   byte
		check func(ShardID, int64) (bool, error)
	}{
		{"TombstonesDue", subTombstone, h.s.TombstonesDue},
		{"SupersededDue", subSuperseded, h.s.SupersededDue},
		{"TxnMarkersDue", subMarker, h.s.TxnMarkersDue},
		{"ProducersDue", subProducer, h.s.ProducersDue},
	}
	for _, c := range checks {
		// Up and then down, so a bound learned at a high cutoff answers the
		// low ones.
		for _, i := range append(indexes(len(dueTimes)), reverse(indexes(len(dueTimes)))...) {
			ms := dueTimes[i]
			got, err := c.check(id, ms)
			if err != nil {
				h.t.Fatalf("%s(%d, %d): %v", c.name, id, ms, err)
			}
			var want bool
			if c.tag == subProducer {
				want = exactProducersDue(h.t, h.s, id, ms)
			} else {
				want = exactTimedDue(h.t, h.s, id, c.tag, ms)
			}
			if got != want {
				h.t.Fatalf("%s(%d, %d) = %v, want %v (from Pebble)", c.name, id, ms, got, want)
			}
		}
	}
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func reverse(s []int) []int {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}

// eachBackend runs fn against every conformance backend.
func eachBackend(t *testing.T, fn func(h *h)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			s, reopen := be.open(t)
			fn(&h{t: t, s: s, reopen: reopen})
		})
	}
}

// TestDueBoundsFollowWrites: after every kind of write that adds to an expiry
// index, including entries older than any before them (leaders' clocks may go
// back; a superseded record is dated by its own append), after expiries and
// after a restart, each due check answers what Pebble holds.
func TestDueBoundsFollowWrites(t *testing.T) {
	eachBackend(t, func(h *h) {
		lag := AppendOptions{Policy: PolicyCompact, MinCompactionLagMs: 1000}
		h.create(1)
		h.checkDue(1)
		h.mustAppend(1, at(compact, 1000), pid(1, 0, 0), tomb("a"))
		h.checkDue(1)
		// An older tombstone and an older producer than any checked.
		h.mustAppend(1, at(compact, 100), pid(2, 0, 0), tomb("b"))
		h.checkDue(1)
		// A record held by the lag, superseded at 300: dated 200.
		h.mustAppend(1, at(lag, 200), NoProducer, kv("c", "1"))
		h.checkDue(1)
		h.mustAppend(1, at(lag, 300), NoProducer, kv("c", "2"))
		h.checkDue(1)
		// A transaction and its marker, dated 50.
		h.mustAppend(1, at(compact, 2000), txnPID(3, 0, 0), kv("d", "1"))
		h.checkDue(1)
		h.endTxn(1, at(compact, 50), Marker{ProducerID: 3, Commit: true})
		h.checkDue(1)
		// A producer idle since 100 with an open transaction is not due.
		h.mustAppend(1, at(compact, 100), txnPID(4, 0, 0), kv("e", "1"))
		h.checkDue(1)
		h.batch(func(b *Batch) {
			for _, f := range []func() (int, error){
				func() (int, error) { return b.ExpireTombstones(1, 150) },
				func() (int, error) { return b.ExpireSuperseded(1, 250) },
				func() (int, error) { return b.ExpireTxnMarkers(1, 51) },
				func() (int, error) { return b.ExpireProducers(1, 150, 5000) },
			} {
				if n, err := f(); err != nil || n != 1 {
					h.t.Fatalf("expiry removed %d, %v; want 1", n, err)
				}
			}
		})
		h.checkDue(1)
		// The transaction ends: producer 4 becomes due with no producer
		// state written (same epoch).
		h.endTxn(1, at(compact, 3000), Marker{ProducerID: 4, Commit: true})
		h.checkDue(1)
		// Due work across a restart: Open starts without bounds.
		h.mustAppend(1, at(compact, 50), pid(5, 0, 0), tomb("f"))
		h.mustAppend(1, at(compact, 3000), txnPID(6, 0, 0), kv("g", "1"))
		h.endTxn(1, at(compact, 99), Marker{ProducerID: 6})
		h.restart()
		h.checkDue(1)
		// Shards created and deleted in one batch with other writes.
		h.batch(func(b *Batch) {
			if err := b.CreateShard(2, testGroup); err != nil {
				h.t.Fatal(err)
			}
			if _, err := b.Append(2, at(compact, 100), pid(7, 0, 0), []Record{tomb("x")}); err != nil {
				h.t.Fatal(err)
			}
		})
		h.checkDue(2)
		h.batch(func(b *Batch) {
			if err := b.DeleteShard(2); err != nil {
				h.t.Fatal(err)
			}
		})
		if _, err := h.s.TombstonesDue(2, math.MaxInt64); !errors.Is(err, ErrUnknownShard) {
			h.t.Fatalf("TombstonesDue of a deleted shard: %v, want %v", err, ErrUnknownShard)
		}
		if _, err := h.s.ProducersDue(2, math.MaxInt64); !errors.Is(err, ErrUnknownShard) {
			h.t.Fatalf("ProducersDue of a deleted shard: %v, want %v", err, ErrUnknownShard)
		}
	})
}

// TestDueBoundsAfterIngest: a shard whose bounds said "nothing" learns what a
// snapshot ingest brought (a tombstone, a marker, an idle producer), and a
// shard the ingest creates starts without bounds.
func TestDueBoundsAfterIngest(t *testing.T) {
	snd, rcv := newSnapStore(t), newSnapStore(t)
	for _, st := range []*snapStore{snd, rcv} {
		st.create(sentGroup, 1)
	}
	snd.create(sentGroup, 2)
	for _, id := range []ShardID{1, 2} {
		snd.append(id, at(compact, 100), pid(1, 0, 0), tomb("a"))
		snd.append(id, at(compact, 200), txnPID(2, 0, 0), kv("b", "1"))
		snd.do(0, 0, func(b *Batch) error {
			_, err := b.EndTxn(id, at(compact, 150), Marker{ProducerID: 2, Commit: true})
			return err
		})
	}
	hr := &h{t: t, s: rcv.s}
	hr.checkDue(1) // learns: nothing in any index
	stream := export(t, snd.s, sentGroup, nil)
	if _, err := rcv.s.Ingest(bytes.NewReader(stream), ingestOpts(sentGroup, nil, 0)); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	for _, id := range []ShardID{1, 2} {
		for _, c := range []struct {
			name  string
			check func(ShardID, int64) (bool, error)
		}{{"TombstonesDue", rcv.s.TombstonesDue}, {"TxnMarkersDue", rcv.s.TxnMarkersDue}, {"ProducersDue", rcv.s.ProducersDue}} {
			if due, err := c.check(id, 1000); err != nil || !due {
				t.Fatalf("%s(%d, 1000) after ingest = %v, %v; want true", c.name, id, due, err)
			}
		}
		hr.checkDue(id)
	}
}

// TestDueBoundLearnLosesToApply: a bound read from Pebble before a batch that
// adds an older entry is applied does not become the bound after it.
func TestDueBoundLearnLosesToApply(t *testing.T) {
	eachBackend(t, func(h *h) {
		h.create(1)
		h.mustAppend(1, at(compact, 1000), NoProducer, tomb("a"))
		sh, b := h.s.dueBound(1, dueTombstones)
		// A check's read would find 1000 as the oldest now; before it stores
		// that, a batch adds a tombstone dated 100.
		h.mustAppend(1, at(compact, 100), NoProducer, tomb("b"))
		sh.learnDue(dueTombstones, b.gen, 1000)
		if due, err := h.s.TombstonesDue(1, 150); err != nil || !due {
			h.t.Fatalf("TombstonesDue(1, 150) = %v, %v; want true", due, err)
		}
		h.checkDue(1)
	})
}

// TestDueBoundsConcurrent: checks running beside batches that add and expire
// entries at random times and move the log start answer, once the writer is
// done, what Pebble holds (run with -race).
func TestDueBoundsConcurrent(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t, nil))
	hh := &h{t: t, s: s}
	hh.create(1)
	const rounds = 300
	rng := rand.New(rand.NewPCG(uint64(rounds), 7))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ms := dueTimes[1+i%(len(dueTimes)-2)]
			retention := func(id ShardID, ms int64) (bool, error) {
				_, err := s.RetentionOffset(id, ms, -1)
				return false, err
			}
			for _, check := range []func(ShardID, int64) (bool, error){s.TombstonesDue, s.ProducersDue, retention} {
				if _, err := check(1, ms); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}
	}()
	for i := range rounds {
		ms := rng.Int64N(5000)
		hh.batch(func(b *Batch) {
			if _, err := b.Append(1, at(compact, ms), pid(int64(i%17), 0, int32(i/17)), []Record{tomb(string(rune('a' + i%26)))}); err != nil {
				t.Error(err)
			}
			if i%10 == 9 {
				if _, err := b.ExpireTombstones(1, rng.Int64N(5000)); err != nil {
					t.Error(err)
				}
				if _, err := b.ExpireProducers(1, rng.Int64N(5000), 5000); err != nil {
					t.Error(err)
				}
			}
			if i%50 == 49 {
				if err := b.DeleteRecordsBefore(1, int64(i-10)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	hh.checkDue(1)
	hh.checkRetention(1)
}

// exactRetentionOffset is RetentionOffset's walk without the due bound.
func exactRetentionOffset(tb testing.TB, s *Store, id ShardID, olderThanMs, maxBytes int64) int64 {
	tb.Helper()
	st, err := s.State(id)
	if err != nil {
		tb.Fatal(err)
	}
	it, err := s.recordIter(id, st.LogStartOffset, st.HighWatermark)
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	start, remaining := st.LogStartOffset, st.LiveBytes
	for valid := it.First(); valid; valid = it.Next() {
		_, appendMs, err := recordTimes(it.Value())
		if err != nil {
			tb.Fatal(err)
		}
		if !(olderThanMs >= 0 && appendMs < olderThanMs) && !(maxBytes >= 0 && remaining > maxBytes) {
			break
		}
		start = recordOffset(it.Key()) + 1
		remaining -= int64(len(it.Value()))
	}
	return start
}

// checkRetention asks RetentionOffset at every cutoff in dueTimes (up, then
// down), without and with a bytes limit, and wants the walk's answer.
func (h *h) checkRetention(id ShardID) {
	h.t.Helper()
	st := h.state(id)
	for _, maxBytes := range []int64{-1, st.LiveBytes, st.LiveBytes / 2} {
		for _, i := range append(indexes(len(dueTimes)), reverse(indexes(len(dueTimes)))...) {
			ms := dueTimes[i]
			if ms == math.MinInt64 {
				ms = -1 // RetentionOffset's "no time limit"
			}
			got, err := h.s.RetentionOffset(id, ms, maxBytes)
			if err != nil {
				h.t.Fatalf("RetentionOffset(%d, %d, %d): %v", id, ms, maxBytes, err)
			}
			if want := exactRetentionOffset(h.t, h.s, id, ms, maxBytes); got != want {
				h.t.Fatalf("RetentionOffset(%d, %d, %d) = %d, want %d (from Pebble)", id, ms, maxBytes, got, want)
			}
		}
	}
}

// TestRetentionBoundFollowsWrites: RetentionOffset, answered from the first
// record's due bound where it can, agrees with the walk from the log start
// after appends (older ones too), log start moves, compaction and aborted
// transactions that make a later record the first, and a restart.
func TestRetentionBoundFollowsWrites(t *testing.T) {
	eachBackend(t, func(h *h) {
		h.create(1, 2)
		h.checkRetention(1)
		// Delete policy: appends, an older one, a log start move.
		h.mustAppend(1, at(del, 1000), NoProducer, kv("a", "1"), kv("b", "1"))
		h.checkRetention(1)
		h.mustAppend(1, at(del, 100), NoProducer, kv("c", "1"))
		h.checkRetention(1)
		h.batch(func(b *Batch) {
			if err := b.DeleteRecordsBefore(1, 2); err != nil {
				h.t.Fatal(err)
			}
		})
		h.checkRetention(1)
		// Compact policy (compact,delete): the first record is replaced, and
		// the record after it is older (a leader's clock went back).
		h.mustAppend(2, at(compact, 1000), NoProducer, kv("a", "1"))
		h.mustAppend(2, at(compact, 50), NoProducer, kv("b", "1"))
		h.checkRetention(2)
		h.mustAppend(2, at(compact, 2000), NoProducer, kv("a", "2"))
		h.checkRetention(2)
		// An aborted transaction's records at the front are deleted.
		h.create(3)
		h.mustAppend(3, at(compact, 1000), txnPID(9, 0, 0), kv("x", "1"))
		h.checkRetention(3)
		h.mustAppend(3, at(compact, 99), NoProducer, kv("y", "1"))
		h.checkRetention(3)
		h.endTxn(3, at(compact, 5000), Marker{ProducerID: 9})
		h.checkRetention(3)
		// A marker alone (nothing staged) is a record too.
		h.create(4)
		h.checkRetention(4)
		h.endTxn(4, at(compact, 10), Marker{ProducerID: 9, Commit: true})
		h.checkRetention(4)
		h.restart()
		for _, id := range []ShardID{1, 2, 3, 4} {
			h.checkRetention(id)
		}
		if _, err := h.s.RetentionOffset(5, 0, -1); !errors.Is(err, ErrUnknownShard) {
			h.t.Fatalf("RetentionOffset of an unknown shard: %v, want %v", err, ErrUnknownShard)
		}
	})
}
