package shardstore

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// coStore is a store on an in-memory filesystem for the cache-only tests, with
// what they check: the key index entries in Pebble, the meta's flag, and
// every key's Lookup against a model of the shard.
type coStore struct {
	t     *testing.T
	fs    vfs.FS
	s     *Store
	model map[string]*string // key -> live value; nil for a tombstone
	ms    int64              // append time of the next append
}

const coShard ShardID = 1

// keyCacheFor is a KeyCacheBytes under which a shard stays cache-only up to n
// keys of up to 9 bytes (and Open keeps up to twice as many cache-only).
func keyCacheFor(n int) int64 { return drainAt * int64(n) * keyCacheCost("key-00000") }

func newCOStore(t *testing.T, fs vfs.FS, keyCache int64) *coStore {
	c := &coStore{t: t, fs: fs, model: map[string]*string{}}
	c.open(keyCache)
	b := c.s.NewBatch()
	defer b.Close()
	if err := b.CreateShard(coShard, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *coStore) open(keyCache int64) {
	c.t.Helper()
	opts := testOptions(c.t, c.fs)
	opts.KeyCacheBytes = keyCache
	c.s = openStore(c.t, "db", opts)
}

func (c *coStore) reopen(keyCache int64) {
	c.t.Helper()
	if err := c.s.Close(); err != nil {
		c.t.Fatal(err)
	}
	c.open(keyCache)
}

// put appends recs (compacted, not idempotent) in one batch and records them
// in the model.
func (c *coStore) put(recs ...Record) {
	c.t.Helper()
	c.ms++
	b := c.s.NewBatch()
	defer b.Close()
	if _, err := b.Append(coShard, at(compact, c.ms), NoProducer, recs); err != nil {
		c.t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		c.t.Fatal(err)
	}
	for _, r := range recs {
		c.model[string(r.Key)] = valuePtr(r.Value)
	}
}

func valuePtr(v []byte) *string {
	if v == nil {
		return nil
	}
	s := string(v)
	return &s
}

// keys returns n records key-<from+i> = value.
func keys(from, n int, value string) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = kv(fmt.Sprintf("key-%05d", from+i), value)
	}
	return recs
}

