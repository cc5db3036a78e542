package broker

// CreatePartitions: v0-3
//
// Behavior:
//   - Needs ALTER on each topic (authorizer.go), else that topic answers
//     TOPIC_AUTHORIZATION_FAILED.
//   - Grows a topic to Count partitions; a Count not above the current count
//     is INVALID_PARTITIONS with both numbers in the message.
//   - Manual assignments are not supported: INVALID_REQUEST.
//   - A topic named twice is INVALID_REQUEST (answered once); an unknown topic
//     is UNKNOWN_TOPIC_OR_PARTITION. Every requested topic gets an answer.
//   - ValidateOnly checks without creating; TimeoutMillis > 0 bounds the wait.
//   - Internal topics (__consumer_offsets, __transaction_state) are refused
//     with INVALID_TOPIC_EXCEPTION: a group's coordinator is chosen by its
//     partition count, so growing it would move every group (see
//     20_delete_topics.go for the choice of code).
//
// Version notes:
//   - v2+ is flexible; v3 is v2 (it marks client support for throttling).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.CreatePartitions.Int16(), 0, 3, (*Broker).handleCreatePartitions) }

func (b *Broker) handleCreatePartitions(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	ctx, cancel := requestTimeout(ctx, req.TimeoutMillis)
	defer cancel()

	topicName := func(rt kmsg.CreatePartitionsRequestTopic) string { return rt.Topic }
	eachTopicOnce(req.Topics, topicName, func(rt kmsg.CreatePartitionsRequestTopic, err error) {
		t := kmsg.NewCreatePartitionsResponseTopic()
		t.Topic = rt.Topic
		switch ti, ok := b.node.Topic(rt.Topic); {
		case err != nil: // listed more than once
		case !b.allowed(rc, kmsg.ACLOperationAlter, kmsg.ACLResourceTypeTopic, rt.Topic):
			err = kerr.TopicAuthorizationFailed
		case isInternalTopic(rt.Topic):
			err = errInternalTopic("add partitions to", rt.Topic)
		case rt.Assignment != nil:
			err = newKafkaError(kerr.InvalidRequest, "manual partition assignment is not supported")
		case !ok:
			err = raftfsm.ErrUnknownTopic
		case rt.Count <= int32(len(ti.Partitions)):
			err = newKafkaError(kerr.InvalidPartitions, "topic %q has %d partitions; the new count %d must be larger",
				rt.Topic, len(ti.Partitions), rt.Count)
		default:
			err = b.node.CreatePartitions(ctx, rt.Topic, rt.Count, req.ValidateOnly)
		}
		if err != nil {
			t.ErrorCode = b.codeFor(err, "create partitions", logKeyTopic, rt.Topic)
			t.ErrorMessage = clientMessage(err)
		}
		resp.Topics = append(resp.Topics, t)
	})
	return resp, nil
}
