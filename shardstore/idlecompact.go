package shardstore

// Idle compaction: a store that stops taking writes compacts its shards' L0
// away, so its data dir comes down to its live records.
//
// While a load runs, Pebble lets up to 8 L0 sublevels gather before it
// compacts them (pebbleOptions: L0CompactionThreshold 16). That keeps write
// amplification down, but each flush holds the newest version of every key the
// memtable saw, and the single deletes of the versions it replaced, whose
// records sit in the flushes below. After a load of 200k keys x 5 versions the
// state DB held 39 MB in 5 L0 tables; compacted, 7 MB (README, Benchmarks).
// Pebble would compact them only at the next load.
//
// So once the store has committed nothing for Options.IdleCompaction, the idle
// compactor looks at the state DB's levels, once per quiet spell, and compacts
// the shards' key span when L0 has at least two sublevels and the levels below
// hold at most idleBelowPerL0 times L0's bytes. That rule bounds the work: the
// compaction rewrites at most 1+idleBelowPerL0 times what L0 holds, and never a
// large DB for a few flushes on top of it (L0 stays under about 8 x 64 MiB).
// The span is the shards' whole span, not L0's keys: every flush also holds
// the metadata and applied-index keys that sort before the shards, so an L0
// table's bounds reach over the older shards' tables whatever it holds.
// Compact also flushes the memtable, so the Raft log can be trimmed up to it
// (the state DB has no WAL).
//
// The tables it writes to the bottom level (L6, where a store's bytes sit at
// rest) are compressed with zstd (idleCompression) instead of MinLZ: the
// node has nothing else to do, and what it writes then stays until the next
// load compacts over it. Compactions during a load keep MinLZ everywhere:
// zstd on L6 for every compaction cost 2-10% more CPU per record in a load of
// 1M keys x 4 (README, Benchmarks: "Data directory: zstd at idle").

import (
	"context"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// idleBelowPerL0 is how many bytes the levels below L0 may hold per byte of
// L0 for an idle compaction to run: enough for a load on top of older data of
// a few times its size (make bench-compare's workloads, each a new topic in
// the same store), never a rewrite of much more than L0.
const idleBelowPerL0 = 4

// idleCompression is the idle compaction's codec for the bottom level:
// Pebble's Balanced profile, zstd level 1 for data blocks where it saves at
// least a fifth more than MinLZ would, MinLZ for the rest. Its tables read
// about as fast (a 32 KiB block decompresses in microseconds either way).
var idleCompression = sstable.BalancedCompression

// idleCheckEvery is how often the idle compactor looks at the commit count,
// at most; shorter when IdleCompaction is.
const idleCheckEvery = time.Second

// startBackground starts the key filter builder and, when idle is positive,
// the idle compactor.
func (s *Store) startBackground(idle time.Duration) {
	s.bgStop = make(chan struct{})
	var ctx context.Context
	ctx, s.bgCancel = context.WithCancel(context.Background())
	s.startFilterBuilder()
	if idle > 0 {
		s.bgDone.Add(1)
		go s.idleCompactor(ctx, idle)
	}
}

// stopBackground ends the background goroutines and waits for them.
func (s *Store) stopBackground() {
	s.stopOnce.Do(func() {
		close(s.bgStop)
		s.bgCancel()
		s.bgDone.Wait()
	})
}

// idleCompactor runs compactIdle once per spell of idle without a commit,
// and once after Open (a store opened after a load still holds its L0).
func (s *Store) idleCompactor(ctx context.Context, idle time.Duration) {
	defer s.bgDone.Done()
	t := time.NewTicker(min(idle/4, idleCheckEvery))
	defer t.Stop()
	seen, quietSince, pending := s.commits.Load(), time.Now(), true
	for {
		select {
		case <-s.bgStop:
			return
		case now := <-t.C:
			if n := s.commits.Load(); n != seen {
				seen, quietSince, pending = n, now, true
				continue
			}
			if !pending || now.Sub(quietSince) < idle {
				continue
			}
			pending = false
			if f := s.onIdle.Load(); f != nil {
				(*f)(ctx)
			}
			s.compactIdle(ctx)
		}
	}
}

// OnIdle sets f (nil: none) to run once per quiet spell, in the idle
// compactor's goroutine, before it compacts: the Raft layer trims its logs
// there (raftfsm/idletrim.go), and the snapshot that takes flushes the
// memtable into L0, which the compaction then merges. ctx is cancelled at
// Close. With IdleCompaction 0, f never runs.
func (s *Store) OnIdle(f func(ctx context.Context)) {
	if f == nil {
		s.onIdle.Store(nil)
		return
	}
	s.onIdle.Store(&f)
}

// idleCompactionWorth is the rule above, on the state DB's metrics.
func idleCompactionWorth(m *pebble.Metrics) bool {
	l0 := m.Levels[0]
	var below int64
	for _, l := range m.Levels[1:] {
		below += l.TablesSize
	}
	return l0.Sublevels >= 2 && below <= idleBelowPerL0*l0.TablesSize
}

// compactIdle compacts the shards' key span if idleCompactionWorth says so.
// Commits go on beside it; a cancelled ctx (Close) ends it early.
func (s *Store) compactIdle(ctx context.Context) {
	before := s.db.Metrics()
	if !idleCompactionWorth(before) {
		return
	}
	start := time.Now()
	// Compactions that Pebble runs beside this one (a load that starts
	// meanwhile) write their bottom-level tables with zstd too, until it ends.
	s.idleCompressing.Store(true)
	err := s.db.Compact(ctx, shardsStart(), shardsEnd(), true)
	s.idleCompressing.Store(false)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("idle compaction failed", slog.Any("err", err))
		}
		return
	}
	s.idleCompactions.Add(1)
	after := s.db.Metrics()
	s.log.Info("idle compaction",
		slog.Int64("l0_bytes_before", before.Levels[0].TablesSize),
		slog.Int64("table_bytes_before", before.Total().TablesSize),
		slog.Int64("table_bytes_after", after.Total().TablesSize),
		slog.Duration("took", time.Since(start)))
}
