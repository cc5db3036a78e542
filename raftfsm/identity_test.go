package raftfsm

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/shardcache/shardcache/shardstore"
)

// A shard store that holds a cluster's data beside a Raft log store with no
// identity and no Raft log (the log store lost, or opened from another
// directory) is refused with ErrIdentity, with or without --join: bootstrapping
// a cluster or joining one over that state would mix two histories. The data
// is untouched, so the node opens again once its log store is back.
func TestOpenRefusesStateWithoutRaftLog(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "t", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.node.Produce(ctx, "t", 0, shardstore.NoProducer, keyed("k", 3)); err != nil {
		t.Fatal(err)
	}
	c.stop()

	logDir := filepath.Join(c.dir, "data", shardstore.DefaultLogDirName)
	kept := filepath.Join(c.dir, "log-kept")
	if err := os.Rename(logDir, kept); err != nil {
		t.Fatal(err)
	}
	for _, join := range [][]string{nil, {"127.0.0.1:1"}} {
		store, err := shardstore.Open(filepath.Join(c.dir, "data"), shardstore.Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(c.dir, store)
		cfg.Logger = testLogger(t)
		if join != nil {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cfg.Join, cfg.Listener, cfg.ClusterAddr = join, ln, ln.Addr().String()
		}
		n, err := Open(cfg)
		if err == nil {
			_ = n.Close()
		}
		if cerr := store.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "no node identity") {
			t.Fatalf("open with join %v over a store with data and an empty Raft log store: %v, want ErrIdentity", join, err)
		}
	}

	if err := os.RemoveAll(logDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(kept, logDir); err != nil {
		t.Fatal(err)
	}
	c.start()
	if got := readAll(t, c.store, info.Partitions[0].Shard); len(got) != 3 {
		t.Fatalf("after the Raft log store is back: %d records, want 3", len(got))
	}
}

// CheckNewLogDB (shardstore.Options.NewLogDir) lets a Raft log DB be created
// beside an empty state DB and beside one from before the split (its 'r' and
// 'i' keys still in it, for moveLogKeys), and refuses one beside a state DB
// that holds a cluster's metadata and no Raft keys; the store then creates
// nothing in the missing directory. TestNodeOpensOldDataDir opens an old data
// dir through it (testCluster sets it, as the binary does).
func TestCheckNewLogDB(t *testing.T) {
	state, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if err := CheckNewLogDB(state); err != nil {
		t.Fatalf("empty state DB: %v", err)
	}
	if err := state.Set(metaKey(metaKindCluster, ""), append([]byte{metaValueVersion}, "c1"...), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	err = CheckNewLogDB(state)
	if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "cluster c1") {
		t.Fatalf("state DB with a cluster id and no Raft keys: %v, want ErrIdentity naming cluster c1", err)
	}
	for _, p := range logKeyPrefixes {
		k := []byte{p, 'x'}
		if err := state.Set(k, nil, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := CheckNewLogDB(state); err != nil {
			t.Errorf("state DB from before the split (a %q key): %v", p, err)
		}
		if err := state.Delete(k, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}

	// Through the store: a refused Raft log DB is not created.
	dir := t.TempDir()
	store, err := shardstore.Open(filepath.Join(dir, "data"), shardstore.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := store.DB().NewBatch()
	if err := b.Set(metaKey(metaKindCluster, ""), append([]byte{metaValueVersion}, "c2"...), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil { // flushes: the state DB has no WAL
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "raft-log")
	_, err = shardstore.Open(filepath.Join(dir, "data"), shardstore.Options{Logger: testLogger(t), LogDir: logDir, NewLogDir: CheckNewLogDB})
	if !errors.Is(err, ErrIdentity) {
		t.Fatalf("store open over cluster c2's data with a missing Raft log dir: %v, want ErrIdentity", err)
	}
	if _, err := os.Stat(logDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused open created %s: %v", logDir, err)
	}
	store, err = shardstore.Open(filepath.Join(dir, "data"), shardstore.Options{Logger: testLogger(t), LogDir: logDir})
	if err != nil {
		t.Fatalf("the same open without NewLogDir: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}
