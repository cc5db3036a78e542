// Command txn measures shardcache's transactional produce with franz-go and
// prints a markdown table: the throughput of -producers producers that each
// commit a transaction 1, 10 and 100 times a second (-rates), against the same
// producers without transactions (idempotent, kgo's default), in the same run;
// and the commit latency, p50 and p99.
//
// Each producer writes records as fast as its buffer lets it (keys cycle over
// -keys per producer, -value-bytes values, -partitions partitions). A
// transactional producer begins a transaction, produces until its interval
// (1/rate) is nearly over (less a moving average of its flush and commit),
// flushes, and commits; a commit that ends late starts the next transaction at
// once, so the table shows the achieved commit rate. Records count once their
// transaction has committed. Commit latency is the EndTxn
// round trip after the flush: EndTxn is answered once PrepareCommit is durable
// in __transaction_state (one Raft write), before the markers.
//
// Modes run interleaved, -duration each, -rounds times; the table shows each
// figure's median over the rounds (the latency quantiles are per round, then
// the median of those).
//
// Usage:
//
//	go run ./integration/bench/txn [flags]
//
// Flags:
//
//	-bootstrap     seed broker; empty starts ./bin/shardcache (or builds it)
//	               with a temporary data dir
//	-producers     concurrent producers, each its own client (default 4)
//	-rates         transactions per second per producer (default 1,10,100)
//	-partitions    partitions of the topic (default 12)
//	-value-bytes   value size (default 100)
//	-keys          distinct keys per producer (default 10000)
//	-duration      length of each mode's run (default 5s)
//	-rounds        interleaved rounds (default 3)
//	-max-buffered  each producer's buffer in records (default 1000)
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	bootstrap  string
	producers  int
	rates      []int
	partitions int
	valueBytes int
	keys       int
	duration   time.Duration
	rounds     int
	// maxBuffered is each producer's buffer in records: the most a flush
	// before a commit waits for.
	maxBuffered int
}

func main() {
	var cfg config
	var rates string
	flag.StringVar(&cfg.bootstrap, "bootstrap", "", "seed broker host:port (empty: start a local broker)")
	flag.IntVar(&cfg.producers, "producers", 4, "concurrent producers, each its own client")
	flag.StringVar(&rates, "rates", "1,10,100", "transactions per second per producer, comma-separated")
	flag.IntVar(&cfg.partitions, "partitions", 12, "partitions of the topic")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 100, "value size in bytes")
	flag.IntVar(&cfg.keys, "keys", 10000, "distinct keys per producer")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each mode's run")
	flag.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds")
	flag.IntVar(&cfg.maxBuffered, "max-buffered", 1000, "each producer's buffer in records (the most a flush before a commit waits for)")
	flag.Parse()
	var err error
	if cfg.rates, err = parseRates(rates); err != nil {
		log.Fatalf("bad -rates: %v", err)
	}
	if cfg.producers < 1 || cfg.partitions < 1 || cfg.valueBytes < 0 || cfg.keys < 1 || cfg.duration <= 0 || cfg.rounds < 1 || cfg.maxBuffered < 1 {
		log.Fatal("bad flags: need -producers, -partitions, -keys, -rounds >= 1, -value-bytes >= 0, -duration > 0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}

// parseRates reads "1,10,100": positive, at most 1000 (a 1 ms transaction).
func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r < 1 || r > 1000 {
			return nil, fmt.Errorf("%q is not a rate between 1 and 1000", f)
		}
		out = append(out, r)
	}
	return out, nil
}

// mode is one workload: rate 0 is non-transactional.
type mode struct{ rate int }

func (m mode) String() string {
	if m.rate == 0 {
		return "non-transactional"
	}
	return fmt.Sprintf("%d txn/s per producer", m.rate)
}

// result is one mode's run.
type result struct {
	records, bytes int64
	elapsed        time.Duration
	commits        []time.Duration // sorted
}

func (r result) recordsPerSec() float64 { return float64(r.records) / r.elapsed.Seconds() }
func (r result) mbPerSec() float64      { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }

func run(ctx context.Context, cfg config) error {
	addr, stop, err := harness.Bootstrap(ctx, cfg.bootstrap, "")
	if err != nil {
		return err
	}
	defer stop()
	admin, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer admin.Close()
	runID := time.Now().UnixNano()
	topic := fmt.Sprintf("bench-txn-%d", runID)
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, int32(cfg.partitions), 1, nil, topic); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	value := make([]byte, cfg.valueBytes)
	_, _ = rand.Read(value)
	modes := []mode{{0}}
	for _, r := range cfg.rates {
		modes = append(modes, mode{r})
	}
	results := make(map[mode][]result)
	for round := range cfg.rounds {
		for _, m := range modes {
			r, err := runMode(ctx, cfg, addr, topic, value, m, fmt.Sprintf("bench-txn-%d-%d-%d", runID, round, m.rate))
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, m, err)
			}
			log.Printf("round %d, %s: %.0f records/s, %d commits", round+1, m, r.recordsPerSec(), len(r.commits))
			results[m] = append(results[m], r)
		}
	}

	fmt.Printf("\nshardcache transactional produce: %d producers, %d partitions, %d-byte values, %s per mode, median of %d interleaved rounds\nload average at the end: %s\n\n",
		cfg.producers, cfg.partitions, cfg.valueBytes, cfg.duration, cfg.rounds, harness.LoadAverage())
	fmt.Println("| mode | commits/s per producer | records/s | MB/s | vs non-transactional | commit p50 | commit p99 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	base := harness.Median(results[modes[0]], result.recordsPerSec)
	for _, m := range modes {
		rs := results[m]
		rps := harness.Median(rs, result.recordsPerSec)
		if m.rate == 0 {
			fmt.Printf("| %s | - | %.0f | %.1f | 1.00 | - | - |\n", m, rps, harness.Median(rs, result.mbPerSec))
			continue
		}
		commitRate := harness.Median(rs, func(r result) float64 {
			return float64(len(r.commits)) / float64(cfg.producers) / r.elapsed.Seconds()
		})
		p50 := harness.Median(rs, func(r result) float64 { return float64(harness.Quantile(r.commits, 0.5)) })
		p99 := harness.Median(rs, func(r result) float64 { return float64(harness.Quantile(r.commits, 0.99)) })
		fmt.Printf("| %s | %.1f | %.0f | %.1f | %.2f | %s | %s |\n", m, commitRate, rps, harness.Median(rs, result.mbPerSec), rps/base,
			fmtDur(time.Duration(p50)), fmtDur(time.Duration(p99)))
	}
	return nil
}

