//go:build unix

package integration

// kafkajs (integration/kafkajs, pinned in package-lock.json) against a fresh broker, run
// by node's test runner. integration/kafkajs/deps.sh (run by make deps) installs node
// and kafkajs.

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	// kafkajsSuiteTimeout bounds the node run: two tests, each of whose waits has a
	// 60 s deadline.
	kafkajsSuiteTimeout = 4 * time.Minute
	// minKafkajsTests is the number of tests in kafkajs.test.js today.
	minKafkajsTests = 2
)

// TestKafkajs runs integration/kafkajs/kafkajs.test.js: keyed produce with admin offsets
// (high watermarks, by timestamp), and a consumer group that reads a compacted topic once,
// sees the latest value of every key and commits up to the high watermarks.
func TestKafkajs(t *testing.T) {
	node := requireTool(t, "node")
	root := mustModuleRoot(t)
	dir := filepath.Join(root, "integration", "kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs", "package.json")); err != nil {
		missingDependency(t, "kafkajs is not installed: run make deps (integration/kafkajs/deps.sh)")
	}
	report := filepath.Join(t.TempDir(), "kafkajs-junit.xml")
	b := startBroker(t)
	runExternalSuite(t, externalSuite{
		Dir:     dir,
		Command: node,
		Args: []string{"--test",
			"--test-reporter=spec", "--test-reporter-destination=stdout",
			"--test-reporter=junit", "--test-reporter-destination=" + report,
			"kafkajs.test.js"},
		Bootstrap: b.KafkaAddr,
		Timeout:   kafkajsSuiteTimeout,
		Reports:   report,
		MinTests:  minKafkajsTests,
	})
}
