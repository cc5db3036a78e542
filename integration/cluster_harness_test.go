//go:build unix

package integration

// The cluster harness: n shardcache processes on 127.0.0.1 forming one cluster,
// with a faultproxy on every ordered node-to-node link, so that a test can kill,
// stop, pause, restart or wipe a node and cut links in one direction or both
// while real clients keep working.
//
// Ports. Each node's Kafka, HTTP and cluster ports are picked once, up front
// (listen on 127.0.0.1:0 and keep the listener until the node first starts),
// and reused on every start, so a restarted node keeps its registered
// addresses and clients find it again.
//
// Links. Node i reaches node j only through the proxy P(i→j), whose target is
// j's cluster listener: i is started with --cluster-peer-addrs j=P(i→j) for
// every other j (and --join through the same proxies). Raft and control RPCs
// are request/response on connections the caller dials, so the bytes i sends
// to j travel on P(i→j) forward (i's requests) and on P(j→i) backward (i's
// replies to j's requests). cut(i, j) blackholes both, and drops everything i
// sends to j; the other direction keeps working. Heal resets every connection
// that was cut (as TCP would, having given up on it) and passes traffic again:
// a blackholed stream lost bytes mid-frame and must not be resumed.
//
// The Kafka listeners are not proxied: clients reach every running node.
//
// The proxies run inside the test process. When it stalls (the race detector,
// the checker, a loaded 2-core machine), every link stalls with it, and a
// follower may now and then time out on a live leader; tests must not count
// on the absence of such elections.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/faultproxy"
)

const (
	// clusterWaitTimeout bounds every wait for a cluster condition: readiness,
	// leaders, replication.
	clusterWaitTimeout = 60 * time.Second
	// testRaftTimeout is the heartbeat and election timeout the cluster tests
	// run with: half the 1s default, so a failover takes about a second, still
	// long enough that 3 processes (and a -race test process) on 2 cores do not
	// call spurious elections.
	testRaftTimeout = 500 * time.Millisecond
)

// clusterConfig is what startCluster's options set.
type clusterConfig struct {
	heartbeat, election time.Duration
	args                []string
	racks               bool
}

// clusterOpt configures startCluster.
type clusterOpt func(*clusterConfig)

// withRaftTimeouts sets --raft-heartbeat-timeout and --raft-election-timeout.
func withRaftTimeouts(heartbeat, election time.Duration) clusterOpt {
	return func(c *clusterConfig) { c.heartbeat, c.election = heartbeat, election }
}

// withNodeArgs appends flags to every node's command line.
func withNodeArgs(args ...string) clusterOpt {
	return func(c *clusterConfig) { c.args = append(c.args, args...) }
}

// withRacks gives node i --rack=r<i>.
func withRacks() clusterOpt {
	return func(c *clusterConfig) { c.racks = true }
}

// testCluster is n shardcache processes and the proxies between them.
type testCluster struct {
	t     testing.TB
	cfg   clusterConfig
	nodes []*clusterNode // nodes[i] has id i+1
	links map[[2]int32]*faultproxy.Proxy

	directMu sync.Mutex
	direct   map[int32]*kgo.Client // nodeClient per node, made on first use

	// elections are the times a node's Raft group gave up on its leader and
	// started an election, from the node logs.
	electionsMu sync.Mutex
	elections   []electionTimeout
}

// electionTimeout is one "heartbeat timeout reached" line of a node's log.
type electionTimeout struct {
	At    time.Time // when the harness read the line
	Node  int32
	Group string
	// LastLeader is the leader the group stopped hearing from, -1 if none.
	LastLeader int32
}

// clusterNode is one node of a testCluster. Its addresses and data dir never
// change.
type clusterNode struct {
	ID          int32
	KafkaAddr   string
	HTTPAddr    string
	ClusterAddr string
	DataDir     string

	mu     sync.Mutex
	proc   *brokerProc // nil when not running
	paused bool
	starts int
	// bootstrap: the next start creates the cluster (node 1's first start).
	bootstrap bool
	// held keeps the node's ports bound until its first start.
	held []net.Listener
}

