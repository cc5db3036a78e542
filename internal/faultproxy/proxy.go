package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxQueuedBytes bounds the bytes read from one direction of one
	// connection and not yet delivered. Past it the reader stops reading.
	maxQueuedBytes = 4 << 20
	// readBufferBytes is the largest chunk read at once.
	readBufferBytes = 32 << 10
	// dialTimeout bounds the dial of the target for each new connection.
	dialTimeout = 5 * time.Second
)

// Direction names one half of a proxied connection.
type Direction int

const (
	// Forward carries bytes from the client that dialled the proxy to the
	// target.
	Forward Direction = iota
	// Backward carries bytes from the target to the client.
	Backward
)

func (d Direction) String() string {
	switch d {
	case Forward:
		return "forward"
	case Backward:
		return "backward"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

func (d Direction) check() {
	if d != Forward && d != Backward {
		panic(fmt.Sprintf("faultproxy: invalid %v", d))
	}
}

type modeKind uint8

const (
	kindPass modeKind = iota
	kindBlackhole
	kindReset
	kindDelay
)

// Mode is what a Proxy does to the bytes of one direction. The zero Mode is
// Pass. Modes are comparable with ==.
type Mode struct {
	kind  modeKind
	delay time.Duration
}

var (
	// Pass relays bytes as they arrive.
	Pass = Mode{kind: kindPass}
	// Blackhole keeps connections open and drops every byte read.
	Blackhole = Mode{kind: kindBlackhole}
	// Reset tears down every connection, the receiving endpoint with a RST.
	Reset = Mode{kind: kindReset}
)

// Delay returns the Mode that delivers every chunk d after it was read, in
// order. Delay(d) with d <= 0 is Pass.
func Delay(d time.Duration) Mode {
	if d <= 0 {
		return Pass
	}
	return Mode{kind: kindDelay, delay: d}
}

func (m Mode) String() string {
	switch m.kind {
	case kindPass:
		return "pass"
	case kindBlackhole:
		return "blackhole"
	case kindReset:
		return "reset"
	case kindDelay:
		return "delay(" + m.delay.String() + ")"
	}
	return fmt.Sprintf("Mode(%d)", m.kind)
}

// DirectionStats counts the bytes of one direction over the proxy's life.
type DirectionStats struct {
	// PassedBytes were delivered to the receiving endpoint.
	PassedBytes int64
	// DroppedBytes were read and never delivered: blackholed, or still queued
	// when their connection was torn down.
	DroppedBytes int64
	// QueuedBytes are read and waiting for delivery now.
	QueuedBytes int64
}

// Stats is a snapshot of a Proxy's counters.
type Stats struct {
	Forward  DirectionStats
	Backward DirectionStats
	// Accepted counts the connections accepted from clients.
	Accepted int64
	// Active counts the connections relayed now.
	Active int
	// Resets counts the connections torn down by Reset, open or new.
	Resets int64
}

// Dir returns the counters of one direction.
func (s Stats) Dir(d Direction) DirectionStats {
	d.check()
	if d == Forward {
		return s.Forward
	}
	return s.Backward
}

type dirCounters struct {
	passed, dropped, queued atomic.Int64
}

// Proxy relays TCP connections from a loopback listener to one target.
type Proxy struct {
	target string
	ln     net.Listener
	// ctx is cancelled by Close; it bounds dials of the target.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the Proxy started.
	wg sync.WaitGroup

	mu    sync.Mutex
	modes [2]Mode
	// changed is closed and replaced on every mode change, waking writers
	// that wait for one.
	changed chan struct{}
	links   map[*link]struct{}
	closed  bool

	closeOnce sync.Once
	closeErr  error

	dirs             [2]dirCounters
	accepted, resets atomic.Int64
}

// New starts a Proxy for target, a host:port on loopback, listening on
// 127.0.0.1 at a free port. Both directions start in Pass.
func New(target string) (*Proxy, error) {
	if err := checkLoopback(target); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  target,
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		links:   make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

func checkLoopback(target string) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("faultproxy: target %q is not a loopback address", target)
}

// Addr returns the address clients dial, 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy dials.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode of dir.
func (p *Proxy) Mode(dir Direction) Mode {
	dir.check()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.modes[dir]
}

// SetMode sets the mode of one direction, for open connections at once and
// for new ones. Setting Reset tears down every open connection before
// SetMode returns.
func (p *Proxy) SetMode(dir Direction, m Mode) {
	dir.check()
	p.setModes(m, dir)
}

// Set sets the mode of both directions, as SetMode does.
func (p *Proxy) Set(m Mode) { p.setModes(m, Forward, Backward) }

func (p *Proxy) setModes(m Mode, dirs ...Direction) {
	var doomed []*link
	p.mu.Lock()
	for _, d := range dirs {
		p.modes[d] = m
	}
	close(p.changed)
	p.changed = make(chan struct{})
	if m.kind == kindReset && !p.closed {
		for l := range p.links {
			doomed = append(doomed, l)
		}
	}
	p.mu.Unlock()
	for _, l := range doomed {
		p.resets.Add(1)
		l.teardown(l.receivers(dirs...)...)
	}
}

// modeOf returns dir's mode and a channel closed at its next change.
func (p *Proxy) modeOf(dir Direction) (Mode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.modes[dir], p.changed
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	dir := func(d Direction) DirectionStats {
		c := &p.dirs[d]
		return DirectionStats{
			PassedBytes:  c.passed.Load(),
			DroppedBytes: c.dropped.Load(),
			QueuedBytes:  c.queued.Load(),
		}
	}
	return Stats{
		Forward:  dir(Forward),
		Backward: dir(Backward),
		Accepted: p.accepted.Load(),
		Active:   active,
		Resets:   p.resets.Load(),
	}
}

// Close stops accepting, closes every connection and waits for every
// goroutine of the Proxy. It returns the listener's close error the first
// time and nil after; concurrent calls all wait.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		links := make([]*link, 0, len(p.links))
		for l := range p.links {
			links = append(links, l)
		}
		p.mu.Unlock()
		p.cancel()
		p.closeErr = p.ln.Close()
		for _, l := range links {
			l.teardown()
		}
		p.wg.Wait()
	})
	return p.closeErr
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// A transient failure such as EMFILE: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c.(*net.TCPConn))
	}
}

