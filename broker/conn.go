package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn is one client connection. Two goroutines serve it:
//
//   - the reader (readLoop) reads and decodes frames and hands them over one
//     at a time on reqs, so at most one decoded request waits while others
//     are handled (one, or up to maxPipelinedProduces produces);
//   - the processor (serve, the goroutine the broker started) handles them in
//     arrival order and answers them in that order, as Kafka does. It writes
//     each response before taking the next request, but for produce
//     requests: once a produce's proposals are in Raft's queues, the next
//     produce is handled while it waits for its commit (processAll, up to
//     maxPipelinedProduces), so the 5 requests a client keeps in flight share
//     Raft's fsyncs. Each partition's batches still reach Raft in the order
//     the client sent them.
//
// serve owns the reader and waits for it before returning.
//
// Memory: every frame's buffer is charged to the broker's budget (budget.go)
// as it grows, and its decoded form once walked; the processor releases both
// when the handler returns, and charges the encoded response until it is
// written. Time: a connection with nothing in flight that sends nothing for
// ConnectionsMaxIdle is closed; so is one whose request takes longer than
// RequestReadTimeout to arrive, or that leaves a response unread for
// WriteTimeout.
type conn struct {
	b      *Broker
	nc     net.Conn
	remote string
	// host is remote's IP, the host ACLs name (authorizer.go).
	host string
	// lis is the listener the connection came through; sess its
	// authentication state (security.go).
	lis  *listener
	sess session

	ctx    context.Context // every request's context; cancelled when serve ends
	cancel context.CancelFunc
	// readCtx bounds the reader's waits for the budget; cancelled by
	// stopReading and when serve ends.
	readCtx    context.Context
	cancelRead context.CancelFunc

	reqs chan inbound  // reader -> processor; closed by the reader
	done chan struct{} // closed when the processor stops taking requests

	// deadlineMu orders the reader's read deadlines with stopReading's, so a
	// stopped reader cannot set a fresh deadline after it.
	deadlineMu sync.Mutex
	stopped    bool

	// inflight counts requests read and not yet answered; lastActive is when
	// the connection last read bytes or finished a request (unix nanos).
	// Together they decide when the connection is idle.
	inflight   atomic.Int32
	lastActive atomic.Int64

	// ahead is what the connection's last fetch read ahead for its next one
	// (fetch_readahead.go); only the request handlers touch it, one at a time.
	ahead *readAhead
}

// inbound is a decoded request, when its frame finished arriving, and what it
// holds of the memory budget.
type inbound struct {
	rq      *request
	arrived time.Time
	charged int64
}

const (
	// readBufferBytes is each connection's read buffer: enough for the size
	// prefix and small requests in one read, small enough that idle
	// connections cost little.
	readBufferBytes = 8 << 10
	// frameStartBytes is the first buffer of a frame that is not already
	// buffered: what a size prefix followed by a trickle costs until the
	// trickle passes it.
	frameStartBytes = 4 << 10
	// decodedChargeFactor multiplies walkBody's estimate of a decoded request
	// to charge the response structures a handler builds from it as well.
	decodedChargeFactor = 2
	// reuseResponseBytes is the largest response buffer put back in the pool
	// (respBufs); larger ones (big fetches) are left to the GC.
	reuseResponseBytes = 64 << 10
)

// respBufs holds response buffers of at most reuseResponseBytes, shared by
// every connection.
var respBufs = sync.Pool{New: func() any { return new([]byte) }}

// Errors that close a connection for what the client did or did not do.
var (
	errIdle            = errors.New("connection idle")
	errReadTimeout     = errors.New("request did not arrive within the read timeout")
	errReaderStopped   = errors.New("connection reader stopped")
	errMemoryPreempted = errors.New("memory budget full of partly read requests; this connection's was the largest")
)

