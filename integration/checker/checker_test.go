package checker

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Builders for hand-made histories on topic "t", partition 0, key "k".

func ok(producer string, offset int64, v string) Send {
	return Send{Producer: producer, Topic: "t", Key: []byte("k"), Value: []byte(v), Outcome: OK, Offset: offset}
}

func failed(producer, v string) Send {
	return Send{Producer: producer, Topic: "t", Key: []byte("k"), Value: []byte(v), Outcome: Fail}
}

func info(producer, v string) Send {
	return Send{Producer: producer, Topic: "t", Key: []byte("k"), Value: []byte(v), Outcome: Info}
}

func poll(consumer string, offset int64, v string) Poll {
	return Poll{Consumer: consumer, Topic: "t", Offset: offset, Key: []byte("k"), Value: []byte(v)}
}

func drained(consumer string, offset int64, v string) Poll {
	p := poll(consumer, offset, v)
	p.Drain = true
	return p
}

// polls reads values from offset 0 on, skipping "" entries.
func polls(h *History, consumer string, drain bool, values ...string) {
	for i, v := range values {
		if v == "" {
			continue
		}
		p := poll(consumer, int64(i), v)
		p.Drain = drain
		h.AddPoll(p)
	}
}

// abc is a clean base: a, b, c acked at 0, 1, 2 by p1.
func abc(h *History) {
	h.AddSend(ok("p1", 0, "a"))
	h.AddSend(ok("p1", 1, "b"))
	h.AddSend(ok("p1", 2, "c"))
}

// at returns base+ms milliseconds, for hand-made real-time orders.
var base = time.Now()

