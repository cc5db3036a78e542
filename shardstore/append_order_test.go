package shardstore

import (
	"bytes"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// batchOp is one operation of a Pebble batch, its key parsed.
type batchOp struct {
	kind pebble.InternalKeyKind
	raw  []byte
	key  parsedKey
}

// batchOps reads the operations of b's Pebble batch in the order the memtable
// inserts them.
func batchOps(t *testing.T, b *Batch) []batchOp {
	t.Helper()
	var ops []batchOp
	r := b.Raw().Reader()
	for {
		kind, ukey, _, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ops
		}
		k, parsed := parseKey(ukey)
		if !parsed {
			t.Fatalf("batch key %x is not a shardstore key", ukey)
		}
		ops = append(ops, batchOp{kind: kind, raw: bytes.Clone(ukey), key: k})
	}
}

// TestAppendWritesInKeyOrder pins the order of an append's writes, which
// Pebble's memtable insert is fast for (Append's comment): key index entries,
// producer state, deletes of the replaced records, the new records at
// ascending offsets, then tombstones' timed entries. An append of one record
// (a topic of thousands of partitions) is then in ascending key order.
func TestAppendWritesInKeyOrder(t *testing.T) {
	// No key cache: the shard keeps its key index in Pebble (a cache-only
	// shard writes no index entries; TestCacheOnlyWritesNoIndex).
	s := openStore(t, t.TempDir(), Options{Logger: testLogger(t), KeyCacheBytes: -1})
	bt := s.NewBatch()
	if err := bt.CreateShard(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := bt.Commit(); err != nil {
		t.Fatal(err)
	}
	opts := AppendOptions{Policy: PolicyCompact, AppendTimeMs: 1000}
	seq := int32(0)
	appendBatch := func(recs ...Record) []batchOp {
		t.Helper()
		bt := s.NewBatch()
		defer bt.Close()
		if _, err := bt.Append(1, opts, Producer{ID: 7, BaseSequence: seq}, recs); err != nil {
			t.Fatal(err)
		}
		seq += int32(len(recs))
		ops := batchOps(t, bt)
		if err := bt.Commit(); err != nil {
			t.Fatal(err)
		}
		return ops
	}
	rec := func(k, v string) Record {
		r := Record{Key: []byte(k)}
		if v != "" {
			r.Value = []byte(v)
		}
		return r
	}
	appendBatch(rec("a", "1"), rec("b", "1"), rec("c", "1"), rec("d", "1"))

	// One record replacing a live one: every write after the one before.
	ops := appendBatch(rec("b", "2"))
	if len(ops) != 4 {
		t.Fatalf("one record replacing one: %d writes, want 4 (index, producer, delete, record): %+v", len(ops), ops)
	}
	for i := 1; i < len(ops); i++ {
		if bytes.Compare(ops[i-1].raw, ops[i].raw) >= 0 {
			t.Errorf("write %d (%v %x) does not sort after write %d (%v %x)", i, ops[i].key.kind, ops[i].raw, i-1, ops[i-1].key.kind, ops[i-1].raw)
		}
	}

	// Several records, a tombstone among them: the kinds in that order, and
	// the deletes before the new records.
	ops = appendBatch(rec("d", "2"), rec("z", "1"), rec("a", ""), rec("c", "2"))
	rank := func(op batchOp) int {
		switch {
		case op.key.kind == kindKeyIndex:
			return 0
		case op.key.kind == kindProducer:
			return 1
		case op.key.kind == kindRecord && op.kind == pebble.InternalKeyKindSingleDelete:
			return 2
		case op.key.kind == kindRecord:
			return 3
		case op.key.kind == kindTombstone:
			return 4
		}
		t.Fatalf("unexpected write %v %x", op.key.kind, op.raw)
		return -1
	}
	counts := map[int]int{}
	for i, op := range ops {
		counts[rank(op)]++
		if i > 0 && rank(ops[i-1]) > rank(op) {
			t.Errorf("write %d (rank %d, %x) after write %d (rank %d, %x)", i, rank(op), op.raw, i-1, rank(ops[i-1]), ops[i-1].raw)
		}
		if i > 0 && rank(op) == 3 && rank(ops[i-1]) == 3 && ops[i-1].key.offset >= op.key.offset {
			t.Errorf("record at offset %d written after offset %d", op.key.offset, ops[i-1].key.offset)
		}
	}
	if want := map[int]int{0: 4, 1: 1, 2: 3, 3: 4, 4: 1}; len(counts) != len(want) ||
		counts[0] != 4 || counts[1] != 1 || counts[2] != 3 || counts[3] != 4 || counts[4] != 1 {
		t.Errorf("writes per kind %v, want %v", counts, want)
	}

	// What the batches wrote reads back: the live records in offset order.
	var got []string
	if err := s.ReadFunc(1, 0, func(r *Record) bool {
		got = append(got, string(r.Key)+"="+string(r.Value))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"b=2", "d=2", "z=1", "a=", "c=2"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
}
