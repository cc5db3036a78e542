package integration

// The Flink async-lookup example (integration/flink-lookup): a Flink 2.2 job on a
// local MiniCluster enriches a stream of keys through the HTTP lookup API, with
// AsyncDataStream.unorderedWait and Java's HttpClient; its JUnit test writes the
// keys with the Java producer first. Maven runs offline: integration/flink-lookup/
// deps.sh (run by `make test`) fetched everything.

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// mavenTimeout bounds one Maven run (JVM start, compile, MiniCluster job).
const mavenTimeout = 8 * time.Minute

// surefireSuite is the part of a surefire TEST-*.xml report the test counts.
type surefireSuite struct {
	Name     string `xml:"name,attr"`
	Tests    int    `xml:"tests,attr"`
	Failures int    `xml:"failures,attr"`
	Errors   int    `xml:"errors,attr"`
	Skipped  int    `xml:"skipped,attr"`
}

// surefireTotals sums the reports in dir: run = tests that ran, not skipped.
func surefireTotals(t testing.TB, dir string) (run, failed int, names []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "TEST-*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s surefireSuite
		if err := xml.Unmarshal(data, &s); err != nil {
			t.Fatalf("surefire report %s: %v", f, err)
		}
		run += s.Tests - s.Skipped
		failed += s.Failures + s.Errors
		names = append(names, s.Name)
	}
	return run, failed, names
}

func TestFlinkLookupJob(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	b := startBroker(t)
	if b.HTTPAddr == "" {
		t.Skip("no HTTP address for the cluster (set SHARDCACHE_TEST_HTTP)")
	}
	build := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), mavenTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-o", "-Dstyle.color=never",
		"-Dshardcache.build.dir="+build, "test")
	cmd.Dir = "flink-lookup"
	cmd.Env = append(os.Environ(), "SHARDCACHE_BOOTSTRAP="+b.KafkaAddr, "SHARDCACHE_HTTP="+b.HTTPAddr)
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("mvn test took %v; output:\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("mvn -o test in integration/flink-lookup: %v (run integration/flink-lookup/deps.sh if artifacts are missing)", err)
	}
	run, failed, suites := surefireTotals(t, filepath.Join(build, "surefire-reports"))
	t.Logf("surefire: %d tests run, %d failed, suites %v", run, failed, suites)
	// Both tests must have run: an all-skipped (or never-run) suite is a failure.
	if run < 2 || failed != 0 {
		t.Fatalf("surefire: %d tests run (want 2), %d failed", run, failed)
	}
}
