//go:build unix

package integration

// Helpers for the ecosystem apps (Kafka Streams, Kafka Connect, quixstreams): each
// app is a long-running child process the test starts, stops (SIGTERM, so the app
// commits on its way out), kills (SIGKILL) and starts again, while the broker it
// talks to is restarted on the same Kafka port.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// appStopTimeout bounds a graceful stop (SIGTERM until exit) of an app.
	appStopTimeout = 60 * time.Second
	// mvnClasspathTimeout bounds the offline Maven run that compiles an app and
	// prints its classpath.
	mvnClasspathTimeout = 5 * time.Minute
)

// jvmFlags keep an app's JVM small and cheap on a busy two-core machine: a short
// run gains little from C2 compilation or parallel GC threads.
var jvmFlags = [3]string{"-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"}

// appProc is one run of an app: a child process in its own process group whose
// output goes to t.Log.
type appProc struct {
	name string
	cmd  *exec.Cmd
	out  *lineLog
	done chan struct{} // closed when Wait returns
	err  error         // Wait's result, valid after done
}

// startApp starts name (a label for the log) as command args in dir with env added
// to this process's environment. The process group is killed when the test ends.
func startApp(t testing.TB, name, dir string, env []string, command string, args ...string) *appProc {
	t.Helper()
	cmd := exec.Command(command, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &appProc{name: name, cmd: cmd, out: newLineLog(t, name+": "), done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, command, err)
	}
	go func() {
		p.err = cmd.Wait()
		p.out.flush()
		close(p.done)
	}()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done })
	return p
}

// signal sends sig to the app's process group while the app runs: once it has been
// reaped, its id may belong to another process.
func (p *appProc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Stop sends SIGTERM to the app and waits for it to exit; it fails the test when
// the app does not exit in time or exits with an error.
func (p *appProc) Stop(t testing.TB) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(appStopTimeout):
		p.signal(syscall.SIGKILL)
		<-p.done
		t.Fatalf("%s did not exit within %v of SIGTERM; killed it", p.name, appStopTimeout)
	}
	// A JVM that exits on SIGTERM after its shutdown hooks reports 143.
	var exit *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &exit) && exit.ExitCode() == 128+int(syscall.SIGTERM)) {
		t.Fatalf("%s exited uncleanly after SIGTERM: %v", p.name, p.err)
	}
}

// Kill sends SIGKILL to the app's process group and waits for it.
func (p *appProc) Kill(t testing.TB) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	<-p.done
}

// Wait waits up to timeout for the app to exit by itself and fails the test unless
// it exits with status 0.
func (p *appProc) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Kill(t)
		t.Fatalf("%s did not finish within %v; killed it", p.name, timeout)
	}
	if p.err != nil {
		t.Fatalf("%s failed: %v (its output is above)", p.name, p.err)
	}
}

// Alive returns an error once the app has exited: wait conditions call it so that
// a crashed app fails the test at once instead of at the deadline.
func (p *appProc) Alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	default:
		return nil
	}
}

