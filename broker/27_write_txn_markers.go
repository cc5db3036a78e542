package broker

// WriteTxnMarkers: v1-2
//
// Behavior:
//   - Writes a COMMIT or ABORT marker for a producer into each named
//     partition this node leads (raftfsm Node.WriteTxnMarker, the command
//     the transaction coordinator uses), committing or dropping what the
//     producer staged there (docs/ARCHITECTURE.md rule 7). The marker's
//     epoch becomes the producer's in that partition. Kafka's brokers send
//     it to each other; here the coordinator proposes markers directly, and
//     this API serves the admin client's abortTransaction
//     (kafka-transactions.sh abort), which sends one ABORT marker for a
//     hanging transaction to the partition's leader, with the producer id,
//     epoch and coordinator epoch that DescribeProducers showed.
//   - Per partition: UNKNOWN_TOPIC_OR_PARTITION for an unknown one;
//     NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE with no known leader) on
//     a node that does not lead it, as in Kafka, so the client finds the
//     leader; INVALID_PRODUCER_EPOCH for an epoch older than the
//     producer's; INVALID_REQUEST for a negative producer id or epoch;
//     REQUEST_TIMED_OUT when the write is not applied within 30 s.
//   - The coordinator epoch is stored in the control record but not
//     checked: the shard does not keep the last coordinator epoch per
//     producer, so TRANSACTION_COORDINATOR_FENCED is never answered.
//
// Version notes: v0 is gone since Kafka 4.0 (KIP-896); v1 is flexible; v2
// adds TransactionVersion (KIP-890), which is ignored: a marker is written
// the same way for every version, and this broker advertises no
// transaction.version feature, so clients run transactions v1.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

func init() {
	register(kmsg.WriteTxnMarkers.Int16(), 1, 2, (*Broker).handleWriteTxnMarkers)
}

func (b *Broker) handleWriteTxnMarkers(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.WriteTxnMarkersRequest)
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	ctx, cancel := context.WithTimeout(ctx, txnWriteTimeout)
	defer cancel()
	// Kafka: CLUSTER_ACTION on the cluster, else every partition is refused.
	allowed := b.allowedCluster(rc, kmsg.ACLOperationClusterAction)
	resp.Markers = make([]kmsg.WriteTxnMarkersResponseMarker, len(req.Markers))
	for i := range req.Markers {
		rm := &req.Markers[i]
		sm := &resp.Markers[i]
		*sm = kmsg.NewWriteTxnMarkersResponseMarker()
		sm.ProducerID = rm.ProducerID
		marker := shardstore.Marker{ProducerID: rm.ProducerID, ProducerEpoch: rm.ProducerEpoch,
			Commit: rm.Committed, CoordinatorEpoch: rm.CoordinatorEpoch}
		sm.Topics = make([]kmsg.WriteTxnMarkersResponseMarkerTopic, len(rm.Topics))
		for j := range rm.Topics {
			rt := &rm.Topics[j]
			st := &sm.Topics[j]
			*st = kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			st.Topic = rt.Topic
			st.Partitions = make([]kmsg.WriteTxnMarkersResponseMarkerTopicPartition, len(rt.Partitions))
			for k, p := range rt.Partitions {
				sp := &st.Partitions[k]
				*sp = kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				sp.Partition = p
				err := error(kerr.InvalidRequest)
				if !allowed {
					err = kerr.ClusterAuthorizationFailed
				} else if rm.ProducerID >= 0 && rm.ProducerEpoch >= 0 {
					err = b.writeTxnMarker(ctx, rt.Topic, p, marker)
				}
				if err != nil {
					sp.ErrorCode = b.codeFor(err, "write txn markers", logKeyTopic, rt.Topic, logKeyPartition, p)
				}
			}
		}
	}
	return resp, nil
}

// writeTxnMarker writes m into partition p of topic, which this node must
// lead.
func (b *Broker) writeTxnMarker(ctx context.Context, topic string, p int32, m shardstore.Marker) error {
	if _, err := b.ledPartition(topic, p); err != nil {
		return err
	}
	return b.node.WriteTxnMarker(ctx, topic, p, m)
}
