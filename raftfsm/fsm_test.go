package raftfsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
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
	m, _ := newMetrics(nil, &pendingBudget{})
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

// TestExpireProducersReplays: producer expiry goes through the group's Raft log
// like every change of state, with its times in the command, so a replica
// that applies the same log from the start, at another time, ends with the
// same shard, byte for byte.
func TestExpireProducersReplays(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	var nowMs atomic.Int64
	nowMs.Store(1_700_000_000_000)
	c.now = func() time.Time { return time.UnixMilli(nowMs.Load()) }
	info, err := c.node.CreateTopic(ctx, "t", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	produce := func(id int64, seq int32) error {
		_, err := c.node.Produce(ctx, "t", 0, shardstore.Producer{ID: id, BaseSequence: seq}, keyed(fmt.Sprint(id), 1))
		return err
	}
	for _, id := range []int64{7, 8} {
		if err := produce(id, 0); err != nil {
			t.Fatal(err)
		}
		nowMs.Add(10_000)
	}
	if err := c.node.ExpireProducers(ctx, "t", 0, 1_700_000_000_001); err != nil {
		t.Fatal(err)
	}
	if err := produce(7, 5); err != nil {
		t.Fatalf("forgotten producer 7 at sequence 5: %v", err)
	}
	if err := produce(8, 5); !errors.Is(err, shardstore.ErrOutOfOrderSequence) {
		t.Fatalf("producer 8 at sequence 5: %v, want out of order", err)
	}

	part := info.Partitions[0]
	grp := c.node.groups[part.Group]
	applied, err := c.store.Applied(part.Group)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := grp.logs.FirstIndex()
	var logs []*raft.Log
	for i := first; i <= applied; i++ {
		l := new(raft.Log)
		if err := grp.logs.GetLog(i, l); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	replica, err := shardstore.Open("db", shardstore.Options{FS: vfs.NewMem(), Logger: testLogger(t), CacheBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	m, _ := newMetrics(nil, &pendingBudget{})
	f, err := newFSM(part.Group, replica, &processor{resolve: resolveDefaults}, testLogger(t), m)
	if err != nil {
		t.Fatal(err)
	}
	nowMs.Add(48 * 3600_000) // the replica applies two days later
	f.ApplyBatch(logs)

	shardRange := func(s *shardstore.Store) [][2]string {
		lo := binary.BigEndian.AppendUint64([]byte{'s', 'h'}, uint64(part.Shard))
		hi := binary.BigEndian.AppendUint64([]byte{'s', 'h'}, uint64(part.Shard)+1)
		it, err := s.DB().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		var kvs [][2]string
		for ok := it.First(); ok; ok = it.Next() {
			kvs = append(kvs, [2]string{string(it.Key()), string(it.Value())})
		}
		return kvs
	}
	leader, follower := shardRange(c.store), shardRange(replica)
	if len(leader) == 0 || !slices.Equal(leader, follower) {
		t.Fatalf("replayed shard differs:\nleader   %q\nreplica  %q", leader, follower)
	}
}

// TestApplyBatchStopsAtNewerCommand: an entry of a command type or version
// this build does not know (written by a newer shardcache during a rolling
// upgrade) stops the group before it: what came before is applied, nothing
// after it is, and the FSM refuses snapshots, so Raft keeps the entry for a
// restart on a build that knows it. A malformed entry of a known type is still
// skipped, the same on every replica.
func TestApplyBatchStopsAtNewerCommand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newer []byte
	}{
		{"unknown type", []byte{commandVersion, 250, 1, 2, 3}},
		{"unknown version", []byte{commandVersionCodecs + 1, byte(CmdProduce), 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, store := newTestFSM(t, 1)
			logs := produceLogs(2, 4, 10)
			logs[1].Data = []byte{commandVersion, byte(CmdProduce)} // malformed: skipped
			logs = slices.Insert(logs, 3, &raft.Log{Index: 0, Type: raft.LogCommand, Data: tc.newer})
			for i, l := range logs {
				l.Index = uint64(2 + i)
			}
			resp := f.ApplyBatch(logs)
			if _, ok := resp[0].(shardstore.AppendResult); !ok {
				t.Errorf("entry before the malformed one answered %v", resp[0])
			}
			if err, ok := resp[1].(error); !ok || !errors.Is(err, ErrBadCommand) || errors.Is(err, ErrNewerCommand) {
				t.Errorf("malformed entry answered %v, want a bad command", resp[1])
			}
			if _, ok := resp[2].(shardstore.AppendResult); !ok {
				t.Errorf("entry after the malformed one answered %v", resp[2])
			}
			for i := 3; i < len(resp); i++ {
				if err, ok := resp[i].(error); !ok || !errors.Is(err, ErrNewerCommand) {
					t.Errorf("entry %d answered %v, want ErrNewerCommand", i, resp[i])
				}
			}
			applied, err := store.Applied(1)
			if err != nil {
				t.Fatal(err)
			}
			if applied != logs[2].Index || f.applied != applied || !f.stopped.Load() {
				t.Errorf("stored applied %d, fsm applied %d, stopped %v; want %d, stopped", applied, f.applied, f.stopped.Load(), logs[2].Index)
			}
			if _, err := f.Snapshot(); err == nil {
				t.Error("a stopped FSM took a snapshot")
			}
			// The newer entry first in a later batch: nothing applied.
			g, store2 := newTestFSM(t, 1)
			resp = g.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: tc.newer}})
			if applied, _ := store2.Applied(1); !errors.Is(resp[0].(error), ErrNewerCommand) || applied != 1 {
				t.Errorf("lone newer entry answered %v, applied %d", resp[0], applied)
			}
		})
	}
}