// refuse closes a client connection that is not relayed, with a RST when
// rst is set.
func (p *Proxy) refuse(client *net.TCPConn, rst bool) {
	if rst {
		_ = client.SetLinger(0)
	}
	_ = client.Close()
}

// serve dials the target for one accepted client and starts the link's pumps.
func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	if p.refuseIfReset(client) {
		return
	}
	dialer := net.Dialer{Timeout: dialTimeout}
	tc, err := dialer.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		// The target is down or the proxy is closing: the client sees a
		// reset, as it would see a refused connection without the proxy.
		p.refuse(client, true)
		return
	}
	target := tc.(*net.TCPConn)

	l := &link{p: p, client: client, target: target, done: make(chan struct{})}
	l.writersLeft.Store(2)
	for d := range l.queues {
		l.queues[d] = newQueue(&p.dirs[d])
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = client.Close()
		_ = target.Close()
		return
	}
	if rst, reset := p.resetLocked(); reset {
		// Reset was set while dialling.
		p.mu.Unlock()
		p.resets.Add(1)
		if rst[Forward] {
			_ = target.SetLinger(0)
		}
		_ = target.Close()
		p.refuse(client, rst[Backward])
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(4)
	p.mu.Unlock()

	for _, d := range []Direction{Forward, Backward} {
		go l.read(d)
		go l.write(d)
	}
}

// refuseIfReset closes client and reports true when a direction is in Reset.
func (p *Proxy) refuseIfReset(client *net.TCPConn) bool {
	p.mu.Lock()
	rst, reset := p.resetLocked()
	p.mu.Unlock()
	if !reset {
		return false
	}
	p.resets.Add(1)
	p.refuse(client, rst[Backward])
	return true
}

// resetLocked reports which directions are in Reset.
func (p *Proxy) resetLocked() (rst [2]bool, some bool) {
	for d, m := range p.modes {
		if m.kind == kindReset {
			rst[d] = true
			some = true
		}
	}
	return rst, some
}

// link is one proxied connection: a client and the target connection dialled
// for it, with a reader and a writer goroutine per direction joined by a
// bounded queue.
type link struct {
	p              *Proxy
	client, target *net.TCPConn
	queues         [2]*queue
	// done is closed by teardown.
	done     chan struct{}
	downOnce sync.Once
	// writersLeft counts writers that have not delivered their EOF; the link
	// is torn down when it reaches zero.
	writersLeft atomic.Int32
}

// src returns the connection dir's bytes are read from.
func (l *link) src(dir Direction) *net.TCPConn {
	if dir == Forward {
		return l.client
	}
	return l.target
}

// dst returns the connection dir's bytes are written to.
func (l *link) dst(dir Direction) *net.TCPConn {
	if dir == Forward {
		return l.target
	}
	return l.client
}

// receivers returns the connections that receive in dirs.
func (l *link) receivers(dirs ...Direction) []*net.TCPConn {
	out := make([]*net.TCPConn, 0, len(dirs))
	for _, d := range dirs {
		out = append(out, l.dst(d))
	}
	return out
}

// teardown closes both connections, those in rst with a RST, and wakes every
// goroutine of the link. Only the first call has an effect.
func (l *link) teardown(rst ...*net.TCPConn) {
	l.downOnce.Do(func() {
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
		close(l.done)
		for _, c := range rst {
			_ = c.SetLinger(0)
		}
		_ = l.client.Close()
		_ = l.target.Close()
		for _, q := range l.queues {
			q.close()
		}
	})
}

