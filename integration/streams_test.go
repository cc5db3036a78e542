//go:build unix

package integration

// A Kafka Streams app (integration/streams, kafka-streams 4.x, at least once) against
// shardcache: orders rekeyed by customer (a repartition topic), aggregated per
// customer into a KTable (a compacted changelog topic) and joined with a GlobalKTable
// of regions (a compacted topic read whole), and aggregated per customer and window
// too (a window store, whose changelog is compact,delete with a retention.ms). The
// test runs it through an app restart with a wiped state dir (state restored from the
// changelogs) and a broker restart, and checks both output topics' final value per
// key exactly each time.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// streamsCustomers and streamsOrdersPerPhase size the input: each phase gives
	// every customer streamsOrdersPerPhase orders.
	streamsCustomers      = 5
	streamsOrdersPerPhase = 3
	// streamsWindow is the window size of the app's windowed aggregate (App.WINDOW).
	streamsWindow = 7 * 24 * time.Hour
	// streamsOutputTimeout bounds the wait for a phase's output: JVM start, the
	// consumer group's rebalance, internal topic creation, state restore.
	streamsOutputTimeout = 3 * time.Minute
)

// streamsWorld is the input the test has written and the output it expects.
type streamsWorld struct {
	orders, customers, output, windowed string
	// stamp is every order's timestamp, so all fall into one window of the app's
	// windowed aggregate (streamsWindow).
	stamp time.Time

	region map[string]string
	orderN map[string]int
	total  map[string]int
	nextID int
	cl     *kgo.Client
	t      testing.TB
}

func (w *streamsWorld) setRegion(customer, region string) {
	w.region[customer] = region
	produceSync(w.t, w.cl, kv(w.customers, customer, strp(region)))
}

// addOrders writes streamsOrdersPerPhase new orders for every customer.
func (w *streamsWorld) addOrders() {
	var recs []*kgo.Record
	for range streamsOrdersPerPhase {
		for c := range streamsCustomers {
			customer := fmt.Sprintf("customer-%d", c)
			w.nextID++
			amount := 7*w.nextID%50 + 1
			w.orderN[customer]++
			w.total[customer] += amount
			r := kv(w.orders, fmt.Sprintf("order-%04d", w.nextID), strp(fmt.Sprintf("%s,%d", customer, amount)))
			r.Timestamp = w.stamp
			recs = append(recs, r)
		}
	}
	produceSync(w.t, w.cl, recs...)
}

// want is the output topic's expected final value per customer.
func (w *streamsWorld) want() map[string]string {
	out := make(map[string]string, len(w.orderN))
	for c, n := range w.orderN {
		out[c] = fmt.Sprintf("region=%s orders=%d total=%d", w.region[c], n, w.total[c])
	}
	return out
}

// wantWindowed is the windowed output topic's expected final value per
// "customer@windowStartMs": windows are aligned to the epoch, as in Streams.
func (w *streamsWorld) wantWindowed() map[string]string {
	ms := w.stamp.UnixMilli()
	start := ms - ms%streamsWindow.Milliseconds()
	out := make(map[string]string, len(w.orderN))
	for c, n := range w.orderN {
		out[fmt.Sprintf("%s@%d", c, start)] = fmt.Sprintf("orders=%d total=%d", n, w.total[c])
	}
	return out
}

// TestKafkaStreamsApp runs the Streams app through three phases: a first run, an app
// restart with its state dir wiped, and a broker restart under the running app.
// streamsRig runs the apps of integration/streams (TestKafkaStreamsApp,
// TestKafkaStreamsEOS) against a broker of its own.
type streamsRig struct {
	t        testing.TB
	dir, cp  string // the Maven project and its classpath
	b        *testBroker
	adm      *kadm.Client
	base     string // unique to the test: the stem of its topic names and app id
	stateDir string // for the apps' state, under the test's temp dir
	runs     int
}

func newStreamsRig(t testing.TB) *streamsRig {
	dir := filepath.Join(mustModuleRoot(t), "integration", "streams")
	r := &streamsRig{t: t, dir: dir, cp: mavenClasspath(t, dir, "integration/streams/deps.sh")}
	r.b = startFixedPortBroker(t, "--group-initial-rebalance-delay=0")
	r.adm = r.b.Admin(t)
	r.base = topicName(t)
	r.stateDir = filepath.Join(t.TempDir(), "state")
	return r
}

// start runs the app's main class io.shardcache.streams.<class> with args,
// named name#N for the rig's Nth start.
func (r *streamsRig) start(name, class string, args ...string) *appProc {
	r.runs++
	return startApp(r.t, fmt.Sprintf("%s#%d", name, r.runs), r.dir, []string{"SHARDCACHE_BOOTSTRAP=" + r.b.KafkaAddr},
		"java", append([]string{jvmFlags[0], jvmFlags[1], jvmFlags[2], "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
			"-cp", r.cp, "io.shardcache.streams." + class}, args...)...)
}

