package shardstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ExportOptions configure Store.Export.
type ExportOptions struct {
	// Extra are key ranges sent with the group besides its shards, registry
	// and applied index: raftfsm's cluster metadata for the metadata group.
	// They must be sorted, disjoint and outside the store's own keys (prefix
	// 's'); the receiver must pass the same ones to Ingest.
	Extra []Span
	// RateBytes limits Read to this many bytes per second on average (bursts
	// of at most a second's worth); 0 means unlimited.
	RateBytes int64
	// Unsized skips the walk that sizes the stream: Size is then -1, and
	// EstimatedBytes says roughly how much the group holds. For a reader
	// that reads to EOF and need not be told the length first.
	Unsized bool
}

// exportChunk is how many bytes Read encodes at a time (more for one large
// entry): memory is bounded by it and the largest entry, not by the group.
const exportChunk = 64 << 10

// Export is one Raft group's state captured by a Pebble snapshot, read as a
// group snapshot stream (format in snapshot.go). Store.Export walks the
// captured keys once to size the stream (unless ExportOptions.Unsized); Read
// walks them to encode it, a chunk at a time, so neither the store nor the
// stream is ever held whole.
//
// Read and Close may be called from any goroutine, but reads are serialized.
// Close releases the Pebble snapshot; Store.Close closes every open Export.
type Export struct {
	s     *Store
	hdr   SnapshotHeader
	spans []groupSpan
	size  int64 // -1: unsized
	est   uint64

	readMu sync.Mutex // serializes Read, pacing included
	pacer  pacer

	mu     sync.Mutex // guards the fields below
	snap   *pebble.Snapshot
	it     *pebble.Iterator
	closed bool
	// si is the span being encoded; inSpan says the iterator is on an entry
	// of it that was already encoded.
	si       int
	inSpan   bool
	started  bool // the header is encoded
	finished bool // the trailer is encoded
	buf      []byte
	pos      int // next unread byte of buf
	crc      uint32
	count    uint64
	written  int64
	err      error
}

// Export captures the state of Raft group group: its applied index, its
// registry, every key of its shards and the extra spans. The stream's length
// is known at once (Size), as InstallSnapshot needs it before the first byte.
// The Export must be closed.
func (s *Store) Export(group uint32, opts ExportOptions) (*Export, error) {
	if err := checkExtraSpans(opts.Extra); err != nil {
		return nil, fmt.Errorf("shardstore: export: %w", err)
	}
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	e := &Export{s: s, snap: s.db.NewSnapshot(), pacer: newPacer(opts.RateBytes)}
	e.hdr.Group = group
	e.hdr.Extra = opts.Extra
	if err := e.capture(opts.Unsized); err != nil {
		e.release()
		return nil, err
	}
	s.mu.Lock()
	s.exports[e] = struct{}{}
	s.mu.Unlock()
	return e, nil
}

// capture reads the applied index and the shard list from the snapshot and
// counts the stream's length, or, unsized, estimates the group's bytes.
func (e *Export) capture(unsized bool) error {
	v, closer, err := e.snap.Get(appliedKey(e.hdr.Group))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	case len(v) != 8:
		closer.Close()
		return fmt.Errorf("shardstore: applied index of group %d: %w", e.hdr.Group, errCorrupt)
	default:
		e.hdr.Applied = binary.BigEndian.Uint64(v)
		closer.Close()
	}
	if e.it, err = e.snap.NewIter(&pebble.IterOptions{LowerBound: groupPrefix(e.hdr.Group), UpperBound: groupEnd(e.hdr.Group)}); err != nil {
		return err
	}
	for ok := e.it.First(); ok; ok = e.it.Next() {
		pk, good := parseKey(e.it.Key())
		if !good || pk.kind != kindGroupShard {
			return fmt.Errorf("shardstore: bad group registry key %x: %w", e.it.Key(), errCorrupt)
		}
		e.hdr.Shards = append(e.hdr.Shards, pk.shard)
	}
	if err := e.it.Error(); err != nil {
		return err
	}
	e.spans = snapshotSpans(&e.hdr)
	if unsized {
		e.size = -1
		for i := range e.spans {
			// Pebble's estimate from table metadata, of the live database
			// rather than the snapshot: a hint, never a length.
			n, err := e.s.db.EstimateDiskUsage(e.spans[i].Start, e.spans[i].End)
			if err != nil {
				return err
			}
			e.est += n
		}
		return nil
	}
	e.size = int64(len(appendSnapshotHeader(nil, &e.hdr))) + 1 + snapshotTrailerLen
	for i := range e.spans {
		e.it.SetBounds(e.spans[i].Start, e.spans[i].End)
		for ok := e.it.First(); ok; ok = e.it.Next() {
			e.size += snapshotEntrySize(len(e.it.Key()), len(e.it.Value()))
		}
		if err := e.it.Error(); err != nil {
			return err
		}
	}
	return nil
}

