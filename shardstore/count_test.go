package shardstore

import (
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
