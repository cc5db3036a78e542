package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
)

// Key layout of the Raft log and stable store inside the node's Raft log DB
// (shardstore.Store.LogDB, logdb.go):
//
//	'r' | group (4 bytes BE) | 'l' | index (8 bytes BE)  -> encoded raft.Log
//	'r' | group (4 bytes BE) | 's' | stable key          -> stable value
//	'r' | group (4 bytes BE) | 'p'                       -> last snapshot marker
//
// Big-endian indexes keep a group's log in index order, so the first and last
// entries are one seek away and truncation is one range delete.
const (
	prefixRaft     = 'r'
	raftKindLog    = 'l'
	raftKindStable = 's'
	raftKindSnap   = 'p'

	// logValueVersion is the first byte of a stored log entry whose Data is
	// stored as is; logValueS2 of one whose Data is S2-compressed
	// (klauspost/compress/s2 block format). StoreLogs compresses Data of at
	// least minCompressLogBytes when that saves an eighth of it; decodeLog
	// reads both.
	logValueVersion = 1
	logValueS2      = 2

	minCompressLogBytes = 512
	// maxLogExpansion and anyRatioLogBytes bound a compressed entry's decoded
	// size: at most anyRatioLogBytes, or at most maxLogExpansion times its
	// compressed size. StoreLogs stores Data beyond both as is, and
	// decodeLog refuses an entry that claims more, so a corrupt length
	// cannot make it allocate more than the larger of the two.
	//
	// Up to anyRatioLogBytes any ratio goes: a produce command whose
	// records repeat one value compresses past 64:1 (1 KiB values, make
	// bench-compare), and stored as is it wrote every byte to the WAL
	// (writepath: 1.00 WAL byte per record byte, against 0.07 with 100 B
	// values). Builds from before this rule (64:1 for every size) refuse
	// such an entry, so a node cannot go back to one while its log holds
	// one.
	maxLogExpansion  = 64
	anyRatioLogBytes = 16 << 20
)

// errNotFound is the error hashicorp/raft expects from a StableStore for a
// missing key: it compares err.Error() with "not found" (as raft-boltdb returns).
var errNotFound = errors.New("not found")

// ErrCorruptLog is wrapped by errors about log entries that do not decode.
var ErrCorruptLog = errors.New("raftfsm: corrupt raft log entry")

func raftGroupPrefix(group uint32, kind byte) []byte {
	k := make([]byte, 6, 14)
	k[0] = prefixRaft
	binary.BigEndian.PutUint32(k[1:5], group)
	k[5] = kind
	return k
}

func logKey(group uint32, index uint64) []byte {
	return binary.BigEndian.AppendUint64(raftGroupPrefix(group, raftKindLog), index)
}

func stableKey(group uint32, key []byte) []byte {
	return append(raftGroupPrefix(group, raftKindStable), key...)
}

// Log cache bounds, per group. Raft reads an entry back soon after storing it:
// the leader once per follower to replicate it, a follower to apply it once
// committed. The cache holds the newest entries so those reads cost a copy of
// a struct instead of a Pebble Get and a decode; it only has to span what
// replication and apply have not caught up with (an AppendEntries carries at
// most maxAppendEntries entries), and older reads (a lagging follower,
// replay at start) go to Pebble.
const (
	logCacheEntries = 512
	logCacheBytes   = 4 << 20
)

// logCacheIdleStores is how many StoreLogs calls in a row without a GetLog
// of a recent entry make a log cache stop caching: it drops what it holds
// and caches again after the next such GetLog. A group with no other server
// (voter or non-voter) never reads its entries back: its leader applies them
// from what Raft already holds (a single node's groups read none in a load of
// 1M records), so without this each of a single node's groups kept up to
// 4 MiB of entries nobody read (22 MB of a node's heap after a load, in a
// heap profile). Replication reads an entry soon after it is stored, on a
// leader for each follower and on a follower to apply it.
const logCacheIdleStores = 64

