package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stopTimeout bounds a node's graceful shutdown after SIGTERM; the node is
// killed after it.
const stopTimeout = 30 * time.Second

// ClusterConfig says how StartCluster starts its nodes.
type ClusterConfig struct {
	// Nodes is the number of nodes (at least 1). Node 1 bootstraps the
	// cluster; the others join it.
	Nodes int
	// Binary is the shardcache binary; empty means <module root>/bin/shardcache,
	// built from ./cmd/shardcache when missing.
	Binary string
	// Args are extra flags for every node, after the ones the harness sets
	// (--data-dir, --node-id, the three listener addresses, --join).
	Args []string
	// Verbose passes the nodes' ERROR lines to log. Otherwise they are only
	// kept in each node's log file (Node.LogPath).
	Verbose bool
	// Keep leaves the temporary directory (data and logs) in place on Close.
	Keep bool
}

// Cluster is a set of shardcache processes on loopback, each with a data
// directory and a log file under one temporary directory. Close stops every
// process and removes the directory.
type Cluster struct {
	// Nodes are the nodes in id order: Nodes[0] has node id 1.
	Nodes []*Node
	// Dir is the temporary directory holding node-<id>/data and node-<id>.log.
	Dir string

	keep bool
}

// StartCluster starts node 1 with a new cluster, then each other node with
// --join at node 1's cluster address, one after the other, each waited for
// until /readyz answers 200. It returns an error (with every started process
// stopped) when a node fails to start within 60 s or ctx ends.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, errors.New("a cluster needs at least one node")
	}
	dir, err := os.MkdirTemp("", "shardcache-bench-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, keep: cfg.Keep}
	bin, err := brokerBinary(ctx, cfg.Binary, dir)
	if err != nil {
		c.Close()
		return nil, err
	}
	for i := 1; i <= cfg.Nodes; i++ {
		n := &Node{
			ID:      int32(i),
			DataDir: filepath.Join(dir, fmt.Sprintf("node-%d", i), "data"),
			LogPath: filepath.Join(dir, fmt.Sprintf("node-%d.log", i)),
			bin:     bin,
			args:    cfg.Args,
			verbose: cfg.Verbose,
		}
		if i > 1 {
			n.Join = []string{c.Nodes[0].ClusterAddr}
		}
		c.Nodes = append(c.Nodes, n)
		if err := n.Start(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// KafkaAddrs returns every node's Kafka address, running or not (a client
// seeded with all of them finds whichever are up).
func (c *Cluster) KafkaAddrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.KafkaAddr
	}
	return out
}

// Node returns the node with the id, or nil.
func (c *Cluster) Node(id int32) *Node {
	if id < 1 || int(id) > len(c.Nodes) {
		return nil
	}
	return c.Nodes[id-1]
}

// Close stops every running node (Stop; the nodes stop in parallel) and
// removes the directory, unless ClusterConfig.Keep or a node did not stop
// cleanly (its log then holds a goroutine dump). It may be called more than
// once.
func (c *Cluster) Close() {
	var (
		wg      sync.WaitGroup
		unclean atomic.Bool
	)
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.Running() {
				if err := n.Stop(); err != nil {
					log.Print(err)
					unclean.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	switch {
	case c.Dir == "":
	case c.keep:
		log.Printf("cluster data and logs kept in %s", c.Dir)
	case unclean.Load():
		log.Printf("cluster data and logs kept in %s: a node did not stop cleanly", c.Dir)
		c.keep = true
	default:
		os.RemoveAll(c.Dir)
	}
}

// Node is one shardcache process of a Cluster. Its first start binds
// ephemeral ports; every later start reuses the same three addresses, so a
// restarted node is where clients and peers last saw it.
type Node struct {
	ID int32
	// KafkaAddr, HTTPAddr and ClusterAddr are the bound listener addresses,
	// set by the first start.
	KafkaAddr, HTTPAddr, ClusterAddr string
	// Join are the cluster addresses passed with --join (empty for node 1).
	Join []string
	// DataDir is kept across Stop, Kill and Start; Wipe empties it.
	DataDir string
	// LogPath is the file the node's output goes to, appended by every start.
	LogPath string

	bin     string
	args    []string
	verbose bool

	mu      sync.Mutex
	proc    *nodeProc   // nil when not running
	lastOut *nodeOutput // output of the current or last process
	starts  int
	watches []*LogWatch // replaced, never changed in place: readers hold a copy
}

// nodeProc is one run of the binary.
type nodeProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when Wait returns
	err    error         // Wait's result, valid after exited
}

// Start runs the node and waits until /readyz answers 200, for at most 60 s.
func (n *Node) Start(ctx context.Context) error {
	if err := n.Launch(ctx); err != nil {
		return err
	}
	if err := n.WaitReady(ctx, startTimeout); err != nil {
		_ = n.Kill()
		return err
	}
	return nil
}

// Launch runs the node's process and returns once it has logged its Kafka,
// HTTP and cluster addresses (which, past the first start, are the ones it
// was given), or an error after 60 s, when the process exits or ctx ends. The
// Kafka address is logged only once the node has opened its Raft groups.
func (n *Node) Launch(ctx context.Context) error {
	n.mu.Lock()
	if n.proc != nil {
		n.mu.Unlock()
		return fmt.Errorf("node %d is already running", n.ID)
	}
	n.starts++
	run := n.starts
	n.mu.Unlock()

	addr := func(a string) string {
		if a == "" {
			return "127.0.0.1:0"
		}
		return a
	}
	args := []string{
		"--data-dir=" + n.DataDir,
		"--node-id=" + strconv.Itoa(int(n.ID)),
		"--kafka-addr=" + addr(n.KafkaAddr),
		"--http-addr=" + addr(n.HTTPAddr),
		"--cluster-addr=" + addr(n.ClusterAddr),
	}
	if len(n.Join) > 0 {
		args = append(args, "--join="+strings.Join(n.Join, ","))
	}
	args = append(args, n.args...)

	if err := os.MkdirAll(filepath.Dir(n.LogPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %d: %s %s\n", run, n.bin, strings.Join(args, " "))
	out := &nodeOutput{node: n, file: f, addrs: make(chan [2]string, 3), verbose: n.verbose}
	cmd := exec.Command(n.bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start node %d: %w", n.ID, err)
	}
	p := &nodeProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	n.mu.Lock()
	n.proc, n.lastOut = p, out
	n.mu.Unlock()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	var kafka, http, cluster string
	for kafka == "" || http == "" || cluster == "" {
		select {
		case a := <-out.addrs:
			switch a[0] {
			case "kafka":
				kafka = a[1]
			case "http":
				http = a[1]
			case "cluster":
				cluster = a[1]
			}
		case <-p.exited:
			n.take()
			return fmt.Errorf("node %d exited before logging its addresses (%v); last lines:\n%s", n.ID, p.err, n.Tail(20))
		case <-deadline.C:
			_ = n.Kill()
			return fmt.Errorf("node %d did not log its kafka, http and cluster addresses within %v; last lines:\n%s", n.ID, startTimeout, n.Tail(20))
		case <-ctx.Done():
			_ = n.Kill()
			return ctx.Err()
		}
	}
	n.mu.Lock()
	n.KafkaAddr, n.HTTPAddr, n.ClusterAddr = kafka, http, cluster
	n.mu.Unlock()
	return nil
}

// WaitReady polls /readyz until it answers 200, or fails after timeout,
// when the process exits or ctx ends.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("node %d is not running", n.ID)
	}
	if err := waitReady(ctx, n.HTTPAddr, p.exited, timeout); err != nil {
		return fmt.Errorf("node %d: %w; last lines:\n%s", n.ID, err, n.Tail(20))
	}
	return nil
}

// Running reports whether the node's process is running (started and not
// yet seen to exit by Stop or Kill).
func (n *Node) Running() bool { return n.current() != nil }

// Exited is closed when the current process exits; nil when not running.
func (n *Node) Exited() <-chan struct{} {
	if p := n.current(); p != nil {
		return p.exited
	}
	return nil
}

// PID is the current process id, 0 when not running.
func (n *Node) PID() int {
	if p := n.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Kill sends SIGKILL and waits until the process is gone.
func (n *Node) Kill() error {
	p := n.take()
	if p == nil {
		return fmt.Errorf("node %d is not running", n.ID)
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return nil
}

// Stop sends SIGTERM and waits for the process to exit; after 30 s it sends
// SIGQUIT (a goroutine dump into the log), then SIGKILL. It returns an error
// when the node did not exit on SIGTERM or exited with a failure status.
func (n *Node) Stop() error {
	p := n.take()
	if p == nil {
		return fmt.Errorf("node %d is not running", n.ID)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		// SIGQUIT makes the Go runtime write every goroutine's stack to
		// the log before it exits, which shows where shutdown hung.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		return fmt.Errorf("node %d did not exit within %v of SIGTERM; sent SIGQUIT (goroutine dump in %s)", n.ID, stopTimeout, n.LogPath)
	}
	if p.err != nil {
		return fmt.Errorf("node %d exited after SIGTERM: %v", n.ID, p.err)
	}
	return nil
}

// Wipe removes the data directory of a stopped node: its next start is a
// node with no state, which joins with Join.
func (n *Node) Wipe() error {
	if n.Running() {
		return fmt.Errorf("node %d is running; stop it before wiping its data", n.ID)
	}
	return os.RemoveAll(n.DataDir)
}

// Status fetches the node's /v1/status.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	return GetStatus(ctx, n.HTTPAddr)
}

func (n *Node) current() *nodeProc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// take detaches the current process, so exactly one caller stops it.
func (n *Node) take() *nodeProc {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	n.proc = nil
	return p
}

// LogWatch counts the node's log lines that match a pattern, from its
// creation on, across restarts.
type LogWatch struct {
	re    *regexp.Regexp
	count atomic.Int64
	first atomic.Pointer[string]
}

// Watch starts counting the node's log lines that match re.
func (n *Node) Watch(re *regexp.Regexp) *LogWatch {
	w := &LogWatch{re: re}
	n.mu.Lock()
	n.watches = append(slices.Clip(n.watches), w)
	n.mu.Unlock()
	return w
}

// Unwatch stops w.
func (n *Node) Unwatch(w *LogWatch) {
	n.mu.Lock()
	n.watches = slices.DeleteFunc(slices.Clone(n.watches), func(x *LogWatch) bool { return x == w })
	n.mu.Unlock()
}

// Count is the number of matching lines so far.
func (w *LogWatch) Count() int64 { return w.count.Load() }

// First is the first matching line, "" before one.
func (w *LogWatch) First() string {
	if p := w.first.Load(); p != nil {
		return *p
	}
	return ""
}

func (w *LogWatch) see(line string) {
	if w.re.MatchString(line) {
		if w.count.Add(1) == 1 {
			w.first.Store(&line)
		}
	}
}

// tailLines is how many of the last log lines a node keeps for error reports.
const tailLines = 40

// Tail returns up to k of the node's last log lines, for error messages.
func (n *Node) Tail(k int) string {
	n.mu.Lock()
	out := n.lastOut
	n.mu.Unlock()
	if out == nil {
		return "  (no output)"
	}
	lines := out.tail()
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// nodeOutput receives a node process's stdout and stderr: it writes them to
// the log file, picks the listener addresses out of the "... listening"
// lines, feeds the node's LogWatches and keeps the last lines. Lock order:
// nodeOutput.mu before Node.mu.
type nodeOutput struct {
	node    *Node
	file    *os.File
	addrs   chan [2]string // "kafka"|"http"|"cluster", address
	verbose bool

	mu   sync.Mutex
	buf  []byte
	last []string
}

// listeningLine matches the broker's "kafka listening", "http listening" and
// "cluster listening" log lines (slog text format).
var listeningLine = regexp.MustCompile(`msg="(kafka|http|cluster) listening".* addr=(\S+)`)

func (o *nodeOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.file.Write(p)
	o.buf = append(o.buf, p...)
	for {
		i := bytes.IndexByte(o.buf, '\n')
		if i < 0 {
			break
		}
		line := string(o.buf[:i])
		o.buf = o.buf[i+1:]
		o.line(line)
	}
	return len(p), nil
}

func (o *nodeOutput) line(line string) {
	if m := listeningLine.FindStringSubmatch(line); m != nil {
		select {
		case o.addrs <- [2]string{m[1], strings.Trim(m[2], `"`)}:
		default:
		}
	}
	if o.verbose && strings.Contains(line, "level=ERROR") {
		log.Printf("node %d: %s", o.node.ID, line)
	}
	o.node.mu.Lock()
	ws := o.node.watches
	o.node.mu.Unlock()
	for _, w := range ws {
		w.see(line)
	}
	if len(o.last) == tailLines {
		o.last = append(o.last[:0], o.last[1:]...)
	}
	o.last = append(o.last, line)
}

func (o *nodeOutput) tail() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.last)
}
