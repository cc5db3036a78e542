package shardstore

import (
	"fmt"
	"testing"
	"time"
)

// TestKeyFilterGrows: every key added, across the parts the filter grows
// into, is reported as maybe present; keys never added are mostly ruled out
// (a blocked Bloom filter of 10 bits per key gives about 1% per part).
func TestKeyFilterGrows(t *testing.T) {
	f := newKeyFilter(0)
	const n = 20_000
	for i := range n {
		h := f.hash(fmt.Sprintf("key-%d", i))
		if f.mayContain(h) {
			continue
		}
		if f.full() {
			want := f.nextPartBytes()
			if got := f.grow(); got != want {
				t.Fatalf("grow added %d bytes, nextPartBytes said %d", got, want)
			}
		}
		f.add(h)
	}
	if len(f.parts) < 4 {
		t.Fatalf("%d keys in %d parts, want the filter to have grown", n, len(f.parts))
	}
	var sum int64
	for _, p := range f.parts {
		sum += int64(len(p.blocks)) * filterBlockBytes
	}
	if sum != f.bytes {
		t.Fatalf("bytes %d, parts hold %d", f.bytes, sum)
	}
	for i := range n {
		if !f.mayContain(f.hashBytes(fmt.Appendf(nil, "key-%d", i))) {
			t.Fatalf("key-%d was added but is ruled out", i)
		}
	}
	fp := 0
	for i := range n {
		if f.mayContain(f.hash(fmt.Sprintf("absent-%d", i))) {
			fp++
		}
	}
	t.Logf("%d keys, %d parts, %d bytes; false positives %d of %d absent keys", n, len(f.parts), f.bytes, fp, n)
	if fp > n*len(f.parts)*3/100 {
		t.Fatalf("%d false positives in %d absent keys over %d parts", fp, n, len(f.parts))
	}
}

// filterKey is the i-th key of the key filter tests.
func filterKey(i int) string { return fmt.Sprintf("key-%05d", i) }

// writeAll writes keys from..to-1 of shard id with value v, step keys per
// append.
func (h *h) writeAll(id ShardID, from, to, step int, v string) {
	h.t.Helper()
	for i := from; i < to; i += step {
		recs := make([]Record, 0, step)
		for j := i; j < min(i+step, to); j++ {
			recs = append(recs, kv(filterKey(j), v))
		}
		h.mustAppend(id, compact, NoProducer, recs...)
	}
}

// rewriteExact writes keys 0..n-1 of shard 1 again and checks that each
// replaced exactly its record.
func (h *h) rewriteExact(n int) {
	h.t.Helper()
	h.writeAll(1, 0, n, n, "v2")
	if st := h.state(1); st.LiveKeys != int64(n) || st.LiveRecords != int64(n) {
		h.t.Fatalf("after every key written again: %+v, want %d live keys and records", st, n)
	}
}

// keyFilterStore opens a store whose key cache holds 100 keys of
// filterKey with shard 1 created.
func keyFilterStore(t *testing.T) *h {
	s := openStore(t, t.TempDir(), Options{CacheBytes: 1 << 20, KeyCacheBytes: 100 * keyCacheCost(filterKey(0)), Logger: testLogger(t)})
	hd := &h{t: t, s: s}
	hd.create(1)
	return hd
}

// TestKeyFilterSkipsIndexReads: once the key cache is full, new keys are
// written without a key index read (the filter rules them out), a store
// without filters reads the index for each, and compaction stays exact
// either way when every key is written again.
func TestKeyFilterSkipsIndexReads(t *testing.T) {
	for _, filters := range []bool{true, false} {
		t.Run(fmt.Sprintf("filters=%v", filters), func(t *testing.T) {
			hd := keyFilterStore(t)
			if !filters {
				hd.s.filterCap = 0
			}
			hd.writeAll(1, 0, 100, 1, "v1")
			if n := hd.s.indexReads.Load(); n != 0 {
				t.Fatalf("%d index reads while the cache held every key", n)
			}
			hd.writeAll(1, 100, 500, 1, "v1")
			reads := hd.s.indexReads.Load()
			sh := hd.s.shard(1)
			sh.mu.Lock()
			hasFilter, filtered := sh.filter != nil, hd.s.filtered.Load()
			sh.mu.Unlock()
			t.Logf("400 new keys past a full cache: %d index reads, filter %v (%d bytes)", reads, hasFilter, filtered)
			if filters {
				// False positives: about 1% per part of 400 keys.
				if !hasFilter || filtered < keyFilterPartBytes(200) || reads > 20 {
					t.Fatalf("filter %v, %d bytes, %d index reads", hasFilter, filtered, reads)
				}
			} else if hasFilter || filtered != 0 || reads < 300 {
				// The cache admits one new key in eight, whose lookups are
				// the rest.
				t.Fatalf("filter %v, %d bytes, %d index reads", hasFilter, filtered, reads)
			}
			hd.rewriteExact(500)
			if hd.s.indexReads.Load() == reads {
				t.Fatal("keys the cache does not hold were rewritten without an index read")
			}
			for _, r := range hd.read(1, 0) {
				if string(r.Value) != "v2" {
					t.Fatalf("record %s at %d: value %q", r.Key, r.Offset, r.Value)
				}
			}
		})
	}
}

