package shardstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Groups of the snapshot tests: the one sent, and one that must stay put.
const (
	sentGroup  = 1
	otherGroup = 2
)

// metaSpan stands for raftfsm's metadata keys, an extra span of group 0.
var metaSpan = []Span{{Start: []byte("m"), End: []byte("n")}}

// snapStore is a store under a snapshot test, on a MemFS so it can reopen.
type snapStore struct {
	tb  testing.TB
	fs  vfs.FS
	dir string
	s   *Store
}

func newSnapStore(tb testing.TB) *snapStore {
	tb.Helper()
	st := &snapStore{tb: tb, fs: vfs.NewMem(), dir: "db"}
	st.s = openStore(tb, st.dir, testOptions(tb, st.fs))
	return st
}

func (st *snapStore) reopen() {
	st.tb.Helper()
	if err := st.s.Close(); err != nil {
		st.tb.Fatal(err)
	}
	st.s = openStore(st.tb, st.dir, testOptions(st.tb, st.fs))
}

// do runs ops in one batch with the given applied index (0: none) and commits.
func (st *snapStore) do(group uint32, applied uint64, ops func(b *Batch) error) {
	st.tb.Helper()
	b := st.s.NewBatch()
	defer b.Close()
	if err := ops(b); err != nil {
		st.tb.Fatal(err)
	}
	if applied > 0 {
		b.SetApplied(group, applied)
	}
	if err := b.Commit(); err != nil {
		st.tb.Fatal(err)
	}
}

func (st *snapStore) create(group uint32, ids ...ShardID) {
	st.tb.Helper()
	st.do(group, 0, func(b *Batch) error {
		for _, id := range ids {
			if err := b.CreateShard(id, group); err != nil {
				return err
			}
		}
		return nil
	})
}

func (st *snapStore) append(id ShardID, o AppendOptions, p Producer, recs ...Record) AppendResult {
	st.tb.Helper()
	var res AppendResult
	st.do(0, 0, func(b *Batch) (err error) {
		res, err = b.Append(id, o, p, recs)
		return err
	})
	return res
}

func (st *snapStore) setApplied(group uint32, index uint64) {
	st.tb.Helper()
	st.do(group, index, func(*Batch) error { return nil })
}

func (st *snapStore) setRaw(k, v string) {
	st.tb.Helper()
	if err := st.s.DB().Set([]byte(k), []byte(v), pebble.NoSync); err != nil {
		st.tb.Fatal(err)
	}
}

// export reads a whole stream and checks its length against Size, and that
// an unsized export of the same state streams the same bytes.
func export(tb testing.TB, s *Store, group uint32, extra []Span) []byte {
	tb.Helper()
	e, err := s.Export(group, ExportOptions{Extra: extra})
	if err != nil {
		tb.Fatalf("export: %v", err)
	}
	defer e.Close()
	u, err := s.Export(group, ExportOptions{Extra: extra, Unsized: true})
	if err != nil {
		tb.Fatalf("unsized export: %v", err)
	}
	defer u.Close()
	b, err := io.ReadAll(e)
	if err != nil {
		tb.Fatalf("read export: %v", err)
	}
	if int64(len(b)) != e.Size() {
		tb.Fatalf("stream is %d bytes, Size said %d", len(b), e.Size())
	}
	ub, err := io.ReadAll(u)
	if err != nil || u.Size() != -1 || !bytes.Equal(ub, b) {
		tb.Fatalf("unsized export: %d bytes, Size %d (%v); want the sized stream's %d bytes, Size -1", len(ub), u.Size(), err, len(b))
	}
	return b
}

func ingestOpts(group uint32, extra []Span, tableBytes uint64) IngestOptions {
	return IngestOptions{Group: group, Extra: extra, Dir: "ingest", TableBytes: tableBytes}
}

func bundleOpts(group uint32, extra []Span, tableBytes, bundleBytes uint64) IngestOptions {
	o := ingestOpts(group, extra, tableBytes)
	o.BundleBytes = bundleBytes
	return o
}

// dump returns every key and value of the database in [start, end).
func dump(tb testing.TB, s *Store, start, end []byte) []string {
	tb.Helper()
	it, err := s.DB().NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, fmt.Sprintf("%x=%x", it.Key(), it.Value()))
	}
	return out
}

