package broker

// Metadata: v1-12
//
// Behavior:
//   - Brokers: every registered node that was not removed (this node with its
//     advertised address), with its rack. ControllerID is the metadata
//     group's leader (this node while none is known); any node accepts admin
//     requests and forwards them there. ClusterID comes from cluster metadata.
//   - A null topic list means every topic; an empty list means none. Topics
//     may be named or (v10+) given by id; an unknown id is UNKNOWN_TOPIC_ID.
//   - An unknown named topic is created with Config.DefaultPartitions
//     partitions when Config.AutoCreateTopics is on and the request allows it
//     (v4+ AllowAutoTopicCreation; v1-3 always allow), else
//     UNKNOWN_TOPIC_OR_PARTITION. A name Kafka would refuse is
//     INVALID_TOPIC_EXCEPTION.
//   - Authorization (authorizer.go): the list of every topic holds only the
//     topics the principal may DESCRIBE; a named (or, v10+, id-given) topic
//     it may not DESCRIBE answers TOPIC_AUTHORIZATION_FAILED whether it
//     exists or not, and auto-creation needs CREATE on the cluster or the
//     topic, else TOPIC_AUTHORIZATION_FAILED.
//   - Every partition: leader = its Raft group's leader, leader epoch = the
//     group's Raft term (it never goes back), replicas = the group's placement
//     (preferred leader first), ISR = the group's voters, no offline replicas.
//     While no leader is known, or this node carries the group and sees it
//     has no live leader (raftfsm.Node.LeaderLost: its Raft knows none or
//     another than the leader table, or the leader went silent), the
//     partition is LEADER_NOT_AVAILABLE with leader and epoch -1, as Kafka
//     answers for a partition whose leader is not alive, never the dead node.
//   - Failover: a request naming a partition whose group has lost its leader
//     is answered once the group has a live leader again, waiting at most
//     raftfsm.Node.LeaderWait (4 s with the default Raft timeouts), so a
//     client that refreshes once, right after losing the leader, learns the
//     new one: franz-go refreshes at most once per MetadataMinAge (5 s), and
//     an answer naming the dead leader, or LEADER_NOT_AVAILABLE, would cost
//     it that long (docs/ARCHITECTURE.md, "Failover").
//
// Version notes:
//   - v8+: authorized operations (KIP-430) of each topic, and v8-10 of the
//     cluster, when asked for; else the "not requested" value (-2147483648).
//   - v10+: topic ids. v13 (top-level error code) is not served.

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.Metadata.Int16(), 1, 12, (*Broker).handleMetadata) }

func (b *Broker) handleMetadata(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	for _, ep := range b.liveEndpoints(rc.listener) {
		br := kmsg.NewMetadataResponseBroker()
		br.NodeID, br.Host, br.Port, br.Rack = ep.id, ep.host, ep.port, ep.rack
		resp.Brokers = append(resp.Brokers, br)
	}
	clusterID := b.node.ClusterID()
	resp.ClusterID = &clusterID
	if req.Version >= 8 && req.Version <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = b.authorizedOperations(rc, kmsg.ACLResourceTypeCluster, acl.ClusterName, clusterOperations)
	}
	resp.ControllerID = b.node.MetadataLeader()
	if resp.ControllerID < 0 {
		resp.ControllerID = b.node.NodeID()
	}

	b.node.AwaitLeaders(ctx, b.metadataGroups(req))
	if req.Topics == nil {
		for _, ti := range b.node.Topics() {
			if b.permits(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, ti.Name) {
				resp.Topics = append(resp.Topics, b.metadataTopicFor(rc, req, ti))
			}
		}
		return resp, nil
	}

	allowCreate := b.cfg.AutoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	seenNames := map[string]bool{}
	seenIDs := map[[16]byte]bool{}
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			if seenIDs[rt.TopicID] {
				continue
			}
			seenIDs[rt.TopicID] = true
			ti, ok := b.node.TopicByID(rt.TopicID)
			if !ok || rt.TopicID == ([16]byte{}) || !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, ti.Name) {
				t := kmsg.NewMetadataResponseTopic()
				t.TopicID = rt.TopicID
				t.ErrorCode = kerr.UnknownTopicID.Code
				if ok {
					t.ErrorCode = kerr.TopicAuthorizationFailed.Code
				}
				resp.Topics = append(resp.Topics, t)
				continue
			}
			resp.Topics = append(resp.Topics, b.metadataTopicFor(rc, req, ti))
			continue
		}
		name := *rt.Topic
		if seenNames[name] {
			continue
		}
		seenNames[name] = true
		if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name) {
			t := kmsg.NewMetadataResponseTopic()
			t.Topic = kmsg.StringPtr(name)
			t.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, t)
			continue
		}
		ti, err := b.lookupOrCreateTopic(ctx, rc, name, allowCreate)
		if err != nil {
			t := kmsg.NewMetadataResponseTopic()
			t.Topic = kmsg.StringPtr(name)
			t.ErrorCode = b.codeFor(err, "metadata", logKeyTopic, name)
			resp.Topics = append(resp.Topics, t)
			continue
		}
		resp.Topics = append(resp.Topics, b.metadataTopicFor(rc, req, ti))
	}
	return resp, nil
}