// TestKeyFilterBound: a filter that would grow past the filters' bound is
// dropped and its bytes given back; the shard's appends then read the index
// and stay exact. Deleting the shard gives back a filter's bytes.
func TestKeyFilterBound(t *testing.T) {
	hd := keyFilterStore(t)
	// Room for the first part (2 x 100 keys, at least filterMinPartRoom),
	// not for a second.
	hd.s.filterCap = keyFilterPartBytes(filterMinPartRoom)
	hd.writeAll(1, 0, 101, 1, "v1")
	sh := hd.s.shard(1)
	sh.mu.Lock()
	hasFilter, filtered := sh.filter != nil, hd.s.filtered.Load()
	sh.mu.Unlock()
	if !hasFilter || filtered != hd.s.filterCap {
		t.Fatalf("after the cache filled: filter %v, %d bytes, want one part of %d", hasFilter, filtered, hd.s.filterCap)
	}
	const more = 2050 // past the first part's room
	hd.writeAll(1, 101, 101+more, 50, "v1")
	sh.mu.Lock()
	hasFilter, filtered = sh.filter != nil, hd.s.filtered.Load()
	sh.mu.Unlock()
	if hasFilter || filtered != 0 {
		t.Fatalf("past the bound: filter %v, %d bytes, want it dropped", hasFilter, filtered)
	}
	reads := hd.s.indexReads.Load()
	hd.mustAppend(1, compact, NoProducer, kv(filterKey(0), "v2"), kv(filterKey(5000), "v1"))
	if hd.s.indexReads.Load() == reads {
		t.Fatal("no index read without a filter")
	}
	total := 101 + more + 1
	if st := hd.state(1); st.LiveKeys != int64(total) || st.LiveRecords != int64(total) {
		t.Fatalf("state %+v, want %d live keys and records", st, total)
	}

	// A new shard's filter, then the shard deleted.
	hd.create(2)
	hd.writeAll(2, 0, 101, 1, "v1")
	if got := hd.s.filtered.Load(); got != hd.s.filterCap {
		t.Fatalf("shard 2's filter: %d bytes, want %d", got, hd.s.filterCap)
	}
	b := hd.s.NewBatch()
	defer b.Close()
	if err := b.DeleteShard(2); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := hd.s.filtered.Load(); got != 0 {
		t.Fatalf("after the shard's deletion the filters hold %d bytes", got)
	}
}

// waitFilter waits for the builder to give shard id a filter.
func waitFilter(t *testing.T, s *Store, id ShardID) {
	t.Helper()
	for range 1000 {
		sh := s.shard(id)
		sh.mu.Lock()
		ready := sh.filter != nil
		sh.mu.Unlock()
		if ready {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("shard %d has no key filter after 5 s", id)
}

// TestKeyFilterAfterReopen: a shard opened with keys gets its filter from
// the builder's scan of its key index, including keys written while the scan
// runs (written from the hook, after the scan's iterator opened, so only
// mergeCache can add them); new keys then cost no index reads, and every key
// written again replaces exactly its record.
func TestKeyFilterAfterReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{CacheBytes: 1 << 20, KeyCacheBytes: 100 * keyCacheCost(filterKey(0)), Logger: testLogger(t)}
	hd := &h{t: t, s: openStore(t, dir, opts)}
	hd.create(1)
	hd.writeAll(1, 0, 300, 50, "v1")
	if err := hd.s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: the cache is empty and incomplete, so the builder scans.
	// The hook writes keys 300-349 once the scan's iterator is open.
	hooked := make(chan struct{})
	filterBuildHook = func(s *Store, id ShardID) {
		defer close(hooked)
		hw := &h{t: t, s: s}
		hw.writeAll(id, 300, 350, 50, "v1")
	}
	defer func() { filterBuildHook = nil }()
	s := openStore(t, dir, opts)
	hd.s = s
	<-hooked
	waitFilter(t, s, 1)
	sh := s.shard(1)
	sh.mu.Lock()
	for i := range 350 {
		if !sh.filter.mayContain(sh.filter.hash(filterKey(i))) {
			sh.mu.Unlock()
			t.Fatalf("%s is in the key index but ruled out by the built filter", filterKey(i))
		}
	}
	sh.mu.Unlock()

	reads := s.indexReads.Load()
	hd.writeAll(1, 350, 750, 1, "v1")
	if n := s.indexReads.Load() - reads; n > 20 {
		t.Fatalf("400 new keys after the filter was built cost %d index reads", n)
	}
	hd.rewriteExact(750)
}
