//go:build unix

package integration

// The Java client and a Flink job against a three-node cluster while nodes
// fail: the JUnit tests tagged "cluster" (integration/java FailoverTest,
// integration/flink RollingRestartTest) run the clients and judge the data;
// these tests start the cluster, run the suite, and inject the fault when the
// JUnit side signals through a file (started), answering with another file
// once the fault is over.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signalTimeout bounds the wait for the JUnit side's "started" file (JVM
// start, compiling, topic creation, the first third of the workload).
const signalTimeout = 4 * time.Minute

// awaitSignal waits until the file exists and returns its content, trimmed.
func awaitSignal(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(signalTimeout)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", path, signalTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeSignal(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startClusterSuite starts the JUnit tests tagged "cluster" of the Maven
// project in integration/<project> against c, with a signal directory, and
// returns that directory and the wait of startExternalSuite.
func startClusterSuite(t *testing.T, c *testCluster, project string, timeout time.Duration, mvnArgs ...string) (signals string, wait func()) {
	t.Helper()
	signals = t.TempDir()
	buildDir := filepath.Join(t.TempDir(), "target")
	args := append([]string{"-q", "-B", "-o", "-Dstyle.color=never"}, mvnArgs...)
	args = append(args, "-Dshardcache.build.dir="+buildDir, "-Dgroups=cluster", "test")
	wait = startExternalSuite(t, externalSuite{
		Dir:       filepath.Join(mustModuleRoot(t), "integration", project),
		Command:   "mvn",
		Args:      args,
		Bootstrap: strings.Join(c.Seeds(), ","),
		Env:       []string{"SHARDCACHE_SIGNAL_DIR=" + signals},
		Timeout:   timeout,
		Reports:   filepath.Join(buildDir, "surefire-reports", "TEST-*.xml"),
		MinTests:  1,
	})
	return signals, wait
}

// TestClusterJavaClientFailover: an idempotent Java producer and a consumer
// group member through a kill -9 of partition 0's leader and its restart.
func TestClusterJavaClientFailover(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	c := startCluster(t, 3)
	signals, wait := startClusterSuite(t, c, "java", 8*time.Minute)
	topic := awaitSignal(t, filepath.Join(signals, "started"))
	leader := c.Leaders(topic)[0]
	t.Logf("killing node %d, the leader of %s/0", leader, topic)
	c.Kill(leader)
	c.WaitLeaders(topic)
	c.Start(leader)
	writeSignal(t, filepath.Join(signals, "killed"))
	wait()
}

// TestClusterFlinkRollingRestart: the cache pipeline (Flink 2.2) keeps an
// exact compacted output while every node is restarted in turn.
func TestClusterFlinkRollingRestart(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	c := startCluster(t, 3)
	signals, wait := startClusterSuite(t, c, "flink", 10*time.Minute, "-P", "flink-2.2")
	awaitSignal(t, filepath.Join(signals, "started"))
	for _, id := range c.IDs() {
		t.Logf("rolling restart: node %d", id)
		c.Stop(id)
		c.Start(id)
	}
	writeSignal(t, filepath.Join(signals, "restarted"))
	wait()
}
