//go:build unix

package integration

// The Flink async-lookup example (integration/flink-lookup): a Flink 2.2 job on a
// local MiniCluster enriches a stream of keys through the HTTP lookup API, with
// AsyncDataStream.unorderedWait and Java's HttpClient; its JUnit test writes the
// keys with the Java producer first. Maven runs offline: integration/flink-lookup/
// deps.sh (run by `make test`) fetched everything.

import (
	"path/filepath"
	"testing"
	"time"
)

// mavenTimeout bounds one Maven run (JVM start, compile, MiniCluster job).
const mavenTimeout = 8 * time.Minute

func TestFlinkLookupJob(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	b := startBroker(t)
	if b.HTTPAddr == "" {
		t.Skip("no HTTP address for the cluster (set SHARDCACHE_TEST_HTTP)")
	}
	build := t.TempDir()
	runExternalSuite(t, externalSuite{
		Dir:       "flink-lookup",
		Command:   "mvn",
		Args:      []string{"-q", "-B", "-o", "-Dstyle.color=never", "-Dshardcache.build.dir=" + build, "test"},
		Bootstrap: b.KafkaAddr,
		Env:       []string{"SHARDCACHE_HTTP=" + b.HTTPAddr},
		Timeout:   mavenTimeout,
		Reports:   filepath.Join(build, "surefire-reports", "TEST-*.xml"),
		// Both tests must have run: an all-skipped (or never-run) suite is a failure.
		MinTests: 2,
		Hint:     "run integration/flink-lookup/deps.sh if artifacts are missing",
	})
}