// check compares every key of the model, and one it never had, with Lookup,
// and the shard's counters and records with the model.
func (c *coStore) check() {
	c.t.Helper()
	for k, want := range c.model {
		rec, ok, err := c.s.Lookup(coShard, []byte(k))
		switch {
		case err != nil || !ok:
			c.t.Fatalf("lookup %s: ok %v, %v", k, ok, err)
		case want == nil && rec.Value != nil, want != nil && (rec.Value == nil || string(rec.Value) != *want):
			c.t.Fatalf("lookup %s = %q, want %v", k, rec.Value, want)
		}
	}
	if _, ok, err := c.s.Lookup(coShard, []byte("never")); ok || err != nil {
		c.t.Fatalf("lookup of a key never written: ok %v, %v", ok, err)
	}
	st, err := c.s.State(coShard)
	if err != nil {
		c.t.Fatal(err)
	}
	recs, err := c.s.Read(coShard, 0, 0, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	data := 0 // records other than transaction markers
	for _, r := range recs {
		if r.Marker == nil {
			data++
		}
	}
	tombs := 0
	for _, v := range c.model {
		if v == nil {
			tombs++
		}
	}
	c.checkCharges()
	if st.LiveKeys != int64(len(c.model)-tombs) || st.Tombstones != int64(tombs) || st.LiveRecords != int64(len(recs)) || data != len(c.model) {
		c.t.Fatalf("state %+v with %d records read; the model has %d keys, %d of them tombstones", st, len(recs), len(c.model), tombs)
	}
}

// indexEntries counts the shard's key index entries in Pebble.
func (c *coStore) indexEntries() int {
	c.t.Helper()
	it, err := c.s.DB().NewIter(&pebble.IterOptions{LowerBound: sub(coShard, subKey), UpperBound: sub(coShard, subKey+1)})
	if err != nil {
		c.t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// flagged reads the cache-only flag of the shard's meta in Pebble, and checks
// that the shard in memory agrees.
func (c *coStore) flagged() bool {
	c.t.Helper()
	v, closer, err := c.s.DB().Get(metaKey(coShard))
	if err != nil {
		c.t.Fatal(err)
	}
	defer closer.Close()
	_, cacheOnly, err := decodeMeta(v)
	if err != nil {
		c.t.Fatal(err)
	}
	sh := c.s.shard(coShard)
	sh.mu.Lock()
	mem, complete := sh.cacheOnly, sh.cacheComplete
	sh.mu.Unlock()
	if mem != cacheOnly || (mem && !complete) {
		c.t.Fatalf("meta says cache-only %v, the shard %v (cache complete %v)", cacheOnly, mem, complete)
	}
	return cacheOnly
}

// wantIndex checks the flag and the number of index entries in Pebble.
func (c *coStore) wantIndex(cacheOnly bool, entries int) {
	c.t.Helper()
	if got := c.flagged(); got != cacheOnly {
		c.t.Fatalf("cache-only = %v, want %v", got, cacheOnly)
	}
	if got := c.indexEntries(); got != entries {
		c.t.Fatalf("%d key index entries in Pebble, want %d", got, entries)
	}
}

// TestCacheOnlyWritesNoIndex: a shard whose keys fit in the key cache writes
// no key index entry, answers lookups and replaces records from its cache,
// and gets its cache back from its records at Open.
func TestCacheOnlyWritesNoIndex(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), 0)
	c.put(keys(0, 50, "v1")...)
	b := c.s.NewBatch()
	if _, err := b.Append(coShard, at(compact, 100), NoProducer, keys(0, 3, "v2")); err != nil {
		t.Fatal(err)
	}
	for _, op := range batchOps(t, b) {
		if op.key.kind == kindKeyIndex {
			t.Fatalf("a cache-only shard's append writes the key index entry %x", op.raw)
		}
	}
	b.Close()
	c.put(keys(10, 20, "v2")...)
	c.put(tomb("key-00001"), kv("key-00002", "v3"))
	c.wantIndex(true, 0)
	c.check()
	// A new key's tombstone expired in the batch that wrote it: charged at
	// Commit, never cached.
	c.ms++
	b = c.s.NewBatch()
	if _, err := b.Append(coShard, at(compact, c.ms), NoProducer, []Record{tomb("brief")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExpireTombstones(coShard, c.ms+1); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	delete(c.model, "key-00001") // expired with it
	c.check()

	c.reopen(0)
	c.wantIndex(true, 0)
	c.check()
	// The rebuilt cache names the live records: replacing them deletes them.
	c.put(keys(0, 50, "v4")...)
	c.put(tomb("key-00003"))
	c.check()
	c.reopen(0)
	c.check()
}

// TestCacheOnlyOutgrowsCache: the batch whose new keys would not fit in the
// key cache writes the whole key index and ends cache-only, for good.
func TestCacheOnlyOutgrowsCache(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), keyCacheFor(40))
	c.put(keys(0, 30, "v1")...)
	c.put(tomb("key-00004"))
	c.wantIndex(true, 0)
	c.put(keys(25, 20, "v2")...) // 15 new keys: 45 do not fit
	c.wantIndex(false, 45)
	c.check()
	if got, limit := c.s.cached.Load(), c.s.cacheCap; got > limit {
		t.Fatalf("key caches charged %d bytes, above the %d limit", got, limit)
	}
	// Indexed now: a later batch writes its entries, and fewer keys do
	// not bring cache-only back.
	c.put(kv("key-00099", "v3"), tomb("key-00000"))
	c.wantIndex(false, 46)
	c.check()
	c.reopen(keyCacheFor(40))
	c.wantIndex(false, 46)
	c.check()
	c.put(keys(0, 46, "v5")...)
	c.check()
}

// TestCacheOnlyReopenWithSmallerCache: a cache-only shard whose keys no longer
// fit in the key cache at Open gets its key index written there.
func TestCacheOnlyReopenWithSmallerCache(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), 0)
	c.put(keys(0, 60, "v1")...)
	c.put(tomb("key-00007"))
	c.reopen(keyCacheFor(20))
	c.wantIndex(false, 60)
	c.check()
	c.put(keys(50, 20, "v2")...)
	c.check()
	c.reopen(0)
	c.wantIndex(false, 70)
	c.check()
}

