package shardstore

import (
	"log/slog"
	"testing"
	"time"
)

// BenchmarkDueChecks is one compaction pass's checks over 10,000 compacted
// shards, each holding one record of an idempotent producer (the shape of a
// produce load to a 10,000-partition topic): TxnMarkersDue, ProducersDue and
// RetentionOffset (as for cleanup.policy=compact,delete) per shard, as the
// loop asks them, with Kafka's default delete.retention.ms,
// producer.id.expiration.ms and retention.ms. "open" asks right after Open (the bounds are read from Pebble
// once), "warm" on later passes.
func BenchmarkDueChecks(b *testing.B) {
	const shards = 10_000
	dir := b.TempDir()
	s := openStore(b, dir, Options{Logger: slog.New(slog.DiscardHandler)})
	now := time.Now().UnixMilli()
	const per = 500
	for first := 0; first < shards; first += per {
		bt := s.NewBatch()
		for id := ShardID(first + 1); id <= ShardID(first+per); id++ {
			if err := bt.CreateShard(id, uint32(id%4)); err != nil {
				b.Fatal(err)
			}
			rec := []Record{{Key: []byte("key"), Value: []byte("value")}}
			if _, err := bt.Append(id, AppendOptions{Policy: PolicyCompact, AppendTimeMs: now}, Producer{ID: 1, Epoch: 0, BaseSequence: 0}, rec); err != nil {
				b.Fatal(err)
			}
		}
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	pass := func(b *testing.B, s *Store) {
		markersBefore := now - (24 * time.Hour).Milliseconds()
		producersBefore := now - (24 * time.Hour).Milliseconds()
		retentionBefore := now - (7 * 24 * time.Hour).Milliseconds()
		for id := ShardID(1); id <= shards; id++ {
			if due, err := s.TxnMarkersDue(id, markersBefore); err != nil || due {
				b.Fatalf("TxnMarkersDue(%d) = %v, %v", id, due, err)
			}
			if due, err := s.ProducersDue(id, producersBefore); err != nil || due {
				b.Fatalf("ProducersDue(%d) = %v, %v", id, due, err)
			}
			if off, err := s.RetentionOffset(id, retentionBefore, -1); err != nil || off != 0 {
				b.Fatalf("RetentionOffset(%d) = %d, %v", id, off, err)
			}
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			s := openStore(b, dir, Options{Logger: slog.New(slog.DiscardHandler)})
			b.StartTimer()
			pass(b, s)
			b.StopTimer()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*shards), "ns/shard")
	})
	b.Run("warm", func(b *testing.B) {
		s := openStore(b, dir, Options{Logger: slog.New(slog.DiscardHandler)})
		pass(b, s)
		for b.Loop() {
			pass(b, s)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*shards), "ns/shard")
	})
}
