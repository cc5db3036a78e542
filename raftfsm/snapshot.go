package raftfsm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
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
// bytes and captures the group's state as Pebble holds it now (a
// shardstore.Export: applied index A >= the marker's index, the group's shards,
// registry and, for the metadata group, the metadata keys). Raft's
// InstallSnapshot must be told the stream's length before its first byte, and
// sizing it is a whole walk of the group, which the follower would wait for.
// So between nodes (a snapshot store with a puller) Open sends a reference
// instead: a few bytes naming this node and an offered export (the stream
// ref format below), and the follower pulls the stream itself over a control
// RPC (opSnapshotStream), reading it to EOF; the export is encoded as it is
// sent, in one walk. Without a puller (in-memory transports) Open sends the
// stream itself, sized by a first walk.
//
// Stream ref, integers big-endian:
//
//	"SCGR" | version 1 | group:4 | applied index:8 | node:4 | export id:8 | padding
//
// The padding is zero bytes, as many as 10 s each of the time Raft's
// InstallSnapshot should wait for the pull and the ingest (the transport
// scales its deadline by the request's length, TimeoutScale 1): the estimate
// is from Pebble's table metadata, with room to spare (refDeadlineBytes).
// A follower that is gone holds that sender's replication to it until then.
// An offered export not pulled within snapshotOfferTTL is released.
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

	snapshotRefMagic   = "SCGR"
	snapshotRefVersion = 1
	snapshotRefLen     = 4 + 1 + 4 + 8 + 4 + 8
	// snapshotOfferTTL is how long an offered export waits to be pulled. A
	// follower pulls as soon as the ref reaches it; an offer nobody pulls (the
	// follower held the state already, or the send failed) pins a Pebble
	// snapshot meanwhile.
	snapshotOfferTTL = 10 * time.Second
	// snapshotPullIdle bounds the wait for the next bytes of a pulled stream,
	// and of the follower reading them.
	snapshotPullIdle = time.Minute
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

// snapshotRef is a decoded stream ref (format at the top of this file).
type snapshotRef struct {
	group   uint32
	applied uint64
	node    int32
	export  uint64
}

func (r snapshotRef) appendTo(b []byte) []byte {
	b = append(b, snapshotRefMagic...)
	b = append(b, snapshotRefVersion)
	b = binary.BigEndian.AppendUint32(b, r.group)
	b = binary.BigEndian.AppendUint64(b, r.applied)
	b = binary.BigEndian.AppendUint32(b, uint32(r.node))
	return binary.BigEndian.AppendUint64(b, r.export)
}

// isSnapshotRef reports whether b (at least 4 bytes) starts a stream ref.
func isSnapshotRef(b []byte) bool { return len(b) >= 4 && string(b[:4]) == snapshotRefMagic }

// parseSnapshotRef decodes the first snapshotRefLen bytes of b.
func parseSnapshotRef(b []byte) (snapshotRef, error) {
	switch {
	case len(b) < snapshotRefLen || !isSnapshotRef(b):
		return snapshotRef{}, errors.New("raftfsm: not a snapshot stream ref")
	case b[4] != snapshotRefVersion:
		return snapshotRef{}, fmt.Errorf("raftfsm: snapshot stream ref version %d", b[4])
	}
	return snapshotRef{
		group:   binary.BigEndian.Uint32(b[5:]),
		applied: binary.BigEndian.Uint64(b[9:]),
		node:    int32(binary.BigEndian.Uint32(b[17:])),
		export:  binary.BigEndian.Uint64(b[21:]),
	}, nil
}

// refDeadlineBytes is the padding of a ref for an export Pebble estimates at
// est bytes (compressed, memtables not counted) sent at rate bytes/s (0:
// unlimited): one byte per 10 s of a budget of two minutes (memtables and
// small groups) plus 4 s per estimated MB (at least 1 MB/s of stream once
// decompressed, about four times the estimate), or 4 times the rate limit's
// time.
func refDeadlineBytes(est uint64, rate int64) int {
	secs := 120 + 4*est/1e6
	if rate > 0 {
		secs = max(secs, 120+4*4*est/uint64(rate))
	}
	return int(min(secs/10+1, 1<<20))
}

// snapshotPuller fetches the stream an offered export holds from the node
// that offered it (Node.pullSnapshot).
type snapshotPuller func(ctx context.Context, ref snapshotRef) (io.ReadCloser, error)