// startCluster starts n nodes with ids 1..n: node 1 bootstraps the cluster,
// the others join it, and it returns once every node is ready and lists n
// brokers. Every process is killed and every proxy closed when the test ends.
func startCluster(t testing.TB, n int, opts ...clusterOpt) *testCluster {
	t.Helper()
	requireLocalBroker(t)
	if buildErr != nil {
		t.Fatalf("shardcache binary not built: %v", buildErr)
	}
	cfg := clusterConfig{heartbeat: testRaftTimeout, election: testRaftTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	c := &testCluster{
		t:      t,
		cfg:    cfg,
		links:  make(map[[2]int32]*faultproxy.Proxy),
		direct: make(map[int32]*kgo.Client),
	}
	// Each node's ports stay bound here until the node first starts, so
	// that the proxies' listeners (and anything else) cannot take them.
	root := t.TempDir()
	for i := range n {
		held := holdPorts(t, 3)
		c.nodes = append(c.nodes, &clusterNode{
			ID:          int32(i + 1),
			KafkaAddr:   held[0].Addr().String(),
			HTTPAddr:    held[1].Addr().String(),
			ClusterAddr: held[2].Addr().String(),
			DataDir:     filepath.Join(root, fmt.Sprintf("node-%d", i+1)),
			bootstrap:   i == 0,
			held:        held,
		})
	}
	// Proxies are closed after the processes are gone (cleanups run last first).
	t.Cleanup(func() {
		began := time.Now()
		for _, p := range c.links {
			p.Close()
		}
		if d := time.Since(began); d > time.Second {
			t.Logf("closing the link proxies took %v", d.Round(time.Millisecond))
		}
	})
	for _, from := range c.nodes {
		for _, to := range c.nodes {
			if from == to {
				continue
			}
			p, err := faultproxy.New(to.ClusterAddr)
			if err != nil {
				t.Fatalf("proxy %d→%d: %v", from.ID, to.ID, err)
			}
			c.links[[2]int32{from.ID, to.ID}] = p
		}
	}
	t.Cleanup(c.shutdown)

	began := time.Now()
	c.Start(1)
	// The others join concurrently; Start fails the test from this goroutine
	// only, so each start reports its error back.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for _, nd := range c.nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[nd.ID-1] = c.start(nd)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	c.waitFor("every node lists every broker", func(ctx context.Context) error {
		for _, nd := range c.nodes {
			md, err := c.metadata(ctx, nd.ID, nil)
			if err != nil {
				return err
			}
			if len(md.Brokers) != n {
				return fmt.Errorf("node %d lists %d brokers, want %d", nd.ID, len(md.Brokers), n)
			}
		}
		return nil
	})
	t.Logf("cluster of %d nodes ready in %v", n, time.Since(began).Round(time.Millisecond))
	return c
}

// holdPorts binds n listeners on 127.0.0.1:0 and closes them when the test
// ends; a node's ports are picked this way and released just before it starts.
func holdPorts(t testing.TB, n int) []net.Listener {
	t.Helper()
	var out []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		t.Cleanup(func() { ln.Close() })
		out = append(out, ln)
	}
	return out
}

// Node returns node id.
func (c *testCluster) Node(id int32) *clusterNode {
	c.t.Helper()
	if id < 1 || int(id) > len(c.nodes) {
		c.t.Fatalf("no node %d in a cluster of %d", id, len(c.nodes))
	}
	return c.nodes[id-1]
}

// IDs returns every node id.
func (c *testCluster) IDs() []int32 {
	ids := make([]int32, len(c.nodes))
	for i, nd := range c.nodes {
		ids[i] = nd.ID
	}
	return ids
}

// Seeds returns every node's Kafka address.
func (c *testCluster) Seeds() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.KafkaAddr
	}
	return out
}

// Link returns the proxy node from dials to reach node to.
func (c *testCluster) Link(from, to int32) *faultproxy.Proxy {
	c.t.Helper()
	p := c.links[[2]int32{from, to}]
	if p == nil {
		c.t.Fatalf("no link %d→%d", from, to)
	}
	return p
}

