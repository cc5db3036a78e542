package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// requireComponents skips the test while the store or the Raft layer is still a
// contract stub (its functions panic "unimplemented").
func requireComponents(t *testing.T) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Skipf("components not implemented yet: %v", r)
		}
	}()
	raftfsm.DefaultConfig()
	s, err := shardstore.Open(t.TempDir(), shardstore.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("shardstore.Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("shardstore.Close: %v", err)
	}
}

// testLogger sends log lines to t.Log so only failing tests print them.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig is a node on free loopback ports with data in dir.
func testConfig(dir string) Config {
	c := defaultConfig()
	c.DataDir = dir
	c.KafkaAddr = "127.0.0.1:0"
	c.HTTPAddr = "127.0.0.1:0"
	c.ClusterAddr = "127.0.0.1:0"
	c.RaftHeartbeatTimeout = 100 * time.Millisecond
	c.RaftElectionTimeout = 100 * time.Millisecond
	c.RaftGroups = 2
	c.CompactionInterval = 100 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	return c
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// produceKey writes one keyed record to topic through the node's Kafka port and
// returns its offset.
func produceKey(t testing.TB, addr, topic, key, value string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation(), kgo.WithLogger(kgo.BasicLogger(tWriter{t}, kgo.LogLevelInfo, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}).First()
	if err != nil {
		t.Fatalf("produce %s/%s: %v", topic, key, err)
	}
	return rec.Offset
}

// TestRunLifecycle starts a node through start, checks both ports, shuts it
// down, and restarts it on the same data.
func TestRunLifecycle(t *testing.T) {
	requireComponents(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s, err := start(ctx, testConfig(dir), testLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	httpURL := "http://" + s.httpLn.Addr().String()
	kafkaAddr := s.kafkaLns[0].ln.Addr().String()
	if s.advertised != kafkaAddr {
		t.Errorf("advertised %q, want the bound address %q", s.advertised, kafkaAddr)
	}
	if code, body := httpGet(t, httpURL+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q after start, want 200", code, body)
	}

	t.Run("metadata advertises the bound address", func(t *testing.T) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("metadata: %v", err)
		}
		if len(resp.Brokers) != 1 {
			t.Fatalf("brokers = %+v, want one", resp.Brokers)
		}
		b := resp.Brokers[0]
		if got := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))); got != kafkaAddr || b.NodeID != 1 {
			t.Errorf("broker %d at %s, want 1 at %s", b.NodeID, got, kafkaAddr)
		}
	})
	first := produceKey(t, kafkaAddr, "lifecycle", "k", "v1")

	code, metrics := httpGet(t, httpURL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "shardcache_broker_requests_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The compaction loop runs every 100ms: wait for a finished pass.
	waitFor(t, 10*time.Second, "a compaction pass", func() bool {
		_, m := httpGet(t, httpURL+"/metrics")
		c := passCount.FindStringSubmatch(m)
		return c != nil && c[1] != "0"
	})

	if err := s.shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", kafkaAddr, time.Second); err == nil {
		t.Errorf("kafka port %s still accepts after shutdown", kafkaAddr)
	}
	if _, err := http.Get(httpURL + "/healthz"); err == nil {
		t.Errorf("http port still serves after shutdown")
	}
	for _, sub := range []string{storeDirName, raftDirName, filepath.Join(raftDirName, raftLogDirName)} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("data dir lacks %s/: %v", sub, err)
		}
	}

	// The same data dir again: the record written above is still there, so the
	// key's next record gets the next offset.
	s2, err := start(ctx, testConfig(dir), testLogger(t))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() {
		if err := s2.shutdown(); err != nil {
			t.Errorf("shutdown after restart: %v", err)
		}
	})
	if second := produceKey(t, s2.kafkaLns[0].ln.Addr().String(), "lifecycle", "k", "v2"); second != first+1 {
		t.Errorf("offset after restart = %d, want %d", second, first+1)
	}
}

// TestRunBusyPortFails: a Kafka port in use fails startup with the error, and
// everything opened before it is closed again (the data dir can be reopened).
func TestRunBusyPortFails(t *testing.T) {
	requireComponents(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t.TempDir())
	cfg.KafkaAddr = busy.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "kafka listener") {
		t.Fatalf("run with a busy port: err = %v, want a kafka listener error", err)
	}
	cfg.KafkaAddr = "127.0.0.1:0"
	s, err := start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start after the failed start: %v", err)
	}
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
}

var passCount = regexp.MustCompile(`(?m)^shardcache_compaction_pass_duration_seconds_count (\d+)`)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var listeningLine = regexp.MustCompile(`msg="(kafka|http) listening".* addr=(\S+)`)

