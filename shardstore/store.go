package shardstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultCacheBytes    = 512 << 20
	DefaultMemTableBytes = 64 << 20
	// DefaultLogMemTableBytes is the memtable of the Raft log DB: entries are
	// trimmed soon after they are applied, so most never reach a table.
	DefaultLogMemTableBytes = 16 << 20
	// DefaultLogDirName is where the Raft log DB lives inside the store's
	// directory when Options.LogDir is empty.
	DefaultLogDirName = "raftlog"
	// DefaultKeyCacheBytes holds 2^21 entries of 16-byte keys (64 bytes
	// each, keyCacheCost); it held 2^20 while the cache was a Go map.
	DefaultKeyCacheBytes = 128 << 20
)

// MaxKeyCacheBytes bounds Options.KeyCacheBytes (and --key-cache-bytes).
const MaxKeyCacheBytes = 1 << 40

// DefaultIdleCompaction is --idle-compaction's default (Options.IdleCompaction
// has none: 0 turns idle compaction off); MaxIdleCompaction bounds both.
const (
	DefaultIdleCompaction = 5 * time.Second
	MaxIdleCompaction     = 24 * time.Hour
)

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("shardstore: store closed")

// Options configure Open.
type Options struct {
	// FS is the filesystem; nil means vfs.Default. Tests use vfs.NewMem().
	FS vfs.FS
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// CacheBytes is Pebble's block cache size; 0 means the default (512 MiB).
	CacheBytes int64
	// MemTableBytes is Pebble's memtable size; 0 means the default (64 MiB).
	// It also bounds what a crash loses from the state DB, which has no WAL:
	// Raft re-delivers those entries from its log at the next start.
	MemTableBytes uint64
	// LogDir is the directory of the Raft log DB (LogDB); "" means
	// DefaultLogDirName inside the store's directory.
	LogDir string
	// NewLogDir, when set, is asked before Open creates a Raft log DB in a
	// LogDir that does not exist, with the state DB open: an error ends Open
	// with nothing created there. The Raft layer refuses a state DB that
	// holds a cluster's data but no Raft log (raftfsm.CheckNewLogDB).
	NewLogDir func(state *pebble.DB) error
	// LogMemTableBytes is the Raft log DB's memtable size; 0 means the default
	// (16 MiB).
	LogMemTableBytes uint64
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// KeyCacheBytes bounds the in-memory key -> live offset cache in front of
	// the key index, over all shards, in bytes of memory: each entry is
	// charged its key's length plus keyCacheEntryOverhead. 0 means the
	// default (DefaultKeyCacheBytes, 128 MiB), negative disables the cache;
	// at most MaxKeyCacheBytes.
	KeyCacheBytes int64
	// IdleCompaction is how long the store must go without a commit before
	// it compacts its shards' L0 away (idlecompact.go); 0 never does.
	IdleCompaction time.Duration
}