// args is node nd's command line for its next start.
func (c *testCluster) args(nd *clusterNode) []string {
	args := []string{
		"--node-id=" + fmt.Sprint(nd.ID),
		"--data-dir=" + nd.DataDir,
		"--kafka-addr=" + nd.KafkaAddr,
		"--http-addr=" + nd.HTTPAddr,
		"--cluster-addr=" + nd.ClusterAddr,
		"--compaction-interval=100ms",
		"--group-initial-rebalance-delay=0",
		"--raft-heartbeat-timeout=" + c.cfg.heartbeat.String(),
		"--raft-election-timeout=" + c.cfg.election.String(),
	}
	var peers, join []string
	for _, other := range c.nodes {
		if other == nd {
			continue
		}
		p := c.links[[2]int32{nd.ID, other.ID}].Addr()
		peers = append(peers, fmt.Sprintf("%d=%s", other.ID, p))
		join = append(join, p)
	}
	args = append(args, "--cluster-peer-addrs="+strings.Join(peers, ","))
	if c.cfg.racks {
		args = append(args, fmt.Sprintf("--rack=r%d", nd.ID))
	}
	// A node with state ignores --join (it only checks the cluster id), so
	// every start but the bootstrap passes it: a wiped node joins again.
	if !nd.bootstrap && len(join) > 0 {
		args = append(args, "--join="+strings.Join(join, ","))
	}
	return append(args, c.cfg.args...)
}

// Start starts node id on its data dir and ports and waits until its /readyz
// answers 200.
func (c *testCluster) Start(id int32) {
	c.t.Helper()
	if err := c.start(c.Node(id)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) start(nd *clusterNode) error {
	nd.mu.Lock()
	if nd.proc != nil {
		nd.mu.Unlock()
		return fmt.Errorf("start node %d: already running", nd.ID)
	}
	nd.starts++
	run := nd.starts
	args := c.args(nd)
	nd.bootstrap = false
	for _, ln := range nd.held {
		ln.Close()
	}
	nd.held = nil
	cmd := exec.Command(binPath, args...)
	setChildAttrs(cmd)
	out := &nodeLog{c: c, node: nd.ID, lineLog: newLineLog(c.t, fmt.Sprintf("n%d#%d: ", nd.ID, run))}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		nd.mu.Unlock()
		return fmt.Errorf("start node %d: %v", nd.ID, err)
	}
	p := &brokerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.flush()
		close(p.done)
	}()
	nd.proc = p
	nd.paused = false
	nd.mu.Unlock()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	if err := waitReady(nd.HTTPAddr, nil, p.done, deadline.C); err != nil {
		c.reap(nd)
		return fmt.Errorf("node %d (start #%d) not ready: %v", nd.ID, run, err)
	}
	return nil
}

// electionLine is what hashicorp/raft logs when a follower's heartbeat timeout
// fires and it starts an election.
const electionLine = "heartbeat timeout reached, starting election"

// nodeLog sends a node's output to the test's childLog line by line and records its
// election timeouts.
type nodeLog struct {
	c    *testCluster
	node int32
	*lineLog
	mu      sync.Mutex
	partial []byte // the unfinished last line
}

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if line := string(l.partial[:i]); strings.Contains(line, electionLine) {
			e := electionTimeout{At: time.Now(), Node: l.node, Group: slogAttr(line, "raft_group"), LastLeader: -1}
			if id, err := strconv.ParseInt(slogAttr(line, "last-leader-id"), 10, 32); err == nil {
				e.LastLeader = int32(id)
			}
			l.c.electionsMu.Lock()
			l.c.elections = append(l.c.elections, e)
			l.c.electionsMu.Unlock()
		}
		l.partial = l.partial[i+1:]
	}
	l.mu.Unlock()
	return l.lineLog.Write(p)
}

// ElectionTimeouts returns the election timeouts logged since the given time.
func (c *testCluster) ElectionTimeouts(since time.Time) []electionTimeout {
	c.electionsMu.Lock()
	defer c.electionsMu.Unlock()
	var out []electionTimeout
	for _, e := range c.elections {
		if !e.At.Before(since) {
			out = append(out, e)
		}
	}
	return out
}

// reap kills node nd's process, if any, and waits for it.
func (c *testCluster) reap(nd *clusterNode) *brokerProc {
	nd.mu.Lock()
	p := nd.proc
	nd.proc = nil
	nd.paused = false
	nd.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return p
}

// running returns node id's process, or fails the test.
func (c *testCluster) running(id int32) (*clusterNode, *brokerProc) {
	c.t.Helper()
	nd := c.Node(id)
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		c.t.Fatalf("node %d is not running", id)
	}
	return nd, nd.proc
}

// Running reports whether node id has a process (paused or not).
func (c *testCluster) Running(id int32) bool {
	nd := c.Node(id)
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc != nil
}

// Kill sends SIGKILL to node id and waits for the process to be gone.
func (c *testCluster) Kill(id int32) {
	c.t.Helper()
	c.running(id)
	c.reap(c.Node(id))
}

