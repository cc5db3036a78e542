package shardstore

// CONTRACT STUB: the signatures below are the agreed API of the shard store. The
// shardstore implementer replaces the bodies (and may split this file); other
// packages code against these signatures.

import (
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure Open.
type Options struct {
	// FS is the filesystem; nil means vfs.Default. Tests use vfs.NewMem().
	FS vfs.FS
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// CacheBytes is Pebble's block cache size; 0 means the default (512 MiB).
	CacheBytes int64
	// MemTableBytes is Pebble's memtable size; 0 means the default (64 MiB).
	MemTableBytes uint64
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Store is one node's Pebble database: every shard on the node, and (through DB)
// the Raft logs and cluster metadata kept by raftfsm under their own key prefixes.
//
// Concurrency: reads are safe from any goroutine. Writes go through Batch; batches
// that touch the same shard must not be used concurrently (each shard belongs to
// one Raft group, whose FSM applies its entries on one goroutine).
type Store struct{}

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*Store, error) { panic("unimplemented") }

// DB is the underlying Pebble database, shared with raftfsm (Raft log store and
// metadata keys, under prefixes of raftfsm's own).
func (s *Store) DB() *pebble.DB { panic("unimplemented") }

// Close closes the database. It is idempotent.
func (s *Store) Close() error { panic("unimplemented") }

// Shards lists every shard in id order.
func (s *Store) Shards() []ShardID { panic("unimplemented") }

// State returns a shard's counters (ErrUnknownShard).
func (s *Store) State(id ShardID) (State, error) { panic("unimplemented") }

// Read returns readable records with offset >= from in offset order: at most
// maxRecords, and stopping once maxBytes of encoded records are collected (the
// first record is returned whatever its size, KIP-74). An empty result with
// from < HighWatermark means nothing is readable in [from, HighWatermark).
func (s *Store) Read(id ShardID, from int64, maxBytes, maxRecords int) ([]Record, error) {
	panic("unimplemented")
}

// Lookup returns the live record of key, found through the key index. A tombstone
// is returned as a record with a nil Value; ok is false when the key has no record.
func (s *Store) Lookup(id ShardID, key []byte) (rec Record, ok bool, err error) {
	panic("unimplemented")
}

// OffsetForTime returns the first readable offset whose record timestamp is >= ts,
// with that timestamp; ok is false when there is none.
func (s *Store) OffsetForTime(id ShardID, ts int64) (offset, timestamp int64, ok bool, err error) {
	panic("unimplemented")
}

// RetentionOffset returns the log start offset that retention of a delete-policy
// shard asks for: past every record appended before olderThanMs (when >= 0) and
// past the oldest records until at most maxBytes remain (when maxBytes >= 0).
// It returns the current log start offset when nothing is due.
func (s *Store) RetentionOffset(id ShardID, olderThanMs, maxBytes int64) (int64, error) {
	panic("unimplemented")
}

// Applied returns the last Raft index applied for a group (0 if none).
func (s *Store) Applied(group uint32) (uint64, error) { panic("unimplemented") }

// Wait returns a channel closed by the first Commit after this call that changes
// the shard (an append, a deletion, a log start move, or the shard's removal).
func (s *Store) Wait(id ShardID) <-chan struct{} { panic("unimplemented") }

// Batch collects the writes of one or more Raft entries into one Pebble batch. A
// later operation in a batch sees the effects of earlier ones. Nothing is visible to
// readers until Commit.
type Batch struct{}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch { panic("unimplemented") }

// CreateShard adds an empty shard (ErrShardExists).
func (b *Batch) CreateShard(id ShardID) error { panic("unimplemented") }

// DeleteShard removes a shard and all its keys (ErrUnknownShard).
func (b *Batch) DeleteShard(id ShardID) error { panic("unimplemented") }

// Append assigns the next offsets to recs in order and writes them. Under
// PolicyCompact every key's previous record is removed (or kept until
// MinCompactionLagMs passes), and records that repeat a key inside recs collapse
// to the last one (offsets stay dense: the collapsed records' offsets are simply
// never readable). Idempotent producers follow Kafka's sequence rules; a duplicate
// returns the original base offset with Duplicate set and writes nothing.
func (b *Batch) Append(id ShardID, opts AppendOptions, p Producer, recs []Record) (AppendResult, error) {
	panic("unimplemented")
}

// ExpireTombstones removes tombstones appended before beforeMs (their keys become
// absent) and returns how many it removed.
func (b *Batch) ExpireTombstones(id ShardID, beforeMs int64) (int, error) { panic("unimplemented") }

// ExpireSuperseded removes superseded records held back by min.compaction.lag.ms
// that were superseded before beforeMs, and returns how many it removed.
func (b *Batch) ExpireSuperseded(id ShardID, beforeMs int64) (int, error) { panic("unimplemented") }

// DeleteRecordsBefore moves the log start offset to offset, removing every record
// below it (ErrOffsetOutOfRange past the high watermark; a lower offset than the
// current log start is a no-op).
func (b *Batch) DeleteRecordsBefore(id ShardID, offset int64) error { panic("unimplemented") }

// SetApplied records the last Raft index applied for a group, in this batch.
func (b *Batch) SetApplied(group uint32, index uint64) { panic("unimplemented") }

// Raw is the Pebble batch, for raftfsm's metadata keys (outside shardstore's
// prefix) written atomically with the shards.
func (b *Batch) Raw() *pebble.Batch { panic("unimplemented") }

// Commit writes the batch without fsync (the Raft log is the durable record) and
// wakes Wait channels of the shards it changed. On error nothing is applied.
func (b *Batch) Commit() error { panic("unimplemented") }

// Close releases a batch that was not committed. Safe after Commit.
func (b *Batch) Close() { panic("unimplemented") }
