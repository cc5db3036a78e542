package raftfsm

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func openPebble(tb testing.TB, fs vfs.FS) *pebble.DB {
	tb.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: fs})
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func testLog(i uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       i/10 + 1,
		Type:       raft.LogCommand,
		Data:       []byte(fmt.Sprintf("entry-%d", i)),
		Extensions: []byte{byte(i)},
		AppendedAt: time.Unix(1700000000, int64(i)),
	}
}

func storeRange(tb testing.TB, s *LogStore, lo, hi uint64) {
	tb.Helper()
	var logs []*raft.Log
	for i := lo; i <= hi; i++ {
		logs = append(logs, testLog(i))
	}
	if err := s.StoreLogs(logs); err != nil {
		tb.Fatal(err)
	}
}

func checkBounds(tb testing.TB, s *LogStore, first, last uint64) {
	tb.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		tb.Fatalf("bounds = [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

func checkLog(tb testing.TB, s *LogStore, i uint64) {
	tb.Helper()
	var got raft.Log
	if err := s.GetLog(i, &got); err != nil {
		tb.Fatalf("GetLog(%d): %v", i, err)
	}
	want := testLog(i)
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
		!got.AppendedAt.Equal(want.AppendedAt) {
		tb.Fatalf("GetLog(%d) = %+v, want %+v", i, got, *want)
	}
}

func checkMissing(tb testing.TB, s *LogStore, i uint64) {
	tb.Helper()
	var got raft.Log
	if err := s.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
		tb.Fatalf("GetLog(%d) = %v, want ErrLogNotFound", i, err)
	}
}

func TestLogStore(t *testing.T) {
	db := openPebble(t, vfs.NewMem())
	defer db.Close()
	s, err := NewLogStore(db, 3)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewLogStore(db, 4)
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	checkMissing(t, s, 1)

	storeRange(t, s, 1, 100)
	storeRange(t, other, 1, 5)
	checkBounds(t, s, 1, 100)
	checkBounds(t, other, 1, 5)
	for i := uint64(1); i <= 100; i++ {
		checkLog(t, s, i)
	}
	checkMissing(t, s, 101)

	t.Run("truncate front", func(t *testing.T) {
		if err := s.DeleteRange(1, 40); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, 41, 100)
		checkMissing(t, s, 40)
		checkLog(t, s, 41)
	})
	t.Run("truncate back", func(t *testing.T) {
		if err := s.DeleteRange(91, 100); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, 41, 90)
		checkMissing(t, s, 91)
		storeRange(t, s, 91, 95) // rewrite after a conflict
		checkBounds(t, s, 41, 95)
		checkLog(t, s, 95)
	})
	t.Run("other group untouched", func(t *testing.T) {
		checkBounds(t, other, 1, 5)
		checkLog(t, other, 1)
	})
	t.Run("delete all then append", func(t *testing.T) {
		if err := s.DeleteRange(41, 95); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, 0, 0)
		storeRange(t, s, 200, 201)
		checkBounds(t, s, 200, 201)
	})
}

func TestLogStoreReopen(t *testing.T) {
	tests := []struct {
		name string
		// reopen closes db and returns a DB over the state a restart sees.
		reopen func(tb testing.TB, fs *vfs.MemFS, db *pebble.DB) *pebble.DB
	}{
		{"close", func(tb testing.TB, fs *vfs.MemFS, db *pebble.DB) *pebble.DB {
			if err := db.Close(); err != nil {
				tb.Fatal(err)
			}
			return openPebble(tb, fs)
		}},
		{"crash", func(tb testing.TB, fs *vfs.MemFS, db *pebble.DB) *pebble.DB {
			// Only what was synced survives.
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			db.Close()
			return openPebble(tb, crashed)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			db := openPebble(t, fs)
			s, err := NewLogStore(db, 1)
			if err != nil {
				t.Fatal(err)
			}
			storeRange(t, s, 1, 50)
			if err := s.DeleteRange(1, 10); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatal(err)
			}
			if err := s.Set([]byte("LastVoteCand"), []byte("node-1")); err != nil {
				t.Fatal(err)
			}
			db = tt.reopen(t, fs, db)
			defer db.Close()
			s, err = NewLogStore(db, 1)
			if err != nil {
				t.Fatal(err)
			}
			checkBounds(t, s, 11, 50)
			checkMissing(t, s, 10)
			for i := uint64(11); i <= 50; i++ {
				checkLog(t, s, i)
			}
			if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
				t.Fatalf("GetUint64 = %d, %v", v, err)
			}
			if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-1" {
				t.Fatalf("Get = %q, %v", v, err)
			}
		})
	}
}