// Stop sends SIGTERM to node id (resuming it first if paused), waits for it to
// exit and fails the test unless it exits 0 within stopTimeout.
func (c *testCluster) Stop(id int32) {
	c.t.Helper()
	nd, p := c.running(id)
	began := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Errorf("node %d: SIGTERM: %v", id, err)
	}
	c.Resume(id)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		dumpAndKill(p)
		c.reap(nd)
		c.t.Fatalf("node %d did not exit within %v of SIGTERM; its goroutines are above (SIGQUIT)", id, stopTimeout)
	}
	nd.mu.Lock()
	nd.proc = nil
	nd.mu.Unlock()
	if p.err != nil {
		c.t.Errorf("node %d exited uncleanly after SIGTERM: %v", id, p.err)
	}
	c.t.Logf("node %d stopped in %v", id, time.Since(began).Round(time.Millisecond))
}

// Pause stops node id with SIGSTOP: it keeps its sockets but answers nothing.
func (c *testCluster) Pause(id int32) {
	c.t.Helper()
	nd, p := c.running(id)
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatalf("node %d: SIGSTOP: %v", id, err)
	}
	nd.mu.Lock()
	nd.paused = true
	nd.mu.Unlock()
}

// Resume continues a node stopped by Pause (SIGCONT); a no-op otherwise.
func (c *testCluster) Resume(id int32) {
	c.t.Helper()
	nd := c.Node(id)
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil || !nd.paused {
		return
	}
	if err := nd.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		c.t.Errorf("node %d: SIGCONT: %v", id, err)
	}
	nd.paused = false
}

// Wipe deletes node id's data dir; the node must not be running. Its next
// Start joins the cluster again through the others.
func (c *testCluster) Wipe(id int32) {
	c.t.Helper()
	nd := c.Node(id)
	if c.Running(id) {
		c.t.Fatalf("wipe node %d: still running", id)
	}
	if err := os.RemoveAll(nd.DataDir); err != nil {
		c.t.Fatalf("wipe node %d: %v", id, err)
	}
}

// cut drops every byte node from sends to node to (see the file comment).
func (c *testCluster) cut(from, to int32) {
	c.Link(from, to).SetMode(faultproxy.Forward, faultproxy.Blackhole)
	c.Link(to, from).SetMode(faultproxy.Backward, faultproxy.Blackhole)
}

// Partition cuts every link between a node of a and a node of b, both ways.
func (c *testCluster) Partition(a, b []int32) {
	c.t.Helper()
	for _, i := range a {
		for _, j := range b {
			c.cut(i, j)
			c.cut(j, i)
		}
	}
	c.t.Logf("partitioned %v from %v", a, b)
}

// IsolateOneWay drops what node from sends to node to; to still reaches from.
func (c *testCluster) IsolateOneWay(from, to int32) {
	c.t.Helper()
	c.cut(from, to)
	c.t.Logf("cut %d→%d (one way)", from, to)
}

// Heal passes every link again. Connections of a link that was faulted are
// reset first: they lost bytes and cannot be resumed.
func (c *testCluster) Heal() {
	c.t.Helper()
	for _, p := range c.links {
		if p.Mode(faultproxy.Forward) == faultproxy.Pass && p.Mode(faultproxy.Backward) == faultproxy.Pass {
			continue
		}
		p.Set(faultproxy.Reset)
		p.Set(faultproxy.Pass)
	}
	c.t.Logf("healed every link")
}

// allStopTimeout bounds StopAll and the cleanup; every node normally exits
// within a second.
const allStopTimeout = 10 * time.Second

// StopAll sends SIGTERM to every running node at once (resuming paused ones)
// and waits up to timeout for all of them. It returns the ids of the nodes
// that did not exit in time; their goroutines are dumped to their logs
// (SIGQUIT) and they are killed.
func (c *testCluster) StopAll(timeout time.Duration) (hung []int32) {
	return c.stopAll(timeout, 0)
}

// stopAll is StopAll with a pause of gap between two SIGTERMs.
func (c *testCluster) stopAll(timeout, gap time.Duration) (hung []int32) {
	type running struct {
		id int32
		p  *brokerProc
	}
	var procs []running
	for _, nd := range c.nodes {
		nd.mu.Lock()
		if p := nd.proc; p != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			if nd.paused {
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
			}
			procs = append(procs, running{nd.ID, p})
		}
		nd.proc, nd.paused = nil, false
		nd.mu.Unlock()
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	deadline := time.After(timeout)
	for _, r := range procs {
		select {
		case <-r.p.done:
		case <-deadline:
			hung = append(hung, r.id)
			dumpAndKill(r.p)
		}
	}
	return hung
}