func at(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

func TestCheckDeleteTopic(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		build func(h *History)
		want  map[Kind]int // exact counts; empty means valid
	}{
		{"clean", Options{}, func(h *History) {
			abc(h)
			h.AddSend(failed("p1", "never"))
			h.AddSend(info("p1", "maybe")) // unknown and never read: fine
			polls(h, "c1", false, "a", "b", "c")
			polls(h, "d1", true, "a", "b", "c")
		}, nil},
		{"lost write: a later offset was read", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "", "c")
			polls(h, "d1", true, "a", "", "c")
		}, map[Kind]int{LostWrite: 1, PollSkip: 2}},
		{"lost write: read, then missing from a drain that read past it", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "b", "c")
			polls(h, "d1", true, "a", "b", "c")
			polls(h, "d2", true, "a", "", "c")
		}, map[Kind]int{LostWrite: 1, PollSkip: 1}},
		{"unseen: the drain stopped short", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "b")
			polls(h, "d1", true, "a", "b")
		}, map[Kind]int{Unseen: 1}},
		{"unseen: a drain assigned the partition read nothing", Options{}, func(h *History) {
			abc(h)
			polls(h, "d1", true, "a", "b", "c")
			h.AddAssign(Assign{Consumer: "d2", Topic: "t", Drain: true})
		}, map[Kind]int{Unseen: 3}},
		{"unseen: no drain", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "b", "c")
		}, map[Kind]int{Unseen: 3}},
		{"inconsistent offsets: two values at one offset", Options{}, func(h *History) {
			abc(h)
			h.AddSend(info("p2", "x"))
			polls(h, "c1", false, "a", "b", "c")
			polls(h, "d1", true, "a", "b", "c")
			h.AddPoll(poll("c2", 1, "x"))
		}, map[Kind]int{InconsistentOffsets: 1}},
		{"inconsistent offsets: read away from the acked offset", Options{}, func(h *History) {
			h.AddSend(ok("p1", 0, "a"))
			h.AddSend(ok("p2", 1, "b"))
			polls(h, "d1", true, "b", "a")
		}, map[Kind]int{InconsistentOffsets: 4}}, // offsets 0 and 1, values a and b
		{"duplicate", Options{}, func(h *History) {
			abc(h)
			polls(h, "d1", true, "a", "b", "c", "a")
		}, map[Kind]int{Duplicate: 1}},
		{"G1a: a failed send was read", Options{}, func(h *History) {
			abc(h)
			h.AddSend(failed("p2", "x"))
			polls(h, "c1", false, "a", "b", "c", "x")
			polls(h, "d1", true, "a", "b", "c", "x")
		}, map[Kind]int{AbortedRead: 1}},
		{"unknown value", Options{}, func(h *History) {
			abc(h)
			polls(h, "d1", true, "a", "b", "c", "zzz")
		}, map[Kind]int{UnknownValue: 1}},
		{"offset gap", Options{}, func(h *History) {
			h.AddSend(ok("p1", 0, "a"))
			h.AddSend(ok("p1", 1, "b"))
			h.AddSend(info("p1", "c")) // landed at 2, never read
			h.AddSend(ok("p1", 3, "d"))
			polls(h, "c1", false, "a", "b", "", "d")
			polls(h, "d1", true, "a", "b", "", "d")
		}, map[Kind]int{OffsetGap: 1, PollSkip: 2}},
		{"poll skip", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "", "c")
			polls(h, "d1", true, "a", "b", "c")
		}, map[Kind]int{PollSkip: 1}},
		{"nonmonotonic poll", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "b", "c")
			h.AddPoll(poll("c1", 1, "b"))
			polls(h, "d1", true, "a", "b", "c")
		}, map[Kind]int{NonmonotonicPoll: 1}},
		{"assign allows a rewind", Options{}, func(h *History) {
			abc(h)
			polls(h, "c1", false, "a", "b", "c")
			h.AddAssign(Assign{Consumer: "c1", Topic: "t"})
			h.AddPoll(poll("c1", 1, "b"))
			polls(h, "d1", true, "a", "b", "c")
		}, nil},
		{"nonmonotonic send", Options{}, func(h *History) {
			h.AddSend(ok("p1", 1, "a"))
			h.AddSend(ok("p1", 0, "b"))
			polls(h, "d1", true, "b", "a")
		}, map[Kind]int{NonmonotonicSend: 1}},
		{"sends of different producers interleave freely", Options{}, func(h *History) {
			h.AddSend(ok("p1", 1, "a"))
			h.AddSend(ok("p2", 0, "b"))
			polls(h, "d1", true, "b", "a")
		}, nil},
		{"commit goes back", Options{}, func(h *History) {
			h.AddCommit(Commit{Group: "g", Topic: "t", Offset: 5, Start: at(0), End: at(1)})
			h.AddCommit(Commit{Group: "g", Topic: "t", Offset: 3, Start: at(2), End: at(3)})
			h.AddCommit(Commit{Group: "g2", Topic: "t", Offset: 1, Start: at(2), End: at(3)}) // another group
		}, map[Kind]int{NonmonotonicCommit: 1}},
		{"overlapping commit observations never conflict", Options{}, func(h *History) {
			h.AddCommit(Commit{Group: "g", Topic: "t", Offset: 5, Start: at(0), End: at(3)})
			h.AddCommit(Commit{Group: "g", Topic: "t", Offset: 3, Start: at(1), End: at(2)})
		}, nil},
		{"list offsets goes back", Options{}, func(h *History) {
			h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Offset: 7, Start: at(0), End: at(1)})
			h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Offset: 6, Start: at(2), End: at(3)})
			h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Offset: 5, Start: at(4), End: at(5)})
		}, map[Kind]int{NonmonotonicListOffsets: 2}},
		{"list offsets misses an acknowledged send", Options{}, func(h *History) {
			s := ok("p1", 0, "a")
			s.Start, s.End = at(0), at(1)
			h.AddSend(s)
			polls(h, "d1", true, "a")
			h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Offset: 0, Start: at(2), End: at(3)})
			// Overlapping the send, 0 is possible.
			h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Partition: 0, Offset: 0, Start: at(0), End: at(3)})
		}, map[Kind]int{StaleListOffsets: 1}},
		{"no fault took effect", Options{MinLeaderChanges: 1}, func(h *History) {
			h.AddLeaderChange(LeaderChange{Topic: "t", From: 1, To: 1})
		}, map[Kind]int{NoFault: 1}},
		{"a leader change", Options{MinLeaderChanges: 1}, func(h *History) {
			h.AddLeaderChange(LeaderChange{Topic: "t", From: 1, To: 2})
		}, nil},
		{"invalid history", Options{}, func(h *History) {
			h.AddSend(ok("p1", 0, "a"))
			h.AddSend(info("p2", "a"))
			id := h.BeginSend(ok("p1", 0, "b"))
			h.EndSend(id, OK, 1)
			h.EndSend(id, OK, 1)
			h.AddSend(ok("p1", -1, "c"))
			polls(h, "d1", true, "a", "b")
		}, map[Kind]int{InvalidHistory: 3}},
		{"a send never ended is unknown", Options{}, func(h *History) {
			abc(h)
			h.BeginSend(ok("p1", 0, "x"))
			polls(h, "d1", true, "a", "b", "c", "x")
		}, nil},
		{"begun sends keep their order", Options{}, func(h *History) {
			a := h.BeginSend(Send{Producer: "p1", Topic: "t", Value: []byte("a")})
			b := h.BeginSend(Send{Producer: "p1", Topic: "t", Value: []byte("b")})
			h.EndSend(b, OK, 0) // b acknowledged first, at a lower offset
			h.EndSend(a, OK, 1)
			polls(h, "d1", true, "b", "a")
		}, map[Kind]int{NonmonotonicSend: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h History
			tt.build(&h)
			r := Check(&h, tt.opts)
			assertCounts(t, r, tt.want)
		})
	}
}

