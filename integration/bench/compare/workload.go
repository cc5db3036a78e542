package main

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// workload is one client load, run the same way against both brokers: Keys
// distinct keys each written Versions times (key 0..Keys-1, then again), to a
// new compacted topic of Partitions partitions.
type workload struct {
	Name       string
	Keys       int
	Versions   int
	ValueBytes int
	Partitions int
	Codec      kgo.CompressionCodec
	CodecName  string
}

func (w workload) records() int { return w.Keys * w.Versions }

// sample is what one run of a workload against one broker measured.
type sample struct {
	produced     int64
	produceSecs  float64
	p50, p99     time.Duration // Produce request round trips
	readRecords  int64
	readSecs     float64
	dataDirBytes int64
	// dataDirIdleBytes is the growth again, -idle-wait after the produce.
	dataDirIdleBytes int64
	rssBytes         int64
	// produceCPU and readCPU are the broker process's CPU time (user and
	// system, in clock ticks of 10 ms) over the produce and the full read.
	produceCPU, readCPU time.Duration
}

// clientSettings are the producer settings both brokers get.
type clientSettings struct {
	linger      time.Duration
	maxBuffered int
	keyBytes    int
	timeout     time.Duration
}

// maxPartitionsPerRequest is how many partitions one CreateTopics or
// CreatePartitions request asks for: Kafka's controller refuses an operation
// of more than 10,000 metadata records (POLICY_VIOLATION), and a topic's record
// and its partitions' records count together.
const maxPartitionsPerRequest = 5_000

// createTopic creates topic with cleanup.policy=compact and replication
// factor 1, then grows it to partitions in steps of maxPartitionsPerRequest:
// the same requests on both brokers.
func createTopic(ctx context.Context, addr, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	policy := "compact"
	n := min(partitions, maxPartitionsPerRequest)
	resp, err := adm.CreateTopic(cctx, int32(n), 1, map[string]*string{"cleanup.policy": &policy}, topic)
	if err == nil {
		err = resp.Err
	}
	for err == nil && n < partitions {
		n = min(partitions, n+maxPartitionsPerRequest)
		var rs kadm.CreatePartitionsResponses
		if rs, err = adm.UpdatePartitions(cctx, n, topic); err == nil {
			err = rs.Error()
		}
	}
	if err != nil {
		return fmt.Errorf("create topic %s (%d of %d partitions): %w", topic, n, partitions, err)
	}
	// Produce starts once every partition answers ListOffsets: Kafka's broker
	// creates a new topic's logs after CreateTopics returns, and a producer
	// started earlier would time Kafka's partition creation, not its writes.
	if _, err := endOffsets(cctx, cl, topic); err != nil {
		return fmt.Errorf("topic %s not ready: %w", topic, err)
	}
	return nil
}

// endOffsets lists topic's end offsets, asking again every 100 ms while the
// broker answers a retriable error (NOT_LEADER_FOR_PARTITION from a broker not
// yet leading freshly created partitions) until ctx ends.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (kadm.ListedOffsets, error) {
	for {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || !kerr.IsRetriable(err) {
			return ends, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// produce writes w's records to topic with one franz-go client: acks=all,
// idempotent (kgo's default), codec w.Codec, linger and a buffer of
// maxBuffered records. Produce blocks while the buffer is full, so the
// client never queues more than maxBuffered records. Latency is each Produce
// request's round trip (franz-go's BrokerE2E: from writing the request to
// reading its response), which is the broker's time plus loopback, not time
// spent queueing in the client.
func produce(ctx context.Context, addr, topic string, w workload, cs clientSettings) (sample, error) {
	var (
		mu   sync.Mutex
		rtts []time.Duration
	)
	hook := e2eHook(func(d time.Duration) {
		mu.Lock()
		rtts = append(rtts, d)
		mu.Unlock()
	})
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cs.linger),
		kgo.MaxBufferedRecords(cs.maxBuffered),
		kgo.ProducerBatchCompression(w.Codec),
		kgo.WithHooks(hook),
	)
	if err != nil {
		return sample{}, err
	}
	defer cl.Close()
	value := make([]byte, w.ValueBytes)
	if _, err := crand.Read(value); err != nil {
		return sample{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, cs.timeout)
	defer cancel()
	var (
		wg       sync.WaitGroup
		failed   int64
		acked    int64
		firstErr error
	)
	keyFmt := fmt.Sprintf("k%%0%dd", cs.keyBytes-1)
	n := w.records()
	start := time.Now()
	for i := 0; i < n && pctx.Err() == nil; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf(keyFmt, i%w.Keys)), Value: value}
		wg.Add(1)
		cl.Produce(pctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			acked++
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed > 0 || acked != int64(n) {
		return sample{}, fmt.Errorf("%d of %d records acknowledged in %v (first error: %v)", acked, n, cs.timeout, firstErr)
	}
	slices.Sort(rtts)
	s := sample{produced: acked, produceSecs: elapsed.Seconds()}
	if len(rtts) > 0 {
		s.p50 = harness.Quantile(rtts, 0.50)
		s.p99 = harness.Quantile(rtts, 0.99)
	}
	return s, nil
}

// e2eHook calls f with the round trip of every Produce request.
type e2eHook func(time.Duration)

func (h e2eHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key == 0 && e2e.Err() == nil {
		h(e2e.DurationE2E())
	}
}

// readAll is the GlobalKTable-style restore: a new consumer without a group
// assigns every partition of topic from the earliest offset and reads until
// each partition reaches the end offset listed before it started. It returns
// the records read and the seconds from the client's creation to the last one.
func readAll(ctx context.Context, addr, topic string, timeout time.Duration) (int64, float64, error) {
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return 0, 0, err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	ends, err := endOffsets(lctx, adm, topic)
	cancel()
	adm.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	return harness.ReadToEnd(ctx, addr, topic, ends, timeout)
}