// LogStore is one Raft group's raft.LogStore and raft.StableStore inside the
// node's Raft log DB. StoreLogs, DeleteRange and Set commit with pebble.Sync, so
// everything Raft was told is stored survives a crash. Entries' Data is stored
// S2-compressed when that pays (logValueS2): a produce command carries the
// records decoded, and their keys and values are what Pebble's WAL and
// memtable would otherwise hold twice at full size, once here and once
// applied. The first and last index are cached, and so are the newest entries
// stored (logCacheEntries, at most logCacheBytes of data), which GetLog serves
// from memory while it reads them (logCacheIdleStores). LogStore is safe for
// concurrent use.
type LogStore struct {
	db    *pebble.DB
	group uint32

	mu          sync.Mutex
	first, last uint64
	cache       logCache

	// compMu guards comp, StoreLogs' compression scratch, kept between calls
	// so that a steady stream of large entries allocates it once (the
	// produce path's memory accounting, broker/batch_memory.go, counts on
	// that); one larger than maxKeptCompBuf is dropped after use.
	compMu sync.Mutex
	comp   []byte
}

// maxKeptCompBuf is the largest compression scratch a LogStore keeps.
const maxKeptCompBuf = 16 << 20

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// NewLogStore opens group's log in db and loads its first and last index.
func NewLogStore(db *pebble.DB, group uint32) (*LogStore, error) {
	return newLogStore(db, group, logCacheEntries, logCacheBytes)
}

