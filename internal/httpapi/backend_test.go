package httpapi

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/internal/nodetest"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// testBackend is a real shard store and single-node Raft node in t.TempDir(),
// served by a Handler on an httptest server. opts change the handler's
// Config.
type testBackend struct {
	Node   *raftfsm.Node
	Store  *shardstore.Store
	Srv    *httptest.Server
	Reg    *prometheus.Registry
	groups []broker.GroupSummary
}

func newTestBackend(t testing.TB, opts ...func(*Config)) *testBackend {
	t.Helper()
	logger := testLogger(t)
	store, node := nodetest.Open(t, nodetest.WithLogger(logger),
		nodetest.TopicDefaults(map[string]string{topicconfig.CleanupPolicy: "compact"}))
	tb := &testBackend{Node: node, Store: store, Reg: NewRegistry()}
	be := &Backend{Node: node, Store: store, Groups: func() []broker.GroupSummary { return tb.groups }}
	cfg := Config{Gatherer: tb.Reg, Registerer: tb.Reg, Ready: node.Ready, Backend: func() *Backend { return be }, Logger: logger}
	for _, o := range opts {
		o(&cfg)
	}
	h := New(cfg)
	tb.Srv = httptest.NewServer(h)
	t.Cleanup(tb.Srv.Close)
	return tb
}

func (b *testBackend) createTopic(t testing.TB, name string, partitions int32, overrides map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Node.CreateTopic(ctx, name, partitions, overrides, false); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// produce writes recs to one partition and returns the batch's base offset.
func (b *testBackend) produce(t testing.TB, topic string, partition int32, recs ...shardstore.Record) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.Node.Produce(ctx, topic, partition, shardstore.NoProducer, recs)
	if err != nil {
		t.Fatalf("produce to %s/%d: %v", topic, partition, err)
	}
	return res.BaseOffset
}

func rec(key, value string, ts int64, headers ...shardstore.Header) shardstore.Record {
	r := shardstore.Record{Key: []byte(key), Timestamp: ts, Headers: headers}
	if value != "\x00tombstone" {
		r.Value = []byte(value)
	}
	return r
}

const tombstone = "\x00tombstone"

func newServer(t testing.TB, h *Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
