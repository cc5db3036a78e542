// Command lookup measures shardcache's HTTP key lookups: latency (p50, p99,
// p99.9) and lookups/s of GET /v1/topics/{topic}/keys/{key} at several numbers of
// concurrent HTTP clients, against a compacted topic holding -keys live keys, and
// prints a markdown table.
//
// Phases:
//
//  1. load: -keys distinct keys ("key-%09d", -value-bytes values) are produced
//     once each with franz-go (acks=all) to a new compacted topic with
//     -partitions partitions. Skipped with -topic (an existing, loaded topic).
//  2. lookups: for each concurrency in -clients, that many goroutines each send
//     GET requests for uniformly random keys back to back for -duration over
//     keep-alive connections, each reading the whole body. Every answer must be
//     200 with the key's value size; anything else fails the run. Latency is
//     measured per request from sending to the last body byte.
//
// Usage:
//
//	go run ./integration/bench/lookup [flags]
//
// Flags:
//
//	-bootstrap    Kafka host:port of a running broker; with -http. Empty starts a
//	              local broker (./bin/shardcache, else built from ./cmd/shardcache)
//	              on a temporary data dir
//	-http         HTTP host:port of that broker
//	-binary       shardcache binary for the local broker (default ./bin/shardcache
//	              under the module root, else built from ./cmd/shardcache)
//	-topic        look up an existing topic loaded with the same -keys (skips load)
//	-keys         live keys in the topic (default 1,000,000)
//	-value-bytes  value size (default 100)
//	-partitions   partitions of the topic (default 4)
//	-clients      comma-separated concurrencies (default 1,8,64)
//	-duration     time per concurrency (default 5s)
//
// The client runs on the same machine as the broker, so at 64 clients both
// compete for the cores; the numbers are an upper bound on server latency.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	bootstrap, httpAddr, topic string
	binary                     string
	keys, valueBytes           int
	partitions                 int
	clients                    []int
	duration                   time.Duration
}

func main() {
	log.SetFlags(0)
	var cfg config
	var clients string
	flag.StringVar(&cfg.bootstrap, "bootstrap", "", "Kafka host:port of a running broker (empty: start one)")
	flag.StringVar(&cfg.httpAddr, "http", "", "HTTP host:port of that broker")
	flag.StringVar(&cfg.binary, "binary", "", "shardcache binary for a local broker (default <module root>/bin/shardcache, else go build)")
	flag.StringVar(&cfg.topic, "topic", "", "existing topic loaded with -keys keys (skips the load phase)")
	flag.IntVar(&cfg.keys, "keys", 1_000_000, "live keys in the topic")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 100, "value size in bytes")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of the topic")
	flag.StringVar(&clients, "clients", "1,8,64", "comma-separated numbers of concurrent HTTP clients")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "time per concurrency")
	flag.Parse()
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			log.Fatalf("-clients: %q is not a number of clients (1 to 4096)", s)
		}
		cfg.clients = append(cfg.clients, n)
	}
	switch {
	case cfg.keys < 1 || cfg.keys > 1e9:
		log.Fatalf("-keys must be 1 to 1e9")
	case cfg.valueBytes < 0 || cfg.valueBytes > 1<<20:
		log.Fatalf("-value-bytes must be 0 to 1 MiB")
	case cfg.partitions < 1 || cfg.partitions > 10000:
		log.Fatalf("-partitions must be 1 to 10000")
	case cfg.duration <= 0 || cfg.duration > time.Hour:
		log.Fatalf("-duration must be positive and at most 1h")
	case (cfg.bootstrap == "") != (cfg.httpAddr == ""):
		log.Fatalf("-bootstrap and -http go together")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Fatalf("lookup bench: %v", err)
	}
}

func keyOf(i int) string { return fmt.Sprintf("key-%09d", i) }

func run(ctx context.Context, cfg config) error {
	if cfg.bootstrap == "" {
		b, err := harness.StartBroker(ctx, cfg.binary)
		if err != nil {
			return err
		}
		defer b.Stop()
		cfg.bootstrap, cfg.httpAddr = b.KafkaAddr, b.HTTPAddr
	}
	if cfg.topic == "" {
		var suffix [4]byte
		_, _ = rand.Read(suffix[:])
		cfg.topic = fmt.Sprintf("lookup-bench-%x", suffix)
		d, err := load(ctx, cfg)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		fmt.Printf("loaded %d keys (%d-byte values) into %s (%d partitions) in %v (%.0f records/s)\n\n",
			cfg.keys, cfg.valueBytes, cfg.topic, cfg.partitions, d.Round(time.Millisecond), float64(cfg.keys)/d.Seconds())
	}
	fmt.Printf("| clients | lookups/s | p50 | p99 | p99.9 | max | requests |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range cfg.clients {
		r, err := measure(ctx, cfg, n)
		if err != nil {
			return fmt.Errorf("%d clients: %w", n, err)
		}
		fmt.Printf("| %d | %.0f | %s | %s | %s | %s | %d |\n", n, r.perSec, us(r.p50), us(r.p99), us(r.p999), us(r.max), r.count)
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// load writes every key once.
func load(ctx context.Context, cfg config) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.bootstrap), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(20000), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, int32(cfg.partitions), 1, nil, cfg.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return 0, fmt.Errorf("create topic: %w", err)
	}
	value := make([]byte, cfg.valueBytes)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	start := time.Now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := 0; i < cfg.keys; i++ {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: cfg.topic, Key: []byte(keyOf(i)), Value: value}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return time.Since(start), firstErr
}

type result struct {
	count               int
	perSec              float64
	p50, p99, p999, max time.Duration
}

// measure runs n clients for cfg.duration.
func measure(ctx context.Context, cfg config, n int) (result, error) {
	tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + cfg.httpAddr + "/v1/topics/" + cfg.topic + "/keys/"
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	lat := make([][]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			buf := make([]byte, 0, cfg.valueBytes+512)
			samples := make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				url := base + keyOf(rng.IntN(cfg.keys))
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				buf = buf[:0]
				for {
					if len(buf) == cap(buf) {
						buf = slices.Grow(buf, 512)
					}
					m, err := resp.Body.Read(buf[len(buf):cap(buf)])
					buf = buf[:len(buf)+m]
					if err == io.EOF {
						break
					}
					if err != nil {
						resp.Body.Close()
						errs <- err
						return
					}
				}
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusOK || len(buf) != cfg.valueBytes {
					errs <- fmt.Errorf("GET %s: status %d, %d bytes: %.200s", url, resp.StatusCode, len(buf), buf)
					return
				}
				samples = append(samples, d)
			}
			lat[w] = samples
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	var all []time.Duration
	for _, s := range lat {
		all = append(all, s...)
	}
	if len(all) == 0 {
		return result{}, errors.New("no lookups completed")
	}
	slices.Sort(all)
	return result{count: len(all), perSec: float64(len(all)) / elapsed.Seconds(),
		p50: harness.Quantile(all, 0.5), p99: harness.Quantile(all, 0.99), p999: harness.Quantile(all, 0.999),
		max: all[len(all)-1]}, nil
}