func newConn(b *Broker, nc net.Conn, lis *listener) *conn {
	ctx, cancel := context.WithCancel(b.baseCtx)
	readCtx, cancelRead := context.WithCancel(ctx)
	if lis.TLS != nil && lis.Protocol.TLS() {
		nc = tls.Server(nc, lis.TLS)
	}
	c := &conn{
		b:          b,
		nc:         nc,
		lis:        lis,
		remote:     nc.RemoteAddr().String(),
		host:       hostOf(nc.RemoteAddr().String()),
		ctx:        ctx,
		cancel:     cancel,
		readCtx:    readCtx,
		cancelRead: cancelRead,
		reqs:       make(chan inbound),
		done:       make(chan struct{}),
	}
	c.sess.principal = principalAnonymous
	c.sess.authenticated.Store(!lis.Protocol.SASL())
	c.lastActive.Store(time.Now().UnixNano())
	return c
}

// stopReading makes the reader stop after the frame it is reading (used by
// Close to drain): a read deadline in the past fails the pending read without
// closing the socket, so responses to requests already read still go out; a
// reader waiting for the memory budget gives up.
func (c *conn) stopReading() {
	c.deadlineMu.Lock()
	c.stopped = true
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.deadlineMu.Unlock()
	c.cancelRead()
}

// setReadDeadline sets the read deadline unless the reader was stopped.
func (c *conn) setReadDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.stopped {
		return errReaderStopped
	}
	return c.nc.SetReadDeadline(t)
}

func (c *conn) isStopped() bool {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	return c.stopped
}

// serve runs the processor until the reader stops or a request closes the
// connection, then closes the socket and waits for the reader.
func (c *conn) serve() {
	if c.lis.Protocol.SASL() {
		defer c.startAuthTimer()()
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshakeTLS(tc); err != nil {
			c.b.metrics.connectionsClosed.WithLabelValues("tls_handshake").Inc()
			c.b.log.Debug("tls handshake failed", logKeyRemote, c.remote, logKeyListener, c.lis.Name, logKeyError, err)
			c.cancel()
			c.nc.Close()
			return
		}
	}
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		c.readLoop()
	}()
	pending := c.processAll()
	close(c.done)
	c.cancel()
	c.nc.Close()
	// Produce handlers still running hold memory and proposals: wait for
	// them (their context is cancelled) before the connection is gone.
	for _, ans := range pending {
		<-ans.done
		c.requestDone()
	}
	reader.Wait()
	if c.ahead != nil {
		<-c.ahead.done
		c.ahead.discard(c.b)
		c.ahead = nil
	}
}

// processAll takes requests until the connection closes and answers them in
// order. Produce requests are pipelined: once a produce's proposals are in
// Raft's queues, the next request is read and, if it is a produce too,
// handled while the first waits for its commit (up to maxPipelinedProduces),
// so a client's in-flight requests share Raft's fsyncs instead of taking
// one each. Any other request first waits for the produces before it to be
// answered. It returns the pipelined produces it did not answer.
func (c *conn) processAll() []*answer {
	var queue []*answer // pipelined produces, in request order
	// answerAll writes the queued answers in order; false if the connection
	// must close.
	answerAll := func() bool {
		for len(queue) > 0 {
			ans := queue[0]
			queue = queue[1:]
			if !c.finish(ans) {
				return false
			}
		}
		return true
	}
	for {
		var head chan struct{}
		if len(queue) > 0 {
			head = queue[0].done
		}
		reqs := c.reqs
		if len(queue) >= maxPipelinedProduces {
			reqs = nil
		}
		select {
		case <-head:
			ans := queue[0]
			queue = queue[1:]
			if !c.finish(ans) {
				return queue
			}
		case in, ok := <-reqs:
			if !ok {
				answerAll()
				return queue
			}
			if pipelinable(in.rq) {
				ans, ok := c.start(in, true)
				if !ok {
					c.requestDone()
					return queue
				}
				queue = append(queue, ans)
				continue
			}
			if !answerAll() {
				c.b.budget.releaseRead(in.charged)
				c.requestDone()
				return queue
			}
			if !c.process(in) {
				return nil
			}
		}
	}
}

