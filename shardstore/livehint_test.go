package shardstore

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

func TestLiveHint(t *testing.T) {
	tests := []struct {
		name     string
		logStart int64
		batches  [][]int64
		learn    int64 // learned after the batches (0: nothing)
		want     int64
	}{
		{name: "Nothing", want: 0},
		{name: "InOrder", batches: [][]int64{{0, 1, 2}, {3, 4}}, want: 5},
		{name: "Gap", batches: [][]int64{{0, 1, 3, 4}}, want: 2},
		{name: "OutOfOrderThenFilled", batches: [][]int64{{2, 3, 70, 1}, {0}, {4}}, want: 5},
		{name: "AcrossWords", batches: [][]int64{slices.Collect(func(yield func(int64) bool) {
			for o := int64(200); o >= 1; o-- { // 200 runs: within maxDeadRuns
				if !yield(o) {
					return
				}
			}
		}), {0}}, want: 201},
		{name: "BeyondWindowDropped", batches: [][]int64{{liveHintWindow + 5, 1}, {0}}, want: 2},
		{name: "LogStart", logStart: 10, batches: [][]int64{{3, 11, 10}}, want: 12},
		{name: "LearnJoinsBitmap", batches: [][]int64{{5, 6, 8}}, learn: 5, want: 7},
		{name: "LearnNeverLowers", batches: [][]int64{{0, 1, 2}}, learn: 1, want: 3},
		{name: "RunAcrossTheHint", batches: [][]int64{{5, 6, 7}, {2, 3, 4}, {0, 1}}, want: 8},
		{name: "RunPastTheWindow", batches: [][]int64{{10, 11}, {liveHintWindow - 1, liveHintWindow, liveHintWindow + 1}, {0}}, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h liveHint
			for _, b := range tc.batches {
				var runs deadRuns
				for _, o := range b {
					runs.add(o)
				}
				h.deleted(tc.logStart, runs)
			}
			if tc.learn > 0 {
				h.learn(tc.learn)
			}
			if h.from != tc.want {
				t.Fatalf("hint %d, want %d", h.from, tc.want)
			}
			gen := h.gen
			h.reset()
			if h.from != 0 || h.dead != nil || h.gen != gen+1 {
				t.Fatalf("after reset: %+v", h)
			}
		})
	}
}

// TestDeadRuns: a batch's deletions merge into runs, and past maxDeadRuns
// runs the rest are dropped, not grown without bound.
func TestDeadRuns(t *testing.T) {
	var d deadRuns
	for o := int64(100); o < 200; o++ {
		d.add(o)
	}
	if len(d) != 1 || d[0].lo != 100 || d[0].hi != 200 {
		t.Fatalf("one run expected: %v", d)
	}
	for o := int64(0); o < 4*maxDeadRuns; o += 2 {
		d.add(1000 + o)
	}
	if len(d) != maxDeadRuns {
		t.Fatalf("%d runs, want at most %d", len(d), maxDeadRuns)
	}
}

