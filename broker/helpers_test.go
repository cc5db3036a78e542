package broker

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// testBrokerConfig is what a test may choose about its broker. newTestBroker
// fills the defaults; options passed to it change them.
type testBrokerConfig struct {
	// AutoCreateTopics is Config.AutoCreateTopics (default true).
	AutoCreateTopics bool
	// DefaultPartitions is Config.DefaultPartitions (default 1).
	DefaultPartitions int32
	// DefaultCleanupPolicy is the broker-level cleanup.policy default handed to
	// raftfsm as a BrokerTopicDefaults entry (default "compact").
	DefaultCleanupPolicy string
	// MaxRequestBytes and MaxDecompressedBytes are the Config fields of the same
	// name; 0 keeps DefaultConfig's value.
	MaxRequestBytes      int32
	MaxDecompressedBytes int32
}

// testBroker is one running single-node broker over a real raftfsm.Node and
// shardstore.Store in a temporary directory.
type testBroker struct {
	Addr   string // host:port of the Kafka listener on 127.0.0.1
	Broker *Broker
	Node   *raftfsm.Node
	Store  *shardstore.Store
	// Metrics is the registry the broker's collectors are registered in.
	Metrics *prometheus.Registry
}

// newTestBroker starts a broker and stops it, then the node, then the store,
// when the test ends. It fails the test if anything does not start within 30 s.
func newTestBroker(t testing.TB, opts ...func(*testBrokerConfig)) *testBroker {
	t.Helper()
	cfg := testBrokerConfig{
		AutoCreateTopics:     true,
		DefaultPartitions:    1,
		DefaultCleanupPolicy: "compact",
	}
	for _, o := range opts {
		o(&cfg)
	}
	logger := testLogger(t)
	dir := t.TempDir()

	store, err := shardstore.Open(filepath.Join(dir, "store"), shardstore.Options{
		Logger:     logger,
		CacheBytes: 8 << 20,
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})

	ncfg := raftfsm.DefaultConfig()
	ncfg.Dir = filepath.Join(dir, "raft")
	ncfg.Store = store
	ncfg.DataGroups = 2
	topicDefaults := map[string]string{topicconfig.CleanupPolicy: cfg.DefaultCleanupPolicy}
	ncfg.BrokerTopicDefaults = topicDefaults
	ncfg.HeartbeatTimeout = 50 * time.Millisecond
	ncfg.ElectionTimeout = 50 * time.Millisecond
	ncfg.LeaderLeaseTimeout = 50 * time.Millisecond
	ncfg.CommitTimeout = 5 * time.Millisecond
	ncfg.Logger = logger
	node, err := raftfsm.Open(ncfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		t.Fatalf("node not ready: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	reg := prometheus.NewRegistry()
	bcfg := DefaultConfig()
	bcfg.AdvertisedAddr = ln.Addr().String()
	bcfg.AutoCreateTopics = cfg.AutoCreateTopics
	bcfg.DefaultPartitions = cfg.DefaultPartitions
	bcfg.TopicDefaults = topicDefaults
	if cfg.MaxRequestBytes != 0 {
		bcfg.MaxRequestBytes = cfg.MaxRequestBytes
	}
	if cfg.MaxDecompressedBytes != 0 {
		bcfg.MaxDecompressedBytes = cfg.MaxDecompressedBytes
	}
	bcfg.Node = node
	bcfg.Store = store
	bcfg.Logger = logger
	bcfg.Registerer = reg
	b, err := New(bcfg)
	if err != nil {
		ln.Close()
		t.Fatalf("new broker: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close broker: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testBroker{Addr: ln.Addr().String(), Broker: b, Node: node, Store: store, Metrics: reg}
}

// client returns a franz-go client seeded with the broker's address, closed
// when the test ends.
func (tb *testBroker) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(tb.Addr)}, opts...)...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// admin returns a kadm client over a fresh client (see client).
func (tb *testBroker) admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(tb.client(t))
}

// testLogger sends slog output to t.Log, so only failing tests print. Lines
// logged after the test has finished (by goroutines still winding down) are
// dropped instead of panicking.
func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs after every other cleanup
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
