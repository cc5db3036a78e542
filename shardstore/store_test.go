package shardstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// backend is one way of running the conformance suite.
type backend struct {
	name string
	// open returns a store and a reopen function: the on-disk backend closes
	// and reopens the store (so every step after a reopen reads what Open loads
	// from disk); the in-memory one keeps it.
	open func(tb testing.TB) (*Store, func(*Store) *Store)
}

var backends = []backend{
	{name: "memfs", open: func(tb testing.TB) (*Store, func(*Store) *Store) {
		s := openStore(tb, "db", testOptions(tb, vfs.NewMem()))
		return s, func(s *Store) *Store { return s }
	}},
	{name: "dir-reopen", open: func(tb testing.TB) (*Store, func(*Store) *Store) {
		dir := tb.TempDir()
		s := openStore(tb, dir, testOptions(tb, nil))
		return s, func(s *Store) *Store {
			tb.Helper()
			if err := s.Close(); err != nil {
				tb.Fatalf("close: %v", err)
			}
			return openStore(tb, dir, testOptions(tb, nil))
		}
	}},
}

func testOptions(tb testing.TB, fs vfs.FS) Options {
	return Options{FS: fs, CacheBytes: 8 << 20, MemTableBytes: 4 << 20, Logger: testLogger(tb)}
}

// testLogger sends the store's logs to tb.Log, so only failing tests print them.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func openStore(tb testing.TB, dir string, opts Options) *Store {
	tb.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// h is a conformance test's handle on the store under test.
type h struct {
	t      *testing.T
	s      *Store
	reopen func(*Store) *Store
}

// restart reopens the store (a no-op for the in-memory backend).
func (h *h) restart() { h.t.Helper(); h.s = h.reopen(h.s) }

// forgetDue forgets a shard's due bounds, as Open starts without them: for
// tests that write the shard's keys behind the Batch's back.
func (h *h) forgetDue(id ShardID) {
	h.t.Helper()
	sh := h.s.shard(id)
	if sh == nil {
		h.t.Fatalf("shard %d: %v", id, ErrUnknownShard)
	}
	sh.mu.Lock()
	sh.due.reset()
	sh.mu.Unlock()
}

func (h *h) create(ids ...ShardID) {
	h.t.Helper()
	b := h.s.NewBatch()
	defer b.Close()
	for _, id := range ids {
		if err := b.CreateShard(id, testGroup); err != nil {
			h.t.Fatalf("create %d: %v", id, err)
		}
	}
	h.commit(b)
}

func (h *h) commit(b *Batch) {
	h.t.Helper()
	if err := b.Commit(); err != nil {
		h.t.Fatalf("commit: %v", err)
	}
}

// append commits one Append and returns its result or error.
func (h *h) append(id ShardID, o AppendOptions, p Producer, recs ...Record) (AppendResult, error) {
	h.t.Helper()
	b := h.s.NewBatch()
	defer b.Close()
	res, err := b.Append(id, o, p, recs)
	if err != nil {
		return res, err
	}
	h.commit(b)
	return res, nil
}

func (h *h) mustAppend(id ShardID, o AppendOptions, p Producer, recs ...Record) AppendResult {
	h.t.Helper()
	res, err := h.append(id, o, p, recs...)
	if err != nil {
		h.t.Fatalf("append: %v", err)
	}
	return res
}

func (h *h) state(id ShardID) State {
	h.t.Helper()
	st, err := h.s.State(id)
	if err != nil {
		h.t.Fatalf("state: %v", err)
	}
	return st
}

func (h *h) read(id ShardID, from int64) []Record {
	h.t.Helper()
	recs, err := h.s.Read(id, from, 0, 0)
	if err != nil {
		h.t.Fatalf("read: %v", err)
	}
	return recs
}

// batchOp runs ops in one batch and commits it.
func (h *h) batch(ops func(b *Batch)) {
	h.t.Helper()
	b := h.s.NewBatch()
	defer b.Close()
	ops(b)
	h.commit(b)
}

func offsets(recs []Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Offset
	}
	return out
}

func kv(k, v string) Record { return Record{Key: []byte(k), Value: []byte(v)} }

func tomb(k string) Record { return Record{Key: []byte(k)} }

// testGroup is the Raft group h.create records its shards in.
const testGroup = 3

var (
	compact = AppendOptions{Policy: PolicyCompact}
	del     = AppendOptions{Policy: PolicyDelete}
)

func at(o AppendOptions, ms int64) AppendOptions { o.AppendTimeMs = ms; return o }

func pid(id int64, epoch int16, seq int32) Producer {
	return Producer{ID: id, Epoch: epoch, BaseSequence: seq}
}

func wantOffsets(t *testing.T, recs []Record, want ...int64) {
	t.Helper()
	if got := offsets(recs); !slices.Equal(got, want) {
		t.Fatalf("offsets = %v, want %v", got, want)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

// TestConformance runs every behaviour of the store against each backend.
func TestConformance(t *testing.T) {
	tests := []struct {
		name string
		run  func(h *h)
	}{
		{"OffsetsDenseAndMonotonic", testOffsetsDense},
		{"CompactionKeepsLatestPerKey", testCompactionLatest},
		{"ShuffledKeysAgainstModel", testShuffledKeys},
		{"ReadFromCompactedOffset", testReadCompactedOffset},
		{"ReadSupersededTail", testReadSupersededTail},
		{"KeylessRecords", testKeyless},
		{"Tombstones", testTombstones},
		{"LogStartUnderCompaction", testLogStartUnderCompaction},
		{"DeleteRecordsBefore", testDeleteRecordsBefore},
		{"RetentionOffset", testRetentionOffset},
		{"OffsetForTime", testOffsetForTime},
		{"Idempotence", testIdempotence},
		{"SequenceWindowAndWrap", testSequenceWindow},
		{"ProducerExpiry", testProducerExpiry},
		{"ProducerCacheFollowsCommits", testProducerCache},
		{"SeveralAppendsInOneBatch", testSeveralAppends},
		{"FailedAppendKeepsBatch", testFailedAppend},
		{"DeleteShard", testDeleteShard},
		{"WaitWakesOnCommit", testWait},
		{"AppliedRoundTrip", testApplied},
		{"MinCompactionLag", testMinCompactionLag},
		{"ReplacedRunsDeletedByRange", testReplacedRuns},
		{"ShardErrors", testShardErrors},
		{"ReadLimitsAndEncoding", testReadLimits},
		{"KeyCacheBounded", testKeyCacheBounded},
		{"KeyCacheBoundedInBytes", testKeyCacheBytes},
		{"KeyCacheAdmitsOneInEight", testKeyCacheAdmission},
		{"ConcurrentReaders", testConcurrentReaders},
		{"GroupRegistry", testGroupRegistry},
		{"TransactionCommit", testTxnCommit},
		{"TransactionStateCached", testTxnStateCached},
		{"TransactionAbort", testTxnAbort},
		{"TransactionFencing", testTxnFencing},
		{"TransactionMarkerExpiry", testTxnMarkerExpiry},
		{"TransactionMarkerBelowLogStart", testTxnMarkerBelowLogStart},
		{"TransactionProducerExpiry", testTxnProducerExpiry},
		{"Producers", testProducers},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					s, reopen := be.open(t)
					tc.run(&h{t: t, s: s, reopen: reopen})
				})
			}
		})
	}
}

func testOffsetsDense(h *h) {
	h.create(1)
	if got := h.mustAppend(1, del, NoProducer, kv("a", "1"), kv("b", "2"), Record{Value: []byte("x")}); got.BaseOffset != 0 {
		h.t.Fatalf("base = %d, want 0", got.BaseOffset)
	}
	h.restart()
	if got := h.mustAppend(1, del, NoProducer, kv("a", "3")); got.BaseOffset != 3 {
		h.t.Fatalf("base = %d, want 3", got.BaseOffset)
	}
	if got := h.mustAppend(1, compact, NoProducer, kv("c", "4"), kv("d", "5")); got.BaseOffset != 4 {
		h.t.Fatalf("base = %d, want 4", got.BaseOffset)
	}
	h.restart()
	wantOffsets(h.t, h.read(1, 0), 0, 1, 2, 3, 4, 5)
	if st := h.state(1); st.HighWatermark != 6 || st.LiveRecords != 6 || st.LogStartOffset != 0 {
		h.t.Fatalf("state = %+v", st)
	}
}

