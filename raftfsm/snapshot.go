package raftfsm

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Snapshots are logical. The state they stand for is already in Pebble: the
// shards and metadata with the applied index in the same batches. A snapshot
// therefore only has to make that state durable up to its index (one synced
// Pebble write flushes the WAL, which holds every earlier unsynced apply) and
// write a tiny marker, after which Raft may trim its log. Restart costs
// O(groups), not O(data): NoSnapshotRestoreOnStart keeps Raft from reading the
// snapshot back, and the FSM resumes from the applied index in Pebble.
//
// Not done: sending a snapshot to a follower (the group's key ranges, for
// example SSTs ingested with IngestAndExcise). See fsm.Restore.

const snapshotMarkerVersion = 1

// logicalSnapshot is a captured applied index.
type logicalSnapshot struct {
	db      *pebble.DB
	group   uint32
	applied uint64
}

// Persist syncs Pebble and writes the marker: version | group (4 BE) | applied (8 BE).
func (s *logicalSnapshot) Persist(sink raft.SnapshotSink) error {
	marker := []byte{snapshotMarkerVersion}
	marker = binary.BigEndian.AppendUint32(marker, s.group)
	marker = binary.BigEndian.AppendUint64(marker, s.applied)
	if err := s.db.Set(raftGroupPrefix(s.group, raftKindSnap), marker, pebble.Sync); err != nil {
		sink.Cancel()
		return fmt.Errorf("sync store for snapshot: %w", err)
	}
	if _, err := sink.Write(marker); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release does nothing: the snapshot holds no resources.
func (s *logicalSnapshot) Release() {}
