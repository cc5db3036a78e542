package broker

// OffsetFetch: v1-8
//
// Behavior:
//   - Answers each requested partition's committed offset, leader epoch (v5+)
//     and commit metadata; a partition without a commit answers offset -1,
//     epoch -1, empty metadata and no error, as Kafka does (also for an unknown
//     group or topic). A null topic list (v2+) answers every committed offset
//     of the group.
//   - Offsets committed on a topic that was since deleted (or deleted and
//     re-created) are not answered, even before the coordinator has removed
//     them: each offset carries the id of the topic it was committed on.
//   - v8 asks for several groups at once; each group gets its own error code.
//   - RequireStable (v7+): a partition with offsets staged by TxnOffsetCommit
//     in a transaction still open answers UNSTABLE_OFFSET_COMMIT (retriable)
//     instead of its offset; without the flag the last committed offset.
//   - The empty group id is a group like any other, as in Kafka.
//   - The coordinator first confirms through Raft that it still leads the
//     group's offsets partition (coordinator.fetchOffsetsStable), so a
//     deposed one never answers an offset older than its successor holds.
//   - Errors (v1: in every partition; v2-7: top level; v8: per group):
//     NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
//     INVALID_GROUP_ID for an id too long to store.
//   - Authorization (authorizer.go): DESCRIBE on the group, else
//     GROUP_AUTHORIZATION_FAILED where the other group errors go; DESCRIBE
//     on each named topic, else TOPIC_AUTHORIZATION_FAILED in its
//     partitions; the null topic list answers only describable topics.
//
// Not implemented: v0 (ZooKeeper offsets) and v9+ (KIP-848 member epochs,
// topic ids).
//
// Version notes: v2 top-level ErrorCode and null topics; v3 ThrottleMillis; v5
// LeaderEpoch; v6+ flexible; v7 RequireStable; v8 Groups batch.

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.OffsetFetch.Int16(), 1, 8, (*Broker).handleOffsetFetch) }

// fetchedPartition is one partition's answer.
type fetchedPartition struct {
	partition int32
	offset    committedOffset
	found     bool
	code      int16
}

// fetchedTopic is one topic's answer.
type fetchedTopic struct {
	topic      string
	partitions []fetchedPartition
}

func (b *Broker) handleOffsetFetch(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var topics map[string][]int32
			var order []string
			if rg.Topics != nil {
				topics = map[string][]int32{}
				for _, t := range rg.Topics {
					if _, ok := topics[t.Topic]; !ok {
						order = append(order, t.Topic)
					}
					topics[t.Topic] = append(topics[t.Topic], t.Partitions...)
				}
			}
			code, answer := b.offsetFetchGroup(ctx, rc, rg.Group, topics, order, req.RequireStable)
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group = rg.Group
			g.ErrorCode = code
			for _, ft := range answer {
				t := kmsg.NewOffsetFetchResponseGroupTopic()
				t.Topic = ft.topic
				for _, fp := range ft.partitions {
					p := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					p.Partition = fp.partition
					fillFetched(fp, &p.Offset, &p.LeaderEpoch, &p.Metadata)
					p.ErrorCode = fp.code
					t.Partitions = append(t.Partitions, p)
				}
				g.Topics = append(g.Topics, t)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp, nil
	}

	var topics map[string][]int32
	var order []string
	if req.Topics != nil || req.Version < 2 {
		topics = map[string][]int32{}
		for _, t := range req.Topics {
			if _, ok := topics[t.Topic]; !ok {
				order = append(order, t.Topic)
			}
			topics[t.Topic] = append(topics[t.Topic], t.Partitions...)
		}
	}
	code, answer := b.offsetFetchGroup(ctx, rc, req.Group, topics, order, req.Version >= 7 && req.RequireStable)
	if req.Version >= 2 {
		resp.ErrorCode = code
	}
	if code != 0 && req.Version >= 2 {
		return resp, nil
	}
	for _, ft := range answer {
		t := kmsg.NewOffsetFetchResponseTopic()
		t.Topic = ft.topic
		for _, fp := range ft.partitions {
			p := kmsg.NewOffsetFetchResponseTopicPartition()
			p.Partition = fp.partition
			p.ErrorCode = code
			fillFetched(fp, &p.Offset, &p.LeaderEpoch, &p.Metadata)
			if fp.code != 0 {
				p.ErrorCode = fp.code
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

func fillFetched(fp fetchedPartition, offset *int64, epoch *int32, metadata **string) {
	*offset, *epoch = -1, -1
	empty := ""
	*metadata = &empty
	if fp.found {
		*offset = fp.offset.Offset
		*epoch = fp.offset.LeaderEpoch
		if fp.offset.Metadata != nil {
			*metadata = fp.offset.Metadata
		}
	}
}

// offsetFetchGroup answers one group: the requested partitions (topics
// non-nil, in order) or every committed partition (topics nil).
func (b *Broker) offsetFetchGroup(ctx context.Context, rc *requestContext, groupID string, topics map[string][]int32, order []string, requireStable bool) (int16, []fetchedTopic) {
	var offsets map[topicPartition]committedOffset
	var unstable map[topicPartition]bool
	var code int16
	if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, groupID) {
		code = kerr.GroupAuthorizationFailed.Code
	} else if len(groupID) > maxGroupIDBytes {
		code = kerr.InvalidGroupID.Code
	} else {
		var err error
		offsets, unstable, err = b.groups.fetchOffsetsStable(ctx, groupID)
		if !requireStable {
			unstable = nil
		}
		if err != nil {
			code = b.codeFor(err, "offset fetch", logKeyGroup, groupID)
		}
	}
	if topics == nil {
		if code != 0 {
			return code, nil
		}
		byTopic := map[string][]fetchedPartition{}
		for tp, o := range offsets {
			byTopic[tp.topic] = append(byTopic[tp.topic], fetchedPartition{partition: tp.partition, offset: o, found: true})
		}
		var out []fetchedTopic
		for t, ps := range byTopic {
			if !b.permits(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t) {
				continue // the full list holds only topics the principal may describe
			}
			slices.SortFunc(ps, func(a, b fetchedPartition) int { return int(a.partition - b.partition) })
			out = append(out, fetchedTopic{topic: t, partitions: ps})
		}
		slices.SortFunc(out, func(a, b fetchedTopic) int { return strings.Compare(a.topic, b.topic) })
		return 0, out
	}
	out := make([]fetchedTopic, 0, len(order))
	for _, t := range order {
		ft := fetchedTopic{topic: t}
		describable := code != 0 || b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t)
		for _, p := range topics[t] {
			o, ok := offsets[topicPartition{t, p}]
			fp := fetchedPartition{partition: p, offset: o, found: ok}
			if !describable {
				fp = fetchedPartition{partition: p, code: kerr.TopicAuthorizationFailed.Code}
			} else if unstable[topicPartition{t, p}] {
				fp = fetchedPartition{partition: p, code: kerr.UnstableOffsetCommit.Code}
			}
			ft.partitions = append(ft.partitions, fp)
		}
		out = append(out, ft)
	}
	return code, out
}
