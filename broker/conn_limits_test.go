package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// closedFor reads shardcache_broker_connections_closed_total{reason}.
func closedFor(t testing.TB, tb *testBroker, reason string) float64 {
	t.Helper()
	return metricValue(t, tb.Broker.metrics.connectionsClosed.WithLabelValues(reason))
}

func waitClosedFor(t testing.TB, tb *testBroker, reason string) {
	t.Helper()
	waitUntil(t, 20*time.Second, "connections closed for "+reason, func() error {
		if n := closedFor(t, tb, reason); n < 1 {
			return fmt.Errorf("%v closed", n)
		}
		return nil
	})
}

func waitBudgetEmpty(t testing.TB, tb *testBroker) {
	t.Helper()
	waitUntil(t, 20*time.Second, "memory budget empty", func() error {
		if n := tb.Broker.budget.inUse(); n != 0 {
			return fmt.Errorf("%d bytes charged", n)
		}
		return nil
	})
}

// warnings is a slog handler that keeps the messages of Warn lines and
// passes every line on to next.
type warnings struct {
	next slog.Handler
	mu   *sync.Mutex
	msgs *[]string
}

func newWarnings(t testing.TB) (*slog.Logger, func() []string) {
	w := warnings{next: testLogger(t).Handler(), mu: new(sync.Mutex), msgs: new([]string)}
	return slog.New(w), func() []string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return append([]string(nil), *w.msgs...)
	}
}

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool { return w.next.Enabled(ctx, l) }
func (w warnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		w.mu.Lock()
		*w.msgs = append(*w.msgs, r.Message)
		w.mu.Unlock()
	}
	return w.next.Handle(ctx, r)
}
func (w warnings) WithAttrs(as []slog.Attr) slog.Handler {
	return warnings{next: w.next.WithAttrs(as), mu: w.mu, msgs: w.msgs}
}
func (w warnings) WithGroup(g string) slog.Handler {
	return warnings{next: w.next.WithGroup(g), mu: w.mu, msgs: w.msgs}
}

func TestConnectionCap(t *testing.T) {
	logger, warned := newWarnings(t)
	tb := newTestBroker(t, func(c *testBrokerConfig) {
		c.MaxConnections = 2
		c.Logger = logger
	})
	first := dialRaw(t, tb.Addr)
	first.checkAPIVersions(1)
	second := dialRaw(t, tb.Addr)
	second.checkAPIVersions(2)

	third := dialRaw(t, tb.Addr)
	third.expectClosed()
	fourth := dialRaw(t, tb.Addr)
	fourth.expectClosed()
	if n := metricValue(t, tb.Broker.metrics.connectionsRefused); n != 2 {
		t.Fatalf("refused connections = %v, want 2", n)
	}
	// One Warn line for both: they are rate limited.
	var lines int
	for _, m := range warned() {
		if m == "connection limit reached, closing new connections" {
			lines++
		}
	}
	if lines != 1 {
		t.Fatalf("%d Warn lines about the connection limit, want 1: %q", lines, warned())
	}
	second.checkAPIVersions(3) // the open ones are unaffected

	// Once one closes, a new connection is served again.
	first.nc.Close()
	waitUntil(t, 20*time.Second, "a connection accepted after one closed", func() error {
		nc, err := net.DialTimeout("tcp", tb.Addr, time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		req := kmsg.NewPtrApiVersionsRequest()
		if _, err := nc.Write(framed(req, 0)); err != nil {
			return err
		}
		var size [4]byte
		_, err = nc.Read(size[:])
		return err
	})
}

func TestConnectionIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	entered := make(chan struct{})
	swapHandler(t, kmsg.DescribeConfigs.Int16(), func(b *Broker, ctx context.Context, rc *requestContext, req kmsg.Request) (kmsg.Response, error) {
		close(entered)
		// Busy for three idle periods: the connection has a request in flight
		// and must stay open.
		select {
		case <-time.After(3 * idle):
		case <-ctx.Done():
		}
		return req.ResponseKind(), nil
	})
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.ConnectionsMaxIdle = idle })

	busy := dialRaw(t, tb.Addr)
	busy.request(kmsg.NewPtrDescribeConfigsRequest(), 4, 7)
	<-entered
	if corr, _ := busy.response(kmsg.DescribeConfigs.Int16(), 4); corr != 7 {
		t.Fatalf("response correlation id %d", corr)
	}
	// Now nothing is in flight: the connection is closed once idle.
	busy.expectClosed()
	waitClosedFor(t, tb, "idle")

	quiet := dialRaw(t, tb.Addr) // never sends anything
	quiet.expectClosed()
}

func TestConnectionRequestReadTimeout(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.RequestReadTimeout = 300 * time.Millisecond })
	// Slowloris: a size prefix and the start of a frame, then nothing.
	c := dialRaw(t, tb.Addr)
	c.write(frameWithSize(1000, []byte{0, 18, 0, 3}))
	c.expectClosed()
	waitClosedFor(t, tb, "read_timeout")
	waitBudgetEmpty(t, tb)
}

