package broker

// AddOffsetsToTxn: v0-4
//
// Behavior:
//   - Authorization (authorizer.go): WRITE on the transactional id, else
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED; READ on the group, else
//     GROUP_AUTHORIZATION_FAILED.
//   - Adds the group's __consumer_offsets partition (the one its id hashes
//     to) to the producer's transaction, as Kafka does, so the transaction's
//     markers reach the group's offsets (sendOffsetsToTransaction). Creates
//     __consumer_offsets if it does not exist yet.
//   - Errors as AddPartitionsToTxn: routing errors, INVALID_PRODUCER_ID_MAPPING,
//     PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2, KIP-588),
//     CONCURRENT_TRANSACTIONS while the transaction ends; INVALID_GROUP_ID
//     for a group id too long to store.
//
// Version notes: v1 same as v0; v2 PRODUCER_FENCED; v3 flexible; v4
// (KIP-890) may answer TRANSACTION_ABORTABLE, which this broker never does.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.AddOffsetsToTxn.Int16(), 0, 4, (*Broker).handleAddOffsetsToTxn) }

func (b *Broker) handleAddOffsetsToTxn(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, req.TransactionalID):
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	case !b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group):
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	case len(req.Group) > maxGroupIDBytes:
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp, nil
	}
	ti, err := b.groups.offsetsTopicInfo(ctx, true)
	if err != nil {
		resp.ErrorCode = errCode(coordinatorError(err))
		return resp, nil
	}
	parts := topicPartitions{}
	parts.add(offsetsTopic, partitionFor(req.Group, len(ti.Partitions)))
	e := b.txns.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts)
	resp.ErrorCode = errCode(fencedFor(e, req.Version, 2))
	return resp, nil
}
