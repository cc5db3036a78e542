package raftfsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/shardcache/shardcache/shardstore"
)

// viewWithoutApplied is groupView without its applied line: a restarted
// replica applies Raft's own entries (its election's no-op) on top.
func viewWithoutApplied(tb testing.TB, s *shardstore.Store, group uint32) string {
	tb.Helper()
	v := groupView(tb, s, group)
	_, rest, _ := strings.Cut(v, "\n")
	return rest
}

// restartOnCrash stops p and starts a replica of p's group over clone, the
// filesystem a crash left (p's snapshot folder is on the OS filesystem and
// kept), and waits until it has applied everything p had.
func restartOnCrash(t *testing.T, p *raftPeer, clone *vfs.MemFS, applied uint64) *raftPeer {
	t.Helper()
	p.stop()
	r := newRaftPeer(t, string(p.id), p.group, clone)
	r.dataDir, r.snapDir = p.dataDir, p.snapDir
	r.start(false)
	r.waitLeader()
	waitFor(t, "the restarted replica to apply its log", 10*time.Second, func() bool { return r.applied() >= applied })
	return r
}

// appliedOn is group's applied index in the store at dir on fs.
func appliedOn(t *testing.T, fs vfs.FS, dir string, group uint32) uint64 {
	t.Helper()
	s, err := shardstore.Open(dir, shardstore.Options{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Applied(group)
	if err := errors.Join(err, s.Close()); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCrashReappliesUnflushedEntries: the state DB has no WAL, so a crash
// loses every apply since its last flush; Raft re-delivers them from its log
// and nothing acknowledged is lost.
func TestCrashReappliesUnflushedEntries(t *testing.T) {
	fs := vfs.NewCrashableMem()
	p := newRaftPeer(t, "a", 1, fs)
	p.start(true)
	p.waitLeader()
	p.apply(&Command{Type: CmdCreateShards, Shards: []shardstore.ShardID{10, 11}})
	for i := range 30 {
		p.apply(produce(shardstore.ShardID(10+i%2), fmt.Sprintf("k%d", i%7), 4))
	}
	want, applied := viewWithoutApplied(t, p.store, 1), p.applied()

	clone := fs.CrashClone(vfs.CrashCloneCfg{})
	// The crash must have lost applies, or there is nothing to re-apply.
	if lost := appliedOn(t, clone, p.dataDir, 1); lost >= applied {
		t.Fatalf("the crash kept applied %d of %d: no unflushed applies to test", lost, applied)
	}

	r := restartOnCrash(t, p, clone, applied)
	if got := viewWithoutApplied(t, r.store, 1); got != want {
		t.Fatalf("after the crash and replay:\n%s\nwant:\n%s", got, want)
	}
}

// TestCrashAfterSnapshotKeepsSnapshotIndex: a snapshot flushes the state DB
// before Raft trims its log, so a crash after the trim never leaves the state
// below the snapshot's index (the entries up to it are gone from the log),
// and the entries after it come back from the log.
func TestCrashAfterSnapshotKeepsSnapshotIndex(t *testing.T) {
	fs := vfs.NewCrashableMem()
	p := newRaftPeer(t, "a", 1, fs)
	p.start(true)
	p.waitLeader()
	p.apply(&Command{Type: CmdCreateShards, Shards: []shardstore.ShardID{10}})
	for i := range 20 {
		p.apply(produce(10, fmt.Sprintf("k%d", i%5), 3))
	}
	p.snapshotAndTrim()
	snapApplied := p.applied()
	for i := range 10 {
		p.apply(produce(10, fmt.Sprintf("after%d", i%3), 2))
	}
	want, applied := viewWithoutApplied(t, p.store, 1), p.applied()

	clone := fs.CrashClone(vfs.CrashCloneCfg{})
	got := appliedOn(t, clone, p.dataDir, 1)
	if got < snapApplied {
		t.Fatalf("after a crash the state is at %d, below the snapshot at %d whose entries Raft trimmed", got, snapApplied)
	}
	if got >= applied {
		t.Fatalf("the crash kept applied %d of %d: no unflushed applies to test", got, applied)
	}

	r := restartOnCrash(t, p, clone, applied)
	if got := viewWithoutApplied(t, r.store, 1); got != want {
		t.Fatalf("after the crash and replay:\n%s\nwant:\n%s", got, want)
	}
}

// oldLayout writes, in one Pebble DB with a WAL at dir as builds before the
// Raft log DB did, a group's Raft log and stable store, a snapshot marker, an
// identity and two state keys, synced, and returns the filesystem a kill -9
// then leaves (nothing flushed: everything is in the WAL).
func oldLayout(t *testing.T, dir string) *vfs.MemFS {
	t.Helper()
	fs := vfs.NewCrashableMem()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := NewLogStore(db, 1)
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, ls, 1, 40)
	if err := ls.DeleteRange(1, 9); err != nil {
		t.Fatal(err)
	}
	if err := ls.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := saveIdentity(db, identity{nodeID: 3, clusterID: "c1", incarnation: 0xabc}); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"r\x00\x00\x00\x01p": "marker", "mc": "cluster", "sa\x00\x00\x00\x01": "applied"} {
		if err := db.Set([]byte(k), []byte(v), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	clone := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = db.Close()
	return clone
}

// checkMoved checks what oldLayout wrote: the Raft keys in the Raft log DB
// only, the state keys in the state DB.
func checkMoved(t *testing.T, s *shardstore.Store) {
	t.Helper()
	ls, err := NewLogStore(s.LogDB(), 1)
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, ls, 10, 40)
	for i := uint64(10); i <= 40; i++ {
		checkLog(t, ls, i)
	}
	if term, err := ls.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("CurrentTerm = %d, %v", term, err)
	}
	id, ok, err := loadIdentity(s.LogDB())
	if err != nil || !ok || id != (identity{nodeID: 3, clusterID: "c1", incarnation: 0xabc}) {
		t.Fatalf("identity %+v, %v, %v", id, ok, err)
	}
	get := func(db *pebble.DB, k string) string {
		v, closer, err := db.Get([]byte(k))
		if errors.Is(err, pebble.ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		return string(v)
	}
	if m := get(s.LogDB(), "r\x00\x00\x00\x01p"); m != "marker" {
		t.Fatalf("marker in the log db = %q", m)
	}
	if c, a := get(s.DB(), "mc"), get(s.DB(), "sa\x00\x00\x00\x01"); c != "cluster" || a != "applied" {
		t.Fatalf("state keys after the move: %q %q", c, a)
	}
	for _, p := range logKeyPrefixes {
		it, err := s.DB().NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			t.Fatal(err)
		}
		if it.First() {
			t.Errorf("state db still holds %q", it.Key())
		}
		it.Close()
	}
	if got := get(s.LogDB(), "mc"); got != "" {
		t.Fatalf("a state key reached the log db: %q", got)
	}
}

// TestMoveLogKeysCrash: a data dir with one DB (Raft keys beside the state,
// all of it in the WAL after a kill -9) opens with its Raft state in the Raft
// log DB and its state in place, whether or not the move is interrupted by a
// crash after any of its steps, or before it ends its copy.
func TestMoveLogKeysCrash(t *testing.T) {
	for _, step := range []string{"copying", "copied", "deleted", "flushed", "none"} {
		t.Run(step, func(t *testing.T) {
			dir := "data"
			fs := oldLayout(t, dir)
			s, err := shardstore.Open(dir, shardstore.Options{FS: fs, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			var crashed *vfs.MemFS
			switch step {
			case "none":
				if err := moveLogKeys(s, testLogger(t)); err != nil {
					t.Fatal(err)
				}
				checkMoved(t, s)
				// A second open finds nothing to move and changes nothing.
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				crashed = fs
			case "copying":
				// A crash in the copy, before its sync: the log DB's
				// writes are lost or partial.
				if _, _, err := copyPrefix(s.DB(), s.LogDB(), prefixRaft); err != nil {
					t.Fatal(err)
				}
				crashed = fs.CrashClone(vfs.CrashCloneCfg{})
			default:
				err := moveLogKeysHook(s, testLogger(t), func(at string) {
					if at == step {
						crashed = fs.CrashClone(vfs.CrashCloneCfg{})
					}
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if step != "none" {
				_ = s.Close()
			}
			s, err = shardstore.Open(dir, shardstore.Options{FS: crashed, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := moveLogKeys(s, testLogger(t)); err != nil {
				t.Fatal(err)
			}
			checkMoved(t, s)
		})
	}
}

// TestNodeOpensOldDataDir: a node's data dir laid out as builds before the
// Raft log DB left it (one DB with WAL: the Raft keys beside the state) opens
// as the same node, with its topics, records and Raft state.
func TestNodeOpensOldDataDir(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	if _, err := c.node.CreateTopic(ctx, "old", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.node.Produce(ctx, "old", 0, shardstore.NoProducer, keyed("o", 3)); err != nil {
			t.Fatal(err)
		}
	}
	clusterID, server := c.node.ClusterID(), c.node.selfServerID()
	c.stop()

	// Fold the Raft log DB back into the state DB, opened with a WAL as the
	// old builds did, and remove it.
	stateDir := filepath.Join(c.dir, "data")
	logDir := filepath.Join(stateDir, shardstore.DefaultLogDirName)
	state, err := pebble.Open(stateDir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	logDB, err := pebble.Open(logDir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range logKeyPrefixes {
		if n, _, err := copyPrefix(logDB, state, p); err != nil || n == 0 {
			t.Fatalf("copy %q: %d keys, %v", p, n, err)
		}
	}
	if err := state.LogData(nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(logDB.Close(), state.Close(), os.RemoveAll(logDir)); err != nil {
		t.Fatal(err)
	}

	c.start()
	if c.node.ClusterID() != clusterID || c.node.selfServerID() != server {
		t.Fatalf("after the upgrade: cluster %q server %q, want %q %q", c.node.ClusterID(), c.node.selfServerID(), clusterID, server)
	}
	res, err := c.node.Produce(ctx, "old", 0, shardstore.NoProducer, keyed("n", 1))
	if err != nil || res.BaseOffset != 15 {
		t.Fatalf("produce after the upgrade: %+v, %v", res, err)
	}
	for _, p := range logKeyPrefixes {
		it, err := c.store.DB().NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			t.Fatal(err)
		}
		if it.First() {
			t.Errorf("state db still holds %q", it.Key())
		}
		it.Close()
	}
}