// dumpSpans dumps the spans of a group snapshot of group.
func dumpSpans(tb testing.TB, s *Store, group uint32, shards []ShardID, extra []Span) []string {
	tb.Helper()
	var out []string
	for _, sp := range snapshotSpans(&SnapshotHeader{Group: group, Shards: shards, Extra: extra}) {
		out = append(out, dump(tb, s, sp.Start, sp.End)...)
	}
	return out
}

// shardView is everything a reader can see of a shard.
type shardView struct {
	State   State
	Records []Record
	Lookups map[string]string
}

func viewShard(tb testing.TB, s *Store, id ShardID, keys []string) shardView {
	tb.Helper()
	st, err := s.State(id)
	if err != nil {
		tb.Fatalf("state of %d: %v", id, err)
	}
	recs, err := s.Read(id, 0, 0, 0)
	if err != nil {
		tb.Fatalf("read %d: %v", id, err)
	}
	v := shardView{State: st, Records: recs, Lookups: map[string]string{}}
	for _, k := range keys {
		r, ok, err := s.Lookup(id, []byte(k))
		switch {
		case err != nil:
			tb.Fatalf("lookup %d %q: %v", id, k, err)
		case !ok:
			v.Lookups[k] = "-"
		case r.Value == nil:
			v.Lookups[k] = fmt.Sprintf("%d:tombstone", r.Offset)
		default:
			v.Lookups[k] = fmt.Sprintf("%d:%s", r.Offset, r.Value)
		}
	}
	return v
}

func sameView(a, b shardView) bool {
	if a.State != b.State || len(a.Records) != len(b.Records) || len(a.Lookups) != len(b.Lookups) {
		return false
	}
	for i := range a.Records {
		if a.Records[i].Offset != b.Records[i].Offset || !sameRecord(a.Records[i], b.Records[i]) {
			return false
		}
	}
	for k, v := range a.Lookups {
		if b.Lookups[k] != v {
			return false
		}
	}
	return true
}

var snapKeys = []string{"a", "b", "c", "d", "e", "f", "gone", "old-only"}

// fillSender builds the sender: group 1 with a compacted shard (superseded,
// held and tombstoned keys, an idempotent producer), a delete-policy shard, a
// shard with a moved log start, and a shard of group 2 that is not sent.
func fillSender(st *snapStore) {
	st.create(sentGroup, 1, 3, 5)
	st.create(otherGroup, 2)
	for round := range 4 {
		var recs []Record
		for _, k := range snapKeys[:6] {
			recs = append(recs, kv(k, fmt.Sprintf("%s-%d", k, round)))
		}
		st.append(1, AppendOptions{Policy: PolicyCompact, AppendTimeMs: int64(round), MinCompactionLagMs: 2}, pid(7, 1, int32(round*6)), recs...)
	}
	st.append(1, at(compact, 10), NoProducer, tomb("b"), kv("gone", "x"))
	st.append(1, at(compact, 11), NoProducer, tomb("gone"))
	for i := range 5 {
		st.append(3, del, NoProducer, Record{Value: []byte(fmt.Sprintf("keyless-%d", i))})
	}
	st.append(5, compact, NoProducer, kv("a", "1"), kv("b", "2"), kv("c", "3"))
	st.do(sentGroup, 0, func(b *Batch) error { return b.DeleteRecordsBefore(5, 2) })
	st.append(2, compact, NoProducer, kv("z", "sender-other-group"))
	st.setApplied(sentGroup, 100)
	st.setApplied(otherGroup, 50)
	st.setRaw("m/topic-a", "meta-a")
	st.setRaw("m/topic-b", "meta-b")
}

// fillReceiver builds a receiver with stale copies of group 1 (different
// offsets for the same keys, a key the sender deleted, a complete key cache), a
// group 1 shard the sender no longer has, a group 2 shard of its own and
// node-local keys outside every span.
func fillReceiver(st *snapStore) {
	st.create(sentGroup, 1, 7)
	st.create(otherGroup, 9)
	st.append(1, compact, NoProducer, kv("old-only", "stale"), kv("a", "stale"), kv("gone", "alive here"))
	st.append(1, compact, pid(7, 0, 0), kv("c", "stale"))
	st.append(7, compact, NoProducer, kv("a", "orphan"))
	st.append(9, compact, NoProducer, kv("q", "receiver-other-group"))
	st.setApplied(sentGroup, 20)
	st.setApplied(otherGroup, 7)
	st.setRaw("m/topic-a", "stale")
	st.setRaw("m/topic-z", "deleted on the leader")
	st.setRaw("i/node", "local identity")
	st.setRaw("r/log", "raft log")
}

func TestSnapshotRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		group      uint32
		extra      []Span
		receiver   func(*snapStore)
		tableBytes uint64
		// bundleBytes: spans above it get tables of their own (0: the default)
		bundleBytes uint64
	}{
		{name: "EmptyReceiver", group: sentGroup, receiver: func(*snapStore) {}},
		{name: "StaleReceiver", group: sentGroup, receiver: fillReceiver},
		{name: "SmallTables", group: sentGroup, receiver: fillReceiver, tableBytes: 256},
		{name: "SmallBundles", group: sentGroup, receiver: fillReceiver, bundleBytes: 200},
		{name: "SmallBundlesAndTables", group: sentGroup, extra: metaSpan, receiver: fillReceiver, tableBytes: 300, bundleBytes: 100},
		{name: "WithExtraSpans", group: sentGroup, extra: metaSpan, receiver: fillReceiver},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snd, rcv := newSnapStore(t), newSnapStore(t)
			fillSender(snd)
			tc.receiver(rcv)
			otherBefore := dumpSpans(t, rcv.s, otherGroup, rcv.s.GroupShards(otherGroup), nil)
			outside := append(dump(t, rcv.s, []byte("i"), []byte("j")), dump(t, rcv.s, []byte("r"), []byte("s"))...)
			if tc.extra == nil {
				outside = append(outside, dump(t, rcv.s, []byte("m"), []byte("n"))...)
			}
			waits := map[ShardID]<-chan struct{}{}
			for _, id := range rcv.s.Shards() {
				waits[id] = rcv.s.Wait(id)
			}

			stream := export(t, snd.s, tc.group, tc.extra)
			res, err := rcv.s.Ingest(bytes.NewReader(stream), bundleOpts(tc.group, tc.extra, tc.tableBytes, tc.bundleBytes))
			if err != nil {
				t.Fatalf("ingest: %v", err)
			}
			if res.Applied != 100 || !slices.Equal(res.Shards, []ShardID{1, 3, 5}) {
				t.Fatalf("ingest result %+v", res)
			}
			if (tc.tableBytes > 0 || tc.bundleBytes > 0) && res.Tables < 3 {
				t.Fatalf("%d tables with a %d byte limit and %d byte bundles", res.Tables, tc.tableBytes, tc.bundleBytes)
			}
			// A small group: one shared table for each kind of span (applied
			// index, registry, shards, extra spans).
			if want := 3 + min(len(tc.extra), 1); tc.tableBytes == 0 && tc.bundleBytes == 0 && res.Tables != want {
				t.Errorf("%d tables for a small group, want %d", res.Tables, want)
			}
			for id, c := range waits {
				closed := false
				select {
				case <-c:
					closed = true
				default:
				}
				if want := id != 9; closed != want {
					t.Errorf("Wait channel of shard %d closed = %v, want %v", id, closed, want)
				}
			}
			if names, _ := rcv.fs.List("ingest"); len(names) != 0 {
				t.Errorf("scratch dir keeps %v", names)
			}

			check := func(t *testing.T) {
				t.Helper()
				if got := dumpSpans(t, rcv.s, tc.group, []ShardID{1, 3, 5, 7}, tc.extra); !slices.Equal(got, dumpSpans(t, snd.s, tc.group, []ShardID{1, 3, 5, 7}, tc.extra)) {
					t.Fatalf("group keys differ:\nreceiver %v\nsender   %v", got, dumpSpans(t, snd.s, tc.group, []ShardID{1, 3, 5, 7}, tc.extra))
				}
				if got := dumpSpans(t, rcv.s, otherGroup, rcv.s.GroupShards(otherGroup), nil); !slices.Equal(got, otherBefore) {
					t.Fatalf("group %d changed:\n%v\nwas %v", otherGroup, got, otherBefore)
				}
				got := append(dump(t, rcv.s, []byte("i"), []byte("j")), dump(t, rcv.s, []byte("r"), []byte("s"))...)
				if tc.extra == nil {
					got = append(got, dump(t, rcv.s, []byte("m"), []byte("n"))...)
				}
				if !slices.Equal(got, outside) {
					t.Fatalf("keys outside the snapshot changed: %v, was %v", got, outside)
				}
				for _, id := range []ShardID{1, 3, 5} {
					if a, b := viewShard(t, rcv.s, id, snapKeys), viewShard(t, snd.s, id, snapKeys); !sameView(a, b) {
						t.Fatalf("shard %d:\nreceiver %+v\nsender   %+v", id, a, b)
					}
				}
				if _, err := rcv.s.State(7); !errors.Is(err, ErrUnknownShard) {
					t.Fatalf("shard only the receiver had: %v", err)
				}
				if got := rcv.s.GroupShards(sentGroup); !slices.Equal(got, []ShardID{1, 3, 5}) {
					t.Fatalf("GroupShards = %v", got)
				}
				if a, _ := rcv.s.Applied(sentGroup); a != 100 {
					t.Fatalf("applied = %d", a)
				}
			}
			check(t)

			// Both stores now apply the same writes the same way: a stale key
			// cache entry or cacheComplete on the receiver would resurrect a
			// replaced record or miss one.
			for _, st := range []*snapStore{snd, rcv} {
				st.append(1, at(compact, 20), NoProducer, kv("a", "new"), kv("c", "new"), kv("old-only", "new"), tomb("d"))
				var retry []Record
				for _, k := range snapKeys[:6] {
					retry = append(retry, kv(k, k+"-3"))
				}
				if res := st.append(1, compact, pid(7, 1, 18), retry...); !res.Duplicate {
					t.Fatalf("producer state lost: %+v", res)
				}
				st.do(sentGroup, 0, func(b *Batch) error {
					_, err := b.ExpireSuperseded(1, 100)
					return err
				})
			}
			for _, id := range []ShardID{1, 3, 5} {
				if a, b := viewShard(t, rcv.s, id, snapKeys), viewShard(t, snd.s, id, snapKeys); !sameView(a, b) {
					t.Fatalf("after the same writes, shard %d:\nreceiver %+v\nsender   %+v", id, a, b)
				}
			}
			rcv.reopen()
			check(t)
		})
	}
}

