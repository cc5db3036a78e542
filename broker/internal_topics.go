package broker

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
)

// internalTopic is a coordinator's compacted state topic (__consumer_offsets,
// __transaction_state), created on first use as Kafka does.
type internalTopic struct {
	name       string
	partitions int32
	what       string // for the log line: "offsets topic", ...

	createMu sync.Mutex // serializes creating it on this node
}

// info returns the topic, creating it (compacted) when create is set and it
// does not exist; without create a missing topic is COORDINATOR_NOT_AVAILABLE.
// A creation raced by another node finds the topic that node made.
func (t *internalTopic) info(ctx context.Context, node *raftfsm.Node, log *slog.Logger, create bool) (raftfsm.TopicInfo, error) {
	if ti, ok := node.Topic(t.name); ok {
		return ti, nil
	}
	if !create {
		return raftfsm.TopicInfo{}, errCoordinatorNA
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	if ti, ok := node.Topic(t.name); ok {
		return ti, nil
	}
	ti, err := node.CreateTopic(ctx, t.name, t.partitions,
		map[string]string{topicconfig.CleanupPolicy: "compact"}, false)
	if errors.Is(err, raftfsm.ErrTopicExists) {
		if ti, ok := node.Topic(t.name); ok {
			return ti, nil
		}
	}
	if err != nil {
		return raftfsm.TopicInfo{}, err
	}
	log.Info(t.what+" created", logKeyTopic, t.name, "partitions", t.partitions)
	return ti, nil
}
