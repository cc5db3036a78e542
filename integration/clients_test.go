//go:build unix

package integration

// Client suites in other languages, each run as a child process against a broker
// started here: the Apache Kafka Java client (Maven project in integration/java) and
// librdkafka through confluent-kafka plus kafka-python (pytest in integration/python).
// The suites read the broker address from SHARDCACHE_BOOTSTRAP; runExternalSuite
// (suite_test.go) streams their output to t.Log and checks their JUnit reports.
//
// `make deps` (scripts/deps.sh) installs what they need: pip install -r
// integration/python/requirements.txt, and mvn dependency:go-offline in integration/java
// so that the Maven run here works offline (-o).

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const (
	// javaSuiteTimeout bounds `mvn -o test`: JVM start, compiling the tests and nine
	// test methods that each wait at most 30 s on the broker (45 s for a timed-out
	// transaction).
	javaSuiteTimeout = 5 * time.Minute
	// pythonSuiteTimeout bounds the pytest run; every poll loop in it has a 30 s deadline.
	pythonSuiteTimeout = 3 * time.Minute

	// minJavaTests and minPythonTests are the test counts of the two suites today; a
	// run that reports fewer lost tests on the way (not compiled, not collected).
	minJavaTests   = 10
	minPythonTests = 9
)

// TestJavaClient runs the Java client suite (kafka-clients 4.x: idempotent producer,
// assign + seekToBeginning over a compacted topic, AdminClient createTopics,
// describeTopics, listOffsets and describeConfigs, transactions with read_committed
// consumers in TransactionTest) against a fresh broker.
func TestJavaClient(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	root := mustModuleRoot(t)
	// Build output and reports go to a temporary directory: nothing is written into
	// the checkout and no report of an earlier run is counted.
	buildDir := filepath.Join(t.TempDir(), "target")
	b := startBroker(t)
	runExternalSuite(t, externalSuite{
		Dir:     filepath.Join(root, "integration", "java"),
		Command: "mvn",
		// Tests tagged "cluster" need a cluster and a driver (cluster_java_test.go),
		// those tagged "sasl" a SASL_SSL listener (security_clients_test.go).
		Args:      []string{"-q", "-B", "-o", "-Dstyle.color=never", "-Dshardcache.build.dir=" + buildDir, "-DexcludedGroups=cluster,sasl", "test"},
		Bootstrap: b.KafkaAddr,
		Timeout:   javaSuiteTimeout,
		Reports:   filepath.Join(buildDir, "surefire-reports", "TEST-*.xml"),
		MinTests:  minJavaTests,
	})
}

// TestPythonClients runs the pytest suite (confluent-kafka with lz4 and zstd,
// offsets_for_times, transactions committed, aborted and fenced read back with
// read_committed; kafka-python round trip) against a fresh broker.
func TestPythonClients(t *testing.T) {
	python := requireTool(t, "python3")
	root := mustModuleRoot(t)
	// A missing module would make pytest skip its tests (importorskip) and pass: check
	// here, and fail rather than skip when CI is set.
	check := exec.Command(python, "-c", "import confluent_kafka, kafka, pytest")
	if out, err := check.CombinedOutput(); err != nil {
		missingDependency(t, "confluent_kafka, kafka (kafka-python) or pytest not importable: "+
			"pip install -r integration/python/requirements.txt (make deps)\n"+string(out))
	}
	report := filepath.Join(t.TempDir(), "pytest.xml")
	b := startBroker(t)
	runExternalSuite(t, externalSuite{
		Dir:     root,
		Command: python,
		Args: []string{"-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--junitxml=" + report,
			"integration/python"},
		Bootstrap: b.KafkaAddr,
		Env:       []string{"PYTHONDONTWRITEBYTECODE=1"},
		Timeout:   pythonSuiteTimeout,
		Reports:   report,
		MinTests:  minPythonTests,
	})
}