// Store is one node's two Pebble databases.
//
// The state DB (DB) holds every shard on the node and, under raftfsm's own key
// prefixes, cluster metadata and each group's applied index. It runs without a
// write-ahead log: it is durable up to its last flush (Flush, a full memtable,
// Close), and a crash rolls it back to a prefix of its commits, where data and
// applied index, committed in the same batches, still agree. Raft re-delivers
// the rest from its log, which is why raftfsm may trim a log only up to an
// index the state DB has flushed.
//
// The Raft log DB (LogDB) holds what must be durable on its own write: the Raft
// logs, stable stores and snapshot markers, and the node's identity. It keeps a
// WAL and its writers commit with pebble.Sync.
//
// Concurrency: reads are safe from any goroutine. Writes go through Batch; batches
// that touch the same shard must not be used concurrently (each shard belongs to
// one Raft group, whose FSM applies its entries on one goroutine).
type Store struct {
	db       *pebble.DB // state: no WAL
	logDB    *pebble.DB // Raft logs and node-local keys: WAL, synced writes
	log      *slog.Logger
	cacheCap int64 // KeyCacheBytes in force; 0: no cache
	drainMin int   // drainMinChunk, smaller in tests
	// drainSortAside is the constant of that name, smaller in tests.
	drainSortAside int
	cached         atomic.Int64 // bytes charged by all shards' key caches (keyCacheCost)
	// filterCap bounds the bytes of all shards' key filters (keyfilter.go),
	// filtered: half of KeyCacheBytes, on top of it.
	filterCap int64
	filtered  atomic.Int64
	// indexReads counts the keys appends looked up in the key index.
	indexReads atomic.Int64
	// The key filter builder (keyfilter.go): filterWake asks it to look for
	// shards opened with keys.
	filterWake chan struct{}
	// commits counts committed batches; the idle compactor (idlecompact.go)
	// watches it, and idleCompactions counts what it ran.
	commits         atomic.Uint64
	idleCompactions atomic.Int64
	// idleCompressing is set while an idle compaction runs: the bottom
	// level's tables are then written with idleCompression.
	idleCompressing *atomic.Bool
	// onIdle is run by the idle compactor before it compacts (OnIdle).
	onIdle atomic.Pointer[func(context.Context)]
	// The background goroutines (key filter builder, idle compactor) end at
	// Close: bgStop is closed, bgCancel cancels their Pebble calls, bgDone
	// waits for them.
	bgStop   chan struct{}
	bgCancel context.CancelFunc
	bgDone   sync.WaitGroup
	stopOnce sync.Once
	metrics  *metrics

	// life is held shared by every operation that touches db and exclusively by
	// Close, so Close waits for them and later calls get ErrClosed.
	life   sync.RWMutex
	closed bool

	// fs and popts (Pebble's options with defaults filled in) are what Ingest
	// writes its tables with.
	fs    vfs.FS
	popts *pebble.Options

	mu      sync.RWMutex // guards shards (the map, not the shard contents) and exports
	shards  map[ShardID]*shard
	exports map[*Export]struct{} // open Exports, released by Close
}