// readLoop decodes frames until the connection fails or a frame is bad.
func (c *conn) readLoop() {
	defer close(c.reqs)
	br := bufio.NewReaderSize(c.nc, readBufferBytes)
	for {
		in, err := c.readRequest(br)
		if err != nil {
			c.logReadError(in.rq, err)
			return
		}
		c.inflight.Add(1)
		select {
		case c.reqs <- in:
		case <-c.done:
			c.b.budget.releaseRead(in.charged)
			return
		}
	}
}

// readRequest reads one frame, walks its body, charges the budget for its
// decoded form and decodes it. On error nothing stays charged and the
// returned inbound carries what is known of the request, for logging.
func (c *conn) readRequest(br *bufio.Reader) (inbound, error) {
	var in inbound
	size, err := c.readSize(br)
	if err != nil {
		return in, err
	}
	if err := checkFrameSize(size, c.maxFrameBytes()); err != nil {
		return in, err
	}
	frame, charged, deadline, err := c.readFrame(br, int(size))
	in.charged = charged
	fail := func(err error) (inbound, error) {
		c.b.budget.releaseReading(in.charged)
		in.charged = 0
		return in, err
	}
	if err != nil {
		return fail(err)
	}
	rq, body, err := parseHeader(frame)
	in.rq = rq
	if err != nil {
		return fail(err)
	}
	if !rq.unsupportedVersion {
		est, err := walkBody(rq.body, body, c.b.budget.maxAcquire(classRead, in.charged)/decodedChargeFactor)
		if err != nil {
			return fail(rq.bodyError(err))
		}
		ctx, cancel := context.WithDeadline(c.readCtx, deadline)
		err = c.b.budget.acquire(ctx, classRead, decodedChargeFactor*est, in.charged)
		cancel()
		if err != nil {
			return fail(c.budgetError(err, deadline))
		}
		in.charged += decodedChargeFactor * est
		if err := readBody(rq, body); err != nil {
			return fail(err)
		}
	}
	in.arrived = time.Now()
	c.b.budget.handOff(in.charged)
	return in, nil
}

// readSize reads a frame's 4-byte size prefix, closing the connection
// (errIdle) once it has had nothing in flight and read nothing for
// ConnectionsMaxIdle.
func (c *conn) readSize(br *bufio.Reader) (int32, error) {
	var buf [4]byte
	for n := 0; n < len(buf); {
		if err := c.setReadDeadline(c.idleDeadline()); err != nil {
			return 0, err
		}
		m, err := br.Read(buf[n:])
		if m > 0 {
			n += m
			c.lastActive.Store(time.Now().UnixNano())
		}
		switch {
		case err == nil:
		case isDeadline(err) && !c.isStopped():
			if c.inflight.Load() == 0 && time.Since(time.Unix(0, c.lastActive.Load())) >= c.b.cfg.ConnectionsMaxIdle {
				return 0, errIdle
			}
		case n > 0 && errors.Is(err, io.EOF):
			return 0, io.ErrUnexpectedEOF
		default:
			return 0, err
		}
	}
	return int32(binary.BigEndian.Uint32(buf[:])), nil
}

// idleDeadline is when the connection becomes idle if nothing happens: a
// ConnectionsMaxIdle after it was last active, or from now while a request
// is in flight (checked again then).
func (c *conn) idleDeadline() time.Time {
	if c.inflight.Load() > 0 {
		return time.Now().Add(c.b.cfg.ConnectionsMaxIdle)
	}
	return time.Unix(0, c.lastActive.Load()).Add(c.b.cfg.ConnectionsMaxIdle)
}