// TestCacheOnlyOpenTransaction: records staged by an open transaction are no
// key's record when Open rebuilds the cache; the transaction's commit writes
// the key index (its entries hold the commit's time, which the records do
// not).
func TestCacheOnlyOpenTransaction(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), 0)
	c.put(kv("a", "1"), kv("b", "1"))
	txn := Producer{ID: 9, Epoch: 0, BaseSequence: 0, Transactional: true}
	b := c.s.NewBatch()
	if _, err := b.Append(coShard, at(compact, 50), txn, []Record{kv("a", "2"), kv("c", "2")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	c.reopen(0)
	c.wantIndex(true, 0)
	if rec, ok, err := c.s.Lookup(coShard, []byte("a")); err != nil || !ok || string(rec.Value) != "1" {
		t.Fatalf("lookup a with its new record staged: %q %v %v, want the committed 1", rec.Value, ok, err)
	}
	if _, ok, err := c.s.Lookup(coShard, []byte("c")); err != nil || ok {
		t.Fatalf("lookup c, only staged: ok %v, %v", ok, err)
	}

	b = c.s.NewBatch()
	if _, err := b.EndTxn(coShard, at(compact, 60), Marker{ProducerID: 9, Commit: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	c.model["a"], c.model["c"] = valuePtr([]byte("2")), valuePtr([]byte("2"))
	c.wantIndex(false, 3)
	c.check()
	c.reopen(0)
	c.check()
}

// TestCacheOnlyDeletePolicy: an append to a delete-policy shard (records a
// cache-only shard could not rebuild an index from) ends cache-only.
func TestCacheOnlyDeletePolicy(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), 0)
	b := c.s.NewBatch()
	if _, err := b.Append(coShard, del, NoProducer, []Record{{Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	c.wantIndex(false, 0)
	c.reopen(0)
	c.wantIndex(false, 0)
}

// TestCacheOnlyCrash runs on Pebble's crashable filesystem: the state DB has
// no WAL, so a crash loses what was not flushed, and the store must open
// consistent with the last flush whichever side of it the shard ended
// cache-only.
func TestCacheOnlyCrash(t *testing.T) {
	t.Run("IndexWrittenNotFlushed", func(t *testing.T) {
		fs := vfs.NewCrashableMem()
		c := newCOStore(t, fs, keyCacheFor(40))
		c.put(keys(0, 30, "v1")...)
		c.put(tomb("key-00002"))
		if err := c.s.Flush(); err != nil {
			t.Fatal(err)
		}
		flushed := maps.Clone(c.model)
		c.put(keys(20, 30, "v2")...) // outgrows the cache: index written
		c.wantIndex(false, 50)
		c.fs = fs.CrashClone(vfs.CrashCloneCfg{})
		c.model = flushed
		c.open(keyCacheFor(40))
		c.wantIndex(true, 0)
		c.check()
	})
	t.Run("IndexFlushed", func(t *testing.T) {
		fs := vfs.NewCrashableMem()
		c := newCOStore(t, fs, keyCacheFor(40))
		c.put(keys(0, 30, "v1")...)
		c.put(keys(20, 30, "v2")...)
		if err := c.s.Flush(); err != nil {
			t.Fatal(err)
		}
		flushed := maps.Clone(c.model)
		c.put(keys(0, 5, "v3")...)
		c.fs = fs.CrashClone(vfs.CrashCloneCfg{})
		c.model = flushed
		c.open(keyCacheFor(40))
		c.wantIndex(false, 50)
		c.check()
	})
	t.Run("SmallerCacheAtOpenNotFlushed", func(t *testing.T) {
		// Open writes the index for a cache too small; a crash before the
		// next flush loses it, and the next Open rebuilds the cache.
		fs := vfs.NewCrashableMem()
		c := newCOStore(t, fs, 0)
		c.put(keys(0, 60, "v1")...)
		c.reopen(keyCacheFor(20))
		c.wantIndex(false, 60)
		c.fs = fs.CrashClone(vfs.CrashCloneCfg{})
		c.open(0)
		c.wantIndex(true, 0)
		c.check()
	})
}

// TestCacheOnlyIngest: a snapshot of a cache-only shard carries no key index;
// the receiver rebuilds its cache from the records, or writes the index when
// its own key cache is too small.
func TestCacheOnlyIngest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keyCache  int64
		cacheOnly bool
	}{
		{"CacheHoldsTheKeys", 0, true},
		{"CacheTooSmall", keyCacheFor(20), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snd := newCOStore(t, vfs.NewMem(), 0)
			snd.put(keys(0, 40, "v1")...)
			snd.put(keys(30, 20, "v2")...)
			snd.put(tomb("key-00005"))
			snd.wantIndex(true, 0)

			rcv := newCOStore(t, vfs.NewMem(), tc.keyCache)
			rcv.put(keys(0, 10, "stale")...)
			stream := export(t, snd.s, 1, nil)
			if _, err := rcv.s.Ingest(bytes.NewReader(stream), ingestOpts(1, nil, 0)); err != nil {
				t.Fatal(err)
			}
			rcv.model = maps.Clone(snd.model)
			entries := 0
			if !tc.cacheOnly {
				entries = len(rcv.model)
			}
			rcv.wantIndex(tc.cacheOnly, entries)
			rcv.check()
			rcv.put(keys(0, 50, "v3")...)
			rcv.check()
			rcv.reopen(tc.keyCache)
			rcv.check()
		})
	}
}

// TestCacheOnlyRebuildChecksCounts: records that do not match the meta's
// counts fail Open instead of serving a wrong index.
func TestCacheOnlyRebuildChecksCounts(t *testing.T) {
	fs := vfs.NewMem()
	c := newCOStore(t, fs, 0)
	c.put(keys(0, 10, "v1")...)
	// Remove a live record behind the store's back.
	if err := c.s.DB().Delete(recordKey(coShard, 3), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t, fs)
	s, err := Open("db", opts)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open accepted a cache-only shard missing a live record")
	}
	if !strings.Contains(err.Error(), "its meta counts 10") {
		t.Fatalf("Open: %v, want the count mismatch", err)
	}
}

