package broker

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// testGroupConfig is the coordinator configuration of group tests: short
// timeouts so that barriers and expiry happen within a test, and few offsets
// partitions.
func testGroupConfig() GroupConfig {
	c := DefaultGroupConfig()
	c.MinSessionTimeout = 100 * time.Millisecond
	c.InitialRebalanceDelay = 0
	c.OffsetsTopicPartitions = 4
	return c
}

// groupBroker is a broker over a data directory that can be restarted.
type groupBroker struct {
	t       testing.TB
	dir     string
	cfg     GroupConfig
	Addr    string
	Broker  *Broker
	Node    *raftfsm.Node
	Store   *shardstore.Store
	Metrics *prometheus.Registry
	stop    func()
}

// newGroupBroker starts a broker with the group settings cfg (changed by
// opts) in a fresh directory; it is stopped when the test ends.
func newGroupBroker(t testing.TB, opts ...func(*GroupConfig)) *groupBroker {
	t.Helper()
	cfg := testGroupConfig()
	for _, o := range opts {
		o(&cfg)
	}
	gb := &groupBroker{t: t, dir: t.TempDir(), cfg: cfg}
	gb.start()
	t.Cleanup(func() { gb.Stop() })
	return gb
}

// start opens store, node and broker over gb.dir.
func (gb *groupBroker) start() {
	t := gb.t
	t.Helper()
	logger := testLogger(t)
	store, err := shardstore.Open(filepath.Join(gb.dir, "store"), shardstore.Options{Logger: logger, CacheBytes: 8 << 20})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ncfg := raftfsm.DefaultConfig()
	ncfg.Dir = filepath.Join(gb.dir, "raft")
	ncfg.Store = store
	ncfg.DataGroups = 2
	defaults := map[string]string{topicconfig.CleanupPolicy: "compact"}
	ncfg.BrokerTopicDefaults = defaults
	ncfg.HeartbeatTimeout = 50 * time.Millisecond
	ncfg.ElectionTimeout = 50 * time.Millisecond
	ncfg.LeaderLeaseTimeout = 50 * time.Millisecond
	ncfg.CommitTimeout = 5 * time.Millisecond
	ncfg.Logger = logger
	node, err := raftfsm.Open(ncfg)
	if err != nil {
		store.Close()
		t.Fatalf("open node: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		node.Close()
		store.Close()
		t.Fatalf("node not ready: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	reg := prometheus.NewRegistry()
	bcfg := DefaultConfig()
	bcfg.AdvertisedAddr = ln.Addr().String()
	bcfg.TopicDefaults = defaults
	bcfg.Node, bcfg.Store, bcfg.Logger, bcfg.Registerer = node, store, logger, reg
	bcfg.Groups = gb.cfg
	b, err := New(bcfg)
	if err != nil {
		t.Fatalf("new broker: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()
	gb.Addr, gb.Broker, gb.Node, gb.Store, gb.Metrics = ln.Addr().String(), b, node, store, reg
	gb.stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close broker: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := node.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
}

// Stop stops the broker, node and store (idempotent).
func (gb *groupBroker) Stop() {
	if gb.stop != nil {
		gb.stop()
		gb.stop = nil
	}
}

// Restart stops everything and opens it again over the same directory; the
// Kafka address changes.
func (gb *groupBroker) Restart() {
	gb.t.Helper()
	gb.Stop()
	gb.start()
}

// client returns a franz-go client for the broker, closed when the test ends.
func (gb *groupBroker) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(gb.Addr)}, opts...)...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// groupRequest sends one request and fails the test on a transport error.
func groupRequest[R kmsg.Response](t testing.TB, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp.(R)
}

// waitUntil polls cond until it returns nil or the deadline passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
