package shardstore

import (
	"slices"
	"testing"
)

func TestCountFrom(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	const id ShardID = 1
	b := s.NewBatch()
	if err := b.CreateShard(id, testGroup); err != nil {
		t.Fatal(err)
	}
	// Offsets 0..5 over keys a, b, c: the live records are 3 (c), 4 (a), 5 (b).
	var recs []Record
	for _, k := range []string{"a", "b", "c", "x", "a", "b"} {
		recs = append(recs, Record{Key: []byte(k), Value: []byte("v")})
	}
	recs[3].Key = []byte("c")
	for _, r := range recs {
		if _, err := b.Append(id, AppendOptions{Policy: PolicyCompact}, NoProducer, []Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	tests := []struct {
		from int64
		want int64
	}{{-1, 3}, {0, 3}, {3, 3}, {4, 2}, {5, 1}, {6, 0}, {100, 0}}
	for _, tt := range tests {
		if got, err := s.CountFrom(id, tt.from); err != nil || got != tt.want {
			t.Errorf("CountFrom(%d) = %d, %v; want %d", tt.from, got, err, tt.want)
		}
	}
	if _, err := s.CountFrom(99, 0); err != ErrUnknownShard {
		t.Errorf("unknown shard: %v", err)
	}
}

func TestCountFromEach(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	const id ShardID = 1
	b := s.NewBatch()
	if err := b.CreateShard(id, testGroup); err != nil {
		t.Fatal(err)
	}
	// Offsets 0..9; keys repeat so that 0, 1, 2 and 5 are replaced: the
	// readable records are 3, 4, 6, 7, 8, 9.
	for _, k := range []string{"a", "b", "c", "d", "e", "a", "b", "c", "a", "f"} {
		if _, err := b.Append(id, AppendOptions{Policy: PolicyCompact}, NoProducer, []Record{{Key: []byte(k), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	froms := []int64{9, -1, 5, 0, 10, 3, 7, 4, 12, 6}
	want := make([]int64, len(froms))
	for i, from := range froms {
		c, err := s.CountFrom(id, from)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = c
	}
	got, err := s.CountFromEach(id, froms, 0)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("CountFromEach = %v, %v; want %v", got, err, want)
	}
	// Limited to 2 records (9 and 8): positions above 8 are exact, the others
	// get an upper bound no smaller than the count.
	got, err = s.CountFromEach(id, froms, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, from := range froms {
		exact := from > 8 || from <= 0 || from >= 10
		if (exact && got[i] != want[i]) || got[i] < want[i] || got[i] > 6 {
			t.Errorf("limited, from %d: %d, count %d", from, got[i], want[i])
		}
	}
	if _, err := s.CountFromEach(99, froms, 0); err != ErrUnknownShard {
		t.Errorf("unknown shard: %v", err)
	}
}
