package broker

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The memory budget (Config.MaxInflightBytes) is one weighted semaphore that
// every connection shares. It is charged with:
//
//   - the bytes of request frames, as their buffers grow while they arrive,
//     and the estimated size of their decoded form (walk.go), from the moment
//     they are read until their handler returns;
//   - the memory a handler needs for work on a request already read: a
//     produce batch being decompressed, decoded and proposed
//     (batch_memory.go), a fetch response being built (fetch_memory.go);
//   - encoded responses until they are written (force: they exist already;
//     write deadlines bound how long they stay charged).
//
// Acquisitions come in two classes:
//
//   - classRead, used by connection readers. What readers hold in all may
//     not pass readLimit (the larger of MaxRequestBytes and a quarter of
//     MaxInflightBytes), nor the whole budget with everything else. A reader
//     that cannot be admitted stops reading its socket, so TCP pushes back
//     on the client.
//   - classWork, used by handlers for requests already read, may use the
//     whole budget and is served first when memory is released.
//
// Why two classes: a handler waiting for work memory holds its request's
// frame. If frames could take the whole budget, handlers holding frames could
// wait for each other forever. Frames never hold more than readLimit, so once
// the work in flight finishes (it needs nothing more from the budget) and
// responses are written, at least MaxInflightBytes-readLimit is free and any
// work acquisition of at most that size is admitted. A larger one can never
// be guaranteed and is refused with errBudgetTooLarge.
//
// Each class is served first in, first out, with one exception: while the
// first in line waits for a large amount, acquisitions of at most bypassMax
// bytes that fit may pass it, for bypassAge after it started waiting, so a
// well-behaved client's small requests are not held up behind a flood of
// large ones for longer than that.
//
// Readers can still wait on each other: a reader in the middle of a frame
// holds what has arrived and waits for room for the rest. Readers' charges
// count as "reading" until the reader hands its request over (handOff):
// until then nothing guarantees they will be released soon, since a reader
// that is not waiting for memory may be waiting for a client that trickles.
// When every byte charged has been reading for preemptGrace while a reader
// waits (frames arriving at full speed complete in less), the budget preempts
// the waiting readers holding the most, as many as it takes for the first in
// line to fit: their acquires fail with errBudgetPreempted and their
// connections are closed.

// budgetClass orders acquisitions; see the file comment.
type budgetClass int

const (
	classRead budgetClass = iota
	classWork
	numBudgetClasses
)

func (c budgetClass) String() string {
	if c == classWork {
		return "work"
	}
	return "read"
}

var (
	// errBudgetTooLarge: the acquisition can never be admitted.
	errBudgetTooLarge = errors.New("larger than the memory budget allows")
	// errBudgetPreempted: a waiting reader was chosen to give up its bytes so
	// that other readers can finish.
	errBudgetPreempted = errors.New("memory budget full of partly read requests")
)

const (
	// defaultPreemptGrace is budget.preemptGrace.
	defaultPreemptGrace = 100 * time.Millisecond
	// bypassMax is the largest acquisition that may pass a waiting one.
	bypassMax = 256 << 10
	// defaultBypassAge is budget.bypassAge.
	defaultBypassAge = time.Second
)

// budget is a weighted semaphore with two classes (see above). Safe for
// concurrent use.
type budget struct {
	capacity  int64
	readLimit int64
	// onChange is called under mu with each new total, onWait each time an
	// acquisition has to wait; either may be nil. Set before first use.
	onChange func(used int64)
	onWait   func(budgetClass)
	// preemptGrace is how long readers may be stuck before preemption;
	// bypassAge how long small acquisitions may pass a waiting one.
	preemptGrace time.Duration
	bypassAge    time.Duration

	mu     sync.Mutex
	used   int64
	queues [numBudgetClasses]list.List // of *budgetWaiter
	// readHeld is what readers hold (classRead charges not yet released);
	// reading the part of it not yet handed over to a processor.
	readHeld     int64
	reading      int64
	preemptTimer *time.Timer // armed while readers are stuck
}