// readFrame reads the n bytes of a frame into a buffer that grows as they
// arrive, charging the budget before each growth: a size prefix costs
// frameStartBytes, a trickle little more than it has sent. The first charge
// waits as long as the budget is full (backpressure); from then on the frame
// must arrive, and be charged, within RequestReadTimeout (the returned
// deadline). What was charged is returned even on error, for the caller to
// release.
func (c *conn) readFrame(br *bufio.Reader, n int) (frame []byte, charged int64, deadline time.Time, err error) {
	bud := c.b.budget
	first := min(n, max(frameStartBytes, br.Buffered()))
	if err := bud.acquire(c.readCtx, classRead, int64(first), 0); err != nil {
		return nil, 0, deadline, c.budgetError(err, deadline)
	}
	charged = int64(first)
	deadline = time.Now().Add(c.b.cfg.RequestReadTimeout)
	if err := c.setReadDeadline(deadline); err != nil {
		return nil, charged, deadline, err
	}
	ctx, cancel := context.WithDeadline(c.readCtx, deadline)
	defer cancel()
	buf := make([]byte, 0, first)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grow := min(cap(buf), n-cap(buf))
			if err := bud.acquire(ctx, classRead, int64(grow), charged); err != nil {
				return nil, charged, deadline, c.budgetError(err, deadline)
			}
			charged += int64(grow)
			grown := make([]byte, len(buf), cap(buf)+grow)
			copy(grown, buf)
			buf = grown
		}
		m, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			switch {
			case errors.Is(err, io.EOF):
				err = io.ErrUnexpectedEOF
			case isDeadline(err) && !c.isStopped():
				err = fmt.Errorf("%w (%s, %d of %d bytes read)", errReadTimeout, c.b.cfg.RequestReadTimeout, len(buf), n)
			}
			return nil, charged, deadline, err
		}
	}
	return buf, charged, deadline, nil
}

// budgetError says why a reader's wait for the budget ended.
func (c *conn) budgetError(err error, deadline time.Time) error {
	switch {
	case errors.Is(err, errBudgetPreempted):
		return errMemoryPreempted
	case errors.Is(err, errBudgetTooLarge):
		return err
	case c.isStopped():
		return errReaderStopped
	case !deadline.IsZero() && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w (%s, waiting for memory)", errReadTimeout, c.b.cfg.RequestReadTimeout)
	}
	return err
}

// logReadError logs why the reader stopped: Warn for bad input or a client
// the broker had to cut off, Debug for an ordinary disconnect, an idle
// connection or a shutdown.
func (c *conn) logReadError(rq *request, err error) {
	switch {
	case errors.Is(err, errIdle):
		c.b.metrics.connectionsClosed.WithLabelValues("idle").Inc()
		c.b.log.Debug("closing idle connection", logKeyRemote, c.remote, logKeyTimeout, c.b.cfg.ConnectionsMaxIdle)
		return
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, errReaderStopped) || isDeadline(err):
		c.b.log.Debug("connection closed", logKeyRemote, c.remote, logKeyError, err)
		return
	}
	apiName, result := "unknown", "bad_request"
	attrs := []any{logKeyRemote, c.remote, logKeyError, err}
	if rq != nil {
		attrs = append(attrs, logKeyAPIKey, rq.key, logKeyAPIVersion, rq.version, logKeyCorrelationID, rq.correlationID)
		if a, ok := registry[rq.key]; ok {
			apiName = a.name
		}
	}
	msg := "bad request, closing connection"
	switch {
	case errors.Is(err, errFrameSize):
		result = "frame_size"
	case errors.Is(err, errUnknownAPIKey):
		result = "unknown_api"
	case errors.Is(err, errUnsupportedVersion):
		result = "unsupported_version"
	case errors.Is(err, errReadTimeout):
		result, msg = "read_timeout", "request too slow to arrive, closing connection"
		c.b.metrics.connectionsClosed.WithLabelValues("read_timeout").Inc()
	case errors.Is(err, errBudgetTooLarge), errors.Is(err, errMemoryPreempted):
		result, msg = "memory", "request does not fit in the memory budget, closing connection"
		c.b.metrics.connectionsClosed.WithLabelValues("memory").Inc()
	}
	c.b.metrics.requests.WithLabelValues(apiName, result).Inc()
	c.b.log.Warn(msg, attrs...)
}