func TestKafkaStreamsApp(t *testing.T) {
	rig := newStreamsRig(t)
	b, adm, base := rig.b, rig.adm, rig.base
	w := &streamsWorld{
		orders: base + "-orders", customers: base + "-customers", output: base + "-totals",
		windowed: base + "-windowed", stamp: time.Now(),
		region: map[string]string{}, orderN: map[string]int{}, total: map[string]int{},
		cl: b.Client(t), t: t,
	}
	// Orders are a plain log; customers and totals are compacted (the default).
	createTopic(t, adm, w.orders, 3, map[string]string{"cleanup.policy": "delete"})
	createTopic(t, adm, w.customers, 2, nil)
	createTopic(t, adm, w.output, 2, nil)
	createTopic(t, adm, w.windowed, 2, nil)
	for c := range streamsCustomers {
		w.setRegion(fmt.Sprintf("customer-%d", c), fmt.Sprintf("region-%d", c%2))
	}
	appID := "streams-" + base
	stateDir := rig.stateDir
	start := func() *appProc {
		return rig.start("streams", "App", appID, stateDir, w.orders, w.customers, w.output, w.windowed)
	}
	waitOutput := func(app *appProc, what string) {
		t.Helper()
		want, wantWindowed := w.want(), w.wantWindowed()
		waitApps(t, streamsOutputTimeout, what, []*appProc{app}, func() error {
			if err := checkFinal(t, b, w.output, want); err != nil {
				return err
			}
			return checkFinal(t, b, w.windowed, wantWindowed)
		})
	}

	// Phase 1: a first run.
	w.addOrders()
	app := start()
	waitOutput(app, "phase 1 output")
	changelog, repartition := appID+"-orders-by-customer-changelog", appID+"-orders-by-customer-repartition"
	if p := topicConfig(t, adm, changelog, "cleanup.policy"); p != "compact" {
		t.Errorf("changelog %s: cleanup.policy=%s, want compact", changelog, p)
	}
	// The window store's changelog: compacted, and its records leave after the
	// store's retention (the window) plus a day.
	windowLog := appID + "-orders-per-window-changelog"
	wantRetention := fmt.Sprint((streamsWindow + 24*time.Hour).Milliseconds())
	for name, want := range map[string]string{"cleanup.policy": "compact,delete", "retention.ms": wantRetention} {
		if got := topicConfig(t, adm, windowLog, name); got != want {
			t.Errorf("window changelog %s: %s=%s, want %s", windowLog, name, got, want)
		}
	}
	// The configs Streams creates its repartition topics with, kept as sent.
	for name, want := range map[string]string{
		"cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": "52428800", "message.timestamp.type": "CreateTime",
	} {
		if got := topicConfig(t, adm, repartition, name); got != want {
			t.Errorf("repartition topic %s: %s=%s, want %s", repartition, name, got, want)
		}
	}

	// Phase 2: the app restarts with no local state, so its aggregates come back
	// from the changelog and the regions from the customers topic. A region changes
	// meanwhile; the joins after it see the new one.
	app.Stop(t)
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	w.setRegion("customer-0", "region-moved")
	w.addOrders()
	app = start()
	waitOutput(app, "phase 2 output (after an app restart with a wiped state dir)")

	// Phase 3: the broker restarts under the running app.
	restartBroker(t, b)
	w.addOrders()
	waitOutput(app, "phase 3 output (after a broker restart)")
	checkRepartitionPurged(t, b, adm, repartition, app)
	// Compaction on write: the changelog holds one record per customer, however
	// many updates Streams wrote to it.
	var changelogRecords int
	if err := readTopic(t, b, changelog, func(*kgo.Record) { changelogRecords++ }); err != nil {
		t.Fatal(err)
	}
	if changelogRecords != streamsCustomers {
		t.Errorf("changelog %s holds %d records, want one per customer (%d)", changelog, changelogRecords, streamsCustomers)
	}
	app.Stop(t)
	if err := checkFinal(t, b, w.output, w.want()); err != nil {
		t.Fatalf("after the app stopped: %v", err)
	}
	if err := checkFinal(t, b, w.windowed, w.wantWindowed()); err != nil {
		t.Fatalf("after the app stopped: %v", err)
	}
}

// checkRepartitionPurged checks that Streams purged the records it consumed from its
// repartition topic (DeleteRecords after each commit): the log start offset of some
// partition has moved past 0.
func checkRepartitionPurged(t testing.TB, b *testBroker, adm *kadm.Client, topic string, app *appProc) {
	t.Helper()
	waitApps(t, streamsOutputTimeout, "repartition topic purged", []*appProc{app}, func() error {
		starts := startOffsets(t, adm, topic)
		var zero []string
		for p, o := range starts {
			if o == 0 {
				zero = append(zero, fmt.Sprint(p))
			}
		}
		if len(zero) == len(starts) {
			return fmt.Errorf("log start offset still 0 on partitions %s", strings.Join(zero, ","))
		}
		return nil
	})
}
