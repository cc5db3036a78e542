package broker

// Edge cases of the APIs Kafka's command-line tools need: DeleteRecords,
// DescribeLogDirs, DescribeQuorum, DescribeTopicPartitions, ListGroups v5 and
// DescribeClientQuotas.
// The tools themselves run against the binary in integration/kafkatools_test.go.

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

// atVersion sends req at version v on a raw connection to addr (kgo would
// pick its own version) and returns the decoded response.
func atVersion[R kmsg.Response](t testing.TB, addr string, req kmsg.Request, v int16) R {
	t.Helper()
	c := dialRaw(t, addr)
	c.request(req, v, 1)
	_, resp := c.response(req.Key(), v)
	return resp.(R)
}

func deleteRecordsOne(topic string, partition int32, offset int64) *kmsg.DeleteRecordsRequest {
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 10000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = partition, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func TestDeleteRecords(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "del", 1, map[string]string{"cleanup.policy": "delete"})
	tb.createDataTopic(t, "del-compact", 1, map[string]string{"cleanup.policy": "compact,delete"})
	tb.createDataTopic(t, "kept", 1, nil) // compact: the broker default
	cl := tb.client(t)
	for _, topic := range []string{"del", "del-compact"} {
		for i := range 10 {
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte("v")}
			if err := cl.ProduceSync(dataCtx(t), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name      string
		topic     string
		partition int32
		offset    int64
		wantLow   int64
		wantErr   *kerr.Error
	}{
		{"moves the log start", "del", 0, 4, 4, nil},
		{"below the log start changes nothing", "del", 0, 2, 4, nil},
		{"at the log start changes nothing", "del", 0, 4, 4, nil},
		{"above the high watermark", "del", 0, 11, -1, kerr.OffsetOutOfRange},
		{"negative other than -1", "del", 0, -2, -1, kerr.OffsetOutOfRange},
		{"-1 is the high watermark", "del", 0, -1, 10, nil},
		{"compact,delete allows it", "del-compact", 0, 3, 3, nil},
		{"compact-only topic", "kept", 0, 0, -1, kerr.PolicyViolation},
		{"internal topic", offsetsTopic, 0, 0, -1, kerr.InvalidTopicException},
		{"unknown topic", "nosuch", 0, 0, -1, kerr.UnknownTopicOrPartition},
		{"unknown partition", "del", 3, 0, -1, kerr.UnknownTopicOrPartition},
		{"negative partition", "del", -1, 0, -1, kerr.UnknownTopicOrPartition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for v := int16(0); v <= 2; v++ {
				resp := atVersion[*kmsg.DeleteRecordsResponse](t, tb.Addr, deleteRecordsOne(tt.topic, tt.partition, tt.offset), v)
				p := resp.Topics[0].Partitions[0]
				want := int16(0)
				if tt.wantErr != nil {
					want = tt.wantErr.Code
				}
				if p.ErrorCode != want || p.LowWatermark != tt.wantLow || p.Partition != tt.partition {
					t.Fatalf("v%d: %+v, want low watermark %d, error %v", v, p, tt.wantLow, tt.wantErr)
				}
			}
		})
	}

	// Fetch and ListOffsets earliest honour the new log start.
	adm := tb.admin(t)
	starts, err := adm.ListStartOffsets(dataCtx(t), "del", "del-compact")
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int64{"del": 10, "del-compact": 3} {
		if o, _ := starts.Lookup(topic, 0); o.Err != nil || o.Offset != want {
			t.Fatalf("earliest offset of %s: %+v, want %d", topic, o, want)
		}
	}
	reader := tb.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"del-compact": {0: kgo.NewOffset().AtStart()}}))
	fs := reader.PollFetches(dataCtx(t))
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	if recs := fs.Records(); len(recs) == 0 || recs[0].Offset != 3 {
		t.Fatalf("a consumer from the start read %d records, first %v; want offset 3 first", len(recs), recs)
	}
	// Fetching below the log start is out of range, as in Kafka.
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MaxBytes = 11, 10, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "del-compact"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, 1, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	fresp := groupRequest[*kmsg.FetchResponse](t, cl, req)
	if p := fresp.Topics[0].Partitions[0]; p.ErrorCode != kerr.OffsetOutOfRange.Code || p.LogStartOffset != 3 {
		t.Fatalf("fetch at 1 below log start 3: error %d, log start %d", p.ErrorCode, p.LogStartOffset)
	}
}