// answer is one request on its way through the processor: handled (done
// closed) or being handled on a goroutine of its own, then written in turn.
type answer struct {
	in   inbound
	a    api
	rc   *requestContext // nil for an unsupported version
	resp kmsg.Response
	err  error // the handler failed: the connection closes
	// queued is closed when a pipelined produce's proposals are all in
	// Raft's queues (rc.queued); done when the handler has returned.
	queued chan struct{}
	done   chan struct{}
}

// maxPipelinedProduces is how many produce requests of one connection may be
// handled at once: Kafka clients send at most 5 (max.in.flight), and an
// idempotent producer's sequence order holds across them.
const maxPipelinedProduces = 5

// process handles one request and writes its response. It reports whether the
// connection stays open.
func (c *conn) process(in inbound) bool {
	ans, ok := c.start(in, false)
	if !ok {
		c.requestDone()
		return false
	}
	return c.finish(ans)
}

// start checks a request and runs its handler: on this goroutine, or, with
// pipeline set and the request a produce that expects an answer, on a
// goroutine of its own, returning once its proposals are queued in Raft (or
// it has finished) so the next request can start behind them. It reports
// false when the connection must close at once (a request before
// authentication), having released the request's memory.
func (c *conn) start(in inbound, pipeline bool) (*answer, bool) {
	rq := in.rq
	ans := &answer{in: in, a: registry[rq.key], done: make(chan struct{})}
	if rq.unsupportedVersion {
		ans.resp = unsupportedAPIVersionsResponse()
		c.b.budget.releaseRead(in.charged)
		close(ans.done)
		return ans, true
	}
	if err := c.checkAuthenticated(rq.key, time.Now()); err != nil {
		c.b.budget.releaseRead(in.charged)
		c.b.metrics.requests.WithLabelValues(ans.a.name, "unauthenticated").Inc()
		c.b.log.Warn("request before authentication, closing connection", logKeyRemote, c.remote,
			logKeyListener, c.lis.Name, logKeyAPIKey, rq.key, logKeyClientID, rq.clientID, logKeyError, err)
		return nil, false
	}
	ans.rc = &requestContext{
		key:           rq.key,
		version:       rq.version,
		correlationID: rq.correlationID,
		clientID:      rq.clientID,
		remote:        c.nc.RemoteAddr(),
		listener:      c.lis,
		principal:     c.sess.principal,
		host:          c.host,
		conn:          c,
	}
	handle := func() {
		defer close(ans.done)
		ans.resp, ans.err = c.call(ans.a, ans.rc, rq.body)
		// The handler is done with the request (its frame may be collected).
		c.b.budget.releaseRead(in.charged)
	}
	if !pipeline || !pipelinable(rq) {
		handle()
		return ans, true
	}
	ans.queued = make(chan struct{})
	ans.rc.queued = sync.OnceFunc(func() { close(ans.queued) })
	go handle()
	select {
	case <-ans.queued:
	case <-ans.done:
	}
	return ans, true
}

// pipelinable reports whether rq may be handled while the connection's
// earlier produce requests wait for Raft: a produce that expects an answer.
// (An acks=0 produce that fails closes the connection, which must happen
// in order, so it waits for the ones before it.)
func pipelinable(rq *request) bool {
	pr, ok := rq.body.(*kmsg.ProduceRequest)
	return ok && pr.Acks != 0
}

// requestDone marks a request answered (or dropped) for the idle timer.
func (c *conn) requestDone() {
	c.lastActive.Store(time.Now().UnixNano())
	c.inflight.Add(-1)
}

