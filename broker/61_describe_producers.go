package broker

// DescribeProducers: v0
//
// Behavior:
//   - Lists the producer state each partition keeps (docs/ARCHITECTURE.md
//     rule 8) with each producer's open transaction (rule 7), as Kafka lists
//     its ProducerStateManager's active producers: producer id, epoch, the
//     last sequence of the current epoch (-1 when a marker or the
//     coordinator started it), LastTimestamp and CurrentTxnStartOffset (the
//     first offset of the open transaction, -1 without one).
//     kafka-transactions.sh describe-producers, find-hanging and abort
//     --start-offset read it.
//   - Served by the partition's leader once it has applied its whole log:
//     elsewhere NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE with no known
//     leader), so the admin client looks the leader up, as with Kafka.
//     Unknown topics and partitions answer UNKNOWN_TOPIC_OR_PARTITION.
//   - LastTimestamp is the append time of the producer's last batch or
//     marker (Kafka: the largest timestamp of its last batch), -1 for state
//     written before append times were kept.
//   - CoordinatorEpoch is -1: the shard does not keep the coordinator epoch
//     of a producer's last marker (Kafka reports -1 too until one arrived).
//     Keeping it, as Kafka's ProducerStateEntry does, needs a new version of
//     the stored producer state (shardstore/producer.go, codec.go), and
//     nothing reads it here: markers are not fenced by coordinator epoch.
//     kafka-transactions.sh abort then sends coordinator epoch 0, which
//     WriteTxnMarkers accepts.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() {
	register(kmsg.DescribeProducers.Int16(), 0, 0, (*Broker).handleDescribeProducers)
}

func (b *Broker) handleDescribeProducers(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	resp.Topics = make([]kmsg.DescribeProducersResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.DescribeProducersResponseTopicPartition, len(rt.Partitions))
		allowed := b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		for j, p := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = p
			if !allowed {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				continue
			}
			part, err := b.ledPartition(rt.Topic, p)
			if err == nil {
				sp.ActiveProducers, err = b.describeProducers(part)
			}
			if err != nil {
				sp.ErrorCode = b.codeFor(err, "describe producers", logKeyTopic, rt.Topic, logKeyPartition, p)
			}
		}
	}
	return resp, nil
}

// describeProducers lists the producers of one partition.
func (b *Broker) describeProducers(p raftfsm.PartitionInfo) ([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, error) {
	ps, err := b.store.Producers(p.Shard)
	if err != nil {
		return nil, err
	}
	out := make([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, 0, len(ps))
	for _, pi := range ps {
		ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
		ap.ProducerID = pi.ID
		ap.ProducerEpoch = int32(pi.Epoch)
		ap.LastSequence = pi.LastSequence
		ap.LastTimestamp = pi.LastAppendMs
		ap.CoordinatorEpoch = -1
		ap.CurrentTxnStartOffset = pi.TxnStartOffset
		out = append(out, ap)
	}
	return out, nil
}
