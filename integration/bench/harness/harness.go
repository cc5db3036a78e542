// Package harness is what the benchmark commands under integration/bench
// share: starting a local shardcache process on ephemeral ports (StartBroker,
// or Bootstrap when -bootstrap may name one), running a command until SIGINT
// or SIGTERM (Main), the keyed produce workload (Produce) and reading latency
// quantiles (Quantile, Median).
package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// startTimeout bounds the wait for a local broker to log its addresses and
// answer /readyz.
const startTimeout = 60 * time.Second

// Broker is a shardcache process started by a benchmark, with a temporary
// data directory that Stop removes.
type Broker struct {
	// KafkaAddr and HTTPAddr are the bound listener addresses (host:port).
	KafkaAddr string
	HTTPAddr  string

	cmd    *exec.Cmd
	bin    string
	args   []string
	dir    string
	exited chan struct{} // closed once the process has exited
}

// listening matches the broker's "kafka listening" and "http listening" log
// lines (slog text format) and captures the listener and its address.
var listening = regexp.MustCompile(`msg="(kafka|http) listening".* addr=(\S+)`)

// StartBroker runs binary (empty means <module root>/bin/shardcache, built
// from ./cmd/shardcache into the temporary directory when that is missing)
// with --data-dir in a new temporary directory, Kafka and HTTP on
// 127.0.0.1:0, then extra. It returns once the broker has logged both
// addresses and /readyz answers 200, or an error after 60 s, when the process
// exits or when ctx ends. The broker's ERROR lines are passed to log.
func StartBroker(ctx context.Context, binary string, extra ...string) (*Broker, error) {
	dir, err := os.MkdirTemp("", "shardcache-bench-")
	if err != nil {
		return nil, err
	}
	bin, err := brokerBinary(ctx, binary, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := append([]string{
		"--data-dir=" + filepath.Join(dir, "data"),
		"--kafka-addr=127.0.0.1:0",
		"--http-addr=127.0.0.1:0",
		"--cluster-addr=127.0.0.1:0",
	}, extra...)
	b := &Broker{bin: bin, args: args, dir: dir}
	if _, err := b.start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// Restart stops the broker, with SIGKILL when kill is set, else with SIGTERM
// as Stop does, and starts the same binary with the same flags on the same
// data directory (new ports). It returns the time from the new process's
// start until /readyz answered 200.
func (b *Broker) Restart(ctx context.Context, kill bool) (time.Duration, error) {
	if kill {
		_ = b.cmd.Process.Kill()
		<-b.exited
	} else {
		b.stop()
	}
	b.KafkaAddr, b.HTTPAddr = "", ""
	return b.start(ctx)
}

// start runs b.bin with b.args and waits until it is ready (see StartBroker);
// on failure the process is stopped.
func (b *Broker) start(ctx context.Context) (time.Duration, error) {
	cmd := exec.Command(b.bin, b.args...)
	setChildAttrs(cmd)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(b.exited)
	}()

	// Read the log until the process exits: pick out the listener addresses,
	// pass errors through, and keep the pipe drained.
	addrs := make(chan [2]string, 2)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := listening.FindStringSubmatch(line); m != nil {
				// Never block the drain: a broker with several Kafka
				// listeners logs more lines than the start waits for.
				select {
				case addrs <- [2]string{m[1], strings.Trim(m[2], `"`)}:
				default:
				}
			} else if strings.Contains(line, "level=ERROR") {
				log.Printf("broker: %s", line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()

	fail := func(err error) (time.Duration, error) {
		b.stop()
		return 0, err
	}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for b.KafkaAddr == "" || b.HTTPAddr == "" {
		select {
		case a := <-addrs:
			if a[0] == "kafka" {
				b.KafkaAddr = a[1]
			} else {
				b.HTTPAddr = a[1]
			}
		case <-b.exited:
			return fail(errors.New("broker exited before logging its addresses"))
		case <-deadline.C:
			return fail(fmt.Errorf("broker did not log its addresses within %v (kafka listening / http listening at info level)", startTimeout))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	if err := waitReady(ctx, b.HTTPAddr, b.exited, time.Until(started.Add(startTimeout))); err != nil {
		return fail(err)
	}
	return time.Since(started), nil
}

// waitReady polls GET /readyz on httpAddr every 20 ms until it answers 200;
// it fails when exited is closed, after timeout, or when ctx ends.
func waitReady(ctx context.Context, httpAddr string, exited <-chan struct{}, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		resp, err := hc.Get("http://" + httpAddr + "/readyz")
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
			return fmt.Errorf("process exited before it was ready (last /readyz: %s)", last)
		case <-deadline.C:
			return fmt.Errorf("not ready within %v (last /readyz: %s)", timeout.Round(time.Millisecond), last)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// PID is the broker process's id.
func (b *Broker) PID() int { return b.cmd.Process.Pid }

// DataDir is the broker's --data-dir.
func (b *Broker) DataDir() string { return filepath.Join(b.dir, "data") }

// brokerBinary returns binary if set (it must exist), else ./bin/shardcache
// under the module root, else a fresh build of ./cmd/shardcache in dir.
func brokerBinary(ctx context.Context, binary, dir string) (string, error) {
	if binary != "" {
		if _, err := os.Stat(binary); err != nil {
			return "", fmt.Errorf("broker binary: %w", err)
		}
		return binary, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "shardcache")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	bin = filepath.Join(dir, "shardcache")
	log.Printf("building ./cmd/shardcache (no ./bin/shardcache; make build makes one)")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/shardcache")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/shardcache: %w\n%s", err, out)
	}
	return bin, nil
}

// Bootstrap returns bootstrap when it is set; otherwise it starts a local
// broker (StartBroker with binary and extra) and returns its Kafka address.
// stop stops what Bootstrap started (nothing for a given address).
func Bootstrap(ctx context.Context, bootstrap, binary string, extra ...string) (addr string, stop func(), err error) {
	if bootstrap != "" {
		return bootstrap, func() {}, nil
	}
	b, err := StartBroker(ctx, binary, extra...)
	if err != nil {
		return "", nil, err
	}
	return b.KafkaAddr, b.Stop, nil
}

// Main runs a benchmark command's f with a context that SIGINT and SIGTERM
// cancel; if f fails, it logs the error and exits 1.
func Main(f func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := f(ctx)
	stop()
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// Stop sends SIGTERM, waits up to 30 s (then kills the process) and removes
// the data directory. It may be called more than once.
func (b *Broker) Stop() {
	b.stop()
	os.RemoveAll(b.dir)
}

// stop ends the process: SIGTERM, and SIGKILL after 30 s.
func (b *Broker) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// ModuleRoot returns the directory holding the shardcache module's go.mod,
// found with `go env GOMOD` from the working directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the shardcache module (go env GOMOD is empty): run from the checkout")
	}
	return filepath.Dir(gomod), nil
}

// Quantile returns the q-quantile (0 < q <= 1) of sorted by the nearest-rank
// method: the smallest sample with at least q of the samples at or below it.
// sorted must be in ascending order and not empty.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Median returns the median of f over xs (the mean of the middle two for an
// even count); xs must not be empty.
func Median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
