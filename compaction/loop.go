package compaction

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// DefaultInterval is the pause between passes when Config.Interval is 0;
// MinInterval is the shortest other Interval.
const (
	DefaultInterval = 30 * time.Second
	MinInterval     = time.Millisecond
)

// Producer expiry (Kafka's producer.id.expiration.ms and
// producer.id.expiration.check.interval.ms, with Kafka's defaults and bounds:
// at least 1 ms, an int32 of milliseconds).
const (
	DefaultProducerIDExpiration  = 24 * time.Hour
	MinProducerIDExpiration      = time.Millisecond
	MaxProducerIDExpiration      = math.MaxInt32 * time.Millisecond
	DefaultProducerCheckInterval = 10 * time.Minute
)

// Operation names, used as the op label and in logs.
const (
	opExpireTombstones    = "expire_tombstones"
	opExpireSuperseded    = "expire_superseded"
	opExpireTxnMarkers    = "expire_txn_markers"
	opDeleteRecordsBefore = "delete_records_before"
	opExpireProducers     = "expire_producers"
)

// Log attribute keys.
const (
	keyTopic     = "topic"
	keyPartition = "partition"
	keyOp        = "op"
	keyError     = "error"
)

// Config configures a Loop.
type Config struct {
	// Node proposes the cleanup commands and says which groups this node leads.
	Node *raftfsm.Node
	// Store is read to decide what is due.
	Store *shardstore.Store
	// Interval is the pause between passes; 0 means DefaultInterval, else at
	// least MinInterval.
	Interval time.Duration
	// ProducerIDExpiration is how long a producer id's state is kept after its
	// last batch (producer.id.expiration.ms); 0 means
	// DefaultProducerIDExpiration, else MinProducerIDExpiration to
	// MaxProducerIDExpiration.
	ProducerIDExpiration time.Duration
	// ProducerCheckInterval is how often, at most, a pass looks for idle
	// producers (Kafka's producer.id.expiration.check.interval.ms); 0 means
	// DefaultProducerCheckInterval. A shorter ProducerIDExpiration shortens it.
	ProducerCheckInterval time.Duration
	// Now is the clock; nil means time.Now. It must agree with the Node's clock,
	// which dates appended records.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the loop's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Loop runs cleanup passes. Run and RunOnce must not be called concurrently.
type Loop struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// producersChecked is when a pass last looked for idle producers (cfg.Now).
	producersChecked time.Time
}

// New checks cfg and builds a Loop.
func New(cfg Config) (*Loop, error) {
	switch {
	case cfg.Node == nil:
		return nil, errors.New("compaction: Node is required")
	case cfg.Store == nil:
		return nil, errors.New("compaction: Store is required")
	case cfg.Interval != 0 && cfg.Interval < MinInterval:
		return nil, fmt.Errorf("compaction: Interval %s must be 0 (default) or at least %s", cfg.Interval, MinInterval)
	case cfg.ProducerIDExpiration != 0 && (cfg.ProducerIDExpiration < MinProducerIDExpiration || cfg.ProducerIDExpiration > MaxProducerIDExpiration):
		return nil, fmt.Errorf("compaction: ProducerIDExpiration %s must be between %s and %s", cfg.ProducerIDExpiration, MinProducerIDExpiration, MaxProducerIDExpiration)
	case cfg.ProducerCheckInterval < 0:
		return nil, fmt.Errorf("compaction: ProducerCheckInterval %s must not be negative", cfg.ProducerCheckInterval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ProducerIDExpiration == 0 {
		cfg.ProducerIDExpiration = DefaultProducerIDExpiration
	}
	if cfg.ProducerCheckInterval == 0 {
		cfg.ProducerCheckInterval = DefaultProducerCheckInterval
	}
	cfg.ProducerCheckInterval = min(cfg.ProducerCheckInterval, cfg.ProducerIDExpiration)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Loop{cfg: cfg, log: cfg.Logger, metrics: m}, nil
}

// Run runs a pass every Interval until ctx is done, and returns nil then.
func (l *Loop) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.RunOnce(ctx)
		}
	}
}

// RunOnce makes one pass over every partition whose group this node leads and
// returns how many cleanup commands it proposed. Failures are logged and
// counted; the pass goes on with the next partition.
func (l *Loop) RunOnce(ctx context.Context) int {
	start := time.Now()
	defer func() { l.metrics.pass.Observe(time.Since(start).Seconds()) }()
	if !l.cfg.Node.Ready() {
		return 0
	}
	now := l.cfg.Now()
	producers := now.Sub(l.producersChecked) >= l.cfg.ProducerCheckInterval
	if producers {
		l.producersChecked = now
	}
	proposed := 0
	for _, t := range l.cfg.Node.Topics() {
		for _, p := range t.Partitions {
			if ctx.Err() != nil {
				return proposed
			}
			if !l.cfg.Node.IsLeader(p.Group) {
				continue
			}
			proposed += l.partition(ctx, t, p, producers)
		}
	}
	return proposed
}