func testCompactionLatest(h *h) {
	const keys, writes = 1000, 10
	h.create(1)
	for w := range writes {
		recs := make([]Record, 0, keys)
		for k := range keys {
			recs = append(recs, kv(fmt.Sprintf("key-%04d", k), fmt.Sprintf("v%d", w)))
		}
		// Two Appends per write round, of 500 records each.
		h.mustAppend(1, compact, NoProducer, recs[:keys/2]...)
		h.mustAppend(1, compact, NoProducer, recs[keys/2:]...)
		if w == writes/2 {
			h.restart()
		}
	}
	recs := h.read(1, 0)
	if len(recs) != keys {
		h.t.Fatalf("read %d records, want %d", len(recs), keys)
	}
	for i, r := range recs {
		if want := fmt.Sprintf("key-%04d", i); string(r.Key) != want || string(r.Value) != fmt.Sprintf("v%d", writes-1) {
			h.t.Fatalf("record %d = %s=%s", i, r.Key, r.Value)
		}
		if want := int64((writes-1)*keys + i); r.Offset != want {
			h.t.Fatalf("record %d offset %d, want %d", i, r.Offset, want)
		}
	}
	st := h.state(1)
	if st.HighWatermark != keys*writes || st.LiveKeys != keys || st.LiveRecords != keys || st.Tombstones != 0 {
		h.t.Fatalf("state = %+v", st)
	}
	var size int64
	for _, r := range recs {
		size += int64(len(appendRecord(nil, &r, 0)))
	}
	if st.LiveBytes != size {
		h.t.Fatalf("live bytes %d, want %d", st.LiveBytes, size)
	}
	rec, ok, err := h.s.Lookup(1, []byte("key-0042"))
	if err != nil || !ok || string(rec.Value) != "v9" || rec.Offset != 9042 {
		h.t.Fatalf("lookup = %+v %v %v", rec, ok, err)
	}
}

// testShuffledKeys appends batches of keys in random order, with repeats,
// tombstones, and keys replaced in the same batch and across batches, and
// checks the shard against a model after each (Append writes all of a batch's
// records before their key index entries and deletes).
func testShuffledKeys(h *h) {
	type live struct {
		offset int64
		value  []byte // nil for a tombstone
	}
	rng := rand.New(rand.NewPCG(7, 11))
	model := map[string]live{}
	h.create(1)
	next := int64(0)
	for round := range 30 {
		b := h.s.NewBatch()
		for range 1 + rng.IntN(3) {
			recs := make([]Record, 1+rng.IntN(200))
			for i := range recs {
				k := fmt.Sprintf("k%03d", rng.IntN(400))
				recs[i] = Record{Key: []byte(k)}
				if rng.IntN(10) > 0 {
					recs[i].Value = fmt.Appendf(nil, "r%d-%d", round, i)
				}
			}
			res, err := b.Append(1, at(compact, int64(round)), NoProducer, recs)
			if err != nil {
				h.t.Fatalf("round %d: append: %v", round, err)
			}
			if res.BaseOffset != next {
				h.t.Fatalf("round %d: base offset %d, want %d", round, res.BaseOffset, next)
			}
			for i, r := range recs {
				model[string(r.Key)] = live{offset: next + int64(i), value: r.Value}
			}
			next += int64(len(recs))
		}
		h.commit(b)
		if round == 15 {
			h.restart()
		}

		want := make([]live, 0, len(model))
		var liveKeys, tombs int64
		for _, l := range model {
			want = append(want, l)
			if l.value == nil {
				tombs++
			} else {
				liveKeys++
			}
		}
		slices.SortFunc(want, func(x, y live) int { return cmp.Compare(x.offset, y.offset) })
		got := h.read(1, 0)
		if len(got) != len(want) {
			h.t.Fatalf("round %d: read %d records, want %d", round, len(got), len(want))
		}
		var size int64
		for i, r := range got {
			if r.Offset != want[i].offset || !bytes.Equal(r.Value, want[i].value) || (r.Value == nil) != (want[i].value == nil) {
				h.t.Fatalf("round %d: record %d = %s=%q at %d, want %q at %d", round, i, r.Key, r.Value, r.Offset, want[i].value, want[i].offset)
			}
			size += int64(len(appendRecord(nil, &r, int64(round))))
		}
		st := h.state(1)
		if st.HighWatermark != next || st.LiveKeys != liveKeys || st.Tombstones != tombs || st.LiveRecords != int64(len(want)) || st.LiveBytes != size {
			h.t.Fatalf("round %d: state %+v, want hw %d, %d live keys, %d tombstones, %d records of %d bytes",
				round, st, next, liveKeys, tombs, len(want), size)
		}
		for k, l := range model {
			rec, ok, err := h.s.Lookup(1, []byte(k))
			if err != nil || !ok || rec.Offset != l.offset {
				h.t.Fatalf("round %d: lookup %s = %+v %v %v, want offset %d", round, k, rec, ok, err, l.offset)
			}
		}
	}
}

func testReadCompactedOffset(h *h) {
	h.create(1)
	h.mustAppend(1, compact, NoProducer, kv("a", "1"))               // 0, replaced by 2
	h.mustAppend(1, compact, NoProducer, kv("b", "1"))               // 1
	h.mustAppend(1, compact, NoProducer, kv("a", "2"), kv("c", "1")) // 2, 3
	h.restart()
	wantOffsets(h.t, h.read(1, 0), 1, 2, 3)
	recs, err := h.s.Read(1, 0, 0, 1)
	if err != nil {
		h.t.Fatal(err)
	}
	wantOffsets(h.t, recs, 1)
	// Collapsed records inside one Append leave gaps too.
	h.mustAppend(1, compact, NoProducer, kv("d", "1"), kv("d", "2"), kv("e", "1")) // 4 collapsed, 5, 6
	wantOffsets(h.t, h.read(1, 4), 5, 6)
}

func testReadSupersededTail(h *h) {
	h.create(1)
	h.mustAppend(1, at(compact, 10), NoProducer, kv("a", "1"), kv("b", "1")) // 0, 1
	h.mustAppend(1, at(compact, 20), NoProducer, tomb("b"))                  // 2
	h.batch(func(b *Batch) {
		if n, err := b.ExpireTombstones(1, 21); err != nil || n != 1 {
			h.t.Fatalf("expire = %d, %v", n, err)
		}
	})
	h.restart()
	if recs := h.read(1, 1); len(recs) != 0 {
		h.t.Fatalf("read from 1 = %v, want nothing", offsets(recs))
	}
	if st := h.state(1); st.HighWatermark != 3 {
		h.t.Fatalf("high watermark %d, want 3", st.HighWatermark)
	}
	wantOffsets(h.t, h.read(1, 0), 0)
	if recs := h.read(1, 3); len(recs) != 0 {
		h.t.Fatalf("read at the high watermark = %v", offsets(recs))
	}
}

func testKeyless(h *h) {
	h.create(1, 2)
	_, err := h.append(1, compact, NoProducer, kv("a", "1"), Record{Value: []byte("keyless")})
	wantErr(h.t, err, ErrKeyRequired)
	if st := h.state(1); st.HighWatermark != 0 || st.LiveRecords != 0 {
		h.t.Fatalf("rejected batch wrote something: %+v", st)
	}
	if recs := h.read(1, 0); len(recs) != 0 {
		h.t.Fatalf("rejected batch readable: %v", offsets(recs))
	}
	// An empty key is a key.
	h.mustAppend(1, compact, NoProducer, Record{Key: []byte{}, Value: []byte("1")})
	h.mustAppend(2, del, NoProducer, Record{Value: []byte("x")}, Record{Value: []byte("y")})
	h.restart()
	recs := h.read(2, 0)
	wantOffsets(h.t, recs, 0, 1)
	if recs[0].Key != nil {
		h.t.Fatalf("keyless record read with key %q", recs[0].Key)
	}
	recs = h.read(1, 0)
	if len(recs) != 1 || recs[0].Key == nil || len(recs[0].Key) != 0 {
		h.t.Fatalf("empty key read as %#v", recs)
	}
}

func testTombstones(h *h) {
	h.create(1)
	h.mustAppend(1, at(compact, 100), NoProducer, kv("a", "1"), kv("b", "1"), Record{Key: []byte("c"), Value: []byte{}})
	h.mustAppend(1, at(compact, 200), NoProducer, tomb("a")) // 3
	h.restart()
	st := h.state(1)
	if st.LiveKeys != 2 || st.Tombstones != 1 || st.LiveRecords != 3 {
		h.t.Fatalf("state = %+v", st)
	}
	rec, ok, err := h.s.Lookup(1, []byte("a"))
	if err != nil || !ok || rec.Value != nil || rec.Offset != 3 {
		h.t.Fatalf("lookup tombstone = %+v %v %v", rec, ok, err)
	}
	rec, ok, err = h.s.Lookup(1, []byte("c"))
	if err != nil || !ok || rec.Value == nil || len(rec.Value) != 0 {
		h.t.Fatalf("lookup empty value = %#v %v %v", rec, ok, err)
	}
	recs := h.read(1, 0)
	wantOffsets(h.t, recs, 1, 2, 3)
	if recs[2].Value != nil {
		h.t.Fatalf("tombstone read with value %q", recs[2].Value)
	}
	for _, c := range []struct {
		before int64
		want   bool
	}{{200, false}, {201, true}} {
		if due, err := h.s.TombstonesDue(1, c.before); err != nil || due != c.want {
			h.t.Fatalf("TombstonesDue(before %d) = %v, %v; want %v", c.before, due, err, c.want)
		}
	}
	h.batch(func(b *Batch) {
		if n, err := b.ExpireTombstones(1, 200); err != nil || n != 0 {
			h.t.Fatalf("expire before the tombstone = %d, %v", n, err)
		}
	})
	h.batch(func(b *Batch) {
		if n, err := b.ExpireTombstones(1, 201); err != nil || n != 1 {
			h.t.Fatalf("expire = %d, %v", n, err)
		}
	})
	h.restart()
	if _, ok, err := h.s.Lookup(1, []byte("a")); err != nil || ok {
		h.t.Fatalf("expired key still found: %v %v", ok, err)
	}
	wantOffsets(h.t, h.read(1, 0), 1, 2)
	st = h.state(1)
	if st.LiveKeys != 2 || st.Tombstones != 0 || st.LiveRecords != 2 || st.HighWatermark != 4 {
		h.t.Fatalf("state after expiry = %+v", st)
	}
	// The key can be written again, and a tombstone of a tombstone replaces it.
	h.mustAppend(1, at(compact, 300), NoProducer, kv("a", "2"))
	h.mustAppend(1, at(compact, 300), NoProducer, tomb("b"))
	h.mustAppend(1, at(compact, 300), NoProducer, tomb("b"))
	st = h.state(1)
	if st.LiveKeys != 2 || st.Tombstones != 1 || st.LiveRecords != 3 {
		h.t.Fatalf("state after rewrites = %+v", st)
	}
	wantOffsets(h.t, h.read(1, 0), 2, 4, 6)
}

