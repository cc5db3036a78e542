package harness

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProduceConfig is the keyed produce workload of the benchmarks: Records
// records whose keys cycle over Keys distinct keys, one random value shared by
// every record, sent by one franz-go client with acks=all and idempotence
// (kgo's default), kgo's default compression (snappy).
type ProduceConfig struct {
	// Seeds are the Kafka host:port addresses the client starts from.
	Seeds []string
	// Topic receives every record; it must exist.
	Topic string
	// Records is how many records to produce; Keys how many distinct keys
	// they cycle over ("k0000…0", "k0000…1", …), starting at key number
	// FirstKey.
	Records, Keys, FirstKey int
	// KeyBytes (at least 8) and ValueBytes are the record sizes.
	KeyBytes, ValueBytes int
	// Linger is the producer's linger; MaxBuffered its buffer in records.
	Linger      time.Duration
	MaxBuffered int
	// Duration caps the run: no record is started after it, and records
	// still buffered then fail. 0 means no cap beyond ctx.
	Duration time.Duration
	// ClientOpts are extra client options (TLS, SASL).
	ClientOpts []kgo.Opt
}

// Validate reports the first setting Produce cannot run with.
func (c ProduceConfig) Validate() error {
	switch {
	case len(c.Seeds) == 0:
		return errors.New("no seed broker")
	case c.Topic == "":
		return errors.New("no topic")
	case c.Records <= 0:
		return errors.New("records must be positive")
	case c.Keys <= 0:
		return errors.New("keys must be positive")
	case c.FirstKey < 0:
		return errors.New("first key must not be negative")
	case c.KeyBytes < 8:
		return errors.New("key size must be at least 8 bytes")
	case c.ValueBytes < 0:
		return errors.New("value size must not be negative")
	case c.MaxBuffered <= 0:
		return errors.New("producer buffer must be positive")
	}
	return nil
}

// ProduceResult is what Produce measured.
type ProduceResult struct {
	// Records and Bytes (keys plus values) count acknowledged records.
	Records int64
	Bytes   int64
	// Elapsed runs from the first Produce call to the last promise.
	Elapsed time.Duration
	// P50 and P99 are per-record latencies from the Produce call to its
	// promise, which includes time waiting for room in the client's buffer.
	P50, P99 time.Duration
	// Failed counts records that were not acknowledged; FirstErr is the
	// first of their errors.
	Failed   int64
	FirstErr error
}

// RecordsPerSec is the acknowledged records per second.
func (r ProduceResult) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// MBPerSec is the acknowledged key and value bytes per second, in MB (1e6).
func (r ProduceResult) MBPerSec() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

// Produce runs the workload of cfg and returns its result. It fails when the
// configuration is invalid or no record was acknowledged; other failures are
// counted in the result.
func Produce(ctx context.Context, cfg ProduceConfig) (ProduceResult, error) {
	if err := cfg.Validate(); err != nil {
		return ProduceResult{}, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Seeds...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.Linger),
		kgo.MaxBufferedRecords(cfg.MaxBuffered),
	}, cfg.ClientOpts...)...,
	)
	if err != nil {
		return ProduceResult{}, err
	}
	defer cl.Close()

	value := make([]byte, cfg.ValueBytes)
	if _, err := rand.Read(value); err != nil {
		return ProduceResult{}, err
	}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, cfg.Records)
		res       ProduceResult
		wg        sync.WaitGroup
	)
	pctx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	keyFmt := fmt.Sprintf("k%%0%dd", cfg.KeyBytes-1)
	start := time.Now()
	for i := 0; i < cfg.Records && pctx.Err() == nil; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf(keyFmt, cfg.FirstKey+i%cfg.Keys)), Value: value}
		size := int64(len(r.Key) + len(r.Value))
		wg.Add(1)
		began := time.Now()
		cl.Produce(pctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			lat := time.Since(began)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if res.FirstErr == nil {
					res.FirstErr = err
				}
				return
			}
			latencies = append(latencies, lat)
			res.Bytes += size
			res.Records++
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if res.Records == 0 {
		return res, fmt.Errorf("no record acknowledged (first error: %v)", res.FirstErr)
	}
	slices.Sort(latencies)
	res.P50 = Quantile(latencies, 0.50)
	res.P99 = Quantile(latencies, 0.99)
	return res, nil
}