// offeredExport is an export waiting to be pulled.
type offeredExport struct {
	e     *shardstore.Export
	timer *time.Timer
}

// snapshotStore is a group's raft.SnapshotStore: a raft.FileSnapshotStore for
// what is stored (local markers, received streams), and an Open that offers
// or streams fresh data from the store for a follower (see the top of this
// file).
type snapshotStore struct {
	files *raft.FileSnapshotStore
	fsm   *fsm
	rate  int64
	log   hclog.Logger
	// self and pull are set between nodes (before Raft starts): Open then
	// offers exports as refs, and receiveSink pulls the stream a ref names.
	self int32
	pull snapshotPuller

	offersMu sync.Mutex
	offers   map[uint64]*offeredExport
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
func openSnapshotStore(dir string, f *fsm, rateBytes int64, logger hclog.Logger) (*snapshotStore, error) {
	files, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetain, logger)
	if err != nil {
		return nil, err
	}
	f.ingestDir = filepath.Join(dir, ingestDirName)
	s := &snapshotStore{files: files, fsm: f, rate: rateBytes, log: logger, offers: map[uint64]*offeredExport{}}
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
// marker or a stream already ingested, it captures the group's state from the
// store (at an applied index at least the snapshot's) for Raft to send to a
// follower: between nodes as a padded stream ref to the offered export, else
// as the stream itself with meta.Size its exact length.
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
	offer := s.pull != nil
	e, err := s.fsm.store.Export(s.fsm.group, shardstore.ExportOptions{Extra: groupSpans(s.fsm.group), RateBytes: s.rate, Unsized: offer})
	if err != nil {
		return nil, nil, fmt.Errorf("raftfsm: export group %d: %w", s.fsm.group, err)
	}
	if e.Applied() < need {
		e.Close()
		return nil, nil, fmt.Errorf("raftfsm: group %d store at index %d, below snapshot %s (%d)", s.fsm.group, e.Applied(), id, need)
	}
	m := *meta
	if !offer {
		m.Size = e.Size()
		s.log.Info("streaming group snapshot", "id", id, "index", meta.Index, "applied", e.Applied(), "bytes", m.Size)
		return &m, e, nil
	}
	ref := snapshotRef{group: s.fsm.group, applied: e.Applied(), node: s.self, export: s.offer(e)}
	b := ref.appendTo(nil)
	b = append(b, make([]byte, refDeadlineBytes(e.EstimatedBytes(), s.rate))...)
	m.Size = int64(len(b))
	s.log.Info("offering group snapshot", "id", id, "index", meta.Index, "applied", e.Applied(), "estimated_bytes", e.EstimatedBytes())
	return &m, io.NopCloser(bytes.NewReader(b)), nil
}

// offer keeps e until it is taken or snapshotOfferTTL passes, and returns
// its id.
func (s *snapshotStore) offer(e *shardstore.Export) uint64 {
	s.offersMu.Lock()
	defer s.offersMu.Unlock()
	id := rand.Uint64()
	for s.offers[id] != nil || id == 0 {
		id = rand.Uint64()
	}
	s.offers[id] = &offeredExport{e: e, timer: time.AfterFunc(snapshotOfferTTL, func() {
		if e := s.take(id); e != nil {
			s.log.Warn("offered group snapshot was not pulled, released", "export", id)
			e.Close()
		}
	})}
	return id
}

// take removes offered export id and returns it, or nil when there is none
// (never offered, taken already or expired). The caller must close it.
func (s *snapshotStore) take(id uint64) *shardstore.Export {
	s.offersMu.Lock()
	defer s.offersMu.Unlock()
	o := s.offers[id]
	if o == nil {
		return nil
	}
	delete(s.offers, id)
	o.timer.Stop()
	return o.e
}

// closeOffers releases every offered export (the group is closing).
func (s *snapshotStore) closeOffers() {
	s.offersMu.Lock()
	offers := s.offers
	s.offers = map[uint64]*offeredExport{}
	s.offersMu.Unlock()
	for _, o := range offers {
		o.timer.Stop()
		o.e.Close()
	}
}

