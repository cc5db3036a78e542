package broker

// OffsetCommit: v2-8
//
// Behavior:
//   - Each committed offset is a record in __consumer_offsets (key group +
//     topic + partition) written through Raft before the answer, so it
//     survives a restart; commit metadata is stored and returned by
//     OffsetFetch. All partitions of a request go in one Raft entry, written
//     in the group's write turn with no lock held (group_writes.go): a slow
//     write holds up that group's next writes, never other groups.
//   - Memberless commits (generation -1, empty member id, as Flink's
//     KafkaSource sends them) are accepted while the group has no members;
//     the group is created if needed.
//   - Errors in Kafka's order. First, per partition, UNKNOWN_TOPIC_OR_PARTITION
//     for a topic or partition that does not exist (answered before the group
//     is looked at; a request with nothing else is answered there). Then for
//     the rest, as ClassicGroup.validateOffsetCommit: COORDINATOR_NOT_AVAILABLE
//     (group being removed); memberless commits accepted while Empty;
//     FENCED_INSTANCE_ID / UNKNOWN_MEMBER_ID (v7 InstanceID, then member id);
//     ILLEGAL_GENERATION; REBALANCE_IN_PROGRESS while the group completes a
//     rebalance (commits during PreparingRebalance are allowed, for
//     onPartitionsRevoked). Last, per partition, OFFSET_METADATA_TOO_LARGE
//     above 4096 bytes. A commit refreshes the member's session.
//   - Authorization (authorizer.go), first: READ on the group, else every
//     partition answers GROUP_AUTHORIZATION_FAILED; READ on each topic, else
//     its partitions answer TOPIC_AUTHORIZATION_FAILED.
//   - The empty group id is a group like any other, as in Kafka (kept for
//     backwards compatibility); INVALID_GROUP_ID only for an id too long to
//     store. NOT_COORDINATOR and COORDINATOR_LOAD_IN_PROGRESS from routing.
//
// Not implemented: v0-1 (below the Java 4.x floor, KIP-896) and v9+ (KIP-848
// member epochs, topic ids).
//
// Version notes: v2-4 RetentionTimeMillis (> 0 sets that offset's expiry, -1
// the broker's retention); v3 ThrottleMillis; v6 LeaderEpoch (stored and
// returned by OffsetFetch v5+); v7 InstanceID; v8 flexible.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.OffsetCommit.Int16(), 2, 8, (*Broker).handleOffsetCommit) }

func (b *Broker) handleOffsetCommit(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	var parts []commitPart
	resp.Topics = make([]kmsg.OffsetCommitResponseTopic, len(req.Topics))
	expireMs := int64(-1)
	if req.Version <= 4 && req.RetentionTimeMillis > 0 {
		expireMs = time.Now().UnixMilli() + req.RetentionTimeMillis
	}
	groupOK := b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group)
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		topicOK := groupOK && b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			if !groupOK {
				sp.ErrorCode = kerr.GroupAuthorizationFailed.Code
				continue
			}
			if !topicOK {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				continue
			}
			epoch := rp.LeaderEpoch
			if req.Version < 6 {
				epoch = -1
			}
			parts = append(parts, commitPart{
				topic:     rt.Topic,
				partition: rp.Partition,
				offset:    committedOffset{Offset: rp.Offset, LeaderEpoch: epoch, Metadata: rp.Metadata, ExpireMs: expireMs},
				code:      &sp.ErrorCode,
			})
		}
	}
	if len(parts) > 0 {
		b.groups.commit(ctx, req.Group, req.MemberID, req.InstanceID, req.Generation, parts)
	}
	return resp, nil
}
