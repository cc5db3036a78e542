package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

// newTestFSM is a data group's FSM over a fresh in-memory store that holds
// shard 1, created by entry 1.
func newTestFSM(tb testing.TB, group uint32) (*fsm, *shardstore.Store) {
	tb.Helper()
	store, err := shardstore.Open("db", shardstore.Options{FS: vfs.NewMem(), Logger: testLogger(tb), CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	m, _ := newMetrics(nil)
	f, err := newFSM(group, store, &processor{resolve: resolveDefaults}, testLogger(tb), m)
	if err != nil {
		tb.Fatal(err)
	}
	create := &raft.Log{Index: 1, Type: raft.LogCommand, Data: EncodeCommand(nil, &Command{Type: CmdCreateShards, Shards: []shardstore.ShardID{1}})}
	if r := f.ApplyBatch([]*raft.Log{create})[0]; r != nil {
		tb.Fatalf("create shard: %v", r)
	}
	return f, store
}

// produceLogs returns n produce entries for shard 1 from index first, each
// with one record of a distinct key and a value of size bytes.
func produceLogs(first uint64, n, size int) []*raft.Log {
	logs := make([]*raft.Log, n)
	for i := range logs {
		c := &Command{
			Type:     CmdProduce,
			Shard:    1,
			Options:  shardstore.AppendOptions{Policy: shardstore.PolicyCompact, AppendTimeMs: 1000},
			Producer: shardstore.NoProducer,
			Records:  []shardstore.Record{{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte{'v'}, size)}},
		}
		logs[i] = &raft.Log{Index: first + uint64(i), Type: raft.LogCommand, Data: EncodeCommand(nil, c)}
	}
	return logs
}

// TestApplyBatchSplitsByBytes: a Raft batch whose writes exceed
// maxBatchBytes is committed in pieces, none much above the limit, each with
// the applied index of its last entry; all of it is applied. Before the split,
// one Pebble batch took the whole Raft batch (Pebble panics at 4 GiB).
func TestApplyBatchSplitsByBytes(t *testing.T) {
	const limit, size, n = 64 << 10, 10 << 10, 40 // 400 KiB of values
	f, store := newTestFSM(t, 1)
	f.maxBatchBytes = limit
	type commit struct {
		index, stored uint64
		bytes         int
	}
	var commits []commit
	f.committed = func(index uint64, bytes int) {
		stored, err := store.Applied(1)
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, commit{index, stored, bytes})
	}
	logs := produceLogs(2, n, size)
	maxEntry := 0
	for _, l := range logs {
		maxEntry = max(maxEntry, 2*len(l.Data)) // record and key index entry
	}
	resp := f.ApplyBatch(logs)
	for i, r := range resp {
		res, ok := r.(shardstore.AppendResult)
		if !ok || res.BaseOffset != int64(i) {
			t.Fatalf("entry %d answered %v, want base offset %d", i, r, i)
		}
	}
	if len(commits) < 2 {
		t.Fatalf("%d commits for %d bytes of entries at a %d-byte limit", len(commits), n*size, limit)
	}
	prev := uint64(1)
	for _, c := range commits {
		if c.bytes > limit+maxEntry {
			t.Errorf("a commit of %d bytes, limit %d and entries of up to %d", c.bytes, limit, maxEntry)
		}
		if c.index <= prev || c.stored != c.index {
			t.Errorf("commit at index %d (stored applied index %d) after %d", c.index, c.stored, prev)
		}
		prev = c.index
	}
	if last := logs[n-1].Index; prev != last || f.applied != last {
		t.Errorf("last commit at %d, fsm applied %d, want %d", prev, f.applied, last)
	}
	st, err := store.State(1)
	if err != nil || st.HighWatermark != n || st.LiveKeys != n {
		t.Fatalf("state %+v, %v; want %d records", st, err, n)
	}
	t.Logf("%d entries, %d bytes of values: %d commits at a %d-byte limit", n, n*size, len(commits), limit)
}

// TestApplyBatchFailedPiece: when a piece's commit fails, the pieces
// committed before it keep their results and applied index; the rest of the
// batch, and every later batch, answer the error, and the FSM stops.
func TestApplyBatchFailedPiece(t *testing.T) {
	f, store := newTestFSM(t, 1)
	f.maxBatchBytes = 32 << 10
	var first uint64
	f.committed = func(index uint64, _ int) {
		if first == 0 {
			first = index
			_ = store.Close() // the next commit fails
		}
	}
	logs := produceLogs(2, 20, 10<<10)
	resp := f.ApplyBatch(logs)
	if first == 0 || first >= logs[len(logs)-1].Index {
		t.Fatalf("first piece ended at %d", first)
	}
	for i, r := range resp {
		_, applied := r.(shardstore.AppendResult)
		if want := logs[i].Index <= first; applied != want {
			t.Errorf("entry %d (index %d) answered %v; applied want %v", i, logs[i].Index, r, want)
		}
		if err, ok := r.(error); ok && !errors.Is(err, shardstore.ErrClosed) {
			t.Errorf("entry %d answered %v, want the commit's error", i, err)
		}
	}
	if f.applied != first || !f.stopped.Load() {
		t.Errorf("applied %d, stopped %v; want %d, true", f.applied, f.stopped.Load(), first)
	}
	if r := f.ApplyBatch(produceLogs(100, 1, 1))[0]; !errors.Is(r.(error), shardstore.ErrClosed) {
		t.Errorf("later entry answered %v", r)
	}
	if _, err := f.Snapshot(); err == nil {
		t.Error("a stopped FSM took a snapshot")
	}
}
