package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// conn is one client connection. Two goroutines serve it:
//
//   - the reader (readLoop) reads and decodes frames and hands them over one
//     at a time on reqs, so at most one decoded request waits while another
//     is handled;
//   - the processor (serve, the goroutine the broker started) handles them in
//     arrival order and writes each response before taking the next request,
//     so pipelined requests are answered in order, as Kafka does.
//
// serve owns the reader and waits for it before returning.
type conn struct {
	b      *Broker
	nc     net.Conn
	remote string

	ctx    context.Context // every request's context; cancelled when serve ends
	cancel context.CancelFunc

	reqs chan inbound  // reader -> processor; closed by the reader
	done chan struct{} // closed when the processor stops taking requests

	wbuf []byte // response buffer, reused between small responses
}

// inbound is a decoded request and when its frame finished arriving.
type inbound struct {
	rq      *request
	arrived time.Time
}

// reuseResponseBytes is the largest response buffer a connection keeps
// between responses; larger ones (big fetches) are left to the GC.
const reuseResponseBytes = 1 << 20

func newConn(b *Broker, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(b.baseCtx)
	return &conn{
		b:      b,
		nc:     nc,
		remote: nc.RemoteAddr().String(),
		ctx:    ctx,
		cancel: cancel,
		reqs:   make(chan inbound),
		done:   make(chan struct{}),
	}
}

// stopReading makes the reader stop after the frame it is reading (used by
// Close to drain): a read deadline in the past fails the pending read without
// closing the socket, so responses to requests already read still go out.
func (c *conn) stopReading() {
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
}

// serve runs the processor until the reader stops or a request closes the
// connection, then closes the socket and waits for the reader.
func (c *conn) serve() {
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		c.readLoop()
	}()
	for in := range c.reqs {
		if !c.process(in) {
			break
		}
	}
	close(c.done)
	c.cancel()
	c.nc.Close()
	reader.Wait()
}

// readLoop decodes frames until the connection fails or a frame is bad.
func (c *conn) readLoop() {
	defer close(c.reqs)
	br := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		rq, err := c.readRequest(br)
		if err != nil {
			c.logReadError(rq, err)
			return
		}
		select {
		case c.reqs <- inbound{rq: rq, arrived: time.Now()}:
		case <-c.done:
			return
		}
	}
}

// readRequest reads one frame and decodes it. The frame's buffer grows as its
// bytes arrive, so a size prefix alone does not make the broker allocate.
func (c *conn) readRequest(br *bufio.Reader) (*request, error) {
	var sizeBuf [4]byte
	if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
	if err := checkFrameSize(size, c.b.cfg.MaxRequestBytes); err != nil {
		return nil, err
	}
	frame, err := readGrowing(br, int(size))
	if err != nil {
		return nil, err
	}
	return parseRequest(frame)
}

// readGrowing reads exactly n bytes, growing the buffer from at most 1 MiB as
// data arrives.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, 1<<20))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), n-len(buf)))...)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// logReadError logs why the reader stopped: Warn for bad input, Debug for an
// ordinary disconnect or a shutdown.
func (c *conn) logReadError(rq *request, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || isDeadline(err) {
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
	switch {
	case errors.Is(err, errFrameSize):
		result = "frame_size"
	case errors.Is(err, errUnknownAPIKey):
		result = "unknown_api"
	case errors.Is(err, errUnsupportedVersion):
		result = "unsupported_version"
	}
	c.b.metrics.requests.WithLabelValues(apiName, result).Inc()
	c.b.log.Warn("bad request, closing connection", attrs...)
}

// process handles one request and writes its response. It reports whether the
// connection stays open.
func (c *conn) process(in inbound) bool {
	rq := in.rq
	a := registry[rq.key]
	var resp kmsg.Response
	if rq.unsupportedVersion {
		resp = unsupportedAPIVersionsResponse()
	} else {
		rc := &requestContext{
			key:           rq.key,
			version:       rq.version,
			correlationID: rq.correlationID,
			clientID:      rq.clientID,
			remote:        c.nc.RemoteAddr(),
		}
		var err error
		resp, err = c.call(a, rc, rq.body)
		if err != nil {
			c.b.metrics.requests.WithLabelValues(a.name, "closed").Inc()
			c.b.log.Warn("request failed, closing connection", logKeyRemote, c.remote,
				logKeyAPIKey, rq.key, logKeyAPIVersion, rq.version, logKeyClientID, rq.clientID, logKeyError, err)
			return false
		}
	}
	if resp == nil { // acks=0 produce: nothing goes back
		c.observe(a.name, "ok", in.arrived)
		return true
	}
	buf := appendResponse(c.wbuf[:0], rq.key, rq.correlationID, resp)
	_, err := c.nc.Write(buf)
	if cap(buf) <= reuseResponseBytes {
		c.wbuf = buf[:0]
	}
	c.observe(a.name, resultLabel(resp), in.arrived)
	if err != nil {
		c.b.log.Debug("write failed", logKeyRemote, c.remote, logKeyError, err)
		return false
	}
	return true
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