func TestDescribeLogDirs(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "dirs", 2, nil)
	cl := tb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := &kgo.Record{Topic: "dirs", Partition: 1, Key: []byte("k"), Value: make([]byte, 1000)}
	if err := cl.ProduceSync(dataCtx(t), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	describeDirs := func(v int16, topics []kmsg.DescribeLogDirsRequestTopic) kmsg.DescribeLogDirsResponseDir {
		t.Helper()
		req := kmsg.NewPtrDescribeLogDirsRequest()
		req.Topics = topics
		resp := atVersion[*kmsg.DescribeLogDirsResponse](t, tb.Addr, req, v)
		if resp.ErrorCode != 0 || len(resp.Dirs) != 1 {
			t.Fatalf("v%d: error %d, %d dirs; want one", v, resp.ErrorCode, len(resp.Dirs))
		}
		return resp.Dirs[0]
	}
	sizes := func(d kmsg.DescribeLogDirsResponseDir, topic string) map[int32]int64 {
		out := map[int32]int64{}
		for _, dt := range d.Topics {
			if dt.Topic == topic {
				for _, p := range dt.Partitions {
					out[p.Partition] = p.Size
				}
			}
		}
		return out
	}
	for v := int16(1); v <= 4; v++ {
		all := describeDirs(v, nil)
		if all.Dir != "data" || all.ErrorCode != 0 {
			t.Fatalf("v%d: dir %q error %d", v, all.Dir, all.ErrorCode)
		}
		if v >= 4 && (all.TotalBytes == 0 || all.UsableBytes == 0) {
			t.Fatalf("v%d: total %d usable %d; want sizes or -1", v, all.TotalBytes, all.UsableBytes)
		}
		got := sizes(all, "dirs")
		if len(got) != 2 || got[0] != 0 || got[1] < 1000 {
			t.Fatalf("v%d: sizes %v, want partition 0 empty and 1 holding its 1000-byte record", v, got)
		}
		if len(sizes(all, offsetsTopic)) == 0 && tb.Node.TopicIDs()[offsetsTopic] != ([16]byte{}) {
			t.Fatalf("v%d: a null topic list leaves out %s", v, offsetsTopic)
		}
	}
	rt := kmsg.NewDescribeLogDirsRequestTopic()
	rt.Topic, rt.Partitions = "dirs", []int32{1, 7}
	missing := kmsg.NewDescribeLogDirsRequestTopic()
	missing.Topic, missing.Partitions = "nosuch", []int32{0}
	some := describeDirs(4, []kmsg.DescribeLogDirsRequestTopic{rt, missing})
	if len(some.Topics) != 1 || len(sizes(some, "dirs")) != 1 || sizes(some, "dirs")[1] < 1000 {
		t.Fatalf("named partitions: %+v; want dirs-1 only", some.Topics)
	}
}

