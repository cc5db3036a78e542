package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicTimeout bounds one CreateTopics or DeleteTopics request.
const topicTimeout = 60 * time.Second

// CreateTopic creates a topic with the partitions and replication factor
// through any of seeds, with the broker's default configuration.
func CreateTopic(ctx context.Context, seeds []string, topic string, partitions, replicationFactor int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(cctx, int32(partitions), int16(replicationFactor), nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s (%d partitions, replication factor %d): %w", topic, partitions, replicationFactor, err)
	}
	return nil
}

// DeleteTopic deletes a topic through any of seeds.
func DeleteTopic(ctx context.Context, seeds []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return err
	}
	defer cl.Close()
	dctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	resps, err := kadm.NewClient(cl).DeleteTopics(dctx, topic)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	return nil
}

// PartitionLeaders returns each partition's leader as Metadata names it,
// asked through any of seeds. A partition without a leader (-1) is an error.
func PartitionLeaders(ctx context.Context, seeds []string, topic string) (map[int32]int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(mctx, topic)
	if err != nil {
		return nil, fmt.Errorf("metadata for %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("metadata for %s: topic missing", topic)
	}
	if td.Err != nil {
		return nil, fmt.Errorf("metadata for %s: %w", topic, td.Err)
	}
	out := make(map[int32]int32, len(td.Partitions))
	for _, p := range td.Partitions {
		if p.Err != nil {
			return nil, fmt.Errorf("metadata for %s/%d: %w", topic, p.Partition, p.Err)
		}
		if p.Leader < 0 {
			return nil, fmt.Errorf("metadata for %s/%d: no leader", topic, p.Partition)
		}
		out[p.Partition] = p.Leader
	}
	if len(out) == 0 {
		return nil, errors.New("metadata: no partitions")
	}
	return out, nil
}

// WaitTopics waits until every running node of c lists each topic with the
// given partition count and can read each partition's counters (its shard
// exists there), and Metadata names a leader for every partition. It polls
// every 100 ms, every second past 1,000 partitions (each /v1/status then
// runs to megabytes), and fails after timeout with what was missing.
func (c *Cluster) WaitTopics(ctx context.Context, topics map[string]int, timeout time.Duration) error {
	total := 0
	for _, n := range topics {
		total += n
	}
	every := 100 * time.Millisecond
	if total > 1000 {
		every = time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		why := c.topicsMissing(ctx, topics)
		if why == "" {
			return nil
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("topics not ready on every node within %v: %s", timeout, why)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// topicsMissing returns "" when WaitTopics is satisfied, else the first
// thing missing.
func (c *Cluster) topicsMissing(ctx context.Context, topics map[string]int) string {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		s, err := n.Status(ctx)
		if err != nil {
			return err.Error()
		}
		for name, want := range topics {
			t, ok := s.Topic(name)
			if !ok {
				return fmt.Sprintf("node %d does not list %s", n.ID, name)
			}
			if len(t.Partitions) != want {
				return fmt.Sprintf("node %d lists %d of %d partitions of %s", n.ID, len(t.Partitions), want, name)
			}
			for _, p := range t.Partitions {
				if p.Error != "" {
					return fmt.Sprintf("node %d: %s/%d: %s", n.ID, name, p.Partition, p.Error)
				}
			}
		}
	}
	var seeds []string
	for _, n := range c.Nodes {
		if n.Running() {
			seeds = append(seeds, n.KafkaAddr)
		}
	}
	for name, want := range topics {
		leaders, err := PartitionLeaders(ctx, seeds, name)
		if err != nil {
			return err.Error()
		}
		if len(leaders) != want {
			return fmt.Sprintf("metadata names leaders for %d of %d partitions of %s", len(leaders), want, name)
		}
	}
	return ""
}
