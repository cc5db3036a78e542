package broker

// ListOffsets: v1-7
//
// Behavior:
//   - Needs DESCRIBE on each topic (authorizer.go), else its partitions
//     answer TOPIC_AUTHORIZATION_FAILED.
//   - Timestamp -2 (earliest): the log start offset, which compaction never moves
//     (docs/ARCHITECTURE.md rule 6). -1 (latest): the high watermark, or with
//     IsolationLevel 1 (read_committed) the last stable offset, the first
//     offset of the oldest open transaction (rule 7). Both answer Timestamp -1.
//   - Timestamp -3 (max timestamp, v7, KIP-734): the offset and timestamp of the
//     readable record with the largest timestamp, the first of equals
//     (Store.MaxTimestamp), as Kafka answers from the batches its log still
//     holds; never an offset compaction took. -1/-1 when nothing is readable.
//   - A timestamp >= 0: the first readable offset whose timestamp is >= it
//     (Store.OffsetForTime, which skips compacted gaps); none -> offset -1,
//     timestamp -1.
//   - LeaderEpoch (v4+) is the group's Raft term; CurrentLeaderEpoch is checked as
//     in Fetch (UNKNOWN_LEADER_EPOCH / FENCED_LEADER_EPOCH).
//   - Served by the partition's leader only: elsewhere NOT_LEADER_OR_FOLLOWER
//     (LEADER_NOT_AVAILABLE while no leader is known). The leader first
//     commits a Barrier to confirm it still leads (Broker.verifyLeaders), so a
//     deposed leader that has not noticed yet (paused, cut off) answers
//     NOT_LEADER_OR_FOLLOWER rather than an offset older than one the new
//     leader already gave. A new leader that has
//     not applied its whole log yet answers latest with OFFSET_NOT_AVAILABLE
//     (LEADER_NOT_AVAILABLE below v5), as Kafka does while its high watermark
//     lags; other timestamps are answered from what it has.
//   - Reads the local store; unknown topics are not created.
//
// Not implemented: v0 (OldStyleOffsets, MaxNumOffsets) and v8+ (-4 earliest
// local and -5 tiered, KIP-405/1005). Other negative timestamps answer
// INVALID_REQUEST.
//
// Version notes: v1 has one Offset and Timestamp per partition; v2 adds
// IsolationLevel; v4 CurrentLeaderEpoch and LeaderEpoch; v6 is flexible; v7
// allows -3.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.ListOffsets.Int16(), 1, 7, (*Broker).handleListOffsets) }

// Special ListOffsets timestamps.
const (
	listOffsetsLatest       = -1
	listOffsetsEarliest     = -2
	listOffsetsMaxTimestamp = -3
)

func (b *Broker) handleListOffsets(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	resp.Topics = make([]kmsg.ListOffsetsResponseTopic, len(req.Topics))
	confirmed := b.verifyLeaders(ctx, b.listOffsetsGroups(req))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ListOffsetsResponseTopicPartition, len(rt.Partitions))
		info, ok := b.node.Topic(rt.Topic)
		describable := b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, rt.Topic)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Offset = -1
			sp.Timestamp = -1
			var err error
			switch {
			case !describable:
				err = kerr.TopicAuthorizationFailed
			case !ok:
				err = raftfsm.ErrUnknownTopic
			case rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions):
				err = raftfsm.ErrUnknownPartition
			default:
				err = b.listOffset(rc, info.Partitions[rp.Partition], rp, sp, req.IsolationLevel == 1, confirmed)
			}
			if err != nil {
				sp.ErrorCode = b.codeFor(err, "list offsets", logKeyTopic, rt.Topic, logKeyPartition, rp.Partition)
			}
		}
	}
	return resp, nil
}

// listOffsetsGroups returns the Raft groups this node leads among the
// partitions req asks for, each once, for verifyLeaders.
func (b *Broker) listOffsetsGroups(req *kmsg.ListOffsetsRequest) []uint32 {
	var groups []uint32
	seen := map[uint32]bool{}
	for i := range req.Topics {
		info, ok := b.node.Topic(req.Topics[i].Topic)
		if !ok {
			continue
		}
		for _, rp := range req.Topics[i].Partitions {
			if rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions) {
				continue
			}
			g := info.Partitions[rp.Partition].Group
			if !seen[g] && b.partitionRole(g) == roleLeader {
				seen[g] = true
				groups = append(groups, g)
			}
		}
	}
	return groups
}

// listOffset answers one partition; confirmed holds the groups whose
// leadership verifyLeaders confirmed for this request.
func (b *Broker) listOffset(rc *requestContext, p raftfsm.PartitionInfo, rp *kmsg.ListOffsetsRequestTopicPartition,
	sp *kmsg.ListOffsetsResponseTopicPartition, readCommitted bool, confirmed map[uint32]bool) error {
	switch b.partitionRole(p.Group) {
	case roleLeader:
		if !confirmed[p.Group] {
			// Deposed meanwhile (or it became ready after the check):
			// the client asks again.
			return b.notLeaderError(p.Group)
		}
	case roleLeaderLoading:
		if rp.Timestamp == listOffsetsLatest {
			if rc.version >= 5 {
				return kerr.OffsetNotAvailable
			}
			return kerr.LeaderNotAvailable
		}
	default:
		return b.notLeaderError(p.Group)
	}
	if err := b.checkLeaderEpoch(p.Group, rp.CurrentLeaderEpoch); err != nil {
		return err
	}
	st, err := b.store.State(p.Shard)
	if err != nil {
		return err
	}
	sp.LeaderEpoch = b.node.LeaderEpoch(p.Group)
	switch ts := rp.Timestamp; {
	case ts == listOffsetsEarliest:
		sp.Offset = st.LogStartOffset
	case ts == listOffsetsLatest:
		sp.Offset = st.HighWatermark
		if readCommitted {
			lso, err := b.store.LastStableOffset(p.Shard)
			if err != nil {
				return err
			}
			sp.Offset = min(lso, st.HighWatermark)
		}
	case ts == listOffsetsMaxTimestamp && rc.version >= 7:
		off, at, found, err := b.store.MaxTimestamp(p.Shard)
		if err != nil {
			return err
		}
		if found {
			sp.Offset, sp.Timestamp = off, at
		}
	case ts >= 0:
		off, at, found, err := b.store.OffsetForTime(p.Shard, ts)
		if err != nil {
			return err
		}
		if found {
			sp.Offset, sp.Timestamp = off, at
		}
	default:
		return newKafkaError(kerr.InvalidRequest, "unsupported ListOffsets timestamp %d", ts)
	}
	return nil
}
