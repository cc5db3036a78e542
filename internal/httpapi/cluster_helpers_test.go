package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardcache/shardcache/internal/nodetest"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// httpNode is one node of an in-process cluster over TCP on loopback: its own
// store, Raft node, node-to-node listener and HTTP server, as
// cmd/shardcache/run.go wires them (the HTTP address is registered in
// cluster metadata, so other nodes can name it).
type httpNode struct {
	t        testing.TB
	id       int32
	addr     string // node-to-node address
	httpAddr string
	store    *shardstore.Store
	node     *raftfsm.Node
	srv      *http.Server
	srvDone  chan error
	backend  atomic.Pointer[Backend]
}

// newHTTPNode starts a node; join lists cluster addresses of existing nodes
// (none bootstraps a new cluster); opts change its HTTP server. It is
// stopped at cleanup.
func newHTTPNode(t testing.TB, id int32, join []string, opts ...nodeOption) *httpNode {
	t.Helper()
	clusterLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		clusterLn.Close()
		t.Fatal(err)
	}
	n := &httpNode{t: t, id: id, addr: clusterLn.Addr().String(), httpAddr: httpLn.Addr().String(), srvDone: make(chan error, 1)}
	// The directory first: cleanups run last-in first-out, and the store
	// flushes into it when it closes.
	dir := t.TempDir()
	t.Cleanup(n.stop)
	logger := nodetest.Logger(t, slog.LevelWarn) // raftfsm adds node_id itself
	hc := Config{Backend: n.backend.Load, Ready: func() bool { b := n.backend.Load(); return b != nil && b.Node.Ready() }, Logger: logger.With("node_id", id)}
	var serverTLS *tls.Config
	for _, o := range opts {
		if o.cfg != nil {
			o.cfg(&hc)
		}
		if o.serverTLS != nil {
			serverTLS = o.serverTLS
		}
	}
	n.srv = &http.Server{
		Handler:           New(hc),
		ReadHeaderTimeout: 5 * time.Second,
	}
	if serverTLS != nil {
		httpLn = tls.NewListener(httpLn, serverTLS)
	}
	go func() { n.srvDone <- n.srv.Serve(httpLn) }()

	n.store, err = shardstore.Open(filepath.Join(dir, "store"), shardstore.Options{Logger: logger, CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		clusterLn.Close()
		t.Fatal(err)
	}
	cfg := raftfsm.DefaultConfig()
	cfg.NodeID = id
	cfg.Dir = filepath.Join(dir, "raft")
	cfg.Store = n.store
	cfg.DataGroups = 2
	cfg.Logger = logger
	cfg.Listener = clusterLn
	cfg.ClusterAddr = n.addr
	cfg.KafkaAddr = "127.0.0.1:1"
	cfg.HTTPAddr = n.httpAddr
	cfg.Join = join
	cfg.BrokerTopicDefaults = map[string]string{topicconfig.CleanupPolicy: "compact"}
	// Several nodes' groups share two cores under -race: timeouts as a real
	// cluster on one box would use.
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	if n.node, err = raftfsm.Open(cfg); err != nil {
		clusterLn.Close()
		t.Fatalf("node %d: open: %v", id, err)
	}
	n.backend.Store(&Backend{Node: n.node, Store: n.store})
	return n
}

// stop stops the HTTP server (peers then see the node unreachable), the Raft
// node and the store. Idempotent.
// nodeOption changes a newHTTPNode's HTTP server: its handler's Config, and
// TLS on its port.
type nodeOption struct {
	cfg       func(*Config)
	serverTLS *tls.Config
}

func (n *httpNode) stop() {
	if n.srv != nil {
		n.srv.Close()
		if err := <-n.srvDone; !errors.Is(err, http.ErrServerClosed) {
			n.t.Errorf("node %d: http serve: %v", n.id, err)
		}
		n.srv = nil
	}
	n.backend.Store(nil)
	if n.node != nil {
		if err := n.node.Close(); err != nil {
			n.t.Errorf("node %d: close: %v", n.id, err)
		}
		n.node = nil
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.t.Errorf("node %d: close store: %v", n.id, err)
		}
		n.store = nil
	}
}

func (n *httpNode) waitReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.node.WaitReady(ctx); err != nil {
		t.Fatalf("node %d: WaitReady: %v", n.id, err)
	}
}

// newHTTPCluster starts node 1, which bootstraps, and nodes 2..size joining
// it, and waits until every node is ready.
func newHTTPCluster(t testing.TB, size int) []*httpNode {
	t.Helper()
	nodes := []*httpNode{newHTTPNode(t, 1, nil)}
	for id := 2; id <= size; id++ {
		nodes = append(nodes, newHTTPNode(t, int32(id), []string{nodes[0].addr}))
	}
	for _, n := range nodes {
		n.waitReady(t)
	}
	return nodes
}

// waitFor polls cond until it holds, failing the test at the deadline with
// the last reason cond gave.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpAnswer is a response read whole.
type httpAnswer struct {
	status int
	header http.Header
	body   []byte
}

var testClient = &http.Client{Timeout: 30 * time.Second}

// send sends one request to a node's HTTP address.
func send(t testing.TB, httpAddr, method, path, body string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpAnswer{status: resp.StatusCode, header: resp.Header, body: data}
}

// errorBody decodes a JSON error answer.
func (a httpAnswer) errorBody(t testing.TB) apiErrorBody {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q (status %d, body %q)", ct, a.status, a.body)
	}
	var e apiErrorBody
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" || e.Code == "" {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	return e
}

// getCluster reads a node's /v1/cluster.
func getCluster(t testing.TB, httpAddr string) clusterResponse {
	t.Helper()
	a := send(t, httpAddr, "GET", "/v1/cluster", "")
	if a.status != http.StatusOK {
		t.Fatalf("GET /v1/cluster on %s: %d %s", httpAddr, a.status, a.body)
	}
	var c clusterResponse
	if err := json.Unmarshal(a.body, &c); err != nil {
		t.Fatalf("/v1/cluster body %q: %v", a.body, err)
	}
	return c
}
