package broker

// CreateTopics: v2-7
//
// Behavior:
//   - Needs CREATE on the cluster or on the topic (authorizer.go), else
//     that topic answers TOPIC_AUTHORIZATION_FAILED.
//   - NumPartitions -1 means Config.DefaultPartitions; 0 or below -1 is
//     INVALID_PARTITIONS.
//   - ReplicationFactor -1, or 1 up to the number of live brokers, is
//     accepted; larger is INVALID_REPLICATION_FACTOR with a message, as Kafka
//     answers. The partitions then have the replicas of the Raft groups they
//     are placed on: the cluster's --replication-factor, capped by the number
//     of nodes (replication is per Raft group, not per topic). The response
//     (v5+) reports that count.
//   - Manual replica assignments are refused with INVALID_REQUEST.
//   - Configs are validated against internal/topicconfig (unknown names and bad
//     values are INVALID_CONFIG with the reason); a null value or a config
//     named twice is INVALID_CONFIG / INVALID_REQUEST.
//   - A topic named twice in one request is INVALID_REQUEST (answered once,
//     not created). Invalid names are INVALID_TOPIC_EXCEPTION.
//   - ValidateOnly checks everything without creating. TimeoutMillis > 0
//     bounds the wait for the creation to be applied (REQUEST_TIMED_OUT).
//
// Version notes:
//   - v5+: the response carries NumPartitions, ReplicationFactor and the
//     topic's resolved configs with their sources; v7+ also the topic id.
//   - v0-1 are not served (4.x clients start at v2).

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.CreateTopics.Int16(), 2, 7, (*Broker).handleCreateTopics) }

func (b *Broker) handleCreateTopics(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	ctx, cancel := requestTimeout(ctx, req.TimeoutMillis)
	defer cancel()

	topicName := func(rt kmsg.CreateTopicsRequestTopic) string { return rt.Topic }
	eachTopicOnce(req.Topics, topicName, func(rt kmsg.CreateTopicsRequestTopic, err error) {
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic = rt.Topic
		var ti raftfsm.TopicInfo
		if err == nil && !b.allowedTopicCreate(rc, rt.Topic) {
			err = kerr.TopicAuthorizationFailed
		}
		if err == nil {
			ti, err = b.createTopic(ctx, rt, req.ValidateOnly)
		}
		if err != nil {
			t.ErrorCode = b.codeFor(err, "create topic", logKeyTopic, rt.Topic)
			t.ErrorMessage = clientMessage(err)
			resp.Topics = append(resp.Topics, t)
			return
		}
		if req.Version >= 5 {
			t.TopicID = ti.ID
			t.NumPartitions = int32(len(ti.Partitions))
			t.ReplicationFactor = int16(max(1, len(b.node.Replicas(ti.Partitions[0].Group))))
			for _, v := range b.topicConfigValues(ti) {
				c := kmsg.NewCreateTopicsResponseTopicConfig()
				c.Name = v.def.Name
				c.Value = kmsg.StringPtr(v.value)
				c.Source = int8(v.source)
				t.Configs = append(t.Configs, c)
			}
		}
		resp.Topics = append(resp.Topics, t)
	})
	return resp, nil
}

// createTopic validates one requested topic and creates it (or, with
// validateOnly, only checks it). On validateOnly the returned TopicInfo
// describes the topic as it would be created.
func (b *Broker) createTopic(ctx context.Context, rt kmsg.CreateTopicsRequestTopic, validateOnly bool) (raftfsm.TopicInfo, error) {
	var none raftfsm.TopicInfo
	if err := validateTopicName(rt.Topic); err != nil {
		return none, err
	}
	if len(rt.ReplicaAssignment) > 0 {
		return none, newKafkaError(kerr.InvalidRequest, "manual replica assignment is not supported")
	}
	partitions := rt.NumPartitions
	switch {
	case partitions == -1:
		partitions = b.cfg.DefaultPartitions
	case partitions < 1:
		return none, newKafkaError(kerr.InvalidPartitions, "number of partitions must be at least 1, got %d", partitions)
	}
	live := max(1, len(b.node.Nodes()))
	switch rf := rt.ReplicationFactor; {
	case rf == -1 || (rf >= 1 && int(rf) <= live):
	case rf < 1:
		return none, newKafkaError(kerr.InvalidReplicationFactor, "replication factor must be at least 1, got %d", rf)
	default:
		return none, newKafkaError(kerr.InvalidReplicationFactor,
			"replication factor %d is larger than the %d available brokers", rf, live)
	}
	var overrides map[string]string
	for _, c := range rt.Configs {
		if overrides == nil {
			overrides = map[string]string{}
		}
		if _, dup := overrides[c.Name]; dup {
			return none, newKafkaError(kerr.InvalidRequest, "config %q is listed more than once", c.Name)
		}
		if c.Value == nil {
			return none, newKafkaError(kerr.InvalidConfig, "config %q has a null value", c.Name)
		}
		overrides[c.Name] = *c.Value
	}
	if err := topicconfig.ValidateAll(overrides); err != nil {
		return none, err
	}
	ti, err := b.node.CreateTopic(ctx, rt.Topic, partitions, overrides, validateOnly)
	if err != nil {
		return none, err
	}
	if validateOnly && ti.Name == "" {
		// The node checked the topic without building it: describe it from
		// the request.
		cfg, err := topicconfig.Resolve(overrides, b.cfg.TopicDefaults)
		if err != nil {
			return none, err
		}
		ti = raftfsm.TopicInfo{Name: rt.Topic, Partitions: make([]raftfsm.PartitionInfo, partitions),
			Overrides: overrides, Config: cfg}
	}
	return ti, nil
}

// maxTopicNameLen is Kafka's limit on topic names.
const maxTopicNameLen = 249

// validateTopicName applies Kafka's rules: 1-249 characters of ASCII
// letters, digits, '.', '_' and '-', and not "." or "..".
func validateTopicName(name string) error {
	switch {
	case name == "":
		return newKafkaError(kerr.InvalidTopicException, "topic name is empty")
	case name == "." || name == "..":
		return newKafkaError(kerr.InvalidTopicException, "topic name cannot be %q", name)
	case len(name) > maxTopicNameLen:
		return newKafkaError(kerr.InvalidTopicException, "topic name is %d characters, longer than %d", len(name), maxTopicNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return newKafkaError(kerr.InvalidTopicException,
				"topic name %q has %q at position %d: only ASCII letters, digits, '.', '_' and '-' are allowed", name, c, i)
		}
	}
	return nil
}

// requestTimeout bounds ctx by a request's TimeoutMillis when it is positive.
func requestTimeout(ctx context.Context, timeoutMillis int32) (context.Context, context.CancelFunc) {
	if timeoutMillis <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(timeoutMillis)*time.Millisecond)
}
