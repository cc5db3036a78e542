package broker

// DescribeLogDirs: v1-4
//
// Behavior:
//   - Needs DESCRIBE on the cluster (authorizer.go), else
//     CLUSTER_AUTHORIZATION_FAILED (v3+; v1-2 answer no log dirs).
//   - One log dir: the node's data directory (Config.LogDir), which holds the
//     one Pebble store of every partition the node carries.
//   - It lists the partitions this node holds a replica of (leader or
//     follower), as a Kafka broker lists the logs in its dirs. A null Topics
//     asks for all of them; named topics and partitions this node does not
//     carry, or that do not exist, are left out, as Kafka leaves them out.
//   - Size is approximate: the encoded size of the partition's readable
//     records (shardstore State.LiveBytes), without Pebble's key index,
//     compression and not-yet-compacted space. OffsetLag is 0 and IsFuture
//     false: there are no future logs (no AlterReplicaLogDirs).
//   - v4 TotalBytes and UsableBytes are the data directory's file system
//     size and the space available to this process (-1 where unknown).
//
// Not implemented: v0 (removed from Kafka 4, KIP-896).
//
// Version notes: v2 flexible; v3 top-level ErrorCode; v4 TotalBytes and
// UsableBytes.

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.DescribeLogDirs.Int16(), 1, 4, (*Broker).handleDescribeLogDirs) }

func (b *Broker) handleDescribeLogDirs(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code // v3+; before, no dirs
		return resp, nil
	}
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = b.cfg.LogDir
	if dir.Dir == "" {
		dir.Dir = "data"
	}
	dir.TotalBytes, dir.UsableBytes = diskSpace(dir.Dir)

	// wanted: nil for every topic, else topic -> partitions asked.
	var wanted map[string][]int32
	if req.Topics != nil {
		wanted = make(map[string][]int32, len(req.Topics))
		for _, t := range req.Topics {
			wanted[t.Topic] = append(wanted[t.Topic], t.Partitions...)
		}
	}
	topics := b.node.Topics()
	slices.SortFunc(topics, func(x, y raftfsm.TopicInfo) int { return strings.Compare(x.Name, y.Name) })
	for _, ti := range topics {
		asked, ok := wanted[ti.Name]
		if wanted != nil && !ok {
			continue
		}
		dt := kmsg.NewDescribeLogDirsResponseDirTopic()
		dt.Topic = ti.Name
		for _, p := range ti.Partitions {
			if wanted != nil && !slices.Contains(asked, p.Partition) {
				continue
			}
			if !b.node.Carries(p.Group) {
				continue
			}
			st, err := b.store.State(p.Shard)
			if err != nil {
				continue // not created here yet, or deleted meanwhile
			}
			dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			dp.Partition = p.Partition
			dp.Size = st.LiveBytes
			dt.Partitions = append(dt.Partitions, dp)
		}
		if len(dt.Partitions) > 0 {
			dir.Topics = append(dir.Topics, dt)
		}
	}
	resp.Dirs = []kmsg.DescribeLogDirsResponseDir{dir}
	return resp, nil
}