type budgetWaiter struct {
	n     int64
	held  int64
	since time.Time
	done  chan error // buffered; receives nil (granted) or an error
}

func newBudget(capacity, readLimit int64) *budget {
	return &budget{capacity: capacity, readLimit: readLimit,
		preemptGrace: defaultPreemptGrace, bypassAge: defaultBypassAge}
}

// maxAcquire is the largest acquisition of class c that is ever admitted by a
// caller already holding held bytes of classRead (held is ignored for
// classWork, whose holders' frames are counted in readLimit).
func (b *budget) maxAcquire(c budgetClass, held int64) int64 {
	if c == classWork {
		return b.capacity - b.readLimit
	}
	return b.readLimit - held
}

// fits reports whether n more bytes of class c may be charged now.
func (b *budget) fits(c budgetClass, n int64) bool {
	if c == classRead && b.readHeld+n > b.readLimit {
		return false
	}
	return b.used+n <= b.capacity
}

// acquire charges n bytes of class c, waiting while they do not fit. held
// is what the caller already holds in classRead (for readers, the part of a
// frame that has arrived); it is used to refuse what can never fit and to
// choose a reader to preempt. Readers hand their charge off (handOff) and
// give it back with releaseRead, or give it back directly with
// releaseReading; work gives back with release. It returns
// errBudgetTooLarge at once for an acquisition that can never be admitted,
// errBudgetPreempted (readers only), or ctx's error; on error nothing is
// charged.
func (b *budget) acquire(ctx context.Context, c budgetClass, n, held int64) error {
	if n < 0 {
		panic("broker: negative budget acquisition")
	}
	if n > b.maxAcquire(c, held) {
		return fmt.Errorf("%w: %d bytes needed, at most %d available", errBudgetTooLarge, n, max(b.maxAcquire(c, held), 0))
	}
	b.mu.Lock()
	if b.queues[c].Len() == 0 && b.fits(c, n) {
		b.grant(c, n)
		b.mu.Unlock()
		return nil
	}
	if b.onWait != nil {
		b.onWait(c)
	}
	w := &budgetWaiter{n: n, held: held, since: time.Now(), done: make(chan error, 1)}
	elem := b.queues[c].PushBack(w)
	b.notify()
	b.mu.Unlock()

	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case err := <-w.done:
		// Granted (or preempted) just as ctx ended: keep the grant, it is
		// already charged and the caller would only retry.
		b.mu.Unlock()
		return err
	default:
	}
	b.queues[c].Remove(elem)
	b.notify()
	b.mu.Unlock()
	return ctx.Err()
}

// acquireUpTo charges between least and most bytes of work: as much of most
// as fits without waiting, else (waiting like acquire) least. It returns
// what it charged.
func (b *budget) acquireUpTo(ctx context.Context, least, most int64) (int64, error) {
	b.mu.Lock()
	if room := b.capacity - b.used; b.queues[classWork].Len() == 0 && room >= least {
		n := min(most, room)
		b.grant(classWork, n)
		b.mu.Unlock()
		return n, nil
	}
	b.mu.Unlock()
	if err := b.acquire(ctx, classWork, least, 0); err != nil {
		return 0, err
	}
	return least, nil
}

// tryAcquire charges n bytes of work if that is possible without waiting.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queues[classWork].Len() > 0 || !b.fits(classWork, n) {
		return false
	}
	b.grant(classWork, n)
	return true
}

// tryAcquireSpare charges n bytes of work if that is possible without
// waiting and leaves at least half the budget free: for memory that is only
// worth holding when nothing else needs it (fetch_readahead.go).
func (b *budget) tryAcquireSpare(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queues[classWork].Len() > 0 || b.used+n > b.capacity/2 || !b.fits(classWork, n) {
		return false
	}
	b.grant(classWork, n)
	return true
}

// force charges n bytes without waiting, whatever the limit: for memory that
// already exists, such as an encoded response. It delays later acquisitions
// until it is released (release).
func (b *budget) force(n int64) {
	b.mu.Lock()
	b.add(n)
	b.mu.Unlock()
}

