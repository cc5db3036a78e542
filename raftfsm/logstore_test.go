package raftfsm

import (
	"bytes"
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
		if got, want := len(encodeLog(nil, l)), logValueSize(l); got != want {
			t.Errorf("encoded %d bytes, size says %d", got, want)
		}
	}
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