// TestReadSkipsDeadPrefix writes every key of a compacted shard in turn, so
// the replaced versions form a dead prefix, and checks that Read answers from
// the first live record the same records a scan would, with the hint at the
// end of the prefix: learned from the writes, from reads after a restart, and
// kept where held records (min.compaction.lag.ms) or a later live key stop it.
func TestReadSkipsDeadPrefix(t *testing.T) {
	const keys, versions = 300, 4
	st := newSnapStore(t)
	st.create(sentGroup, 1)
	for v := range versions {
		var recs []Record
		for k := range keys {
			recs = append(recs, kv(fmt.Sprintf("k%03d", k), fmt.Sprintf("v%d", v)))
		}
		// Two appends per version, one with a key repeated inside it.
		st.append(1, compact, NoProducer, recs[:keys/2]...)
		st.append(1, compact, NoProducer, append([]Record{recs[keys-1]}, recs[keys/2:]...)...)
	}
	hw := int64(versions * (keys + 1))
	firstLive := hw - keys - 1 // the last version's second append starts with a collapsed record
	hint := func() int64 {
		sh := st.s.shard(1)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return sh.hint.from
	}
	check := func(t *testing.T, wantHint int64) {
		t.Helper()
		for _, from := range []int64{0, firstLive - 1, firstLive, firstLive + 7} {
			recs, err := st.s.Read(1, from, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := keys - int(max(from-firstLive, 0))
			if len(recs) != want || firstOffset(recs) != max(from, firstLive) || !bytes.Equal(recs[0].Value, []byte(fmt.Sprintf("v%d", versions-1))) {
				t.Fatalf("read from %d: %d records from offset %d, want %d from %d", from, len(recs), firstOffset(recs), want, max(from, firstLive))
			}
		}
		if got := hint(); got != wantHint {
			t.Fatalf("hint %d, want %d", got, wantHint)
		}
	}
	if got := hint(); got != firstLive {
		t.Fatalf("hint after the writes %d, want %d", got, firstLive)
	}
	check(t, firstLive)

	// A restart forgets the hint; the first read from the log start learns it.
	st.reopen()
	if got := hint(); got != 0 {
		t.Fatalf("hint after reopen %d", got)
	}
	recs, err := st.s.Read(1, 5, 0, 1)
	if err != nil || firstOffset(recs) != firstLive || len(recs) != 1 || hint() != 0 {
		t.Fatalf("read from 5: %v %v, hint %d: a read not from the hint teaches nothing", recs, err, hint())
	}
	check(t, firstLive)

	// A record held by min.compaction.lag.ms stays readable: the hint stops at it.
	lag := AppendOptions{Policy: PolicyCompact, AppendTimeMs: 100, MinCompactionLagMs: 1000}
	st.append(1, lag, NoProducer, kv("k000", "held"))
	st.append(1, lag, NoProducer, kv("k000", "newer"))
	if got := hint(); got != firstLive {
		t.Fatalf("hint %d moved past a held record at %d", got, firstLive)
	}
	recs, err = st.s.Read(1, 0, 0, 0)
	if err != nil || len(recs) != keys+2 || recs[0].Offset != firstLive {
		t.Fatalf("read %d records from %d (%v), want %d from %d", len(recs), firstOffset(recs), err, keys+2, firstLive)
	}
}

// TestReadHintResetByIngest: a snapshot ingest replaces a shard's records,
// possibly at offsets below the old hint; reads after it start from the log
// start again.
func TestReadHintResetByIngest(t *testing.T) {
	snd, rcv := newSnapStore(t), newSnapStore(t)
	fillSender(snd)
	rcv.create(sentGroup, 1)
	for v := range 50 {
		rcv.append(1, compact, NoProducer, kv("a", fmt.Sprint(v)), kv("b", fmt.Sprint(v)))
	}
	if recs := mustRead(t, rcv.s, 1); len(recs) != 2 || recs[0].Offset != 98 {
		t.Fatalf("receiver before the ingest: %v", recs)
	}
	want := mustRead(t, snd.s, 1)
	if _, err := rcv.s.Ingest(bytes.NewReader(export(t, snd.s, sentGroup, nil)), ingestOpts(sentGroup, nil, 0)); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	got := mustRead(t, rcv.s, 1)
	if len(got) != len(want) || len(want) == 0 || firstOffset(got) != firstOffset(want) {
		t.Fatalf("after the ingest %d records from %d, the sender has %d from %d", len(got), firstOffset(got), len(want), firstOffset(want))
	}
}

func mustRead(tb testing.TB, s *Store, id ShardID) []Record {
	tb.Helper()
	recs, err := s.Read(id, 0, 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// firstOffset is the offset of recs' first record, -1 without one.
func firstOffset(recs []Record) int64 {
	if len(recs) == 0 {
		return -1
	}
	return recs[0].Offset
}