// newLogStore is NewLogStore with the cache's bounds (0 entries: no cache).
func newLogStore(db *pebble.DB, group uint32, cacheEntries, cacheBytes int) (*LogStore, error) {
	s := &LogStore{db: db, group: group, cache: logCache{maxEntries: cacheEntries, maxBytes: cacheBytes}}
	if err := s.loadBounds(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadBounds reads the first and last index from Pebble; s.mu held or unshared.
func (s *LogStore) loadBounds() error {
	lo := raftGroupPrefix(s.group, raftKindLog)
	hi := raftGroupPrefix(s.group, raftKindLog+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	s.first, s.last = 0, 0
	if it.First() {
		s.first = binary.BigEndian.Uint64(it.Key()[len(lo):])
		if it.Last() {
			s.last = binary.BigEndian.Uint64(it.Key()[len(lo):])
		}
	}
	return it.Error()
}

// FirstIndex returns the first index written, 0 for an empty log.
func (s *LogStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex returns the last index written, 0 for an empty log.
func (s *LogStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog reads the entry at index into log (raft.ErrLogNotFound when absent).
// log.Data and log.Extensions may be shared with the cache and other readers:
// the caller must not modify them.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	// The copy is made under the lock: cached points into the cache's slice,
	// which add and remove shift, so after Unlock it may hold another entry.
	s.mu.Lock()
	cached := s.cache.get(index)
	if cached != nil {
		*log = *cached
	}
	if index+uint64(s.cache.maxEntries) > s.last {
		// A read of what the cache holds or would hold: keep caching
		// (logCacheIdleStores). hashicorp/raft's metrics read the oldest
		// entry now and then, which does not count.
		s.cache.idle = 0
	}
	s.mu.Unlock()
	if cached != nil {
		return nil
	}
	v, closer, err := s.db.Get(logKey(s.group, index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := decodeLog(v, log, true); err != nil {
		return fmt.Errorf("group %d index %d: %w", s.group, index, err)
	}
	log.Index = index
	return nil
}

// StoreLog stores one entry.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one synced Pebble batch.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	s.compMu.Lock()
	defer s.compMu.Unlock()
	comp := s.comp
	defer func() {
		if cap(comp) <= maxKeptCompBuf {
			s.comp = comp[:0]
		} else {
			s.comp = nil
		}
	}()
	for _, l := range logs {
		key := logKey(s.group, l.Index)
		comp = compressLogData(comp[:0], l.Data)
		op := b.SetDeferred(len(key), logValueSize(l, comp))
		copy(op.Key, key)
		encodeLog(op.Value[:0], l, comp)
		if err := op.Finish(); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache.add(logs)
	for _, l := range logs {
		if s.first == 0 || l.Index < s.first {
			s.first = l.Index
		}
		if l.Index > s.last {
			s.last = l.Index
		}
	}
	return nil
}

// DeleteRange deletes entries min..max inclusive with one range delete.
func (s *LogStore) DeleteRange(min, max uint64) error {
	if max < min {
		return nil
	}
	end := logKey(s.group, max+1)
	if max == ^uint64(0) {
		end = raftGroupPrefix(s.group, raftKindLog+1)
	}
	s.mu.Lock()
	// Dropped before the delete, so no reader sees from the cache an entry
	// that Pebble no longer has; a failed delete only costs reads from Pebble.
	s.cache.remove(min, max)
	s.mu.Unlock()
	if err := s.db.DeleteRange(logKey(s.group, min), end, pebble.Sync); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadBounds()
}

// Set stores a stable value (synced).
func (s *LogStore) Set(key, val []byte) error {
	return s.db.Set(stableKey(s.group, key), val, pebble.Sync)
}

// Get returns a stable value (a copy), or an error "not found" when missing, as
// hashicorp/raft expects.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(s.group, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// SetUint64 stores a stable uint64.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns a stable uint64, or 0 and an error "not found" when missing.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: stable value %q has %d bytes", ErrCorruptLog, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// logCache holds copies of the newest log entries with consecutive indexes,
// oldest first, within maxEntries and maxBytes (of Data and Extensions), while
// something reads them (logCacheIdleStores). The copies share Data and
// Extensions with the raft.Log values StoreLogs was given, which
// hashicorp/raft does not modify once stored. Not safe for concurrent use:
// LogStore.mu guards it.
type logCache struct {
	maxEntries, maxBytes int
	// idle counts add calls since GetLog last read a recent entry
	// (logCacheIdleStores).
	idle int

	logs  []raft.Log // logs[i].Index == logs[0].Index + i
	bytes int
}

func logDataBytes(l *raft.Log) int { return len(l.Data) + len(l.Extensions) }

// get returns the cached entry at index, or nil.
func (c *logCache) get(index uint64) *raft.Log {
	if len(c.logs) == 0 || index < c.logs[0].Index {
		return nil
	}
	i := index - c.logs[0].Index
	if i >= uint64(len(c.logs)) {
		return nil
	}
	return &c.logs[i]
}

// add caches logs, just stored. Entries that do not follow the cached ones
// (after a truncation, or a gap) replace the whole cache; then the oldest are
// dropped until the bounds hold.
func (c *logCache) add(logs []*raft.Log) {
	if c.maxEntries <= 0 {
		return
	}
	if c.idle++; c.idle > logCacheIdleStores {
		c.reset()
		return
	}
	for _, l := range logs {
		if n := len(c.logs); n > 0 && l.Index != c.logs[n-1].Index+1 {
			c.reset()
		}
		c.logs = append(c.logs, *l)
		c.bytes += logDataBytes(l)
	}
	drop := 0
	for drop < len(c.logs) && (len(c.logs)-drop > c.maxEntries || c.bytes > c.maxBytes) {
		c.bytes -= logDataBytes(&c.logs[drop])
		drop++
	}
	if drop > 0 {
		// Copy the rest down, so the slice does not creep through memory
		// and dropped entries' data can be collected.
		n := copy(c.logs, c.logs[drop:])
		clear(c.logs[n:])
		c.logs = c.logs[:n]
	}
}

// remove drops the cached entries in min..max.
func (c *logCache) remove(min, max uint64) {
	if len(c.logs) == 0 {
		return
	}
	lo, hi := c.logs[0].Index, c.logs[len(c.logs)-1].Index
	switch {
	case max < lo || min > hi:
	case min <= lo && max >= hi:
		c.reset()
	case min <= lo: // the front: a log compaction
		drop := int(max - lo + 1)
		for i := range drop {
			c.bytes -= logDataBytes(&c.logs[i])
		}
		n := copy(c.logs, c.logs[drop:])
		clear(c.logs[n:])
		c.logs = c.logs[:n]
	case max >= hi: // the back: a follower dropping conflicting entries
		keep := int(min - lo)
		for i := keep; i < len(c.logs); i++ {
			c.bytes -= logDataBytes(&c.logs[i])
		}
		clear(c.logs[keep:])
		c.logs = c.logs[:keep]
	default: // a hole in the middle: never done by Raft
		c.reset()
	}
}

func (c *logCache) reset() {
	clear(c.logs)
	c.logs = c.logs[:0]
	c.bytes = 0
}

// Stored log value: version | type | uvarint term | varint appendedAt (unix ns,
// 0 for zero) | uvarint len | data | uvarint len | extensions. The index is the
// key. With version logValueS2, data is l.Data S2-compressed.

// compressLogData appends data S2-compressed to dst when data has at least
// minCompressLogBytes and compresses to at most 7/8 of its size, and
// decodeLog will take it back (logExpansionOK); otherwise it returns dst[:0]
// and the entry is stored as is. dst's capacity is reused.
func compressLogData(dst, data []byte) []byte {
	if len(data) < minCompressLogBytes {
		return dst[:0]
	}
	n := s2.MaxEncodedLen(len(data))
	if n < 0 {
		return dst[:0]
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	c := s2.Encode(dst[:cap(dst)], data)
	if len(c) > len(data)-len(data)/8 || !logExpansionOK(len(c), len(data)) {
		return c[:0]
	}
	return c
}

// logExpansionOK: compressed bytes of S2 may decode to decoded bytes (see
// maxLogExpansion).
func logExpansionOK(compressed, decoded int) bool {
	return decoded <= anyRatioLogBytes || decoded/maxLogExpansion <= compressed
}

// logValueSize is the size of encodeLog(nil, l, comp).
func logValueSize(l *raft.Log, comp []byte) int {
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	data := len(l.Data)
	if len(comp) > 0 {
		data = len(comp)
	}
	return 2 + uvarintLen(l.Term) + uvarintLen(uint64(at<<1^at>>63)) +
		uvarintLen(uint64(data)) + data +
		uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// encodeLog appends l's stored value to dst; comp, when not empty, is l.Data
// compressed by compressLogData and is stored in its place.
func encodeLog(dst []byte, l *raft.Log, comp []byte) []byte {
	version, data := byte(logValueVersion), l.Data
	if len(comp) > 0 {
		version, data = logValueS2, comp
	}
	dst = append(dst, version, byte(l.Type))
	dst = binary.AppendUvarint(dst, l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, at)
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	dst = append(dst, data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	return dst
}

// decodeLog fills l from v; with copyBytes Data and Extensions are copies,
// otherwise they alias v (a compressed Data is always a new slice).
func decodeLog(v []byte, l *raft.Log, copyBytes bool) error {
	if len(v) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrCorruptLog, len(v))
	}
	if v[0] != logValueVersion && v[0] != logValueS2 {
		return fmt.Errorf("%w: version %d", ErrCorruptLog, v[0])
	}
	l.Type = raft.LogType(v[1])
	r := v[2:]
	term, n := binary.Uvarint(r)
	if n <= 0 {
		return fmt.Errorf("%w: term", ErrCorruptLog)
	}
	r = r[n:]
	at, n := binary.Varint(r)
	if n <= 0 {
		return fmt.Errorf("%w: appended at", ErrCorruptLog)
	}
	r = r[n:]
	l.Term = term
	l.AppendedAt = time.Time{}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	compressed := v[0] == logValueS2
	var err error
	if l.Data, r, err = readLogBytes(r, copyBytes && !compressed); err != nil {
		return err
	}
	if compressed {
		if l.Data, err = decompressLogData(l.Data); err != nil {
			return err
		}
	}
	if l.Extensions, _, err = readLogBytes(r, copyBytes); err != nil {
		return err
	}
	return nil
}

// decompressLogData decodes an S2-compressed Data into a new slice.
func decompressLogData(c []byte) ([]byte, error) {
	n, err := s2.DecodedLen(c)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed data: %v", ErrCorruptLog, err)
	}
	if !logExpansionOK(len(c), n) {
		return nil, fmt.Errorf("%w: compressed data of %d bytes claims %d", ErrCorruptLog, len(c), n)
	}
	d, err := s2.Decode(make([]byte, n), c)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed data: %v", ErrCorruptLog, err)
	}
	return d, nil
}

func readLogBytes(r []byte, copyBytes bool) ([]byte, []byte, error) {
	n, k := binary.Uvarint(r)
	if k <= 0 || n > uint64(len(r)-k) {
		return nil, nil, fmt.Errorf("%w: length", ErrCorruptLog)
	}
	r = r[k:]
	if n == 0 {
		return nil, r, nil
	}
	b := r[:n:n]
	if copyBytes {
		b = append([]byte(nil), b...)
	}
	return b, r[n:], nil
}

// groupsWithState lists the groups that have a Raft log or stable state in db,
// ascending: one seek per group.
func groupsWithState(db *pebble.DB) ([]uint32, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRaft}, UpperBound: []byte{prefixRaft + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []uint32
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < 5 {
			ok = it.Next()
			continue
		}
		g := binary.BigEndian.Uint32(k[1:5])
		out = append(out, g)
		if g == ^uint32(0) {
			break
		}
		ok = it.SeekGE(raftGroupPrefix(g+1, 0)[:5])
	}
	return out, it.Error()
}
