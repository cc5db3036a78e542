package broker

// AddPartitionsToTxn: v0-3
//
// Behavior:
//   - Authorization (authorizer.go): WRITE on the transactional id, else
//     every partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED; WRITE
//     on each topic, else its partitions answer TOPIC_AUTHORIZATION_FAILED
//     and the others OPERATION_NOT_ATTEMPTED.
//   - Adds partitions to the producer's transaction at its coordinator
//     (txn_coordinator.go): an Empty or Complete* transaction turns Ongoing
//     and its timeout starts counting. The partition set is written to
//     __transaction_state before the answer, so it survives a restart and a
//     new coordinator.
//   - Errors, in Kafka's order: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS
//     and COORDINATOR_NOT_AVAILABLE from routing; per partition
//     UNKNOWN_TOPIC_OR_PARTITION for one that does not exist, the others then
//     OPERATION_NOT_ATTEMPTED; INVALID_PRODUCER_ID_MAPPING for an unknown
//     transactional id or another producer id; PRODUCER_FENCED for another
//     epoch (INVALID_PRODUCER_EPOCH before v2, KIP-588);
//     CONCURRENT_TRANSACTIONS while the transaction ends. A coordinator error
//     is answered on every partition.
//
// Not implemented: v4+ (KIP-890, broker to coordinator batches; clients send
// v3 at most while no transaction.version feature is advertised).
//
// Version notes: v1 same as v0; v2 PRODUCER_FENCED; v3 flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.AddPartitionsToTxn.Int16(), 0, 3, (*Broker).handleAddPartitionsToTxn)
}

func (b *Broker) handleAddPartitionsToTxn(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	answer := func(code func(topic string, p int32) int16) {
		for _, rt := range req.Topics {
			st := kmsg.NewAddPartitionsToTxnResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				sp.Partition = p
				sp.ErrorCode = code(rt.Topic, p)
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
	}
	if !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, req.TransactionalID) {
		answer(func(string, int32) int16 { return kerr.TransactionalIDAuthorizationFailed.Code })
		return resp, nil
	}
	parts := topicPartitions{}
	denied := map[string]bool{}
	failed := false
	for _, rt := range req.Topics {
		if !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, rt.Topic) {
			denied[rt.Topic], failed = true, true
			continue
		}
		ti, ok := b.node.Topic(rt.Topic)
		for _, p := range rt.Partitions {
			if !ok || p < 0 || int(p) >= len(ti.Partitions) || isInternalTopic(rt.Topic) {
				failed = true
				continue
			}
			parts.add(rt.Topic, p)
		}
	}
	if failed {
		answer(func(topic string, p int32) int16 {
			switch {
			case denied[topic]:
				return kerr.TopicAuthorizationFailed.Code
			case parts.has(topic, p):
				return kerr.OperationNotAttempted.Code
			}
			return kerr.UnknownTopicOrPartition.Code
		})
		return resp, nil
	}
	e := b.txns.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts)
	code := errCode(fencedFor(e, req.Version, 2))
	answer(func(string, int32) int16 { return code })
	return resp, nil
}
