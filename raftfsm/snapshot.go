package raftfsm

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

// Snapshots.
//
// Taking one is logical. The state it stands for is already in Pebble: the
// shards and metadata with the applied index in the same batches. A snapshot
// therefore only has to make that state durable up to its index (a flush of
// the state DB, which has no WAL, so every earlier apply reaches its tables)
// and write a 13-byte marker to the Raft log DB, synced, after which Raft may
// trim its log. Restart costs
// O(groups), not O(data): NoSnapshotRestoreOnStart keeps Raft from reading the
// snapshot back, and the FSM resumes from the applied index in Pebble.
//
// Sending one to a follower streams data. Raft sends the newest stored
// snapshot through SnapshotStore.Open; snapshotStore.Open ignores the marker's
// bytes and streams the group's state as Pebble holds it now (a
// shardstore.Export: applied index A >= the marker's index, the group's shards,
// registry and, for the metadata group, the metadata keys), with the meta's
// Size set to the stream's exact length.
//
// Receiving one ingests it as it arrives. The follower's Raft copies the
// stream into the sink snapshotStore.Create returns (receiveSink), which feeds
// it to shardstore.Ingest: the tables are built while the bytes come in, and
// when Raft closes the sink the ingest happens (atomically, flushed), the FSM's
// applied index becomes A, and only then is a marker of A stored as the
// snapshot's file. Raft then restores that marker (Open hands it back once),
// which the store holds; Raft sets its own applied index to the snapshot's,
// and the entries between it and A are skipped by the applied rule of
// ApplyBatch. Nothing is spilled to a file, read back or checksummed twice.
//
// No crash window: the snapshot is stored only after the ingest is durable,
// and a crash before that leaves Raft's state as it was, with the store at A
// or before (entries Raft then delivers at or below A are skipped). With
// NoSnapshotRestoreOnStart a restart takes the newest stored snapshot's index
// as applied without calling Restore; a stored stream (written by a version
// that ingested only in Restore, crashed before it did) is therefore ingested
// by openSnapshotStore before Raft starts, when the store does not hold it.

const (
	snapshotMarkerVersion = 1
	snapshotMarkerLen     = 1 + 4 + 8
	// ingestDirName is the scratch directory of shardstore.Ingest inside a
	// group's snapshot directory.
	ingestDirName = "ingest"
)

// groupSpans are the key ranges a group's snapshot carries besides its shards,
// registry and applied index: the metadata keys ('m') for the metadata group,
// nothing for data groups. Raft logs ('r') and node-local keys are in no
// group's spans, so they are never sent nor cleared by a snapshot.
func groupSpans(group uint32) []shardstore.Span {
	if group == metaGroup {
		return []shardstore.Span{{Start: []byte{prefixMeta}, End: []byte{prefixMeta + 1}}}
	}
	return nil
}

// logicalSnapshot is a captured applied index.
type logicalSnapshot struct {
	store   *shardstore.Store
	group   uint32
	applied uint64
}