// shard is the in-memory part of one shard: its counters (a copy of the meta
// key), the Wait channel and the key cache.
type shard struct {
	id ShardID

	mu   sync.Mutex // guards the fields below
	st   State
	wait chan struct{}
	// cache maps record key -> key index entry for some of the shard's keys.
	// Entries are exact copies of the key index; a missing entry says nothing
	// unless cacheComplete, which holds while the cache has every key index
	// entry (a shard created or opened empty, nothing evicted yet).
	cache         *keyTable
	cacheComplete bool
	// cacheOnly: the cache is the shard's whole key index, which Pebble does
	// not hold (cacheonly.go). It implies cacheComplete.
	cacheOnly bool
	// draining: a cache-only shard writing its key index to Pebble, a
	// chunk per batch; drain is the keys whose entries are still to write.
	draining bool
	drain    []string
	// drainSort is the drain's list while a goroutine sorts it; nil once
	// a batch took it into drain.
	drainSort *drainSort
	// commitMu orders a cache-only shard's Lookups (shared) and commits
	// (exclusive, from the Pebble commit until the cache has its keys), so
	// a Lookup never reads a cache entry whose record a commit has already
	// replaced. Taken before s.mu and mu.
	commitMu sync.RWMutex
	// filter, once the cache stopped holding every key, has every key the
	// shard had then and every key written since: a key it rules out is not
	// in the key index (keyfilter.go). A shard opened with keys gets one
	// from the builder: building is that filter while the builder scans the
	// key index; it takes the keys written meanwhile but answers nothing.
	filter     *keyFilter
	building   *keyFilter
	cacheBytes int64 // what cache is charged to Store.cached
	// admitCount counts the keys a full cache was offered (admit).
	admitCount uint64
	// group is the Raft group that carries the shard, from the registry
	// (s g <group> <shard>); grouped is false for a shard created before the
	// store kept it, until SetShardGroups records it.
	group   uint32
	grouped bool
	// producers holds the committed state of producers that a batch read or
	// wrote since the shard was opened or reloaded, so an append or a
	// Duplicate check costs no Pebble read per batch (with many partitions a
	// batch holds a record or two). Entries are exact copies of the pid/
	// keys, published by Store.apply after the commit, never modified (add
	// builds a new state); a missing entry says nothing. Like the pid/ keys,
	// it grows with the producers until ExpireProducers forgets them.
	producers map[int64]*producerState
	// txns caches the open-transaction keys a batch read or wrote, as
	// producers does the pid/ keys: producer id -> first offset of its open
	// transaction, -1 for none. A missing entry says nothing.
	txns map[int64]int64
	// hint is how far the shard's dead prefix reaches (livehint.go).
	hint liveHint
	// due bounds the ages of the entries of the shard's expiry indexes, for
	// the compaction loop's checks (due.go).
	due dueBounds
}

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = DefaultCacheBytes
	}
	memtable := opts.MemTableBytes
	if memtable == 0 {
		memtable = DefaultMemTableBytes
	}
	logMemtable := opts.LogMemTableBytes
	if logMemtable == 0 {
		logMemtable = DefaultLogMemTableBytes
	}
	logDir := opts.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir, DefaultLogDirName)
	}
	keyCache := opts.KeyCacheBytes
	switch {
	case keyCache == 0:
		keyCache = DefaultKeyCacheBytes
	case keyCache < 0:
		keyCache = 0
	case keyCache > MaxKeyCacheBytes:
		return nil, fmt.Errorf("shardstore: KeyCacheBytes %d is above %d", keyCache, int64(MaxKeyCacheBytes))
	}
	if opts.IdleCompaction < 0 || opts.IdleCompaction > MaxIdleCompaction {
		return nil, fmt.Errorf("shardstore: IdleCompaction %s is not between 0 and %s", opts.IdleCompaction, MaxIdleCompaction)
	}

	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	po := pebbleOptions(opts.FS, cache, memtable, log)
	// Without a WAL: see Store. A data dir from before the split still has
	// WAL files; Pebble replays and flushes them at open.
	po.DisableWAL = true
	// The bottom level's codec is MinLZ but while an idle compaction runs
	// (idlecompact.go); Pebble asks once per compaction.
	idleCompressing := new(atomic.Bool)
	po.Levels[len(po.Levels)-1].Compression = func() *sstable.CompressionProfile {
		if idleCompressing.Load() {
			return idleCompression
		}
		return sstable.FastestCompression
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("shardstore: open %s: %w", dir, err)
	}
	if opts.NewLogDir != nil {
		fsys := opts.FS
		if fsys == nil {
			fsys = vfs.Default
		}
		if _, err := fsys.Stat(logDir); errors.Is(err, iofs.ErrNotExist) {
			if err := opts.NewLogDir(db); err != nil {
				_ = db.Close()
				return nil, fmt.Errorf("shardstore: no Raft log DB in %s: %w", logDir, err)
			}
		}
	}
	logDB, err := pebble.Open(logDir, pebbleOptions(opts.FS, cache, logMemtable, log))
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("shardstore: open %s: %w", logDir, err)
	}
	popts := po.Clone()
	popts.EnsureDefaults()
	s := &Store{db: db, logDB: logDB, log: log, cacheCap: keyCache, drainMin: drainMinChunk, drainSortAside: drainSortAside, filterCap: keyCache / 2, fs: popts.FS, popts: popts, idleCompressing: idleCompressing,
		shards: make(map[ShardID]*shard), exports: make(map[*Export]struct{})}
	if err := s.load(); err != nil {
		_ = db.Close()
		_ = logDB.Close()
		return nil, err
	}
	if opts.Registerer != nil {
		s.metrics = newMetrics(s, opts.Registerer)
		if err := s.metrics.register(); err != nil {
			_ = db.Close()
			_ = logDB.Close()
			return nil, err
		}
	}
	s.startBackground(opts.IdleCompaction)
	log.Info("shard store opened", slog.String("dir", dir), slog.String("log_dir", logDir), slog.Int("shards", len(s.shards)))
	return s, nil
}

// tableBlockSize is the data block size of the tables of both databases,
// flushed, compacted or ingested (pebbleOptions; Pebble's default is 4 KiB). Ingest
// builds every byte of a rebuilt node's data into tables as it arrives; with
// 32 KiB blocks it finishes, compresses, checksums and indexes an eighth as
// many blocks: BenchmarkSnapshot/Ingest ran at a median 213 against 177 MB/s,
// 16 KiB at 199 (3 rounds interleaved).
const tableBlockSize = 32 << 10

