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
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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
// exactly-once with POOLING naming (less one when POOLING is left out, see
// flinkExcludedGroups).
var minFlinkTests = map[string]int{"flink-2.2": 9, "flink-1.20": 7}

// flinkExcludedGroups are the JUnit tags left out against b: "cluster" (those tests need
// a cluster and its driver, cluster_flink_test.go), and "txnadmin" (the POOLING naming
// strategy, which lists lingering transactions with DescribeProducers and
// ListTransactions) while b does not advertise both APIs. It returns how many tests that
// leaves out of minFlinkTests.
func flinkExcludedGroups(t *testing.T, b *testBroker) (groups string, fewer int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	vs, err := b.Admin(t).ApiVersions(ctx)
	if err != nil {
		t.Fatalf("api versions: %v", err)
	}
	have := map[int16]bool{}
	vs.Each(func(v kadm.BrokerApiVersions) {
		v.EachKeySorted(func(key, _, _ int16) { have[key] = true })
	})
	excluded := []string{"cluster"}
	if !have[61] || !have[66] { // DescribeProducers, ListTransactions
		t.Logf("broker lacks DescribeProducers (61) or ListTransactions (66): leaving out the POOLING exactly-once test (tag txnadmin)")
		excluded = append(excluded, "txnadmin")
		fewer = 1
	}
	return strings.Join(excluded, ","), fewer
}

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
			excluded, fewer := flinkExcludedGroups(t, b)
			if profile != "flink-2.2" {
				fewer = 0 // the POOLING test exists only on connector 5.0
			}
			runExternalSuite(t, externalSuite{
				Dir:     dir,
				Command: "mvn",
				Args: []string{"-q", "-B", "-o", "-Dstyle.color=never", "-P", profile,
					"-Dshardcache.build.dir=" + buildDir, "-DexcludedGroups=" + excluded, "test"},
				Bootstrap: b.KafkaAddr,
				Timeout:   flinkProfileTimeout,
				Reports:   filepath.Join(buildDir, "surefire-reports", "TEST-*.xml"),
				MinTests:  minFlinkTests[profile] - fewer,
			})
		})
	}
}
