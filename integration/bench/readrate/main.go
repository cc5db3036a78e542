// Command readrate measures the full read of a compacted topic right after it
// was written, for two shardcache binaries side by side: the read path's
// benchmark (issue 10, read rate per record).
//
// For each binary in turn (-binary, then -baseline-binary when set) it starts
// one broker (harness.StartBroker, --pprof) on a new data directory, creates a
// compacted topic of -partitions partitions, produces -keys distinct 16-byte
// keys -versions times each with -value-bytes values (default 100; harness.Produce: acks=all,
// idempotent, linger 5 ms, 10,000 records buffered, -codec: snappy by default;
// fetches answer with the producer's codec), and then reads it
// -reads times, each a GlobalKTable-style restore as bench-compare's: a new
// consumer without a group, franz-go's default fetch sizes, every partition
// assigned from the earliest offset, read to the end offsets listed before it
// started. The first read follows the produce at once, as in bench-compare,
// while Pebble still holds every replaced version; later reads show the warm
// state. Per read it prints records, seconds, the time to the first poll
// that returned records (the client's start, the first fetch and its
// decoding), the polls, records/s, and the CPU time per record of the broker
// (from /proc, so Pebble's background work counts too) and of this process,
// whose only work during a read is the consumer: which of the two bounds the
// rate. With -profile-dir, a CPU profile of the broker covers the first read
// (<dir>/<label>.pprof). Run it on an idle machine or compare the two
// binaries' rows of one run: on a busy one the rates move with the load, the
// CPU per record much less.
//
// Usage:
//
//	go run ./integration/bench/readrate -binary bin/shardcache -baseline-binary /tmp/main-shardcache \
//	    [-keys 1000000 -versions 10] [-value-bytes 100] [-codec snappy] [-partitions 4] [-reads 2] [-profile-dir DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	binary, baseline string
	keys, versions   int
	valueBytes       int
	codec            string
	partitions       int
	reads            int
	profileDir       string
	profileFor       time.Duration
	readTimeout      time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.binary, "binary", "", "shardcache binary (default <module root>/bin/shardcache)")
	flag.StringVar(&cfg.baseline, "baseline-binary", "", "a second binary, measured after the first (e.g. main's)")
	flag.IntVar(&cfg.keys, "keys", 1_000_000, "distinct keys")
	flag.IntVar(&cfg.versions, "versions", 10, "times each key is written")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 100, "value size in bytes")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of the topic")
	flag.StringVar(&cfg.codec, "codec", "snappy", "the producer's compression: "+harness.CodecNames)
	flag.IntVar(&cfg.reads, "reads", 2, "full reads after the produce")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "write a CPU profile of the broker during the first read here")
	flag.DurationVar(&cfg.profileFor, "profile-duration", 12*time.Second, "length of that profile")
	flag.DurationVar(&cfg.readTimeout, "read-timeout", 5*time.Minute, "cap on one full read")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("readrate: ")
	if cfg.keys <= 0 || cfg.versions <= 0 || cfg.partitions <= 0 || cfg.reads <= 0 || cfg.valueBytes < 0 {
		log.Print("-keys, -versions, -partitions and -reads must be positive, -value-bytes not negative")
		os.Exit(2)
	}
	if _, ok := harness.Codecs[cfg.codec]; !ok {
		log.Printf("unknown -codec %q: %s", cfg.codec, harness.CodecNames)
		os.Exit(2)
	}
	harness.Main(func(ctx context.Context) error {
		fmt.Printf("%d keys x %d versions, %d-byte values, %s, %d partitions; load average %s\n", cfg.keys, cfg.versions, cfg.valueBytes, cfg.codec, cfg.partitions, harness.LoadAverage())
		fmt.Println("| binary | read | records | seconds | first records after | polls | records/s | broker CPU per record | client CPU per record | load average |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		bins := []string{cfg.binary}
		if cfg.baseline != "" {
			bins = append(bins, cfg.baseline)
		}
		for i, bin := range bins {
			label := "binary"
			if i == 1 {
				label = "baseline"
			}
			if err := run(ctx, cfg, bin, label); err != nil {
				return fmt.Errorf("%s %s: %w", label, bin, err)
			}
		}
		return nil
	})
}

func run(ctx context.Context, cfg config, bin, label string) error {
	b, err := harness.StartBroker(ctx, bin, "--pprof")
	if err != nil {
		return err
	}
	defer b.Stop()
	adm, err := kgo.NewClient(kgo.SeedBrokers(b.KafkaAddr))
	if err != nil {
		return err
	}
	defer adm.Close()
	admin := kadm.NewClient(adm)
	const topic = "readrate"
	resp, err := admin.CreateTopic(ctx, int32(cfg.partitions), 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	prod, err := harness.Produce(ctx, harness.ProduceConfig{Seeds: []string{b.KafkaAddr}, Topic: topic,
		Records: cfg.keys * cfg.versions, Keys: cfg.keys, KeyBytes: 16, ValueBytes: cfg.valueBytes,
		Linger: 5 * time.Millisecond, MaxBuffered: 10_000,
		ClientOpts: []kgo.Opt{kgo.ProducerBatchCompression(harness.Codecs[cfg.codec])}})
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if prod.Failed > 0 {
		return fmt.Errorf("produce: %d requests failed (first: %v)", prod.Failed, prod.FirstErr)
	}
	for i := range cfg.reads {
		var profErr chan error
		if i == 0 && cfg.profileDir != "" {
			profErr = make(chan error, 1)
			path := filepath.Join(cfg.profileDir, label+".pprof")
			go func() { profErr <- harness.CPUProfile(ctx, b.HTTPAddr, cfg.profileFor, path) }()
		}
		cpu0, err := harness.CPUTime(b.PID())
		if err != nil {
			return err
		}
		ends, err := admin.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("list end offsets: %w", err)
		}
		self0, err := selfCPU()
		if err != nil {
			return err
		}
		r, err := harness.ReadToEndTimed(ctx, b.KafkaAddr, topic, ends, cfg.readTimeout)
		if err != nil {
			return err
		}
		cpu1, err := harness.CPUTime(b.PID())
		if err != nil {
			return err
		}
		self1, err := selfCPU()
		if err != nil {
			return err
		}
		perRecord := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(r.Records) }
		fmt.Printf("| %s | %d | %d | %.3f | %.1f ms | %d | %.0f | %.0f ns | %.0f ns | %s |\n", label, i+1, r.Records, r.Secs,
			r.FirstSecs*1000, r.Polls, float64(r.Records)/r.Secs, perRecord(cpu1-cpu0), perRecord(self1-self0), harness.LoadAverage())
		if profErr != nil {
			if err := <-profErr; err != nil {
				return err
			}
		}
	}
	return nil
}
