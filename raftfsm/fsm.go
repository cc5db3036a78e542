package raftfsm

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

// fsm is one group's raft.BatchingFSM: a thin adapter that decodes entries and
// hands them to the processor, all of a batch in one shardstore.Batch with the
// group's applied index, committed once without fsync (the Raft log is the
// durable record). Entries at or below the persisted applied index were applied
// before a restart and are skipped, so replay is idempotent.
//
// Raft calls ApplyBatch, Apply and Snapshot from one goroutine.
type fsm struct {
	group   uint32
	store   *shardstore.Store
	proc    *processor
	log     *slog.Logger
	metrics *metrics

	// applied is the last index committed to the store.
	applied uint64
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
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(group uint32, store *shardstore.Store, proc *processor, log *slog.Logger, m *metrics) (*fsm, error) {
	applied, err := store.Applied(group)
	if err != nil {
		return nil, err
	}
	return &fsm{group: group, store: store, proc: proc, log: log, metrics: m, applied: applied}, nil
}

// ApplyBatch applies logs and returns one response per entry.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
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
	last := logs[len(logs)-1].Index
	b := f.store.NewBatch()
	defer b.Close()
	var m *metadata
	if f.getMeta != nil {
		m = f.getMeta().clone()
	}
	for i, l := range logs {
		if l.Index <= f.applied {
			f.skipped.Add(1)
			continue
		}
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := DecodeCommand(l.Data)
		if err != nil {
			// Deterministic on every replica: the entry is skipped.
			f.log.Error("undecodable raft command", keyGroup, f.group, keyIndex, l.Index, keyError, err)
			resp[i] = err
			continue
		}
		resp[i] = f.proc.apply(b, f.group, m, c)
		f.metrics.commandApplied(c.Type)
	}
	b.SetApplied(f.group, last)
	if err := b.Commit(); err != nil {
		// The entries stay unapplied in the store; a restart replays them.
		f.log.Error("commit of applied raft entries failed; group stops applying until restart", keyGroup, f.group, keyIndex, last, keyError, err)
		f.failed = err
		f.stopped.Store(true)
		for i := range resp {
			resp[i] = err
		}
		return resp
	}
	f.applied = last
	if m != nil {
		f.setMeta(m)
	}
	f.metrics.observeApply(f.group, time.Since(start))
	return resp
}

// Apply applies one entry.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// Snapshot captures the applied index; Persist does the I/O.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &logicalSnapshot{db: f.store.DB(), group: f.group, applied: f.applied}, nil
}

// errRestoreUnsupported: see snapshot.go.
var errRestoreUnsupported = errors.New("raftfsm: restoring a snapshot from another node is not supported yet (single-node clusters only)")

// Restore would install a leader's snapshot on a lagging follower. With one node
// there is no such follower, and NoSnapshotRestoreOnStart keeps Raft from calling
// it at start, so it refuses clearly.
func (f *fsm) Restore(rc io.ReadCloser) error {
	rc.Close()
	return errRestoreUnsupported
}
