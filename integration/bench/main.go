// Command bench measures shardcache with franz-go: keyed produce throughput and
// latency, then the time a brand-new consumer needs to load a compacted topic's full
// state, and prints a markdown table.
//
// Phases:
//
//  1. produce: -records keyed records (keys cycle over -keys distinct keys) to a new
//     compacted topic with -partitions partitions, acks=all, idempotent, linger
//     -linger, kgo's default compression (snappy). The phase stops early after
//     -duration. Reported: records/s, MB/s of keys plus values, and p50/p99 of the
//     per-record latency from the Produce call to its promise (which includes time
//     waiting for room in the client's -max-buffered record buffer).
//  2. read: a fresh consumer (no group) reads the same topic from the beginning until
//     every partition's high watermark; the topic holds min(-records, -keys) live
//     keys. Reported: records/s and MB/s.
//
// Usage:
//
//	go run ./integration/bench [flags]
//
// Flags:
//
//	-bootstrap     seed broker host:port; empty starts a local broker from
//	               ./bin/shardcache, or builds ./cmd/shardcache, with a temporary data dir
//	-records       records to produce (default 2,000,000: every key written twice)
//	-keys          distinct keys (default 1,000,000: the read phase loads 1M live keys)
//	-value-bytes   value size (default 100)
//	-key-bytes     key size (default 16)
//	-partitions    partitions of the benchmark topic (default 4)
//	-linger        producer linger (default 5ms)
//	-max-buffered  producer buffer in records (default 10,000)
//	-duration      cap on the produce phase (default 60s)
//	-read-timeout  cap on the read phase (default 60s)
//	-broker-args   extra flags for a locally started broker, space separated
//
// The defaults finish in well under a minute on two cores (about 10 s when the
// broker sustains 400k records/s); the read phase needs -records >= -keys to hold
// -keys live keys. Lower both for a quicker look.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	bootstrap   string
	records     int
	keys        int
	valueBytes  int
	keyBytes    int
	partitions  int
	linger      time.Duration
	maxBuffered int
	duration    time.Duration
	readTimeout time.Duration
	brokerArgs  string
	binary      string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bootstrap, "bootstrap", "", "seed broker host:port; empty starts a local broker")
	flag.IntVar(&cfg.records, "records", 2_000_000, "records to produce")
	flag.IntVar(&cfg.keys, "keys", 1_000_000, "distinct keys")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 100, "value size in bytes")
	flag.IntVar(&cfg.keyBytes, "key-bytes", 16, "key size in bytes")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of the benchmark topic")
	flag.DurationVar(&cfg.linger, "linger", 5*time.Millisecond, "producer linger")
	flag.IntVar(&cfg.maxBuffered, "max-buffered", 10_000, "producer buffer in records")
	flag.DurationVar(&cfg.duration, "duration", 60*time.Second, "cap on the produce phase")
	flag.DurationVar(&cfg.readTimeout, "read-timeout", 60*time.Second, "cap on the read phase")
	flag.StringVar(&cfg.brokerArgs, "broker-args", "", "extra flags for a locally started broker, space separated")
	flag.StringVar(&cfg.binary, "binary", "", "broker binary to start (default ./bin/shardcache, else a fresh build)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if err := cfg.validate(); err != nil {
		log.Print(err)
		os.Exit(2)
	}

	harness.Main(func(ctx context.Context) error { return run(ctx, cfg) })
}

func (c config) validate() error {
	switch {
	case c.records <= 0:
		return errors.New("-records must be positive")
	case c.keys <= 0:
		return errors.New("-keys must be positive")
	case c.keyBytes < 8:
		return errors.New("-key-bytes must be at least 8")
	case c.valueBytes < 0:
		return errors.New("-value-bytes must not be negative")
	case c.partitions <= 0:
		return errors.New("-partitions must be positive")
	case c.maxBuffered <= 0:
		return errors.New("-max-buffered must be positive")
	}
	return nil
}

func run(ctx context.Context, cfg config) error {
	addr, stop, err := harness.Bootstrap(ctx, cfg.bootstrap, cfg.binary, strings.Fields(cfg.brokerArgs)...)
	if err != nil {
		return err
	}
	defer stop()

	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer adm.Close()
	admin := kadm.NewClient(adm)
	topic := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := admin.CreateTopic(cctx, int32(cfg.partitions), 1, nil, topic)
	cancel()
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.DeleteTopics(dctx, topic); err != nil {
			log.Printf("delete topic %s: %v", topic, err)
		}
	}()

	prod, err := harness.Produce(ctx, harness.ProduceConfig{
		Seeds:       []string{addr},
		Topic:       topic,
		Records:     cfg.records,
		Keys:        cfg.keys,
		KeyBytes:    cfg.keyBytes,
		ValueBytes:  cfg.valueBytes,
		Linger:      cfg.linger,
		MaxBuffered: cfg.maxBuffered,
		Duration:    cfg.duration,
	})
	if err != nil {
		return fmt.Errorf("produce phase: %w", err)
	}
	read, err := readPhase(ctx, cfg, addr, admin, topic)
	if err != nil {
		return fmt.Errorf("read phase: %w", err)
	}

	fmt.Printf("\nshardcache benchmark: %d partitions, key %d B, value %d B, %d distinct keys, linger %v, acks=all, idempotent\n\n",
		cfg.partitions, cfg.keyBytes, cfg.valueBytes, cfg.keys, cfg.linger)
	fmt.Println("| phase | records | seconds | records/s | MB/s | p50 latency | p99 latency |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| produce (acks=all) | %d | %.2f | %.0f | %.1f | %s | %s |\n",
		prod.Records, prod.Elapsed.Seconds(), prod.RecordsPerSec(), prod.MBPerSec(),
		fmtDur(prod.P50), fmtDur(prod.P99))
	fmt.Printf("| full read, fresh consumer (%d live keys) | %d | %.2f | %.0f | %.1f | | |\n",
		read.records, read.records, read.elapsed.Seconds(), rate(read.records, read.elapsed), mbps(read.bytes, read.elapsed))
	if want := int64(min(cfg.records, cfg.keys)); prod.Failed == 0 && prod.Records == int64(cfg.records) && read.records != want {
		fmt.Printf("\nWARNING: the full read returned %d records, want %d (one per live key)\n", read.records, want)
	}
	if prod.Failed > 0 {
		fmt.Printf("\n%d produce requests failed (first error: %v)\n", prod.Failed, prod.FirstErr)
	}
	return nil
}

type readResult struct {
	records int64
	bytes   int64
	elapsed time.Duration
}

func readPhase(ctx context.Context, cfg config, addr string, admin *kadm.Client, topic string) (readResult, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ends, err := admin.ListEndOffsets(lctx, topic)
	cancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return readResult{}, fmt.Errorf("list end offsets: %w", err)
	}
	want := map[int32]int64{} // partition -> last offset still to be seen
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset - 1
		}
	})

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	if err != nil {
		return readResult{}, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, cfg.readTimeout)
	defer cancel()
	var res readResult
	start := time.Now()
	for len(want) > 0 {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			return res, fmt.Errorf("read %d records, partitions %v not at their end within %v", res.records, want, cfg.readTimeout)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("%s/%d: %w", t, p, err) })
		if ferr != nil {
			return res, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			res.records++
			res.bytes += int64(len(r.Key) + len(r.Value))
			if w, ok := want[r.Partition]; ok && r.Offset >= w {
				delete(want, r.Partition)
			}
		})
	}
	res.elapsed = time.Since(start)
	return res, nil
}

func rate(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

func mbps(b int64, d time.Duration) float64 { return float64(b) / 1e6 / d.Seconds() }

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
