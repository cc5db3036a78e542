package raftfsm

import (
	"container/list"
	"context"
	"sync"
)

// Pending proposals. hashicorp/raft bounds its queue in entries (512 in the
// apply channel and 512 being stored), not bytes, and on a leader whose
// followers are slow its in-flight list grows without bound. A proposal whose
// caller gave up (a produce past its TimeoutMillis) stays in Raft until it is
// applied, and the client's retry adds another. So data-group proposals first
// take their encoded size plus proposalOverhead from a node-wide budget,
// Config.MaxPendingProposalBytes, and give it back only when Raft has finished
// with the entry (applied, or failed), not when the caller leaves. A proposal
// waits for room until its ctx ends: a producer that outruns the disk sees its
// latency rise and, past its timeout, REQUEST_TIMED_OUT, and the node's memory
// stays flat. Metadata proposals are small and rare and do not take part, so a
// produce flood never delays topic changes or registrations.

// proposalOverhead is charged per proposal beyond its bytes: the goroutine
// that waits for Raft's answer, Raft's future and log entry. It bounds the
// number of pending proposals to MaxPendingProposalBytes / 4 KiB.
const proposalOverhead = 4 << 10

// pendingBudget is a weighted semaphore over bytes, first come first served.
// A proposal larger than the whole budget is admitted alone, so it never waits
// forever. The zero value is ready; limit is passed on each acquire.
type pendingBudget struct {
	mu      sync.Mutex
	used    int64
	count   int
	waiters list.List // of *pendingWaiter, oldest first
}

type pendingWaiter struct {
	n     int64
	limit int64
	ready chan struct{} // closed once the bytes are taken for it
}

// fits reports whether n more bytes fit under limit; budget.mu is held.
func (b *pendingBudget) fits(n, limit int64) bool {
	return b.used == 0 || b.used+n <= limit
}

// acquire takes n bytes of a budget of limit, waiting in line until they fit,
// ctx ends (its error) or done closes (ErrClosed).
func (b *pendingBudget) acquire(ctx context.Context, n, limit int64, done <-chan struct{}) error {
	b.mu.Lock()
	if b.waiters.Len() == 0 && b.fits(n, limit) {
		b.used += n
		b.count++
		b.mu.Unlock()
		return nil
	}
	w := &pendingWaiter{n: n, limit: limit, ready: make(chan struct{})}
	e := b.waiters.PushBack(w)
	b.mu.Unlock()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-done:
		err = ErrClosed
	}
	b.mu.Lock()
	select {
	case <-w.ready:
		// Admitted meanwhile: give the bytes back.
		b.used -= n
		b.count--
	default:
		b.waiters.Remove(e)
	}
	b.admitLocked()
	b.mu.Unlock()
	return err
}

// release gives back n bytes taken by acquire.
func (b *pendingBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.count--
	b.admitLocked()
	b.mu.Unlock()
}

// admitLocked admits waiters in order while the first one fits.
func (b *pendingBudget) admitLocked() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*pendingWaiter)
		if !b.fits(w.n, w.limit) {
			return
		}
		b.used += w.n
		b.count++
		b.waiters.Remove(e)
		close(w.ready)
	}
}

// stats returns the pending proposals and their charged bytes.
func (b *pendingBudget) stats() (count int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count, b.used
}
