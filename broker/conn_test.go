package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/metricstest"
)

// rawConn is a plain TCP connection to the broker for tests that send bytes
// no client library would. Every read and write is bounded by a deadline.
type rawConn struct {
	t  testing.TB
	nc net.Conn
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, nc: nc}
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// request sends req at version with the given correlation id.
func (c *rawConn) request(req kmsg.Request, version int16, corr int32) {
	c.t.Helper()
	req.SetVersion(version)
	c.write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw")).AppendRequest(nil, req, corr))
}

// response reads one response frame and decodes it as a response to key at
// version (header v1 for flexible responses other than ApiVersions).
func (c *rawConn) response(key, version int16) (int32, kmsg.Response) {
	c.t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		c.t.Fatalf("read size: %v", err)
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c.nc, buf); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	corr := int32(binary.BigEndian.Uint32(buf))
	resp := kmsg.ResponseForKey(key)
	resp.SetVersion(version)
	body := buf[4:]
	if resp.IsFlexible() && key != kmsg.ApiVersions.Int16() {
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		c.t.Fatalf("decode %s v%d response: %v", kmsg.NameForKey(key), version, err)
	}
	return corr, resp
}

// expectClosed waits (bounded by the deadline) for the broker to close the
// connection without sending anything.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	var b [1]byte
	n, err := c.nc.Read(b[:])
	if n > 0 {
		c.t.Fatalf("read %d bytes, want the connection closed", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatal("connection still open at the deadline")
	}
	if err == nil {
		c.t.Fatal("read returned no error")
	}
}

// checkAPIVersions asserts that the connection still serves requests.
func (c *rawConn) checkAPIVersions(corr int32) {
	c.t.Helper()
	c.request(kmsg.NewPtrApiVersionsRequest(), 3, corr)
	got, resp := c.response(kmsg.ApiVersions.Int16(), 3)
	if got != corr || resp.(*kmsg.ApiVersionsResponse).ErrorCode != 0 {
		c.t.Fatalf("api versions: corr %d, %+v", got, resp)
	}
}

// framed encodes req at version with its size prefix.
func framed(req kmsg.Request, version int16) []byte {
	req.SetVersion(version)
	return kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)
}

func frameWithSize(size int32, body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(size)), body...)
}

func TestConnBadInputClosesOnlyThatConnection(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.MaxRequestBytes = 64 << 10 })
	bystander := dialRaw(t, tb.Addr)
	bystander.checkAPIVersions(1)
	cl := tb.client(t)

	garbage := []byte{0, 3, 0, 5, 0, 0, 0, 1, 255, 255, 0x7f, 0xff, 0xff, 0xff}
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"oversized frame", frameWithSize(64<<10+1, []byte{0, 3, 0, 12})},
		{"huge frame size", frameWithSize(1<<31-1, nil)},
		{"zero frame size", frameWithSize(0, nil)},
		{"negative frame size", frameWithSize(-5, nil)},
		{"unknown api key 200", frameWithSize(10, []byte{0, 200, 0, 0, 0, 0, 0, 1, 255, 255})},
		{"version below min", framed(metadataReq(), 0)},
		{"version above max", framed(metadataReq(), 13)},
		{"garbage body", frameWithSize(int32(len(garbage)), garbage)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, tb.Addr)
			c.write(tt.bytes)
			c.expectClosed()
			bystander.checkAPIVersions(int32(100 + i))
			if _, err := kmsg.NewPtrMetadataRequest().RequestWith(context.Background(), cl); err != nil {
				t.Fatalf("client request after bad input: %v", err)
			}
		})
	}

	n := metricValue(t, tb.Broker.metrics.requests.WithLabelValues("unknown", "unknown_api"))
	if n < 1 {
		t.Fatalf("unknown api requests counted %v times", n)
	}
}

func TestAPIVersionsAboveMax(t *testing.T) {
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	// A flexible (header v2) request at v99 with a body we never parse.
	frame := []byte{0, 18, 0, 99, 0, 0, 0, 77, 0, 3, 'c', 'l', 'i', 0, 1, 2, 3}
	c.write(frameWithSize(int32(len(frame)), frame))
	corr, resp := c.response(kmsg.ApiVersions.Int16(), 0)
	r := resp.(*kmsg.ApiVersionsResponse)
	if corr != 77 || r.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("corr %d, error code %d", corr, r.ErrorCode)
	}
	var found bool
	for _, k := range r.ApiKeys {
		if k.ApiKey == kmsg.ApiVersions.Int16() {
			found = k.MinVersion == 0 && k.MaxVersion == 4
		}
	}
	if !found {
		t.Fatalf("ApiVersions 0-4 not listed: %+v", r.ApiKeys)
	}
	c.checkAPIVersions(78) // the client retries at our maximum on the same connection
}

