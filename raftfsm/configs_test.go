package raftfsm

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/shardcache/shardcache/internal/topicconfig"
)

func TestNodeAlterTopicConfig(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	if _, err := c.node.CreateTopic(ctx, "cfg", 1, map[string]string{topicconfig.RetentionMs: "1000"}, false); err != nil {
		t.Fatal(err)
	}
	set := func(name, value string) topicconfig.Op {
		return topicconfig.Op{Type: topicconfig.OpSet, Name: name, Value: value}
	}

	// Concurrent changes of different configs all apply: each command is
	// applied to the overrides in force.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := set(topicconfig.DeleteRetentionMs, fmt.Sprint(i))
			if i%2 == 1 {
				op = set("segment.ms", fmt.Sprint(1000+i))
			}
			errs <- c.node.AlterTopicConfig(ctx, "cfg", []topicconfig.Op{op, {Type: topicconfig.OpAppend, Name: topicconfig.CleanupPolicy, Value: "delete"}}, false)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ti, _ := c.node.Topic("cfg")
	if ti.Overrides[topicconfig.RetentionMs] != "1000" || ti.Overrides[topicconfig.DeleteRetentionMs] == "" ||
		ti.Overrides["segment.ms"] == "" || ti.Overrides[topicconfig.CleanupPolicy] != "compact,delete" {
		t.Fatalf("overrides after concurrent changes: %v", ti.Overrides)
	}
	if !ti.Config.Retention || ti.Config.RetentionMs != 1000 {
		t.Fatalf("resolved config %+v", ti.Config)
	}

	tests := []struct {
		name  string
		topic string
		ops   []topicconfig.Op
		want  error
	}{
		{"unknown topic", "nope", []topicconfig.Op{set(topicconfig.RetentionMs, "1")}, ErrUnknownTopic},
		{"unknown config", "cfg", []topicconfig.Op{set("nope", "1")}, topicconfig.ErrUnknown},
		{"bad value", "cfg", []topicconfig.Op{set(topicconfig.RetentionMs, "-5")}, topicconfig.ErrInvalid},
		{"append to a non-list", "cfg", []topicconfig.Op{{Type: topicconfig.OpAppend, Name: topicconfig.RetentionMs, Value: "1"}}, topicconfig.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.node.AlterTopicConfig(ctx, tt.topic, tt.ops, false); !errors.Is(err, tt.want) {
				t.Fatalf("AlterTopicConfig = %v, want %v", err, tt.want)
			}
		})
	}

	// validateOnly changes nothing; the changes survive a restart.
	if err := c.node.AlterTopicConfig(ctx, "cfg", []topicconfig.Op{{Type: topicconfig.OpDelete, Name: topicconfig.RetentionMs}}, true); err != nil {
		t.Fatal(err)
	}
	before, _ := c.node.Topic("cfg")
	c.restart()
	after, _ := c.node.Topic("cfg")
	if fmt.Sprint(after.Overrides) != fmt.Sprint(before.Overrides) || after.Overrides[topicconfig.RetentionMs] != "1000" {
		t.Fatalf("overrides after restart %v, before %v", after.Overrides, before.Overrides)
	}
}

// TestNodeTopicSharesPartitions: a topic lookup (every produce and fetch makes
// one) allocates nothing however many partitions the topic has, and an append
// to the returned partitions does not reach the node's metadata.
func TestNodeTopicSharesPartitions(t *testing.T) {
	c := newTestCluster(t)
	if _, err := c.node.CreateTopic(testCtx(t), "wide", 1000, map[string]string{topicconfig.RetentionMs: "1000"}, false); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { c.node.Topic("wide") }); allocs != 0 {
		t.Fatalf("Node.Topic of a 1,000-partition topic allocates %v times, want 0", allocs)
	}
	ti, _ := c.node.Topic("wide")
	_ = append(ti.Partitions, PartitionInfo{Partition: 1000})
	if again, _ := c.node.Topic("wide"); len(again.Partitions) != 1000 || cap(again.Partitions) != 1000 {
		t.Fatalf("after a caller's append: %d partitions (cap %d), want 1000", len(again.Partitions), cap(again.Partitions))
	}
}
