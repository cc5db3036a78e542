package broker

// OffsetDelete: v0
//
// Behavior (KIP-496):
//   - Authorization (authorizer.go): DELETE on the group, else
//     GROUP_AUTHORIZATION_FAILED (top level); READ on each topic, else its
//     partitions answer TOPIC_AUTHORIZATION_FAILED.
//   - Deletes committed offsets of a group with tombstones in
//     __consumer_offsets, in one Raft entry, written in the group's write turn
//     with no lock held (group_writes.go).
//   - Top level: GROUP_ID_NOT_FOUND for an unknown group, INVALID_GROUP_ID
//     (empty id), NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.
//   - Per partition: GROUP_SUBSCRIBED_TO_TOPIC when the group has members of
//     the consumer protocol subscribed to the topic;
//     UNKNOWN_TOPIC_OR_PARTITION for a topic or partition that does not exist.
//     A partition without a commit is answered with no error.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

func init() { register(kmsg.OffsetDelete.Int16(), 0, 0, (*Broker).handleOffsetDelete) }

func (b *Broker) handleOffsetDelete(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	c := b.groups
	if !b.allowed(rc, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	if !validGroupID(req.Group) {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	_, p, err := c.route(ctx, req.Group)
	if err != nil {
		resp.ErrorCode = b.codeFor(err, "offset delete", logKeyGroup, req.Group)
		return resp, nil
	}
	g := c.lookup(req.Group, p, false)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp, nil
	}
	if err := g.acquire(ctx); err != nil {
		resp.ErrorCode = c.writeErrorCode(err, "offset delete", req.Group)
		return resp, nil
	}
	defer g.release()
	g.mu.Lock()
	if g.state == stateDead {
		g.mu.Unlock()
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp, nil
	}
	subscribed := map[string]bool{}
	if g.state != stateEmpty {
		subscribed = g.subscribedTopics()
	}
	var recs []shardstore.Record
	var del []topicPartition
	var codes []*int16
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		info, found := b.node.Topic(rt.Topic)
		readable := b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case !readable:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case subscribed[rt.Topic]:
				sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			case !found || rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions):
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				tp := topicPartition{rt.Topic, rp.Partition}
				if _, ok := g.offsets[tp]; ok {
					recs = append(recs, shardstore.Record{Key: offsetKey(req.Group, rt.Topic, rp.Partition)})
					del = append(del, tp)
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	g.mu.Unlock()
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			codes = append(codes, &resp.Topics[i].Partitions[j].ErrorCode)
		}
	}
	if len(recs) == 0 {
		return resp, nil
	}
	// Written in the group's turn, with no lock held (group_writes.go).
	if err := c.write(ctx, g, recs); err != nil {
		code := c.writeErrorCode(err, "offset delete", req.Group)
		for _, cp := range codes {
			if *cp == 0 {
				*cp = code
			}
		}
		return resp, nil
	}
	g.mu.Lock()
	for _, tp := range del {
		delete(g.offsets, tp)
	}
	g.mu.Unlock()
	return resp, nil
}

// decodeSubscription returns the topics of a consumer protocol subscription
// (nil when it does not decode).
func decodeSubscription(md []byte) []string {
	var s kmsg.ConsumerMemberMetadata
	if err := s.ReadFrom(md); err != nil {
		return nil
	}
	return s.Topics
}
