package shardstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultIngestTableBytes is where Ingest cuts its tables.
const DefaultIngestTableBytes = 64 << 20

// ingestTableFormat is the newest table format Ingest writes: Pebble's row
// blocks (v4), not the columnar blocks (v5 and later) its compactions write.
// Building columnar blocks costs the rebuilt node more CPU than anything else
// it does: BenchmarkSnapshot/Ingest spent 4.9-5.2 against 6.5-7.1 ms of CPU
// per MB (2 rounds interleaved, 193-202 against 165-181 MB/s). Pebble reads
// both formats; compactions rewrite ingested tables in the store's own.
const ingestTableFormat = sstable.TableFormatPebblev4

// DefaultIngestBundleBytes is how much data of small spans Ingest writes into
// one table: a span larger than this gets tables of its own.
const DefaultIngestBundleBytes = 1 << 20

// IngestOptions configure Store.Ingest.
type IngestOptions struct {
	// Group is the Raft group the stream must carry.
	Group uint32
	// Extra must equal the stream's extra spans (the sender's
	// ExportOptions.Extra): a receiver never clears ranges it did not ask for.
	Extra []Span
	// Dir is a scratch directory on the store's filesystem (Options.FS) for the
	// tables; Ingest creates it and owns its contents, removing what it finds.
	// It should be on the database's device, so that Pebble links the tables
	// instead of copying them.
	Dir string
	// TableBytes cuts tables at about this size; 0 means
	// DefaultIngestTableBytes.
	TableBytes uint64
	// BundleBytes: spans with more data than this get tables of their own,
	// smaller ones share tables of about this size; 0 means
	// DefaultIngestBundleBytes.
	BundleBytes uint64
}

// IngestResult reports an Ingest.
type IngestResult struct {
	// Applied is the group's applied index now (the stream's).
	Applied uint64
	// Shards are the group's shards now, in id order.
	Shards []ShardID
	// Removed are shards the group had here and the stream had not, now gone.
	Removed []ShardID
	// Tables is how many sstables were ingested.
	Tables int
}

