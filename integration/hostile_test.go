package integration

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/internal/hostileload"
)

// hostileRSSAllowance is what the broker process may hold beyond its memory
// budget (--max-inflight-bytes) under hostile load: 128 MiB of Go heap above
// the budget (the soft memory limit cmd/shardcache sets), and what lives
// outside the Go heap, measured at up to 350 MiB under this load's writes:
// Pebble's memtables (up to three of 64 MiB), block cache and compaction
// buffers, the binary, thread stacks; plus a margin. The README's "Limits and
// backpressure" paragraph documents it.
const hostileRSSAllowance = 640 << 20

// hostileDuration is how long the attack lasts; SHARDCACHE_HOSTILE_DURATION
// (a Go duration) changes it.
func hostileDuration(t *testing.T) time.Duration {
	if s := os.Getenv("SHARDCACHE_HOSTILE_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SHARDCACHE_HOSTILE_DURATION: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

// TestHostileLoad: 50 connections at once send decompression bombs of every
// codec, 16 MiB frames of array counts and slowloris trickles, while a
// well-behaved franz-go producer and consumer keep working: every record
// acknowledged during the attack is read back. The broker's resident memory,
// sampled throughout, stays under its memory budget plus
// hostileRSSAllowance. Nothing here is timed: the attack lasts a fixed time
// and the producer gets done what it gets done.
func TestHostileLoad(t *testing.T) {
	requireLocalBroker(t)
	if runtime.GOOS != "linux" {
		t.Skip("reads the broker's memory from /proc")
	}
	b := startBroker(t)
	pid := b.PID(t)
	adm := b.Admin(t)
	const bombTopic, calmTopic, bombPartitions = "hostile-bombs", "calm", 20
	createTopic(t, adm, bombTopic, bombPartitions, nil)
	createTopic(t, adm, calmTopic, 1, nil)
	idle, _, err := hostileload.ProcMemory(pid)
	if err != nil {
		t.Fatal(err)
	}

	consumer := b.Client(t, kgo.ConsumeTopics(calmTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var seenMu sync.Mutex
	seen := map[string]string{}
	consumeCtx, stopConsuming := context.WithCancel(context.Background())
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for consumeCtx.Err() == nil {
			fs := consumer.PollFetches(consumeCtx)
			seenMu.Lock()
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = string(r.Value) })
			seenMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stopConsuming()
		<-consumed
	})

	load, err := hostileload.Prepare(hostileload.Config{
		Addr:                 b.KafkaAddr,
		Topic:                bombTopic,
		Partitions:           bombPartitions,
		Bombs:                20,
		Arrays:               15,
		Slowloris:            15,
		MaxDecompressedBytes: broker.DefaultMaxDecompressedBytes,
		MaxRequestBytes:      broker.DefaultMaxRequestBytes,
		Logf:                 t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	attackCtx, endAttack := context.WithTimeout(context.Background(), hostileDuration(t))
	defer endAttack()
	sampler := hostileload.SampleRSS(attackCtx, pid, 50*time.Millisecond)
	var stats *hostileload.Stats
	attacked := make(chan struct{})
	go func() {
		defer close(attacked)
		stats = load.Run(attackCtx)
	}()

	// The well-behaved producer: batches of ten keyed records, each waited
	// for, for as long as the attack lasts.
	producer := b.Client(t)
	acked := map[string]string{}
	batches := 0
	for n := 0; attackCtx.Err() == nil; batches++ {
		var recs []*kgo.Record
		for i := 0; i < 10; i++ {
			key, value := fmt.Sprintf("calm-%07d", n), fmt.Sprintf("value-%d", n)
			recs = append(recs, kv(calmTopic, key, strp(value)))
			n++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := producer.ProduceSync(ctx, recs...).FirstErr()
		cancel()
		if err != nil {
			t.Fatalf("well-behaved produce during the attack: %v", err)
		}
		for _, r := range recs {
			acked[string(r.Key)] = string(r.Value)
		}
	}
	<-attacked
	peak, samples, err := sampler.Result()
	if err != nil {
		t.Fatalf("sampling RSS: %v", err)
	}
	_, hwm, err := hostileload.ProcMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attack: %v", stats)
	t.Logf("well-behaved producer: %d batches, %d records acknowledged during the attack", batches, len(acked))
	t.Logf("broker RSS: idle %s, peak sampled %s over %d samples, VmHWM %s; budget %s + allowance %s",
		hostileload.MiB(idle), hostileload.MiB(peak), samples, hostileload.MiB(hwm),
		hostileload.MiB(broker.DefaultMaxInflightBytes), hostileload.MiB(hostileRSSAllowance))

	if len(acked) == 0 {
		t.Fatal("no record of the well-behaved producer was acknowledged during the attack")
	}
	if stats.BombResponses.Load() == 0 || stats.ArrayFrames.Load() == 0 || stats.Slowloris.Load() == 0 {
		t.Fatalf("the attack did not run in full: %v", stats)
	}
	waitFor(t, time.Minute, 100*time.Millisecond, "the consumer reads every acknowledged record", func() error {
		seenMu.Lock()
		defer seenMu.Unlock()
		missing := 0
		for k, v := range acked {
			if seen[k] != v {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d records not read back", missing, len(acked))
		}
		return nil
	})
	for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_heap_released_bytes"} {
		if v, err := hostileload.Metric(b.HTTPAddr, m); err == nil {
			t.Logf("after the attack: %s %s", m, hostileload.MiB(int64(v)))
		}
	}
	if limit := int64(broker.DefaultMaxInflightBytes + hostileRSSAllowance); max(peak, hwm) > limit {
		t.Fatalf("broker RSS peaked at %s (VmHWM %s), above the budget plus allowance, %s",
			hostileload.MiB(peak), hostileload.MiB(hwm), hostileload.MiB(limit))
	}
	// Still serving; and once the requests of the attack's closed
	// connections have run out (a bomb may wait for memory up to its 30 s
	// produce timeout), nothing stays charged and the broker stops cleanly.
	produceSync(t, producer, kv(calmTopic, "after", strp("attack")))
	stopConsuming()
	<-consumed
	consumer.Close() // its long-polling fetch holds its request's memory
	waitFor(t, 2*time.Minute, 100*time.Millisecond, "the memory budget empties", func() error {
		v, err := hostileload.Metric(b.HTTPAddr, "shardcache_broker_inflight_bytes")
		if err == nil && v != 0 {
			err = fmt.Errorf("%s charged", hostileload.MiB(int64(v)))
		}
		return err
	})
}
