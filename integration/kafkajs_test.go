//go:build unix

package integration

// kafkajs (integration/kafkajs, pinned in package-lock.json) against a fresh broker, run
// by node's test runner. integration/kafkajs/deps.sh (run by make deps) installs node
// and kafkajs.

import (
	"encoding/xml"
	"io"
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
		msg := "kafkajs is not installed: run make deps (integration/kafkajs/deps.sh)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	report := filepath.Join(t.TempDir(), "kafkajs-junit.xml")
	b := startBroker(t)
	start := time.Now()
	runSuite(t, kafkajsSuiteTimeout, dir, b.KafkaAddr, node, "--test",
		"--test-reporter=spec", "--test-reporter-destination=stdout",
		"--test-reporter=junit", "--test-reporter-destination="+report,
		"kafkajs.test.js")
	t.Logf("kafkajs suite took %v", time.Since(start).Round(100*time.Millisecond))
	tests, skipped, err := countTestcases(report)
	if err != nil {
		t.Fatalf("read %s: %v", report, err)
	}
	if tests < minKafkajsTests || skipped > 0 {
		t.Fatalf("want at least %d kafkajs tests and none skipped; the report counts %d, %d skipped", minKafkajsTests, tests, skipped)
	}
}

// countTestcases counts the <testcase> elements of a JUnit report (node's junit reporter
// writes them directly under <testsuites>) and those with a <skipped> child.
func countTestcases(path string) (tests, skipped int, err error) {
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
			return 0, 0, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "testcase":
				tests++
			case "skipped":
				skipped++
			}
		}
	}
}
