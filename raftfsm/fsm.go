package raftfsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

// fsm is one group's raft.BatchingFSM: a thin adapter that decodes entries and
// hands them to the processor, a batch of entries in one shardstore.Batch with
// the group's applied index, committed without fsync (the Raft log is the
// durable record). A Raft batch whose writes reach maxBatchBytes is committed
// in several pieces, each with the index of its last entry, so no Pebble batch
// nears Pebble's 4 GiB limit (a Raft batch holds up to 512 entries of up to
// --max-decompressed-bytes of records each). Entries at or below the persisted
// applied index were applied before a restart and are skipped, so replay is
// idempotent.
//
// Raft calls ApplyBatch, Apply, Snapshot and Restore from one goroutine; a
// snapshot received from the leader is ingested on Raft's main goroutine while
// it arrives (receiveSink in snapshot.go), so mu serializes the two.
type fsm struct {
	// mu guards applied and failed, and the group's state in the store:
	// held by ApplyBatch, Snapshot, Restore and for the whole of a received
	// snapshot's ingest.
	mu      sync.Mutex
	group   uint32
	store   *shardstore.Store
	proc    *processor
	log     *slog.Logger
	metrics *metrics

	// applied is the last index committed to the store; appliedIndex mirrors
	// it for readers on other goroutines.
	applied      uint64
	appliedIndex atomic.Uint64
	// skipped counts entries skipped as already applied (read by tests).
	skipped atomic.Uint64
	// failed is the store error that stopped this FSM. Once a commit fails, no
	// later entry may be committed either: its applied index would cover the
	// lost entries. Every later entry answers the error; a restart replays them
	// all from the Raft log.
	failed error
	// stopped mirrors failed != nil for readers on other goroutines (Ready).
	stopped atomic.Bool

	// getMeta and setMeta are set for the metadata group only: the batch is
	// applied to a clone of getMeta() that setMeta publishes after the commit.
	getMeta func() *metadata
	setMeta func(*metadata)
	// reload, when set, runs after a snapshot replaced the group's state in
	// the store: for the metadata group the node reloads metadata from it.
	// Set it before openSnapshotStore, which may restore at open.
	reload func() error

	// ingestDir is the scratch directory of snapshot ingests (set by
	// openSnapshotStore).
	ingestDir string

	// maxBatchBytes ends a store batch once its writes reach it (Pebble bytes,
	// Config.MaxApplyBatchBytes); 0 means DefaultMaxApplyBatchBytes.
	maxBatchBytes int
	// committed, when set, is called after each store commit with the applied
	// index and size of the batch (tests only).
	committed func(index uint64, bytes int)
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(group uint32, store *shardstore.Store, proc *processor, log *slog.Logger, m *metrics) (*fsm, error) {
	applied, err := store.Applied(group)
	if err != nil {
		return nil, err
	}
	f := &fsm{group: group, store: store, proc: proc, log: log, metrics: m, applied: applied}
	f.appliedIndex.Store(applied)
	return f, nil
}

// ApplyBatch applies logs and returns one response per entry.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := make([]any, len(logs))
	if f.failed != nil {
		for i := range resp {
			resp[i] = f.failed
		}
		return resp
	}
	if len(logs) == 0 || logs[len(logs)-1].Index <= f.applied {
		f.skipped.Add(uint64(len(logs)))
		return resp
	}
	start := time.Now()
	for done := 0; done < len(logs); {
		n, err := f.applyPiece(logs[done:], resp[done:])
		if err != nil {
			// The entries from done on stay unapplied in the store; a
			// restart replays them. Earlier pieces are committed and keep
			// their responses.
			f.log.Error("raft entries from this index on not applied; group stops applying until restart", keyGroup, f.group, keyIndex, logs[done].Index, keyError, err)
			f.failed = err
			f.stopped.Store(true)
			for i := done; i < len(resp); i++ {
				resp[i] = err
			}
			return resp
		}
		done += n
	}
	f.metrics.observeApply(f.group, time.Since(start))
	return resp
}