// TestIngestInterleavedGroups: the shards of the Raft groups interleave in the
// key space. Snapshots of every group ingested into an empty store (a wiped
// node rebuilt) must land in the bottom level, a large shard per table and
// small shards in shared tables, rather than overlap each other and leave
// Pebble to rewrite them all.
func TestIngestInterleavedGroups(t *testing.T) {
	const (
		groups = 4
		bundle = 16 << 10
	)
	rnd := rand.New(rand.NewPCG(1, 2)) // values that do not compress, as in the benchmark
	fill := func(st *snapStore, id ShardID, records int) {
		for done := 0; done < records; done += 100 {
			var recs []Record
			for k := range min(100, records-done) {
				value := make([]byte, 100)
				for i := range value {
					value[i] = byte(rnd.Uint32())
				}
				recs = append(recs, Record{Key: []byte(fmt.Sprintf("key-%d", done+k)), Value: value})
			}
			st.append(id, compact, NoProducer, recs...)
		}
	}
	tests := []struct {
		name string
		// records of shard id (group 1+id%groups); every group is sent in
		// order, group 1 first
		records func(id ShardID) int
	}{
		{"AllLarge", func(ShardID) int { return 1000 }},
		// Group 1's small shards share a table whose bounds span the
		// other groups' large shards, which come later: Pebble splits it.
		{"SmallThenLarge", func(id ShardID) int {
			if 1+uint32(id)%groups == 1 {
				return 10
			}
			return 1000
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snd, rcv := newSnapStore(t), newSnapStore(t)
			var keys []string
			for id := ShardID(1); id <= 3*groups; id++ {
				g := 1 + uint32(id)%groups
				snd.create(g, id)
				fill(snd, id, tc.records(id))
				snd.setApplied(g, 10)
			}
			for _, k := range []int{0, 9, 999} {
				keys = append(keys, fmt.Sprintf("key-%d", k))
			}
			tables := 0
			for g := uint32(1); g <= groups; g++ {
				stream := export(t, snd.s, g, nil)
				res, err := rcv.s.Ingest(bytes.NewReader(stream), bundleOpts(g, nil, 0, bundle))
				if err != nil {
					t.Fatalf("ingest group %d: %v", g, err)
				}
				tables += res.Tables
			}
			m := rcv.s.DB().Metrics()
			bottom := len(m.Levels) - 1
			for l := 0; l < bottom; l++ {
				if n := m.Levels[l].TablesCount; n > 0 {
					t.Errorf("after ingesting %d tables: %d tables in L%d, want every table at the bottom (L%d)", tables, n, l, bottom)
				}
			}
			if n := m.Compact.Count + m.Compact.NumInProgress; n > 0 {
				t.Errorf("%d compactions after the ingests, want none", n)
			}
			for id := ShardID(1); id <= 3*groups; id++ {
				if a, b := viewShard(t, rcv.s, id, keys), viewShard(t, snd.s, id, keys); !sameView(a, b) {
					t.Fatalf("shard %d:\nreceiver %+v\nsender   %+v", id, a, b)
				}
			}
		})
	}
}

