//go:build unix

package integration

// The public franz-go test suite against shardcache: the pkg/kgo integration tests of
// the franz-go version in go.mod, run from that module's source. The tests that must
// pass are listed in compat/kgo-allowlist.txt; every test left out is explained in
// compat/FINDINGS.md. compat/deps.sh downloads the modules the franz-go module's own
// go.sum names, so `go test` here works offline after `make deps`.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// kgoSuiteTimeout bounds the child `go test` (compiling pkg/kgo with -race and
	// running the allowlist; about 2 minutes on two cores).
	kgoSuiteTimeout = 10 * time.Minute
	// kgoModule is the module whose pkg/kgo tests run.
	kgoModule = "github.com/twmb/franz-go"
)

// The SCRAM user of TestKgoSuite's SASL broker.
const (
	kgoScramUser     = "kgo"
	kgoScramPassword = "kgo-secret"
)

// TestKgoSuite runs the allowlisted franz-go pkg/kgo tests against a fresh broker with
// delete as the default cleanup policy (the suite checks every produced record comes back,
// which a compacted topic would not promise), and fails unless every listed test passes.
func TestKgoSuite(t *testing.T) {
	goBin := requireTool(t, "go")
	root := mustModuleRoot(t)
	allow, err := readAllowlist(filepath.Join(root, "integration", "compat", "kgo-allowlist.txt"))
	if err != nil {
		t.Fatal(err)
	}
	src := kgoModuleCopy(t, goBin, root)
	b := startBroker(t, "--default-cleanup-policy=delete")
	// TestSCRAMAuth and TestSCRAMAuthBadCredentials want a SASL listener
	// (KGO_TEST_SCRAM_SEEDS) and a user of it (KGO_TEST_SCRAM): a second
	// broker whose bootstrap user is that user.
	scramAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if len(externalSeeds) == 0 {
		t.Setenv("SHARDCACHE_SASL_BOOTSTRAP_PASSWORD", kgoScramPassword)
		startBroker(t, "--listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://"+scramAddr,
			"--sasl-bootstrap-user="+kgoScramUser)
	} else {
		// An external cluster has no such user: the two tests would skip.
		allow = slices.DeleteFunc(allow, func(name string) bool { return strings.HasPrefix(name, "TestSCRAMAuth") })
		t.Logf("external cluster: not running the SCRAM tests")
	}

	args := []string{"test", "-race", "-count=1", "-v", "-timeout", "8m",
		"-run", "^(" + strings.Join(allow, "|") + ")$", "./pkg/kgo/"}
	env := map[string]string{
		"KGO_SEEDS":        b.KafkaAddr,
		"KGO_TEST_RF":      "1",
		"KGO_TEST_RECORDS": "20000",
		// SCRAM-SHA-256, franz-go's default for this DSL.
		"KGO_TEST_SCRAM_SEEDS": scramAddr,
		"KGO_TEST_SCRAM":       kgoScramUser + ":" + kgoScramPassword,
		// The module copy is complete (go.sum included): never edit it, never touch
		// the network.
		"GOFLAGS": "-mod=readonly", "GOWORK": "off", "GOPROXY": "off", "GOTOOLCHAIN": "local",
	}
	if os.Getenv("KGO_LOG_LEVEL") == "" {
		env["KGO_LOG_LEVEL"] = "none"
	}
	start := time.Now()
	out, runErr := runCapture(t, kgoSuiteTimeout, src, env, goBin, args...)
	t.Logf("kgo suite: %d allowlisted tests, go test took %v", len(allow), time.Since(start).Round(time.Second))

	results := goTestResults(out)
	var missing, notPassed []string
	for _, name := range allow {
		switch r, ok := results[name]; {
		case !ok:
			missing = append(missing, name)
		case r != "PASS":
			notPassed = append(notPassed, name+" ("+r+")")
		}
	}
	if len(notPassed) > 0 {
		t.Errorf("allowlisted kgo tests that did not pass: %s", strings.Join(notPassed, ", "))
	}
	if len(missing) > 0 {
		t.Errorf("allowlisted kgo tests that did not run (renamed or removed upstream?): %s", strings.Join(missing, ", "))
	}
	if runErr != nil {
		t.Errorf("go test ./pkg/kgo: %v", runErr)
	}
}

// readAllowlist returns the test names of an allowlist file: one per line, blank lines and
// # comments ignored. Each must be a Go test name; the list must not be empty.
func readAllowlist(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	valid := regexp.MustCompile(`^(Test|Fuzz|Example)[A-Za-z0-9_]*$`)
	var names []string
	seen := make(map[string]bool)
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !valid.MatchString(line) {
			return nil, fmt.Errorf("%s:%d: %q is not a Go test name", path, i+1, line)
		}
		if seen[line] {
			return nil, fmt.Errorf("%s:%d: %s is listed twice", path, i+1, line)
		}
		seen[line] = true
		names = append(names, line)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s lists no tests", path)
	}
	return names, nil
}

// kgoModuleCopy copies the franz-go module of go.mod (read-only in the module cache) into
// a temporary directory the child go test may write to, and returns that directory.
func kgoModuleCopy(t testing.TB, goBin, root string) string {
	t.Helper()
	cmd := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", kgoModule)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m %s: %v (dir %q): run make deps (integration/compat/deps.sh)", kgoModule, err, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "pkg", "kgo", "helpers_test.go")); err != nil {
		t.Fatalf("%s has no pkg/kgo tests: %v", dir, err)
	}
	dst := filepath.Join(t.TempDir(), "franz-go")
	if err := copyTree(dir, dst); err != nil {
		t.Fatalf("copy %s: %v", dir, err)
	}
	return dst
}

// copyTree copies the regular files and directories under src to dst, writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// runCapture runs name with args in dir with env added to this process's environment,
// streams the output to t.Log, and returns it. The child's process group is killed
// when it outlives timeout.
func runCapture(t *testing.T, timeout time.Duration, dir string, env map[string]string, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	log := newLineLog(t, filepath.Base(name)+": ")
	tee := &teeLog{log: log}
	cmd.Stdout = tee
	cmd.Stderr = tee
	t.Logf("running %s %s in %s", name, shortArgs(args), dir)
	err := cmd.Run()
	log.flush()
	out := tee.buf.Bytes()
	if ctx.Err() != nil {
		return out, fmt.Errorf("did not finish within %v (killed): %w", timeout, err)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out, fmt.Errorf("exit code %d", exit.ExitCode())
	}
	return out, err
}

// shortArgs abbreviates a long -run pattern for the log.
func shortArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 120 {
			a = a[:120] + fmt.Sprintf("...(%d bytes)", len(a))
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// teeLog keeps a child's whole output and sends it line by line to t.Log; exec's
// stdout and stderr copiers write to it concurrently.
type teeLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
	log *lineLog
}

func (w *teeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	return w.log.Write(p)
}

// goTestResults maps each top-level test of `go test -v` output to PASS, FAIL or SKIP.
func goTestResults(out []byte) map[string]string {
	res := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	re := regexp.MustCompile(`^--- (PASS|FAIL|SKIP): ([A-Za-z0-9_]+) \(`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			res[m[2]] = m[1]
		}
	}
	return res
}
