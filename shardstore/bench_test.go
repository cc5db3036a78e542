package shardstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	benchBatch = 1000
	benchKeys  = 100_000
)

// benchRecords returns a batch of 1000 records with 16-byte keys drawn from
// benchKeys keys (so after the first 100 batches every write replaces a live
// record) and 100-byte values.
func benchRecords(batch int) []Record {
	recs := make([]Record, benchBatch)
	for i := range recs {
		k := make([]byte, 16)
		binary.BigEndian.PutUint64(k[8:], uint64((batch*benchBatch+i)%benchKeys))
		copy(k, "benchkey")
		v := make([]byte, 100)
		binary.BigEndian.PutUint64(v, uint64(batch))
		recs[i] = Record{Key: k, Value: v, Timestamp: int64(batch)}
	}
	return recs
}

func benchStore(b *testing.B) *Store {
	s := openStore(b, b.TempDir(), Options{Logger: testLogger(b)})
	bt := s.NewBatch()
	if err := bt.CreateShard(1, 1); err != nil {
		b.Fatal(err)
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	return s
}

func appendBatch(b *testing.B, s *Store, recs []Record) {
	bt := s.NewBatch()
	if _, err := bt.Append(1, AppendOptions{Policy: PolicyCompact}, NoProducer, recs); err != nil {
		b.Fatal(err)
	}
	bt.SetApplied(1, 1)
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppend measures the compacting write path: one batch of 1000 records
// per iteration, keys overwritten.
func BenchmarkAppend(b *testing.B) { benchAppend(b, false) }

// BenchmarkAppendTailRead is BenchmarkAppend with a tailing reader: each
// iteration appends a batch of 1000 records that replace the records of the
// same keys (after the first 100 batches: 1000 consecutive offsets, one
// range deletion) and then reads the newest record, as a consumer's fetch at
// the end of the log does. A range deletion makes the next iterator over the
// memtable re-fragment all of the memtable's range deletions (Pebble's
// keySpanCache); this measures that cost beside what the deletion saves.
func BenchmarkAppendTailRead(b *testing.B) { benchAppend(b, true) }

func benchAppend(b *testing.B, tailRead bool) {
	s := benchStore(b)
	batches := make([][]Record, 200) // 200k records over benchKeys keys
	for i := range batches {
		batches[i] = benchRecords(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		appendBatch(b, s, batches[i%len(batches)])
		if !tailRead {
			continue
		}
		st, err := s.State(1)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := s.ReadFunc(1, st.HighWatermark-1, func(*Record) bool { n++; return false }); err != nil {
			b.Fatal(err)
		}
		if n != 1 {
			b.Fatalf("read %d records at the end of the log, want 1", n)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "records/s")
	st, _ := s.State(1)
	if st.LiveKeys != min(int64(b.N*benchBatch), benchKeys) {
		b.Fatalf("live keys %d", st.LiveKeys)
	}
}

// BenchmarkRead measures a full read of a shard of benchKeys live records
// (after 3 or 10 versions of each key, written in turn, so the live records
// are the last benchKeys offsets), in 1 MiB reads as a fetch would make them:
// straight after writing (the memtable and L0 still hold every replaced
// version and its SingleDelete) and after a manual compaction of the shard's
// range. cpu-ns/record is the process's CPU time per record read. Read
// copies and decodes into records; ReadFunc (what Fetch uses) hands each
// record over in place, here to a callback that only counts it.
func BenchmarkRead(b *testing.B) {
	for _, bc := range []struct {
		versions  int
		compacted bool
		fn        bool
	}{{3, false, false}, {3, true, false}, {10, false, false}, {10, true, false}, {10, false, true}, {10, true, true}} {
		name := fmt.Sprintf("versions=%d/memtable", bc.versions)
		if bc.compacted {
			name = fmt.Sprintf("versions=%d/compacted", bc.versions)
		}
		read := func(s *Store, from int64) (n int, next int64, err error) {
			recs, err := s.Read(1, from, 1<<20, 0)
			if len(recs) > 0 {
				next = recs[len(recs)-1].Offset + 1
			}
			return len(recs), next, err
		}
		if bc.fn {
			name += "/ReadFunc"
			read = func(s *Store, from int64) (n int, next int64, err error) {
				size := 0
				err = s.ReadFunc(1, from, func(rec *Record) bool {
					n, next = n+1, rec.Offset+1
					size += len(rec.Key) + len(rec.Value)
					return size < 1<<20
				})
				return n, next, err
			}
		}
		compacted := bc.compacted
		b.Run(name, func(b *testing.B) {
			s := benchStore(b)
			for i := range bc.versions * benchKeys / benchBatch {
				appendBatch(b, s, benchRecords(i))
			}
			if compacted {
				if err := s.DB().Compact(context.Background(), shardPrefix(1), shardEnd(1), false); err != nil {
					b.Fatal(err)
				}
			}
			st, _ := s.State(1)
			b.ReportAllocs()
			b.ResetTimer()
			records := 0
			cpu := processCPU(b)
			for b.Loop() {
				for from := int64(0); from < st.HighWatermark; {
					n, next, err := read(s, from)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
					records += n
					from = next
				}
			}
			cpu = processCPU(b) - cpu
			if records != b.N*benchKeys {
				b.Fatalf("read %d records, want %d", records, b.N*benchKeys)
			}
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(records), "cpu-ns/record")
		})
	}
}

// BenchmarkSnapshot measures a group snapshot of 1M live keys (10 shards of
// benchKeys 16-byte keys with 100-byte values) on disk: Export (both walks:
// sizing and encoding) read to the end, and Ingest of the stream from a file
// into an empty store (tables written, one Pebble Ingest, synced); Decode only reads the stream
// file through the decoder, as Ingest does. MB/s is of the stream, and so
// is cpu-ms/MB, the process's CPU time (all goroutines, Pebble's included) per
// MB, which a busy machine changes far less than MB/s.
func BenchmarkSnapshot(b *testing.B) {
	const shards = 10
	dir := b.TempDir()
	src := openStore(b, filepath.Join(dir, "src"), Options{Logger: testLogger(b)})
	bt := src.NewBatch()
	for id := range ShardID(shards) {
		if err := bt.CreateShard(id+1, 1); err != nil {
			b.Fatal(err)
		}
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	for id := range ShardID(shards) {
		for i := range benchKeys / benchBatch {
			bt := src.NewBatch()
			if _, err := bt.Append(id+1, AppendOptions{Policy: PolicyCompact}, NoProducer, benchRecords(i)); err != nil {
				b.Fatal(err)
			}
			bt.SetApplied(1, uint64(int(id)*benchKeys+i+1))
			if err := bt.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	streamPath := filepath.Join(dir, "stream")
	var size int64

	b.Run("Export", func(b *testing.B) {
		cpu0 := processCPU(b)
		for b.Loop() {
			e, err := src.Export(1, ExportOptions{})
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(streamPath)
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriterSize(f, 1<<20)
			if size, err = io.Copy(w, e); err != nil || size != e.Size() {
				b.Fatalf("exported %d of %d: %v", size, e.Size(), err)
			}
			if err := errors.Join(w.Flush(), f.Close(), e.Close()); err != nil {
				b.Fatal(err)
			}
		}
		reportCPUPerMB(b, processCPU(b)-cpu0, size)
		b.SetBytes(size)
		b.ReportMetric(float64(b.N*shards*benchKeys)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("Decode", func(b *testing.B) {
		if size == 0 {
			b.Skip("needs the Export sub-benchmark's stream")
		}
		cpu0 := processCPU(b)
		for b.Loop() {
			f, err := os.Open(streamPath)
			if err != nil {
				b.Fatal(err)
			}
			d, err := newSnapshotDecoder(f)
			for err == nil {
				var ok bool
				if ok, err = d.next(); !ok {
					break
				}
			}
			f.Close()
			if err != nil || !d.done {
				b.Fatalf("decode: done %v, %v", d.done, err)
			}
		}
		reportCPUPerMB(b, processCPU(b)-cpu0, size)
		b.SetBytes(size)
	})
	b.Run("Ingest", func(b *testing.B) {
		if size == 0 {
			b.Skip("needs the Export sub-benchmark's stream")
		}
		// Each stream goes into an empty store, as a wiped node's does,
		// opened and closed outside the measurement.
		var cpu time.Duration
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			dstDir := filepath.Join(dir, fmt.Sprintf("dst-%d", i))
			dst := openStore(b, dstDir, Options{Logger: testLogger(b)})
			f, err := os.Open(streamPath)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			cpu0 := processCPU(b)
			res, err := dst.Ingest(f, IngestOptions{Group: 1, Dir: filepath.Join(dir, "ingest")})
			cpu += processCPU(b) - cpu0
			b.StopTimer()
			f.Close()
			if err != nil || len(res.Shards) != shards {
				b.Fatalf("ingest: %+v, %v", res, err)
			}
			if st, err := dst.State(1); err != nil || st.LiveKeys != benchKeys {
				b.Fatalf("ingested shard 1: %+v, %v", st, err)
			}
			if err := errors.Join(dst.Close(), os.RemoveAll(dstDir)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		reportCPUPerMB(b, cpu, size)
		b.SetBytes(size)
		b.ReportMetric(float64(b.N*shards*benchKeys)/b.Elapsed().Seconds(), "keys/s")
	})
}

// reportCPUPerMB reports cpu, the process's CPU time over b.N streams of
// size bytes, per MB.
func reportCPUPerMB(b *testing.B, cpu time.Duration, size int64) {
	if mb := float64(int64(b.N)*size) / 1e6; mb > 0 {
		b.ReportMetric(float64(cpu)/1e6/mb, "cpu-ms/MB")
	}
}

// BenchmarkAppendManyShards measures a store batch of one idempotent record
// in each of 2,500 of 10,000 shards, in no order: what one Raft entry of a
// produce to 10,000 partitions over 4 Raft groups applies. Most of its time
// is Pebble inserting the batch into its memtable (a record, a key index
// entry, producer state and meta per shard, each far from the last).
func BenchmarkAppendManyShards(b *testing.B) {
	const shards, perBatch = 10_000, 2_500
	s := openStore(b, b.TempDir(), Options{Logger: testLogger(b)})
	bt := s.NewBatch()
	for id := ShardID(1); id <= shards; id++ {
		if err := bt.CreateShard(id, 1); err != nil {
			b.Fatal(err)
		}
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seq := make(map[ShardID]int32)
	v := make([]byte, 100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bt := s.NewBatch()
		for range perBatch {
			id := ShardID(rng.IntN(shards) + 1)
			k := fmt.Appendf(nil, "key-%08d", rng.IntN(500_000))
			pr := Producer{ID: 7, Epoch: 0, BaseSequence: seq[id]}
			if _, err := bt.Append(id, AppendOptions{Policy: PolicyCompact}, pr, []Record{{Key: k, Value: v}}); err != nil {
				b.Fatal(err)
			}
			seq[id]++
		}
		bt.SetApplied(1, uint64(i+2))
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/record")
}

// BenchmarkAppendUncached measures the write path when the key cache does not
// hold the keys, as with more live keys than it has room for: the key cache is
// off, the shard holds uncachedKeys live keys flushed and compacted into
// tables, and each batch of 1000 records draws its keys at random from twice
// as many, so half replace a live record and half are new. Every record's
// previous entry is looked up in the key index in Pebble.
func BenchmarkAppendUncached(b *testing.B) {
	const uncachedKeys = 1_000_000
	s := openStore(b, b.TempDir(), Options{Logger: testLogger(b), KeyCacheBytes: -1})
	bt := s.NewBatch()
	if err := bt.CreateShard(1, 1); err != nil {
		b.Fatal(err)
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	key := func(i uint64) []byte {
		k := make([]byte, 16)
		copy(k, "benchkey")
		binary.BigEndian.PutUint64(k[8:], i*2654435761%(1<<40)) // scattered, distinct
		return k
	}
	value := make([]byte, 100)
	for start := 0; start < uncachedKeys; start += benchBatch {
		recs := make([]Record, benchBatch)
		for i := range recs {
			recs[i] = Record{Key: key(uint64(start + i)), Value: value}
		}
		appendBatch(b, s, recs)
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := s.db.Compact(context.Background(), shardsStart(), shardsEnd(), true); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	cpu0 := processCPU(b)
	for b.Loop() {
		recs := make([]Record, benchBatch)
		for i := range recs {
			recs[i] = Record{Key: key(rng.Uint64N(2 * uncachedKeys)), Value: value}
		}
		appendBatch(b, s, recs)
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N*benchBatch), "cpu-ns/record")
}