// TestSnapshotOfMetadataGroup: group 0 has no shards, only its extra spans and
// applied key; keys outside them (raft logs, node identity) are never sent.
func TestSnapshotOfMetadataGroup(t *testing.T) {
	snd, rcv := newSnapStore(t), newSnapStore(t)
	fillSender(snd)
	snd.setApplied(0, 33)
	snd.setRaw("i/node", "sender identity")
	snd.setRaw("r/0/log", "sender log")
	fillReceiver(rcv)
	stream := export(t, snd.s, 0, metaSpan)
	for _, k := range []string{"i/node", "r/0/log", "sender-other-group"} {
		if bytes.Contains(stream, []byte(k)) {
			t.Fatalf("stream carries %q", k)
		}
	}
	if _, err := rcv.s.Ingest(bytes.NewReader(stream), ingestOpts(0, metaSpan, 0)); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, rcv.s, []byte("m"), []byte("n")), dump(t, snd.s, []byte("m"), []byte("n")); !slices.Equal(got, want) {
		t.Fatalf("metadata = %v, want %v", got, want)
	}
	if a, _ := rcv.s.Applied(0); a != 33 {
		t.Fatalf("applied = %d", a)
	}
	if got := rcv.s.Shards(); !slices.Equal(got, []ShardID{1, 7, 9}) {
		t.Fatalf("shards = %v", got)
	}
	if got := dump(t, rcv.s, []byte("i"), []byte("j")); len(got) != 1 || !bytes.Contains([]byte(got[0]), []byte(fmt.Sprintf("%x", "local identity"))) {
		t.Fatalf("node identity = %v", got)
	}
}

// TestSnapshotBadStreams: every damaged stream fails with ErrBadSnapshot and
// leaves the receiver exactly as it was.
func TestSnapshotBadStreams(t *testing.T) {
	snd := newSnapStore(t)
	fillSender(snd)
	good := export(t, snd.s, sentGroup, metaSpan)
	flip := func(i int) []byte {
		b := slices.Clone(good)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name   string
		stream []byte
		group  uint32
		extra  []Span
	}{
		{name: "Empty", stream: nil},
		{name: "PrefixOnly", stream: good[:SnapshotPrefixLen]},
		{name: "NoTrailer", stream: good[:len(good)-snapshotTrailerLen]},
		{name: "NoCRC", stream: good[:len(good)-2]},
		{name: "Garbage", stream: append(slices.Clone(good), 0)},
		{name: "FlipMagic", stream: flip(0)},
		{name: "FlipVersion", stream: flip(4)},
		{name: "FlipApplied", stream: flip(SnapshotPrefixLen - 1)},
		{name: "FlipHeaderShard", stream: flip(SnapshotPrefixLen + 8)},
		{name: "FlipCRC", stream: flip(len(good) - 1)},
		{name: "FlipCount", stream: flip(len(good) - 5)},
		{name: "OtherGroup", stream: good, group: otherGroup},
		{name: "OtherExtra", stream: good, extra: []Span{{Start: []byte("m"), End: []byte("m0")}}},
	}
	for cut := SnapshotPrefixLen + 1; cut < len(good)-snapshotTrailerLen; cut += len(good) / 23 {
		tests = append(tests, struct {
			name   string
			stream []byte
			group  uint32
			extra  []Span
		}{name: fmt.Sprintf("Truncated%d", cut), stream: good[:cut]}, struct {
			name   string
			stream []byte
			group  uint32
			extra  []Span
		}{name: fmt.Sprintf("Flip%d", cut), stream: flip(cut)})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newSnapStore(t)
			fillReceiver(rcv)
			before := dump(t, rcv.s, nil, nil)
			shards := rcv.s.Shards()
			view := viewShard(t, rcv.s, 1, snapKeys)
			group, extra := tc.group, tc.extra
			if group == 0 {
				group = sentGroup
			}
			if extra == nil {
				extra = metaSpan
			}
			_, err := rcv.s.Ingest(bytes.NewReader(tc.stream), ingestOpts(group, extra, 512))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("ingest of a bad stream: %v, want ErrBadSnapshot", err)
			}
			t.Logf("error: %v", err)
			if after := dump(t, rcv.s, nil, nil); !slices.Equal(after, before) {
				t.Fatalf("a failed ingest changed the database")
			}
			if !slices.Equal(rcv.s.Shards(), shards) || !sameView(viewShard(t, rcv.s, 1, snapKeys), view) {
				t.Fatal("a failed ingest changed the shards")
			}
			if names, _ := rcv.fs.List("ingest"); len(names) != 0 {
				t.Errorf("scratch dir keeps %v", names)
			}
		})
	}
}