// Ingest replaces one Raft group's state with a group snapshot stream written
// by Export on another node: every shard of the stream, the group's registry
// and applied index, the extra spans, and it removes the group's shards the
// stream does not have. It is atomic: the stream is written into sstables in
// opts.Dir, each starting with a range deletion of its own part of the spans,
// then all are ingested by one Pebble Ingest, followed by a flush of the state
// DB so the ingest is durable before Ingest returns. Then the in-memory state of the
// affected shards is reloaded (counters, key caches, the shard set) and their
// Wait channels are closed.
//
// A stream that is truncated, corrupt (framing, order, checksum, keys outside
// its spans, shards without their meta key or registry entry) or of another
// group or other extra spans fails with an error wrapping ErrBadSnapshot, and
// nothing changes. The group's FSM must not apply a batch during Ingest; other
// groups may, and readers see the old or the new state of each shard (the
// counters of a shard may lag its keys for the moment between the ingest and
// the reload).
func (s *Store) Ingest(r io.Reader, opts IngestOptions) (IngestResult, error) {
	if err := s.acquire(); err != nil {
		return IngestResult{}, err
	}
	defer s.life.RUnlock()
	d, err := newSnapshotDecoder(r)
	if err != nil {
		return IngestResult{}, err
	}
	h := &d.hdr
	switch {
	case h.Group != opts.Group:
		return IngestResult{}, badSnapshot("stream of group %d, expected %d", h.Group, opts.Group)
	case !equalSpans(h.Extra, opts.Extra):
		return IngestResult{}, badSnapshot("extra spans differ from the receiver's")
	}

	for _, id := range h.Shards {
		if g, ok := s.ShardGroup(id); ok && g != h.Group {
			return IngestResult{}, fmt.Errorf("%w: shard %d is in group %d here, the group %d snapshot has it", ErrGroupConflict, id, g, h.Group)
		}
	}
	// Clear the stream's spans and the group's local shards it lacks.
	spans := snapshotSpans(h)
	var removed []ShardID
	for _, id := range s.GroupShards(h.Group) {
		if _, found := slices.BinarySearch(h.Shards, id); !found {
			removed = append(removed, id)
			spans = append(spans, groupSpan{Span: Span{shardPrefix(id), shardEnd(id)}, kind: spanShard, shard: id, local: true})
		}
	}
	sortSpans(spans)
	if err := s.markOccupied(spans); err != nil {
		return IngestResult{}, err
	}

	limit := opts.TableBytes
	if limit == 0 {
		limit = DefaultIngestTableBytes
	}
	bundle := opts.BundleBytes
	if bundle == 0 {
		bundle = DefaultIngestBundleBytes
	}
	wo := s.popts.MakeWriterOptions(len(s.popts.Levels)-1, min(s.db.TableFormat(), ingestTableFormat))
	// MinLZ even while an idle compaction writes the bottom level with zstd
	// (idleCompression): a rebuild runs at its codec's speed.
	wo.Compression = sstable.FastestCompression
	tb := &tableBuilder{
		fs:     s.fs,
		dir:    opts.Dir,
		wo:     wo,
		limit:  limit,
		bundle: min(bundle, limit),
	}
	if err := tb.prepare(); err != nil {
		return IngestResult{}, err
	}
	ingested := false
	defer func() {
		if !ingested {
			tb.abort()
		}
	}()
	check := snapshotCheck{h: h}
	si := 0
	for {
		ok, err := d.next()
		if err != nil {
			return IngestResult{}, err
		}
		if !ok {
			break
		}
		for si < len(spans) && bytes.Compare(d.key, spans[si].End) >= 0 {
			if err := tb.endSpan(&spans[si]); err != nil {
				return IngestResult{}, err
			}
			si++
		}
		if si == len(spans) || bytes.Compare(d.key, spans[si].Start) < 0 || spans[si].local {
			return IngestResult{}, badSnapshot("key %x outside the stream's spans", d.key)
		}
		if err := check.entry(si, &spans[si], d.key, d.value); err != nil {
			return IngestResult{}, err
		}
		if err := tb.add(&spans[si], d.key, d.value); err != nil {
			return IngestResult{}, err
		}
	}
	for ; si < len(spans); si++ {
		if err := tb.endSpan(&spans[si]); err != nil {
			return IngestResult{}, err
		}
	}
	if err := check.finish(); err != nil {
		return IngestResult{}, err
	}
	if err := tb.finish(); err != nil {
		return IngestResult{}, err
	}

	if err := s.db.Ingest(context.Background(), tb.paths); err != nil {
		return IngestResult{}, fmt.Errorf("shardstore: ingest group %d snapshot: %w", h.Group, err)
	}
	ingested = true
	res := IngestResult{Applied: h.Applied, Shards: h.Shards, Removed: removed, Tables: len(tb.paths)}
	// The state DB has no WAL: a flush makes the ingested tables (Pebble
	// may hold them as a flushable in its memtable queue) and the batches
	// before them durable, before the snapshot's marker lets Raft trim.
	syncErr := s.db.Flush()
	// The keys are in place whether or not the flush worked: publish them.
	reloadErr := s.reloadShards(h.Group, append(slices.Clip(h.Shards), removed...))
	if syncErr != nil {
		return res, fmt.Errorf("shardstore: sync after ingesting group %d snapshot: %w", h.Group, syncErr)
	}
	return res, reloadErr
}

// markOccupied marks the spans in which the store holds a key: only those need
// a range deletion. The group's FSM does not write during Ingest and no other
// group writes in its spans, so what it finds holds until the ingest.
func (s *Store) markOccupied(spans []groupSpan) error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return err
	}
	for i := range spans {
		it.SetBounds(spans[i].Start, spans[i].End)
		spans[i].occupied = it.First()
	}
	if err := it.Error(); err != nil {
		it.Close()
		return fmt.Errorf("shardstore: ingest: %w", err)
	}
	return it.Close()
}

