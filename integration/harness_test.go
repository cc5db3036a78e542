package integration

// The harness: build the shardcache binary once, start and stop broker processes on
// 127.0.0.1 with ephemeral ports, and hand out franz-go clients that follow a broker
// across restarts.
//
// Set SHARDCACHE_TEST_SEEDS (comma-separated host:port list) to point the tests at an
// external cluster instead; startBroker then returns that cluster, and tests that need
// to stop, kill or restart a broker skip. SHARDCACHE_TEST_HTTP optionally names the
// external cluster's HTTP address. Set SHARDCACHE_TEST_BINARY to use a prebuilt binary
// instead of building ./cmd/shardcache.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// startTimeout bounds how long a broker may take to log its addresses and
	// answer /readyz.
	startTimeout = 60 * time.Second
	// stopTimeout bounds a graceful shutdown after SIGTERM.
	stopTimeout = 30 * time.Second
)

var (
	// binPath is the built shardcache binary; empty with external seeds.
	binPath string
	// buildErr is set when the build failed; startBroker reports it.
	buildErr error
	// externalSeeds is SHARDCACHE_TEST_SEEDS split on commas.
	externalSeeds []string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if s := strings.TrimSpace(os.Getenv("SHARDCACHE_TEST_SEEDS")); s != "" {
		for _, seed := range strings.Split(s, ",") {
			if seed = strings.TrimSpace(seed); seed != "" {
				externalSeeds = append(externalSeeds, seed)
			}
		}
		return m.Run()
	}
	if bin := os.Getenv("SHARDCACHE_TEST_BINARY"); bin != "" {
		binPath = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "shardcache-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath, buildErr = buildBinary(dir)
	return m.Run()
}

// moduleRoot returns the directory of the go.mod that holds this package.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// buildBinary builds ./cmd/shardcache into dir and returns the binary's path.
func buildBinary(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "shardcache")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/shardcache")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/shardcache: %w\n%s", err, out)
	}
	return bin, nil
}

// requireTool makes sure an external program is on PATH. When it is missing the test
// fails under CI (CI set in the environment) and skips otherwise.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found in PATH (CI is set): run make deps", name)
	}
	t.Skipf("%s not found in PATH: run make deps", name)
	return ""
}

// requireLocalBroker skips a test that must start, stop or kill brokers when the
// tests run against an external cluster.
func requireLocalBroker(t testing.TB) {
	t.Helper()
	if len(externalSeeds) > 0 {
		t.Skip("needs a broker process it controls; SHARDCACHE_TEST_SEEDS points at an external cluster")
	}
}

// testBroker is one shardcache process (or an external cluster).
type testBroker struct {
	// KafkaAddr and HTTPAddr are the current process's bound addresses; they change
	// on every Start.
	KafkaAddr string
	HTTPAddr  string
	// DataDir is kept across Stop, Kill and Start.
	DataDir string

	t    testing.TB // owner: output is logged here, cleanup is registered here
	args []string   // extra args given to startBroker
	// probe asks /readyz (startBrokerProbe); nil: plain HTTP, no credentials.
	probe func(httpAddr string) (*http.Response, error)

	mu       sync.Mutex
	proc     *brokerProc // nil when not running
	external bool
	// pastAddrs holds every Kafka address this broker ever had, so clients dialing
	// a stale address (after a restart on new ports) reach the current process.
	pastAddrs map[string]bool
	starts    int
}

// brokerProc is one run of the binary.
type brokerProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returns
	err  error         // Wait's result, valid after done
}

// startBroker starts a broker with a fresh data dir under t.TempDir(), ports 0,
// --compaction-interval 100ms and args appended, and waits until /readyz is 200. The
// process is stopped (SIGTERM, then wait) when the test ends.
func startBroker(t testing.TB, args ...string) *testBroker {
	t.Helper()
	return startBrokerProbe(t, nil, args...)
}