// applyPiece applies entries of logs in one store batch, filling resp, until
// the batch holds maxBatchBytes or logs end; it commits them with the index
// of the last one and returns how many it took.
func (f *fsm) applyPiece(logs []*raft.Log, resp []any) (int, error) {
	limit := f.maxBatchBytes
	if limit <= 0 {
		limit = DefaultMaxApplyBatchBytes
	}
	b := f.store.NewBatch()
	defer b.Close()
	var m *metadata
	if f.getMeta != nil {
		m = f.getMeta().clone()
	}
	n := 0
	for n < len(logs) && b.Len() < limit {
		l := logs[n]
		n++
		if l.Index <= f.applied {
			f.skipped.Add(1)
			continue
		}
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := DecodeCommand(l.Data)
		if errors.Is(err, ErrNewerCommand) {
			// Written by a newer shardcache (a rolling upgrade that reached
			// the leader first). Skipping it would make this replica drift,
			// so apply what came before it and stop; a restart on a build
			// that knows the command replays it.
			n--
			if n == 0 {
				return 0, err
			}
			break
		}
		if err != nil {
			// Malformed but of a known type: the same on every replica of
			// this version, so the entry is skipped.
			f.log.Error("undecodable raft command", keyGroup, f.group, keyIndex, l.Index, keyError, err)
			resp[n-1] = err
			continue
		}
		resp[n-1] = f.proc.apply(b, f.group, m, c)
		f.metrics.commandApplied(c.Type)
	}
	last := logs[n-1].Index
	if last <= f.applied {
		// Only skipped entries came before a newer command: nothing to commit.
		return n, nil
	}
	size := b.Len()
	b.SetApplied(f.group, last)
	if err := b.Commit(); err != nil {
		return n, err
	}
	f.applied = last
	f.appliedIndex.Store(last)
	if m != nil {
		f.setMeta(m)
	}
	if f.committed != nil {
		f.committed(last, size)
	}
	return n, nil
}

// Apply applies one entry.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// Snapshot captures the applied index; Persist does the I/O. A stopped FSM
// refuses: Raft would take the snapshot at an index covering the entries the
// failed commit lost, trim them from its log and, at restart, start past them.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return nil, f.failed
	}
	return &logicalSnapshot{store: f.store, group: f.group, applied: f.applied}, nil
}

// Restore installs a snapshot of the group: a stream stored by a version that
// ingested it only here, restored by openSnapshotStore after a crash (see
// snapshot.go), or a marker. The stream is ingested atomically
// (shardstore.Ingest, through ingested); the FSM's applied index becomes the
// stream's, so the entries Raft delivers next that the snapshot already holds
// are skipped, and reload runs. A stream this store already holds (its index
// at or below the applied index) changes nothing. A logical marker is
// accepted only when the store holds the state it stands for: after
// InstallSnapshot, Raft restores the marker receiveSink stored once it had
// ingested the stream.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return f.failed
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	prefix, _ := br.Peek(shardstore.SnapshotPrefixLen)
	if group, applied, ok := parseMarker(prefix); ok {
		if group != f.group || applied > f.applied {
			return fmt.Errorf("%w: group %d at index %d, store of group %d at %d", errMarkerNotHere, group, applied, f.group, f.applied)
		}
		return nil
	}
	group, applied, err := shardstore.ParseSnapshotPrefix(prefix)
	switch {
	case err != nil:
		return fmt.Errorf("raftfsm: restore group %d: %w", f.group, err)
	case group != f.group:
		return fmt.Errorf("raftfsm: restore group %d: snapshot of group %d", f.group, group)
	case applied <= f.applied:
		f.log.Info("group snapshot already applied", keyGroup, f.group, keyIndex, applied, keyApplied, f.applied)
		return nil
	}
	start := time.Now()
	res, err := f.store.Ingest(br, f.ingestOptions())
	return f.ingested(res, err, start)
}

// ingestOptions are the options of every ingest of a snapshot of the group.
func (f *fsm) ingestOptions() shardstore.IngestOptions {
	return shardstore.IngestOptions{Group: f.group, Extra: groupSpans(f.group), Dir: f.ingestDir}
}

// ingested takes the result of an ingest started at start: the applied index
// moves to the snapshot's and reload runs. An ingest that moved the store and
// then failed (the sync or the reload) stops the FSM, as a failed commit does.
// f.mu is held.
func (f *fsm) ingested(res shardstore.IngestResult, err error, start time.Time) error {
	if err != nil {
		if now, aerr := f.store.Applied(f.group); aerr == nil && now != f.applied {
			// Ingested, then the sync or the reload failed: stop, as after a
			// failed commit; a restart restores the stored snapshot again.
			f.applied, f.failed = now, err
			f.stopped.Store(true)
		}
		return fmt.Errorf("raftfsm: restore group %d: %w", f.group, err)
	}
	f.applied = res.Applied
	f.appliedIndex.Store(res.Applied)
	f.log.Info("group snapshot installed", keyGroup, f.group, keyIndex, res.Applied, keyCount, len(res.Shards),
		keyRemoved, len(res.Removed), keyTables, res.Tables, keyDuration, time.Since(start))
	if f.reload != nil {
		if err := f.reload(); err != nil {
			// The store moved on and memory did not: stop until a restart.
			f.failed = fmt.Errorf("raftfsm: reload group %d after restore: %w", f.group, err)
			f.stopped.Store(true)
			return f.failed
		}
	}
	return nil
}