// indexMatches checks the shard's key index entries in Pebble against its
// records: one entry per key, naming the key's live record.
func (c *coStore) indexMatches() {
	c.t.Helper()
	recs, err := c.s.Read(coShard, 0, 0, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	live := map[string]int64{}
	for _, r := range recs {
		if r.Marker == nil {
			live[string(r.Key)] = r.Offset
		}
	}
	it, err := c.s.DB().NewIter(&pebble.IterOptions{LowerBound: sub(coShard, subKey), UpperBound: sub(coShard, subKey+1)})
	if err != nil {
		c.t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		pk, _ := parseKey(it.Key())
		e, err := decodeKeyEntry(it.Value())
		if err != nil {
			c.t.Fatal(err)
		}
		if off, ok := live[string(pk.key)]; !ok || off != e.offset {
			c.t.Fatalf("key index entry of %s names offset %d; its live record is at %d (live %v)", pk.key, e.offset, off, ok)
		}
		n++
	}
	if n != len(live) || n != len(c.model) {
		c.t.Fatalf("%d key index entries, %d live keys in the records, %d in the model", n, len(live), len(c.model))
	}
}

// expireTombstones expires every tombstone appended so far.
func (c *coStore) expireTombstones() {
	c.t.Helper()
	b := c.s.NewBatch()
	defer b.Close()
	if _, err := b.ExpireTombstones(coShard, c.ms+1); err != nil {
		c.t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.model {
		if v == nil {
			delete(c.model, k)
		}
	}
}

// TestCacheOnlyDrain: a shard whose new keys overflow the key cache writes its
// index a chunk per batch, with each batch's own keys, and ends cache-only
// with the last chunk; the caches are back within their bound then.
func TestCacheOnlyDrain(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), keyCacheFor(40))
	c.s.drainMin = 2
	c.put(keys(0, 36, "v1")...)
	c.put(keys(36, 6, "v1")...) // overflows: the drain starts
	c.wantIndex(true, 6+2+drainPerKey*6)
	c.check()
	c.put(tomb("key-00001")) // a few more of the 28 left
	if !c.flagged() {
		t.Fatal("drain ended early")
	}
	c.check()
	for c.flagged() {
		c.put(kv("key-00003", "v3"))
	}
	c.check()
	c.indexMatches()
	if got, limit := c.s.cached.Load(), c.s.cacheCap; got > limit {
		t.Fatalf("key caches charged %d bytes after the drain, above the %d limit", got, limit)
	}
	c.put(keys(0, 50, "v4")...)
	c.check()
	c.indexMatches()
	c.reopen(keyCacheFor(40))
	c.check()
	c.indexMatches()
}

