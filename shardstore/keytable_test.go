package shardstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// checkTable compares t with want: every entry found by get and listed once
// by each, and nothing else.
func checkTable(t *testing.T, tab *keyTable, want map[string]keyEntry) {
	t.Helper()
	if tab.len() != len(want) {
		t.Fatalf("len %d, want %d", tab.len(), len(want))
	}
	for k, e := range want {
		if got, ok := tab.get(k); !ok || got != e {
			t.Fatalf("get(%q) = %+v, %v; want %+v", k, got, ok, e)
		}
	}
	seen := 0
	tab.each(func(k []byte, e keyEntry) {
		seen++
		if w, ok := want[string(k)]; !ok || w != e {
			t.Fatalf("each listed %q = %+v, want %+v (present %v)", k, e, w, ok)
		}
	})
	if seen != len(want) {
		t.Fatalf("each listed %d entries, want %d", seen, len(want))
	}
}

// runTableOps applies ops, read from b two bytes at a time (operation, key
// number), to a keyTable and to a map, and checks they agree.
func runTableOps(t *testing.T, b []byte, fromTag uint, keyLen func(i int) int) {
	tab := newKeyTable(0)
	tab.fromTag = fromTag
	want := map[string]keyEntry{}
	key := func(i byte) string {
		return fmt.Sprintf("%03d-%s", i, bytes.Repeat([]byte{'k'}, keyLen(int(i))))
	}
	for j := 0; j+1 < len(b); j += 2 {
		op, k := b[j], key(b[j+1])
		e := keyEntry{offset: int64(j), appendMs: int64(j) << 20, size: int32(op) << 8, tomb: op&8 != 0}
		switch op % 4 {
		case 0, 1:
			_, had := want[k]
			if added := tab.set(k, e); added == had {
				t.Fatalf("op %d: set(%q) added %v, map had it: %v", j, k, added, had)
			}
			want[k] = e
		case 2:
			_, had := want[k]
			if ok := tab.update(k, e); ok != had {
				t.Fatalf("op %d: update(%q) = %v, map had it: %v", j, k, ok, had)
			}
			if had {
				want[k] = e
			}
		case 3:
			_, had := want[k]
			if ok := tab.delete(k); ok != had {
				t.Fatalf("op %d: delete(%q) = %v, map had it: %v", j, k, ok, had)
			}
			delete(want, k)
		}
		w, inMap := want[k]
		if got, ok := tab.get(k); ok != inMap || got != w {
			t.Fatalf("op %d: get(%q) after the op = %+v, %v; want %+v, %v", j, k, got, ok, w, inMap)
		}
	}
	checkTable(t, tab, want)
	// Evicting through anyKey empties the table, one distinct key a call.
	for tab.len() > 0 {
		k, ok := tab.anyKey()
		if _, present := want[k]; !ok || !present {
			t.Fatalf("anyKey = %q, %v with %d entries left", k, ok, tab.len())
		}
		tab.delete(k)
		delete(want, k)
	}
	checkTable(t, tab, want)
}

// TestKeyTable checks the key cache's table against a Go map through random
// sets, updates and deletes, with keys that share chunks and keys with a
// chunk of their own (past bigRecord), through growth, backward-shift
// deletes and chunk compaction; once with home slots from the tags, once
// from rehashed keys (fromTag lowered).
func TestKeyTable(t *testing.T) {
	for _, fromTag := range []uint{tagBits, 2} {
		t.Run(fmt.Sprintf("fromTag=%d", fromTag), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(fromTag)))
			for round := range 20 {
				ops := make([]byte, 20000)
				for i := range ops {
					ops[i] = byte(rng.IntN(256))
				}
				// Early rounds mostly add (growth); later ones delete as
				// often as they add (compaction, shifts).
				for i := 0; i < len(ops); i += 2 {
					if round < 5 && ops[i]%4 == 3 {
						ops[i] = 0
					}
				}
				runTableOps(t, ops, fromTag, func(i int) int {
					if i%50 == 0 {
						return bigRecord + i
					}
					return i % 40
				})
			}
		})
	}
}

// TestKeyTableLarge fills a table past 2^tagBits slots, where home slots
// come from rehashed keys, and deletes half of it.
func TestKeyTableLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	const n = 800_000 // past 3/4 of 2^20: 2^21 slots
	tab := newKeyTable(0)
	key := func(i int) string { return fmt.Sprintf("key-%012d", i) }
	for i := range n {
		tab.set(key(i), keyEntry{offset: int64(i)})
	}
	if len(tab.slots) <= 1<<tab.fromTag {
		t.Fatalf("%d slots: the table never left tag-derived home slots", len(tab.slots))
	}
	for i := 0; i < n; i += 2 {
		if !tab.delete(key(i)) {
			t.Fatalf("delete(%q) found nothing", key(i))
		}
	}
	if tab.len() != n/2 {
		t.Fatalf("len %d, want %d", tab.len(), n/2)
	}
	for i := range n {
		e, ok := tab.get(key(i))
		if ok != (i%2 == 1) || ok && e.offset != int64(i) {
			t.Fatalf("get(%q) = %+v, %v", key(i), e, ok)
		}
	}
}

// FuzzKeyTable runs fuzzed operation sequences against a map (runTableOps).
func FuzzKeyTable(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 3, 1, 2, 2, 0, 1})
	f.Add(bytes.Repeat([]byte{0, 7, 3, 7}, 50))
	f.Fuzz(func(t *testing.T, ops []byte) {
		fromTag := uint(tagBits)
		if len(ops) > 0 && ops[0]&1 == 1 {
			fromTag = 1
		}
		runTableOps(t, ops, fromTag, func(i int) int {
			if i%64 == 63 {
				return bigRecord
			}
			return i % 24
		})
	})
}