func TestDescribeQuorum(t *testing.T) {
	tb := newTestBroker(t)
	cl := tb.client(t)
	quorumReq := func(v int16, topic string, partition int32) *kmsg.DescribeQuorumRequest {
		req := kmsg.NewPtrDescribeQuorumRequest()
		req.Version = v
		rt := kmsg.NewDescribeQuorumRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewDescribeQuorumRequestTopicPartition()
		rp.Partition = partition
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	self := tb.Node.NodeID()
	for v := int16(0); v <= 2; v++ {
		resp := atVersion[*kmsg.DescribeQuorumResponse](t, tb.Addr, quorumReq(v, metadataLogTopic, 0), v)
		if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("v%d: %+v", v, resp)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.LeaderID != self || p.LeaderEpoch < 1 || p.HighWatermark < 1 {
			t.Fatalf("v%d: leader %d epoch %d high watermark %d error %d; want leader %d",
				v, p.LeaderID, p.LeaderEpoch, p.HighWatermark, p.ErrorCode, self)
		}
		if len(p.CurrentVoters) != 1 || len(p.Observers) != 0 {
			t.Fatalf("v%d: voters %+v observers %+v; want this node alone", v, p.CurrentVoters, p.Observers)
		}
		voter := p.CurrentVoters[0]
		if voter.ReplicaID != self || voter.LogEndOffset < p.HighWatermark {
			t.Fatalf("v%d: voter %+v behind the high watermark %d", v, voter, p.HighWatermark)
		}
		if v >= 1 && (voter.LastFetchTimestamp <= 0 || voter.LastCaughtUpTimestamp != voter.LastFetchTimestamp) {
			t.Fatalf("v%d: voter timestamps %+v", v, voter)
		}
	}
	for _, tt := range []struct {
		topic     string
		partition int32
	}{{"__consumer_offsets", 0}, {metadataLogTopic, 1}} {
		resp := groupRequest[*kmsg.DescribeQuorumResponse](t, cl, quorumReq(2, tt.topic, tt.partition))
		if resp.ErrorCode != kerr.UnknownTopicOrPartition.Code || resp.ErrorMessage == nil {
			t.Fatalf("%s-%d: error %d; want UNKNOWN_TOPIC_OR_PARTITION with a message", tt.topic, tt.partition, resp.ErrorCode)
		}
	}
}

func TestDescribeTopicPartitionsPages(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "pa", 3, nil)
	tb.createDataTopic(t, "pb", 2, nil)
	cl := tb.client(t)
	describeReq := func(limit int32, cursor *kmsg.DescribeTopicPartitionsRequestCursor, topics ...string) *kmsg.DescribeTopicPartitionsRequest {
		req := kmsg.NewPtrDescribeTopicPartitionsRequest()
		req.ResponsePartitionLimit = limit
		req.Cursor = cursor
		for _, name := range topics {
			rt := kmsg.NewDescribeTopicPartitionsRequestTopic()
			rt.Topic = name
			req.Topics = append(req.Topics, rt)
		}
		return req
	}
	// Pages of 2 through pb and pa (asked out of order, answered by name).
	var seen []string
	var cursor *kmsg.DescribeTopicPartitionsRequestCursor
	for page := 0; ; page++ {
		if page == 5 {
			t.Fatalf("no end after %d pages: %v", page, seen)
		}
		resp := groupRequest[*kmsg.DescribeTopicPartitionsResponse](t, cl, describeReq(2, cursor, "pb", "pa"))
		n := 0
		for _, rt := range resp.Topics {
			if rt.ErrorCode != 0 || rt.TopicID == ([16]byte{}) {
				t.Fatalf("page %d: topic %+v", page, rt)
			}
			for _, p := range rt.Partitions {
				if p.ErrorCode != 0 || p.LeaderID != tb.Node.NodeID() || len(p.Replicas) != 1 || len(p.ISR) != 1 {
					t.Fatalf("page %d: %s-%d %+v", page, *rt.Topic, p.Partition, p)
				}
				seen = append(seen, fmt.Sprintf("%s-%d", *rt.Topic, p.Partition))
				n++
			}
		}
		if n > 2 {
			t.Fatalf("page %d has %d partitions, limit 2", page, n)
		}
		if resp.NextCursor == nil {
			break
		}
		cursor = &kmsg.DescribeTopicPartitionsRequestCursor{Topic: resp.NextCursor.Topic, Partition: resp.NextCursor.Partition}
	}
	if got := fmt.Sprint(seen); got != "[pa-0 pa-1 pa-2 pb-0 pb-1]" {
		t.Fatalf("pages described %s", got)
	}

	// An empty list describes every topic; a limit of 0 means the cap.
	resp := groupRequest[*kmsg.DescribeTopicPartitionsResponse](t, cl, describeReq(0, nil))
	names := map[string]int{}
	for _, rt := range resp.Topics {
		names[*rt.Topic] = len(rt.Partitions)
		if rt.IsInternal != (*rt.Topic == offsetsTopic) {
			t.Fatalf("%s IsInternal %v", *rt.Topic, rt.IsInternal)
		}
	}
	if names["pa"] != 3 || names["pb"] != 2 || resp.NextCursor != nil {
		t.Fatalf("all topics: %v, next cursor %v", names, resp.NextCursor)
	}

	// An unknown topic is an error of its own; nothing is created.
	resp = groupRequest[*kmsg.DescribeTopicPartitionsResponse](t, cl, describeReq(10, nil, "nosuch", "pb"))
	if len(resp.Topics) != 2 || *resp.Topics[0].Topic != "nosuch" || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code ||
		resp.Topics[1].ErrorCode != 0 {
		t.Fatalf("unknown topic: %+v", resp.Topics)
	}
	if _, ok := tb.Node.Topic("nosuch"); ok {
		t.Fatal("DescribeTopicPartitions created a topic")
	}

	// A cursor naming a topic that is not in the list is an invalid request.
	resp = groupRequest[*kmsg.DescribeTopicPartitionsResponse](t, cl,
		describeReq(10, &kmsg.DescribeTopicPartitionsRequestCursor{Topic: "pa"}, "pb"))
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("cursor outside the list: %+v", resp.Topics)
	}
	// A cursor past a topic's last partition moves on to the next topic.
	resp = groupRequest[*kmsg.DescribeTopicPartitionsResponse](t, cl,
		describeReq(10, &kmsg.DescribeTopicPartitionsRequestCursor{Topic: "pa", Partition: 3}, "pa", "pb"))
	if len(resp.Topics) != 2 || len(resp.Topics[0].Partitions) != 0 || len(resp.Topics[1].Partitions) != 2 {
		t.Fatalf("cursor past pa's partitions: %+v", resp.Topics)
	}
}

