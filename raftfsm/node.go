package raftfsm

// CONTRACT STUB: the signatures below are the agreed API of the Raft layer. The
// raftfsm implementer replaces the bodies (and may split this file); the broker,
// compaction and cmd packages code against these signatures.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// Config configures a Node. Only cmd/ fills it from flags.
type Config struct {
	// NodeID is this node's id (the Kafka broker id).
	NodeID int32
	// Dir holds Raft's snapshot metadata (the logical snapshots are tiny).
	Dir string
	// Store is the node's shard store; its Pebble DB also holds the Raft logs.
	Store *shardstore.Store
	// DataGroups is the number of Raft groups in the pool that carries partitions.
	// Cluster metadata has a group of its own beside them.
	DataGroups int
	// BrokerTopicDefaults are broker-level topic config defaults (for example
	// cleanup.policy from --default-cleanup-policy), applied under each topic's
	// overrides.
	BrokerTopicDefaults map[string]string
	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and CommitTimeout are
	// passed to hashicorp/raft.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many log entries trigger a (logical) snapshot.
	SnapshotThreshold uint64
	// Now is the clock stamped on proposed commands; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives Raft metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a single-node configuration.
func DefaultConfig() Config { panic("unimplemented") }

// Validate checks the configuration, naming the first bad field.
func (c Config) Validate() error { panic("unimplemented") }

// TopicInfo is a topic as cluster metadata knows it. Values returned by Node are
// copies owned by the caller.
type TopicInfo struct {
	Name string
	// ID is the Kafka topic id (a random UUID, never zero).
	ID         [16]byte
	Partitions []PartitionInfo // index = partition number
	// Overrides are the topic's own configs, as set by CreateTopics or
	// IncrementalAlterConfigs; Config is them resolved over the defaults.
	Overrides map[string]string
	Config    topicconfig.Config
}

// PartitionInfo places one partition.
type PartitionInfo struct {
	Partition int32
	Shard     shardstore.ShardID
	// Group is the Raft group that carries the shard.
	Group uint32
}

// Errors returned by Node; the broker maps them to Kafka codes in broker/errors.go.
var (
	ErrUnknownTopic      = errors.New("raftfsm: unknown topic")
	ErrUnknownPartition  = errors.New("raftfsm: unknown partition")
	ErrTopicExists       = errors.New("raftfsm: topic exists")
	ErrInvalidTopic      = errors.New("raftfsm: invalid topic name")
	ErrInvalidPartitions = errors.New("raftfsm: invalid partition count")
	// ErrNotLeader: this node does not lead the group; the client should refresh
	// metadata and retry.
	ErrNotLeader = errors.New("raftfsm: not the leader")
	// ErrNotReady: the group has no leader yet or is still replaying its log.
	ErrNotReady = errors.New("raftfsm: not ready")
	// ErrClosed: the node is shutting down.
	ErrClosed = errors.New("raftfsm: closed")
)

// Node runs this node's Raft groups (one for cluster metadata, a pool for
// partitions) over one shard store.
type Node struct{}

// Open starts the node's Raft groups, bootstrapping a one-voter cluster on first
// start. It returns before the groups are ready; see WaitReady.
func Open(cfg Config) (*Node, error) { panic("unimplemented") }

// WaitReady blocks until every group has a leader and has applied its whole log.
func (n *Node) WaitReady(ctx context.Context) error { panic("unimplemented") }

// Ready reports whether WaitReady would return at once.
func (n *Node) Ready() bool { panic("unimplemented") }

// Close hands off leadership where it can, shuts every group down and waits for
// them. It does not close the Store. Idempotent.
func (n *Node) Close() error { panic("unimplemented") }

// NodeID is this node's id.
func (n *Node) NodeID() int32 { panic("unimplemented") }

// ClusterID is the cluster's id as Kafka shows it (22 characters of URL-safe
// base64 of a random UUID), chosen when the cluster is bootstrapped and kept in
// cluster metadata.
func (n *Node) ClusterID() string { panic("unimplemented") }

// Topics lists every topic, sorted by name.
func (n *Node) Topics() []TopicInfo { panic("unimplemented") }

// Topic returns one topic by name.
func (n *Node) Topic(name string) (TopicInfo, bool) { panic("unimplemented") }

// TopicByID returns one topic by id.
func (n *Node) TopicByID(id [16]byte) (TopicInfo, bool) { panic("unimplemented") }

// CreateTopic creates a topic and its shards and returns once both are applied.
// Errors: ErrTopicExists, ErrInvalidTopic, ErrInvalidPartitions (count < 1 or too
// many), topicconfig.ErrUnknown / ErrInvalid. validateOnly checks without creating.
func (n *Node) CreateTopic(ctx context.Context, name string, partitions int32, overrides map[string]string, validateOnly bool) (TopicInfo, error) {
	panic("unimplemented")
}

// DeleteTopic removes a topic and its shards (ErrUnknownTopic).
func (n *Node) DeleteTopic(ctx context.Context, name string) error { panic("unimplemented") }

// CreatePartitions grows a topic to count partitions (ErrInvalidPartitions when
// count is not larger than the current count).
func (n *Node) CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error {
	panic("unimplemented")
}

// SetTopicConfig replaces a topic's overrides with overrides (validated first).
func (n *Node) SetTopicConfig(ctx context.Context, name string, overrides map[string]string, validateOnly bool) error {
	panic("unimplemented")
}

// Produce appends one batch to a partition through its Raft group and returns the
// result once the entry is committed and applied. Errors: ErrUnknownTopic,
// ErrUnknownPartition, ErrNotLeader, ErrNotReady, ErrClosed, ctx errors, and the
// shardstore append errors (ErrKeyRequired, ErrOutOfOrderSequence, ...).
func (n *Node) Produce(ctx context.Context, topic string, partition int32, p shardstore.Producer, recs []shardstore.Record) (shardstore.AppendResult, error) {
	panic("unimplemented")
}

// InitProducerID allocates a fresh producer id (epoch 0) for an idempotent
// producer. Ids are unique across restarts.
func (n *Node) InitProducerID(ctx context.Context) (id int64, epoch int16, err error) {
	panic("unimplemented")
}

// LeaderEpoch is the Kafka leader epoch of a group's partitions: its Raft term.
func (n *Node) LeaderEpoch(group uint32) int32 { panic("unimplemented") }

// IsLeader reports whether this node leads the group.
func (n *Node) IsLeader(group uint32) bool { panic("unimplemented") }

// ExpireTombstones, ExpireSuperseded and DeleteRecordsBefore propose the matching
// shardstore.Batch operation for a partition through its Raft group, so every
// replica applies it at the same log position. The compaction loop calls them.
func (n *Node) ExpireTombstones(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	panic("unimplemented")
}

// ExpireSuperseded: see ExpireTombstones.
func (n *Node) ExpireSuperseded(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	panic("unimplemented")
}

// DeleteRecordsBefore: see ExpireTombstones.
func (n *Node) DeleteRecordsBefore(ctx context.Context, topic string, partition int32, offset int64) error {
	panic("unimplemented")
}
