package broker

// DeleteRecords: v0-2
//
// Behavior:
//   - Needs DELETE on each topic (authorizer.go), else its partitions
//     answer TOPIC_AUTHORIZATION_FAILED.
//   - Moves each partition's log start offset up to the requested offset
//     through the partition's Raft group (raftfsm Node.DeleteRecordsBefore,
//     the command retention uses), so every replica drops the same records at
//     the same log position. The answer's LowWatermark is the log start
//     offset after the command applied; Fetch and ListOffsets earliest read
//     the same value (docs/ARCHITECTURE.md rule 6).
//   - Offset -1 means the high watermark (delete everything), as in Kafka.
//     An offset above the high watermark, or below -1, answers
//     OFFSET_OUT_OF_RANGE. An offset at or below the current log start
//     changes nothing and answers the current log start.
//   - Kafka's policy: records are deleted only from topics whose
//     cleanup.policy names delete; a compact-only topic answers
//     POLICY_VIOLATION, an internal topic INVALID_TOPIC_EXCEPTION.
//   - Served by the partition's leader once it has applied its whole log:
//     elsewhere NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE with no known
//     leader). Unknown topics and partitions answer UNKNOWN_TOPIC_OR_PARTITION.
//   - TimeoutMillis bounds the wait for the Raft commit (REQUEST_TIMED_OUT).
//     Partitions are proposed concurrently.
//
// Version notes: v1 is v0 with throttling; v2 is flexible.

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.DeleteRecords.Int16(), 0, 2, (*Broker).handleDeleteRecords) }

func (b *Broker) handleDeleteRecords(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	ctx, cancel := requestTimeout(ctx, req.TimeoutMillis)
	defer cancel()
	resp.Topics = make([]kmsg.DeleteRecordsResponseTopic, len(req.Topics))
	var wg sync.WaitGroup
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.DeleteRecordsResponseTopicPartition, len(rt.Partitions))
		info, ok := b.node.Topic(rt.Topic)
		deletable := b.allowed(rc, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeTopic, rt.Topic)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			var err error
			switch {
			case !deletable:
				err = kerr.TopicAuthorizationFailed
			case isInternalTopic(rt.Topic):
				err = newKafkaError(kerr.InvalidTopicException, "records of internal topic %s cannot be deleted", rt.Topic)
			case !ok:
				err = raftfsm.ErrUnknownTopic
			case rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions):
				err = raftfsm.ErrUnknownPartition
			case !info.Config.Retention:
				err = newKafkaError(kerr.PolicyViolation,
					"records of topic %s cannot be deleted: its cleanup.policy does not name delete", rt.Topic)
			}
			if err != nil {
				sp.ErrorCode = b.codeFor(err, "delete records", logKeyTopic, rt.Topic, logKeyPartition, rp.Partition)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				low, err := b.deleteRecords(ctx, info, info.Partitions[rp.Partition], rp.Offset)
				if err != nil {
					sp.ErrorCode = b.codeFor(err, "delete records", logKeyTopic, rt.Topic, logKeyPartition, rp.Partition)
					return
				}
				sp.LowWatermark = low
			}()
		}
	}
	wg.Wait()
	return resp, nil
}

// deleteRecords moves one partition's log start up to offset (-1: the high
// watermark) and returns the log start after the command applied.
func (b *Broker) deleteRecords(ctx context.Context, info raftfsm.TopicInfo, p raftfsm.PartitionInfo, offset int64) (int64, error) {
	if b.partitionRole(p.Group) != roleLeader {
		return -1, b.notLeaderError(p.Group)
	}
	st, err := b.store.State(p.Shard)
	if err != nil {
		return -1, err
	}
	switch {
	case offset == -1:
		offset = st.HighWatermark
	case offset < 0 || offset > st.HighWatermark:
		return -1, kerr.OffsetOutOfRange
	}
	if offset > st.LogStartOffset {
		if err := b.node.DeleteRecordsBefore(ctx, info.Name, p.Partition, offset); err != nil {
			return -1, err
		}
	}
	if st, err = b.store.State(p.Shard); err != nil {
		return -1, err
	}
	return st.LogStartOffset, nil
}
