package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// node is one broker process under test: shardcache or Kafka. Its data
// directory and ports survive a restart; Close removes the directory.
type node struct {
	name    string   // "shardcache" or "Kafka", the table's column
	addr    string   // Kafka listener host:port
	dataDir string   // what dirBytes measures
	logPath string   // the process's stdout and stderr
	argv    []string // the command, run again by restart
	env     []string

	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs argv and waits until the node serves metadata (or, with topic
// set, metadata for topic and a fetch of one of its records). It returns the
// time from exec to serving.
func (n *node) start(ctx context.Context, topic string) (time.Duration, error) {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(n.argv[0], n.argv[1:]...)
	cmd.Env = append(os.Environ(), n.env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	setChildAttrs(cmd)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: %w", n.name, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(n.exited)
	if err := n.waitServing(ctx, topic, began.Add(startTimeout)); err != nil {
		n.stop()
		return 0, fmt.Errorf("%s did not start (log: %s): %w", n.name, n.logPath, err)
	}
	return time.Since(began), nil
}

// startTimeout bounds a node's start, JVM and log recovery included, on a busy
// machine.
const startTimeout = 3 * time.Minute

// waitServing polls every 50 ms until serving(topic) succeeds, the process
// exits, deadline passes or ctx ends.
func (n *node) waitServing(ctx context.Context, topic string, deadline time.Time) error {
	last := errors.New("no attempt")
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			return fmt.Errorf("process exited (last check: %v)", last)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if last = serving(ctx, n.addr, topic); last == nil {
			return nil
		}
		select {
		case <-n.exited:
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not serving within %v: %w", startTimeout, last)
}

// serving is one check with a fresh client: a Metadata request lists a broker
// (and, with topic set, every partition of topic with a leader), then a fetch
// from partition 0's start returns a record.
func serving(ctx context.Context, addr, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RetryTimeout(time.Second),
		kgo.DialTimeout(time.Second), kgo.RequestRetries(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	var topics []string
	if topic != "" {
		topics = []string{topic}
	}
	md, err := adm.Metadata(cctx, topics...)
	if err != nil {
		return err
	}
	if len(md.Brokers) == 0 {
		return errors.New("metadata lists no broker")
	}
	if topic == "" {
		return nil
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return fmt.Errorf("topic %s not served yet (%v)", topic, td.Err)
	}
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader (%v)", p.Partition, p.Err)
		}
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})
	fs := cl.PollRecords(cctx, 1)
	if err := fs.Err0(); err != nil {
		return err
	}
	if fs.NumRecords() == 0 {
		return errors.New("fetch returned no record")
	}
	return nil
}

// stop sends SIGTERM and waits up to 2 minutes for the exit, then kills.
func (n *node) stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(2 * time.Minute):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
}

// restart stops the node with SIGTERM, starts it again and returns the time
// from the new exec to the first successful metadata and fetch of topic.
func (n *node) restart(ctx context.Context, topic string) (time.Duration, error) {
	n.stop()
	return n.start(ctx, topic)
}

// rssBytes is the process's resident set size (VmRSS in /proc/PID/status).
// cpuTime is the node process's CPU time so far (harness.CPUTime).
func (n *node) cpuTime() (time.Duration, error) {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0, fmt.Errorf("%s is not running", n.name)
	}
	return harness.CPUTime(n.cmd.Process.Pid)
}

func (n *node) rssBytes() (int64, error) {
	if n.cmd == nil {
		return 0, errors.New("not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line")
}

// dirBytes is the space the data directory takes: per file the smaller of its
// length and its allocated blocks, so Kafka's preallocated sparse index files
// count what they hold, not their 10 MiB length.
func (n *node) dirBytes() (int64, error) {
	var total int64
	err := filepath.WalkDir(n.dataDir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // a file removed by compaction mid-walk
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		size := fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			size = min(size, st.Blocks*512)
		}
		total += size
		return nil
	})
	return total, err
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newShardcache prepares a shardcache node with its defaults, its own data
// directory under dir and fixed loopback ports (kept across restarts).
func newShardcache(bin, dir string) (*node, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	n := &node{
		name:    "shardcache",
		addr:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "shardcache.log"),
	}
	n.argv = []string{bin,
		"--data-dir=" + n.dataDir,
		"--kafka-addr=" + n.addr,
		fmt.Sprintf("--http-addr=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--cluster-addr=127.0.0.1:%d", ports[2]),
	}
	return n, nil
}
