package shardstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// idleStore opens a store without idle compaction, creates shard 1, runs
// write, and reopens the store with idle compaction after idle. Writing with
// it off keeps a compaction from starting between two writes that a loaded
// machine spaces more than idle apart; the reopened store's compactor counts
// its quiet from the open.
func idleStore(t *testing.T, idle time.Duration, write func(*h)) *h {
	dir := t.TempDir()
	opts := Options{CacheBytes: 1 << 20, Logger: testLogger(t)}
	hd := &h{t: t, s: openStore(t, dir, opts)}
	hd.create(1)
	write(hd)
	if err := hd.s.Close(); err != nil {
		t.Fatal(err)
	}
	opts.IdleCompaction = idle
	hd.s = openStore(t, dir, opts)
	return hd
}

// writeVersions writes keys 0..keys-1 of shard 1 versions times, the value
// naming the version, with a flush after each version: one L0 sublevel each.
// The values are 400 bytes so that the deletes of the replaced records stay a
// small part of each table: Pebble compacts a table whose blocks are mostly
// tombstones by itself (its tombstone-density compaction), which would take
// L0 away before the store's rule is asked.
func (h *h) writeVersions(keys, versions int) {
	h.t.Helper()
	for v := range versions {
		h.writeAll(1, 0, keys, 500, fmt.Sprintf("version-%d-%0400d", v, v))
		if err := h.s.Flush(); err != nil {
			h.t.Fatal(err)
		}
	}
}

// tables returns the bytes of the state DB's L0 and of all its levels.
func (h *h) tables() (l0, total int64) {
	m := h.s.db.Metrics()
	return m.Levels[0].TablesSize, m.Total().TablesSize
}

// TestIdleCompaction: a store that goes quiet after writing every key a few
// times compacts L0 away, once, and every key still reads its last value.
func TestIdleCompaction(t *testing.T) {
	const keys, versions = 5000, 4
	hd := idleStore(t, 100*time.Millisecond, func(hd *h) { hd.writeVersions(keys, versions) })
	l0, total := hd.tables()
	t.Logf("before: L0 %d bytes, all levels %d", l0, total)
	if l0 == 0 {
		t.Fatal("no L0 tables after the flushes")
	}
	deadline := time.Now().Add(30 * time.Second)
	for hd.s.idleCompactions.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no idle compaction within 30 s of the last write")
		}
		time.Sleep(20 * time.Millisecond)
	}
	l0After, totalAfter := hd.tables()
	t.Logf("after: L0 %d bytes, all levels %d", l0After, totalAfter)
	if l0After != 0 || totalAfter*2 > total {
		t.Fatalf("after the idle compaction: L0 %d bytes, all levels %d (before %d)", l0After, totalAfter, total)
	}
	recs := hd.read(1, 0)
	if len(recs) != keys {
		t.Fatalf("read %d records, want %d", len(recs), keys)
	}
	want := fmt.Sprintf("version-%d-%0400d", versions-1, versions-1)
	for _, r := range recs {
		if string(r.Value) != want {
			t.Fatalf("record %s at %d: value %.20q", r.Key, r.Offset, r.Value)
		}
	}
	// Quiet again with nothing written since: no second compaction.
	time.Sleep(500 * time.Millisecond)
	if n := hd.s.idleCompactions.Load(); n != 1 {
		t.Fatalf("%d idle compactions, want 1", n)
	}
}