// read moves dir's bytes from its source into its queue, or drops them.
func (l *link) read(dir Direction) {
	defer l.p.wg.Done()
	src, q, stats := l.src(dir), l.queues[dir], &l.p.dirs[dir]
	buf := make([]byte, readBufferBytes)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, _ := l.p.modeOf(dir)
			switch m.kind {
			case kindBlackhole, kindReset:
				stats.dropped.Add(int64(n))
			default:
				c := chunk{data: append([]byte(nil), buf[:n]...), readAt: time.Now()}
				if !q.push(c) {
					return
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				q.push(chunk{eof: true, readAt: time.Now()})
				return
			}
			// A reset from the endpoint, or teardown closed the connection.
			l.teardown()
			return
		}
	}
}

// write delivers dir's queued chunks when their delay has passed and dir is
// not blackholed, and passes the EOF on as a half-close.
func (l *link) write(dir Direction) {
	defer l.p.wg.Done()
	defer func() {
		if l.writersLeft.Add(-1) == 0 {
			l.teardown()
		}
	}()
	dst, q := l.dst(dir), l.queues[dir]
	for {
		c, ok := q.pop()
		if !ok {
			return
		}
		deliver, ok := l.await(dir, c)
		if !ok {
			q.release(c, 0)
			return
		}
		if c.eof {
			// Nothing follows an EOF in this direction.
			_ = dst.CloseWrite()
			return
		}
		if !deliver {
			q.release(c, 0)
			continue
		}
		n, err := dst.Write(c.data)
		q.release(c, n)
		if err != nil {
			l.teardown()
			return
		}
	}
}

// await waits until c may be delivered under dir's current mode, following
// mode changes. It returns deliver=false when c is to be dropped because dir
// is blackholed (an EOF is held instead), and ok=false on teardown.
func (l *link) await(dir Direction, c chunk) (deliver, ok bool) {
	for {
		m, changed := l.p.modeOf(dir)
		var t *time.Timer
		var fired <-chan time.Time
		switch m.kind {
		case kindBlackhole, kindReset:
			if !c.eof {
				return false, true
			}
			// Hold the EOF until the direction heals.
		case kindDelay:
			wait := time.Until(c.readAt.Add(m.delay))
			if wait <= 0 {
				return true, true
			}
			t = time.NewTimer(wait)
			fired = t.C
		default:
			return true, true
		}
		torn := false
		select {
		case <-fired:
		case <-changed:
		case <-l.done:
			torn = true
		}
		if t != nil {
			t.Stop()
		}
		if torn {
			return false, false
		}
	}
}

// chunk is a run of bytes read at once, or the EOF that ends a direction.
type chunk struct {
	data   []byte
	eof    bool
	readAt time.Time
}

// queue is a FIFO of chunks bounded by maxQueuedBytes. Bytes count against
// the bound from push until release, so a chunk the writer holds still
// counts.
type queue struct {
	stats *dirCounters

	mu     sync.Mutex
	cond   sync.Cond
	chunks []chunk
	bytes  int
	closed bool
}

func newQueue(stats *dirCounters) *queue {
	q := &queue{stats: stats}
	q.cond.L = &q.mu
	return q
}

// push appends c, waiting while the queue is full. It returns false once
// the queue is closed; c is then dropped.
func (q *queue) push(c chunk) bool {
	n := len(c.data)
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && q.bytes > 0 && q.bytes+n > maxQueuedBytes {
		q.cond.Wait()
	}
	if q.closed {
		q.stats.dropped.Add(int64(n))
		return false
	}
	q.chunks = append(q.chunks, c)
	q.bytes += n
	q.stats.queued.Add(int64(n))
	q.cond.Broadcast()
	return true
}

// pop removes the oldest chunk, waiting for one. It returns false once the
// queue is closed. The caller owns the chunk and must release it.
func (q *queue) pop() (chunk, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && len(q.chunks) == 0 {
		q.cond.Wait()
	}
	if q.closed {
		return chunk{}, false
	}
	c := q.chunks[0]
	q.chunks[0] = chunk{}
	q.chunks = q.chunks[1:]
	return c, true
}

// release accounts for a popped chunk of which delivered bytes reached the
// receiver and the rest were dropped, and frees its room in the queue.
func (q *queue) release(c chunk, delivered int) {
	n := len(c.data)
	q.stats.queued.Add(-int64(n))
	q.stats.passed.Add(int64(delivered))
	q.stats.dropped.Add(int64(n - delivered))
	q.mu.Lock()
	q.bytes -= n
	q.cond.Broadcast()
	q.mu.Unlock()
}

// close drops the queued chunks and wakes every waiter.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	var n int
	for _, c := range q.chunks {
		n += len(c.data)
	}
	q.stats.queued.Add(-int64(n))
	q.stats.dropped.Add(int64(n))
	q.bytes -= n
	q.chunks = nil
	q.cond.Broadcast()
}