func TestCheckCompactedTopic(t *testing.T) {
	compacted := Options{Compacted: map[string]bool{"t": true}}
	send := func(outcome Outcome, key string, offset int64, v []byte) Send {
		return Send{Producer: "p1", Topic: "t", Key: []byte(key), Value: v, Outcome: outcome, Offset: offset}
	}
	read := func(consumer string, key string, offset int64, v []byte) Poll {
		return Poll{Consumer: consumer, Topic: "t", Key: []byte(key), Offset: offset, Value: v, Drain: true}
	}
	b := func(s string) []byte { return []byte(s) }
	// k1: v1@0, v2@1; k2: w1@2.
	base := func(h *History) {
		h.AddSend(send(OK, "k1", 0, b("v1")))
		h.AddSend(send(OK, "k1", 1, b("v2")))
		h.AddSend(send(OK, "k2", 2, b("w1")))
	}
	tests := []struct {
		name  string
		build func(h *History)
		want  map[Kind]int
	}{
		{"compacted drain", func(h *History) {
			base(h)
			h.AddPoll(read("d1", "k1", 1, b("v2")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
		}, nil},
		{"uncompacted drain", func(h *History) {
			base(h)
			h.AddPoll(read("d1", "k1", 0, b("v1")))
			h.AddPoll(read("d1", "k1", 1, b("v2")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
		}, nil},
		{"stale final value", func(h *History) {
			base(h)
			h.AddPoll(read("d1", "k1", 0, b("v1")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
		}, map[Kind]int{WrongFinalValue: 1}},
		{"key missing", func(h *History) {
			base(h)
			h.AddPoll(read("d1", "k1", 1, b("v2")))
		}, map[Kind]int{WrongFinalValue: 1}},
		{"one of two drains diverges", func(h *History) {
			base(h)
			h.AddPoll(read("d1", "k1", 1, b("v2")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
			h.AddPoll(read("d2", "k1", 0, b("v1")))
			h.AddPoll(read("d2", "k2", 2, b("w1")))
		}, map[Kind]int{WrongFinalValue: 1}},
		{"no drain", func(h *History) {
			base(h)
		}, map[Kind]int{WrongFinalValue: 2}},
		{"a later unknown-outcome write may win", func(h *History) {
			base(h)
			h.AddSend(send(Info, "k1", 0, b("v3")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
			h.AddPoll(read("d1", "k1", 3, b("v3")))
		}, nil},
		{"an unknown-outcome write read before the last ack may not", func(h *History) {
			h.AddSend(send(Info, "k1", 0, b("v0")))
			h.AddSend(send(OK, "k1", 1, b("v1")))
			h.AddPoll(Poll{Consumer: "c1", Topic: "t", Key: b("k1"), Offset: 0, Value: b("v0")})
			h.AddPoll(read("d1", "k1", 0, b("v0")))
		}, map[Kind]int{WrongFinalValue: 1}},
		{"a tombstone below the last ack is stale", func(h *History) {
			h.AddSend(send(OK, "k1", 0, b("v1")))
			h.AddSend(send(Info, "k1", 0, nil))
			h.AddSend(send(OK, "k1", 2, b("v2")))
			h.AddPoll(read("d1", "k1", 1, nil))
		}, map[Kind]int{WrongFinalValue: 1}},
		{"a failed write never wins", func(h *History) {
			base(h)
			h.AddSend(send(Fail, "k1", 0, b("bad")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
			h.AddPoll(read("d1", "k1", 3, b("bad")))
		}, map[Kind]int{WrongFinalValue: 1, AbortedRead: 1}},
		{"tombstone last: key absent", func(h *History) {
			base(h)
			h.AddSend(send(OK, "k1", 3, nil))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
		}, nil},
		{"tombstone last: tombstone still there", func(h *History) {
			base(h)
			h.AddSend(send(OK, "k1", 3, nil))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
			h.AddPoll(read("d1", "k1", 3, nil))
		}, nil},
		{"tombstone last: older value resurrected", func(h *History) {
			base(h)
			h.AddSend(send(OK, "k1", 3, nil))
			h.AddPoll(read("d1", "k1", 1, b("v2")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
		}, map[Kind]int{WrongFinalValue: 1}},
		{"unknown-outcome tombstone may win", func(h *History) {
			base(h)
			h.AddSend(send(Info, "k1", 0, nil))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
		}, nil},
		{"only unknown-outcome writes: absent or any of them", func(h *History) {
			h.AddSend(send(Info, "k1", 0, b("x")))
			h.AddSend(send(Info, "k2", 0, b("y")))
			h.AddPoll(read("d1", "k2", 0, b("y")))
		}, nil},
		{"skips are normal, going back is not", func(h *History) {
			base(h)
			h.AddPoll(read("d1", "k1", 1, b("v2")))
			h.AddPoll(read("d1", "k2", 2, b("w1")))
			h.AddPoll(read("d1", "k1", 1, b("v2")))
		}, map[Kind]int{NonmonotonicPoll: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h History
			tt.build(&h)
			assertCounts(t, Check(&h, compacted), tt.want)
		})
	}
}

func assertCounts(t testing.TB, r Result, want map[Kind]int) {
	t.Helper()
	if want == nil {
		want = map[Kind]int{}
	}
	if !maps.Equal(r.Counts, want) || r.Valid != (len(want) == 0) {
		t.Fatalf("counts %v, want %v; result:\n%s", r.Counts, want, r)
	}
	for k, n := range r.Counts {
		if got := len(r.Examples[k]); got != min(n, 5) {
			t.Errorf("%s: %d examples for %d anomalies", k, got, n)
		}
	}
}

func TestResultString(t *testing.T) {
	var h History
	for i := range 8 {
		h.AddSend(ok("p1", int64(i), fmt.Sprint("v", i)))
	}
	h.AddPoll(drained("d1", 0, "v0"))
	r := Check(&h, Options{MaxExamples: 2})
	s := r.String()
	for _, want := range []string{
		"INVALID",
		"sends: 8 ok, 0 fail, 0 info; polls: 1 (1 in drains)",
		"unseen: 7",
		`unseen t/0@1: value "v1" acknowledged to producer p1, not reached by drains d1 (stopped at 0)`,
		"... and 5 more",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	if len(r.Examples[Unseen]) != 2 {
		t.Errorf("%d examples kept, want MaxExamples=2", len(r.Examples[Unseen]))
	}

	var clean History
	if s := Check(&clean, Options{}).String(); !strings.HasPrefix(s, "valid\n") {
		t.Errorf("clean history: %q", s)
	}
}

func TestHistoryCopiesBytes(t *testing.T) {
	var h History
	v := []byte("a")
	h.AddSend(Send{Producer: "p", Topic: "t", Value: v, Outcome: OK})
	p := Poll{Consumer: "d", Topic: "t", Value: v, Drain: true}
	h.AddPoll(p)
	v[0] = 'z' // the caller reuses its buffer
	if r := Check(&h, Options{}); !r.Valid {
		t.Fatalf("the history kept the caller's buffer:\n%s", r)
	}
}

// memBroker is a toy partitioned log for the concurrent test: appends and
// reads under one lock, as a linearizable broker would behave.
type memBroker struct {
	mu        sync.Mutex
	logs      [][]string
	committed map[string]int64
}

func (b *memBroker) append(partition int, v string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logs[partition] = append(b.logs[partition], v)
	return int64(len(b.logs[partition]) - 1)
}

func (b *memBroker) read(partition int, from int64) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.logs[partition][from:])
}

func (b *memBroker) latest(partition int) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.logs[partition]))
}

func (b *memBroker) commit(group string, offset int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.committed[group] = max(b.committed[group], offset)
}

func (b *memBroker) fetchCommitted(group string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.committed[group]
}

func TestConcurrentCleanHistory(t *testing.T) {
	const partitions, producers, sendsEach = 3, 6, 150
	b := &memBroker{logs: make([][]string, partitions), committed: map[string]int64{}}
	var h History
	var wg sync.WaitGroup
	producing := make(chan struct{})

	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(p), 1))
			name := fmt.Sprint("p", p)
			for i := range sendsEach {
				part := r.IntN(partitions)
				v := fmt.Sprintf("%s-%d", name, i)
				id := h.BeginSend(Send{Producer: name, Topic: "t", Partition: int32(part), Value: []byte(v)})
				switch x := r.IntN(10); {
				case x < 7:
					h.EndSend(id, OK, b.append(part, v))
				case x < 8:
					h.EndSend(id, Fail, 0)
				case x < 9:
					b.append(part, v) // written, but the producer timed out
					h.EndSend(id, Info, 0)
				default:
					h.EndSend(id, Info, 0) // timed out, never written
				}
				time.Sleep(50 * time.Microsecond) // let the observers interleave
			}
		}()
	}
	var observers sync.WaitGroup
	for part := range partitions {
		// A consumer per partition reads while producers write, commits its
		// position, and restarts from the committed offset now and then.
		observers.Add(1)
		go func() {
			defer observers.Done()
			consumer, group := fmt.Sprint("c", part), fmt.Sprint("g", part)
			var pos int64
			for round := 0; round < 2000; round++ {
				select {
				case <-producing:
					return
				case <-time.After(100 * time.Microsecond): // pace the loop
				}
				for _, v := range b.read(part, pos) {
					h.AddPoll(Poll{Consumer: consumer, Topic: "t", Partition: int32(part), Offset: pos, Value: []byte(v)})
					pos++
				}
				start := time.Now()
				b.commit(group, pos)
				h.AddCommit(Commit{Group: group, Topic: "t", Partition: int32(part), Offset: pos, Start: start})
				if round%5 == 4 {
					pos = b.fetchCommitted(group)
					h.AddAssign(Assign{Consumer: consumer, Topic: "t", Partition: int32(part)})
				}
			}
		}()
		// Observers of the committed offset and the latest offset.
		observers.Add(1)
		go func() {
			defer observers.Done()
			group := fmt.Sprint("g", part)
			for range 2000 {
				select {
				case <-producing:
					return
				case <-time.After(100 * time.Microsecond): // pace the loop
				}
				start := time.Now()
				h.AddCommit(Commit{Group: group, Topic: "t", Partition: int32(part), Offset: b.fetchCommitted(group), Start: start})
				start = time.Now()
				h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Partition: int32(part), Offset: b.latest(part), Start: start})
			}
		}()
	}
	h.AddLeaderChange(LeaderChange{Topic: "t", From: 1, To: 2})
	wg.Wait()
	close(producing)
	observers.Wait()

	// The final drain: two consumers read every partition from the start.
	for _, d := range []string{"drain-1", "drain-2"} {
		for part := range partitions {
			h.AddAssign(Assign{Consumer: d, Topic: "t", Partition: int32(part), Drain: true})
			for off, v := range b.read(part, 0) {
				h.AddPoll(Poll{Consumer: d, Topic: "t", Partition: int32(part), Offset: int64(off), Value: []byte(v), Drain: true})
			}
		}
	}

	r := Check(&h, Options{MinLeaderChanges: 1})
	if !r.Valid {
		t.Fatalf("a clean concurrent history judged invalid:\n%s", r)
	}
	if r.Stats.SendsOK == 0 || r.Stats.SendsFailed == 0 || r.Stats.SendsInfo == 0 || r.Stats.DrainPolls == 0 {
		t.Fatalf("the workload did not exercise every outcome: %+v", r.Stats)
	}
	t.Logf("%s", r)
}

// fault is an anomaly the random history generator injects.
type fault int

const (
	noFault     fault = iota
	faultLose         // drop an acknowledged record before the drain
	faultAbort        // write a record whose send is reported failed
	faultDup          // write one acknowledged record twice
	faultRewind       // a drain re-reads an offset without an Assign
	faultStale        // compacted: a drain shows a key's older value as final
)

var faultKinds = map[fault][]Kind{
	faultLose:   {LostWrite, Unseen},
	faultAbort:  {AbortedRead},
	faultDup:    {Duplicate},
	faultRewind: {NonmonotonicPoll},
	faultStale:  {WrongFinalValue},
}

type record struct {
	key, value []byte
	ok         bool // its send was acknowledged
	failed     bool // its send was reported failed (faultAbort)
}

// sim generates a random history of one run against a correct broker, with
// one fault injected when asked.
type sim struct {
	r         *rand.Rand
	h         History
	compacted bool
	clock     time.Time
	logs      [][]record
	positions map[string]int64 // consumer/partition -> next offset
	committed map[string]int64
	sent      int
}

func (s *sim) tick() time.Time {
	s.clock = s.clock.Add(time.Millisecond)
	return s.clock
}

func (s *sim) send(f fault) {
	part := s.r.IntN(len(s.logs))
	producer := fmt.Sprint("p", s.r.IntN(3))
	key := []byte(fmt.Sprint("k", s.r.IntN(4)))
	v := []byte(fmt.Sprint("v", s.sent))
	if s.compacted && s.r.IntN(10) == 0 {
		v = nil // tombstone
	}
	s.sent++
	send := Send{Producer: producer, Topic: "t", Partition: int32(part), Key: key, Value: v, Start: s.tick()}
	switch x := s.r.IntN(20); {
	case x < 14 || s.sent == 1: // the first send is acknowledged
		send.Outcome, send.Offset = OK, int64(len(s.logs[part]))
		s.logs[part] = append(s.logs[part], record{key: key, value: v, ok: true})
		if f == faultDup && s.sent == 1 {
			s.logs[part] = append(s.logs[part], record{key: key, value: v, ok: true})
		}
	case x < 17:
		send.Outcome = Fail
		if f == faultAbort && v != nil {
			s.logs[part] = append(s.logs[part], record{key: key, value: v, failed: true})
		}
	default:
		send.Outcome = Info
		if s.r.IntN(2) == 0 {
			s.logs[part] = append(s.logs[part], record{key: key, value: v})
		}
	}
	send.End = s.tick()
	s.h.AddSend(send)
}

func (s *sim) poll(consumer string, part int, n int) {
	k := fmt.Sprint(consumer, "/", part)
	pos := s.positions[k]
	for ; n > 0 && pos < int64(len(s.logs[part])); n-- {
		rec := s.logs[part][pos]
		s.h.AddPoll(Poll{Consumer: consumer, Topic: "t", Partition: int32(part), Offset: pos, Key: rec.key, Value: rec.value})
		pos++
	}
	s.positions[k] = pos
}

func (s *sim) step(f fault) {
	part := s.r.IntN(len(s.logs))
	consumer := fmt.Sprint("c", s.r.IntN(2))
	switch x := s.r.IntN(20); {
	case x < 10:
		s.send(f)
	case x < 14:
		s.poll(consumer, part, 1+s.r.IntN(5))
	case x < 15:
		k := fmt.Sprint(consumer, "/", part)
		s.positions[k] = s.r.Int64N(int64(len(s.logs[part])) + 1)
		s.h.AddAssign(Assign{Consumer: consumer, Topic: "t", Partition: int32(part)})
	case x < 17:
		g := fmt.Sprint("g/", part)
		off := max(s.committed[g], s.r.Int64N(int64(len(s.logs[part]))+1))
		s.committed[g] = off
		s.h.AddCommit(Commit{Group: "g", Topic: "t", Partition: int32(part), Offset: off, Start: s.tick(), End: s.tick()})
	case x < 19:
		s.h.AddListOffsetsLatest(ListOffsetsLatest{Topic: "t", Partition: int32(part), Offset: int64(len(s.logs[part])), Start: s.tick(), End: s.tick()})
	default:
		s.h.AddLeaderChange(LeaderChange{Topic: "t", Partition: int32(part), From: 1, To: 2})
	}
}

// drain reads every partition as a drain consumer would after compaction:
// on compacted topics each key's last record stays, older records stay or go
// at random, and a last tombstone goes at random, taking every older record of
// its key with it (never resurrecting one). It reports whether f was injected
// into what the drain read.
func (s *sim) drain(consumer string, f fault) bool {
	injected := f == noFault
	for part, log := range s.logs {
		s.h.AddAssign(Assign{Consumer: consumer, Topic: "t", Partition: int32(part), Drain: true})
		last := make(map[string]int64)
		for off, rec := range log {
			last[string(rec.key)] = int64(off)
		}
		gone := make(map[string]bool) // keys whose last tombstone was removed
		for k, off := range last {
			gone[k] = s.compacted && log[off].value == nil && s.r.IntN(2) == 0
		}
		var offsets []int64
		for off, rec := range log {
			k := string(rec.key)
			keep := !s.compacted || !gone[k] && (last[k] == int64(off) || s.r.IntN(3) == 0)
			if keep {
				offsets = append(offsets, int64(off))
			}
		}
		switch f {
		case faultLose:
			for i, off := range offsets {
				if log[off].ok && !injected {
					offsets = slices.Delete(offsets, i, i+1)
					injected = true
					break
				}
			}
		case faultRewind:
			if len(offsets) > 0 && !injected {
				offsets = append(offsets, offsets[0])
				injected = true
			}
		case faultStale:
			injected = injected || s.stale(log, last, &offsets)
		case faultAbort:
			for _, off := range offsets {
				injected = injected || log[off].failed
			}
		case faultDup:
			seen := make(map[string]bool)
			for _, off := range offsets {
				v := log[off].value
				injected = injected || v != nil && seen[string(v)]
				seen[string(v)] = true
			}
		}
		for _, off := range offsets {
			rec := log[off]
			s.h.AddPoll(Poll{Consumer: consumer, Topic: "t", Partition: int32(part), Offset: off, Key: rec.key, Value: rec.value, Drain: true})
		}
	}
	return injected
}

// stale replaces, in offsets, a key's last record (acknowledged) with an
// older acknowledged value of the key, and reports whether it found one.
func (s *sim) stale(log []record, last map[string]int64, offsets *[]int64) bool {
	for k, lastOff := range last {
		fin := log[lastOff]
		if !fin.ok || fin.value == nil {
			continue
		}
		for older := lastOff - 1; older >= 0; older-- {
			o := log[older]
			if o.ok && o.value != nil && string(o.key) == k {
				kept := slices.DeleteFunc(*offsets, func(x int64) bool { return x == older || x == lastOff })
				kept = append(kept, older)
				slices.Sort(kept)
				*offsets = kept
				return true
			}
		}
	}
	return false
}

// randomHistory returns a history from seed, with f injected, and the
// options to judge it; ok is false when f could not be injected.
func randomHistory(seed uint64, compacted bool, f fault) (h *History, opts Options, ok bool) {
	s := &sim{
		r:         rand.New(rand.NewPCG(seed, 2)),
		compacted: compacted,
		clock:     base,
		positions: make(map[string]int64),
		committed: make(map[string]int64),
	}
	s.logs = make([][]record, 1+s.r.IntN(3))
	for range 20 + s.r.IntN(150) {
		s.step(f)
	}
	ok = s.drain("drain-1", f)
	if s.r.IntN(2) == 0 {
		s.drain("drain-2", noFault)
	}
	changes := 0
	for _, l := range s.h.leaders {
		if l.From != l.To {
			changes++
		}
	}
	opts = Options{MinLeaderChanges: changes}
	if compacted {
		opts.Compacted = map[string]bool{"t": true}
	}
	return &s.h, opts, ok
}

func TestRandomValidHistories(t *testing.T) {
	for _, compacted := range []bool{false, true} {
		t.Run(fmt.Sprint("compacted=", compacted), func(t *testing.T) {
			for seed := range uint64(300) {
				h, opts, _ := randomHistory(seed, compacted, noFault)
				if r := Check(h, opts); !r.Valid {
					t.Fatalf("seed %d: a valid history judged invalid:\n%s", seed, r)
				}
			}
		})
	}
}

func TestRandomHistoriesWithFaults(t *testing.T) {
	cases := []struct {
		f         fault
		compacted bool
	}{
		{faultLose, false},
		{faultAbort, false},
		{faultAbort, true},
		{faultDup, false},
		{faultDup, true},
		{faultRewind, false},
		{faultRewind, true},
		{faultStale, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("fault=%d/compacted=%v", c.f, c.compacted), func(t *testing.T) {
			injected := 0
			for seed := range uint64(300) {
				h, opts, ok := randomHistory(seed, c.compacted, c.f)
				if !ok {
					continue
				}
				injected++
				r := Check(h, opts)
				found := false
				for _, k := range faultKinds[c.f] {
					found = found || r.Counts[k] > 0
				}
				if !found || r.Valid {
					t.Fatalf("seed %d: injected fault not reported as %v:\n%s", seed, faultKinds[c.f], r)
				}
			}
			if injected < 20 {
				t.Fatalf("only %d of 300 histories could take the fault", injected)
			}
		})
	}
}