func testLogStartUnderCompaction(h *h) {
	h.create(1)
	for i := range 5 {
		h.mustAppend(1, compact, NoProducer, kv("a", fmt.Sprint(i)))
	}
	h.restart()
	if st := h.state(1); st.LogStartOffset != 0 || st.HighWatermark != 5 || st.LiveRecords != 1 {
		h.t.Fatalf("state = %+v", st)
	}
	wantOffsets(h.t, h.read(1, 0), 4)
}

func testDeleteRecordsBefore(h *h) {
	h.create(1, 2)
	for i := range 10 {
		h.mustAppend(1, del, NoProducer, kv(fmt.Sprint(i%3), "v"))
	}
	b := h.s.NewBatch()
	wantErr(h.t, b.DeleteRecordsBefore(1, 11), ErrOffsetOutOfRange)
	if err := b.DeleteRecordsBefore(1, 4); err != nil {
		h.t.Fatal(err)
	}
	h.commit(b)
	h.restart()
	h.batch(func(b *Batch) {
		if err := b.DeleteRecordsBefore(1, 2); err != nil { // below the log start: no-op
			h.t.Fatal(err)
		}
	})
	st := h.state(1)
	if st.LogStartOffset != 4 || st.LiveRecords != 6 || st.HighWatermark != 10 {
		h.t.Fatalf("state = %+v", st)
	}
	wantOffsets(h.t, h.read(1, 0), 4, 5, 6, 7, 8, 9)
	h.batch(func(b *Batch) {
		if err := b.DeleteRecordsBefore(1, 10); err != nil { // everything
			h.t.Fatal(err)
		}
	})
	if st := h.state(1); st.LogStartOffset != 10 || st.LiveRecords != 0 || st.LiveBytes != 0 {
		h.t.Fatalf("state = %+v", st)
	}

	// On a compacted shard the removed keys leave the key index.
	h.mustAppend(2, at(compact, 1), NoProducer, kv("a", "1"), tomb("b"), kv("c", "1")) // 0, 1, 2
	h.mustAppend(2, at(compact, 1), NoProducer, kv("a", "2"))                          // 3
	h.batch(func(b *Batch) {
		if err := b.DeleteRecordsBefore(2, 3); err != nil {
			h.t.Fatal(err)
		}
	})
	h.restart()
	for key, want := range map[string]bool{"a": true, "b": false, "c": false} {
		if _, ok, err := h.s.Lookup(2, []byte(key)); err != nil || ok != want {
			h.t.Fatalf("lookup %s = %v %v, want %v", key, ok, err, want)
		}
	}
	if st := h.state(2); st.LiveKeys != 1 || st.Tombstones != 0 || st.LiveRecords != 1 || st.LogStartOffset != 3 {
		h.t.Fatalf("state = %+v", st)
	}
	// The tombstone's expiry entry went with it.
	h.batch(func(b *Batch) {
		if n, err := b.ExpireTombstones(2, math.MaxInt64-1); err != nil || n != 0 {
			h.t.Fatalf("expire = %d, %v", n, err)
		}
	})
}

func testRetentionOffset(h *h) {
	h.create(1)
	for i, ms := range []int64{100, 200, 300} {
		h.mustAppend(1, at(del, ms), NoProducer, kv("k", fmt.Sprint(i)), kv("k", fmt.Sprint(i)))
	}
	h.restart()
	st := h.state(1)
	size := st.LiveBytes / 6 // all records encode to the same size
	tests := []struct {
		olderThan, maxBytes, want int64
	}{
		{-1, -1, 0},
		{100, -1, 0},
		{101, -1, 2},
		{250, -1, 4},
		{1000, -1, 6},
		{-1, st.LiveBytes, 0},
		{-1, st.LiveBytes - 1, 1},
		{-1, 2 * size, 4},
		{-1, 0, 6},
		{101, 4 * size, 2},
		{101, 3 * size, 3},
		{250, 5 * size, 4},
	}
	for _, tc := range tests {
		got, err := h.s.RetentionOffset(1, tc.olderThan, tc.maxBytes)
		if err != nil || got != tc.want {
			h.t.Errorf("RetentionOffset(%d, %d) = %d, %v, want %d", tc.olderThan, tc.maxBytes, got, err, tc.want)
		}
	}
	h.batch(func(b *Batch) {
		if err := b.DeleteRecordsBefore(1, 2); err != nil {
			h.t.Fatal(err)
		}
	})
	if got, err := h.s.RetentionOffset(1, 101, -1); err != nil || got != 2 {
		h.t.Fatalf("after the move = %d, %v, want the log start 2", got, err)
	}
}

func testOffsetForTime(h *h) {
	h.create(1)
	recs := []Record{
		{Key: []byte("a"), Value: []byte("v"), Timestamp: 10},
		{Key: []byte("b"), Value: []byte("v"), Timestamp: 50},
		{Key: []byte("c"), Value: []byte("v"), Timestamp: 20},
		{Key: []byte("d"), Value: []byte("v"), Timestamp: 40},
		{Key: []byte("e"), Value: []byte("v"), Timestamp: 30},
	}
	h.mustAppend(1, compact, NoProducer, recs...)
	h.mustAppend(1, compact, NoProducer, Record{Key: []byte("b"), Value: []byte("w"), Timestamp: 5}) // 5; 1 is gone
	h.restart()
	if st := h.state(1); st.MaxTimestamp != 50 || st.MaxTimestampOffset != 1 {
		h.t.Fatalf("max timestamp %d at %d", st.MaxTimestamp, st.MaxTimestampOffset)
	}
	tests := []struct {
		ts, off, rts int64
		ok           bool
	}{
		{0, 0, 10, true},
		{10, 0, 10, true},
		{11, 2, 20, true},
		{25, 3, 40, true},
		{35, 3, 40, true},
		{41, 0, 0, false}, // 50 was compacted away
		{51, 0, 0, false},
	}
	for _, tc := range tests {
		off, rts, ok, err := h.s.OffsetForTime(1, tc.ts)
		if err != nil || ok != tc.ok || (ok && (off != tc.off || rts != tc.rts)) {
			h.t.Errorf("OffsetForTime(%d) = %d, %d, %v, %v; want %d, %d, %v", tc.ts, off, rts, ok, err, tc.off, tc.rts, tc.ok)
		}
	}
}

