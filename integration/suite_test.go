//go:build unix

package integration

// Running a test suite written for another client (Maven/JUnit, pytest, node's
// test runner) as a child process against a broker started here: the suite's
// output streams to t.Log line by line, so only a failing run prints; a run that
// outlives its timeout has its whole process group killed (Maven forks a test
// JVM); afterwards its JUnit XML reports must count enough tests, none skipped
// or failed, so a suite that was never compiled or collected cannot pass.

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// externalSuite is one run of an external test suite.
type externalSuite struct {
	// Dir is the working directory.
	Dir string
	// Command and Args start the suite.
	Command string
	Args    []string
	// Bootstrap is the broker's Kafka address, passed as SHARDCACHE_BOOTSTRAP.
	Bootstrap string
	// Env holds more KEY=VALUE pairs added to this process's environment.
	Env []string
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Reports is a glob of the JUnit XML reports the run writes.
	Reports string
	// MinTests is the number of tests the reports must count at least.
	MinTests int
	// Hint, when set, ends the message of a failed run (for example the deps.sh
	// to run when artifacts are missing).
	Hint string
}

// runExternalSuite runs s and fails the test when the suite exits non-zero,
// outlives s.Timeout or reports fewer than s.MinTests tests, any of them
// skipped or failed.
func runExternalSuite(t *testing.T, s externalSuite) {
	t.Helper()
	startExternalSuite(t, s)()
}

// startExternalSuite starts s and returns a function that waits for it and
// judges it as runExternalSuite does. It lets a test act on the brokers (kill
// a node, restart the cluster) while the suite runs; call the returned
// function from the test goroutine.
func startExternalSuite(t *testing.T, s externalSuite) (wait func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)

	cmd := exec.CommandContext(ctx, s.Command, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = append(append(os.Environ(), "SHARDCACHE_BOOTSTRAP="+s.Bootstrap), s.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the process group the child leads.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A grandchild that inherited the output pipes must not hold Wait up forever.
	cmd.WaitDelay = 10 * time.Second
	name := filepath.Base(s.Command)
	out := newLineLog(t, name+": ")
	cmd.Stdout = out
	cmd.Stderr = out

	t.Logf("running %s %q in %s with SHARDCACHE_BOOTSTRAP=%s %q", s.Command, s.Args, s.Dir, s.Bootstrap, s.Env)
	start := time.Now()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		done <- err
	} else {
		go func() { done <- cmd.Wait() }()
	}
	// The suite must not outlive the test, whatever the test does meanwhile.
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return func() {
		t.Helper()
		err := <-done
		done <- err // for the cleanup
		out.flush()
		elapsed := time.Since(start).Round(100 * time.Millisecond)
		hint := ""
		if s.Hint != "" {
			hint = " (" + s.Hint + ")"
		}
		var exit *exec.ExitError
		switch {
		case err == nil:
			t.Logf("%s passed in %v", name, elapsed)
		case ctx.Err() != nil:
			t.Fatalf("%s did not finish within %v (killed): %v", name, s.Timeout, err)
		case errors.As(err, &exit):
			t.Fatalf("%s failed after %v (exit code %d); its output is above%s", name, elapsed, exit.ExitCode(), hint)
		default:
			t.Fatalf("%s: %v%s", name, err, hint)
		}
		checkReports(t, s.Reports, s.MinTests)
	}
}

// checkReports reads the JUnit XML reports matching pattern and fails when they count
// fewer than minTests tests, or any skipped or failed one: a suite whose tests were all
// skipped (no address, a missing module) or never collected must not pass.
func checkReports(t testing.TB, pattern string, minTests int) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no test reports match %s (err %v)", pattern, err)
	}
	var sum junitCounts
	for _, f := range files {
		c, err := countJUnit(f)
		if err != nil {
			t.Fatalf("read test report: %v", err)
		}
		sum.tests += c.tests
		sum.skipped += c.skipped
		sum.failed += c.failed
	}
	t.Logf("%d tests ran, %d skipped, %d failed (%d report files)", sum.tests, sum.skipped, sum.failed, len(files))
	if sum.tests < minTests || sum.skipped > 0 || sum.failed > 0 {
		t.Fatalf("want at least %d tests, none skipped or failed; reports count %d tests, %d skipped, %d failed",
			minTests, sum.tests, sum.skipped, sum.failed)
	}
}

// junitCounts is what one or more JUnit reports count.
type junitCounts struct {
	tests, skipped, failed int
}

// countJUnit counts the <testcase> elements of one JUnit XML report, and those with
// a <skipped> or a <failure> / <error> child. Every producer we run writes one
// <testcase> per test: surefire (one <testsuite> per file), pytest (a <testsuite>
// inside <testsuites>) and node's junit reporter (<testcase> directly under
// <testsuites>, so <testsuite> attributes cannot be relied on).
func countJUnit(path string) (junitCounts, error) {
	f, err := os.Open(path)
	if err != nil {
		return junitCounts{}, err
	}
	defer f.Close()
	var c junitCounts
	// Each testcase is counted skipped or failed at most once.
	var inCase, caseSkipped, caseFailed bool
	dec := xml.NewDecoder(f)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return c, nil
		}
		if err != nil {
			return junitCounts{}, fmt.Errorf("%s: %w", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			switch el.Name.Local {
			case "testcase":
				c.tests++
				inCase, caseSkipped, caseFailed = true, false, false
			case "skipped":
				if inCase && !caseSkipped {
					c.skipped++
					caseSkipped = true
				}
			case "failure", "error":
				if inCase && !caseFailed {
					c.failed++
					caseFailed = true
				}
			}
		case xml.EndElement:
			if el.Name.Local == "testcase" {
				inCase = false
			}
		}
	}
}