// Persist flushes the state DB, so everything applied up to s.applied (and
// any later apply) is durable without the Raft log, then writes the marker to
// the Raft log DB, synced: version | group (4 BE) | applied (8 BE). Only when
// it returns may Raft trim its log up to s.applied.
func (s *logicalSnapshot) Persist(sink raft.SnapshotSink) error {
	marker := []byte{snapshotMarkerVersion}
	marker = binary.BigEndian.AppendUint32(marker, s.group)
	marker = binary.BigEndian.AppendUint64(marker, s.applied)
	if err := s.store.Flush(); err != nil {
		sink.Cancel()
		return fmt.Errorf("flush store for snapshot: %w", err)
	}
	if err := s.store.LogDB().Set(raftGroupPrefix(s.group, raftKindSnap), marker, pebble.Sync); err != nil {
		sink.Cancel()
		return fmt.Errorf("store snapshot marker: %w", err)
	}
	if _, err := sink.Write(marker); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release does nothing: the snapshot holds no resources.
func (s *logicalSnapshot) Release() {}

// parseMarker decodes a logical snapshot marker.
func parseMarker(b []byte) (group uint32, applied uint64, ok bool) {
	if len(b) != snapshotMarkerLen || b[0] != snapshotMarkerVersion {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint64(b[5:]), true
}

// snapshotStore is a group's raft.SnapshotStore: a raft.FileSnapshotStore for
// what is stored (local markers, received streams), and an Open that streams
// fresh data from the store for a follower (see the top of this file).
type snapshotStore struct {
	files *raft.FileSnapshotStore
	fsm   *fsm
	rate  int64
	log   hclog.Logger
	// received is the id of the snapshot receiveSink stored last, until Raft
	// opens it to restore it (right after InstallSnapshot): that one Open
	// returns the stored marker rather than a fresh export.
	received atomic.Pointer[string]
	// testHookIngested, when set, runs after a received stream is ingested,
	// before its marker is stored (tests crash there).
	testHookIngested func()
}

var _ raft.SnapshotStore = (*snapshotStore)(nil)

// openSnapshotStore opens group f.group's snapshots in dir and gives f its
// ingest directory. Before returning it closes the crash window: when the
// newest stored snapshot is a received stream above the store's applied index,
// it is restored through f (so f's applied index and, for the metadata group,
// f.reload run as for a Restore). Call it after newFSM, with f.reload set, and
// before raft.NewRaft. rateBytes limits how fast Open's streams are read (0:
// unlimited).
func openSnapshotStore(dir string, f *fsm, rateBytes int64, logger hclog.Logger) (raft.SnapshotStore, error) {
	files, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetain, logger)
	if err != nil {
		return nil, err
	}
	f.ingestDir = filepath.Join(dir, ingestDirName)
	s := &snapshotStore{files: files, fsm: f, rate: rateBytes, log: logger}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("raftfsm: group %d: %w", f.group, err)
	}
	return s, nil
}

// recover restores the newest stored snapshot if the store does not hold it,
// and checks that the store holds the state every stored snapshot stands for
// (Raft starts from the newest one's index).
func (s *snapshotStore) recover() error {
	metas, err := s.files.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	newest := metas[0]
	_, rc, err := s.files.Open(newest.ID) // checks the file's CRC
	if err != nil {
		return fmt.Errorf("open newest snapshot %s: %w", newest.ID, err)
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	applied, stream, err := s.stored(br)
	if err == nil && stream && applied > s.fsm.applied {
		s.log.Warn("restoring a received snapshot that was not ingested before the restart",
			"id", newest.ID, "index", newest.Index, "applied", s.fsm.applied, "snapshot_applied", applied)
		err = s.fsm.Restore(readCloser{br, rc})
	} else {
		rc.Close()
	}
	if err != nil {
		return fmt.Errorf("restore snapshot %s: %w", newest.ID, err)
	}
	if s.fsm.applied < applied {
		return fmt.Errorf("snapshot %s stands for applied index %d, the store has only %d", newest.ID, applied, s.fsm.applied)
	}
	return nil
}

// stored reads what a stored snapshot stands for: the applied index of a
// received stream, or of a local marker. The FSM's applied index can trail
// the snapshot's Raft index by entries the FSM never sees (barriers, no-ops),
// so this, not the Raft index, is what the store must reach.
func (s *snapshotStore) stored(br *bufio.Reader) (applied uint64, stream bool, err error) {
	prefix, _ := br.Peek(shardstore.SnapshotPrefixLen)
	group, applied, err := shardstore.ParseSnapshotPrefix(prefix)
	stream = err == nil
	if !stream {
		var ok bool
		if group, applied, ok = parseMarker(prefix); !ok {
			return 0, false, fmt.Errorf("raftfsm: group %d: stored snapshot is neither a marker nor a group snapshot stream", s.fsm.group)
		}
	}
	if group != s.fsm.group {
		return 0, false, fmt.Errorf("raftfsm: group %d: stored snapshot is of group %d", s.fsm.group, group)
	}
	return applied, stream, nil
}

// Create stores a snapshot: a local marker as a file, or a stream Raft
// receives from the leader, which receiveSink ingests.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.files.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &receiveSink{file: sink, store: s}, nil
}