func TestAPIVersionsListsRegistry(t *testing.T) {
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	for v := int16(0); v <= 4; v++ {
		c.request(kmsg.NewPtrApiVersionsRequest(), v, int32(v))
		_, resp := c.response(kmsg.ApiVersions.Int16(), v)
		r := resp.(*kmsg.ApiVersionsResponse)
		if r.ErrorCode != 0 || len(r.ApiKeys) != len(registry) {
			t.Fatalf("v%d: error %d, %d keys, registry has %d", v, r.ErrorCode, len(r.ApiKeys), len(registry))
		}
		for _, k := range r.ApiKeys {
			a, ok := registry[k.ApiKey]
			if !ok || a.min != k.MinVersion || a.max != k.MaxVersion {
				t.Fatalf("v%d: advertised %+v, registry %+v", v, k, a)
			}
		}
		checkFeatures(t, v, r)
	}
}

// checkFeatures: v3+ advertises metadata.version only, finalized at the level
// of Kafka 4.0, and never transaction.version (docs/ARCHITECTURE.md rule 7).
func checkFeatures(t *testing.T, v int16, r *kmsg.ApiVersionsResponse) {
	t.Helper()
	if v < 3 {
		if len(r.SupportedFeatures) != 0 || len(r.FinalizedFeatures) != 0 {
			t.Fatalf("v%d: features in a version without them: %+v %+v", v, r.SupportedFeatures, r.FinalizedFeatures)
		}
		return
	}
	if len(r.SupportedFeatures) != 1 || len(r.FinalizedFeatures) != 1 {
		t.Fatalf("v%d: features %+v, finalized %+v; want metadata.version only", v, r.SupportedFeatures, r.FinalizedFeatures)
	}
	sf, ff := r.SupportedFeatures[0], r.FinalizedFeatures[0]
	if sf.Name != "metadata.version" || sf.MinVersion != metadataVersionMin || sf.MaxVersion != metadataVersionMax {
		t.Fatalf("v%d: supported %+v", v, sf)
	}
	if ff.Name != "metadata.version" || ff.MinVersionLevel != metadataVersionMax || ff.MaxVersionLevel != metadataVersionMax {
		t.Fatalf("v%d: finalized %+v", v, ff)
	}
	if r.FinalizedFeaturesEpoch != 0 {
		t.Fatalf("v%d: finalized features epoch %d", v, r.FinalizedFeaturesEpoch)
	}
}

func TestConnPipelinedRequestsAnsweredInOrder(t *testing.T) {
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	type sent struct {
		key, version int16
	}
	var batch []byte
	var order []sent
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("pipe"))
	for i := 0; i < 40; i++ {
		var req kmsg.Request
		if i%2 == 0 {
			req = kmsg.NewPtrApiVersionsRequest()
			req.SetVersion(int16(i/2) % 5)
		} else {
			req = metadataReq()
			req.SetVersion(1 + int16(i/2)%12)
		}
		// AppendRequest sizes the frame from dst[0], so frame each alone.
		batch = append(batch, f.AppendRequest(nil, req, int32(1000+i))...)
		order = append(order, sent{req.Key(), req.GetVersion()})
	}
	c.write(batch) // all at once: the broker must answer them in order
	for i, s := range order {
		corr, resp := c.response(s.key, s.version)
		if corr != int32(1000+i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
		if m, ok := resp.(*kmsg.MetadataResponse); ok && len(m.Brokers) != 1 {
			t.Fatalf("metadata v%d brokers %+v", s.version, m.Brokers)
		}
	}
}

// swapHandler replaces a registered handler for one test. It must be called
// before newTestBroker, so the registry is restored after the broker stops.
func swapHandler(t *testing.T, key int16, h handlerFunc) {
	a := registry[key]
	old := a.handle
	a.handle = h
	registry[key] = a
	t.Cleanup(func() {
		a.handle = old
		registry[key] = a
	})
}

