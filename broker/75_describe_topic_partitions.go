package broker

// DescribeTopicPartitions: v0
//
// Behavior (KIP-966; `kafka-topics --describe` uses it instead of Metadata):
//   - Authorization (authorizer.go): the list of every topic holds only the
//     topics the principal may DESCRIBE; a named one it may not answers
//     TOPIC_AUTHORIZATION_FAILED.
//   - An empty topic list describes every topic; otherwise the named ones.
//     Topics are answered in name order, each with its id and its partitions
//     as Metadata describes them (leader, leader epoch = the group's Raft
//     term, replicas = placement, ISR = the group's voters). An unknown named
//     topic answers UNKNOWN_TOPIC_OR_PARTITION; it never creates one.
//   - Pagination: at most ResponsePartitionLimit partitions per response
//     (capped, like Kafka's max.request.partition.size.limit, at 2,000; a
//     non-positive limit means the cap). When partitions remain, NextCursor
//     names the first one left out, and a request with that Cursor resumes
//     there: topics before the cursor's name are skipped, and the cursor's
//     topic starts at its partition. A cursor topic missing from a non-empty
//     topic list answers INVALID_REQUEST on every topic, as Kafka does.
//   - EligibleLeaderReplicas and LastKnownELR are empty (no KIP-966 ELR:
//     Raft elects among the voters); OfflineReplicas is empty.
//   - AuthorizedOperations: the KIP-430 bit field of the principal's
//     operations on the topic, always (as Kafka answers it).

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() {
	register(kmsg.DescribeTopicPartitions.Int16(), 0, 0, (*Broker).handleDescribeTopicPartitions)
}

// maxDescribePartitions caps partitions per DescribeTopicPartitions response
// (Kafka's max.request.partition.size.limit default).
const maxDescribePartitions = 2000

func (b *Broker) handleDescribeTopicPartitions(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeTopicPartitionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTopicPartitionsResponse)
	limit := int(req.ResponsePartitionLimit)
	if limit <= 0 || limit > maxDescribePartitions {
		limit = maxDescribePartitions
	}

	// names: the topics to describe, sorted and deduplicated.
	var names []string
	if len(req.Topics) == 0 {
		for _, ti := range b.node.Topics() {
			if b.permits(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, ti.Name) {
				names = append(names, ti.Name)
			}
		}
	} else {
		for _, t := range req.Topics {
			names = append(names, t.Topic)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)

	startPartition := int32(0)
	if c := req.Cursor; c != nil {
		if len(req.Topics) > 0 && !slices.Contains(names, c.Topic) {
			for _, name := range names {
				t := kmsg.NewDescribeTopicPartitionsResponseTopic()
				t.Topic = kmsg.StringPtr(name)
				t.ErrorCode = kerr.InvalidRequest.Code
				resp.Topics = append(resp.Topics, t)
			}
			return resp, nil
		}
		i, _ := slices.BinarySearch(names, c.Topic)
		names = names[i:]
		if len(names) > 0 && names[0] == c.Topic {
			startPartition = max(c.Partition, 0)
		}
	}

	left := limit
	for i, name := range names {
		from := int32(0)
		if i == 0 {
			from = startPartition
		}
		if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name) {
			t := kmsg.NewDescribeTopicPartitionsResponseTopic()
			t.Topic = kmsg.StringPtr(name)
			t.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, t)
			continue
		}
		ti, ok := b.node.Topic(name)
		if !ok {
			t := kmsg.NewDescribeTopicPartitionsResponseTopic()
			t.Topic = kmsg.StringPtr(name)
			t.ErrorCode = b.codeFor(raftfsm.ErrUnknownTopic, "describe topic partitions", logKeyTopic, name)
			resp.Topics = append(resp.Topics, t)
			continue
		}
		if left == 0 {
			resp.NextCursor = nextTopicCursor(name, from)
			break
		}
		t, next := b.describeTopicPartitions(ti, from, left)
		t.AuthorizedOperations = b.authorizedOperations(rc, kmsg.ACLResourceTypeTopic, name, topicOperations)
		resp.Topics = append(resp.Topics, t)
		left -= len(t.Partitions)
		if next >= 0 {
			resp.NextCursor = nextTopicCursor(name, next)
			break
		}
	}
	return resp, nil
}

func nextTopicCursor(topic string, partition int32) *kmsg.DescribeTopicPartitionsResponseNextCursor {
	c := kmsg.NewDescribeTopicPartitionsResponseNextCursor()
	c.Topic, c.Partition = topic, partition
	return &c
}

// describeTopicPartitions describes up to limit partitions of ti from
// partition from on. next is the first partition left out, -1 when none is.
func (b *Broker) describeTopicPartitions(ti raftfsm.TopicInfo, from int32, limit int) (t kmsg.DescribeTopicPartitionsResponseTopic, next int32) {
	t = kmsg.NewDescribeTopicPartitionsResponseTopic()
	t.Topic = kmsg.StringPtr(ti.Name)
	t.TopicID = ti.ID
	t.IsInternal = isInternalTopic(ti.Name)
	t.Partitions = []kmsg.DescribeTopicPartitionsResponseTopicPartition{}
	next = -1
	for _, pi := range ti.Partitions {
		if pi.Partition < from {
			continue
		}
		if len(t.Partitions) == limit {
			next = pi.Partition
			break
		}
		p := kmsg.NewDescribeTopicPartitionsResponseTopicPartition()
		p.Partition = pi.Partition
		p.Replicas = b.node.Replicas(pi.Group)
		p.ISR = b.node.InSync(pi.Group)
		p.EligibleLeaderReplicas = []int32{}
		p.LastKnownELR = []int32{}
		p.OfflineReplicas = []int32{}
		if leader, epoch, ok := b.liveGroupLeader(pi.Group); ok {
			p.LeaderID, p.LeaderEpoch = leader, epoch
		} else {
			p.LeaderID, p.LeaderEpoch = -1, -1
			p.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		if p.Replicas == nil {
			p.Replicas = []int32{}
		}
		if p.ISR == nil {
			p.ISR = []int32{}
		}
		t.Partitions = append(t.Partitions, p)
	}
	return t, next
}