// pebbleOptions are the Pebble options of every store: Pebble's defaults but
// for the ones set here. Ingest writes its tables with the same options.
func pebbleOptions(fs vfs.FS, cache *pebble.Cache, memtable uint64, log *slog.Logger) *pebble.Options {
	po := &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       memtable,
		Logger:             pebbleLogger{log},
		FormatMajorVersion: pebble.FormatNewest,
	}
	// Blocks are compressed with MinLZ (Pebble's "Fastest" profile on
	// amd64; Snappy on arm64, where MinLZ has no assembly) instead of
	// Pebble's default Snappy; Open gives the state DB's bottom level zstd
	// while an idle compaction runs (idleCompression). Side by side with make bench-writepath
	// (README, Benchmarks): 1.95 against 2.03 and 1.91 against 2.08 s of CPU
	// per 1M records with 100-byte values, and with 1 KiB values a data dir
	// of 262 against 565 MiB. Tables written with Snappy stay readable.
	//
	// Data blocks are 32 KiB instead of Pebble's 4 KiB, as CockroachDB runs
	// Pebble: a block is the unit of compression, and the records of a
	// compacted topic often share most of their bytes with their neighbours
	// (one schema, one producer's values) but not within one record. With
	// 1 KiB values shared by every record, a 4 KiB block holds four records and
	// compresses them to about one; a 32 KiB block holds thirty. Measured with
	// 100k keys x 2 of 1 KiB values at idle: the store's tables 6.1 against
	// 30.7 MB; 200k x 5 of 100 B values 4.9 against 6.1 MB (README, Data
	// directory). A point read that misses the block cache decompresses 32 KiB
	// instead of 4; HTTP key lookups right after a load measured no slower
	// (README, Benchmarks: 32 KiB blocks).
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].BlockSize = tableBlockSize
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.FastestCompression }
	}
	// An ingested snapshot table whose bounds only straddle a table of the
	// level below (another Raft group's shards share a table between
	// this group's shards) splits that table into two virtual ones and goes
	// between them, instead of above and into a compaction (ingest.go).
	po.Experimental.IngestSplit = func() bool { return true }
	// Compaction: a produce load rewrites every key (a new record, its key
	// index entry, a delete of the old record), so what L0 holds is mostly
	// superseded by the next flushes. Letting 8 L0 sublevels gather before
	// compacting them (Pebble compacts L0 once 2 x sublevels reaches
	// L0CompactionThreshold, so 16 means 8 sublevels; its default 4 means 2;
	// writes stall at 24 sublevels, not 12), with 8 MiB L0 files instead of
	// 2 MiB, folds more versions of a key into one compaction; and a 256 MiB
	// Lbase (64 MiB by default) keeps a node's data up to a few GiB in fewer
	// levels, each byte rewritten fewer times. Measured with make
	// bench-writepath: against Pebble's defaults, a threshold of 8 (4
	// sublevels) took compacted bytes per record byte from 0.73 to 0.38 and
	// CPU per record down 18%; 16 against 8, side by side, 0.23 against 0.51
	// and 5.85 against 6.64 s of CPU per 1M records (1M keys x 10), 0.60
	// against 1.25 and 8.90 against 10.24 s (10M keys x 1) (README,
	// Benchmarks). The cost is read amplification in L0 between compactions:
	// up to 8 sublevels for a Get or iterator to merge, which the bloom
	// filters and the key cache keep off most key lookups; the full reads
	// after a load measured faster, not slower, with less compaction beside
	// them.
	po.L0CompactionThreshold = 16
	po.L0StopWritesThreshold = 24
	po.TargetFileSizes[0] = 8 << 20
	po.LBaseMaxBytes = 256 << 20
	return po
}