// List lists the stored snapshots, newest first.
func (s *snapshotStore) List() ([]*raft.SnapshotMeta, error) { return s.files.List() }

// Open returns what snapshot id stands for. A received stream the store does
// not hold yet (its applied index is above the store's) is returned as stored:
// that is Raft restoring it after InstallSnapshot. Otherwise, for a local
// marker or a stream already ingested, it returns a fresh stream of the group's
// state from the store (at an applied index at least the snapshot's), with
// meta.Size its exact length: that is Raft sending it to a follower.
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.files.Open(id)
	if err != nil {
		return nil, nil, err
	}
	// Raft restoring what receiveSink ingested: InstallSnapshot restores
	// right after storing, or Raft shuts down and this store goes with it.
	if r := s.received.Load(); r != nil && *r == id && s.received.CompareAndSwap(r, nil) {
		return meta, rc, nil
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	need, stream, err := s.stored(br)
	if err != nil {
		rc.Close()
		return nil, nil, err
	}
	if stream {
		have, err := s.fsm.store.Applied(s.fsm.group)
		if err != nil {
			rc.Close()
			return nil, nil, err
		}
		if need > have {
			return meta, readCloser{br, rc}, nil
		}
	}
	rc.Close()
	e, err := s.fsm.store.Export(s.fsm.group, shardstore.ExportOptions{Extra: groupSpans(s.fsm.group), RateBytes: s.rate})
	if err != nil {
		return nil, nil, fmt.Errorf("raftfsm: export group %d: %w", s.fsm.group, err)
	}
	if e.Applied() < need {
		e.Close()
		return nil, nil, fmt.Errorf("raftfsm: group %d store at index %d, below snapshot %s (%d)", s.fsm.group, e.Applied(), id, need)
	}
	m := *meta
	m.Size = e.Size()
	s.log.Info("streaming group snapshot", "id", id, "index", meta.Index, "applied", e.Applied(), "bytes", m.Size)
	return &m, e, nil
}

// receiveSink is the raft.SnapshotSink of a snapshot this node stores. A local
// marker (Persist) passes through to the file. A stream the leader sends
// (told apart by its first bytes) is ingested as it arrives: the bytes go
// through a pipe to shardstore.Ingest on another goroutine, which builds the
// tables meanwhile; Close lets the ingest finish, then stores a marker of the
// ingested applied index as the snapshot's file. From the stream's first bytes
// to Close or Cancel the group's FSM is locked (it applies nothing, the ingest
// replaces its state). Raft calls Write, Close and Cancel from one goroutine.
type receiveSink struct {
	file  raft.SnapshotSink
	store *snapshotStore
	head  []byte // first bytes, until the kind of snapshot is known
	mode  sinkMode

	// Stream mode: the pipe into the ingest, its result, and when it began.
	pw      *io.PipeWriter
	done    chan ingestResult
	start   time.Time
	group   uint32
	applied uint64
	skip    bool // the store holds the stream's state already: discard it
}

type sinkMode int

const (
	sinkUndecided sinkMode = iota
	sinkFile               // a marker (or anything but a stream): stored as is
	sinkStream             // a group snapshot stream: ingested
)

type ingestResult struct {
	res shardstore.IngestResult
	err error
}

var _ raft.SnapshotSink = (*receiveSink)(nil)

// ID is the stored snapshot's id.
func (k *receiveSink) ID() string { return k.file.ID() }

