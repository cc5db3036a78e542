package raftfsm

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