// TestConnectionWriteTimeout: a client that pipelines fetches and never
// reads the responses is closed after the write timeout, and the memory of
// its responses is released.
func TestConnectionWriteTimeout(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.WriteTimeout = 300 * time.Millisecond })
	tb.createDataTopic(t, "big", 1, nil)
	// Uncompressed: a fetch answers with the producer's codec, and 900 KiB
	// of one byte would come back as a few KiB.
	cl := tb.client(t, kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := bytes.Repeat([]byte("v"), 900<<10)
	if err := cl.ProduceSync(dataCtx(t), &kgo.Record{Topic: "big", Key: []byte("k"), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	nc, err := net.Dial("tcp", tb.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.ReplicaID = -1
	fetch.MaxBytes = 4 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "big"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 4 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	// 64 responses of about 900 KiB: far more than socket buffers hold.
	for i := 0; i < 64; i++ {
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(framed(fetch, 11)); err != nil {
			break // the broker closed the connection already
		}
	}
	waitClosedFor(t, tb, "write_timeout")
	waitBudgetEmpty(t, tb)
}

// TestBackpressureStopsReading fills the read half of the memory budget: a
// new request is not read (its reader waits for memory) until memory is
// released, then it is answered.
func TestBackpressureStopsReading(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) {
		c.MaxRequestBytes = 256 << 10
		c.MaxInflightBytes = 1 << 20
	})
	bud := tb.Broker.budget
	if err := bud.acquire(t.Context(), classRead, bud.readLimit, 0); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, tb.Addr)
	c.request(kmsg.NewPtrApiVersionsRequest(), 3, 5)
	waitQueued(t, bud, classRead, 1) // the reader waits for memory
	if n := metricValue(t, tb.Broker.metrics.budgetWaits.WithLabelValues("read")); n < 1 {
		t.Fatalf("read waits = %v", n)
	}
	bud.releaseReading(bud.readLimit)
	if corr, resp := c.response(kmsg.ApiVersions.Int16(), 3); corr != 5 || resp.(*kmsg.ApiVersionsResponse).ErrorCode != 0 {
		t.Fatalf("response %d %+v", corr, resp)
	}
	waitBudgetEmpty(t, tb)
}

// TestRequestThatCanNeverFitIsRefused: a frame within MaxRequestBytes whose
// decoded form is larger than the budget's read half closes the connection
// (logged), before kmsg allocates for it; a produce batch larger than the
// work half is refused with MESSAGE_TOO_LARGE.
func TestRequestThatCanNeverFitIsRefused(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) {
		c.MaxRequestBytes = 512 << 10
		c.MaxInflightBytes = 2 << 20
	})
	c := dialRaw(t, tb.Addr)
	frame := metadataV1Frame(500 << 10) // decodes to about 12 MiB
	c.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...))
	c.expectClosed()
	waitClosedFor(t, tb, "memory")

	value := bytes.Repeat([]byte("z"), 400<<10) // 8 copies: more than 1 MiB
	raw := wireBatch{codec: kgo.ZstdCompression(), records: []kmsg.Record{testKmsgRecord(0, []byte("k"), value, 0)}}.build(t)
	cl := tb.client(t)
	resp := rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("t", 0, raw))
	if p := producePartitionResp(t, resp); p.ErrorCode != kerr.MessageTooLarge.Code || p.ErrorMessage == nil {
		t.Fatalf("produce: %v %v", kerr.ErrorForCode(p.ErrorCode), p.ErrorMessage)
	} else {
		t.Logf("refused: %s", *p.ErrorMessage)
	}
	waitBudgetEmpty(t, tb)
}

func TestConfigValidateLimits(t *testing.T) {
	base := DefaultConfig()
	base.Node, base.Store = &raftfsm.Node{}, &shardstore.Store{}
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	zero := base
	zero.MaxInflightBytes, zero.MaxConnections, zero.ConnectionsMaxIdle, zero.RequestReadTimeout, zero.WriteTimeout = 0, 0, 0, 0, 0
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero limits mean the defaults: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"budget below twice the largest request": func(c *Config) { c.MaxInflightBytes = 2*int64(c.MaxRequestBytes) - 1 },
		"negative connections":                   func(c *Config) { c.MaxConnections = -1 },
		"negative idle":                          func(c *Config) { c.ConnectionsMaxIdle = -time.Second },
		"sub-millisecond read timeout":           func(c *Config) { c.RequestReadTimeout = time.Microsecond },
		"negative write timeout":                 func(c *Config) { c.WriteTimeout = -1 },
	} {
		c := base
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := base.withDefaults().readLimit(); got != DefaultMaxRequestBytes {
		t.Errorf("read share %d, want MaxRequestBytes (larger than a quarter of the budget)", got)
	}
}