func testIdempotence(h *h) {
	h.create(1)
	three := []Record{kv("a", "1"), kv("b", "1"), kv("c", "1")}
	if r := h.mustAppend(1, compact, pid(7, 0, 0), three...); r.BaseOffset != 0 || r.Duplicate {
		h.t.Fatalf("first = %+v", r)
	}
	if r := h.mustAppend(1, compact, pid(7, 0, 3), kv("a", "2"), kv("d", "1")); r.BaseOffset != 3 {
		h.t.Fatalf("second = %+v", r)
	}
	h.restart()
	// A retry of either remembered batch gets its offset back and writes nothing.
	if r := h.mustAppend(1, compact, pid(7, 0, 0), three...); r.BaseOffset != 0 || !r.Duplicate {
		h.t.Fatalf("retry = %+v", r)
	}
	if r := h.mustAppend(1, compact, pid(7, 0, 3), kv("a", "2"), kv("d", "1")); r.BaseOffset != 3 || !r.Duplicate {
		h.t.Fatalf("retry = %+v", r)
	}
	if st := h.state(1); st.HighWatermark != 5 {
		h.t.Fatalf("duplicate written: %+v", st)
	}
	// Duplicate answers the same from committed state, and nothing else.
	for _, tc := range []struct {
		p    Producer
		n    int
		base int64
		dup  bool
	}{{pid(7, 0, 0), 3, 0, true}, {pid(7, 0, 3), 2, 3, true}, {pid(7, 0, 3), 1, 0, false},
		{pid(7, 0, 5), 1, 0, false}, {pid(7, 1, 0), 3, 0, false}, {pid(9, 0, 0), 3, 0, false}, {NoProducer, 1, 0, false}} {
		r, dup, err := h.s.Duplicate(1, tc.p, tc.n)
		if err != nil || dup != tc.dup || dup && (r.BaseOffset != tc.base || !r.Duplicate) {
			h.t.Fatalf("Duplicate(%+v, %d) = %+v, %v, %v; want base %d, %v", tc.p, tc.n, r, dup, err, tc.base, tc.dup)
		}
	}
	_, err := h.append(1, compact, pid(7, 0, 6), kv("x", "1")) // expected 5
	wantErr(h.t, err, ErrOutOfOrderSequence)
	_, err = h.append(1, compact, pid(7, 1, 3), kv("x", "1")) // new epoch must start at 0
	wantErr(h.t, err, ErrOutOfOrderSequence)
	if r := h.mustAppend(1, compact, pid(7, 1, 0), kv("x", "1")); r.BaseOffset != 5 {
		h.t.Fatalf("new epoch = %+v", r)
	}
	_, err = h.append(1, compact, pid(7, 0, 5), kv("x", "1"))
	wantErr(h.t, err, ErrInvalidProducerEpoch)
	h.restart()
	if r := h.mustAppend(1, compact, pid(7, 1, 0), kv("x", "1")); r.BaseOffset != 5 || !r.Duplicate {
		h.t.Fatalf("retry after reopen = %+v", r)
	}
	if r := h.mustAppend(1, compact, pid(7, 1, 1), kv("y", "1")); r.BaseOffset != 6 || r.Duplicate {
		h.t.Fatalf("next = %+v", r)
	}
	// An unknown producer may start anywhere; producers are per shard.
	if r := h.mustAppend(1, compact, pid(8, 3, 42), kv("z", "1")); r.BaseOffset != 7 {
		h.t.Fatalf("unknown producer = %+v", r)
	}
	// Producers that are not idempotent are never deduplicated.
	h.mustAppend(1, compact, NoProducer, kv("n", "1"))
	if r := h.mustAppend(1, compact, NoProducer, kv("n", "1")); r.BaseOffset != 9 || r.Duplicate {
		h.t.Fatalf("no producer = %+v", r)
	}
	// Compaction never forgets producer state: every record of producer 7 is
	// replaced, its retry is still a duplicate.
	h.mustAppend(1, compact, NoProducer, kv("a", "3"), kv("b", "3"), kv("c", "3"), kv("d", "3"), kv("x", "3"), kv("y", "3"))
	if r := h.mustAppend(1, compact, pid(7, 1, 1), kv("y", "1")); r.BaseOffset != 6 || !r.Duplicate {
		h.t.Fatalf("retry after compaction = %+v", r)
	}
}

func testSequenceWindow(h *h) {
	h.create(1)
	for i := range 6 {
		h.mustAppend(1, del, pid(1, 0, int32(i)), kv("k", "v"))
	}
	// Batches 1..5 are remembered, batch 0 is not.
	if r := h.mustAppend(1, del, pid(1, 0, 1), kv("k", "v")); !r.Duplicate || r.BaseOffset != 1 {
		h.t.Fatalf("remembered retry = %+v", r)
	}
	_, err := h.append(1, del, pid(1, 0, 0), kv("k", "v"))
	wantErr(h.t, err, ErrOutOfOrderSequence)
	// A retry must match the batch exactly.
	_, err = h.append(1, del, pid(1, 0, 5), kv("k", "v"), kv("k", "v"))
	wantErr(h.t, err, ErrOutOfOrderSequence)

	// Sequences wrap from MaxInt32 to 0.
	h.mustAppend(1, del, pid(2, 0, math.MaxInt32-1), kv("k", "v"), kv("k", "v"), kv("k", "v"))
	h.restart()
	_, err = h.append(1, del, pid(2, 0, 0), kv("k", "v"))
	wantErr(h.t, err, ErrOutOfOrderSequence)
	h.mustAppend(1, del, pid(2, 0, 1), kv("k", "v"))
	if r := h.mustAppend(1, del, pid(2, 0, math.MaxInt32-1), kv("k", "v"), kv("k", "v"), kv("k", "v")); !r.Duplicate {
		h.t.Fatalf("wrapped retry = %+v", r)
	}
}

func testSeveralAppends(h *h) {
	h.create(1)
	h.mustAppend(1, at(compact, 1), NoProducer, kv("a", "0")) // 0
	b := h.s.NewBatch()
	defer b.Close()
	steps := []struct {
		recs []Record
		p    Producer
		base int64
	}{
		{[]Record{kv("a", "1")}, pid(3, 0, 0), 1},
		{[]Record{kv("a", "2"), kv("b", "1")}, pid(3, 0, 1), 2},
		{[]Record{tomb("b"), kv("c", "1")}, NoProducer, 4},
	}
	for _, s := range steps {
		r, err := b.Append(1, at(compact, 1), s.p, s.recs)
		if err != nil || r.BaseOffset != s.base {
			h.t.Fatalf("append = %+v, %v; want base %d", r, err, s.base)
		}
	}
	// A retry inside the same batch is seen as one.
	if r, err := b.Append(1, at(compact, 1), pid(3, 0, 1), []Record{kv("a", "2"), kv("b", "1")}); err != nil || !r.Duplicate || r.BaseOffset != 2 {
		h.t.Fatalf("retry in batch = %+v, %v", r, err)
	}
	// Nothing is visible before Commit.
	if st := h.state(1); st.HighWatermark != 1 {
		h.t.Fatalf("uncommitted state visible: %+v", st)
	}
	wantOffsets(h.t, h.read(1, 0), 0)
	// Scans see the batch's own writes: the tombstone appended above expires.
	if n, err := b.ExpireTombstones(1, 2); err != nil || n != 1 {
		h.t.Fatalf("expire in batch = %d, %v", n, err)
	}
	if _, err := b.Append(1, at(compact, 1), NoProducer, []Record{kv("c", "2")}); err != nil { // 6
		h.t.Fatal(err)
	}
	h.commit(b)
	h.restart()
	recs := h.read(1, 0)
	wantOffsets(h.t, recs, 2, 6)
	if string(recs[0].Value) != "2" || string(recs[1].Value) != "2" {
		h.t.Fatalf("values %q %q", recs[0].Value, recs[1].Value)
	}
	st := h.state(1)
	if st.HighWatermark != 7 || st.LiveKeys != 2 || st.LiveRecords != 2 || st.Tombstones != 0 {
		h.t.Fatalf("state = %+v", st)
	}
	if _, ok, _ := h.s.Lookup(1, []byte("b")); ok {
		h.t.Fatal("expired key b still found")
	}
}

func testFailedAppend(h *h) {
	h.create(1)
	h.mustAppend(1, compact, pid(4, 0, 0), kv("p", "1"))
	b := h.s.NewBatch()
	defer b.Close()
	if _, err := b.Append(1, compact, NoProducer, []Record{kv("a", "1")}); err != nil {
		h.t.Fatal(err)
	}
	for _, bad := range []struct {
		p    Producer
		recs []Record
		want error
	}{
		{NoProducer, []Record{kv("a", "2"), {Value: []byte("keyless")}}, ErrKeyRequired},
		{NoProducer, nil, ErrEmptyBatch},
		{pid(4, 0, 5), []Record{kv("a", "3")}, ErrOutOfOrderSequence},
	} {
		_, err := b.Append(1, compact, bad.p, bad.recs)
		wantErr(h.t, err, bad.want)
	}
	if _, err := b.Append(1, compact, pid(4, 0, 1), []Record{kv("b", "1")}); err != nil {
		h.t.Fatal(err)
	}
	h.commit(b)
	recs := h.read(1, 0)
	wantOffsets(h.t, recs, 0, 1, 2)
	if string(recs[1].Value) != "1" {
		h.t.Fatalf("a = %q, want the first write", recs[1].Value)
	}
}

func testDeleteShard(h *h) {
	h.create(1, 2)
	h.mustAppend(1, at(compact, 5), pid(1, 0, 0), kv("a", "1"), tomb("b"))
	h.mustAppend(1, AppendOptions{Policy: PolicyCompact, AppendTimeMs: 6, MinCompactionLagMs: 100}, NoProducer, kv("a", "2"))
	h.mustAppend(2, compact, NoProducer, kv("a", "1"))
	h.restart()
	ch := h.s.Wait(1)
	h.batch(func(b *Batch) {
		if err := b.DeleteShard(1); err != nil {
			h.t.Fatal(err)
		}
		wantErr(h.t, b.DeleteShard(1), ErrUnknownShard)
		_, err := b.Append(1, compact, NoProducer, []Record{kv("a", "1")})
		wantErr(h.t, err, ErrUnknownShard)
	})
	select {
	case <-ch:
	default:
		h.t.Fatal("Wait not woken by the shard's deletion")
	}
	h.restart()
	it, err := h.s.DB().NewIter(&pebble.IterOptions{LowerBound: shardPrefix(1), UpperBound: shardEnd(1)})
	if err != nil {
		h.t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		h.t.Errorf("key left behind: %x", it.Key())
	}
	_ = it.Close()
	if _, err := h.s.State(1); !errors.Is(err, ErrUnknownShard) {
		h.t.Fatalf("state of deleted shard: %v", err)
	}
	if got := h.s.Shards(); !slices.Equal(got, []ShardID{2}) {
		h.t.Fatalf("shards = %v", got)
	}
	if _, err := h.s.Read(1, 0, 0, 0); !errors.Is(err, ErrUnknownShard) {
		h.t.Fatalf("read of deleted shard: %v", err)
	}
	wantOffsets(h.t, h.read(2, 0), 0)
	// A new shard of the same id starts empty (ids are not reused in practice,
	// but the store must not resurrect anything).
	h.create(1)
	h.mustAppend(1, compact, pid(1, 5, 9), kv("a", "new"))
	if recs := h.read(1, 0); len(recs) != 1 || string(recs[0].Value) != "new" {
		h.t.Fatalf("recreated shard = %v", recs)
	}
}

