package broker

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroupFranzConsumersSplitPartitions runs three franz-go group consumers
// on one topic (eager range and cooperative-sticky, separately) and checks
// through kadm that they split the partitions without overlap, and that
// kadm's Lag (DescribeGroups + OffsetFetch + ListOffsets) sees the commits.
func TestGroupFranzConsumersSplitPartitions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"range", kgo.RangeBalancer()},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gb := newGroupBroker(t)
			const topic, partitions, perPartition = "split", 6, 5
			adm := kadm.NewClient(gb.client(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			prod := gb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			for p := int32(0); p < partitions; p++ {
				for i := 0; i < perPartition; i++ {
					r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k%d-%d", p, i)), Value: []byte("v")}
					if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
			}

			group := "g-" + tc.name
			var mu sync.Mutex
			seen := map[string]bool{}
			var consumers []*kgo.Client
			for i := 0; i < 3; i++ {
				cl := gb.client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
					kgo.Balancers(tc.balancer), kgo.SessionTimeout(6*time.Second),
					kgo.HeartbeatInterval(200*time.Millisecond), kgo.FetchMaxWait(200*time.Millisecond),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitInterval(100*time.Millisecond))
				consumers = append(consumers, cl)
			}
			var wg sync.WaitGroup
			pollCtx, stopPolling := context.WithCancel(ctx)
			for _, cl := range consumers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for pollCtx.Err() == nil {
						fs := cl.PollFetches(pollCtx)
						fs.EachRecord(func(r *kgo.Record) {
							mu.Lock()
							seen[string(r.Key)] = true
							mu.Unlock()
						})
					}
				}()
			}
			defer func() { stopPolling(); wg.Wait() }()

			waitUntil(t, 45*time.Second, "three members split every partition", func() error {
				gs, err := adm.DescribeGroups(ctx, group)
				if err != nil {
					return err
				}
				g := gs[group]
				if g.State != "Stable" || len(g.Members) != 3 {
					return fmt.Errorf("state %s with %d members", g.State, len(g.Members))
				}
				owner := map[int32]string{}
				for _, m := range g.Members {
					ca, ok := m.Assigned.AsConsumer()
					if !ok {
						return fmt.Errorf("member %s assignment does not decode", m.MemberID)
					}
					for _, at := range ca.Topics {
						for _, p := range at.Partitions {
							if o, dup := owner[p]; dup {
								return fmt.Errorf("partition %d owned by %s and %s", p, o, m.MemberID)
							}
							owner[p] = m.MemberID
						}
					}
				}
				if len(owner) != partitions {
					return fmt.Errorf("%d of %d partitions assigned", len(owner), partitions)
				}
				return nil
			})
			waitUntil(t, 45*time.Second, "every record read and committed", func() error {
				mu.Lock()
				n := len(seen)
				mu.Unlock()
				if n != partitions*perPartition {
					return fmt.Errorf("read %d of %d keys", n, partitions*perPartition)
				}
				lag, err := adm.Lag(ctx, group)
				if err != nil {
					return err
				}
				dl := lag[group]
				if dl.Error() != nil {
					return dl.Error()
				}
				var total int64
				var ps []int32
				for _, l := range dl.Lag[topic] {
					if l.Err != nil {
						return l.Err
					}
					total += l.Lag
					ps = append(ps, l.Partition)
				}
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				if len(ps) != partitions || total != 0 {
					return fmt.Errorf("lag %d over partitions %v", total, ps)
				}
				return nil
			})
		})
	}
}