// StartAll starts every node that is not running, all at once (a node with
// state is not ready before a majority runs), and waits until each is ready.
func (c *testCluster) StartAll() {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, nd := range c.nodes {
		if c.Running(nd.ID) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start(nd)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
}

// shutdown is the cleanup: StopAll. A node that hangs fails the test (see
// TestClusterBugShutdownHangs).
func (c *testCluster) shutdown() {
	for _, id := range c.StopAll(allStopTimeout) {
		c.t.Errorf("node %d did not exit within %v of SIGTERM; its goroutines are above (SIGQUIT), then it was killed", id, allStopTimeout)
	}
}

// dumpAndKill sends SIGQUIT, so that the Go runtime prints every goroutine's
// stack to the node's log and exits, then SIGKILL if that takes over 5s.
func dumpAndKill(p *brokerProc) {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Client returns a franz-go client seeded with every node, closed when the
// test ends.
func (c *testCluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := []kgo.Opt{
		kgo.SeedBrokers(c.Seeds()...),
		kgo.WithLogger(kgo.BasicLogger(&testLogWriter{t: t}, kgo.LogLevelWarn, nil)),
		kgo.DialTimeout(2 * time.Second),
	}
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// nodeClient returns a client that sends every request to node id (and
// nowhere else), closed when the test ends.
func (c *testCluster) nodeClient(id int32) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.Node(id).KafkaAddr),
		kgo.WithLogger(kgo.BasicLogger(&testLogWriter{t: c.t}, kgo.LogLevelError, nil)),
		kgo.DialTimeout(2*time.Second),
		kgo.RequestTimeoutOverhead(3*time.Second),
	)
	if err != nil {
		c.t.Fatalf("kgo.NewClient: %v", err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// requestNode sends req to node id only.
func (c *testCluster) requestNode(ctx context.Context, id int32, req kmsg.Request) (kmsg.Response, error) {
	c.directMu.Lock()
	cl := c.direct[id]
	if cl == nil {
		cl = c.nodeClient(id)
		c.direct[id] = cl
	}
	c.directMu.Unlock()
	seeds := cl.SeedBrokers()
	if len(seeds) != 1 {
		return nil, fmt.Errorf("node %d client has %d seeds", id, len(seeds))
	}
	return seeds[0].Request(ctx, req)
}

// metadata asks node id for the metadata of topics (nil: no topics, only
// brokers; empty: every topic).
func (c *testCluster) metadata(ctx context.Context, id int32, topics []string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	if topics != nil {
		req.Topics = []kmsg.MetadataRequestTopic{}
		for _, tn := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(tn)
			req.Topics = append(req.Topics, rt)
		}
	}
	resp, err := c.requestNode(ctx, id, req)
	if err != nil {
		return nil, fmt.Errorf("metadata from node %d: %w", id, err)
	}
	return resp.(*kmsg.MetadataResponse), nil
}

// waitFor polls cond (each call bounded to 5s) until it returns nil, and fails
// the test with its last error after clusterWaitTimeout.
func (c *testCluster) waitFor(what string, cond func(ctx context.Context) error) {
	c.t.Helper()
	deadline := time.Now().Add(clusterWaitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not true within %v: %v", what, clusterWaitTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// partitionState is one partition as one node's Metadata answer shows it.
type partitionState struct {
	Leader   int32
	Epoch    int32
	Replicas []int32
	ISR      []int32
}

// partitions returns node id's view of every partition of topic.
func (c *testCluster) partitions(ctx context.Context, id int32, topic string) (map[int32]partitionState, error) {
	md, err := c.metadata(ctx, id, []string{topic})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("node %d: metadata for %s has %d topics", id, topic, len(md.Topics))
	}
	mt := md.Topics[0]
	if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
		return nil, fmt.Errorf("node %d: metadata for %s: %w", id, topic, err)
	}
	out := make(map[int32]partitionState, len(mt.Partitions))
	for _, p := range mt.Partitions {
		out[p.Partition] = partitionState{Leader: p.Leader, Epoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.ISR}
	}
	return out, nil
}

// Leaders returns the leader of every partition of topic as the first
// running, unpaused node that answers sees it.
func (c *testCluster) Leaders(topic string) map[int32]int32 {
	c.t.Helper()
	var out map[int32]int32
	c.waitFor("leaders of "+topic, func(ctx context.Context) error {
		var errs []error
		for _, id := range c.live() {
			ps, err := c.partitions(ctx, id, topic)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = make(map[int32]int32, len(ps))
			for p, st := range ps {
				out[p] = st.Leader
			}
			return nil
		}
		return errors.Join(append(errs, errors.New("no node answered"))...)
	})
	return out
}

// live returns the nodes that run and are not paused.
func (c *testCluster) live() []int32 {
	var out []int32
	for _, nd := range c.nodes {
		nd.mu.Lock()
		if nd.proc != nil && !nd.paused {
			out = append(out, nd.ID)
		}
		nd.mu.Unlock()
	}
	return out
}

// WaitLeaders waits until every live node's Metadata shows every partition of
// each topic led by a live node, and the nodes agree on the leaders.
func (c *testCluster) WaitLeaders(topics ...string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("every partition of %v has a live leader", topics), func(ctx context.Context) error {
		live := c.live()
		for _, topic := range topics {
			var first map[int32]partitionState
			for _, id := range live {
				ps, err := c.partitions(ctx, id, topic)
				if err != nil {
					return err
				}
				if len(ps) == 0 {
					return fmt.Errorf("node %d: %s has no partitions", id, topic)
				}
				for p, st := range ps {
					if !slices.Contains(live, st.Leader) {
						return fmt.Errorf("node %d: %s/%d has leader %d, not a live node %v", id, topic, p, st.Leader, live)
					}
					if first != nil && first[p].Leader != st.Leader {
						return fmt.Errorf("%s/%d: nodes disagree on the leader (%d and %d)", topic, p, first[p].Leader, st.Leader)
					}
				}
				if first == nil {
					first = ps
				}
			}
		}
		return nil
	})
}

// WaitReplicated waits until every partition of each topic has every node
// in its ISR, as each node sees it.
func (c *testCluster) WaitReplicated(topics ...string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("every partition of %v is in sync on every node", topics), func(ctx context.Context) error {
		for _, topic := range topics {
			for _, nd := range c.nodes {
				ps, err := c.partitions(ctx, nd.ID, topic)
				if err != nil {
					return err
				}
				for p, st := range ps {
					if len(st.ISR) != len(c.nodes) || st.Leader < 0 {
						return fmt.Errorf("node %d: %s/%d has leader %d, ISR %v", nd.ID, topic, p, st.Leader, st.ISR)
					}
				}
			}
		}
		return nil
	})
}

