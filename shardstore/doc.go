// Package shardstore stores shards: key-compacted (or append-only) logs of
// Kafka records, one per topic partition, in one Pebble database per node (the
// state DB), beside which Store keeps a second one for raftfsm's Raft logs
// (LogDB).
//
// A shard assigns dense, monotonic offsets; under PolicyCompact writing a key
// removes its previous record at once, so a reader's backlog is bounded by the
// shard's live keys. Records are read by offset (Read), by key (Lookup) and by
// timestamp (OffsetForTime). Idempotent producers are deduplicated with Kafka's
// sequence rules, and their state is kept apart from the records. A compacted
// shard's key index lives in its key cache alone while the cache can hold all
// its keys (cache-only, rebuilt from the records at Open), and in Pebble once
// it cannot.
//
// All writes go through a Batch, which raftfsm fills from one or more Raft
// entries and commits once, together with the applied Raft index (SetApplied),
// to the state DB, which has no WAL: the Raft log is the durable record, the
// state DB is durable up to its last Flush, and after a crash it rolls back to
// a consistent applied index from which Raft replays.
// Reads are safe from any goroutine; a shard's batches come from one goroutine.
//
// Every shard is registered in the Raft group that carries it. Export streams
// one group's state (shards, registry, applied index) from a Pebble snapshot;
// Ingest replaces a group's state with such a stream, atomically.
//
// The package knows nothing about Raft or the Kafka wire protocol. DESIGN.md
// beside this file follows the data path and lists the key layout.
package shardstore