// receiveSink is the raft.SnapshotSink of a snapshot this node stores. A local
// marker (Persist) passes through to the file. A stream the leader sends
// (told apart by its first bytes) is ingested as it arrives: the bytes go
// through a pipe to shardstore.Ingest on another goroutine, which builds the
// tables meanwhile. A stream ref names a stream to pull from the node that
// offered it: the pulled stream goes to Ingest the same way, and the padding
// after the ref is discarded. Close lets the ingest finish, then stores a
// marker of the ingested applied index as the snapshot's file. From the
// stream's (or ref's) first bytes to Close or Cancel the group's FSM is
// locked (it applies nothing, the ingest replaces its state). Raft calls
// Write, Close and Cancel from one goroutine.
type receiveSink struct {
	file  raft.SnapshotSink
	store *snapshotStore
	head  []byte // first bytes, until the kind of snapshot is known
	mode  sinkMode

	// Stream and ref modes: the ingest's input (a pipe, or the pulled
	// stream), its result, and when it began.
	pw      *io.PipeWriter
	pulled  io.ReadCloser
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
	sinkRef                // a stream ref: the stream is pulled and ingested
)

type ingestResult struct {
	res shardstore.IngestResult
	err error
}

var _ raft.SnapshotSink = (*receiveSink)(nil)

// ID is the stored snapshot's id.
func (k *receiveSink) ID() string { return k.file.ID() }

// headLen is how many first bytes tell the kind of snapshot: a ref's length
// once its magic is seen, else a stream's prefix.
func (k *receiveSink) headLen() int {
	if isSnapshotRef(k.head) {
		return snapshotRefLen
	}
	return shardstore.SnapshotPrefixLen
}