// snapshotCheck checks what the entries of a stream mean, so that a stream
// Ingest accepts leaves a store Open can load: the applied key holds the
// header's index, the registry lists exactly the header's shards, every shard
// starts with a meta key that decodes, and every shard key parses.
type snapshotCheck struct {
	h       *SnapshotHeader
	applied bool
	reg     int  // registry entries seen (they follow h.Shards in order)
	metas   int  // shards whose meta key was seen
	cur     int  // index of the span of the last shard key seen
	started bool // a shard key was seen (cur is set)
}

func (c *snapshotCheck) entry(si int, sp *groupSpan, k, v []byte) error {
	switch sp.kind {
	case spanApplied:
		if len(v) != 8 || binary.BigEndian.Uint64(v) != c.h.Applied {
			return badSnapshot("applied key holds %x, header says %d", v, c.h.Applied)
		}
		c.applied = true
	case spanRegistry:
		pk, ok := parseKey(k)
		if !ok || pk.kind != kindGroupShard || c.reg >= len(c.h.Shards) || pk.shard != c.h.Shards[c.reg] ||
			!bytes.Equal(v, []byte{groupEntryVersion}) {
			return badSnapshot("registry entry %x does not match the header's shards", k)
		}
		c.reg++
	case spanShard:
		pk, ok := parseKey(k)
		if !ok || pk.shard != sp.shard {
			return badSnapshot("bad key %x in shard %d", k, sp.shard)
		}
		if !c.started || c.cur != si {
			if pk.kind != kindMeta {
				return badSnapshot("shard %d starts at %x, not its meta key", sp.shard, k)
			}
			if _, _, err := decodeMeta(v); err != nil {
				return badSnapshot("meta of shard %d: %v", sp.shard, err)
			}
			c.started, c.cur = true, si
			c.metas++
		}
	}
	return nil
}

func (c *snapshotCheck) finish() error {
	switch {
	case c.h.Applied > 0 && !c.applied:
		return badSnapshot("applied key missing")
	case c.reg != len(c.h.Shards):
		return badSnapshot("registry lists %d of the header's %d shards", c.reg, len(c.h.Shards))
	case c.metas != len(c.h.Shards):
		return badSnapshot("%d of %d shards have a meta key", c.metas, len(c.h.Shards))
	}
	return nil
}

// tableBuilder writes the sstables of an Ingest. Each table holds a range
// deletion of its own part of every span it covers, so the tables never
// overlap and together clear every span. An sstable's range deletion does not
// delete the points of its own table (they share the sequence number Ingest
// assigns), only older data.
//
// The shards of the Raft groups interleave in the key space (shard s is in
// group 1+s%N), so a table that covered all of a group's shards would overlap
// the other groups' data: Pebble would ingest it above them and then compact
// the lot, rewriting every group's data. So a span with more than bundle bytes
// gets tables of its own, cut at about limit bytes, which go straight to the
// bottom level of a store that has no other data there. Smaller spans of one
// kind share tables of about bundle bytes, to keep the number of files down
// when a group has many small shards. Whether a span is small is known once
// bundle bytes of it have arrived, so up to that much of a span is held in
// memory.
type tableBuilder struct {
	fs     vfs.FS
	dir    string
	wo     sstable.WriterOptions
	limit  uint64
	bundle uint64

	w     *sstable.Writer
	paths []string
	// own says the current span outgrew bundle: it is written to tables of
	// its own, and from is where the current table's part of it starts when
	// a cut split it (nil: at the span's start).
	own  bool
	from []byte
	// pend holds the current span's entries (key length, key, value length,
	// value) while it may still be small; pendBytes counts their keys and
	// values.
	pend      []byte
	pendBytes uint64
	// sharedKind is the kind of the spans in the current shared table.
	sharedKind spanKind
}