// Header describes the captured state. The caller must not modify it.
func (e *Export) Header() SnapshotHeader { return e.hdr }

// Applied is the group's applied index in the captured state.
func (e *Export) Applied() uint64 { return e.hdr.Applied }

// Size is the exact length of the stream Read returns; -1 when the Export
// is unsized.
func (e *Export) Size() int64 { return e.size }

// EstimatedBytes is Pebble's estimate of the disk space the group's shards
// take (compressed, so below the stream's length); 0 unless the Export is
// unsized.
func (e *Export) EstimatedBytes() uint64 { return e.est }

// Read reads the stream, pacing itself to ExportOptions.RateBytes. After Close
// or Store.Close it returns ErrClosed.
func (e *Export) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	e.readMu.Lock()
	defer e.readMu.Unlock()
	n, err := e.read(p)
	if n > 0 {
		e.pacer.wait(n)
	}
	return n, err
}

func (e *Export) read(p []byte) (int, error) {
	if err := e.s.acquire(); err != nil {
		return 0, err
	}
	defer e.s.life.RUnlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return 0, ErrClosed
	case e.err != nil:
		return 0, e.err
	}
	if e.pos == len(e.buf) {
		if e.finished {
			return 0, io.EOF
		}
		if err := e.fill(); err != nil {
			e.err = err
			return 0, err
		}
	}
	n := copy(p, e.buf[e.pos:])
	e.pos += n
	return n, nil
}

// fill encodes the next chunk of the stream into buf. e.mu is held.
func (e *Export) fill() error {
	e.buf, e.pos = e.buf[:0], 0
	if !e.started {
		e.buf = appendSnapshotHeader(e.buf, &e.hdr)
		e.started = true
	}
	for len(e.buf) < exportChunk && e.si < len(e.spans) {
		var ok bool
		if !e.inSpan {
			sp := &e.spans[e.si]
			e.it.SetBounds(sp.Start, sp.End)
			ok, e.inSpan = e.it.First(), true
		} else {
			ok = e.it.Next()
		}
		if !ok {
			if err := e.it.Error(); err != nil {
				return err
			}
			e.si, e.inSpan = e.si+1, false
			continue
		}
		e.buf = appendSnapshotEntry(e.buf, e.it.Key(), e.it.Value())
		e.count++
	}
	if e.si == len(e.spans) {
		e.buf = append(e.buf, 0)
		e.buf = binary.BigEndian.AppendUint64(e.buf, e.count)
		e.crc = crc32.Update(e.crc, castagnoli, e.buf)
		e.buf = binary.BigEndian.AppendUint32(e.buf, e.crc)
		e.finished = true
	} else {
		e.crc = crc32.Update(e.crc, castagnoli, e.buf)
	}
	e.written += int64(len(e.buf))
	if e.size >= 0 && (e.written > e.size || e.finished && e.written != e.size) {
		return fmt.Errorf("shardstore: export of group %d wrote %d bytes, sized %d", e.hdr.Group, e.written, e.size)
	}
	return nil
}

// Close releases the snapshot. It is idempotent.
func (e *Export) Close() error {
	e.release()
	e.s.mu.Lock()
	delete(e.s.exports, e)
	e.s.mu.Unlock()
	return nil
}

// release closes the iterator and the snapshot; Store.Close calls it before
// closing the database.
func (e *Export) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	if e.it != nil {
		_ = e.it.Close()
	}
	_ = e.snap.Close()
}

// pacer spreads writes over time at rate bytes per second.
type pacer struct {
	rate  int64
	start time.Time
	sent  int64
	now   func() time.Time
	sleep func(time.Duration)
}

func newPacer(rate int64) pacer {
	return pacer{rate: rate, now: time.Now, sleep: time.Sleep}
}

// wait accounts n more bytes and sleeps until they are due. Credit for idle
// time is capped at one second, so a slow reader does not earn a long burst.
func (p *pacer) wait(n int) {
	if p.rate <= 0 {
		return
	}
	now := p.now()
	if p.sent == 0 {
		p.start = now
	}
	p.sent += int64(n)
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	if lag := now.Sub(due); lag > time.Second {
		p.start = p.start.Add(lag - time.Second)
		return
	}
	if d := due.Sub(now); d > 0 {
		p.sleep(d)
	}
}