func (k *receiveSink) Write(p []byte) (int, error) {
	switch k.mode {
	case sinkFile:
		return k.file.Write(p)
	case sinkStream:
		return k.feed(p)
	case sinkRef:
		if i := bytes.IndexFunc(p, func(r rune) bool { return r != 0 }); i >= 0 {
			return 0, fmt.Errorf("raftfsm: group %d: bytes after a snapshot stream ref", k.store.fsm.group)
		}
		return len(p), nil
	}
	n := len(p)
	for k.mode == sinkUndecided {
		need := k.headLen() - len(k.head)
		if len(p) < need {
			k.head = append(k.head, p...)
			return n, nil
		}
		k.head = append(k.head, p[:need]...)
		p = p[need:]
		if len(k.head) == k.headLen() {
			if err := k.decide(); err != nil {
				return 0, err
			}
		}
	}
	if k.mode != sinkRef {
		if _, err := k.Write(k.head); err != nil {
			return 0, err
		}
	}
	k.head = nil
	if _, err := k.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// decide picks the mode from the first bytes; for a stream or a ref it locks
// the FSM and starts the ingest.
func (k *receiveSink) decide() error {
	var ref snapshotRef
	var err error
	if isSnapshotRef(k.head) {
		if ref, err = parseSnapshotRef(k.head); err != nil {
			return err
		}
		if k.store.pull == nil {
			return fmt.Errorf("raftfsm: group %d received a snapshot stream ref without a cluster transport", k.store.fsm.group)
		}
		k.mode, k.group, k.applied = sinkRef, ref.group, ref.applied
	} else {
		if k.group, k.applied, err = shardstore.ParseSnapshotPrefix(k.head); err != nil {
			k.mode = sinkFile
			return nil
		}
		k.mode = sinkStream
	}
	f := k.store.fsm
	if k.group != f.group {
		k.mode = sinkFile // nothing to release on Cancel
		return fmt.Errorf("raftfsm: group %d received a snapshot of group %d", f.group, k.group)
	}
	k.start = time.Now()
	f.mu.Lock()
	if f.failed != nil {
		err := f.failed
		f.mu.Unlock()
		k.mode = sinkFile // nothing to release on Cancel
		return err
	}
	if k.applied <= f.applied {
		f.log.Info("group snapshot already applied", keyGroup, f.group, keyIndex, k.applied, keyApplied, f.applied)
		k.skip = true
		return nil
	}
	var src io.Reader
	if k.mode == sinkRef {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotPullIdle)
		k.pulled, err = k.store.pull(ctx, ref)
		cancel()
		if err != nil {
			f.mu.Unlock()
			k.mode = sinkFile
			return fmt.Errorf("raftfsm: group %d: pull snapshot from node %d: %w", f.group, ref.node, err)
		}
		src = k.pulled
	} else {
		pr, pw := io.Pipe()
		k.pw, src = pw, pr
	}
	k.done = make(chan ingestResult, 1)
	opts := f.ingestOptions()
	go func() {
		res, err := f.store.Ingest(src, opts)
		if pr, ok := src.(*io.PipeReader); ok {
			// A failed ingest stops reading: Raft's next Write fails with err.
			pr.CloseWithError(cmp.Or(err, io.ErrClosedPipe))
		}
		if err == nil && res.Applied != k.applied {
			err = fmt.Errorf("raftfsm: group %d: snapshot stream at index %d, announced %d", f.group, res.Applied, k.applied)
		}
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
		if k.pw != nil {
			k.pw.Close()
		}
		r := <-k.done
		if k.pulled != nil {
			k.pulled.Close()
		}
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
	if k.mode == sinkStream || k.mode == sinkRef {
		if !k.skip {
			if k.pw != nil {
				k.pw.CloseWithError(errSnapshotCanceled)
			}
			if k.pulled != nil {
				k.pulled.Close()
			}
			<-k.done
		}
		k.store.fsm.mu.Unlock()
	}
	return k.file.Cancel()
}

// pullSnapshot fetches the stream ref names from the node that offered it:
// one opSnapshotStream request, whose response is followed by the stream,
// read to EOF. The returned reader waits at most snapshotPullIdle for each
// read; closing it closes the connection.
func (n *Node) pullSnapshot(ctx context.Context, ref snapshotRef) (io.ReadCloser, error) {
	addr := n.dialAddr(ref.node)
	if g := n.group(ref.group); addr == "" && g != nil {
		// A joining node learns addresses from the metadata group's
		// snapshot: Raft knows the sending leader's address meanwhile.
		if a, id := g.raft.LeaderWithID(); a != "" {
			if node, ok := parseServerID(id); ok && node == ref.node {
				addr = string(a)
			}
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("no address known for node %d", ref.node)
	}
	conn, err := n.mux.DialRPC(ctx, addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(rpcDefaultTimeout))
	var resp rpcResponse
	err = writeFrame(conn, &rpcRequest{Op: opSnapshotStream, Group: ref.group, ExportID: ref.export})
	if err == nil {
		err = readFrame(conn, &resp)
	}
	if err == nil {
		err = resp.err()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &idleConn{Conn: conn}, nil
}

// serveSnapshotStream answers opSnapshotStream: the offered export goes to
// the caller once, encoded as it is sent, then the connection closes.
func (n *Node) serveSnapshotStream(conn net.Conn, sender int32, req *rpcRequest) {
	g := n.group(req.Group)
	var e *shardstore.Export
	if g != nil {
		e = g.snaps.take(req.ExportID)
	}
	if e == nil {
		writeFrame(conn, errorResponse(fmt.Errorf("%w: group %d has no snapshot offer %d (taken, expired or never made)", ErrBadRequest, req.Group, req.ExportID)))
		return
	}
	defer e.Close()
	if err := writeFrame(conn, rpcResponse{}); err != nil {
		n.log.Warn("snapshot stream not sent", keyGroup, req.Group, keyPeer, sender, keyError, err)
		return
	}
	start := time.Now()
	sent, err := io.CopyBuffer(&idleConn{Conn: conn}, e, make([]byte, 256<<10))
	if err != nil {
		n.log.Warn("snapshot stream cut", keyGroup, req.Group, keyPeer, sender, "bytes", sent, keyError, err)
		return
	}
	n.log.Info("group snapshot sent", keyGroup, req.Group, keyPeer, sender, keyIndex, e.Applied(), "bytes", sent, keyDuration, time.Since(start))
}

// idleConn is a connection each read or write of which must finish within
// snapshotPullIdle.
type idleConn struct{ net.Conn }

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(snapshotPullIdle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(snapshotPullIdle))
	return c.Conn.Write(p)
}

var errSnapshotCanceled = errors.New("raftfsm: received snapshot canceled")

// readCloser reads through a bufio.Reader and closes the file beneath it.
type readCloser struct {
	*bufio.Reader
	io.Closer
}

// errMarkerNotHere: a logical marker names state this store does not hold.
var errMarkerNotHere = errors.New("raftfsm: logical snapshot marker for state this store does not hold")