// prepare creates the scratch directory and removes what an earlier attempt
// left there.
func (b *tableBuilder) prepare() error {
	if err := b.fs.MkdirAll(b.dir, 0o755); err != nil {
		return fmt.Errorf("shardstore: ingest dir: %w", err)
	}
	names, err := b.fs.List(b.dir)
	if err != nil {
		return fmt.Errorf("shardstore: ingest dir: %w", err)
	}
	for _, n := range names {
		if err := b.fs.RemoveAll(b.fs.PathJoin(b.dir, n)); err != nil {
			return fmt.Errorf("shardstore: ingest dir: %w", err)
		}
	}
	return nil
}

func (b *tableBuilder) open() error {
	path := b.fs.PathJoin(b.dir, fmt.Sprintf("%06d.sst", len(b.paths)))
	f, err := b.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("shardstore: create ingest table: %w", err)
	}
	b.paths = append(b.paths, path)
	b.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), b.wo)
	return nil
}

// add writes one entry of span sp: held while sp may be small, into sp's own
// tables once it is not.
func (b *tableBuilder) add(sp *groupSpan, k, v []byte) error {
	if b.own {
		return b.put(sp, k, v)
	}
	b.pend = binary.AppendUvarint(b.pend, uint64(len(k)))
	b.pend = append(b.pend, k...)
	b.pend = binary.AppendUvarint(b.pend, uint64(len(v)))
	b.pend = append(b.pend, v...)
	b.pendBytes += uint64(len(k) + len(v))
	if b.pendBytes < b.bundle {
		return nil
	}
	// sp is large: the shared table (complete earlier spans) ends here.
	if b.w != nil {
		if err := b.close(); err != nil {
			return err
		}
	}
	b.own = true
	return b.flushPending(func(k, v []byte) error { return b.put(sp, k, v) })
}

// put writes an entry of a span that has tables of its own, cutting the table
// first when it is full.
func (b *tableBuilder) put(sp *groupSpan, k, v []byte) error {
	if b.w != nil && b.w.Raw().EstimatedSize() >= b.limit {
		// This table's part of the span ends at k; the next one's starts there.
		if err := b.rangeDel(sp, b.partStart(sp), k); err != nil {
			return err
		}
		if err := b.close(); err != nil {
			return err
		}
		b.from = append(b.from[:0:0], k...)
	}
	if b.w == nil {
		if err := b.open(); err != nil {
			return err
		}
	}
	return b.w.Set(k, v)
}

// flushPending passes the held entries to put, in order, and forgets them.
func (b *tableBuilder) flushPending(put func(k, v []byte) error) error {
	for p := b.pend; len(p) > 0; {
		kl, n := binary.Uvarint(p)
		k := p[n : n+int(kl)]
		p = p[n+int(kl):]
		vl, n := binary.Uvarint(p)
		v := p[n : n+int(vl)]
		p = p[n+int(vl):]
		if err := put(k, v); err != nil {
			return err
		}
	}
	b.pend, b.pendBytes = b.pend[:0], 0
	return nil
}

// partStart is where the current table's part of sp starts.
func (b *tableBuilder) partStart(sp *groupSpan) []byte {
	if b.from != nil {
		return b.from
	}
	return sp.Start
}

// endSpan finishes span sp: the range deletion of the last part of a large
// span, which closes its table; a small span goes into the shared table with
// its range deletion.
func (b *tableBuilder) endSpan(sp *groupSpan) error {
	if b.own {
		start := b.partStart(sp)
		b.own, b.from = false, nil
		if b.w == nil {
			if err := b.open(); err != nil {
				return err
			}
		}
		if err := b.rangeDel(sp, start, sp.End); err != nil {
			return err
		}
		return b.close()
	}
	if b.w != nil && (b.sharedKind != sp.kind || b.w.Raw().EstimatedSize()+b.pendBytes >= b.bundle) {
		if err := b.close(); err != nil {
			return err
		}
	}
	if b.w == nil {
		if err := b.open(); err != nil {
			return err
		}
		b.sharedKind = sp.kind
	}
	if err := b.flushPending(b.w.Set); err != nil {
		return err
	}
	return b.rangeDel(sp, sp.Start, sp.End)
}