// handOff marks n bytes a reader acquired as belonging to a request handed
// over to its processor, which will release them (releaseRead).
func (b *budget) handOff(n int64) {
	b.mu.Lock()
	b.reading -= n
	b.mu.Unlock()
}

// release gives back n bytes acquired as work or forced.
func (b *budget) release(n int64) { b.give(n, 0, 0) }

// releaseRead gives back n bytes a reader acquired and handed off.
func (b *budget) releaseRead(n int64) { b.give(n, n, 0) }

// releaseReading gives back n bytes a reader acquired and did not hand off.
func (b *budget) releaseReading(n int64) { b.give(n, n, n) }

func (b *budget) give(n, read, reading int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.readHeld -= read
	b.reading -= reading
	b.add(-n)
	if b.used < 0 || b.readHeld < 0 {
		b.mu.Unlock()
		panic("broker: budget released more than was charged")
	}
	b.notify()
	b.mu.Unlock()
}

// inUse reports the bytes charged now.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// grant charges n bytes acquired in class c. Called with mu held.
func (b *budget) grant(c budgetClass, n int64) {
	if c == classRead {
		b.readHeld += n
		b.reading += n
	}
	b.add(n)
}

func (b *budget) add(n int64) {
	b.used += n
	if b.onChange != nil {
		b.onChange(b.used)
	}
}

// notify admits waiters that fit, work first, then arms the preemption timer
// if readers are stuck. Called with mu held after anything that may let a
// waiter in.
func (b *budget) notify() {
	now := time.Now()
	for c := numBudgetClasses - 1; c >= 0; c-- {
		q := &b.queues[c]
		for q.Len() > 0 {
			elem := q.Front()
			w := elem.Value.(*budgetWaiter)
			if !b.fits(c, w.n) {
				break
			}
			q.Remove(elem)
			b.grant(c, w.n)
			w.done <- nil
		}
		if q.Len() > 0 && now.Sub(q.Front().Value.(*budgetWaiter).since) < b.bypassAge {
			// Small acquisitions that fit pass the first in line while it
			// has not waited long.
			for e := q.Front().Next(); e != nil; {
				next := e.Next()
				if w := e.Value.(*budgetWaiter); w.held+w.n <= bypassMax && b.fits(c, w.n) {
					q.Remove(e)
					b.grant(c, w.n)
					w.done <- nil
				}
				e = next
			}
		}
	}
	if b.stuck() && b.preemptTimer == nil {
		b.preemptTimer = time.AfterFunc(b.preemptGrace, b.preemptIfStuck)
	}
}

// stuck reports whether readers wait and every byte charged belongs to a
// frame still being read: then nothing may be released for as long as
// clients take to send the rest, if ever. Called with mu held.
func (b *budget) stuck() bool {
	return b.queues[classRead].Len() > 0 && b.queues[classWork].Len() == 0 && b.used <= b.reading
}

// preemptIfStuck runs preemptGrace after the budget got stuck. If it still
// is, the waiting readers holding the most give up their frames, as many as
// the first in line needs to fit (or itself, if it holds the most).
func (b *budget) preemptIfStuck() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.preemptTimer = nil
	if !b.stuck() {
		return
	}
	q := &b.queues[classRead]
	// held is what readers will hold once the preempted ones have let go.
	for held := b.readHeld; q.Len() > 0 && held+q.Front().Value.(*budgetWaiter).n > b.readLimit; {
		var victim *list.Element
		for e := q.Front(); e != nil; e = e.Next() {
			if victim == nil || e.Value.(*budgetWaiter).held >= victim.Value.(*budgetWaiter).held {
				victim = e
			}
		}
		w := victim.Value.(*budgetWaiter)
		if w.held == 0 {
			// Waiters hold nothing: the bytes belong to readers receiving
			// frames, which arrive or time out (RequestReadTimeout).
			return
		}
		q.Remove(victim)
		w.done <- errBudgetPreempted
		held -= w.held
	}
}