// waitApps is waitFor that gives up as soon as one of apps has exited.
func waitApps(t testing.TB, timeout time.Duration, what string, apps []*appProc, cond func() error) {
	t.Helper()
	var dead error
	waitFor(t, timeout, 200*time.Millisecond, what, func() error {
		for _, a := range apps {
			if err := a.Alive(); err != nil {
				dead = err
				return nil
			}
		}
		return cond()
	})
	if dead != nil {
		t.Fatalf("%s: %v (its output is above)", what, dead)
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startFixedPortBroker starts a broker whose Kafka port stays the same across
// Stop and Start, so an app that keeps running through a broker restart (and knows
// only its bootstrap address) finds it again, as it would find a restarted Kafka
// broker.
func startFixedPortBroker(t testing.TB, args ...string) *testBroker {
	t.Helper()
	requireLocalBroker(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	return startBroker(t, append([]string{"--kafka-addr=" + addr}, args...)...)
}

// restartBroker stops the broker gracefully and starts it again on the same data
// dir (and, for startFixedPortBroker, the same Kafka port).
func restartBroker(t testing.TB, b *testBroker) {
	t.Helper()
	b.Stop(t)
	b.Start(t)
}

// mavenClasspath compiles the Maven project in dir offline into a temporary build
// directory and returns the Java classpath of its classes and dependencies. The
// project's pom must honour -Dshardcache.build.dir; its deps.sh must have fetched
// everything (make deps).
func mavenClasspath(t testing.TB, dir, deps string) string {
	t.Helper()
	requireTool(t, "mvn")
	requireTool(t, "java")
	build := filepath.Join(t.TempDir(), "target")
	cpFile := filepath.Join(build, "classpath.txt")
	ctx, cancel := context.WithTimeout(context.Background(), mvnClasspathTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-o", "-Dstyle.color=never",
		"-Dshardcache.build.dir="+build, "-Dmdep.outputFile="+cpFile,
		"compile", "dependency:build-classpath")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MAVEN_OPTS="+strings.Join(jvmFlags[1:], " "))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mvn -o compile dependency:build-classpath in %s: %v (run %s, or make deps)\n%s", dir, err, deps, out)
	}
	cp, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatalf("read classpath: %v", err)
	}
	parts := []string{filepath.Join(build, "classes"), strings.TrimSpace(string(cp))}
	return strings.Join(parts, string(os.PathListSeparator))
}

// finalValues reads topic from the start and returns each key's last value (nil for
// a tombstone).
func finalValues(t testing.TB, b *testBroker, topic string) (map[string]*string, error) {
	t.Helper()
	out := make(map[string]*string)
	err := readTopic(t, b, topic, func(r *kgo.Record) {
		if r.Value == nil {
			out[string(r.Key)] = nil
		} else {
			out[string(r.Key)] = strp(string(r.Value))
		}
	})
	return out, err
}

// readTopic hands every record of topic to fn, each partition in offset order, up
// to the high watermarks it finds first. It needs the last record of each
// non-empty partition to be live (true of the apps' topics). Its clients are closed
// before it returns, so wait loops may call it often; errors are returned, so a
// wait loop retries through a broker restart.
func readTopic(t testing.TB, b *testBroker, topic string, fn func(*kgo.Record)) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	admCl := b.Client(t)
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	want := make(map[int32]int64) // partition -> offset still to be seen
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset - 1
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("read %s: partitions %v not read up to their high watermarks within %v", topic, want, opTimeout)
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fn(r)
			if w, ok := want[r.Partition]; ok && r.Offset >= w {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}

// checkFinal compares topic's final value per key with want.
func checkFinal(t testing.TB, b *testBroker, topic string, want map[string]string) error {
	t.Helper()
	got, err := finalValues(t, b, topic)
	if err != nil {
		return err
	}
	if err := diffValues(got, want); err != nil {
		return fmt.Errorf("%s: %w", topic, err)
	}
	return nil
}

// diffValues describes how got differs from want, or returns nil when they match.
func diffValues(got map[string]*string, want map[string]string) error {
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: missing, want %s", k, w))
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%s: tombstone, want %s", k, w))
		case *g != w:
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", k, *g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected key", k))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... (%d more)", len(diffs)-10))
	}
	return errors.New(strings.Join(diffs, "; "))
}

// topicConfig returns one config value of topic as DescribeConfigs reports it.
func topicConfig(t testing.TB, adm *kadm.Client, topic, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs of %s: %v %v", topic, err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == name {
			return c.MaybeValue()
		}
	}
	t.Fatalf("topic %s has no config %s", topic, name)
	return ""
}

// listTopics returns every topic name whose name has prefix.
func listTopics(t testing.TB, adm *kadm.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	var out []string
	for _, n := range tds.Names() {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