func (k *receiveSink) Write(p []byte) (int, error) {
	switch k.mode {
	case sinkFile:
		return k.file.Write(p)
	case sinkStream:
		return k.feed(p)
	}
	need := shardstore.SnapshotPrefixLen - len(k.head)
	if len(p) < need {
		k.head = append(k.head, p...)
		return len(p), nil
	}
	k.head = append(k.head, p[:need]...)
	if err := k.decide(); err != nil {
		return 0, err
	}
	if _, err := k.Write(k.head); err != nil {
		return 0, err
	}
	k.head = nil
	if _, err := k.Write(p[need:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// decide picks the mode from the first SnapshotPrefixLen bytes; for a stream
// it locks the FSM and starts the ingest.
func (k *receiveSink) decide() error {
	group, applied, err := shardstore.ParseSnapshotPrefix(k.head)
	if err != nil {
		k.mode = sinkFile
		return nil
	}
	f := k.store.fsm
	if group != f.group {
		return fmt.Errorf("raftfsm: group %d received a snapshot of group %d", f.group, group)
	}
	k.mode, k.group, k.applied, k.start = sinkStream, group, applied, time.Now()
	f.mu.Lock()
	if f.failed != nil {
		err := f.failed
		f.mu.Unlock()
		k.mode = sinkFile // nothing to release on Cancel
		return err
	}
	if applied <= f.applied {
		f.log.Info("group snapshot already applied", keyGroup, f.group, keyIndex, applied, keyApplied, f.applied)
		k.skip = true
		return nil
	}
	pr, pw := io.Pipe()
	k.pw, k.done = pw, make(chan ingestResult, 1)
	opts := f.ingestOptions()
	go func() {
		res, err := f.store.Ingest(pr, opts)
		// A failed ingest stops reading: Raft's next Write fails with err.
		pr.CloseWithError(cmp.Or(err, io.ErrClosedPipe))
		k.done <- ingestResult{res, err}
	}()
	return nil
}

func (k *receiveSink) feed(p []byte) (int, error) {
	if k.skip {
		return len(p), nil
	}
	return k.pw.Write(p)
}

// Close finishes the ingest (the stream must have ended) and stores the
// marker of what the store now holds.
func (k *receiveSink) Close() error {
	switch k.mode {
	case sinkUndecided:
		if _, err := k.file.Write(k.head); err != nil {
			k.file.Cancel()
			return err
		}
		fallthrough
	case sinkFile:
		return k.file.Close()
	}
	f := k.store.fsm
	defer f.mu.Unlock()
	if !k.skip {
		k.pw.Close()
		r := <-k.done
		if err := f.ingested(r.res, r.err, k.start); err != nil {
			k.file.Cancel()
			return err
		}
		if h := k.store.testHookIngested; h != nil {
			h()
		}
	}
	marker := []byte{snapshotMarkerVersion}
	marker = binary.BigEndian.AppendUint32(marker, f.group)
	marker = binary.BigEndian.AppendUint64(marker, f.applied)
	if _, err := k.file.Write(marker); err != nil {
		k.file.Cancel()
		return err
	}
	id := k.file.ID()
	if err := k.file.Close(); err != nil {
		return err
	}
	k.store.received.Store(&id)
	return nil
}

// Cancel abandons the snapshot: an ingest under way stops and removes its
// tables, and nothing is stored.
func (k *receiveSink) Cancel() error {
	if k.mode == sinkStream {
		if !k.skip {
			k.pw.CloseWithError(errSnapshotCanceled)
			<-k.done
		}
		k.store.fsm.mu.Unlock()
	}
	return k.file.Cancel()
}

var errSnapshotCanceled = errors.New("raftfsm: received snapshot canceled")

// readCloser reads through a bufio.Reader and closes the file beneath it.
type readCloser struct {
	*bufio.Reader
	io.Closer
}

// errMarkerNotHere: a logical marker names state this store does not hold.
var errMarkerNotHere = errors.New("raftfsm: logical snapshot marker for state this store does not hold")