func TestListGroupsTypes(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	createTopics(t, cl, 1, "t")
	adm := kadm.NewClient(cl)
	ctx := dataCtx(t)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "t", Partition: 0, At: 0, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "typed", offsets); err != nil {
		t.Fatal(err)
	}
	list := func(v int16, types ...string) []kmsg.ListGroupsResponseGroup {
		req := kmsg.NewPtrListGroupsRequest()
		req.TypesFilter = types
		resp := atVersion[*kmsg.ListGroupsResponse](t, gb.Addr, req, v)
		if resp.ErrorCode != 0 {
			t.Fatalf("v%d %v: error %d", v, types, resp.ErrorCode)
		}
		return resp.Groups
	}
	for _, tt := range []struct {
		types []string
		want  int
	}{{nil, 1}, {[]string{"classic"}, 1}, {[]string{"Classic", "consumer"}, 1}, {[]string{"consumer"}, 0}, {[]string{"share"}, 0}} {
		got := list(5, tt.types...)
		if len(got) != tt.want {
			t.Fatalf("types %v: %d groups, want %d", tt.types, len(got), tt.want)
		}
		if tt.want == 1 && (got[0].Group != "typed" || got[0].GroupType != groupTypeClassic) {
			t.Fatalf("types %v: %+v", tt.types, got[0])
		}
	}
	if got := list(4); len(got) != 1 || got[0].GroupType != "" {
		t.Fatalf("v4 has no GroupType: %+v", got)
	}
}