func testWait(h *h) {
	h.create(1, 2)
	ch := h.s.Wait(1)
	select {
	case <-ch:
		h.t.Fatal("Wait channel closed before any commit")
	default:
	}
	h.mustAppend(2, compact, NoProducer, kv("a", "1"))
	h.batch(func(b *Batch) { b.SetApplied(1, 1) })
	select {
	case <-ch:
		h.t.Fatal("Wait woken by a commit that did not change the shard")
	default:
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.mustAppend(1, compact, NoProducer, kv("a", "1"))
	}()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		h.t.Fatal("Wait not woken by a commit to the shard")
	}
	<-done
	if next := h.s.Wait(1); next == ch {
		h.t.Fatal("Wait returned a closed channel again")
	}
	select {
	case <-h.s.Wait(99):
	default:
		h.t.Fatal("Wait on an unknown shard should be closed")
	}
}

func testApplied(h *h) {
	if got, err := h.s.Applied(3); err != nil || got != 0 {
		h.t.Fatalf("applied before = %d, %v", got, err)
	}
	h.batch(func(b *Batch) {
		b.SetApplied(3, 42)
		b.SetApplied(4, 1)
		b.SetApplied(3, 43)
		if err := b.Raw().Set([]byte("m-raft-meta"), []byte("x"), nil); err != nil {
			h.t.Fatal(err)
		}
	})
	h.restart()
	for g, want := range map[uint32]uint64{3: 43, 4: 1, 5: 0} {
		if got, err := h.s.Applied(g); err != nil || got != want {
			h.t.Fatalf("applied(%d) = %d, %v, want %d", g, got, err, want)
		}
	}
	v, closer, err := h.s.DB().Get([]byte("m-raft-meta"))
	if err != nil || string(v) != "x" {
		h.t.Fatalf("raw key = %q, %v", v, err)
	}
	_ = closer.Close()
	// A replica that leaves group 3 forgets its applied index; group 4 keeps
	// its own.
	h.batch(func(b *Batch) { b.DeleteApplied(3) })
	h.restart()
	for g, want := range map[uint32]uint64{3: 0, 4: 1} {
		if got, err := h.s.Applied(g); err != nil || got != want {
			h.t.Fatalf("after DeleteApplied(3): applied(%d) = %d, %v, want %d", g, got, err, want)
		}
	}
}

func testMinCompactionLag(h *h) {
	h.create(1)
	lag := func(ms int64) AppendOptions {
		return AppendOptions{Policy: PolicyCompact, AppendTimeMs: ms, MinCompactionLagMs: 1000}
	}
	h.mustAppend(1, lag(0), NoProducer, kv("a", "1"), tomb("t")) // 0, 1
	h.mustAppend(1, lag(100), NoProducer, kv("a", "2"))          // 2 holds 0
	h.mustAppend(1, lag(200), NoProducer, kv("t", "back"))       // 3 holds 1
	h.restart()
	wantOffsets(h.t, h.read(1, 0), 0, 1, 2, 3)
	st := h.state(1)
	if st.LiveKeys != 2 || st.LiveRecords != 4 || st.Tombstones != 0 {
		h.t.Fatalf("state = %+v", st)
	}
	if rec, ok, _ := h.s.Lookup(1, []byte("a")); !ok || rec.Offset != 2 {
		h.t.Fatalf("lookup = %+v", rec)
	}
	for before, want := range map[int64]bool{0: false, 1: true} {
		if due, err := h.s.SupersededDue(1, before); err != nil || due != want {
			h.t.Fatalf("SupersededDue(before %d) = %v, %v; want %v", before, due, err, want)
		}
	}
	h.batch(func(b *Batch) {
		if n, err := b.ExpireSuperseded(1, 0); err != nil || n != 0 {
			h.t.Fatalf("expire(0) = %d, %v", n, err)
		}
	})
	h.batch(func(b *Batch) {
		if n, err := b.ExpireSuperseded(1, 1); err != nil || n != 2 {
			h.t.Fatalf("expire(1) = %d, %v", n, err)
		}
	})
	wantOffsets(h.t, h.read(1, 0), 2, 3)
	// A record older than the lag when superseded goes at once.
	h.mustAppend(1, lag(5000), NoProducer, kv("a", "3")) // 4, 2 is 4900 ms old
	wantOffsets(h.t, h.read(1, 0), 3, 4)
	// Held records are removed with the log start too.
	h.mustAppend(1, lag(5001), NoProducer, kv("a", "4")) // 5 holds 4
	h.batch(func(b *Batch) {
		if err := b.DeleteRecordsBefore(1, 5); err != nil {
			h.t.Fatal(err)
		}
	})
	h.restart()
	wantOffsets(h.t, h.read(1, 0), 5)
	h.batch(func(b *Batch) {
		if n, err := b.ExpireSuperseded(1, math.MaxInt64-1); err != nil || n != 0 {
			h.t.Fatalf("expire after delete = %d, %v", n, err)
		}
	})
	if st := h.state(1); st.LiveRecords != 1 || st.LiveKeys != 1 {
		h.t.Fatalf("state = %+v", st)
	}
}

func testShardErrors(h *h) {
	h.create(1)
	b := h.s.NewBatch()
	defer b.Close()
	wantErr(h.t, b.CreateShard(1, testGroup), ErrShardExists)
	_, err := b.Append(9, compact, NoProducer, []Record{kv("a", "1")})
	wantErr(h.t, err, ErrUnknownShard)
	wantErr(h.t, b.DeleteRecordsBefore(9, 1), ErrUnknownShard)
	_, err = b.ExpireTombstones(9, 1)
	wantErr(h.t, err, ErrUnknownShard)
	_, err = b.ExpireSuperseded(9, 1)
	wantErr(h.t, err, ErrUnknownShard)
	wantErr(h.t, b.DeleteShard(9), ErrUnknownShard)
	h.commit(b)
	_, err = h.s.State(9)
	wantErr(h.t, err, ErrUnknownShard)
	_, _, err = h.s.Lookup(9, []byte("a"))
	wantErr(h.t, err, ErrUnknownShard)
	_, _, _, err = h.s.OffsetForTime(9, 0)
	wantErr(h.t, err, ErrUnknownShard)
	_, err = h.s.RetentionOffset(9, 0, 0)
	wantErr(h.t, err, ErrUnknownShard)
	if err := h.s.Close(); err != nil {
		h.t.Fatal(err)
	}
	if err := h.s.Close(); err != nil {
		h.t.Fatalf("second close: %v", err)
	}
	_, err = h.s.Read(1, 0, 0, 0)
	wantErr(h.t, err, ErrClosed)
}

func testReadLimits(h *h) {
	h.create(1)
	big := bytes.Repeat([]byte("x"), 1000)
	recs := []Record{
		{Key: []byte("big"), Value: big, Timestamp: -5, Headers: []Header{{Key: "h1", Value: []byte("v")}, {Key: "", Value: nil}, {Key: "e", Value: []byte{}}}},
		{Key: []byte("s1"), Value: []byte("1"), Timestamp: 7},
		{Key: []byte("s2"), Value: []byte("2"), Headers: []Header{{Key: "only", Value: []byte("h")}}},
		{Key: []byte("s3"), Value: []byte("3")},
	}
	h.mustAppend(1, compact, NoProducer, recs...)
	h.restart()
	got, err := h.s.Read(1, 0, 10, 0) // the first record comes whatever its size
	if err != nil {
		h.t.Fatal(err)
	}
	wantOffsets(h.t, got, 0)
	got, err = h.s.Read(1, 1, 0, 2)
	if err != nil {
		h.t.Fatal(err)
	}
	wantOffsets(h.t, got, 1, 2)
	size := len(appendRecord(nil, &recs[1], 0))
	got, err = h.s.Read(1, 1, 2*size, 0) // s1 and s2 have different sizes; s2 is bigger
	if err != nil {
		h.t.Fatal(err)
	}
	wantOffsets(h.t, got, 1)
	got = h.read(1, 0)
	wantOffsets(h.t, got, 0, 1, 2, 3)
	for i := range recs {
		w, g := recs[i], got[i]
		if !bytes.Equal(w.Key, g.Key) || !bytes.Equal(w.Value, g.Value) || w.Timestamp != g.Timestamp || len(w.Headers) != len(g.Headers) {
			h.t.Fatalf("record %d = %+v, want %+v", i, g, w)
		}
		for j := range w.Headers {
			wh, gh := w.Headers[j], g.Headers[j]
			if wh.Key != gh.Key || !bytes.Equal(wh.Value, gh.Value) || (wh.Value == nil) != (gh.Value == nil) {
				h.t.Fatalf("record %d header %d = %#v, want %#v", i, j, gh, wh)
			}
		}
	}
	// The caller owns what Read returns: appending to a value does not reach
	// into the next record.
	_ = append(got[1].Value, 'z')
	if string(got[2].Key) != "s2" {
		h.t.Fatalf("records share writable memory: key %q", got[2].Key)
	}
}