// startBrokerProbe is startBroker for an HTTP port that needs TLS or
// credentials: probe asks /readyz at an HTTP address.
func startBrokerProbe(t testing.TB, probe func(httpAddr string) (*http.Response, error), args ...string) *testBroker {
	t.Helper()
	if len(externalSeeds) > 0 {
		if len(args) > 0 {
			t.Logf("external cluster: ignoring broker args %q", args)
		}
		return &testBroker{
			KafkaAddr: externalSeeds[0],
			HTTPAddr:  os.Getenv("SHARDCACHE_TEST_HTTP"),
			t:         t,
			external:  true,
		}
	}
	if buildErr != nil {
		t.Fatalf("shardcache binary not built: %v", buildErr)
	}
	b := &testBroker{
		DataDir:   filepath.Join(t.TempDir(), "data"),
		t:         t,
		args:      args,
		probe:     probe,
		pastAddrs: make(map[string]bool),
	}
	t.Cleanup(func() {
		b.mu.Lock()
		running := b.proc != nil
		b.mu.Unlock()
		if running {
			b.Stop(t)
		}
	})
	b.Start(t)
	return b
}

// Start runs the binary on the same data dir and args with new ports, waits until it
// is ready and updates KafkaAddr and HTTPAddr.
func (b *testBroker) Start(t testing.TB) {
	t.Helper()
	if b.external {
		t.Skip("cannot start brokers of an external cluster (SHARDCACHE_TEST_SEEDS)")
	}
	b.mu.Lock()
	if b.proc != nil {
		b.mu.Unlock()
		t.Fatalf("Start: broker is already running")
	}
	b.starts++
	run := b.starts
	b.mu.Unlock()

	args := []string{
		"--data-dir=" + b.DataDir,
		"--kafka-addr=127.0.0.1:0",
		"--http-addr=127.0.0.1:0",
		"--cluster-addr=127.0.0.1:0",
		"--compaction-interval=100ms",
		// A lone node elects itself after one heartbeat timeout; the default
		// 1s would add seconds to every start. Tests may override it.
		"--raft-heartbeat-timeout=200ms",
		"--raft-election-timeout=200ms",
	}
	args = append(args, b.args...)
	cmd := exec.Command(binPath, args...)
	setChildAttrs(cmd)
	addrs := make(chan [2]string, 1)
	out := &outputLog{t: b.t, prefix: fmt.Sprintf("broker#%d: ", run), addrs: addrs}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binPath, err)
	}
	p := &brokerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	var got [2]string
	select {
	case got = <-addrs:
	case <-p.done:
		b.mu.Lock()
		b.proc = nil
		b.mu.Unlock()
		t.Fatalf("broker exited before logging its addresses: %v", p.err)
	case <-deadline.C:
		b.Kill(t)
		t.Fatalf("broker did not log \"kafka listening\" and \"http listening\" within %v", startTimeout)
	}
	b.mu.Lock()
	b.KafkaAddr, b.HTTPAddr = got[0], got[1]
	b.pastAddrs[got[0]] = true
	b.mu.Unlock()

	if err := waitReady(got[1], b.probe, p.done, deadline.C); err != nil {
		b.Kill(t)
		t.Fatalf("broker not ready: %v", err)
	}
}

