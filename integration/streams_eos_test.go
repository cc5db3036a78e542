//go:build unix

package integration

// The Kafka Streams app of integration/streams run with
// processing.guarantee=exactly_once_v2 (EosApp): orders rekeyed by customer (a
// repartition topic written inside each transaction) and counted per customer into a
// KTable (a compacted changelog, read back read_committed on restore). The count is
// not idempotent, so an order processed twice shows. The JVM is killed with SIGKILL
// while a batch of orders is half processed and a transaction with output records is
// open, twice: once restarted on its state dir
// (its successor has the same transactional id and fences the open transaction:
// InitProducerId on an Ongoing transaction) and once with the state dir wiped (a new
// transactional id: the broker aborts the open transaction at its timeout). Both
// times Streams restores the store from the compacted changelog read_committed (a
// task closed dirty under EOS has no checkpoint). A
// read_committed reader of the output must see each customer's counts go 1, 2, 3, ...
// with no repeat and no gap, ending at the exact totals.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// eosCustomers and eosOrdersPerBatch size a batch of input: every customer gets
	// eosOrdersPerBatch orders.
	eosCustomers      = 4
	eosOrdersPerBatch = 100
	// eosDelayMs slows the app down per order (EosApp's DELAY_MS), so that a batch
	// takes eosCustomers*eosOrdersPerBatch*eosDelayMs (2 s) at least and a kill
	// lands while it is half processed.
	eosDelayMs = 5
)

// killOutcome is how one try of TestKafkaStreamsEOS's kill in a transaction went.
type killOutcome int

const (
	batchDone     killOutcome = iota // the batch completed before an open transaction was seen
	killedBetween                    // killed, but no transaction was open at the kill
	killedInTxn                      // killed with a transaction open
)

// eosWorld is the input the test has written and the output it expects.
type eosWorld struct {
	orders, output string
	count, total   map[string]int
	nextID         int
	cl             *kgo.Client
	t              testing.TB
}

// addBatch writes eosOrdersPerBatch new orders for every customer, interleaved.
func (w *eosWorld) addBatch() {
	var recs []*kgo.Record
	for range eosOrdersPerBatch {
		for c := range eosCustomers {
			customer := fmt.Sprintf("customer-%d", c)
			w.nextID++
			amount := 7*w.nextID%50 + 1
			w.count[customer]++
			w.total[customer] += amount
			recs = append(recs, kv(w.orders, fmt.Sprintf("order-%05d", w.nextID), strp(fmt.Sprintf("%s,%d", customer, amount))))
		}
	}
	produceSync(w.t, w.cl, recs...)
}

func (w *eosWorld) orderCount() int {
	n := 0
	for _, c := range w.count {
		n += c
	}
	return n
}

// checkHistory checks the output's committed records: per customer, counts 1, 2, ...
// with no repeat or gap, each total the previous plus one order, the last equal to
// what was written when complete is set. It returns how many output records it read.
func (w *eosWorld) checkHistory(recs []*kgo.Record, complete bool) (int, error) {
	last := map[string][2]int{}
	for _, r := range recs {
		var n, total int
		if _, err := fmt.Sscanf(string(r.Value), "orders=%d total=%d", &n, &total); err != nil {
			return 0, fmt.Errorf("output %s=%q at %d/%d: %v", r.Key, r.Value, r.Partition, r.Offset, err)
		}
		prev := last[string(r.Key)]
		if n != prev[0]+1 || total <= prev[1] {
			return 0, fmt.Errorf("output for %s at %d/%d: %q after orders=%d total=%d: an order counted twice or lost",
				r.Key, r.Partition, r.Offset, r.Value, prev[0], prev[1])
		}
		last[string(r.Key)] = [2]int{n, total}
	}
	if complete {
		for c, n := range w.count {
			if got := last[c]; got != [2]int{n, w.total[c]} {
				return 0, fmt.Errorf("%s: orders=%d total=%d, want orders=%d total=%d", c, got[0], got[1], n, w.total[c])
			}
		}
	}
	return len(recs), nil
}

// readCommittedAttempt bounds one readCommittedAll.
const readCommittedAttempt = 10 * time.Second