// rangeDel writes the range deletion [start, end) of span sp into the current
// table, unless the range is empty (a cut at a span's first key) or the store
// holds nothing in sp (a table without range deletions in the bottom level is
// never rewritten just to drop them).
func (b *tableBuilder) rangeDel(sp *groupSpan, start, end []byte) error {
	if !sp.occupied || bytes.Compare(start, end) >= 0 {
		return nil
	}
	return b.w.DeleteRange(start, end)
}

func (b *tableBuilder) close() error {
	w := b.w
	b.w = nil
	if err := w.Close(); err != nil { // syncs the file
		return fmt.Errorf("shardstore: write ingest table: %w", err)
	}
	return nil
}

func (b *tableBuilder) finish() error {
	if b.w == nil {
		return nil
	}
	return b.close()
}

// abort closes and removes the tables of a failed Ingest.
func (b *tableBuilder) abort() {
	if b.w != nil {
		_ = b.w.Close()
		b.w = nil
	}
	for _, p := range b.paths {
		_ = b.fs.Remove(p)
	}
}

// reloadShards re-reads shards whose keys an Ingest replaced: their counters
// from the meta key (a shard without one is gone), fresh key caches (a stale
// entry, or a stale cacheComplete, would leave replaced records live), their
// group; and wakes their Wait channels.
func (s *Store) reloadShards(group uint32, ids []ShardID) error {
	type loaded struct {
		id    ShardID
		st    State
		found bool
		// index holds the cache of a cache-only shard: rebuilt from its
		// records, or empty with cacheOnly cleared if the index had to be
		// written (loadCacheOnly).
		index *shard
	}
	metas := make([]loaded, 0, len(ids))
	var firstErr error
	for _, id := range ids {
		v, closer, err := s.db.Get(metaKey(id))
		if errors.Is(err, pebble.ErrNotFound) {
			metas = append(metas, loaded{id: id})
			continue
		}
		if err == nil {
			var st State
			var cacheOnly bool
			st, cacheOnly, err = decodeMeta(v)
			closer.Close()
			if err == nil && cacheOnly {
				// Outside the locks: a scan of the shard's records. It
				// is charged to the key caches before the shard's old
				// cache is released below.
				index := &shard{id: id, st: st, cacheOnly: true}
				if err = s.loadCacheOnly(index); err == nil {
					metas = append(metas, loaded{id: id, st: st, found: true, index: index})
					continue
				}
			} else if err == nil {
				metas = append(metas, loaded{id: id, st: st, found: true})
				continue
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("shardstore: reload shard %d: %w", id, err)
		}
	}
	var wake []chan struct{}
	s.mu.Lock()
	for _, m := range metas {
		sh := s.shards[m.id]
		if !m.found {
			if sh == nil {
				continue
			}
			delete(s.shards, m.id)
		} else if sh == nil {
			sh = &shard{id: m.id}
			s.shards[m.id] = sh
		}
		sh.mu.Lock()
		s.dropCache(sh)
		sh.hint.reset()
		if m.found {
			sh.st = m.st
			sh.cache = newKeyTable(0)
			sh.cacheComplete = m.st.LiveKeys+m.st.Tombstones == 0
			// A drain of the replaced keys ends with them.
			sh.cacheOnly, sh.draining, sh.drain, sh.drainSort = false, false, nil, nil
			if x := m.index; x != nil {
				sh.cache, sh.cacheBytes, sh.cacheComplete, sh.cacheOnly = x.cache, x.cacheBytes, x.cacheComplete, x.cacheOnly
			}
			sh.group, sh.grouped = group, true
		}
		if sh.wait != nil {
			wake = append(wake, sh.wait)
			sh.wait = nil
		}
		sh.mu.Unlock()
	}
	s.mu.Unlock()
	for _, c := range wake {
		close(c)
	}
	s.wakeFilterBuilder()
	return firstErr
}
