package nodetest

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// ReadyTimeout bounds the wait for the node's groups to have leaders.
const ReadyTimeout = 30 * time.Second

// config is what the options change.
type config struct {
	dir       string
	logger    *slog.Logger
	storeOpts []func(*shardstore.Options)
	nodeOpts  []func(*raftfsm.Config)
}

// Option changes how Open and Start set up the store and the node.
type Option func(*config)

// Dir opens the store and the node over dir (in its "store" and "raft"
// subdirectories) instead of a fresh t.TempDir(), so that a test can stop them
// and open them again over the same data.
func Dir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithLogger gives the store and the node logger; the default is Logger(t,
// slog.LevelWarn).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// TopicDefaults sets raftfsm.Config.BrokerTopicDefaults.
func TopicDefaults(m map[string]string) Option {
	return NodeConfig(func(nc *raftfsm.Config) { nc.BrokerTopicDefaults = m })
}

// NodeConfig lets the test change the node's configuration after the test
// defaults (two data groups, 50 ms Raft timeouts, 5 ms commit timeout) are set.
func NodeConfig(f func(*raftfsm.Config)) Option {
	return func(c *config) { c.nodeOpts = append(c.nodeOpts, f) }
}

// StoreOptions lets the test change the store's options after the test
// defaults (an 8 MiB block cache) are set.
func StoreOptions(f func(*shardstore.Options)) Option {
	return func(c *config) { c.storeOpts = append(c.storeOpts, f) }
}

// Open opens a store and a node on it, waits until the node is ready and
// registers a cleanup that closes the node, then the store. Cleanups that the
// test registers later (a broker over the node, say) run before it. Any
// failure to start fails the test.
func Open(t testing.TB, opts ...Option) (*shardstore.Store, *raftfsm.Node) {
	t.Helper()
	store, node, closeFn := Start(t, opts...)
	t.Cleanup(closeFn)
	return store, node
}

// Start is Open without the cleanup: it returns a function that closes the
// node, then the store, reporting errors with t.Errorf. Fixtures that restart
// over the same Dir call it themselves.
func Start(t testing.TB, opts ...Option) (*shardstore.Store, *raftfsm.Node, func()) {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	if c.logger == nil {
		c.logger = Logger(t, slog.LevelWarn)
	}

	sopts := shardstore.Options{Logger: c.logger, CacheBytes: 8 << 20}
	for _, f := range c.storeOpts {
		f(&sopts)
	}
	store, err := shardstore.Open(filepath.Join(c.dir, "store"), sopts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	closeStore := func() {
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}

	ncfg := raftfsm.DefaultConfig()
	ncfg.Dir = filepath.Join(c.dir, "raft")
	ncfg.Store = store
	ncfg.DataGroups = 2
	ncfg.HeartbeatTimeout = 50 * time.Millisecond
	ncfg.ElectionTimeout = 50 * time.Millisecond
	ncfg.LeaderLeaseTimeout = 50 * time.Millisecond
	ncfg.CommitTimeout = 5 * time.Millisecond
	ncfg.Logger = c.logger
	for _, f := range c.nodeOpts {
		f(&ncfg)
	}
	node, err := raftfsm.Open(ncfg)
	if err != nil {
		closeStore()
		t.Fatalf("open node: %v", err)
	}
	closeAll := func() {
		if err := node.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
		closeStore()
	}

	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := node.WaitReady(ctx); err != nil {
		closeAll()
		t.Fatalf("node not ready: %v", err)
	}
	return store, node, closeAll
}

// Logger returns a logger at level that writes to t.Log, so only failing
// tests print. Lines logged after the test has finished (by goroutines still
// winding down) are dropped instead of panicking: the cleanup that stops it is
// registered here, before any the caller adds, so it runs after them.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
