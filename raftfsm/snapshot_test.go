package raftfsm

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

func TestLogicalSnapshot(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "snap", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.node.Produce(ctx, "snap", 0, shardstore.NoProducer, keyed("s", 3)); err != nil {
			t.Fatal(err)
		}
	}
	g := c.node.groups[info.Partitions[0].Group]
	if err := g.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	applied, _ := c.store.Applied(g.id)
	marker, closer, err := c.store.DB().Get(raftGroupPrefix(g.id, raftKindSnap))
	if err != nil {
		t.Fatalf("snapshot marker: %v", err)
	}
	if len(marker) != 13 || binary.BigEndian.Uint64(marker[5:]) != applied {
		t.Fatalf("marker %x, applied %d", marker, applied)
	}
	closer.Close()

	c.restart()
	// Raft did not restore the snapshot (NoSnapshotRestoreOnStart): the state
	// came from Pebble, and entries after the snapshot were skipped or applied.
	g = c.node.groups[info.Partitions[0].Group]
	st, err := c.store.State(info.Partitions[0].Shard)
	if err != nil || st.HighWatermark != 15 {
		t.Fatalf("state after restart: %+v, %v", st, err)
	}
	res, err := c.node.Produce(ctx, "snap", 0, shardstore.NoProducer, keyed("t", 1))
	if err != nil || res.BaseOffset != 15 {
		t.Fatalf("produce after snapshot and restart: %+v, %v", res, err)
	}
	if err := g.fsm.Restore(io.NopCloser(strings.NewReader("x"))); !errors.Is(err, errRestoreUnsupported) {
		t.Fatalf("Restore = %v", err)
	}
}
