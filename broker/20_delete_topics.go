package broker

// DeleteTopics: v1-6
//
// Behavior:
//   - Needs DELETE on each topic (authorizer.go), else that topic answers
//     TOPIC_AUTHORIZATION_FAILED (whether it exists or not).
//   - Each topic is deleted with its shards through cluster metadata; an
//     unknown name is UNKNOWN_TOPIC_OR_PARTITION, an unknown id (v6+)
//     UNKNOWN_TOPIC_ID. A topic named twice is answered once.
//   - TimeoutMillis > 0 bounds the wait for the deletion to be applied.
//   - Deleting a topic drops the offsets groups committed on it: each group
//     coordinator removes them through Raft when its metadata shows the topic
//     gone or re-created (dropDeletedTopicOffsets in group_offsets.go), so a
//     re-created topic starts without committed offsets, as in Kafka.
//   - Internal topics (__consumer_offsets, __transaction_state) are refused
//     with INVALID_TOPIC_EXCEPTION: deleting __consumer_offsets would drop
//     every group's offsets and state. Kafka's own brokers do not refuse it
//     (only its old CLI did); the code is the one Kafka answers for other
//     operations refused on internal topics (produce, DeleteRecords).
//
// Version notes:
//   - v6+: topics by name or by id; the response carries both.
//   - v5+: ErrorMessage. v0 is not served.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.DeleteTopics.Int16(), 1, 6, (*Broker).handleDeleteTopics) }

func (b *Broker) handleDeleteTopics(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	ctx, cancel := requestTimeout(ctx, req.TimeoutMillis)
	defer cancel()

	wanted := req.Topics
	if req.Version < 6 {
		wanted = nil
		for _, name := range req.TopicNames {
			t := kmsg.NewDeleteTopicsRequestTopic()
			t.Topic = kmsg.StringPtr(name)
			wanted = append(wanted, t)
		}
	}
	seenNames := map[string]bool{}
	seenIDs := map[[16]byte]bool{}
	for _, rt := range wanted {
		t := kmsg.NewDeleteTopicsResponseTopic()
		var name string
		var err error
		if rt.Topic != nil {
			name = *rt.Topic
			if seenNames[name] {
				continue
			}
			seenNames[name] = true
			t.Topic = kmsg.StringPtr(name)
			if ti, ok := b.node.Topic(name); ok {
				t.TopicID = ti.ID
			} else {
				err = raftfsm.ErrUnknownTopic
			}
		} else {
			if seenIDs[rt.TopicID] {
				continue
			}
			seenIDs[rt.TopicID] = true
			t.TopicID = rt.TopicID
			if ti, ok := b.node.TopicByID(rt.TopicID); ok && rt.TopicID != ([16]byte{}) {
				name = ti.Name
				t.Topic = kmsg.StringPtr(name)
			} else {
				err = kerr.UnknownTopicID
			}
		}
		if name != "" && !b.allowed(rc, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeTopic, name) {
			err = kerr.TopicAuthorizationFailed
		}
		if err == nil && isInternalTopic(name) {
			err = errInternalTopic("delete", name)
		}
		if err == nil {
			err = b.node.DeleteTopic(ctx, name)
		}
		if err != nil {
			t.ErrorCode = b.codeFor(err, "delete topic", logKeyTopic, name)
			if req.Version >= 5 {
				t.ErrorMessage = clientMessage(err)
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
