package integration

// Durability through process restarts: a graceful restart keeps everything, and a
// kill -9 never loses an acknowledged write nor duplicates an idempotent producer's
// retried batches.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRestartKeepsLatestValues(t *testing.T) {
	requireLocalBroker(t)
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 2, nil)
	cl := b.Client(t, kgo.DefaultProduceTopic(topic))

	const keys, rounds = 200, 3
	for round := range rounds {
		var recs []*kgo.Record
		for k := range keys {
			recs = append(recs, kv(topic, fmt.Sprintf("k%03d", k), strp(fmt.Sprintf("r%d", round))))
		}
		produceSync(t, cl, recs...)
	}
	// A deleted key stays deleted (the tombstone is still within delete.retention.ms).
	produceSync(t, cl, kv(topic, "k000", nil))
	endsBefore := endOffsets(t, b.Admin(t), topic)

	b.Stop(t)
	b.Start(t)

	if ends := endOffsets(t, b.Admin(t), topic); fmt.Sprint(ends) != fmt.Sprint(endsBefore) {
		t.Fatalf("high watermarks after restart %v, before %v", ends, endsBefore)
	}
	recs := consumeAll(t, b, topic)
	if len(recs) != keys {
		t.Fatalf("read %d records after restart, want %d (one per key):%s", len(recs), keys, describe(recs))
	}
	got := latestByKey(t, recs)
	if v, ok := got["k000"]; !ok || v != nil {
		t.Fatalf("k000 = %v after restart, want its tombstone", v)
	}
	for k := 1; k < keys; k++ {
		key := fmt.Sprintf("k%03d", k)
		if v := got[key]; v == nil || *v != fmt.Sprintf("r%d", rounds-1) {
			t.Fatalf("%s = %v after restart, want r%d", key, v, rounds-1)
		}
	}
	// The restarted broker still takes writes, after the old offsets.
	produceSync(t, cl, kv(topic, "k001", strp("after-restart")))
	if got := latestByKey(t, consumeAll(t, b, topic))["k001"]; got == nil || *got != "after-restart" {
		t.Fatalf("k001 = %v after a write on the restarted broker", got)
	}
}

// ackLog records which versions of which keys were acknowledged.
type ackLog struct {
	mu     sync.Mutex
	acked  map[string]int // key -> highest acknowledged version
	sent   map[string]int // key -> highest version handed to the producer
	nSent  int
	nAcked int
	nFail  int
	errs   map[string]int
}

func newAckLog() *ackLog {
	return &ackLog{acked: map[string]int{}, sent: map[string]int{}, errs: map[string]int{}}
}

func (l *ackLog) send(key string, version int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nSent++
	if version > l.sent[key] {
		l.sent[key] = version
	}
}

func (l *ackLog) done(key string, version int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.nFail++
		l.errs[err.Error()]++
		return
	}
	l.nAcked++
	if version > l.acked[key] {
		l.acked[key] = version
	}
}

func (l *ackLog) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nAcked
}

func (l *ackLog) counts() (sent, acked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nSent, l.nAcked
}

// TestKillDuringProduceLoadLosesNoAcknowledgedWrite kills the broker with SIGKILL
// while several goroutines produce with acks=all, restarts it, and checks that every
// key holds a version at least as new as the newest acknowledged one.
func TestKillDuringProduceLoadLosesNoAcknowledgedWrite(t *testing.T) {
	const writers, keysPerWriter, inflightPerWriter = 4, 50, 500
	requireLocalBroker(t)
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 4, nil)
	cl := b.Client(t,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(45*time.Second),
		kgo.MetadataMinAge(100*time.Millisecond), // find the restarted broker quickly
		// Room for every writer's in-flight records, so that Produce never
		// blocks on a buffer the writers share: a writer starved of it
		// would get no key acknowledged.
		kgo.MaxBufferedRecords(writers*inflightPerWriter+1),
	)

	acks := newAckLog()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inflight := make(chan struct{}, inflightPerWriter)
			for version := 1; ; version++ {
				for k := range keysPerWriter {
					select {
					case inflight <- struct{}{}:
					case <-ctx.Done():
						return
					}
					key := fmt.Sprintf("w%d-k%02d", w, k)
					acks.send(key, version)
					r := kv(topic, key, strp(strconv.Itoa(version)))
					cl.Produce(ctx, r, func(r *kgo.Record, err error) {
						acks.done(key, version, err)
						<-inflight
					})
				}
			}
		}()
	}

	// Load for a while, kill -9 mid-stream, restart, load a little more.
	// Every key acknowledged at least once before the kill, so the check
	// below covers every key.
	waitFor(t, 30*time.Second, 10*time.Millisecond, "first acknowledgements", func() error {
		acks.mu.Lock()
		defer acks.mu.Unlock()
		if n, k := acks.nAcked, len(acks.acked); n < 2000 || k < writers*keysPerWriter {
			return fmt.Errorf("%d acknowledged, %d of %d keys", n, k, writers*keysPerWriter)
		}
		return nil
	})
	b.Kill(t)
	sentAtKill, ackedAtKill := acks.counts()
	if sentAtKill == ackedAtKill {
		t.Fatalf("nothing was in flight at the kill; the test did not exercise it")
	}
	b.Start(t)
	waitFor(t, 60*time.Second, 10*time.Millisecond, "acknowledgements after restart", func() error {
		if n := acks.ackedCount(); n < ackedAtKill+2000 {
			return fmt.Errorf("%d acknowledged, %d at kill", n, ackedAtKill)
		}
		return nil
	})
	stop()
	wg.Wait()
	flushCtx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cl.Flush(flushCtx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	acks.mu.Lock()
	defer acks.mu.Unlock()
	t.Logf("acknowledged %d records (%d before the kill), %d failed: %v", acks.nAcked, ackedAtKill, acks.nFail, acks.errs)

	got := latestByKey(t, consumeAll(t, b, topic))
	for key, acked := range acks.acked {
		v := got[key]
		if v == nil {
			t.Errorf("%s: acknowledged up to version %d, missing after kill -9 and restart", key, acked)
			continue
		}
		n, err := strconv.Atoi(*v)
		if err != nil {
			t.Fatalf("%s: value %q", key, *v)
		}
		if n < acked || n > acks.sent[key] {
			t.Errorf("%s: read version %d, acknowledged up to %d, sent up to %d", key, n, acked, acks.sent[key])
		}
	}
	if len(acks.acked) != writers*keysPerWriter {
		t.Fatalf("only %d of %d keys acknowledged", len(acks.acked), writers*keysPerWriter)
	}
}