func TestHandlerPanicClosesOnlyThatConnection(t *testing.T) {
	swapHandler(t, kmsg.DescribeConfigs.Int16(), func(*Broker, context.Context, *requestContext, kmsg.Request) (kmsg.Response, error) {
		panic("boom")
	})
	tb := newTestBroker(t)
	bystander := dialRaw(t, tb.Addr)
	c := dialRaw(t, tb.Addr)
	c.request(kmsg.NewPtrDescribeConfigsRequest(), 4, 1)
	c.expectClosed()
	bystander.checkAPIVersions(2)
	if n := metricValue(t, tb.Broker.metrics.requests.WithLabelValues("DescribeConfigs", "closed")); n != 1 {
		t.Fatalf("closed requests counted %v times", n)
	}
}

func TestCloseDrainsInFlightRequests(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	swapHandler(t, kmsg.DescribeConfigs.Int16(), func(b *Broker, ctx context.Context, rc *requestContext, req kmsg.Request) (kmsg.Response, error) {
		close(entered)
		<-release
		return req.ResponseKind(), nil
	})
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	c.request(kmsg.NewPtrDescribeConfigsRequest(), 4, 9)
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- tb.Broker.Close(context.Background()) }()
	// Close has stopped accepting once a new dial fails; wait for that with
	// a deadline rather than a sleep.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", tb.Addr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if corr, _ := c.response(kmsg.DescribeConfigs.Int16(), 4); corr != 9 {
		t.Fatalf("drained response has correlation id %d", corr)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	c.expectClosed()
	if err := tb.Broker.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseDeadlineCancelsRequests(t *testing.T) {
	entered := make(chan struct{})
	swapHandler(t, kmsg.DescribeConfigs.Int16(), func(b *Broker, ctx context.Context, rc *requestContext, req kmsg.Request) (kmsg.Response, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	c.request(kmsg.NewPtrDescribeConfigsRequest(), 4, 1)
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tb.Broker.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	c.expectClosed()
}

func TestBrokerMetrics(t *testing.T) {
	tb := newTestBroker(t)
	c := dialRaw(t, tb.Addr)
	c.checkAPIVersions(1)
	c.checkAPIVersions(2)
	// A request is counted once its response is written, which the client
	// may see first: wait for the count, with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, tb.Broker.metrics.requests.WithLabelValues("ApiVersions", "ok")) != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := metricValue(t, tb.Broker.metrics.requests.WithLabelValues("ApiVersions", "ok")); n != 2 {
		t.Fatalf("ApiVersions ok = %v, want 2", n)
	}
	if n := metricValue(t, tb.Broker.metrics.connections); n != 1 {
		t.Fatalf("connections = %v, want 1", n)
	}
	if n := metricValue(t, tb.Broker.metrics.requestSeconds.WithLabelValues("ApiVersions").(prometheus.Metric)); n != 2 {
		t.Fatalf("ApiVersions durations observed = %v, want 2", n)
	}
	metricstest.Lint(t, tb.Metrics)
}

func TestResultLabel(t *testing.T) {
	ok := kmsg.NewPtrMetadataResponse()
	nested := kmsg.NewPtrMetadataResponse()
	tp := kmsg.NewMetadataResponseTopic()
	p := kmsg.NewMetadataResponseTopicPartition()
	p.ErrorCode = kerr.LeaderNotAvailable.Code
	tp.Partitions = append(tp.Partitions, p)
	nested.Topics = append(nested.Topics, tp)
	top := kmsg.NewPtrApiVersionsResponse()
	top.ErrorCode = kerr.UnsupportedVersion.Code
	tests := []struct {
		resp kmsg.Response
		want string
	}{
		{ok, "ok"},
		{nested, "LEADER_NOT_AVAILABLE"},
		{top, "UNSUPPORTED_VERSION"},
	}
	for _, tt := range tests {
		if got := resultLabel(tt.resp); got != tt.want {
			t.Errorf("resultLabel = %q, want %q", got, tt.want)
		}
	}
}

// metricValue reads a counter or gauge, or a histogram's sample count.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	case out.Histogram != nil:
		return float64(out.Histogram.GetSampleCount())
	}
	t.Fatalf("unsupported metric %v", m.Desc())
	return 0
}