// WaitReady waits until every running node's /readyz answers 200.
func (c *testCluster) WaitReady() {
	c.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	c.waitFor("every running node is ready", func(ctx context.Context) error {
		for _, id := range c.live() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Node(id).HTTPAddr+"/readyz", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("node %d: %w", id, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("node %d: /readyz %s", id, resp.Status)
			}
		}
		return nil
	})
}

// createClusterTopic creates a topic with the cluster's default replication
// and the given configs.
func createClusterTopic(t testing.TB, cl *kgo.Client, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30_000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = partitions
	rt.ReplicationFactor = -1
	for k, v := range configs {
		rc := kmsg.NewCreateTopicsRequestTopicConfig()
		rc.Name = k
		rc.Value = kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, rc)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if len(resp.Topics) != 1 {
		t.Fatalf("create topic %s: %d topics in the answer", topic, len(resp.Topics))
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		msg := ""
		if resp.Topics[0].ErrorMessage != nil {
			msg = *resp.Topics[0].ErrorMessage
		}
		t.Fatalf("create topic %s: %v (%s)", topic, err, msg)
	}
}

// RaftGroups returns the Raft group that carries each partition of topics,
// from a live node's /v1/status; nil if no node answers.
func (c *testCluster) RaftGroups(topics ...string) map[topicPartition]uint32 {
	var status struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions []struct {
				Partition int32  `json:"partition"`
				Group     uint32 `json:"raft_group_id"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, id := range c.live() {
		resp, err := client.Get("http://" + c.Node(id).HTTPAddr + "/v1/status")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&status)
		resp.Body.Close()
		if err != nil {
			continue
		}
		out := make(map[topicPartition]uint32)
		for _, t := range status.Topics {
			if !slices.Contains(topics, t.Name) {
				continue
			}
			for _, p := range t.Partitions {
				out[topicPartition{t.Name, p.Partition}] = p.Group
			}
		}
		return out
	}
	return nil
}
