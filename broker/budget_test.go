package broker

import (
	"context"
	"errors"
	"testing"
	"time"
)

// acquireAsync starts acquire on its own goroutine and returns the channel
// its result arrives on.
func acquireAsync(b *budget, c budgetClass, n, held int64) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.acquire(context.Background(), c, n, held) }()
	return done
}

// waitQueued waits (bounded) until n acquisitions of class c are waiting.
func waitQueued(t *testing.T, b *budget, c budgetClass, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := b.queues[c].Len()
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s acquisitions waiting, want %d", got, c, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func expectPending(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("acquire returned %v, want it still waiting", err)
	default:
	}
}

func expectResult(t *testing.T, done <-chan error, want error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, want) {
			t.Fatalf("acquire = %v, want %v", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acquire still waiting")
	}
}

func TestBudgetBackpressureBlocksThenProceeds(t *testing.T) {
	b := newBudget(100, 50)
	if err := b.acquire(t.Context(), classRead, 40, 0); err != nil {
		t.Fatal(err)
	}
	done := acquireAsync(b, classRead, 20, 0) // readers would hold 60 > 50: waits
	waitQueued(t, b, classRead, 1)
	expectPending(t, done)
	b.releaseReading(40)
	expectResult(t, done, nil)
	if got := b.inUse(); got != 20 {
		t.Fatalf("in use %d, want 20", got)
	}
}

func TestBudgetRefusesWhatCanNeverFit(t *testing.T) {
	b := newBudget(100, 60)
	for _, tt := range []struct {
		class budgetClass
		n     int64
		held  int64
	}{
		{classRead, 61, 0},
		{classRead, 30, 31}, // with what the reader holds already
		{classWork, 41, 0},  // work may use capacity-readLimit at most
	} {
		if err := b.acquire(t.Context(), tt.class, tt.n, tt.held); !errors.Is(err, errBudgetTooLarge) {
			t.Errorf("%s %d (holding %d): err = %v, want errBudgetTooLarge", tt.class, tt.n, tt.held, err)
		}
	}
	if b.inUse() != 0 {
		t.Fatalf("in use %d after refusals", b.inUse())
	}
}

func TestBudgetFirstInFirstOut(t *testing.T) {
	b := newBudget(100, 50)
	b.bypassAge = 0 // no passing
	_ = b.acquire(t.Context(), classRead, 50, 0)
	big := acquireAsync(b, classRead, 40, 0)
	waitQueued(t, b, classRead, 1)
	small := acquireAsync(b, classRead, 5, 0)
	waitQueued(t, b, classRead, 2)
	b.releaseReading(20) // room for small, not for big: small still waits its turn
	expectPending(t, small)
	b.releaseReading(30)
	expectResult(t, big, nil)
	expectResult(t, small, nil)
}

// TestBudgetSmallPassLargeForAWhile: a small acquisition passes a large one
// that waits, unless the large one has waited bypassAge already.
func TestBudgetSmallPassLargeForAWhile(t *testing.T) {
	b := newBudget(100, 50)
	b.force(60)
	big := acquireAsync(b, classWork, 50, 0)
	waitQueued(t, b, classWork, 1)
	if err := b.acquire(t.Context(), classWork, 10, 0); err != nil {
		t.Fatalf("small acquisition behind a large one: %v", err)
	}
	b.bypassAge = 0 // the large one has now waited long enough
	small := acquireAsync(b, classWork, 10, 0)
	waitQueued(t, b, classWork, 2)
	b.release(20)
	expectPending(t, small) // 50 in use: room for small, not for big
	b.release(50)
	expectResult(t, big, nil)
	expectResult(t, small, nil)
}

// TestBudgetWorkDoesNotWaitForReaders checks the deadlock argument of
// budget.go: readers can fill their share, and work on requests already read
// still gets memory; readers that fit are not held up by waiting work.
func TestBudgetWorkDoesNotWaitForReaders(t *testing.T) {
	b := newBudget(100, 50)
	_ = b.acquire(t.Context(), classRead, 50, 0)
	reader := acquireAsync(b, classRead, 10, 0)
	waitQueued(t, b, classRead, 1)
	if err := b.acquire(t.Context(), classWork, 50, 0); err != nil {
		t.Fatalf("work acquisition with readers full: %v", err)
	}
	// The budget is full; the next work acquisition waits, and gets memory
	// before the reader once memory is released.
	work := acquireAsync(b, classWork, 30, 0)
	waitQueued(t, b, classWork, 1)
	b.release(50) // the first work ends
	expectResult(t, work, nil)
	expectPending(t, reader) // readers hold 50 already
	b.handOff(50)
	b.releaseRead(50) // the frame held from the start is served
	expectResult(t, reader, nil)

	// Work waiting for much does not keep a reader that fits out.
	b.force(50)
	large := acquireAsync(b, classWork, 40, 0)
	waitQueued(t, b, classWork, 1)
	if err := b.acquire(t.Context(), classRead, 5, 0); err != nil {
		t.Fatalf("reader behind waiting work: %v", err)
	}
	b.release(50)
	expectResult(t, large, nil)
}

