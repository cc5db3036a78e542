package broker

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/internal/nodetest"
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
	// The limits of a broker under load (Config fields of the same names); 0
	// keeps DefaultConfig's value.
	MaxInflightBytes   int64
	MaxConnections     int
	ConnectionsMaxIdle time.Duration
	RequestReadTimeout time.Duration
	WriteTimeout       time.Duration
	// Logger, when set, receives the broker's logs instead of t.Log.
	Logger *slog.Logger
	// FetchSessionCacheSlots is Config.FetchSessionCacheSlots; 0 keeps
	// DefaultConfig's value.
	FetchSessionCacheSlots int
	// SuperUsers is Config.SuperUsers; DenyIfNoACLFound clears
	// Config.AllowEveryoneIfNoACLFound.
	SuperUsers       []string
	DenyIfNoACLFound bool
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
	if cfg.Logger != nil {
		logger = cfg.Logger
	}
	topicDefaults := map[string]string{topicconfig.CleanupPolicy: cfg.DefaultCleanupPolicy}
	// The Raft log DB's memtable as large as the state's, as when both were one
	// DB: a flush of it is background work that TestBatchMemoryCoversProduce
	// would count as a produce's allocations.
	logMemtable := nodetest.StoreOptions(func(o *shardstore.Options) { o.LogMemTableBytes = shardstore.DefaultMemTableBytes })
	store, node := nodetest.Open(t, nodetest.WithLogger(logger), nodetest.TopicDefaults(topicDefaults), logMemtable)

	bcfg := DefaultConfig()
	bcfg.AutoCreateTopics = cfg.AutoCreateTopics
	bcfg.DefaultPartitions = cfg.DefaultPartitions
	bcfg.TopicDefaults = topicDefaults
	if cfg.MaxRequestBytes != 0 {
		bcfg.MaxRequestBytes = cfg.MaxRequestBytes
	}
	if cfg.MaxDecompressedBytes != 0 {
		bcfg.MaxDecompressedBytes = cfg.MaxDecompressedBytes
	}
	if cfg.MaxInflightBytes != 0 {
		bcfg.MaxInflightBytes = cfg.MaxInflightBytes
	}
	if cfg.MaxConnections != 0 {
		bcfg.MaxConnections = cfg.MaxConnections
	}
	if cfg.ConnectionsMaxIdle != 0 {
		bcfg.ConnectionsMaxIdle = cfg.ConnectionsMaxIdle
	}
	if cfg.RequestReadTimeout != 0 {
		bcfg.RequestReadTimeout = cfg.RequestReadTimeout
	}
	if cfg.WriteTimeout != 0 {
		bcfg.WriteTimeout = cfg.WriteTimeout
	}
	if cfg.FetchSessionCacheSlots != 0 {
		bcfg.FetchSessionCacheSlots = cfg.FetchSessionCacheSlots
	}
	bcfg.SuperUsers = cfg.SuperUsers
	bcfg.AllowEveryoneIfNoACLFound = !cfg.DenyIfNoACLFound
	bcfg.Node, bcfg.Store, bcfg.Logger = node, store, logger
	tb := &testBroker{Node: node, Store: store}
	var stop func()
	tb.Broker, tb.Addr, tb.Metrics, stop = serveBroker(t, bcfg)
	t.Cleanup(stop)
	return tb
}

// serveBroker builds a broker from bcfg, with AdvertisedAddr and Registerer set
// here (a listener on 127.0.0.1:0, a fresh registry), and serves it. It
// returns the broker, its address, the registry and a function that stops the
// broker and reports errors with t.Errorf; failing to start fails the test.
func serveBroker(t testing.TB, bcfg Config) (*Broker, string, *prometheus.Registry, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return serveBrokerOn(t, bcfg, ln)
}

// serveBrokerOn is serveBroker on a listener the caller opened (a cluster
// node must know its Kafka address before the node starts).
func serveBrokerOn(t testing.TB, bcfg Config, ln net.Listener) (*Broker, string, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	bcfg.AdvertisedAddr = ln.Addr().String()
	bcfg.Registerer = reg
	b, err := New(bcfg)
	if err != nil {
		ln.Close()
		t.Fatalf("new broker: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	closeBroker := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close broker: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	return b, ln.Addr().String(), reg, closeBroker
}

// client returns a franz-go client seeded with the broker's address, closed
// when the test ends.
func (tb *testBroker) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, tb.Addr, opts...)
}

// newClient returns a franz-go client seeded with addr, closed when the test
// ends.
func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
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

// testLogger sends slog output to t.Log, so only failing tests print (see
// nodetest.Logger: lines logged after the test has finished are dropped).
func testLogger(t testing.TB) *slog.Logger { return nodetest.Logger(t, slog.LevelDebug) }