// TestOnIdleHook: the OnIdle hook runs once per quiet spell, whether or not
// the store then compacts (one flush here: it does not).
func TestOnIdleHook(t *testing.T) {
	hd := idleStore(t, time.Second, func(hd *h) { hd.writeVersions(500, 1) })
	var hooks atomic.Int32
	hd.s.OnIdle(func(context.Context) { hooks.Add(1) })
	wait := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for hooks.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("the hook ran %d times in 20 s, want %d", hooks.Load(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(1500 * time.Millisecond) // quiet past the delay again
		if n := hooks.Load(); n != want {
			t.Fatalf("the hook ran %d times, want %d", n, want)
		}
	}
	wait(1)
	hd.writeAll(1, 0, 10, 10, "again")
	wait(2)
	hd.s.OnIdle(nil)
	hd.writeAll(1, 0, 10, 10, "once more")
	time.Sleep(2500 * time.Millisecond)
	if n := hooks.Load(); n != 2 {
		t.Fatalf("the hook ran %d times after it was cleared, want 2", n)
	}
	if n := hd.s.idleCompactions.Load(); n != 0 {
		t.Fatalf("%d idle compactions of one flush", n)
	}
}

// TestIdleCompactionWaitsForQuiet: while commits keep coming, closer together
// than the idle delay, the store does not compact, whatever L0 holds.
func TestIdleCompactionWaitsForQuiet(t *testing.T) {
	hd := idleStore(t, time.Second, func(hd *h) { hd.writeVersions(2000, 3) })
	for i := range 250 { // 2.5 s of one small write every 10 ms
		hd.writeAll(1, i%2000, i%2000+1, 1, "busy")
		time.Sleep(10 * time.Millisecond)
	}
	if n := hd.s.idleCompactions.Load(); n != 0 {
		t.Fatalf("%d idle compactions while writes went on", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for hd.s.idleCompactions.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no idle compaction within 30 s of the last write")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdleCompactionRule: one flush in L0, or an L0 smaller than the levels
// below, is left alone; idle compaction off (0) never runs.
func TestIdleCompactionRule(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		hd := idleStore(t, 0, func(hd *h) { hd.writeVersions(2000, 3) })
		time.Sleep(500 * time.Millisecond)
		if n := hd.s.idleCompactions.Load(); n != 0 {
			t.Fatalf("%d idle compactions with IdleCompaction 0", n)
		}
		if l0, _ := hd.tables(); l0 == 0 {
			t.Fatal("L0 compacted with idle compaction off (the test would not see a rule fail)")
		}
	})
	t.Run("one sublevel", func(t *testing.T) {
		hd := idleStore(t, 50*time.Millisecond, func(hd *h) { hd.writeVersions(2000, 1) })
		time.Sleep(500 * time.Millisecond)
		if n := hd.s.idleCompactions.Load(); n != 0 {
			t.Fatalf("%d idle compactions of a single flush", n)
		}
	})
	t.Run("small L0 over a larger level", func(t *testing.T) {
		hd := idleStore(t, 50*time.Millisecond, func(hd *h) {
			hd.writeVersions(20000, 1)
			if err := hd.s.db.Compact(t.Context(), shardsStart(), shardsEnd(), false); err != nil {
				t.Fatal(err)
			}
			// Two small flushes over it: a few keys each.
			hd.writeAll(1, 0, 100, 100, "small-1")
			if err := hd.s.Flush(); err != nil {
				t.Fatal(err)
			}
			hd.writeAll(1, 0, 100, 100, "small-2")
			if err := hd.s.Flush(); err != nil {
				t.Fatal(err)
			}
		})
		m := hd.s.db.Metrics()
		if m.Levels[0].Sublevels < 2 {
			t.Fatalf("L0 has %d sublevels, want 2 for this case", m.Levels[0].Sublevels)
		}
		time.Sleep(500 * time.Millisecond)
		if n := hd.s.idleCompactions.Load(); n != 0 {
			t.Fatalf("%d idle compactions of a small L0 over a larger level", n)
		}
	})
}

// bottomCodecs counts the state DB's bottom-level tables by the compression
// profile they were written with.
func (h *h) bottomCodecs() map[string]int {
	h.t.Helper()
	levels, err := h.s.db.SSTables(pebble.WithProperties())
	if err != nil {
		h.t.Fatal(err)
	}
	n := map[string]int{}
	for _, tab := range levels[len(levels)-1] {
		n[tab.Properties.CompressionName]++
	}
	return n
}

// TestIdleCompactionCompressesBottomLevel: the tables an idle compaction
// writes to the bottom level use idleCompression (zstd); a compaction that
// is not idle (a load's, or this test's own Compact) keeps MinLZ, and so do
// the levels above.
func TestIdleCompactionCompressesBottomLevel(t *testing.T) {
	const keys, versions = 5000, 4
	busy := idleStore(t, 0, func(hd *h) { hd.writeVersions(keys, versions) })
	if err := busy.s.db.Compact(t.Context(), shardsStart(), shardsEnd(), false); err != nil {
		t.Fatal(err)
	}
	if got := busy.bottomCodecs(); got[sstable.FastestCompression.Name] == 0 || len(got) != 1 {
		t.Fatalf("bottom level after a compaction that is not idle: %v, want only %s", got, sstable.FastestCompression.Name)
	}

	idle := idleStore(t, 100*time.Millisecond, func(hd *h) { hd.writeVersions(keys, versions) })
	deadline := time.Now().Add(30 * time.Second)
	for idle.s.idleCompactions.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no idle compaction within 30 s of the last write")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := idle.bottomCodecs(); got[idleCompression.Name] == 0 || len(got) != 1 {
		t.Fatalf("bottom level after the idle compaction: %v, want only %s", got, idleCompression.Name)
	}
	if idle.s.idleCompressing.Load() {
		t.Fatal("still compressing with zstd after the idle compaction")
	}
	_, busyBytes := busy.tables()
	_, idleBytes := idle.tables()
	t.Logf("the same data in the bottom level: %d bytes with MinLZ, %d with zstd", busyBytes, idleBytes)
	if idleBytes >= busyBytes {
		t.Fatalf("zstd tables %d bytes, MinLZ ones %d: no smaller", idleBytes, busyBytes)
	}
	if len(idle.read(1, 0)) != keys {
		t.Fatal("records lost")
	}
}
