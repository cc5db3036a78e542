// Package compaction runs the time-based cleanup of shards: the work that
// Kafka's log cleaner and retention threads do, minus what shardcache already
// does at write time (replacing a key's record happens when it is appended).
//
// Every Interval, for each partition whose Raft group this node leads, a Loop
// asks the store what is due and proposes it through raftfsm, so every replica
// removes the same records at the same log position:
//
//   - compacted topics (cleanup.policy=compact or compact,delete): tombstones
//     older than delete.retention.ms are removed (ExpireTombstones), and
//     records superseded longer ago than min.compaction.lag.ms are removed
//     (ExpireSuperseded). Transaction markers older than delete.retention.ms
//     are removed too (ExpireTxnMarkers): a marker settles its transaction
//     when it is written, so, as in Kafka's cleaner once a transaction's data
//     is gone, only the retention is left to wait for, and Flink's
//     per-checkpoint commits do not grow a partition without bound.
//   - topics whose cleanup.policy names delete (delete or compact,delete): the
//     log start moves past records older than retention.ms and past the
//     oldest records until at most retention.bytes remain
//     (DeleteRecordsBefore). On a compact,delete topic this is Kafka's
//     windowed changelog: keys compact on write, and keys whose live record
//     falls off the log start are gone.
//   - every policy, at most every ProducerCheckInterval (10 min): the state of
//     idempotent producers idle for ProducerIDExpiration (Kafka's
//     producer.id.expiration.ms, 1 day) is forgotten (ExpireProducers); such a
//     producer is unknown again, and its next batch may start at any sequence.
//
// The checks cost no Pebble read for a partition with nothing due: each shard
// keeps in memory a lower bound on its oldest tombstone, superseded record,
// marker and producer write (shardstore/due.go), so a pass over 10,000
// partitions costs well under a microsecond per partition.
//
// Times are the leader's append times (AppendOptions.AppendTimeMs), not the
// producers' record timestamps, so a producer's clock cannot keep a tombstone
// alive or expire a record early. Each command carries its cutoff, computed
// from the proposer's clock; no replica reads a clock when it applies one.
package compaction
