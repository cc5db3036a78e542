//go:build unix

package integration

// Flink jobs against shardcache: integration/flink is a Maven project whose JUnit tests
// run KafkaSource/KafkaSink jobs on a local MiniCluster. Each Maven profile is one Flink
// version; the same job sources build under both:
//
//	flink-2.2   Flink 2.2.1,  flink-connector-kafka 5.0.0-2.2  (kafka-clients 4.x)
//	flink-1.20  Flink 1.20.5, flink-connector-kafka 3.4.0-1.20 (kafka-clients 3.4)
//
// integration/flink/deps.sh (run by make deps) fetches both profiles' dependencies so the
// offline runs here work.

import (
	"path/filepath"
	"testing"
	"time"
)

const (
	// flinkProfileTimeout bounds one profile's `mvn -o test`: compile, JVM start, six
	// jobs whose waits have 60 s deadlines (about 25 s in all on two cores) and up to
	// two exactly-once jobs (15 to 50 s each) bounded at 150 s.
	flinkProfileTimeout = 10 * time.Minute
)

// minFlinkTests is the number of JUnit tests in integration/flink per profile: the cache
// pipeline, failure and recovery, committed-offset start, the slow reader with partition
// discovery, the latest and timestamp initializers, and exactly-once with the defaults;
// on connector 5.0 also the check that INCREMENTING naming is the default and
// exactly-once with POOLING naming.
var minFlinkTests = map[string]int{"flink-2.2": 9, "flink-1.20": 7}

// TestFlink runs the Flink job suite once per Flink version, each against a fresh broker.
func TestFlink(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	root := mustModuleRoot(t)
	dir := filepath.Join(root, "integration", "flink")
	for _, profile := range []string{"flink-2.2", "flink-1.20"} {
		t.Run(profile, func(t *testing.T) {
			// Build output and reports go to a temporary directory, so nothing is
			// written into the checkout and no earlier run's report is counted.
			buildDir := filepath.Join(t.TempDir(), "target")
			b := startBroker(t)
			runExternalSuite(t, externalSuite{
				Dir:     dir,
				Command: "mvn",
				// Tests tagged "cluster" need a cluster and its driver
				// (cluster_flink_test.go), those tagged "sasl" a SASL_SSL
				// listener (security_clients_test.go).
				Args: []string{"-q", "-B", "-o", "-Dstyle.color=never", "-P", profile,
					"-Dshardcache.build.dir=" + buildDir, "-DexcludedGroups=cluster,sasl", "test"},
				Bootstrap: b.KafkaAddr,
				Timeout:   flinkProfileTimeout,
				Reports:   filepath.Join(buildDir, "surefire-reports", "TEST-*.xml"),
				MinTests:  minFlinkTests[profile],
			})
		})
	}
}