// TestCacheOnlyDrainInterrupted: a crash in the middle of a drain leaves some
// entries in Pebble with the flag still set. They go stale while the shard is
// cache-only again, and whatever writes the index next (Open with a smaller
// cache, or a new drain) leaves exactly the live keys' entries.
func TestCacheOnlyDrainInterrupted(t *testing.T) {
	for _, next := range []string{"OpenWithSmallerCache", "NewDrain"} {
		t.Run(next, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			c := newCOStore(t, fs, keyCacheFor(40))
			c.s.drainMin = 2
			c.put(keys(0, 39, "v1")...)
			// Overflows: a partial drain, which writes this batch's own
			// entries, the tombstone's among them.
			c.put(kv("key-00039", "v1"), kv("key-00040", "v1"), tomb("key-00005"))
			if !c.flagged() || c.indexEntries() == 0 {
				t.Fatalf("want a drain in progress: flag %v, %d entries", c.flagged(), c.indexEntries())
			}
			if err := c.s.Flush(); err != nil {
				t.Fatal(err)
			}
			c.fs = fs.CrashClone(vfs.CrashCloneCfg{})
			c.open(0) // room for every key: cache-only again
			c.wantIndex(true, c.indexEntries())
			c.check()
			// Entries written by the drain go stale, and a removed key's
			// entry must go.
			c.put(keys(6, 35, "v2")...)
			c.put(tomb("key-00010"))
			c.expireTombstones()
			c.check()
			switch next {
			case "OpenWithSmallerCache":
				c.reopen(keyCacheFor(10))
			case "NewDrain":
				c.reopen(keyCacheFor(40))
				c.s.drainMin = 2
				for i := 0; c.flagged(); i++ {
					c.put(kv(fmt.Sprintf("new-%d", i), "v3"))
				}
			}
			c.wantIndex(false, len(c.model))
			c.check()
			c.indexMatches()
		})
	}
}

// TestCacheOnlyDrainTrims: Open keeps a shard cache-only up to the whole key
// cache, so its drain may take the caches past their bound; the batch that
// ends it evicts back under it.
func TestCacheOnlyDrainTrims(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), 0)
	c.put(keys(0, 39, "v1")...)
	c.reopen(keyCacheFor(20)) // room for 40 keys, cache-only up to 20
	c.wantIndex(true, 0)
	c.s.drainMin = 2
	over := false
	for i := 0; c.flagged(); i++ {
		c.put(kv(fmt.Sprintf("new-%02d", i), "v"))
		over = over || c.s.cached.Load() > c.s.cacheCap
	}
	if !over {
		t.Fatal("the drain never took the caches past their bound: the test tests nothing")
	}
	if got, limit := c.s.cached.Load(), c.s.cacheCap; got > limit {
		t.Fatalf("key caches charged %d bytes after the drain, above the %d limit", got, limit)
	}
	c.check()
	c.indexMatches()
}