func testKeyCacheBounded(h *h) {
	// A store whose key cache holds about 10 entries still compacts exactly.
	s := h.s
	if err := s.Close(); err != nil {
		h.t.Fatal(err)
	}
	bound := 10 * keyCacheCost("00")
	h.s = openStore(h.t, h.t.TempDir(), Options{CacheBytes: 1 << 20, KeyCacheBytes: bound, Logger: testLogger(h.t)})
	h.create(1)
	for w := range 3 {
		recs := make([]Record, 0, 100)
		for k := range 100 {
			recs = append(recs, kv(fmt.Sprint(k), fmt.Sprint(w)))
		}
		h.mustAppend(1, compact, NoProducer, recs...)
	}
	if n := h.s.cached.Load(); n > bound {
		h.t.Fatalf("key cache charged %d bytes, bound %d", n, bound)
	}
	st := h.state(1)
	if st.LiveKeys != 100 || st.LiveRecords != 100 {
		h.t.Fatalf("state = %+v", st)
	}
	recs := h.read(1, 0)
	if len(recs) != 100 || recs[0].Offset != 200 {
		h.t.Fatalf("read %d records from %d", len(recs), recs[0].Offset)
	}
}

// testProducerExpiry: ExpireProducers forgets exactly the producers whose last
// batch was appended before the cutoff, after which they are unknown (any
// first sequence is accepted, as Kafka 4 accepts it from an unknown producer
// id); ProducersDue agrees; state from before append times were kept is dated
// by the first expiry that sees it.
func testProducerExpiry(h *h) {
	at := func(ms int64) AppendOptions { return AppendOptions{Policy: PolicyCompact, AppendTimeMs: ms} }
	due := func(beforeMs int64, want bool) {
		h.t.Helper()
		if got, err := h.s.ProducersDue(1, beforeMs); err != nil || got != want {
			h.t.Fatalf("ProducersDue(%d) = %v, %v; want %v", beforeMs, got, err, want)
		}
	}
	expire := func(beforeMs, nowMs int64, want int) {
		h.t.Helper()
		h.batch(func(b *Batch) {
			n, err := b.ExpireProducers(1, beforeMs, nowMs)
			if err != nil || n != want {
				h.t.Fatalf("ExpireProducers(%d) = %d, %v; want %d", beforeMs, n, err, want)
			}
		})
	}
	h.create(1)
	due(math.MaxInt64, false)
	h.mustAppend(1, at(1000), pid(7, 0, 0), kv("a", "1"))
	h.mustAppend(1, at(1500), pid(8, 0, 0), kv("b", "1"))
	h.mustAppend(1, at(5000), pid(8, 0, 1), kv("b", "2")) // 8 wrote again
	h.restart()
	due(1000, false)
	due(1001, true)
	expire(1000, 9000, 0)
	expire(4000, 9000, 1) // 7 only
	due(4000, false)
	h.restart()
	// 7 is unknown: a gap in its sequence is accepted. 8 is not.
	if r := h.mustAppend(1, at(6000), pid(7, 0, 5), kv("a", "2")); r.Duplicate || r.BaseOffset != 3 {
		h.t.Fatalf("unknown producer's batch = %+v", r)
	}
	_, err := h.append(1, at(6000), pid(8, 0, 5), kv("b", "3"))
	wantErr(h.t, err, ErrOutOfOrderSequence)
	// An older epoch of a forgotten producer is accepted as well.
	expire(7000, 9000, 2)
	if r := h.mustAppend(1, at(7000), pid(8, 0, 9), kv("b", "3")); r.BaseOffset != 4 {
		h.t.Fatalf("forgotten producer's batch = %+v", r)
	}

	// In one batch: an append, the expiry of what it wrote, an append that
	// finds the producer unknown.
	h.batch(func(b *Batch) {
		if _, err := b.Append(1, at(8000), pid(9, 0, 0), []Record{kv("c", "1")}); err != nil {
			h.t.Fatal(err)
		}
		if n, err := b.ExpireProducers(1, 8001, 9000); err != nil || n != 2 { // 8 and 9
			h.t.Fatalf("ExpireProducers in the batch = %d, %v", n, err)
		}
		if _, err := b.Append(1, at(8000), pid(9, 0, 4), []Record{kv("c", "2")}); err != nil {
			h.t.Fatalf("append after expiry in the batch: %v", err)
		}
	})
	due(8001, true) // 9's new state, dated 8000

	// State written before append times were kept (producerVersion1).
	h.batch(func(b *Batch) {
		v1 := []byte{producerVersion1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5}
		b.Raw().Set(producerKey(1, 10), v1, nil)
	})
	// Such state comes from an older version's data dir, which only Open
	// sees: the raw write bypasses the shard's due bound, so start it over as
	// Open does (restart is a no-op in memory).
	h.restart()
	h.forgetDue(1)
	due(0, true)
	expire(math.MaxInt64-1, 20000, 1) // 9 (8000); 10 is dated 20000 instead
	due(20000, false)
	_, err = h.append(1, at(20000), pid(10, 0, 5), kv("d", "1")) // 10 still expects 4
	wantErr(h.t, err, ErrOutOfOrderSequence)
	expire(20001, 30000, 1)
	due(math.MaxInt64, false)
}

// testProducerCache: with no restart in between, so producer state comes from
// the shard's in-memory cache, a retry is found by Duplicate and Append, an
// expiry makes the producer unknown at once, and a state read before a
// restart is used again only after the batch that read it commits.
func testProducerCache(h *h) {
	at := func(ms int64) AppendOptions { return AppendOptions{Policy: PolicyCompact, AppendTimeMs: ms} }
	h.create(1)
	h.mustAppend(1, at(1000), pid(20, 0, 0), kv("a", "1"), kv("b", "1"))
	if r, dup, err := h.s.Duplicate(1, pid(20, 0, 0), 2); err != nil || !dup || r.BaseOffset != 0 {
		h.t.Fatalf("Duplicate of the first batch = %+v, %v, %v; want base 0", r, dup, err)
	}
	if r := h.mustAppend(1, at(1000), pid(20, 0, 2), kv("c", "1")); r.BaseOffset != 2 || r.Duplicate {
		h.t.Fatalf("next batch = %+v", r)
	}
	if r := h.mustAppend(1, at(1000), pid(20, 0, 2), kv("c", "1")); r.BaseOffset != 2 || !r.Duplicate {
		h.t.Fatalf("retry = %+v", r)
	}
	_, err := h.append(1, at(1000), pid(20, 0, 9), kv("x", "1"))
	wantErr(h.t, err, ErrOutOfOrderSequence)
	h.batch(func(b *Batch) {
		if n, err := b.ExpireProducers(1, 2000, 3000); err != nil || n != 1 {
			h.t.Fatalf("ExpireProducers = %d, %v; want 1", n, err)
		}
	})
	if _, dup, err := h.s.Duplicate(1, pid(20, 0, 0), 2); err != nil || dup {
		h.t.Fatalf("Duplicate after expiry = %v, %v; want not a duplicate", dup, err)
	}
	if r := h.mustAppend(1, at(4000), pid(20, 0, 9), kv("x", "1")); r.Duplicate || r.BaseOffset != 3 {
		h.t.Fatalf("forgotten producer's batch = %+v", r)
	}
	// After a restart the state comes from Pebble once, then from the cache.
	h.restart()
	for range 2 {
		if r := h.mustAppend(1, at(4000), pid(20, 0, 9), kv("x", "1")); !r.Duplicate || r.BaseOffset != 3 {
			h.t.Fatalf("retry after restart = %+v", r)
		}
	}
	if r := h.mustAppend(1, at(4000), pid(20, 0, 10), kv("y", "1")); r.Duplicate || r.BaseOffset != 4 {
		h.t.Fatalf("next batch after restart = %+v", r)
	}
	if r, dup, err := h.s.Duplicate(1, pid(20, 0, 10), 1); err != nil || !dup || r.BaseOffset != 4 {
		h.t.Fatalf("Duplicate after restart = %+v, %v, %v; want base 4", r, dup, err)
	}
}

