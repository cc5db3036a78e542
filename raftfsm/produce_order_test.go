package raftfsm

import (
	"fmt"
	"slices"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

// TestSortPartsByShard: parts in shard order, a shard's parts in the order the
// request had them, and idx (their places in the request) moved with them.
func TestSortPartsByShard(t *testing.T) {
	shards := []shardstore.ShardID{9, 2, 9, 1, 2, 5}
	parts := make([]ProducePart, len(shards))
	idx := make([]int, len(shards))
	for i, s := range shards {
		parts[i] = ProducePart{Shard: s, Records: keyed(fmt.Sprint(i), 1)}
		idx[i] = 10 + i
	}
	sortPartsByShard(idx, parts)
	var gotShards []shardstore.ShardID
	for i, p := range parts {
		gotShards = append(gotShards, p.Shard)
		// Each part still carries its own records: the part at request place
		// idx[i] was built from records keyed idx[i]-10.
		if want := fmt.Sprintf("%d-key-0", idx[i]-10); string(p.Records[0].Key) != want {
			t.Errorf("part %d (shard %d, request place %d) has records %q, want %q", i, p.Shard, idx[i], p.Records[0].Key, want)
		}
	}
	if want := []shardstore.ShardID{1, 2, 2, 5, 9, 9}; !slices.Equal(gotShards, want) {
		t.Errorf("shards %v, want %v", gotShards, want)
	}
	if want := []int{13, 11, 14, 15, 10, 12}; !slices.Equal(idx, want) {
		t.Errorf("request places %v, want %v", idx, want)
	}
}

// TestNodeProduceManyAnyOrder: a request's partitions in any order get their
// own results back. Partition p holds p records before, so each result's base
// offset names the partition it came from.
func TestNodeProduceManyAnyOrder(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	const parts = 8
	if _, err := c.node.CreateTopic(ctx, "order", parts, nil, false); err != nil {
		t.Fatal(err)
	}
	for p := int32(1); p < parts; p++ {
		res := c.node.ProduceMany(ctx, []PartBatch{{Topic: "order", Partition: p,
			Producer: shardstore.NoProducer, Records: keyed(fmt.Sprintf("pre%d", p), int(p))}})
		if res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
	}
	order := []int32{5, 0, 7, 2, 6, 1, 3, 4}
	var batches []PartBatch
	for _, p := range order {
		batches = append(batches, PartBatch{Topic: "order", Partition: p,
			Producer: shardstore.NoProducer, Records: keyed(fmt.Sprintf("p%d", p), 1)})
	}
	res := c.node.ProduceMany(ctx, batches)
	for i, p := range order {
		if res[i].Err != nil {
			t.Fatalf("partition %d: %v", p, res[i].Err)
		}
		if res[i].BaseOffset != int64(p) {
			t.Errorf("result %d (partition %d): base offset %d, want %d", i, p, res[i].BaseOffset, p)
		}
	}
}
