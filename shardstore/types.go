package shardstore

import "errors"

// ShardID names one topic partition's shard. Cluster metadata assigns it when the
// partition is created and never reuses it, so a deleted and re-created topic gets
// fresh shards.
type ShardID uint64

// Policy is a shard's cleanup policy, from the topic's cleanup.policy.
type Policy uint8

const (
	// PolicyCompact keeps one live record per key: writing a key replaces its
	// previous record at once. Keyless records are refused.
	PolicyCompact Policy = iota
	// PolicyDelete keeps every record, keyed or not, until retention removes it.
	PolicyDelete
)

func (p Policy) String() string {
	switch p {
	case PolicyCompact:
		return "compact"
	case PolicyDelete:
		return "delete"
	}
	return "unknown"
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record of a shard.
//
// Records returned by the store are owned by the caller; the store keeps no
// reference to them. Records passed to Append are not retained after it returns.
type Record struct {
	// Offset is assigned by the shard on Append (the caller's value is ignored).
	// Offsets are dense and monotonic; a record keeps its offset for life.
	Offset int64
	// Timestamp is the record's create time in milliseconds since the epoch, as
	// the producer set it.
	Timestamp int64
	// Key is nil for a keyless record (allowed only under PolicyDelete).
	Key []byte
	// Value is nil for a tombstone.
	Value   []byte
	Headers []Header
	// Marker is set on a transaction marker (a control record: Key, Value
	// and Headers are nil), written by EndTxn.
	Marker *Marker
	// Codec is the compression of the producer's batch that carried the
	// record. The store keeps records uncompressed and Codec beside each,
	// so that a fetch can answer with the codec the producer chose, as
	// Kafka's compression.type=producer does.
	Codec Codec
}

// Codec is a Kafka compression codec, numbered as a record batch's
// attributes number them.
type Codec uint8

// The codecs. MaxCodec is the largest a record can carry.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLz4    Codec = 3
	CodecZstd   Codec = 4
	MaxCodec          = CodecZstd
)

// Marker ends a producer's transaction in a shard (docs/ARCHITECTURE.md
// rule 7): it commits or aborts the records the producer staged there.
type Marker struct {
	ProducerID    int64
	ProducerEpoch int16
	Commit        bool
	// CoordinatorEpoch is the transaction coordinator's epoch, kept for
	// the control record readers see.
	CoordinatorEpoch int32
}

// Producer identifies the producer of an appended batch for Kafka's idempotence
// rules (docs/ARCHITECTURE.md rule 8). ID -1 means a producer that is not idempotent; its
// batches are never deduplicated.
type Producer struct {
	ID            int64
	Epoch         int16
	BaseSequence  int32
	Transactional bool
}

// NoProducer is the Producer of a batch from a producer that is not idempotent.
var NoProducer = Producer{ID: -1, Epoch: -1, BaseSequence: -1}

// AppendOptions are the topic settings that govern one Append. They come from the
// topic's configuration at the time the Raft command is applied, so every replica
// applies the same ones.
type AppendOptions struct {
	Policy Policy
	// AppendTimeMs is the leader's wall clock when it proposed the command. It
	// dates tombstones (delete.retention.ms) and superseded records
	// (min.compaction.lag.ms); record timestamps are the producer's.
	AppendTimeMs int64
	// MinCompactionLagMs > 0 keeps a superseded record readable until it is that
	// old; ExpireSuperseded removes it later. 0 replaces at once.
	MinCompactionLagMs int64
}

// AppendResult is what Append reports for one batch.
type AppendResult struct {
	// BaseOffset is the offset of the batch's first record. For a duplicate
	// (a retried idempotent batch) it is the offset the batch got the first time.
	BaseOffset     int64
	LogStartOffset int64
	Duplicate      bool
}

// State is a snapshot of a shard's counters.
type State struct {
	// HighWatermark is the offset the next appended record will get.
	HighWatermark int64
	// LogStartOffset moves only with DeleteRecordsBefore (docs/ARCHITECTURE.md rule 6).
	LogStartOffset int64
	// LiveKeys counts keys whose live record is not a tombstone.
	LiveKeys int64
	// LiveRecords counts records readable in the log (live keys, tombstones still
	// kept, keyless records, superseded records held by min.compaction.lag.ms).
	LiveRecords int64
	// LiveBytes is the encoded size of the readable records.
	LiveBytes int64
	// Tombstones counts tombstones still kept.
	Tombstones int64
	// MaxTimestamp and MaxTimestampOffset name the record with the largest
	// timestamp ever appended (-1, -1 for an empty shard).
	MaxTimestamp       int64
	MaxTimestampOffset int64
}

// Sentinel errors. Append errors are deterministic: every replica returns the same
// one for the same command, and nothing of the failed batch is written.
var (
	// ErrUnknownShard: no shard with that id (never created, or deleted).
	ErrUnknownShard = errors.New("shardstore: unknown shard")
	// ErrShardExists: CreateShard of an id that is already there.
	ErrShardExists = errors.New("shardstore: shard exists")
	// ErrKeyRequired: a keyless record appended to a compacted shard.
	ErrKeyRequired = errors.New("shardstore: compacted topics require a record key")
	// ErrOutOfOrderSequence: an idempotent batch whose first sequence leaves a gap.
	ErrOutOfOrderSequence = errors.New("shardstore: out of order sequence number")
	// ErrInvalidProducerEpoch: a batch from an older epoch of a known producer.
	ErrInvalidProducerEpoch = errors.New("shardstore: invalid producer epoch")
	// ErrInvalidTxnState: a batch that is not transactional from a producer
	// with an open transaction in the shard.
	ErrInvalidTxnState = errors.New("shardstore: producer has an open transaction")
	// ErrEmptyBatch: Append with no records.
	ErrEmptyBatch = errors.New("shardstore: empty batch")
	// ErrOffsetOutOfRange: DeleteRecordsBefore past the high watermark.
	ErrOffsetOutOfRange = errors.New("shardstore: offset out of range")
)