// testKeyCacheAdmission: once the key cache is full, one new key in
// keyCacheAdmitEvery takes another's place and the others are not cached;
// lookups and compaction stay exact whichever keys it holds.
func testKeyCacheAdmission(h *h) {
	if err := h.s.Close(); err != nil {
		h.t.Fatal(err)
	}
	key := func(i int) string { return fmt.Sprintf("key-%05d", i) }
	bound := 100 * keyCacheCost(key(0))
	h.s = openStore(h.t, h.t.TempDir(), Options{CacheBytes: 1 << 20, KeyCacheBytes: bound, Logger: testLogger(h.t)})
	h.create(1)
	cached := func(from, to int) (n int) {
		sh := h.s.shard(1)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		for i := from; i < to; i++ {
			if _, ok := sh.cache.get(key(i)); ok {
				n++
			}
		}
		return n
	}
	// Keys 0-99 fill the cache; keys 100-499 are new to it, one per append.
	for i := range 500 {
		h.mustAppend(1, compact, NoProducer, kv(key(i), "v1"))
	}
	// 400/keyCacheAdmitEvery keys got in, each evicting an arbitrary entry
	// (a few of them keys admitted before): the cache stays full, and at
	// most that many of the first keys left it.
	admitted := 400 / keyCacheAdmitEvery
	if old, young := cached(0, 100), cached(100, 500); old+young != 100 || young > admitted || old < 100-admitted {
		h.t.Fatalf("cache holds %d of the first 100 keys and %d of the next 400, want 100 in all and at most %d of the next", old, young, admitted)
	}
	// Every key rewritten: each replaces exactly its own record, cached or not.
	recs := make([]Record, 0, 500)
	for i := range 500 {
		recs = append(recs, kv(key(i), "v2"))
	}
	h.mustAppend(1, compact, NoProducer, recs...)
	if st := h.state(1); st.LiveKeys != 500 || st.LiveRecords != 500 {
		h.t.Fatalf("state = %+v", st)
	}
	got := h.read(1, 0)
	if len(got) != 500 || got[0].Offset != 500 {
		h.t.Fatalf("read %d records from %d", len(got), got[0].Offset)
	}
	for _, r := range got {
		if string(r.Value) != "v2" {
			h.t.Fatalf("record %s at %d: value %q", r.Key, r.Offset, r.Value)
		}
	}
}

// testKeyCacheBytes writes large keys to two shards through a 256 KiB key
// cache: the bytes the cache is charged, which are what its entries cost
// (TestKeyCacheEntryCost), stay under the bound after every commit, agree
// with the entries it holds, and compaction stays exact. Bounded in entries
// (the former 2^20), the cache held all 800 keys: more than 3 MiB.
func testKeyCacheBytes(h *h) {
	if err := h.s.Close(); err != nil {
		h.t.Fatal(err)
	}
	const bound = 256 << 10
	h.s = openStore(h.t, h.t.TempDir(), Options{CacheBytes: 1 << 20, KeyCacheBytes: bound, Logger: testLogger(h.t)})
	h.create(1, 2)
	key := func(shard ShardID, i int) string {
		return fmt.Sprintf("%d-%04d-%s", shard, i, strings.Repeat("k", 4000))
	}
	check := func(wantHeld bool) {
		h.t.Helper()
		var sum, held int64
		h.s.mu.RLock()
		for _, sh := range h.s.shards {
			sh.mu.Lock()
			sh.cache.each(func(k []byte, _ keyEntry) {
				sum += keyCacheCost(string(k))
				held++
			})
			if sh.cacheBytes < 0 {
				h.t.Errorf("shard %d charged %d bytes", sh.id, sh.cacheBytes)
			}
			sh.mu.Unlock()
		}
		h.s.mu.RUnlock()
		if got := h.s.cached.Load(); got != sum || got > bound {
			h.t.Fatalf("key cache charged %d bytes for %d entries costing %d, bound %d", got, held, sum, bound)
		}
		if wantHeld && held == 0 {
			h.t.Fatal("key cache holds nothing")
		}
	}
	for round := range 2 {
		for i := 0; i < 400; i += 20 {
			for _, shard := range []ShardID{1, 2} {
				recs := make([]Record, 0, 20)
				for j := i; j < i+20; j++ {
					recs = append(recs, kv(key(shard, j), fmt.Sprint(round)))
				}
				h.mustAppend(shard, compact, NoProducer, recs...)
				check(true)
			}
		}
	}
	// Tombstones and the expiry of half of them remove entries and their charge.
	for i := 0; i < 200; i++ {
		h.mustAppend(1, compact, NoProducer, tomb(key(1, i)))
	}
	check(false)
	h.batch(func(b *Batch) {
		if _, err := b.ExpireTombstones(1, math.MaxInt64); err != nil {
			h.t.Fatal(err)
		}
	})
	check(false)
	for _, shard := range []ShardID{1, 2} {
		st := h.state(shard)
		want := int64(400)
		if shard == 1 {
			want = 200
		}
		if st.LiveKeys != want || st.LiveRecords != want || st.Tombstones != 0 {
			h.t.Fatalf("shard %d state = %+v, want %d live keys and records", shard, st, want)
		}
	}
	// Deleting a shard gives its share back.
	h.batch(func(b *Batch) {
		if err := b.DeleteShard(2); err != nil {
			h.t.Fatal(err)
		}
	})
	check(false)
}

// TestKeyCacheEntryCost checks keyCacheCost against what a map of cache
// entries really costs on the heap, for small, typical, large and unluckily
// sized keys: never more than charged, and not far less.
func TestKeyCacheEntryCost(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for _, size := range []int{8, 16, 100, 1025, 4097, 32769} {
		for _, n := range []int{1000, 6145, 7200, 65536} { // 6145: the table just grew, at its lowest load
			if size*n > 64<<20 {
				continue
			}
			before := heap()
			m := newKeyTable(0)
			var charged int64
			for i := range n {
				b := bytes.Repeat([]byte{'k'}, size)
				binary.BigEndian.PutUint32(b[len(b)-4:], uint32(i))
				k := string(b)
				m.set(k, keyEntry{offset: int64(i)})
				charged += keyCacheCost(k)
			}
			used := int64(heap() - before)
			runtime.KeepAlive(m)
			t.Logf("%5d-byte keys x %5d: %6.1f bytes/entry used, %6.1f charged", size, n, float64(used)/float64(n), float64(charged)/float64(n))
			if used > charged || float64(charged) > 1.5*float64(used) {
				t.Errorf("%d-byte keys x %d: %d bytes used, %d charged", size, n, used, charged)
			}
		}
	}
}

// testConcurrentReaders reads from other goroutines while one writer overwrites
// keys: every read sees a consistent shard (offsets increasing, below the high
// watermark, one record per key, lookups matching their key).
func testConcurrentReaders(h *h) {
	const keys, rounds = 50, 100
	h.create(1)
	done := make(chan struct{})
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if r == 0 {
					st, _ := h.s.State(1)
					recs, err := h.s.Read(1, 0, 0, 0)
					if err != nil {
						errs <- err
						return
					}
					seen := map[string]bool{}
					for j, rec := range recs {
						if (j > 0 && rec.Offset <= recs[j-1].Offset) || seen[string(rec.Key)] {
							errs <- fmt.Errorf("inconsistent read: %v", offsets(recs))
							return
						}
						seen[string(rec.Key)] = true
					}
					if len(recs) > 0 && recs[len(recs)-1].Offset < st.HighWatermark-keys {
						errs <- fmt.Errorf("read ends at %d, high watermark was %d", recs[len(recs)-1].Offset, st.HighWatermark)
						return
					}
				} else {
					key := []byte(fmt.Sprint(i % keys))
					rec, ok, err := h.s.Lookup(1, key)
					if err != nil || (ok && !bytes.Equal(rec.Key, key)) {
						errs <- fmt.Errorf("lookup %s = %+v, %v", key, rec, err)
						return
					}
				}
			}
		}()
	}
	for w := range rounds {
		recs := make([]Record, 0, keys)
		for k := range keys {
			recs = append(recs, kv(fmt.Sprint(k), fmt.Sprint(w)))
		}
		h.mustAppend(1, compact, NoProducer, recs...)
	}
	close(done)
	wg.Wait()
	for range 2 {
		if err := <-errs; err != nil {
			h.t.Fatal(err)
		}
	}
}

func testGroupRegistry(h *h) {
	h.create(1, 2)
	h.batch(func(b *Batch) {
		if err := b.CreateShard(7, 9); err != nil {
			h.t.Fatal(err)
		}
	})
	h.restart()
	if got := h.s.GroupShards(testGroup); !slices.Equal(got, []ShardID{1, 2}) {
		h.t.Fatalf("GroupShards(%d) = %v", testGroup, got)
	}
	if g, ok := h.s.ShardGroup(7); !ok || g != 9 {
		h.t.Fatalf("ShardGroup(7) = %d, %v", g, ok)
	}
	h.batch(func(b *Batch) {
		if err := b.DeleteShard(2); err != nil {
			h.t.Fatal(err)
		}
	})
	h.restart()
	if got := h.s.GroupShards(testGroup); !slices.Equal(got, []ShardID{1}) {
		h.t.Fatalf("GroupShards after delete = %v", got)
	}
	if _, ok := h.s.ShardGroup(2); ok {
		h.t.Fatal("deleted shard keeps a group")
	}

	// A shard written before the registry existed: no entry until the backfill.
	h.batch(func(b *Batch) {
		if err := b.CreateShard(5, 4); err != nil {
			h.t.Fatal(err)
		}
		b.del(groupShardKey(4, 5))
	})
	h.restart()
	// The in-memory backend keeps what CreateShard published: forget it, as a
	// store opened on old data would.
	h.s.shard(5).mu.Lock()
	h.s.shard(5).grouped = false
	h.s.shard(5).mu.Unlock()
	n, err := h.s.SetShardGroups(map[ShardID]uint32{5: 4, 1: testGroup, 99: 1})
	if err != nil || n != 1 {
		h.t.Fatalf("SetShardGroups = %d, %v; want 1 recorded", n, err)
	}
	if _, err := h.s.SetShardGroups(map[ShardID]uint32{1: 8}); !errors.Is(err, ErrGroupConflict) {
		h.t.Fatalf("SetShardGroups with another group: %v", err)
	}
	h.restart()
	if g, ok := h.s.ShardGroup(5); !ok || g != 4 {
		h.t.Fatalf("backfilled ShardGroup(5) = %d, %v", g, ok)
	}
	if g, ok := h.s.ShardGroup(1); !ok || g != testGroup {
		h.t.Fatalf("ShardGroup(1) after conflict = %d, %v", g, ok)
	}
}

