package integration

// Idle compaction (--idle-compaction, default 5s): a node that stops taking
// writes compacts its newest Pebble tables away, so its data dir comes down to
// the live records, and every key still reads its last value.

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	idleCompactionsMetric = "shardcache_shardstore_idle_compactions_total"
	idleLogTrimsMetric    = "shardcache_raft_idle_log_trims_total"
)

// TestIdleCompactionShrinksDataDir writes every key twice with a restart after
// each round (a clean stop flushes the state DB: one L0 table per round), then
// leaves the broker idle with its defaults: it compacts once, the tables
// shrink to about one version of each key, and a consumer reads every key's
// second value.
func TestIdleCompactionShrinksDataDir(t *testing.T) {
	requireLocalBroker(t)
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 2, nil)

	const keys, valueBytes = 4000, 2048
	for round := range 2 {
		cl := b.Client(t, kgo.DefaultProduceTopic(topic))
		var recs []*kgo.Record
		for k := range keys {
			v := make([]byte, valueBytes) // random: the tables' size is the values'
			_, _ = rand.Read(v)
			copy(v, fmt.Sprintf("round-%d;", round))
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("key-%05d", k)), Value: v})
		}
		produceSync(t, cl, recs...)
		cl.Close()
		b.Stop(t)
		if round == 0 {
			b.Start(t)
		}
	}
	before := tableBytes(t, b.DataDir)
	// The store counts its quiet from the open: it compacts about 5 s into
	// this start, with nothing written.
	b.Start(t)
	waitFor(t, 60*time.Second, 200*time.Millisecond, "an idle compaction", func() error {
		if n := scrapeMetric(t, b.HTTPAddr, idleCompactionsMetric); n < 1 {
			return fmt.Errorf("%s is %v", idleCompactionsMetric, n)
		}
		return nil
	})
	after := tableBytes(t, b.DataDir)
	t.Logf("state DB tables: %d bytes before the idle compaction, %d after (%d keys x %d B values)", before, after, keys, valueBytes)
	// Two versions of every value before; one after, plus little else.
	if before < 2*keys*valueBytes || after > before*3/4 {
		t.Fatalf("state DB tables: %d bytes before the idle compaction, %d after", before, after)
	}

	recs := consumeAll(t, b, topic)
	latest := latestByKey(t, recs)
	if len(recs) != keys || len(latest) != keys {
		t.Fatalf("read %d records of %d keys, want %d of each", len(recs), len(latest), keys)
	}
	for k, v := range latest {
		if v == nil || !strings.HasPrefix(*v, "round-1;") {
			t.Fatalf("key %s: value %.10q, want round 1's", k, derefOr(v))
		}
	}
}

// TestIdleLogTrimSurvivesKill: a one-node broker that goes quiet deletes its
// Raft logs up to a new snapshot (raftfsm/idletrim.go); killed with SIGKILL
// right after, it restarts with every record, though its state DB has no WAL
// and the log that wrote them is gone, and takes writes again.
func TestIdleLogTrimSurvivesKill(t *testing.T) {
	requireLocalBroker(t)
	b := startBroker(t)
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 2, nil)

	const keys = 3000
	write := func(round int) {
		t.Helper()
		cl := b.Client(t, kgo.DefaultProduceTopic(topic))
		defer cl.Close()
		var recs []*kgo.Record
		for k := range keys {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("key-%05d", k)), Value: []byte(fmt.Sprintf("round-%d;%d", round, k))})
		}
		produceSync(t, cl, recs...)
	}
	check := func(round int) {
		t.Helper()
		latest := latestByKey(t, consumeAll(t, b, topic))
		if len(latest) != keys {
			t.Fatalf("read %d keys, want %d", len(latest), keys)
		}
		for k, v := range latest {
			if v == nil || !strings.HasPrefix(*v, fmt.Sprintf("round-%d;", round)) {
				t.Fatalf("key %s: value %q, want round %d's", k, derefOr(v), round)
			}
		}
	}
	write(0)
	write(1)
	waitFor(t, 60*time.Second, 200*time.Millisecond, "an idle log trim", func() error {
		if n := scrapeMetric(t, b.HTTPAddr, idleLogTrimsMetric); n < 1 {
			return fmt.Errorf("%s is %v", idleLogTrimsMetric, n)
		}
		return nil
	})
	b.Kill(t)
	b.Start(t)
	check(1)
	write(2)
	check(2)
}

func derefOr(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// tableBytes sums the Pebble tables (*.sst) of the state DB under dataDir.
func tableBytes(t testing.TB, dataDir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(filepath.Join(dataDir, "store"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".sst" {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