// TestExportBoundedMemory: the encoder holds one chunk (or one entry) at a
// time, whatever the group's size.
func TestExportBoundedMemory(t *testing.T) {
	st := newSnapStore(t)
	st.create(sentGroup, 1)
	val := bytes.Repeat([]byte("v"), 1000)
	for i := range 40 {
		var recs []Record
		for j := range 100 {
			recs = append(recs, Record{Key: []byte(fmt.Sprintf("k%d-%d", i, j)), Value: val})
		}
		st.append(1, compact, NoProducer, recs...)
	}
	e, err := st.s.Export(sentGroup, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n, err := io.Copy(io.Discard, e)
	if err != nil || n != e.Size() || n < 4e6 {
		t.Fatalf("copied %d of %d: %v", n, e.Size(), err)
	}
	if c := cap(e.buf); c > 2*exportChunk+2*len(val) {
		t.Fatalf("export buffer grew to %d bytes for a %d byte stream", c, n)
	}
}

// TestExportRate: with a rate, Read sleeps so the stream takes size/rate.
func TestExportRate(t *testing.T) {
	st := newSnapStore(t)
	fillSender(st)
	e, err := st.s.Export(sentGroup, ExportOptions{RateBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := time.Unix(0, 0)
	e.pacer.now = func() time.Time { return now }
	e.pacer.sleep = func(d time.Duration) { now = now.Add(d) }
	buf := make([]byte, 100)
	var total int
	for {
		n, err := e.Read(buf)
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := time.Duration(float64(total) / 1000 * float64(time.Second))
	if got := now.Sub(time.Unix(0, 0)); got < want-time.Millisecond || got > want+time.Millisecond {
		t.Fatalf("%d bytes at 1000 B/s took %v, want %v", total, got, want)
	}
}

// TestExportClosedStore: Store.Close releases open exports; Read then fails.
func TestExportClosedStore(t *testing.T) {
	st := newSnapStore(t)
	fillSender(st)
	e, err := st.s.Export(sentGroup, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := st.s.Close(); err != nil {
		t.Fatalf("close with an open export: %v", err)
	}
	if _, err := e.Read(make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestExportRejectsBadExtra: extra spans may not reach into the store's keys.
func TestExportRejectsBadExtra(t *testing.T) {
	st := newSnapStore(t)
	for _, extra := range [][]Span{
		{{Start: []byte("r"), End: []byte("t")}},
		{{Start: []byte("n"), End: []byte("m")}},
		{{Start: []byte("m"), End: []byte("o")}, {Start: []byte("n"), End: []byte("p")}},
	} {
		if _, err := st.s.Export(0, ExportOptions{Extra: extra}); err == nil {
			t.Fatalf("export with extra %q succeeded", extra)
		}
	}
}

// FuzzSnapshotDecoder feeds arbitrary bytes to the stream decoder: it must
// never panic, and a stream it accepts whole re-encodes to the same bytes.
func FuzzSnapshotDecoder(f *testing.F) {
	st := newSnapStore(f)
	fillSender(st)
	good := export(f, st.s, sentGroup, metaSpan)
	f.Add([]byte{})
	f.Add([]byte(snapshotMagic))
	f.Add(good[:SnapshotPrefixLen+3])
	f.Add(good)
	f.Add(append(slices.Clone(good), "garbage"...))
	f.Add(export(f, newSnapStore(f).s, 0, nil))
	f.Add(appendSnapshotHeader(nil, &SnapshotHeader{Group: ^uint32(0), Applied: ^uint64(0), Shards: []ShardID{0, ^ShardID(0)},
		Extra: []Span{{Start: []byte{0}, End: bytes.Repeat([]byte{0xff}, maxSpanKeyLen)}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := newSnapshotDecoder(bytes.NewReader(data))
		if err != nil {
			return
		}
		out := appendSnapshotHeader(nil, &d.hdr)
		for range 1 << 16 {
			ok, err := d.next()
			if err != nil {
				return
			}
			if !ok {
				break
			}
			out = appendSnapshotEntry(out, d.key, d.value)
		}
		if !d.done {
			return
		}
		out = append(out, 0)
		out = binary.BigEndian.AppendUint64(out, d.count)
		out = binary.BigEndian.AppendUint32(out, d.crc)
		if !bytes.Equal(out, data) {
			t.Fatalf("accepted %x, re-encodes to %x", data, out)
		}
	})
}

// TestSnapshotDecoderBuffer: the decoder hands out values from its own buffer
// and checksums a buffer at a time, so values that end at, straddle and
// outgrow the buffer's edge, read whole or a byte at a time, must come out as
// they went in, and a flipped bit anywhere, or a cut, must fail the stream.
func TestSnapshotDecoderBuffer(t *testing.T) {
	sizes := []int{0, 1, snapshotDecodeBuf - 40, snapshotDecodeBuf - 1, snapshotDecodeBuf, snapshotDecodeBuf + 1, 3*snapshotDecodeBuf + 7, 5}
	type entry struct{ k, v []byte }
	var entries []entry
	rng := rand.New(rand.NewPCG(1, 2))
	for i, n := range sizes {
		v := make([]byte, n)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		entries = append(entries, entry{k: fmt.Appendf(nil, "s-key-%03d", i), v: v})
	}
	stream := appendSnapshotHeader(nil, &SnapshotHeader{Group: 3, Applied: 9, Shards: []ShardID{4}})
	for _, e := range entries {
		stream = appendSnapshotEntry(stream, e.k, e.v)
	}
	stream = append(stream, 0)
	stream = binary.BigEndian.AppendUint64(stream, uint64(len(entries)))
	stream = binary.BigEndian.AppendUint32(stream, crc32.Checksum(stream, castagnoli))

	decode := func(r io.Reader) ([]entry, error) {
		d, err := newSnapshotDecoder(r)
		if err != nil {
			return nil, err
		}
		var got []entry
		for {
			ok, err := d.next()
			if err != nil || !ok {
				return got, err
			}
			got = append(got, entry{slices.Clone(d.key), slices.Clone(d.value)})
		}
	}
	readers := map[string]func([]byte) io.Reader{
		"Whole":   func(b []byte) io.Reader { return bytes.NewReader(b) },
		"OneByte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"Half":    func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"DataErr": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	}
	for name, reader := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := decode(reader(stream))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, entries, func(a, b entry) bool { return bytes.Equal(a.k, b.k) && bytes.Equal(a.v, b.v) }) {
				t.Fatalf("decoded %d entries, not the %d encoded", len(got), len(entries))
			}
		})
	}
	for _, at := range []int{SnapshotPrefixLen + 5, snapshotDecodeBuf - 3, snapshotDecodeBuf + 100, 3 * snapshotDecodeBuf, len(stream) - 14, len(stream) - 1} {
		bad := slices.Clone(stream)
		bad[at] ^= 0x10
		if _, err := decode(bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("bit flipped at byte %d of %d: %v", at, len(stream), err)
		}
		if _, err := decode(iotest.OneByteReader(bytes.NewReader(stream[:at]))); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("cut at byte %d of %d: %v", at, len(stream), err)
		}
	}
	if _, err := decode(bytes.NewReader(append(slices.Clone(stream), 0))); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("a byte after the trailer: %v", err)
	}
	failing := io.MultiReader(bytes.NewReader(stream[:snapshotDecodeBuf+9]), iotest.ErrReader(errSnapshotTest))
	if _, err := decode(failing); !errors.Is(err, errSnapshotTest) {
		t.Errorf("a read error midway: %v", err)
	}
}

var errSnapshotTest = errors.New("test: read failed")