// TestTablesUseMinLZ: the state DB writes its tables with MinLZ
// (pebbleOptions; Snappy on arm64), and a table of repetitive records comes
// out smaller than the records.
func TestTablesUseMinLZ(t *testing.T) {
	want := "MinLZ"
	if runtime.GOARCH == "arm64" {
		want = "Snappy"
	}
	s := openStore(t, t.TempDir(), Options{Logger: testLogger(t)})
	hh := &h{t: t, s: s}
	hh.create(1)
	value := strings.Repeat("a value that repeats ", 20)
	var recs []Record
	for i := range 2000 {
		recs = append(recs, kv(fmt.Sprintf("key-%05d", i), value))
	}
	hh.mustAppend(1, compact, NoProducer, recs...)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	levels, err := s.db.SSTables(pebble.WithProperties())
	if err != nil {
		t.Fatal(err)
	}
	var tables, size uint64
	for _, level := range levels {
		for _, tbl := range level {
			tables++
			size += tbl.Size
			// CompressionStats: "algorithm:compressed/uncompressed,...".
			if stats := tbl.Properties.CompressionStats; !strings.HasPrefix(stats, want) {
				t.Errorf("table %s: compression %q, want %s first", tbl.FileNum, stats, want)
			}
		}
	}
	if raw := uint64(len(recs) * len(value)); tables == 0 || size > raw/4 {
		t.Fatalf("%d tables of %d bytes for %d bytes of values", tables, size, raw)
	}
}

// TestTablesCompressAcrossRecords: records that share a value which does not
// compress by itself (random bytes) compress across each other, because a
// table's data blocks hold many records (tableBlockSize). With Pebble's 4 KiB
// blocks four such 1 KiB records share a block and the table is over a
// quarter of the records' bytes.
func TestTablesCompressAcrossRecords(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{Logger: testLogger(t)})
	hh := &h{t: t, s: s}
	hh.create(1)
	value := make([]byte, 1024)
	if _, err := rand.NewChaCha8([32]byte{1}).Read(value); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var recs []Record
	for i := range n {
		recs = append(recs, kv(fmt.Sprintf("key-%05d", i), string(value)))
	}
	hh.mustAppend(1, compact, NoProducer, recs...)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	size := s.db.Metrics().Total().TablesSize
	raw := int64(n * len(value))
	t.Logf("%d bytes of tables for %d bytes of values", size, raw)
	if size == 0 || size > raw/10 {
		t.Fatalf("%d bytes of tables for %d bytes of values, want at most a tenth", size, raw)
	}
	for i, r := range hh.read(1, 0) {
		if string(r.Value) != string(value) || string(r.Key) != fmt.Sprintf("key-%05d", i) {
			t.Fatalf("record %d: key %q, value of %d bytes differs", i, r.Key, len(r.Value))
		}
	}
}

// testReplacedRuns: an append that replaces records at consecutive offsets
// deletes each run of minRangeDelete (m) or more with one range deletion, and
// a shorter run record by record. Runs end where a key is not rewritten, where
// a record is held by MinCompactionLagMs, and where the order of the old
// offsets breaks; the records between runs stay readable, before and after a
// restart and a compaction.
func testReplacedRuns(h *h) {
	const m = minRangeDelete
	key := func(i int) string { return fmt.Sprintf("k%06d", i) }
	h.create(1)
	const n = 4*m + 8
	var first []Record
	for i := range n {
		first = append(first, kv(key(i), "v1"))
	}
	h.mustAppend(1, at(compact, 0), NoProducer, first...)
	// Old offsets [0, m) (a range), m+2 (single), [m+4, 2m+3) (m-1 singles),
	// [2m+4, 3m+4) (a range), then [3m+5, 4m+5) with its middle first, which
	// splits it into three runs shorter than m.
	mid := 3*m + 5 + m/2
	var rewrite []int
	for _, r := range [][2]int{{0, m}, {m + 2, m + 3}, {m + 4, 2*m + 3}, {2*m + 4, 3*m + 4}, {mid, mid + 1}, {3*m + 5, mid}, {mid + 1, 4*m + 5}} {
		for i := r[0]; i < r[1]; i++ {
			rewrite = append(rewrite, i)
		}
	}
	var second []Record
	for _, i := range rewrite {
		second = append(second, kv(key(i), "v2"))
	}
	second = append(second, kv("new", "v2"))
	b := h.s.NewBatch()
	if _, err := b.Append(1, at(compact, 10), NoProducer, second); err != nil {
		h.t.Fatal(err)
	}
	ranges, singles := batchDeletes(h.t, b)
	h.commit(b)
	b.Close()
	if ranges != 2 || singles != 2*m {
		h.t.Fatalf("%d range deletions and %d single deletes, want 2 and %d", ranges, singles, 2*m)
	}
	want := []int64{m, m + 1, m + 3, 2*m + 3, 3*m + 4, 4*m + 5, 4*m + 6, 4*m + 7}
	for o := range int64(len(second)) {
		want = append(want, n+o)
	}
	check := func(when string) {
		h.t.Helper()
		recs := h.read(1, 0)
		if got := offsets(recs); !slices.Equal(got, want) {
			h.t.Fatalf("%s: offsets %v, want %v", when, got, want)
		}
		for _, r := range recs {
			if r.Offset >= n && string(r.Value) != "v2" || r.Offset < n && string(r.Value) != "v1" {
				h.t.Fatalf("%s: offset %d holds %s=%s", when, r.Offset, r.Key, r.Value)
			}
		}
		if st := h.state(1); st.LiveKeys != n+1 || st.LiveRecords != n+1 || st.HighWatermark != n+int64(len(second)) {
			h.t.Fatalf("%s: state %+v", when, st)
		}
		for i, k := range []string{key(0), key(m), key(m + 1), key(3*m + 3), key(3*m + 4), key(mid), key(n - 1), "new"} {
			rec, ok, err := h.s.Lookup(1, []byte(k))
			if err != nil || !ok || string(rec.Key) != k {
				h.t.Fatalf("%s: lookup %d of %s = %+v, %v, %v", when, i, k, rec, ok, err)
			}
		}
	}
	check("after the append")
	h.restart()
	check("after a restart")
	if err := h.s.DB().Compact(h.t.Context(), shardPrefix(1), shardEnd(1), true); err != nil {
		h.t.Fatal(err)
	}
	check("after a compaction")

	// Held records break runs: [0, m) appended at 0 ms and [m, 2m) at
	// 900 ms, all rewritten at 1,500 ms with a 1 s lag: [m, 2m) stay (held)
	// and [0, m) go in one range deletion.
	h.create(2)
	lag := func(ms int64) AppendOptions {
		return AppendOptions{Policy: PolicyCompact, AppendTimeMs: ms, MinCompactionLagMs: 1000}
	}
	var old, newer, all []Record
	for i := range 2 * m {
		if i < m {
			old = append(old, kv(key(i), "old"))
		} else {
			newer = append(newer, kv(key(i), "old"))
		}
		all = append(all, kv(key(i), "new"))
	}
	h.mustAppend(2, lag(0), NoProducer, old...)
	h.mustAppend(2, lag(900), NoProducer, newer...)
	b = h.s.NewBatch()
	defer b.Close()
	if _, err := b.Append(2, lag(1500), NoProducer, all); err != nil {
		h.t.Fatal(err)
	}
	if ranges, singles := batchDeletes(h.t, b); ranges != 1 || singles != 0 {
		h.t.Fatalf("%d range deletions and %d single deletes, want 1 and 0", ranges, singles)
	}
	h.commit(b)
	var want2 []int64
	for o := int64(m); o < 4*m; o++ {
		want2 = append(want2, o)
	}
	wantOffsets(h.t, h.read(2, 0), want2...)
}

// batchDeletes counts the range deletions and single deletes of record keys
// in b's Pebble batch.
func batchDeletes(t *testing.T, b *Batch) (ranges, singles int) {
	t.Helper()
	r := b.b.Reader()
	for {
		kind, k, _, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ranges, singles
		}
		switch kind {
		case pebble.InternalKeyKindRangeDelete:
			ranges++
		case pebble.InternalKeyKindSingleDelete:
			if kk, ok := parseKey(k); ok && kk.kind == kindRecord {
				singles++
			}
		}
	}
}