func TestBudgetForceDelaysAcquisitions(t *testing.T) {
	b := newBudget(100, 50)
	b.force(120) // a response larger than the whole budget is already built
	done := acquireAsync(b, classWork, 10, 0)
	waitQueued(t, b, classWork, 1)
	b.release(120)
	expectResult(t, done, nil)
}

func TestBudgetContextEndsWait(t *testing.T) {
	b := newBudget(100, 50)
	_ = b.acquire(t.Context(), classRead, 50, 0)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx, classRead, 10, 0) }()
	waitQueued(t, b, classRead, 1)
	cancel()
	expectResult(t, done, context.Canceled)
	b.releaseReading(50)
	if b.inUse() != 0 {
		t.Fatalf("in use %d, want 0: a cancelled wait must not stay charged", b.inUse())
	}
}

// stuckBudget is a budget whose preemption runs only when the test calls
// preemptIfStuck, as the grace timer would.
func stuckBudget(capacity, readLimit int64) *budget {
	b := newBudget(capacity, readLimit)
	b.preemptGrace = time.Hour
	b.bypassAge = 0
	return b
}

// TestBudgetPreemptsReadersWaitingOnEachOther: three readers each hold part
// of a frame and wait for room for the rest; nothing else holds memory, so
// none would ever proceed. The one holding the most gives up.
func TestBudgetPreemptsReadersWaitingOnEachOther(t *testing.T) {
	b := stuckBudget(100, 60)
	for _, n := range []int64{10, 30, 20} {
		_ = b.acquire(t.Context(), classRead, n, 0)
	}
	a := acquireAsync(b, classRead, 20, 10)
	waitQueued(t, b, classRead, 1)
	c := acquireAsync(b, classRead, 20, 20)
	waitQueued(t, b, classRead, 2)
	big := acquireAsync(b, classRead, 20, 30)
	waitQueued(t, b, classRead, 3)
	b.preemptIfStuck() // the grace has passed
	expectResult(t, big, errBudgetPreempted)
	expectPending(t, a)
	b.releaseReading(30) // the preempted reader closes its connection
	expectResult(t, a, nil)
	expectPending(t, c) // 10+20+20 = 50, +20 > 60
	b.handOff(30)       // a's frame is complete and handed over...
	expectPending(t, c)
	b.releaseRead(30) // ...and served
	expectResult(t, c, nil)
}

// TestBudgetPreemptsPastTricklers: a slowloris reader holds part of a frame
// and waits for its client, not for memory; it releases nothing soon, so it
// does not stop the budget from preempting a waiting reader. Preemption frees
// as much as the first in line needs.
func TestBudgetPreemptsPastTricklers(t *testing.T) {
	b := stuckBudget(100, 60)
	_ = b.acquire(t.Context(), classRead, 2, 0)  // the trickler's start
	_ = b.acquire(t.Context(), classRead, 30, 0) // a frame half read
	_ = b.acquire(t.Context(), classRead, 20, 0) // another
	_ = b.acquire(t.Context(), classRead, 8, 0)  // and a small one
	a := acquireAsync(b, classRead, 30, 30)
	waitQueued(t, b, classRead, 1)
	c := acquireAsync(b, classRead, 20, 20)
	waitQueued(t, b, classRead, 2)
	s := acquireAsync(b, classRead, 8, 8)
	waitQueued(t, b, classRead, 3)
	b.preemptIfStuck()
	// a, first in line, needs 30: preempting a itself (holding the most)
	// frees 30 and removes its need; c and s then fit once a lets go.
	expectResult(t, a, errBudgetPreempted)
	expectPending(t, c)
	b.releaseReading(30)
	expectResult(t, c, nil)
	expectResult(t, s, nil)
}

// TestBudgetNoPreemptionWhileFramesArrive: readers that are not stuck (here
// the grace passes with a handler holding memory) are left alone.
func TestBudgetNoPreemptionWhileFramesArrive(t *testing.T) {
	b := newBudget(100, 60)
	b.preemptGrace = time.Millisecond
	_ = b.acquire(t.Context(), classRead, 40, 0) // r's frame so far
	_ = b.acquire(t.Context(), classRead, 15, 0) // another frame
	_ = b.acquire(t.Context(), classWork, 20, 0) // a handler's batch
	r := acquireAsync(b, classRead, 10, 40)
	waitQueued(t, b, classRead, 1)
	b.preemptIfStuck()
	expectPending(t, r)
	b.releaseReading(15)
	expectResult(t, r, nil)
}

func TestBudgetAcquireUpTo(t *testing.T) {
	b := newBudget(100, 50)
	_ = b.acquire(t.Context(), classRead, 40, 0)
	_ = b.acquire(t.Context(), classWork, 30, 0)
	got, err := b.acquireUpTo(t.Context(), 10, 60)
	if err != nil || got != 30 {
		t.Fatalf("acquireUpTo = %d, %v; want the 30 left", got, err)
	}
	done := make(chan int64, 1)
	go func() {
		n, _ := b.acquireUpTo(context.Background(), 10, 60)
		done <- n
	}()
	waitQueued(t, b, classWork, 1)
	b.release(30)
	if n := <-done; n != 10 {
		t.Fatalf("acquireUpTo after waiting = %d, want the least, 10", n)
	}
}
