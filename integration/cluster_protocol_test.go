//go:build unix

package integration

// What Kafka clients are told on a cluster, request by request: the current
// leader with a NOT_LEADER_OR_FOLLOWER produce answer (KIP-951), the preferred
// read replica for a consumer's rack (KIP-392) and the coordinator every node
// names.

import (
	"context"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// requestAt sends req to node id at exactly req's version: franz-go sends
// the highest version both sides support unless a client caps it.
func (c *testCluster) requestAt(ctx context.Context, t testing.TB, id int32, req kmsg.Request) kmsg.Response {
	t.Helper()
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(req.Key(), req.GetVersion())
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Node(id).KafkaAddr), kgo.MaxVersions(versions))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetVersion(); got != req.GetVersion() {
		t.Fatalf("asked for version %d of key %d, got %d", req.GetVersion(), req.Key(), got)
	}
	return resp
}

// produceRequest is a Produce of one record to topic/0 at the given version.
func produceRequest(version int16, topic string) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(version)
	req.Acks = -1
	req.TimeoutMillis = 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = 0
	rp.Records = encodeBatch([]kgo.Record{{Key: []byte("k"), Value: []byte("v")}})
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	return req
}

// encodeBatch encodes records as one uncompressed RecordBatch v2.
func encodeBatch(recs []kgo.Record) []byte {
	b := kmsg.NewRecordBatch()
	b.Magic = 2
	b.ProducerID, b.ProducerEpoch, b.FirstSequence = -1, -1, -1
	b.NumRecords = int32(len(recs))
	var body []byte
	for i, r := range recs {
		rec := kmsg.NewRecord()
		rec.OffsetDelta = int32(i)
		rec.Key, rec.Value = r.Key, r.Value
		rec.Length = int32(len(rec.AppendTo(nil)) - 1)
		body = rec.AppendTo(body)
	}
	b.LastOffsetDelta = int32(len(recs) - 1)
	b.Records = body
	raw := b.AppendTo(nil)
	b.Length = int32(len(raw) - 12)
	raw = b.AppendTo(nil)
	// CRC-32C of everything after the CRC field.
	b.CRC = int32(crc32c(raw[21:]))
	return b.AppendTo(nil)
}

func TestClusterProduceToFollowerNamesLeader(t *testing.T) {
	c := startCluster(t, 3)
	topic := topicName(t)
	createClusterTopic(t, c.Client(t), topic, 1, nil)
	c.WaitReplicated(topic)
	c.WaitLeaders(topic)
	leader := c.Leaders(topic)[0]
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, id := range c.IDs() {
		if id == leader {
			continue
		}
		// v10+: CurrentLeader and the leader's endpoint come with the error.
		resp := c.requestAt(ctx, t, id, produceRequest(10, topic)).(*kmsg.ProduceResponse)
		sp := resp.Topics[0].Partitions[0]
		if sp.ErrorCode != kerr.NotLeaderForPartition.Code {
			t.Fatalf("produce v10 to follower %d: error %d, want NOT_LEADER_OR_FOLLOWER", id, sp.ErrorCode)
		}
		if sp.CurrentLeader.LeaderID != leader || sp.CurrentLeader.LeaderEpoch < 1 {
			t.Fatalf("produce v10 to follower %d: CurrentLeader %+v, want node %d", id, sp.CurrentLeader, leader)
		}
		if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != leader || fmt.Sprintf("%s:%d", resp.Brokers[0].Host, resp.Brokers[0].Port) != c.Node(leader).KafkaAddr {
			t.Fatalf("produce v10 to follower %d: NodeEndpoints %+v, want node %d at %s", id, resp.Brokers, leader, c.Node(leader).KafkaAddr)
		}
		// Below v10: the error alone.
		old := c.requestAt(ctx, t, id, produceRequest(9, topic)).(*kmsg.ProduceResponse)
		if sp := old.Topics[0].Partitions[0]; sp.ErrorCode != kerr.NotLeaderForPartition.Code || len(old.Brokers) != 0 {
			t.Fatalf("produce v9 to follower %d: error %d, brokers %v", id, sp.ErrorCode, old.Brokers)
		}
	}
	if code := c.requestAt(ctx, t, leader, produceRequest(10, topic)).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("produce to the leader: error %d", code)
	}
}

