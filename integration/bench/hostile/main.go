// Command hostile runs the hostile load of the integration test
// TestHostileLoad (internal/hostileload: decompression bombs of every codec,
// 16 MiB frames of array counts, slowloris trickles) against a local
// shardcache broker for a fixed time, while a well-behaved franz-go producer
// writes keyed records, and prints the broker's peak resident memory next to
// its memory budget.
//
// Usage:
//
//	go run ./integration/bench/hostile [flags]
//
// Flags:
//
//	-duration     how long the attack lasts (default 30s)
//	-bombs        connections sending decompression bombs (default 20)
//	-arrays       connections sending 16 MiB frames of array counts (default 15)
//	-slowloris    connections trickling a frame (default 15)
//	-binary       shardcache binary (default ./bin/shardcache under the module
//	              root, else built from ./cmd/shardcache)
//	-broker-args  extra flags for the broker, space separated; the attack is
//	              sized for the default --max-decompressed-bytes and
//	              --max-request-bytes
//
// The broker runs with its default limits (a 256 MiB memory budget). Peak
// RSS is the highest VmRSS sampled every 50 ms and the kernel's VmHWM; both
// are read from /proc, so this runs on Linux only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/integration/bench/harness"
	"github.com/shardcache/shardcache/internal/hostileload"
)

type config struct {
	duration                 time.Duration
	bombs, arrays, slowloris int
	binary, brokerArgs       string
}

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 30*time.Second, "how long the attack lasts")
	flag.IntVar(&cfg.bombs, "bombs", 20, "connections sending decompression bombs")
	flag.IntVar(&cfg.arrays, "arrays", 15, "connections sending 16 MiB frames of array counts")
	flag.IntVar(&cfg.slowloris, "slowloris", 15, "connections trickling a frame")
	flag.StringVar(&cfg.binary, "binary", "", "shardcache binary (default <module root>/bin/shardcache, else go build)")
	flag.StringVar(&cfg.brokerArgs, "broker-args", "", "extra flags for the broker, space separated")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-hostile: ")
	if runtime.GOOS != "linux" {
		log.Print("reads the broker's memory from /proc: Linux only")
		os.Exit(2)
	}
	if cfg.duration <= 0 || cfg.bombs < 0 || cfg.arrays < 0 || cfg.slowloris < 0 || cfg.bombs+cfg.arrays+cfg.slowloris == 0 {
		log.Print("-duration must be positive and the connection counts not negative, with at least one")
		os.Exit(2)
	}
	harness.Main(func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	b, err := harness.StartBroker(ctx, cfg.binary, strings.Fields(cfg.brokerArgs)...)
	if err != nil {
		return err
	}
	defer b.Stop()
	idle, _, err := hostileload.ProcMemory(b.PID())
	if err != nil {
		return err
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.KafkaAddr))
	if err != nil {
		return err
	}
	defer cl.Close()
	const bombTopic, calmTopic, bombPartitions = "hostile-bombs", "calm", 20
	for _, t := range []struct {
		name       string
		partitions int32
	}{{bombTopic, bombPartitions}, {calmTopic, 1}} {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := kadm.NewClient(cl).CreateTopic(cctx, t.partitions, 1, nil, t.name)
		cancel()
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t.name, err)
		}
	}

	log.Printf("building the attack's requests")
	load, err := hostileload.Prepare(hostileload.Config{
		Addr:                 b.KafkaAddr,
		Topic:                bombTopic,
		Partitions:           bombPartitions,
		Bombs:                cfg.bombs,
		Arrays:               cfg.arrays,
		Slowloris:            cfg.slowloris,
		MaxDecompressedBytes: broker.DefaultMaxDecompressedBytes,
		MaxRequestBytes:      broker.DefaultMaxRequestBytes,
		Logf:                 log.Printf,
	})
	if err != nil {
		return err
	}
	log.Printf("attacking for %v", cfg.duration)
	attackCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	sampler := hostileload.SampleRSS(attackCtx, b.PID(), 50*time.Millisecond)
	statsc := make(chan *hostileload.Stats, 1)
	go func() { statsc <- load.Run(attackCtx) }()

	// The well-behaved producer: batches of ten keyed records, each waited for.
	var acked, failed int
	start := time.Now()
	for n := 0; attackCtx.Err() == nil; {
		var recs []*kgo.Record
		for i := 0; i < 10; i++ {
			recs = append(recs, &kgo.Record{Topic: calmTopic, Key: fmt.Appendf(nil, "calm-%07d", n), Value: fmt.Appendf(nil, "value-%d", n)})
			n++
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
		err := cl.ProduceSync(pctx, recs...).FirstErr()
		pcancel()
		if err != nil {
			failed++
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		acked += len(recs)
	}
	elapsed := time.Since(start)
	stats := <-statsc
	peak, samples, err := sampler.Result()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("sampling RSS: %w", err)
	}
	_, hwm, err := hostileload.ProcMemory(b.PID())
	if err != nil {
		return err
	}

	// Let the requests of the attack's closed connections run out (a bomb may
	// wait for memory up to its 30 s produce timeout) so the broker stops
	// cleanly.
	cl.Close()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if v, err := hostileload.Metric(b.HTTPAddr, "shardcache_broker_inflight_bytes"); err == nil && v == 0 {
			break
		}
	}

	fmt.Printf("\nshardcache hostile load: %v, %d bomb + %d array + %d slowloris connections; memory budget %s (default)\n\n",
		cfg.duration, cfg.bombs, cfg.arrays, cfg.slowloris, hostileload.MiB(broker.DefaultMaxInflightBytes))
	fmt.Println("| measurement | value |")
	fmt.Println("|---|---:|")
	fmt.Printf("| broker RSS before the attack | %s |\n", hostileload.MiB(idle))
	fmt.Printf("| peak RSS, sampled every 50 ms (%d samples) | %s |\n", samples, hostileload.MiB(peak))
	fmt.Printf("| peak RSS, kernel VmHWM | %s |\n", hostileload.MiB(hwm))
	fmt.Printf("| bomb requests sent / answered | %d / %d |\n", stats.BombRequests.Load(), stats.BombResponses.Load())
	fmt.Printf("| bomb batches refused / written | %d / %d |\n", stats.BatchesRefused.Load(), stats.BatchesWritten.Load())
	fmt.Printf("| 16 MiB array frames sent in full | %d |\n", stats.ArrayFrames.Load())
	fmt.Printf("| slowloris connections | %d |\n", stats.Slowloris.Load())
	fmt.Printf("| attack connections opened | %d |\n", stats.Dials.Load())
	fmt.Printf("| well-behaved records acknowledged | %d (%.0f/s, %d failed batches) |\n", acked, float64(acked)/elapsed.Seconds(), failed)
	return nil
}