// load reads every shard's meta key: one seek per shard, whatever the data size.
func (s *Store) load() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: shardsStart(), UpperBound: shardsEnd()})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindMeta {
			return fmt.Errorf("shardstore: shard range without meta key at %x: %w", it.Key(), errCorrupt)
		}
		st, cacheOnly, err := decodeMeta(it.Value())
		if err != nil {
			return fmt.Errorf("shardstore: meta of shard %d: %w", pk.shard, err)
		}
		s.shards[pk.shard] = &shard{
			id:            pk.shard,
			st:            st,
			cache:         newKeyTable(0),
			cacheComplete: st.LiveKeys+st.Tombstones == 0,
			cacheOnly:     cacheOnly,
		}
		if pk.shard == ^ShardID(0) {
			break
		}
		ok = it.SeekGE(shardPrefix(pk.shard + 1))
	}
	if err := it.Error(); err != nil {
		return err
	}
	if err := s.loadGroups(); err != nil {
		return err
	}
	return s.loadCacheOnlyShards()
}

// loadGroups reads the group registry into the loaded shards. An entry without
// its shard, or a shard in two groups, means the store is corrupt: both are
// written in the batch that creates or deletes the shard.
func (s *Store) loadGroups() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: groupsStart(), UpperBound: groupsEnd()})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindGroupShard {
			return fmt.Errorf("shardstore: bad group registry key %x: %w", it.Key(), errCorrupt)
		}
		sh := s.shards[pk.shard]
		switch {
		case sh == nil:
			return fmt.Errorf("shardstore: group %d registers shard %d, which does not exist: %w", pk.group, pk.shard, errCorrupt)
		case sh.grouped:
			return fmt.Errorf("shardstore: shard %d registered in groups %d and %d: %w", pk.shard, sh.group, pk.group, errCorrupt)
		}
		sh.group, sh.grouped = pk.group, true
	}
	return it.Error()
}

// acquire holds the store open for an operation; release with s.life.RUnlock.
func (s *Store) acquire() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// DB is the state DB, shared with raftfsm (metadata keys, under a prefix of
// raftfsm's own). It has no WAL: a write with pebble.Sync fails, and a write
// is durable only after Flush (see Store).
func (s *Store) DB() *pebble.DB { return s.db }

// LogDB is the Raft log DB, raftfsm's alone (Raft logs, stable stores,
// snapshot markers, node identity): a WAL, and writes meant to survive a
// crash commit with pebble.Sync.
func (s *Store) LogDB() *pebble.DB { return s.logDB }

// Flush makes every write committed to the state DB so far durable (a
// memtable flush; the state DB has no WAL). Raft may trim its log only up to
// an applied index that a Flush made durable.
func (s *Store) Flush() error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	return s.flush()
}

// flushTimeout bounds the wait for a flush of the state DB. Pebble retries a
// failed flush (a full or failing disk) without end, so a caller that waited
// for it would hang: Persist (and Raft's shutdown with it), Close.
const flushTimeout = time.Minute

// flush flushes the state DB and waits for it, at most flushTimeout.
func (s *Store) flush() error {
	done, err := s.db.AsyncFlush()
	if err != nil {
		return fmt.Errorf("shardstore: flush: %w", err)
	}
	t := time.NewTimer(flushTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("shardstore: flush: not done after %v (Pebble logs why)", flushTimeout)
	}
}

// Close flushes the state DB, so a clean restart replays nothing, closes both
// databases and wakes every Wait channel. Open Exports are released (their
// Read returns ErrClosed); an Ingest in progress is waited for. It is
// idempotent.
func (s *Store) Close() error {
	// The filter builder holds life shared while it scans; it stops at its
	// next chunk. An idle compaction in progress is cancelled.
	s.stopBackground()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.metrics != nil {
		s.metrics.unregister()
	}
	s.mu.Lock()
	for _, sh := range s.shards {
		sh.mu.Lock()
		if sh.wait != nil {
			close(sh.wait)
			sh.wait = nil
		}
		sh.mu.Unlock()
	}
	exports := make([]*Export, 0, len(s.exports))
	for e := range s.exports {
		exports = append(exports, e)
	}
	s.mu.Unlock()
	// Pebble refuses to close with open snapshots and iterators.
	for _, e := range exports {
		e.release()
	}
	// A flush that does not finish loses nothing: Raft re-applies its log.
	return errors.Join(s.flush(), s.db.Close(), s.logDB.Close())
}

