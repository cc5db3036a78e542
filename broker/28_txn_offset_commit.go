package broker

// TxnOffsetCommit: v0-4
//
// Behavior:
//   - Authorization (authorizer.go): WRITE on the transactional id, else
//     every partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED; READ on
//     the group, else GROUP_AUTHORIZATION_FAILED; READ on each topic, else
//     its partitions answer TOPIC_AUTHORIZATION_FAILED.
//   - Sent to the group's coordinator by a transactional producer
//     (sendOffsetsToTransaction) after AddOffsetsToTxn. The offsets are written
//     to __consumer_offsets as records staged in the producer's transaction
//     (group_txn.go): they become the group's committed offsets when the
//     transaction commits (where they are the newer record) and are dropped
//     when it aborts. Until then OffsetFetch with RequireStable answers
//     UNSTABLE_OFFSET_COMMIT for them.
//   - Per partition: UNKNOWN_TOPIC_OR_PARTITION for one that does not exist,
//     OFFSET_METADATA_TOO_LARGE above 4096 bytes; routing errors
//     (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE),
//     INVALID_GROUP_ID for an id too long to store, and INVALID_PRODUCER_EPOCH
//     for an epoch older than one already written, on every partition.
//
// Not implemented: the v3 member and generation checks (KIP-447) are not
// made: the offsets are accepted for any member, as for a group without
// members.
//
// Version notes: v2 LeaderEpoch; v3 flexible, GenerationID, MemberID,
// GroupInstanceID; v4 (KIP-890) may answer TRANSACTION_ABORTABLE, which this
// broker never does.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.TxnOffsetCommit.Int16(), 0, 4, (*Broker).handleTxnOffsetCommit) }

func (b *Broker) handleTxnOffsetCommit(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	var parts []commitPart
	for _, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, st)
	}
	known := 0
	var denied int16 // the code of every partition when the txn id or group is denied
	switch {
	case !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, req.TransactionalID):
		denied = kerr.TransactionalIDAuthorizationFailed.Code
	case !b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group):
		denied = kerr.GroupAuthorizationFailed.Code
	}
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		info, ok := b.node.Topic(rt.Topic)
		readable := denied == 0 && b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			if denied != 0 {
				sp.ErrorCode = denied
				continue
			}
			if !readable {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				continue
			}
			if !ok || rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			known++
			parts = append(parts, commitPart{topic: rt.Topic, partition: rp.Partition, code: &sp.ErrorCode,
				offset: committedOffset{Offset: rp.Offset, LeaderEpoch: rp.LeaderEpoch, Metadata: rp.Metadata, ExpireMs: -1}})
		}
	}
	if known == 0 {
		return resp, nil
	}
	if len(req.Group) > maxGroupIDBytes {
		for _, p := range parts {
			*p.code = kerr.InvalidGroupID.Code
		}
		return resp, nil
	}
	b.groups.txnCommit(ctx, req.Group, req.ProducerID, req.ProducerEpoch, parts)
	return resp, nil
}
