//go:build unix

package integration

// Client suites in other languages, each run as a child process against a broker
// started here: the Apache Kafka Java client (Maven project in integration/java) and
// librdkafka through confluent-kafka plus kafka-python (pytest in integration/python).
// The suites read the broker address from SHARDCACHE_BOOTSTRAP; their output streams to
// t.Log line by line, so only a failing run prints.
//
// `make deps` (scripts/deps.sh) installs what they need: pip install -r
// integration/python/requirements.txt, and mvn dependency:go-offline in integration/java
// so that the Maven run here works offline (-o).

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
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// javaSuiteTimeout bounds `mvn -o test`: JVM start, compiling the tests and four
	// test methods that each wait at most 30 s on the broker.
	javaSuiteTimeout = 5 * time.Minute
	// pythonSuiteTimeout bounds the pytest run; every poll loop in it has a 30 s deadline.
	pythonSuiteTimeout = 3 * time.Minute

	// minJavaTests and minPythonTests are the test counts of the two suites today; a
	// run that reports fewer lost tests on the way (not compiled, not collected).
	minJavaTests   = 5
	minPythonTests = 6
)

// TestJavaClient runs the Java client suite (kafka-clients 4.x: idempotent producer,
// assign + seekToBeginning over a compacted topic, AdminClient createTopics,
// describeTopics, listOffsets and describeConfigs) against a fresh broker.
func TestJavaClient(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	root := mustModuleRoot(t)
	// Build output and reports go to a temporary directory: nothing is written into
	// the checkout and no report of an earlier run is counted.
	buildDir := filepath.Join(t.TempDir(), "target")
	b := startBroker(t)
	runSuite(t, javaSuiteTimeout, filepath.Join(root, "integration", "java"), b.KafkaAddr,
		"mvn", "-q", "-B", "-o", "-Dstyle.color=never", "-Dshardcache.build.dir="+buildDir, "test")
	checkReports(t, filepath.Join(buildDir, "surefire-reports", "TEST-*.xml"), minJavaTests)
}

// TestPythonClients runs the pytest suite (confluent-kafka with lz4 and zstd,
// offsets_for_times; kafka-python round trip) against a fresh broker.
func TestPythonClients(t *testing.T) {
	python := requireTool(t, "python3")
	root := mustModuleRoot(t)
	// A missing module would make pytest skip its tests (importorskip) and pass: check
	// here, and fail rather than skip when CI is set.
	check := exec.Command(python, "-c", "import confluent_kafka, kafka, pytest")
	if out, err := check.CombinedOutput(); err != nil {
		msg := "confluent_kafka, kafka (kafka-python) or pytest not importable: " +
			"pip install -r integration/python/requirements.txt (make deps)\n" + string(out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	report := filepath.Join(t.TempDir(), "pytest.xml")
	b := startBroker(t)
	runSuite(t, pythonSuiteTimeout, root, b.KafkaAddr,
		python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--junitxml="+report,
		"integration/python")
	checkReports(t, report, minPythonTests)
}

// checkReports reads the JUnit XML reports matching pattern and fails when they count
// fewer than minTests tests or any skipped one: a suite whose tests were all skipped (no
// address, a missing module) or never collected must not pass.
func checkReports(t testing.TB, pattern string, minTests int) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no test reports match %s (err %v)", pattern, err)
	}
	var tests, skipped int
	for _, f := range files {
		n, s, err := countJUnit(f)
		if err != nil {
			t.Fatalf("read test report: %v", err)
		}
		tests += n
		skipped += s
	}
	t.Logf("%d tests ran, %d skipped (%d report files)", tests, skipped, len(files))
	if tests < minTests || skipped > 0 {
		t.Fatalf("want at least %d tests and none skipped; reports count %d tests, %d skipped", minTests, tests, skipped)
	}
}

// countJUnit sums the tests and skipped attributes of the <testsuite> elements of one
// JUnit XML report (surefire writes one suite per file, pytest wraps its suite in
// <testsuites>).
func countJUnit(path string) (tests, skipped int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return tests, skipped, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", path, err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "testsuite" {
			continue
		}
		for _, a := range se.Attr {
			var dst *int
			switch a.Name.Local {
			case "tests":
				dst = &tests
			case "skipped":
				dst = &skipped
			default:
				continue
			}
			n, err := strconv.Atoi(a.Value)
			if err != nil {
				return 0, 0, fmt.Errorf("%s: testsuite %s=%q: %w", path, a.Name.Local, a.Value, err)
			}
			*dst += n
		}
	}
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

// runSuite runs name with args in dir, with SHARDCACHE_BOOTSTRAP=bootstrap, streaming its
// output to t.Log, and fails the test when it exits non-zero or outlives timeout (then
// its whole process group, e.g. Maven's forked test JVM, is killed).
func runSuite(t *testing.T, timeout time.Duration, dir, bootstrap, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"SHARDCACHE_BOOTSTRAP="+bootstrap,
		"PYTHONDONTWRITEBYTECODE=1",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the process group the child leads.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// A grandchild that inherited the output pipes must not hold Wait up forever.
	cmd.WaitDelay = 10 * time.Second
	out := &lineLog{t: t, prefix: filepath.Base(name) + ": "}
	cmd.Stdout = out
	cmd.Stderr = out

	t.Logf("running %s %q in %s with SHARDCACHE_BOOTSTRAP=%s", name, args, dir, bootstrap)
	start := time.Now()
	err := cmd.Run()
	out.flush()
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	if err == nil {
		t.Logf("%s passed in %v", name, elapsed)
		return
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %v (killed): %v", name, timeout, err)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("%s failed after %v (exit code %d); its output is above", name, elapsed, exit.ExitCode())
	}
	t.Fatalf("%s: %v", name, err)
}

// lineLog is an io.Writer that sends each complete line to t.Log. It is safe for the
// concurrent writes of a child's stdout and stderr copiers.
type lineLog struct {
	t      testing.TB
	prefix string

	mu  sync.Mutex
	buf []byte
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
	l.t.Log(l.prefix + string(line))
}