// finish waits for ans's handler and writes its response. It reports whether
// the connection stays open.
func (c *conn) finish(ans *answer) bool {
	defer c.requestDone()
	<-ans.done
	rq, a, resp, rc := ans.in.rq, ans.a, ans.resp, ans.rc
	if ans.err != nil {
		c.b.metrics.requests.WithLabelValues(a.name, "closed").Inc()
		c.b.log.Warn("request failed, closing connection", logKeyRemote, c.remote,
			logKeyAPIKey, rq.key, logKeyAPIVersion, rq.version, logKeyClientID, rq.clientID, logKeyError, ans.err)
		return false
	}
	if resp == nil { // acks=0 produce: nothing goes back
		c.observe(a.name, "ok", ans.in.arrived)
		return true
	}
	bufp := respBufs.Get().(*[]byte)
	buf := (*bufp)[:0]
	if n := responseSizeHint(resp); n > cap(buf) {
		buf = make([]byte, 0, n) // a large fetch: one allocation, no growth
	}
	buf = appendResponse(buf, rq.key, rq.correlationID, resp)
	c.b.budget.force(int64(len(buf)))
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.b.cfg.WriteTimeout))
	_, err := c.nc.Write(buf)
	if rc != nil {
		rc.releaseFetchBufs() // buf holds copies of them
	}
	c.observe(a.name, resultLabel(resp), ans.in.arrived)
	c.b.budget.release(int64(len(buf)))
	if cap(buf) <= reuseResponseBytes {
		*bufp = buf[:0]
		respBufs.Put(bufp)
	}
	if err != nil {
		if isDeadline(err) {
			c.b.metrics.connectionsClosed.WithLabelValues("write_timeout").Inc()
			c.b.log.Warn("client did not read its response within the write timeout, closing connection",
				logKeyRemote, c.remote, logKeyAPIKey, rq.key, logKeyTimeout, c.b.cfg.WriteTimeout, logKeySize, len(buf))
			return false
		}
		c.b.log.Debug("write failed", logKeyRemote, c.remote, logKeyError, err)
		return false
	}
	// A failed authentication is answered, then the connection closes.
	return rc == nil || !rc.closeAfter
}

// call runs the handler, turning a panic into an error (logged with its stack)
// so a bug closes one connection instead of the server.
func (c *conn) call(a api, rc *requestContext, req kmsg.Request) (resp kmsg.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.b.log.Warn("handler panic", logKeyRemote, c.remote, logKeyAPIKey, a.key,
				logKeyAPIVersion, rc.version, logKeyError, fmt.Sprint(p), logKeyStack, string(debug.Stack()))
			resp, err = nil, fmt.Errorf("handler panic: %v", p)
		}
	}()
	return a.handle(c.b, c.ctx, rc, req)
}

func (c *conn) observe(apiName, result string, arrived time.Time) {
	c.b.metrics.requests.WithLabelValues(apiName, result).Inc()
	c.b.metrics.requestSeconds.WithLabelValues(apiName).Observe(time.Since(arrived).Seconds())
}

// resultLabel is "ok" or the Kafka name of the response's first non-zero
// ErrorCode, found depth-first.
func resultLabel(resp kmsg.Response) string {
	code := firstErrorCode(reflect.ValueOf(resp))
	if code == 0 {
		return "ok"
	}
	var ke *kerr.Error
	if errors.As(kerr.ErrorForCode(code), &ke) {
		return ke.Message
	}
	return "UNKNOWN"
}

var int16Type = reflect.TypeOf(int16(0))

func firstErrorCode(v reflect.Value) int16 {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return 0
		}
		return firstErrorCode(v.Elem())
	case reflect.Struct:
		if f := v.FieldByName("ErrorCode"); f.IsValid() && f.Type() == int16Type && f.Int() != 0 {
			return int16(f.Int())
		}
		for i := 0; i < v.NumField(); i++ {
			if k := v.Field(i).Kind(); k == reflect.Struct || k == reflect.Slice || k == reflect.Pointer {
				if code := firstErrorCode(v.Field(i)); code != 0 {
					return code
				}
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return 0
		}
		for i := 0; i < v.Len(); i++ {
			if code := firstErrorCode(v.Index(i)); code != 0 {
				return code
			}
		}
	}
	return 0
}

func isDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
