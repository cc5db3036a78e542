//go:build unix

package integration

// A quixstreams app (integration/quixstreams/app.py) against shardcache: a stateful
// count and total per sensor, whose state store changelog is a compacted topic on the
// broker. The app runs in two phases; between them the broker restarts and the app's
// local state dir is wiped, so the second run must restore its state from the
// changelog for the totals to come out right.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// quixSensors and quixReadingsPerPhase size the input: every phase gives each
	// sensor quixReadingsPerPhase readings.
	quixSensors          = 5
	quixReadingsPerPhase = 4
	// quixRunTimeout bounds one run of the app: Python start, the consumer group's
	// first rebalance, the changelog restore and 20 records.
	quixRunTimeout = 3 * time.Minute
)

// TestQuixstreamsStatefulRestore runs the quixstreams app twice over a growing input
// and checks the output topic's final value per sensor after each run: the exact
// count and total of every reading so far.
func TestQuixstreamsStatefulRestore(t *testing.T) {
	python := requireTool(t, "python3")
	if out, err := exec.Command(python, "-c", "import quixstreams").CombinedOutput(); err != nil {
		missingDependency(t, "quixstreams not importable: run integration/quixstreams/deps.sh (make deps)\n"+string(out))
	}
	root := mustModuleRoot(t)
	b := startBroker(t, "--group-initial-rebalance-delay=0")
	adm := b.Admin(t)
	cl := b.Client(t)

	input, output := topicName(t)+"-readings", topicName(t)+"-totals"
	// The readings are a plain log: compaction would keep only each sensor's last one.
	createTopic(t, adm, input, 2, map[string]string{"cleanup.policy": "delete"})
	createTopic(t, adm, output, 2, nil)
	group := "quix-" + input
	stateDir := filepath.Join(t.TempDir(), "state")

	counts := make(map[string]int)
	totals := make(map[string]int)
	phase := func(n int) {
		t.Helper()
		var recs []*kgo.Record
		for j := range quixReadingsPerPhase {
			for s := range quixSensors {
				sensor := fmt.Sprintf("sensor-%d", s)
				reading := 10*n + 3*s + j
				counts[sensor]++
				totals[sensor] += reading
				recs = append(recs, kv(input, sensor, strp(fmt.Sprintf(`{"reading": %d}`, reading))))
			}
		}
		produceSync(t, cl, recs...)
		app := startApp(t, fmt.Sprintf("quixstreams#%d", n), root, []string{"SHARDCACHE_BOOTSTRAP=" + b.KafkaAddr, "PYTHONDONTWRITEBYTECODE=1"},
			python, "integration/quixstreams/app.py", "--input", input, "--output", output, "--group", group,
			"--state-dir", stateDir, "--count", fmt.Sprint(len(recs)), "--timeout", "60")
		app.Wait(t, quixRunTimeout)
		want := make(map[string]string, len(counts))
		for s, c := range counts {
			want[s] = fmt.Sprintf("count=%d total=%d", c, totals[s])
		}
		got, err := finalValues(t, b, output)
		if err != nil {
			t.Fatal(err)
		}
		if err := diffValues(quixTotals(t, got), want); err != nil {
			t.Fatalf("phase %d: output topic %s after the run: %v", n, output, err)
		}
	}

	phase(1)
	changelogs := listTopics(t, adm, "changelog__")
	if len(changelogs) == 0 {
		t.Fatal("no changelog__ topic after the first run: where does the state store live?")
	}
	for _, c := range changelogs {
		if p := topicConfig(t, adm, c, "cleanup.policy"); !strings.Contains(p, "compact") {
			t.Errorf("changelog topic %s has cleanup.policy=%s, want compact", c, p)
		}
	}

	// The state must come back from the broker alone.
	restartBroker(t, b)
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	phase(2)
}

// quixTotals turns the app's JSON values into "count=C total=T" strings.
func quixTotals(t testing.TB, vals map[string]*string) map[string]*string {
	t.Helper()
	out := make(map[string]*string, len(vals))
	for k, v := range vals {
		if v == nil {
			out[k] = nil
			continue
		}
		var agg struct{ Count, Total int }
		if err := json.Unmarshal([]byte(*v), &agg); err != nil {
			t.Fatalf("output value for %s is not the app's JSON: %q: %v", k, *v, err)
		}
		out[k] = strp(fmt.Sprintf("count=%d total=%d", agg.Count, agg.Total))
	}
	return out
}
