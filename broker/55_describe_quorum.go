package broker

// DescribeQuorum: v0-2
//
// Behavior:
//   - Needs DESCRIBE on the cluster (authorizer.go), else
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Describes the metadata Raft group (group 0, which holds topics,
//     placement and configs), as Kafka describes its KRaft metadata log.
//     Clients ask for topic __cluster_metadata partition 0; any other answers
//     UNKNOWN_TOPIC_OR_PARTITION at the top level, as Kafka does.
//   - Any node answers (Kafka's brokers forward it to the controller): it
//     asks each replica of the group for its status over the cluster's
//     control RPC (raftfsm Node.MetadataQuorum), with a one-second bound.
//   - LeaderId is the group's leader (-1 with none; NOT_LEADER_OR_FOLLOWER
//     is not used since any node answers), LeaderEpoch its Raft term,
//     HighWatermark the leader's commit index.
//   - CurrentVoters and Observers (Raft non-voters) carry LogEndOffset, the
//     last index of that replica's Raft log: Raft indexes, not Kafka offsets,
//     so lag is counted in log entries. LastFetchTimestamp is when the
//     replica answered now, LastCaughtUpTimestamp the same when its log
//     reaches the leader's commit index; a replica that did not answer has
//     -1 in all three.
//   - v2 ReplicaDirectoryId is the zero UUID (one log dir per node, never
//     moved); Nodes names each replica's cluster listener ("CLUSTER", the
//     node-to-node address the Raft group uses).
//
// Version notes: v1 LastFetchTimestamp and LastCaughtUpTimestamp; v2
// ErrorMessage, ReplicaDirectoryId and Nodes (KIP-853).

import (
	"context"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.DescribeQuorum.Int16(), 0, 2, (*Broker).handleDescribeQuorum) }

// metadataLogTopic is the name Kafka's tools ask DescribeQuorum about.
const metadataLogTopic = "__cluster_metadata"

// clusterListenerName names the node-to-node listener in DescribeQuorum v2.
const clusterListenerName = "CLUSTER"

func (b *Broker) handleDescribeQuorum(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeQuorumRequest)
	resp := req.ResponseKind().(*kmsg.DescribeQuorumResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	if len(req.Topics) != 1 || req.Topics[0].Topic != metadataLogTopic ||
		len(req.Topics[0].Partitions) != 1 || req.Topics[0].Partitions[0].Partition != 0 {
		resp.ErrorCode = kerr.UnknownTopicOrPartition.Code
		msg := "DescribeQuorum describes " + metadataLogTopic + " partition 0 only"
		resp.ErrorMessage = &msg
		return resp, nil
	}
	rt := kmsg.NewDescribeQuorumResponseTopic()
	rt.Topic = metadataLogTopic
	rp := kmsg.NewDescribeQuorumResponseTopicPartition()
	q, err := b.node.MetadataQuorum(ctx)
	if err != nil {
		rp.ErrorCode = b.codeFor(err, "describe quorum")
	} else {
		rp.LeaderID = q.Leader
		rp.LeaderEpoch = int32(q.Term)
		rp.HighWatermark = int64(q.CommitIndex)
		rp.CurrentVoters = quorumReplicas(q.Voters, q.CommitIndex)
		rp.Observers = quorumReplicas(q.Observers, q.CommitIndex)
		if req.Version >= 2 {
			for _, r := range append(append([]raftfsm.QuorumReplica(nil), q.Voters...), q.Observers...) {
				if n, ok := b.clusterListener(r.Node); ok {
					resp.Nodes = append(resp.Nodes, n)
				}
			}
		}
	}
	rt.Partitions = []kmsg.DescribeQuorumResponseTopicPartition{rp}
	resp.Topics = []kmsg.DescribeQuorumResponseTopic{rt}
	return resp, nil
}

func quorumReplicas(rs []raftfsm.QuorumReplica, commit uint64) []kmsg.DescribeQuorumResponseTopicPartitionReplicaState {
	out := make([]kmsg.DescribeQuorumResponseTopicPartitionReplicaState, 0, len(rs))
	for _, r := range rs {
		s := kmsg.NewDescribeQuorumResponseTopicPartitionReplicaState()
		s.ReplicaID = r.Node
		s.LogEndOffset = r.LogEndIndex
		s.LastFetchTimestamp, s.LastCaughtUpTimestamp = -1, -1
		if !r.Answered.IsZero() {
			s.LastFetchTimestamp = r.Answered.UnixMilli()
			if r.LogEndIndex >= int64(commit) {
				s.LastCaughtUpTimestamp = s.LastFetchTimestamp
			}
		}
		out = append(out, s)
	}
	return out
}

// clusterListener is node id's node-to-node address as a DescribeQuorum v2
// node.
func (b *Broker) clusterListener(id int32) (kmsg.DescribeQuorumResponseNode, bool) {
	ni, ok := b.node.NodeInfo(id)
	if !ok {
		return kmsg.DescribeQuorumResponseNode{}, false
	}
	host, portStr, err := net.SplitHostPort(ni.ClusterAddr)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil {
		return kmsg.DescribeQuorumResponseNode{}, false
	}
	n := kmsg.NewDescribeQuorumResponseNode()
	n.NodeID = id
	l := kmsg.NewDescribeQuorumResponseNodeListener()
	l.Name, l.Host, l.Port = clusterListenerName, host, uint16(port)
	n.Listeners = []kmsg.DescribeQuorumResponseNodeListener{l}
	return n, true
}