func TestClusterFollowerFetchByRack(t *testing.T) {
	c := startCluster(t, 3, withRacks())
	topic := topicName(t)
	cl := c.Client(t)
	createClusterTopic(t, cl, topic, 1, map[string]string{"cleanup.policy": "delete"})
	c.WaitReplicated(topic)
	c.WaitLeaders(topic)
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitReplicated(topic)
	leader := c.Leaders(topic)[0]
	var follower int32
	for _, id := range c.IDs() {
		if id != leader {
			follower = id
			break
		}
	}
	rack := fmt.Sprintf("r%d", follower)

	// The leader points a consumer in the follower's rack at the follower.
	fetch := func(node int32, version int16, rack string) kmsg.FetchResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(version)
		req.ReplicaID = -1
		req.MaxBytes = 1 << 20
		req.Rack = rack
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = 0, 0, 1<<20
		rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
		req.Topics = []kmsg.FetchRequestTopic{rt}
		return c.requestAt(ctx, t, node, req).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	}
	if sp := fetch(leader, 11, rack); sp.ErrorCode != 0 || sp.PreferredReadReplica != follower || len(sp.RecordBatches) != 0 {
		t.Fatalf("fetch from leader %d with rack %s: error %d, preferred %d, %d bytes; want preferred %d and no records",
			leader, rack, sp.ErrorCode, sp.PreferredReadReplica, len(sp.RecordBatches), follower)
	}
	if sp := fetch(leader, 11, fmt.Sprintf("r%d", leader)); sp.PreferredReadReplica != -1 || len(sp.RecordBatches) == 0 {
		t.Fatalf("fetch from leader in its own rack: preferred %d, %d bytes", sp.PreferredReadReplica, len(sp.RecordBatches))
	}
	// The follower serves v11+ up to its own applied high watermark, which
	// reaches the leader's a moment after the last acknowledgement.
	deadline := time.Now().Add(clusterWaitTimeout)
	for {
		sp := fetch(follower, 11, rack)
		if sp.ErrorCode != 0 || len(sp.RecordBatches) == 0 {
			t.Fatalf("fetch from follower %d: error %d, %d bytes, hw %d", follower, sp.ErrorCode, len(sp.RecordBatches), sp.HighWatermark)
		}
		if sp.HighWatermark == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower %d high watermark %d, want %d", follower, sp.HighWatermark, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sp := fetch(follower, 10, ""); sp.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("fetch v10 from follower %d: error %d, want NOT_LEADER_OR_FOLLOWER", follower, sp.ErrorCode)
	}

	// A franz-go consumer in that rack reads everything, from the follower.
	before := c.fetchedRecords(t, follower)
	cons := c.Client(t, kgo.Rack(rack), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumer read %d of %d records", got, n)
		}
		fs.EachRecord(func(*kgo.Record) { got++ })
	}
	if after := c.fetchedRecords(t, follower); after-before < n {
		t.Fatalf("the follower in the consumer's rack served %v records, want at least %d", after-before, n)
	}
}