func TestStableStore(t *testing.T) {
	db := openPebble(t, vfs.NewMem())
	defer db.Close()
	s, err := NewLogStore(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Missing keys: raft-boltdb's contract, which raft checks by message.
	if _, err := s.Get([]byte("k")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get missing = %v, want not found", err)
	}
	if v, err := s.GetUint64([]byte("n")); v != 0 || err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 missing = %d, %v, want 0, not found", v, err)
	}
	if err := s.Set([]byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v2" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if err := s.SetUint64([]byte("n"), 1<<40); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("n")); err != nil || v != 1<<40 {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
	// Stable keys do not show up in the log.
	checkBounds(t, s, 0, 0)
}

func TestLogValueSize(t *testing.T) {
	for _, l := range []*raft.Log{testLog(1), {}, {Term: 1 << 60, Data: make([]byte, 300), AppendedAt: time.Unix(-5, 0)}} {
		comp := compressLogData(nil, l.Data)
		if got, want := len(encodeLog(nil, l, comp)), logValueSize(l, comp); got != want {
			t.Errorf("encoded %d bytes, size says %d", got, want)
		}
	}
}

// TestLogStoreCompressed stores entries whose Data compresses, does not
// compress enough, compresses too well and is too short, reads them back from
// Pebble (no cache), and checks which were stored compressed.
func TestLogStoreCompressed(t *testing.T) {
	db := openPebble(t, vfs.NewMem())
	defer db.Close()
	s, err := newLogStore(db, 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 4096)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	// Records sharing a value, as a produce command carries them.
	var records []byte
	for i := range 200 {
		records = fmt.Appendf(records, "key-%08d", i)
		records = append(records, random[:100]...)
	}
	cases := []struct {
		name       string
		data       []byte
		compressed bool
	}{
		{"records", records, true},
		{"random", random, false},
		{"zeros", make([]byte, 1<<20), true}, // past maxLogExpansion, within anyRatioLogBytes
		{"more zeros", make([]byte, anyRatioLogBytes+1), false},
		// 256 copies of a 1 KiB value: past 64:1, as a produce command
		// of records sharing a 1 KiB value is.
		{"repeated value", bytes.Repeat(random[:1024], 256), true},
		{"short", records[:minCompressLogBytes-1], false},
		{"empty", nil, false},
	}
	var logs []*raft.Log
	for i, c := range cases {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Term: 3, Type: raft.LogCommand, Data: c.data, Extensions: []byte("x")})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, closer, err := db.Get(logKey(1, uint64(i+1)))
			if err != nil {
				t.Fatal(err)
			}
			version, size := v[0], len(v)
			closer.Close()
			if got := version == logValueS2; got != c.compressed {
				t.Errorf("stored with version %d (%d bytes for %d of data), want compressed %v", version, size, len(c.data), c.compressed)
			}
			var got raft.Log
			if err := s.GetLog(uint64(i+1), &got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Data, c.data) || string(got.Extensions) != "x" || got.Term != 3 || got.Type != raft.LogCommand {
				t.Errorf("GetLog = type %v term %d, %d bytes of data (equal: %v), extensions %q", got.Type, got.Term, len(got.Data), bytes.Equal(got.Data, c.data), got.Extensions)
			}
		})
	}
}

// FuzzDecodeLog feeds stored values to decodeLog: it decodes or refuses, never
// panics, and what it decodes encodes back to a value that decodes the same.
func FuzzDecodeLog(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{logValueVersion})
	f.Add(encodeLog(nil, testLog(7), nil))
	big := &raft.Log{Term: 2, Data: bytes.Repeat([]byte("abcdefgh"), 200)}
	f.Add(encodeLog(nil, big, compressLogData(nil, big.Data)))
	f.Add(append(encodeLog(nil, big, compressLogData(nil, big.Data)), 0xff))
	f.Add([]byte{logValueS2, 0, 1, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		var l raft.Log
		if err := decodeLog(v, &l, true); err != nil {
			if !errors.Is(err, ErrCorruptLog) {
				t.Fatalf("error %v does not wrap ErrCorruptLog", err)
			}
			return
		}
		var again raft.Log
		if err := decodeLog(encodeLog(nil, &l, compressLogData(nil, l.Data)), &again, true); err != nil {
			t.Fatalf("re-encoded entry: %v", err)
		}
		if again.Type != l.Type || again.Term != l.Term || !bytes.Equal(again.Data, l.Data) || !bytes.Equal(again.Extensions, l.Extensions) {
			t.Fatalf("round trip changed the entry: %+v, then %+v", l, again)
		}
	})
}

