package broker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/nodetest"
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
	c.BacklogRefreshInterval = 20 * time.Millisecond
	return c
}

// groupBroker is a broker over a data directory that can be restarted.
type groupBroker struct {
	t   testing.TB
	dir string
	cfg GroupConfig
	// hooks, when set, are the coordinator's test hooks from the next start.
	hooks *coordinatorHooks
	// txn and now, when set, are the transaction settings and clock.
	txn     TxnConfig
	now     func() time.Time
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
	defaults := map[string]string{topicconfig.CleanupPolicy: "compact"}
	store, node, closeNode := nodetest.Start(t, nodetest.Dir(gb.dir), nodetest.WithLogger(logger), nodetest.TopicDefaults(defaults))
	started := false
	defer func() {
		if !started { // serveBroker failed the test
			closeNode()
		}
	}()
	bcfg := DefaultConfig()
	bcfg.TopicDefaults = defaults
	bcfg.Node, bcfg.Store, bcfg.Logger = node, store, logger
	bcfg.Groups = gb.cfg
	bcfg.hooks = gb.hooks
	bcfg.Transactions, bcfg.Now = gb.txn, gb.now
	b, addr, reg, closeBroker := serveBroker(t, bcfg)
	started = true
	gb.Addr, gb.Broker, gb.Node, gb.Store, gb.Metrics = addr, b, node, store, reg
	gb.stop = func() {
		closeBroker()
		closeNode()
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
	return newClient(t, gb.Addr, opts...)
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
