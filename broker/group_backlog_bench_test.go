package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shardcache/shardcache/shardstore"
)

// Scrape cost with many groups: benchScrapeGroups groups, each with a commit
// on every one of benchScrapePartitions partitions, over benchScrapeRecords
// live records per partition (distinct keys, so every record stays live).
const (
	benchScrapeGroups     = 1000
	benchScrapePartitions = 100
	benchScrapeRecords    = 1000
)

// setupScrapeBench fills a broker with the benchmark's records and groups.
// The records go through Raft; the groups' commits are put straight into the
// coordinator's memory (100,000 OffsetCommits through Raft would only slow the
// setup; a scrape reads the same memory either way).
func setupScrapeBench(b *testing.B) *groupBroker {
	b.Helper()
	gb := newGroupBroker(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := gb.Node.CreateTopic(ctx, "bench", benchScrapePartitions, nil, false); err != nil {
		b.Fatal(err)
	}
	for p := int32(0); p < benchScrapePartitions; p++ {
		recs := make([]shardstore.Record, benchScrapeRecords)
		for i := range recs {
			recs[i] = shardstore.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("value"), Timestamp: 1}
		}
		if _, err := gb.Node.Produce(ctx, "bench", p, shardstore.NoProducer, recs); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	c := gb.Broker.groups
	c.mu.Lock()
	for i := 0; i < benchScrapeGroups; i++ {
		name := fmt.Sprintf("group-%04d", i)
		g := newGroup(name, 0, now)
		g.protocolType = "consumer"
		for p := int32(0); p < benchScrapePartitions; p++ {
			// Positions spread over the log: half the records on average are
			// still to read.
			off := int64((i*37 + int(p)*101) % benchScrapeRecords)
			g.offsets[topicPartition{"bench", p}] = committedOffset{Offset: off, LeaderEpoch: -1, CommitMs: now.UnixMilli(), ExpireMs: -1}
		}
		c.groups[name] = g
	}
	c.mu.Unlock()
	return gb
}

// BenchmarkGroupScrape measures one /metrics scrape (a Gather of the
// broker's registry) and one Broker.Groups call (what /v1/status and the
// status page read) with 1,000 groups x 100 partitions, and one background
// refresh of the live backlog figures they read (group_backlog.go).
//
//	go test -run '^$' -bench BenchmarkGroupScrape -benchtime 5x ./broker/
func BenchmarkGroupScrape(b *testing.B) {
	gb := setupScrapeBench(b)
	// The first call starts the first refresh; scrapes read its figures.
	gb.Broker.Groups()
	gb.Broker.groups.backlog.wait()
	b.Run("metrics", func(b *testing.B) {
		for b.Loop() {
			if _, err := gb.Metrics.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("groups", func(b *testing.B) {
		for b.Loop() {
			if n := len(gb.Broker.Groups()); n != benchScrapeGroups {
				b.Fatalf("%d groups", n)
			}
		}
	})
	b.Run("refresh", func(b *testing.B) {
		for b.Loop() {
			gb.Broker.groups.backlog.refresh()
		}
	})
}