// waitReady polls /readyz until it answers 200, the process exits or the deadline fires.
func waitReady(httpAddr string, probe func(string) (*http.Response, error), exited <-chan struct{}, deadline <-chan time.Time) error {
	if probe == nil {
		client := &http.Client{Timeout: 2 * time.Second}
		probe = func(addr string) (*http.Response, error) { return client.Get("http://" + addr + "/readyz") }
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		resp, err := probe(httpAddr)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited (last /readyz: %s)", last)
		case <-deadline:
			return fmt.Errorf("/readyz not 200 within %v (last: %s)", startTimeout, last)
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM, waits for the process and checks that it exited with code 0.
func (b *testBroker) Stop(t testing.TB) {
	t.Helper()
	if b.external {
		t.Skip("cannot stop brokers of an external cluster (SHARDCACHE_TEST_SEEDS)")
	}
	p := b.takeProc(t)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("broker did not exit within %v of SIGTERM; killed it", stopTimeout)
	}
	if p.err != nil {
		t.Errorf("broker exited uncleanly after SIGTERM: %v", p.err)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (b *testBroker) Kill(t testing.TB) {
	t.Helper()
	if b.external {
		t.Skip("cannot kill brokers of an external cluster (SHARDCACHE_TEST_SEEDS)")
	}
	p := b.takeProc(t)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (b *testBroker) takeProc(t testing.TB) *brokerProc {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.proc
	if p == nil {
		t.Fatalf("broker is not running")
	}
	b.proc = nil
	return p
}

// PID is the running broker process's id.
func (b *testBroker) PID(t testing.TB) int {
	t.Helper()
	if b.external {
		t.Skip("no process id for an external cluster (SHARDCACHE_TEST_SEEDS)")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		t.Fatalf("broker is not running")
	}
	return b.proc.cmd.Process.Pid
}

// Client returns a franz-go client seeded with the broker, closed when the test
// ends. Its dialer sends connections for any address the broker had before a
// restart to the current one, so the client survives Stop/Kill + Start.
func (b *testBroker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	seeds := externalSeeds
	if !b.external {
		seeds = []string{b.currentKafkaAddr()}
	}
	all := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.WithLogger(kgo.BasicLogger(&testLogWriter{t: t}, kgo.LogLevelWarn, nil)),
	}
	if !b.external {
		d := &net.Dialer{Timeout: 5 * time.Second}
		all = append(all, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			return d.DialContext(ctx, network, b.redirect(host))
		}))
	}
	all = append(all, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns a kadm client over b.Client(t).
func (b *testBroker) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(b.Client(t))
}

func (b *testBroker) currentKafkaAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.KafkaAddr
}

// redirect maps a stale Kafka address of this broker to its current one.
func (b *testBroker) redirect(host string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pastAddrs[host] {
		return b.KafkaAddr
	}
	return host
}

// outputLog forwards a process's output to t.Log line by line and picks the bound
// addresses out of the "kafka listening" and "http listening" lines.
type outputLog struct {
	t      testing.TB
	prefix string
	addrs  chan<- [2]string

	mu        sync.Mutex
	buf       []byte
	kafka     string
	http      string
	announced bool
}

func (o *outputLog) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	for {
		i := bytes.IndexByte(o.buf, '\n')
		if i < 0 {
			break
		}
		line := string(o.buf[:i])
		o.buf = o.buf[i+1:]
		o.t.Log(o.prefix + line)
		o.scan(line)
	}
	return len(p), nil
}

func (o *outputLog) scan(line string) {
	if o.announced {
		return
	}
	switch {
	case strings.Contains(line, "kafka listening"):
		o.kafka = slogAttr(line, "addr")
	case strings.Contains(line, "http listening"):
		o.http = slogAttr(line, "addr")
	}
	if o.kafka != "" && o.http != "" {
		o.announced = true
		o.addrs <- [2]string{o.kafka, o.http}
	}
}

// slogAttr returns the value of key in a slog text-format line (quoted or not).
func slogAttr(line, key string) string {
	for _, prefix := range []string{" " + key + "=", "\t" + key + "="} {
		i := strings.Index(line, prefix)
		if i < 0 {
			continue
		}
		rest := line[i+len(prefix):]
		if strings.HasPrefix(rest, `"`) {
			if j := strings.Index(rest[1:], `"`); j >= 0 {
				return rest[1 : j+1]
			}
			return ""
		}
		if j := strings.IndexAny(rest, " \t"); j >= 0 {
			return rest[:j]
		}
		return rest
	}
	return ""
}

// testLogWriter sends kgo's log lines to t.Log.
type testLogWriter struct{ t testing.TB }

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.t.Log("kgo: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