// TestCacheOnlyIngestWhileDraining: an ingest replaces a draining shard; the
// drain of the replaced keys must not carry over to the ingested ones.
func TestCacheOnlyIngestWhileDraining(t *testing.T) {
	snd := newCOStore(t, vfs.NewMem(), 0)
	snd.put(keys(100, 30, "snd")...)

	rcv := newCOStore(t, vfs.NewMem(), keyCacheFor(40))
	rcv.s.drainMin = 2
	rcv.put(keys(0, 39, "rcv")...)
	rcv.put(keys(39, 2, "rcv")...) // a drain starts
	if !rcv.flagged() || rcv.indexEntries() == 0 {
		t.Fatalf("want a drain in progress: flag %v, %d entries", rcv.flagged(), rcv.indexEntries())
	}
	if _, err := rcv.s.Ingest(bytes.NewReader(export(t, snd.s, 1, nil)), ingestOpts(1, nil, 0)); err != nil {
		t.Fatal(err)
	}
	rcv.model = maps.Clone(snd.model)
	rcv.wantIndex(true, 0)
	rcv.check()
	for i := 0; rcv.flagged(); i++ {
		rcv.put(kv(fmt.Sprintf("new-%02d", i), "v"))
	}
	rcv.check()
	rcv.indexMatches()
}

// checkCharges checks the key caches' accounting: each shard is charged what
// its entries cost, and the store the sum.
func (c *coStore) checkCharges() {
	c.t.Helper()
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	var sum int64
	for id, sh := range c.s.shards {
		sh.mu.Lock()
		var cost int64
		sh.cache.each(func(k []byte, _ keyEntry) { cost += keyCacheCost(string(k)) })
		charged := sh.cacheBytes
		sh.mu.Unlock()
		if cost != charged {
			c.t.Fatalf("shard %d: cache entries cost %d, charged %d", id, cost, charged)
		}
		sum += charged
	}
	if got := c.s.cached.Load(); got != sum {
		c.t.Fatalf("key caches charged %d in all, the shards %d", got, sum)
	}
}

// TestCacheOnlyDrainSortedAside: a long drain list is sorted by a goroutine;
// the drain's batches write their own keys meanwhile, then the list, and the
// index ends exact.
func TestCacheOnlyDrainSortedAside(t *testing.T) {
	c := newCOStore(t, vfs.NewMem(), keyCacheFor(40))
	c.s.drainMin, c.s.drainSortAside = 2, 0
	c.put(keys(0, 39, "v1")...)
	c.put(keys(39, 2, "v1")...) // the drain starts, its list sorted aside
	sh := c.s.shard(coShard)
	sh.mu.Lock()
	aside := sh.drainSort != nil
	sh.mu.Unlock()
	if !aside {
		t.Fatal("the drain's list was not sorted aside")
	}
	for i := 0; c.flagged(); i++ {
		if i == 10000 {
			t.Fatal("the drain never ended")
		}
		c.put(kv(fmt.Sprintf("new-%05d", i), "v"))
		c.check()
	}
	c.check()
	c.indexMatches()
}

// TestMergeCacheAfterEviction: on an indexed shard whose key cache is full,
// batches rewrite every key and add new ones, so each merge evicts keys
// that the batch's Appends found cached, some before it reaches them. The
// cache's accounting and every lookup stay exact.
func TestMergeCacheAfterEviction(t *testing.T) {
	const n = 200
	c := newCOStore(t, vfs.NewMem(), keyCacheFor(n))
	for i := 0; c.flagged(); i++ {
		c.put(keys(i*100, 100, "v0")...)
	}
	live := len(c.model)
	for round := 0; round < 4; round++ {
		recs := append(keys(0, live, fmt.Sprintf("v%d", round+1)), keys(live+round*400, 400, "new")...)
		c.put(recs...)
		c.checkCharges()
		if got, limit := c.s.cached.Load(), c.s.cacheCap; got > limit {
			t.Fatalf("round %d: key caches charged %d bytes, above the %d limit", round, got, limit)
		}
	}
	c.check()
}