// readCommittedAll reads every partition of topic with a read_committed consumer up
// to its last stable offset, keeping control records to know where it stands, and
// returns the data records in partition and offset order. The offset just below the
// last stable offset must be a committed record or a marker: while it is a record
// of an aborted transaction (deleted at the abort), the read fails after
// readCommittedAttempt. Errors are returned, so a wait loop retries them.
func readCommittedAll(t testing.TB, newClient clientFunc, topic string) ([]*kgo.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readCommittedAttempt)
	defer cancel()
	admCl := newClient()
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("last stable offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset - 1
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	cl := newClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	byPartition := map[int32][]*kgo.Record{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read_committed %s: partitions %v not read up to their last stable offsets within %v", topic, want, readCommittedAttempt)
		}
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read_committed %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				byPartition[r.Partition] = append(byPartition[r.Partition], r)
			}
			if w, ok := want[r.Partition]; ok && r.Offset >= w {
				delete(want, r.Partition)
			}
		})
	}
	var out []*kgo.Record
	for p := range int32(len(ends[topic])) {
		out = append(out, byPartition[p]...)
	}
	return out, nil
}

// TestKafkaStreamsEOS runs EosApp through a first batch, a kill -9 in the middle of
// the second batch with a restart on the same state dir, and a kill -9 in the middle
// of the third with the state dir wiped.
func TestKafkaStreamsEOS(t *testing.T) {
	rig := newStreamsRig(t)
	b, adm, base := rig.b, rig.adm, rig.base
	w := &eosWorld{orders: base + "-orders", output: base + "-counts",
		count: map[string]int{}, total: map[string]int{}, cl: b.Client(t), t: t}
	// Both are plain logs, so the output keeps every update for the history check.
	createTopic(t, adm, w.orders, 2, map[string]string{"cleanup.policy": "delete"})
	createTopic(t, adm, w.output, 2, map[string]string{"cleanup.policy": "delete"})
	appID := "eos-" + base
	stateDir := rig.stateDir
	start := func() *appProc {
		return rig.start("eos", "EosApp", appID, stateDir, w.orders, w.output, strconv.Itoa(eosDelayMs))
	}
	// history reads the committed output and checks it; complete also wants the
	// final totals.
	history := func(complete bool) (int, error) {
		recs, err := readCommittedAll(t, brokerClients(t, b), w.output)
		if err != nil {
			return 0, err
		}
		return w.checkHistory(recs, complete)
	}
	waitComplete := func(app *appProc, what string) {
		t.Helper()
		waitApps(t, streamsOutputTimeout, what, []*appProc{app}, func() error {
			_, err := history(true)
			return err
		})
	}
	// outputOffsets sums the output's last stable offsets over its partitions,
	// and reports how many offsets lie past them: those of an open transaction
	// (0 when none is open). Two ListOffsets requests, so a wait loop can look
	// often; reading the output itself takes longer than a batch on a loaded
	// machine.
	outputOffsets := func() (stable, open int64, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		lso, err := adm.ListCommittedOffsets(ctx, w.output)
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return 0, 0, err
		}
		hw, err := adm.ListEndOffsets(ctx, w.output)
		if err == nil {
			err = hw.Error()
		}
		if err != nil {
			return 0, 0, err
		}
		hw.Each(func(o kadm.ListedOffset) {
			if l, ok := lso.Lookup(w.output, o.Partition); ok {
				stable += l.Offset
				open += o.Offset - l.Offset
			}
		})
		return stable, open, nil
	}
	// killMidBatch writes a batch and kills the app with SIGKILL once some of the
	// batch's output is committed and a transaction with output records is open.
	// It then checks that the batch was only partly processed. The app commits
	// every 200 ms and a batch takes about 2 s; the wait looks at the output's
	// offsets, but on a loaded machine it may still miss the batch:
	//   - batchDone: the batch was fully processed before an open transaction
	//     was seen; the app was not killed.
	//   - killedBetween: the transaction seen open committed before the kill.
	//   - killedInTxn: the kill left a transaction open, as wanted.
	killMidBatch := func(app *appProc, what string) killOutcome {
		t.Helper()
		// The app is idle between batches, its output all committed, so any
		// rise of the last stable offsets is a commit of this batch's output.
		stableBefore, _, err := outputOffsets()
		if err != nil {
			t.Fatal(err)
		}
		w.addBatch()
		done := false
		waitApps(t, streamsOutputTimeout, what+": output of the batch committed and a transaction open", []*appProc{app}, func() error {
			stable, open, err := outputOffsets()
			if err != nil {
				return err
			}
			if stable == stableBefore {
				return errors.New("none of the batch's output committed")
			}
			if open > 0 {
				return nil
			}
			// None open: between two transactions, or the batch is done.
			n, err := history(false)
			if err != nil {
				return err
			}
			if n >= w.orderCount() {
				done = true
				return nil
			}
			return errors.New("no transaction open on the output")
		})
		if done {
			return batchDone
		}
		app.Kill(t)
		// Look at once: the broker aborts the killed transaction at its timeout.
		_, open, err := outputOffsets()
		if err != nil {
			t.Fatal(err)
		}
		n, err := history(false)
		if err != nil {
			t.Fatalf("%s: after the kill: %v", what, err)
		}
		if n >= w.orderCount() {
			t.Fatalf("%s: the batch was fully processed (%d outputs) before the kill; raise eosDelayMs", what, n)
		}
		if open == 0 {
			return killedBetween
		}
		t.Logf("%s: killed after %d of %d outputs, with a transaction open over %d offsets of the output", what, n, w.orderCount(), open)
		return killedInTxn
	}
	// killInTransaction repeats killMidBatch with a new batch each time until a
	// kill lands with a transaction open, at most 4 times. After a kill between
	// transactions it restarts the app and waits for the batch to complete
	// first.
	killInTransaction := func(app *appProc, what string) {
		t.Helper()
		for attempt := 1; ; attempt++ {
			outcome := killMidBatch(app, what)
			if outcome == killedInTxn {
				return
			}
			if attempt == 4 {
				t.Fatalf("%s: %d tries all missed an open transaction", what, attempt)
			}
			if outcome == batchDone {
				t.Logf("%s: the batch completed before an open transaction was seen (attempt %d); trying again", what, attempt)
				continue
			}
			t.Logf("%s: the kill landed between transactions (attempt %d); restarting to try again", what, attempt)
			app = start()
			waitComplete(app, what+": the batch completed before another try")
		}
	}

	// Batch 1: a first run.
	w.addBatch()
	app := start()
	waitComplete(app, "batch 1 output")
	changelog := appID + "-order-counts-changelog"
	if p := topicConfig(t, adm, changelog, "cleanup.policy"); p != "compact" {
		t.Errorf("changelog %s: cleanup.policy=%s, want compact", changelog, p)
	}

	// Batch 2: kill -9 half way; the restart on the same state dir has the same
	// process id, hence the same transactional id, and fences the open transaction.
	killInTransaction(app, "batch 2")
	app = start()
	waitComplete(app, "batch 2 output (after kill -9 and a restart on the same state dir)")

	// Batch 3: kill -9 half way; the restart with no state dir gets a new process id:
	// the killed transaction is aborted at its timeout, and the store is restored
	// from the compacted changelog read_committed.
	killInTransaction(app, "batch 3")
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	app = start()
	waitComplete(app, "batch 3 output (after kill -9 and a restart with a wiped state dir)")

	app.Stop(t)
	n, err := history(true)
	if err != nil {
		t.Fatalf("after the app stopped: %v", err)
	}
	if n != w.orderCount() {
		t.Fatalf("output holds %d committed updates, want one per order (%d)", n, w.orderCount())
	}
	// The changelog is compacted on write and read committed: one record per customer.
	recs, err := readCommittedAll(t, brokerClients(t, b), changelog)
	if err != nil {
		t.Fatal(err)
	}
	if keys := countKeys(recs); len(keys) != eosCustomers || len(recs) != eosCustomers {
		t.Errorf("changelog %s: %d committed records over %d keys, want one per customer (%d): %s",
			changelog, len(recs), len(keys), eosCustomers, strings.Join(strings.Fields(describe(recs)), " "))
	}
}