// runMode runs cfg.producers producers in mode m for cfg.duration.
func runMode(ctx context.Context, cfg config, addr, topic string, value []byte, m mode, idPrefix string) (result, error) {
	var (
		records, bytes atomic.Int64
		mu             sync.Mutex
		commits        []time.Duration
		wg             sync.WaitGroup
		errs           = make([]error, cfg.producers)
	)
	clients := make([]*kgo.Client, cfg.producers)
	for i := range clients {
		opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.MaxBufferedRecords(cfg.maxBuffered)}
		if m.rate > 0 {
			opts = append(opts, kgo.TransactionalID(fmt.Sprintf("%s-%d", idPrefix, i)), kgo.TransactionTimeout(time.Minute))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return result{}, err
		}
		defer cl.Close()
		// Initialize the producer id before the clock starts.
		if _, _, err := cl.ProducerID(ctx); err != nil {
			return result{}, fmt.Errorf("producer %d: init producer id: %w", i, err)
		}
		clients[i] = cl
	}
	began := time.Now()
	end := began.Add(cfg.duration)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &producer{cl: cl, value: value, keys: cfg.keys, id: i, records: &records, bytes: &bytes, transactional: m.rate > 0}
			if m.rate == 0 {
				errs[i] = p.produceUntil(ctx, end)
				if err := cl.Flush(ctx); errs[i] == nil {
					errs[i] = err
				}
				return
			}
			interval := time.Second / time.Duration(m.rate)
			var mine []time.Duration
			// ending estimates a transaction's flush and commit (a moving
			// average), so that producing stops early enough to commit on time.
			var ending time.Duration
			for next := time.Now(); next.Before(end); {
				next = next.Add(interval)
				if err := cl.BeginTransaction(); err != nil {
					errs[i] = err
					return
				}
				if err := p.produceUntil(ctx, minTime(next.Add(-ending), end)); err != nil {
					errs[i] = err
					return
				}
				flushed := time.Now()
				if err := cl.Flush(ctx); err != nil {
					errs[i] = err
					return
				}
				start := time.Now()
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					errs[i] = fmt.Errorf("commit: %w", err)
					return
				}
				now := time.Now()
				mine = append(mine, now.Sub(start))
				ending = (3*ending + now.Sub(flushed)) / 4
				p.commit()
				if next.Before(now) {
					next = now // behind: the next transaction starts at once
				}
			}
			mu.Lock()
			commits = append(commits, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	if m.rate > 0 && len(commits) == 0 {
		return result{}, errors.New("no transaction committed")
	}
	slices.Sort(commits)
	return result{records: records.Load(), bytes: bytes.Load(), elapsed: elapsed, commits: commits}, nil
}

// producer is one client's produce loop. Records count once acknowledged
// (non-transactional) or once their transaction committed.
type producer struct {
	cl             *kgo.Client
	value          []byte
	keys, id, next int
	records, bytes *atomic.Int64
	// pending counts acknowledged records of the open transaction.
	pendingRecords, pendingBytes atomic.Int64
	transactional                bool
	firstErr                     atomic.Pointer[error]
}

// produceUntil produces records asynchronously until deadline, then returns
// the first produce error seen so far.
func (p *producer) produceUntil(ctx context.Context, deadline time.Time) error {
	for first := true; first || time.Now().Before(deadline); first = false { // one record at least: an empty transaction commits nothing
		key := []byte(fmt.Sprintf("p%d-k%08d", p.id, p.next%p.keys))
		p.next++
		size := int64(len(key) + len(p.value))
		p.cl.Produce(ctx, &kgo.Record{Key: key, Value: p.value}, func(_ *kgo.Record, err error) {
			if err != nil {
				p.firstErr.CompareAndSwap(nil, &err)
				return
			}
			if p.transactional {
				p.pendingRecords.Add(1)
				p.pendingBytes.Add(size)
			} else {
				p.records.Add(1)
				p.bytes.Add(size)
			}
		})
		if e := p.firstErr.Load(); e != nil {
			return *e
		}
	}
	if e := p.firstErr.Load(); e != nil {
		return *e
	}
	return ctx.Err()
}

// commit counts the committed transaction's records.
func (p *producer) commit() {
	p.records.Add(p.pendingRecords.Swap(0))
	p.bytes.Add(p.pendingBytes.Swap(0))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
}