// TestToolsAPIsInCluster: DeleteRecords is served by the partition's leader
// only and reaches every replica's log start; DescribeQuorum gives the same
// answer through every node.
func TestToolsAPIsInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes take a few seconds to form")
	}
	nodes := newBrokerCluster(t, 3, testGroupConfig())
	first := newClient(t, nodes[0].Addr)
	createTopics(t, first, 1, "purged")
	// Waits are generous: three nodes share two cores with other tests, and
	// a leader change while the config change is forwarded answers a
	// retriable error in the resource's result, which kadm leaves to us.
	waitUntil(t, 30*time.Second, "cleanup.policy=delete accepted", func() error {
		altered, err := kadm.NewClient(first).AlterTopicConfigs(dataCtx(t), []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "cleanup.policy", Value: kmsg.StringPtr("delete")}}, "purged")
		if err != nil {
			return err
		}
		r, err := altered.On("purged", nil)
		if err != nil {
			return err
		}
		return r.Err
	})
	var info raftfsm.TopicInfo
	waitUntil(t, 30*time.Second, "the topic with delete policy on every node", func() error {
		for _, n := range nodes {
			ti, ok := n.Node.Topic("purged")
			if !ok || !ti.Config.Retention {
				return fmt.Errorf("node %d: topic known %v, policy %q", n.Node.NodeID(), ok, ti.Config.PolicyValue())
			}
			info = ti
		}
		return nil
	})
	for i := range 5 {
		r := &kgo.Record{Topic: "purged", Key: []byte(fmt.Sprint(i)), Value: []byte("v")}
		if err := first.ProduceSync(dataCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	group := info.Partitions[0].Group
	var leader *clusterBroker
	waitUntil(t, 30*time.Second, "a leader of the partition", func() error {
		for _, n := range nodes {
			if n.Node.IsLeader(group) {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	for _, n := range nodes {
		resp := atVersion[*kmsg.DeleteRecordsResponse](t, n.Addr, deleteRecordsOne("purged", 0, 3), 2)
		p := resp.Topics[0].Partitions[0]
		if n == leader {
			if p.ErrorCode != 0 || p.LowWatermark != 3 {
				t.Fatalf("leader node %d: %+v", n.Node.NodeID(), p)
			}
		} else if p.ErrorCode != kerr.NotLeaderForPartition.Code {
			t.Fatalf("node %d does not lead: %+v; want NOT_LEADER_OR_FOLLOWER", n.Node.NodeID(), p)
		}
	}
	waitUntil(t, 30*time.Second, "log start 3 on every replica", func() error {
		for _, n := range nodes {
			if !n.Node.Carries(group) {
				continue
			}
			st, err := n.Store.State(info.Partitions[0].Shard)
			if err != nil || st.LogStartOffset != 3 {
				return fmt.Errorf("node %d: %+v %v", n.Node.NodeID(), st, err)
			}
		}
		return nil
	})

	quorumReq := kmsg.NewPtrDescribeQuorumRequest()
	quorumReq.Topics = []kmsg.DescribeQuorumRequestTopic{{Topic: metadataLogTopic,
		Partitions: []kmsg.DescribeQuorumRequestTopicPartition{{Partition: 0}}}}
	leaders := map[int32]bool{}
	for _, n := range nodes {
		resp := atVersion[*kmsg.DescribeQuorumResponse](t, n.Addr, quorumReq, 2)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || len(p.CurrentVoters) != 3 || len(resp.Nodes) != 3 {
			t.Fatalf("node %d: %+v with nodes %+v; want 3 voters with their listeners", n.Node.NodeID(), p, resp.Nodes)
		}
		for _, v := range p.CurrentVoters {
			if v.LogEndOffset < 1 {
				t.Fatalf("node %d: voter %+v without a log end", n.Node.NodeID(), v)
			}
		}
		leaders[p.LeaderID] = true
	}
	if len(leaders) != 1 {
		t.Fatalf("nodes name different quorum leaders: %v", leaders)
	}
}

// TestDescribeClientQuotas: with no quotas, any valid filter (none, an exact
// user, a default client-id, any ip) answers an empty list at v0 and v1; a
// bad filter answers Kafka's error code with a message.
func TestDescribeClientQuotas(t *testing.T) {
	tb := newTestBroker(t)
	comp := func(typ string, mt kmsg.QuotasMatchType, match *string) kmsg.DescribeClientQuotasRequestComponent {
		c := kmsg.NewDescribeClientQuotasRequestComponent()
		c.EntityType, c.MatchType, c.Match = typ, mt, match
		return c
	}
	alice := kmsg.StringPtr("alice")
	tests := []struct {
		name       string
		components []kmsg.DescribeClientQuotasRequestComponent
		want       int16
	}{
		{"no filter", nil, 0},
		{"exact user", []kmsg.DescribeClientQuotasRequestComponent{comp("user", kmsg.QuotasMatchTypeExact, alice)}, 0},
		{"user and default client-id", []kmsg.DescribeClientQuotasRequestComponent{
			comp("user", kmsg.QuotasMatchTypeAny, nil), comp("client-id", kmsg.QuotasMatchTypeDefault, nil)}, 0},
		{"any ip", []kmsg.DescribeClientQuotasRequestComponent{comp("ip", kmsg.QuotasMatchTypeAny, nil)}, 0},
		{"empty entity type", []kmsg.DescribeClientQuotasRequestComponent{comp("", kmsg.QuotasMatchTypeAny, nil)}, kerr.InvalidRequest.Code},
		{"unknown entity type", []kmsg.DescribeClientQuotasRequestComponent{comp("group", kmsg.QuotasMatchTypeAny, nil)}, kerr.UnsupportedVersion.Code},
		{"user twice", []kmsg.DescribeClientQuotasRequestComponent{
			comp("user", kmsg.QuotasMatchTypeAny, nil), comp("user", kmsg.QuotasMatchTypeExact, alice)}, kerr.InvalidRequest.Code},
		{"exact without match", []kmsg.DescribeClientQuotasRequestComponent{comp("user", kmsg.QuotasMatchTypeExact, nil)}, kerr.InvalidRequest.Code},
		{"default with match", []kmsg.DescribeClientQuotasRequestComponent{comp("user", kmsg.QuotasMatchTypeDefault, alice)}, kerr.InvalidRequest.Code},
		{"unknown match type", []kmsg.DescribeClientQuotasRequestComponent{comp("user", kmsg.QuotasMatchType(7), nil)}, kerr.UnsupportedVersion.Code},
		{"ip with user", []kmsg.DescribeClientQuotasRequestComponent{
			comp("ip", kmsg.QuotasMatchTypeAny, nil), comp("user", kmsg.QuotasMatchTypeAny, nil)}, kerr.InvalidRequest.Code},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for v := int16(0); v <= 1; v++ {
				req := kmsg.NewPtrDescribeClientQuotasRequest()
				req.Components = tt.components
				resp := atVersion[*kmsg.DescribeClientQuotasResponse](t, tb.Addr, req, v)
				if resp.ErrorCode != tt.want {
					t.Fatalf("v%d: error %d, want %d", v, resp.ErrorCode, tt.want)
				}
				if tt.want != 0 && (resp.ErrorMessage == nil || *resp.ErrorMessage == "") {
					t.Fatalf("v%d: error %d without a message", v, resp.ErrorCode)
				}
				if tt.want == 0 && (resp.Entries == nil || len(resp.Entries) != 0) {
					t.Fatalf("v%d: entries %+v, want an empty list", v, resp.Entries)
				}
			}
		})
	}
}

// TestDescribeClientQuotasNeedsClusterDescribeConfigs: with authorization on,
// DescribeClientQuotas answers CLUSTER_AUTHORIZATION_FAILED until the principal
// may DESCRIBE_CONFIGS the cluster.
func TestDescribeClientQuotasNeedsClusterDescribeConfigs(t *testing.T) {
	ab := newACLBroker(t, func(c *testBrokerConfig) { c.DenyIfNoACLFound = true })
	quotas := func(user string) int16 {
		t.Helper()
		return groupRequest[*kmsg.DescribeClientQuotasResponse](t, ab.as(t, user), kmsg.NewPtrDescribeClientQuotasRequest()).ErrorCode
	}
	if code := quotas("alice"); code != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("alice without an ACL: error %d, want CLUSTER_AUTHORIZATION_FAILED", code)
	}
	if code := quotas("admin"); code != 0 {
		t.Fatalf("the super user: error %d", code)
	}
	ab.allow(t, kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpDescribeConfigs))
	if code := quotas("alice"); code != 0 {
		t.Fatalf("alice with DESCRIBE_CONFIGS on the cluster: error %d", code)
	}
}