// metadataGroups returns the Raft groups of the existing topics req names
// (every topic for a null list), each once.
func (b *Broker) metadataGroups(req *kmsg.MetadataRequest) []uint32 {
	var groups []uint32
	seen := map[uint32]bool{}
	add := func(ti raftfsm.TopicInfo) {
		for _, pi := range ti.Partitions {
			if !seen[pi.Group] {
				seen[pi.Group] = true
				groups = append(groups, pi.Group)
			}
		}
	}
	if req.Topics == nil {
		for _, ti := range b.node.Topics() {
			add(ti)
		}
		return groups
	}
	for _, rt := range req.Topics {
		var ti raftfsm.TopicInfo
		var ok bool
		if rt.Topic == nil {
			ti, ok = b.node.TopicByID(rt.TopicID)
		} else {
			ti, ok = b.node.Topic(*rt.Topic)
		}
		if ok {
			add(ti)
		}
	}
	return groups
}

// lookupOrCreateTopic returns the named topic, creating it with the default
// partition count when create is set and the principal may create it
// (TOPIC_AUTHORIZATION_FAILED if not). A bad name is ErrInvalidTopic even when
// the topic would not be created, as Kafka answers.
func (b *Broker) lookupOrCreateTopic(ctx context.Context, rc *requestContext, name string, create bool) (raftfsm.TopicInfo, error) {
	if ti, ok := b.node.Topic(name); ok {
		return ti, nil
	}
	if err := validateTopicName(name); err != nil {
		return raftfsm.TopicInfo{}, err
	}
	if !create {
		return raftfsm.TopicInfo{}, raftfsm.ErrUnknownTopic
	}
	if !b.allowedTopicCreate(rc, name) {
		return raftfsm.TopicInfo{}, kerr.TopicAuthorizationFailed
	}
	ti, err := b.node.CreateTopic(ctx, name, b.cfg.DefaultPartitions, nil, false)
	if errors.Is(err, raftfsm.ErrTopicExists) { // created concurrently
		if ti, ok := b.node.Topic(name); ok {
			return ti, nil
		}
	}
	return ti, err
}

// metadataTopicFor is metadataTopic with the topic's authorized operations
// when the request asks for them (v8+).
func (b *Broker) metadataTopicFor(rc *requestContext, req *kmsg.MetadataRequest, ti raftfsm.TopicInfo) kmsg.MetadataResponseTopic {
	t := b.metadataTopic(ti)
	if req.Version >= 8 && req.IncludeTopicAuthorizedOperations {
		t.AuthorizedOperations = b.authorizedOperations(rc, kmsg.ACLResourceTypeTopic, ti.Name, topicOperations)
	}
	return t
}

// metadataTopic describes one topic with all its partitions.
func (b *Broker) metadataTopic(ti raftfsm.TopicInfo) kmsg.MetadataResponseTopic {
	t := kmsg.NewMetadataResponseTopic()
	t.Topic = kmsg.StringPtr(ti.Name)
	t.TopicID = ti.ID
	t.IsInternal = isInternalTopic(ti.Name)
	t.Partitions = make([]kmsg.MetadataResponseTopicPartition, 0, len(ti.Partitions))
	for _, pi := range ti.Partitions {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = pi.Partition
		p.Replicas = b.node.Replicas(pi.Group)
		p.ISR = b.node.InSync(pi.Group)
		p.OfflineReplicas = []int32{}
		if leader, epoch, ok := b.liveGroupLeader(pi.Group); ok {
			p.Leader, p.LeaderEpoch = leader, epoch
		} else {
			p.Leader, p.LeaderEpoch = -1, -1
			p.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		if len(p.Replicas) == 0 { // placement not known yet
			p.Replicas = []int32{}
		}
		if p.ISR == nil {
			p.ISR = []int32{}
		}
		t.Partitions = append(t.Partitions, p)
	}
	return t
}

// isInternalTopic reports Kafka's internal topics, which Metadata flags and
// the admin APIs refuse to delete, grow or reconfigure.
func isInternalTopic(name string) bool {
	return name == "__consumer_offsets" || name == "__transaction_state"
}

// errInternalTopic is the answer to an admin operation on an internal topic:
// INVALID_TOPIC_EXCEPTION, the code Kafka answers for operations it refuses
// on internal topics (appends, DeleteRecords).
func errInternalTopic(what, name string) error {
	return newKafkaError(kerr.InvalidTopicException, "cannot %s internal topic %s", what, name)
}