// due asks the store whether an expiry before beforeMs has work; a store error
// (the topic deleted meanwhile) counts as nothing due.
func (l *Loop) due(check func(shardstore.ShardID, int64) (bool, error), t raftfsm.TopicInfo, p raftfsm.PartitionInfo, beforeMs int64) bool {
	ok, err := check(p.Shard, beforeMs)
	if err != nil {
		l.log.Debug("expiry check failed", keyTopic, t.Name, keyPartition, p.Partition, keyError, err)
	}
	return ok
}

// partition runs what is due on one partition; producers says whether to look
// for idle producers too.
func (l *Loop) partition(ctx context.Context, t raftfsm.TopicInfo, p raftfsm.PartitionInfo, producers bool) int {
	st, err := l.cfg.Store.State(p.Shard)
	if err != nil {
		// The topic may have been deleted since Topics was read.
		l.log.Debug("shard state unavailable", keyTopic, t.Name, keyPartition, p.Partition, keyError, err)
		return 0
	}
	nowMs := l.cfg.Now().UnixMilli()
	c := t.Config
	n := 0
	run := func(op string, f func() error) {
		err := f()
		l.metrics.command(op, err)
		n++
		if err != nil {
			l.log.Warn("compaction command failed", keyTopic, t.Name, keyPartition, p.Partition, keyOp, op, keyError, err)
		}
	}
	if before := nowMs - l.cfg.ProducerIDExpiration.Milliseconds(); producers && l.due(l.cfg.Store.ProducersDue, t, p, before) {
		run(opExpireProducers, func() error {
			return l.cfg.Node.ExpireProducers(ctx, t.Name, p.Partition, before)
		})
	}
	if c.CleanupPolicy == shardstore.PolicyCompact {
		// Each expiry is a Raft command: propose it only when the store holds
		// something it would remove.
		before := nowMs - c.DeleteRetentionMs
		if st.Tombstones > 0 && l.due(l.cfg.Store.TombstonesDue, t, p, before) {
			run(opExpireTombstones, func() error {
				return l.cfg.Node.ExpireTombstones(ctx, t.Name, p.Partition, before)
			})
		}
		// Transaction markers: settled when written (docs/ARCHITECTURE.md
		// rule 7), so they only wait for delete.retention.ms, as Kafka's
		// cleaner keeps a marker for that long once its data is gone.
		if l.due(l.cfg.Store.TxnMarkersDue, t, p, before) {
			run(opExpireTxnMarkers, func() error {
				return l.cfg.Node.ExpireTxnMarkers(ctx, t.Name, p.Partition, before)
			})
		}
		// Superseded records held by min.compaction.lag.ms (the shard then has
		// more readable records than keys and tombstones) are released by the
		// lag in force now, whatever lag held them: lowering it, to 0 too,
		// releases what it no longer covers. A record as old as the lag is
		// due, as Append holds only records younger than it.
		before = nowMs - c.MinCompactionLagMs + 1
		if st.LiveRecords > st.LiveKeys+st.Tombstones && l.due(l.cfg.Store.SupersededDue, t, p, before) {
			run(opExpireSuperseded, func() error {
				return l.cfg.Node.ExpireSuperseded(ctx, t.Name, p.Partition, before)
			})
		}
	}
	if c.Retention {
		// delete and compact,delete topics: records older than retention.ms or
		// beyond retention.bytes leave from the log start. On a compacted shard
		// the same command also drops the key index entries of the records it
		// removes, so their keys are gone as after a tombstone's expiry.
		if off, ok := l.retentionOffset(t, p, c, st, nowMs); ok {
			run(opDeleteRecordsBefore, func() error {
				return l.cfg.Node.DeleteRecordsBefore(ctx, t.Name, p.Partition, off)
			})
		}
	}
	return n
}

// retentionOffset returns the offset retention moves the log start to, and
// whether that is past the current log start.
func (l *Loop) retentionOffset(t raftfsm.TopicInfo, p raftfsm.PartitionInfo, c topicconfig.Config, st shardstore.State, nowMs int64) (int64, bool) {
	olderThan := int64(-1)
	if c.RetentionMs >= 0 {
		olderThan = nowMs - c.RetentionMs
	}
	if olderThan < 0 && c.RetentionBytes < 0 {
		return 0, false
	}
	off, err := l.cfg.Store.RetentionOffset(p.Shard, olderThan, c.RetentionBytes)
	if err != nil {
		l.log.Debug("retention offset unavailable", keyTopic, t.Name, keyPartition, p.Partition, keyError, err)
		return 0, false
	}
	return off, off > st.LogStartOffset
}