// Shards lists every shard in id order.
func (s *Store) Shards() []ShardID {
	s.mu.RLock()
	ids := make([]ShardID, 0, len(s.shards))
	for id := range s.shards {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

func (s *Store) shard(id ShardID) *shard {
	s.mu.RLock()
	sh := s.shards[id]
	s.mu.RUnlock()
	return sh
}

// State returns a shard's counters (ErrUnknownShard).
func (s *Store) State(id ShardID) (State, error) {
	sh := s.shard(id)
	if sh == nil {
		return State{}, ErrUnknownShard
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.st, nil
}

// ShardGroup returns the Raft group that carries a shard, as recorded by
// CreateShard or SetShardGroups; ok is false for an unknown shard or one whose
// group was never recorded.
func (s *Store) ShardGroup(id ShardID) (group uint32, ok bool) {
	sh := s.shard(id)
	if sh == nil {
		return 0, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.group, sh.grouped
}

// GroupShards lists the shards recorded in a group, in id order.
func (s *Store) GroupShards(group uint32) []ShardID {
	var ids []ShardID
	s.mu.RLock()
	for id, sh := range s.shards {
		sh.mu.Lock()
		if sh.grouped && sh.group == group {
			ids = append(ids, id)
		}
		sh.mu.Unlock()
	}
	s.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// ErrGroupConflict: SetShardGroups names a group other than the one recorded.
var ErrGroupConflict = errors.New("shardstore: shard already recorded in another group")

// SetShardGroups records the group of shards created before CreateShard took
// one (a one-time backfill from cluster metadata). Shards whose group is
// already recorded as the same are left alone, shards the store does not have
// are skipped, and a different recorded group is ErrGroupConflict (nothing is
// written then). It returns how many shards it recorded.
//
// It writes outside Raft: the registry is derived from metadata every replica
// holds, and a write a crash loses (it is durable at the next Flush) is redone
// at the next start. Call it before the
// groups' FSMs apply anything, never concurrently with a Batch.
func (s *Store) SetShardGroups(groups map[ShardID]uint32) (int, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	type rec struct {
		sh    *shard
		group uint32
	}
	var todo []rec
	for id, g := range groups {
		sh := s.shard(id)
		if sh == nil {
			continue
		}
		sh.mu.Lock()
		cur, known := sh.group, sh.grouped
		sh.mu.Unlock()
		switch {
		case known && cur == g:
			continue
		case known:
			return 0, fmt.Errorf("%w: shard %d in group %d, not %d", ErrGroupConflict, id, cur, g)
		}
		todo = append(todo, rec{sh, g})
	}
	if len(todo) == 0 {
		return 0, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, r := range todo {
		if err := b.Set(groupShardKey(r.group, r.sh.id), []byte{groupEntryVersion}, nil); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("shardstore: record shard groups: %w", err)
	}
	for _, r := range todo {
		r.sh.mu.Lock()
		r.sh.group, r.sh.grouped = r.group, true
		r.sh.mu.Unlock()
	}
	return len(todo), nil
}

// Applied returns the last Raft index applied for a group (0 if none).
func (s *Store) Applied(group uint32) (uint64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	v, closer, err := s.db.Get(appliedKey(group))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, errCorrupt
	}
	return binary.BigEndian.Uint64(v), nil
}

// closedChan is returned by Wait for a shard that does not exist.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Wait returns a channel closed by the first Commit after this call that changes
// the shard (an append, a deletion, a log start move, or the shard's removal),
// or by Close. For an unknown shard the channel is already closed, so a waiter
// re-checks at once and finds ErrUnknownShard.
func (s *Store) Wait(id ShardID) <-chan struct{} {
	if err := s.acquire(); err != nil {
		return closedChan
	}
	defer s.life.RUnlock()
	sh := s.shard(id)
	if sh == nil {
		return closedChan
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.wait == nil {
		sh.wait = make(chan struct{})
	}
	return sh.wait
}