// TestMainSIGTERM runs the real main as a process on port 0, finds its ports in
// the log, and stops it with SIGTERM: exit status 0 after an ordered shutdown.
func TestMainSIGTERM(t *testing.T) {
	requireComponents(t)
	cmd := mainCommand(t, nil,
		"--data-dir", t.TempDir(), "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0",
		"--raft-groups", "2", "--compaction-interval", "100ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	var logged strings.Builder
	sc := bufio.NewScanner(stderr)
	for len(addrs) < 2 && sc.Scan() {
		logged.WriteString(sc.Text() + "\n")
		if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
			addrs[m[1]] = m[2]
		}
	}
	if len(addrs) < 2 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("process ended before logging both listeners:\n%s", logged.String())
	}
	if code, _ := httpGet(t, "http://"+addrs["http"]+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
	produceKey(t, addrs["kafka"], "sigterm", "k", "v")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	logged.Write(rest)
	err = cmd.Wait()
	t.Log(logged.String())
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", err)
	}
	for _, want := range []string{"signal received", "shutdown complete"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestRunInterruptedStartup: a signal (ctx canceled) while Raft is not ready yet
// is a clean stop: run returns nil and releases the data dir for the next start.
func TestRunInterruptedStartup(t *testing.T) {
	requireComponents(t)
	cfg := testConfig(t.TempDir())
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := run(canceled, cfg, testLogger(t)); err != nil {
		t.Fatalf("run with a canceled ctx: %v, want nil", err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	s, err := start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start after the interrupted start: %v", err)
	}
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
}

// A data dir remembers its node id: starting it as another node fails with
// ErrIdentity (main exits 2 on it) and changes nothing.
func TestRunRefusesAnotherNodeID(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg.NodeID = 2
	err = run(ctx, cfg, testLogger(t))
	if !errors.Is(err, raftfsm.ErrIdentity) || !strings.Contains(err.Error(), "belongs to node 1") {
		t.Fatalf("run as node 2 on node 1's data dir: %v", err)
	}
	cfg.NodeID = 1
	s, err = start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("restart as node 1: %v", err)
	}
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
}

// TestRunRaftLogDir: with --raft-log-dir the Raft log store lives there and
// nowhere in the data dir, and a restart reads back what a client wrote. A
// start whose Raft log store is empty while the shard store holds the
// cluster's data (another --raft-log-dir, or the default after running
// with one) refuses with ErrIdentity (main exits 2) and creates nothing.
// Moved to the default place, the Raft log goes on from where it was.
func TestRunRaftLogDir(t *testing.T) {
	requireComponents(t)
	dir, logDir := t.TempDir(), filepath.Join(t.TempDir(), "raft-log")
	cfg := testConfig(dir)
	cfg.RaftLogDir = logDir
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	s, err := start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	first := produceKey(t, s.kafkaLns[0].ln.Addr().String(), "logdir", "k", "v1")
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(logDir, "MANIFEST-*")); len(m) == 0 {
		t.Errorf("no Pebble DB in --raft-log-dir %s", logDir)
	}
	if _, err := os.Stat(filepath.Join(dir, raftDirName, raftLogDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir has %s/%s with --raft-log-dir set: %v", raftDirName, raftLogDirName, err)
	}

	// A Raft log dir that does not exist is refused before anything is
	// created there; one that exists but is empty by raftfsm.
	emptyDir := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{filepath.Join(t.TempDir(), "missing"), "", emptyDir} {
		c := cfg
		c.RaftLogDir = other
		s, err := start(ctx, c, testLogger(t))
		if err == nil {
			_ = s.shutdown()
		}
		if !errors.Is(err, raftfsm.ErrIdentity) || !strings.Contains(err.Error(), "Raft log") {
			t.Fatalf("start with --raft-log-dir %q over a store with data: %v, want ErrIdentity", other, err)
		}
		if other == emptyDir {
			continue
		}
		if other == "" {
			other = filepath.Join(dir, raftDirName, raftLogDirName)
		}
		if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused start left %s behind: %v", other, err)
		}
	}

	s, err = start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("restart with the Raft log dir it ran with: %v", err)
	}
	addr := s.kafkaLns[0].ln.Addr().String()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("logdir"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	defer fcancel()
	var got []*kgo.Record
	for len(got) == 0 && fctx.Err() == nil {
		fs := cl.PollFetches(fctx)
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("fetch: %v", err)
			}
		})
		got = append(got, fs.Records()...)
	}
	if len(got) != 1 || string(got[0].Value) != "v1" || got[0].Offset != first {
		t.Fatalf("read after restart: %d records %v, want v1 at offset %d", len(got), got, first)
	}
	if second := produceKey(t, addr, "logdir", "k", "v2"); second != first+1 {
		t.Errorf("offset after restart = %d, want %d", second, first+1)
	}
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}

	// Moved back to the default place (README, Data directory: stop, move,
	// start), the node goes on where it was.
	if err := os.Rename(logDir, filepath.Join(dir, raftDirName, raftLogDirName)); err != nil {
		t.Fatal(err)
	}
	cfg.RaftLogDir = ""
	s, err = start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start after moving the Raft log to the default place: %v", err)
	}
	defer func() {
		if err := s.shutdown(); err != nil {
			t.Error(err)
		}
	}()
	if third := produceKey(t, s.kafkaLns[0].ln.Addr().String(), "logdir", "k", "v3"); third != first+2 {
		t.Errorf("offset after the move = %d, want %d", third, first+2)
	}
}