func TestClusterFindCoordinatorNamesLeader(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	const group = "coordinated-group"
	var named []int32
	deadline := time.Now().Add(clusterWaitTimeout)
	for _, id := range c.IDs() {
		for {
			// The client sends the highest version both sides have (v4,
			// batched keys).
			req := kmsg.NewPtrFindCoordinatorRequest()
			req.CoordinatorKey = group
			req.CoordinatorKeys = []string{group}
			kresp, err := c.requestNode(ctx, id, req)
			if err != nil {
				t.Fatal(err)
			}
			resp := kresp.(*kmsg.FindCoordinatorResponse)
			if len(resp.Coordinators) == 1 {
				co := resp.Coordinators[0]
				resp.ErrorCode, resp.NodeID, resp.Host, resp.Port = co.ErrorCode, co.NodeID, co.Host, co.Port
			}
			if resp.ErrorCode == 0 {
				if fmt.Sprintf("%s:%d", resp.Host, resp.Port) != c.Node(resp.NodeID).KafkaAddr {
					t.Fatalf("node %d names coordinator %d at %s:%d", id, resp.NodeID, resp.Host, resp.Port)
				}
				named = append(named, resp.NodeID)
				break
			}
			if resp.ErrorCode != kerr.CoordinatorNotAvailable.Code || time.Now().After(deadline) {
				t.Fatalf("FindCoordinator on node %d: error %d", id, resp.ErrorCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if named[0] != named[1] || named[1] != named[2] {
		t.Fatalf("nodes name coordinators %v", named)
	}
	// The coordinator is the leader of the group's __consumer_offsets partition
	// (Java's String.hashCode of the group id, modulo the partition count).
	leaders := c.Leaders("__consumer_offsets")
	p := javaHash(group) % int32(len(leaders))
	if leaders[p] != named[0] {
		t.Fatalf("coordinator %d, leader of __consumer_offsets/%d is %d", named[0], p, leaders[p])
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// fetchedRecords reads node id's shardcache_broker_fetch_records_total.
func (c *testCluster) fetchedRecords(t testing.TB, id int32) float64 {
	t.Helper()
	return scrapeMetric(t, c.Node(id).HTTPAddr, fetchRecordsMetric)
}

// javaHash is Java's String.hashCode made non-negative as Kafka does
// (Utils.abs), for ASCII strings.
func javaHash(s string) int32 {
	var h int32
	for i := 0; i < len(s); i++ {
		h = 31*h + int32(s[i])
	}
	if h < 0 {
		if h == -1<<31 {
			return 0
		}
		h = -h
	}
	return h
}

// fetchRecordsMetric counts the records a node answered to fetches.
const fetchRecordsMetric = "shardcache_broker_fetch_records_total"

// TestClusterISRFollowsLiveReplicas: a killed node leaves the ISR that every
// live node's Metadata shows (after the lag bound, raftfsm/isr.go) while it
// stays a replica, and comes back once it is restarted and has caught up.
func TestClusterISRFollowsLiveReplicas(t *testing.T) {
	c := startCluster(t, 3)
	topic := topicName(t)
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createClusterTopic(t, cl, topic, 4, nil)
	c.WaitReplicated(topic)
	c.WaitLeaders(topic)
	victim := c.IDs()[len(c.IDs())-1]
	c.Kill(victim)
	c.waitFor(fmt.Sprintf("node %d leaves every ISR of %s", victim, topic), func(ctx context.Context) error {
		live := slices.Sorted(slices.Values(c.live()))
		for _, id := range live {
			ps, err := c.partitions(ctx, id, topic)
			if err != nil {
				return err
			}
			for p, st := range ps {
				if !slices.Contains(st.Replicas, victim) {
					return fmt.Errorf("node %d: %s/%d replicas %v lost node %d", id, topic, p, st.Replicas, victim)
				}
				if !slices.Equal(st.ISR, live) {
					return fmt.Errorf("node %d: %s/%d ISR %v, want the live nodes %v", id, topic, p, st.ISR, live)
				}
			}
		}
		return nil
	})
	// Writes go on while it is out, so it has something to catch up on.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for p := int32(0); p < 4; p++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c.Start(victim)
	c.WaitReplicated(topic)
}

// TestClusterMetadataLeaderNotAvailable: while a partition's Raft group has no
// leader, Metadata answers it as Kafka does, LEADER_NOT_AVAILABLE with leader
// and epoch -1, never naming a dead node; once the group can elect again it
// names the new, live leader. Two of the three nodes are killed, the
// partition's leader among them, so no group has a quorum; then one comes
// back. (The survivor holds each such answer for a moment while it waits for
// an election, broker/03_metadata.go; the test only checks what it says.)
func TestClusterMetadataLeaderNotAvailable(t *testing.T) {
	c := startCluster(t, 3)
	topic := topicName(t)
	cl := c.Client(t)
	createClusterTopic(t, cl, topic, 2, nil)
	c.WaitReplicated(topic)
	c.WaitLeaders(topic)
	leader := c.Leaders(topic)[0]
	var survivor, other int32
	for _, id := range c.IDs() {
		switch {
		case id == leader:
		case survivor == 0:
			survivor = id
		default:
			other = id
		}
	}
	c.Kill(leader)
	c.Kill(other)

	// answer returns the survivor's view of topic's partitions.
	answer := func(ctx context.Context) ([]kmsg.MetadataResponseTopicPartition, error) {
		md, err := c.metadata(ctx, survivor, []string{topic})
		if err != nil {
			return nil, err
		}
		if len(md.Topics) != 1 || md.Topics[0].ErrorCode != 0 {
			return nil, fmt.Errorf("metadata for %s: %+v", topic, md.Topics)
		}
		return md.Topics[0].Partitions, nil
	}
	c.waitFor("every partition leaderless on the survivor", func(ctx context.Context) error {
		ps, err := answer(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.ErrorCode != kerr.LeaderNotAvailable.Code || p.Leader != -1 || p.LeaderEpoch != -1 {
				return fmt.Errorf("partition %d: leader %d epoch %d error %v, want LEADER_NOT_AVAILABLE, -1, -1", p.Partition, p.Leader, p.LeaderEpoch, kerr.ErrorForCode(p.ErrorCode))
			}
		}
		return nil
	})
	// Without a quorum nothing changes: still no leader, and no dead one named.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ps, err := answer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.ErrorCode != kerr.LeaderNotAvailable.Code || p.Leader != -1 {
			t.Fatalf("partition %d without a quorum: leader %d, error %v", p.Partition, p.Leader, kerr.ErrorForCode(p.ErrorCode))
		}
	}

	c.Start(other)
	live := []int32{survivor, other}
	c.waitFor("a live leader named for every partition", func(ctx context.Context) error {
		ps, err := answer(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Leader == leader {
				t.Fatalf("partition %d: the survivor names dead node %d", p.Partition, p.Leader)
			}
			if p.ErrorCode != 0 || !slices.Contains(live, p.Leader) || p.LeaderEpoch < 0 {
				return fmt.Errorf("partition %d: leader %d epoch %d error %v", p.Partition, p.Leader, p.LeaderEpoch, kerr.ErrorForCode(p.ErrorCode))
			}
		}
		return nil
	})
}