// missingDependency skips the test because of msg (a dependency that make deps
// installs is missing), or fails it when CI is set: CI must not pass by skipping.
func missingDependency(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// mustModuleRoot returns the module root (the directory holding go.mod).
func mustModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// lineLog is an io.Writer that sends each complete line of a child process's
// output to its test's childLog. It is safe for the concurrent writes of a
// child's stdout and stderr copiers. Make one with newLineLog.
type lineLog struct {
	out    *childLog
	prefix string

	mu  sync.Mutex
	buf []byte
}

func newLineLog(t testing.TB, prefix string) *lineLog {
	return &lineLog{out: childLogOf(t), prefix: prefix}
}

// childLog is the output of one test's child processes (brokers, nodes, client
// suites). With -v it goes to t.Log line by line as it comes. Otherwise it is
// held and logged when the test ends, and only if it failed: then the failure
// comes first in the test's output, ahead of thousands of lines of node
// start-up, and a CI summary that shows only the first lines of a failed test
// still shows what failed. Lines that come after the end go straight to t.Log
// if the test failed and are dropped if it passed.
type childLog struct {
	t testing.TB

	mu    sync.Mutex
	lines []string
	ended bool
}

var (
	childLogsMu sync.Mutex
	childLogs   = map[testing.TB]*childLog{}
)

// childLogOf returns t's childLog, made and registered for the end of t on the
// first call.
func childLogOf(t testing.TB) *childLog {
	childLogsMu.Lock()
	defer childLogsMu.Unlock()
	if l, ok := childLogs[t]; ok {
		return l
	}
	l := &childLog{t: t}
	childLogs[t] = l
	t.Cleanup(l.end)
	return l
}

func (l *childLog) add(line string) {
	if testing.Verbose() {
		l.t.Log(line)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.ended:
		l.lines = append(l.lines, line)
	case l.t.Failed():
		l.t.Log(line)
	}
}

// end logs the held lines if the test failed and forgets them.
func (l *childLog) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t.Failed() && len(l.lines) > 0 {
		l.t.Logf("the output of the test's processes, %d lines:\n%s", len(l.lines), strings.Join(l.lines, "\n"))
	}
	l.lines, l.ended = nil, true
	childLogsMu.Lock()
	delete(childLogs, l.t)
	childLogsMu.Unlock()
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.logLine(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// flush logs a last line that had no newline.
func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.logLine(l.buf)
		l.buf = nil
	}
}

// ansiReset is the escape sequence Debian's Maven 3.8 prints even in batch mode.
var ansiReset = []byte("\x1b[0m")

// logLine logs one line without its ANSI resets; lines with nothing else are dropped.
func (l *lineLog) logLine(line []byte) {
	line = bytes.ReplaceAll(bytes.TrimRight(line, "\r"), ansiReset, nil)
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	l.out.add(l.prefix + string(line))
}

// TestCountJUnit pins how the JUnit reports of each producer are counted: a
// skipped or failed test must be seen, whatever the report's layout.
func TestCountJUnit(t *testing.T) {
	tests := []struct {
		name   string
		report string
		want   junitCounts
	}{
		{"surefire", `<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="io.shardcache.ClientTest" tests="3" errors="1" skipped="1" failures="0">
  <properties><property name="skipped" value="x"/></properties>
  <testcase name="produce" classname="io.shardcache.ClientTest" time="0.1"/>
  <testcase name="admin" classname="io.shardcache.ClientTest"><skipped message="off"/></testcase>
  <testcase name="fetch" classname="io.shardcache.ClientTest"><error type="java.io.IOException"/><system-out>x</system-out></testcase>
</testsuite>`, junitCounts{tests: 3, skipped: 1, failed: 1}},
		{"pytest", `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="0" tests="2">
<testcase classname="test_clients" name="test_roundtrip"/>
<testcase classname="test_clients" name="test_lz4"><failure message="assert">trace</failure></testcase>
</testsuite></testsuites>`, junitCounts{tests: 2, failed: 1}},
		{"node", `<?xml version="1.0" encoding="utf-8"?>
<testsuites>
	<testcase name="keyed produce" time="1.2" classname="test"/>
	<testcase name="group" time="0.0" classname="test">
		<skipped type="skipped" message="true"/>
	</testcase>
	<!-- tests 2 -->
</testsuites>`, junitCounts{tests: 2, skipped: 1}},
		{"empty", `<testsuites></testsuites>`, junitCounts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.xml")
			if err := os.WriteFile(path, []byte(tt.report), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := countJUnit(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("countJUnit = %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("not XML", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "report.xml")
		if err := os.WriteFile(path, []byte("<testsuite><testcase>"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := countJUnit(path); err == nil {
			t.Fatal("a truncated report was accepted")
		}
	})
}
