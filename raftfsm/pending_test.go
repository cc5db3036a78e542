package raftfsm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPendingBudget: bytes are granted first come first served; a proposal
// larger than the budget goes alone; a waiter whose ctx ends, or whose node
// closes, leaves the line and lets the next one in.
func TestPendingBudget(t *testing.T) {
	const limit = 100
	var b pendingBudget
	ctx := context.Background()
	never := make(chan struct{})
	if err := b.acquire(ctx, 60, limit, never); err != nil {
		t.Fatal(err)
	}
	granted := make(chan int64, 4)
	wait := func(n int64, ctx context.Context, done <-chan struct{}) chan error {
		errc := make(chan error, 1)
		go func() {
			err := b.acquire(ctx, n, limit, done)
			if err == nil {
				granted <- n
			}
			errc <- err
		}()
		return errc
	}
	waitQueued := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b.mu.Lock()
			l := b.waiters.Len()
			b.mu.Unlock()
			if l == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters, want %d", l, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	expectGrant := func(want int64) {
		t.Helper()
		select {
		case n := <-granted:
			if n != want {
				t.Fatalf("granted %d, want %d", n, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d not granted", want)
		}
	}
	// 50 does not fit beside 60; 10 would, but waits its turn behind 50.
	big := wait(50, ctx, never)
	waitQueued(1)
	small := wait(10, ctx, never)
	waitQueued(2)
	select {
	case n := <-granted:
		t.Fatalf("granted %d while 60 of 100 are taken and 50 waits", n)
	default:
	}
	b.release(60)
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil {
		t.Fatal(err)
	}
	<-granted
	<-granted
	if count, used := b.stats(); count != 2 || used != 60 {
		t.Fatalf("stats = %d, %d; want 2, 60", count, used)
	}

	// A waiter whose ctx ends leaves the line; one whose node closes gets
	// ErrClosed.
	cctx, cancel := context.WithCancel(ctx)
	canceled := wait(200, cctx, never)
	waitQueued(1)
	closing := make(chan struct{})
	closed := wait(30, ctx, closing)
	waitQueued(2)
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter: %v", err)
	}
	if err := <-closed; err != nil { // 60 + 30 fit once 200 left the line
		t.Fatal(err)
	}
	expectGrant(30)
	b.release(30)
	blocker := wait(50, ctx, closing)
	waitQueued(1)
	close(closing)
	if err := <-blocker; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter of a closed node: %v", err)
	}

	// Larger than the whole budget: admitted once nothing else is pending.
	huge := wait(500, ctx, never)
	waitQueued(1)
	b.release(50)
	b.release(10)
	expectGrant(500)
	<-huge
	b.release(500)
	if count, used := b.stats(); count != 0 || used != 0 {
		t.Fatalf("stats = %d, %d after releasing everything", count, used)
	}
}

// TestPendingGauges: the pending gauges read the budget when scraped. Gauges
// set after each acquire and release (the first form) were left stale when
// two releases raced: each read the budget, and the older read was written
// last, so an idle node could report a proposal pending for good (the broker's
// flood test waited 30 s for zero and failed in CI).
func TestPendingGauges(t *testing.T) {
	b := &pendingBudget{}
	m, err := newMetrics(prometheus.NewRegistry(), b)
	if err != nil {
		t.Fatal(err)
	}
	gauges := func() (count, bytes float64) {
		return testutil.ToFloat64(m.pending), testutil.ToFloat64(m.pendingBytes)
	}
	never := make(chan struct{})
	for _, n := range []int64{30, 40} {
		if err := b.acquire(context.Background(), n, 100, never); err != nil {
			t.Fatal(err)
		}
	}
	if c, by := gauges(); c != 2 || by != 70 {
		t.Fatalf("gauges %v, %v with two proposals of 30 and 40 bytes, want 2, 70", c, by)
	}
	b.release(30)
	b.release(40)
	if c, by := gauges(); c != 0 || by != 0 {
		t.Fatalf("gauges %v, %v once both are released, want 0, 0", c, by)
	}
}