// TestIdempotentProducerAcrossKill produces unique records with kgo's default
// idempotent producer to a delete-policy topic (so duplicates would be kept, not
// compacted away), kills the broker with SIGKILL while the second half is in flight,
// restarts it, and checks every acknowledged record is there exactly once and no
// record appears twice.
func TestIdempotentProducerAcrossKill(t *testing.T) {
	requireLocalBroker(t)
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 2, map[string]string{"cleanup.policy": "delete"})
	cl := b.Client(t,
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(45*time.Second),
		kgo.MetadataMinAge(100*time.Millisecond), // find the restarted broker quickly
		kgo.MaxBufferedRecords(1000),
	)

	const half = 3000
	var acked sync.Map // value -> true
	var nSent, nAcked, nFailed atomic.Int64
	var promises sync.WaitGroup
	produce := func(i int) {
		v := fmt.Sprintf("rec-%06d", i)
		promises.Add(1)
		nSent.Add(1)
		cl.Produce(context.Background(), kv(topic, v, &v), func(_ *kgo.Record, err error) {
			defer promises.Done()
			if err != nil {
				nFailed.Add(1)
				t.Logf("%s not acknowledged: %v", v, err)
				return
			}
			acked.Store(v, true)
			nAcked.Add(1)
		})
	}

	for i := range half {
		produce(i)
	}
	promises.Wait()
	if n := nAcked.Load(); n != half {
		t.Fatalf("first half: %d of %d acknowledged", n, half)
	}

	// The second half runs until stopped; the kill lands while records are in flight.
	stop := make(chan struct{})
	var loader sync.WaitGroup
	loader.Add(1)
	go func() {
		defer loader.Done()
		for i := half; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			produce(i)
		}
	}()
	waitFor(t, 30*time.Second, 5*time.Millisecond, "part of the second half acknowledged", func() error {
		if n := nAcked.Load(); n < half+500 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	b.Kill(t)
	sentAtKill, ackedAtKill := nSent.Load(), nAcked.Load()
	b.Start(t)
	waitFor(t, 60*time.Second, 5*time.Millisecond, "acknowledgements after the restart", func() error {
		if n := nAcked.Load(); n < sentAtKill+500 {
			return fmt.Errorf("%d acknowledged, %d sent before the kill", n, sentAtKill)
		}
		return nil
	})
	close(stop)
	loader.Wait()
	promises.Wait()
	t.Logf("sent %d, acknowledged %d (at the kill: %d sent, %d acknowledged), failed %d",
		nSent.Load(), nAcked.Load(), sentAtKill, ackedAtKill, nFailed.Load())
	if sentAtKill == ackedAtKill {
		t.Fatalf("nothing was in flight at the kill; the test did not exercise retries")
	}

	var recs []*kgo.Record
	for p := range int32(2) {
		recs = append(recs, fetchFrom(t, cl, b.Admin(t), topic, p, 0, 20).Records...)
	}
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Value)]++
	}
	var dups []string
	for v, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s x%d", v, n))
		}
	}
	if len(dups) > 0 {
		t.Errorf("%d records duplicated: %s", len(dups), strings.Join(dups[:min(len(dups), 20)], ", "))
	}
	var missing []string
	acked.Range(func(k, _ any) bool {
		if seen[k.(string)] == 0 {
			missing = append(missing, k.(string))
		}
		return true
	})
	if len(missing) > 0 {
		t.Errorf("%d acknowledged records missing, e.g. %v", len(missing), missing[:min(len(missing), 20)])
	}
}