// The log store passes raft's own conformance of a running cluster in
// node_test.go; this benchmark measures synced appends.
func BenchmarkStoreLogs(b *testing.B) {
	db := openPebble(b, vfs.NewMem())
	defer db.Close()
	s, _ := NewLogStore(db, 1)
	data := make([]byte, 4096)
	b.SetBytes(int64(len(data)) * 64)
	idx := uint64(1)
	for b.Loop() {
		logs := make([]*raft.Log, 64)
		for i := range logs {
			logs[i] = &raft.Log{Index: idx, Term: 1, Data: data}
			idx++
		}
		if err := s.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLogCacheMatchesPebble runs the same appends and truncations, the ones
// Raft makes, on a store with a small cache and one without, and checks that
// every index reads the same from both after each step.
func TestLogCacheMatchesPebble(t *testing.T) {
	db := openPebble(t, vfs.NewMem())
	defer db.Close()
	cached, err := newLogStore(db, 1, 8, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := newLogStore(db, 2, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func(s *LogStore) error
	}{
		{"append 1-5", func(s *LogStore) error { storeRange(t, s, 1, 5); return nil }},
		{"append 6-20 past the entry bound", func(s *LogStore) error { storeRange(t, s, 6, 20); return nil }},
		{"one entry at a time", func(s *LogStore) error {
			for i := uint64(21); i <= 25; i++ {
				if err := s.StoreLog(testLog(i)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"compact the front", func(s *LogStore) error { return s.DeleteRange(1, 19) }},
		{"compact into the cache", func(s *LogStore) error { return s.DeleteRange(20, 21) }},
		{"drop a conflicting tail", func(s *LogStore) error { return s.DeleteRange(24, 25) }},
		{"rewrite the tail", func(s *LogStore) error { storeRange(t, s, 24, 27); return nil }},
		{"rewrite without a delete", func(s *LogStore) error { storeRange(t, s, 26, 28); return nil }},
		{"append after a gap", func(s *LogStore) error { storeRange(t, s, 40, 41); return nil }},
		{"delete everything", func(s *LogStore) error { return s.DeleteRange(0, ^uint64(0)) }},
		{"start again", func(s *LogStore) error { storeRange(t, s, 100, 103); return nil }},
	}
	for _, st := range steps {
		for _, s := range []*LogStore{cached, plain} {
			if err := st.do(s); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		for i := uint64(0); i <= 110; i++ {
			var a, b raft.Log
			errA, errB := cached.GetLog(i, &a), plain.GetLog(i, &b)
			if !errors.Is(errA, errB) && (errA != nil || errB != nil) {
				t.Fatalf("%s: GetLog(%d): cached %v, pebble %v", st.name, i, errA, errB)
			}
			if errA == nil && (a.Index != b.Index || a.Term != b.Term || a.Type != b.Type ||
				!bytes.Equal(a.Data, b.Data) || !bytes.Equal(a.Extensions, b.Extensions) || !a.AppendedAt.Equal(b.AppendedAt)) {
				t.Fatalf("%s: GetLog(%d): cached %+v, pebble %+v", st.name, i, a, b)
			}
		}
		if n := len(cached.cache.logs); n > 8 {
			t.Fatalf("%s: %d entries cached, bound 8", st.name, n)
		}
	}
}

// TestLogCacheIdle: a log cache that nothing reads stops caching after
// logCacheIdleStores appends, and caches again once GetLog reads a recent
// entry; a read of an old entry (hashicorp/raft's metrics read the first)
// does not count. Entries read while it does not cache come from Pebble.
func TestLogCacheIdle(t *testing.T) {
	db := openPebble(t, vfs.NewMem())
	defer db.Close()
	s, err := newLogStore(db, 1, 8, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	store := func(n int) {
		t.Helper()
		for range n {
			if err := s.StoreLog(testLog(next)); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	read := func(i uint64) {
		t.Helper()
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Index != i || !bytes.Equal(l.Data, testLog(i).Data) {
			t.Fatalf("GetLog(%d) = %+v, %v", i, l, err)
		}
	}
	cached := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.cache.logs) }

	store(logCacheIdleStores)
	if n := cached(); n != 8 {
		t.Fatalf("%d entries cached after %d appends, want 8", n, logCacheIdleStores)
	}
	store(1)
	if n := cached(); n != 0 {
		t.Fatalf("%d entries cached after %d appends nobody read, want none", n, logCacheIdleStores+1)
	}
	read(next - 1) // from Pebble
	store(3)
	if n := cached(); n != 3 {
		t.Fatalf("%d entries cached after a read of the newest and 3 appends, want 3", n)
	}
	for range logCacheIdleStores {
		read(1) // the oldest: not a reader of the cache
		store(1)
	}
	if n := cached(); n != 0 {
		t.Fatalf("%d entries cached with only the oldest entry read, want none", n)
	}
	for i := uint64(1); i < next; i++ {
		read(i)
	}
}

// TestLogCacheBounds checks the cache's entry and byte bounds and that it
// serves the newest entries.
func TestLogCacheBounds(t *testing.T) {
	entry := func(i uint64, size int) *raft.Log {
		return &raft.Log{Index: i, Data: make([]byte, size)}
	}
	tests := []struct {
		name              string
		entries, bytes    int
		sizes             []int // entries 1, 2, ... of these data sizes
		wantLo, wantCount int
	}{
		{"within bounds", 4, 100, []int{10, 10, 10}, 1, 3},
		{"entry bound", 2, 100, []int{10, 10, 10}, 2, 2},
		{"byte bound", 10, 25, []int{10, 10, 10}, 2, 2},
		{"an entry larger than the bound", 10, 25, []int{10, 30}, 0, 0},
		{"no cache", 0, 0, []int{10}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := logCache{maxEntries: tt.entries, maxBytes: tt.bytes}
			var logs []*raft.Log
			for i, sz := range tt.sizes {
				logs = append(logs, entry(uint64(i+1), sz))
			}
			c.add(logs)
			if len(c.logs) != tt.wantCount {
				t.Fatalf("%d entries cached, want %d", len(c.logs), tt.wantCount)
			}
			bytes := 0
			for i := range c.logs {
				bytes += len(c.logs[i].Data)
			}
			if bytes != c.bytes || bytes > tt.bytes {
				t.Fatalf("bytes %d counted %d, bound %d", bytes, c.bytes, tt.bytes)
			}
			if tt.wantCount > 0 {
				if c.logs[0].Index != uint64(tt.wantLo) || c.get(uint64(len(tt.sizes))) == nil {
					t.Fatalf("cached from %d, want from %d through the newest", c.logs[0].Index, tt.wantLo)
				}
			}
			if tt.wantLo > 1 && c.get(uint64(tt.wantLo-1)) != nil {
				t.Fatalf("entry %d still cached", tt.wantLo-1)
			}
		})
	}
}

// TestLogCacheConcurrentGetLog: GetLog while StoreLogs shifts the cache (the
// entry bound drops the oldest on every append) must return the entry asked
// for. GetLog used to copy the cached entry after releasing the lock, so a
// concurrent append could hand it another index's entry (and -race saw it,
// through hashicorp/raft's metrics goroutine reading the log).
func TestLogCacheConcurrentGetLog(t *testing.T) {
	db := openPebble(t, vfs.NewMem())
	defer db.Close()
	s, err := newLogStore(db, 1, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	const last = 3000
	storeRange(t, s, 1, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(2); i <= last; i++ {
			storeRange(t, s, i, i)
		}
	}()
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		hi, _ := s.LastIndex()
		for i := hi - min(hi-1, 3); i <= hi; i++ {
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil {
				t.Fatalf("GetLog(%d): %v", i, err)
			}
			if want := testLog(i); l.Index != i || !bytes.Equal(l.Data, want.Data) {
				t.Fatalf("GetLog(%d) returned index %d data %q", i, l.Index, l.Data)
			}
		}
	}
}
