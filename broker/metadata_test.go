package broker

import (
	"net"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metadataAt sends a Metadata request at version over a raw connection, so
// no client cache or version negotiation is involved.
func metadataAt(t testing.TB, tb *testBroker, version int16, allowCreate bool, topics []kmsg.MetadataRequestTopic) *kmsg.MetadataResponse {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = topics
	req.AllowAutoTopicCreation = allowCreate
	c := dialRaw(t, tb.Addr)
	c.request(req, version, 1)
	_, resp := c.response(kmsg.Metadata.Int16(), version)
	return resp.(*kmsg.MetadataResponse)
}

func named(names ...string) []kmsg.MetadataRequestTopic {
	return metadataReq(names...).Topics
}

func TestMetadataEveryVersion(t *testing.T) {
	tb := newTestBroker(t)
	ctx := adminCtx(t)
	if _, err := tb.admin(t).CreateTopics(ctx, 3, 1, nil, "m1"); err != nil {
		t.Fatal(err)
	}
	ti, _ := tb.Node.Topic("m1")
	host, portStr, _ := net.SplitHostPort(tb.Addr)
	port, _ := strconv.Atoi(portStr)
	nodeID := tb.Node.NodeID()

	for v := int16(1); v <= 12; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			resp := metadataAt(t, tb, v, false, nil) // null list: every topic
			if len(resp.Brokers) != 1 {
				t.Fatalf("brokers %+v", resp.Brokers)
			}
			br := resp.Brokers[0]
			if br.NodeID != nodeID || br.Host != host || br.Port != int32(port) || br.Rack != nil {
				t.Fatalf("broker %+v", br)
			}
			if resp.ControllerID != nodeID {
				t.Fatalf("controller %d", resp.ControllerID)
			}
			if v >= 2 && (resp.ClusterID == nil || *resp.ClusterID != tb.Node.ClusterID() || len(*resp.ClusterID) != 22) {
				t.Fatalf("cluster id %v, node says %q", resp.ClusterID, tb.Node.ClusterID())
			}
			if len(resp.Topics) != 1 {
				t.Fatalf("topics %+v", resp.Topics)
			}
			rt := resp.Topics[0]
			if rt.ErrorCode != 0 || *rt.Topic != "m1" || rt.IsInternal || len(rt.Partitions) != 3 {
				t.Fatalf("topic %+v", rt)
			}
			wantID := [16]byte{}
			if v >= 10 {
				wantID = ti.ID
			}
			if rt.TopicID != wantID {
				t.Fatalf("topic id %x, want %x", rt.TopicID, wantID)
			}
			if v >= 8 && rt.AuthorizedOperations != -2147483648 {
				t.Fatalf("topic authorized operations %d", rt.AuthorizedOperations)
			}
			for i, p := range rt.Partitions {
				group := ti.Partitions[i].Group
				wantEpoch := int32(-1)
				if v >= 7 {
					wantEpoch = tb.Node.LeaderEpoch(group)
				}
				if p.Partition != int32(i) || p.ErrorCode != 0 || p.Leader != nodeID || p.LeaderEpoch != wantEpoch ||
					len(p.Replicas) != 1 || p.Replicas[0] != nodeID || len(p.ISR) != 1 || p.ISR[0] != nodeID ||
					(v >= 5 && len(p.OfflineReplicas) != 0) {
					t.Fatalf("partition %+v (epoch want %d)", p, wantEpoch)
				}
			}
		})
	}
}

func TestMetadataAutoCreate(t *testing.T) {
	tests := []struct {
		name       string
		brokerAuto bool
		version    int16
		allow      bool
		wantCode   int16
	}{
		{"allowed v12", true, 12, true, 0},
		{"allowed v4", true, 4, true, 0},
		{"v1 always allows", true, 1, false, 0},
		{"v3 always allows", true, 3, false, 0},
		{"request forbids v12", true, 12, false, kerr.UnknownTopicOrPartition.Code},
		{"request forbids v4", true, 4, false, kerr.UnknownTopicOrPartition.Code},
		{"broker forbids", false, 12, true, kerr.UnknownTopicOrPartition.Code},
		{"broker forbids v1", false, 1, true, kerr.UnknownTopicOrPartition.Code},
	}
	brokers := map[bool]*testBroker{
		true:  newTestBroker(t, func(c *testBrokerConfig) { c.DefaultPartitions = 2 }),
		false: newTestBroker(t, func(c *testBrokerConfig) { c.AutoCreateTopics = false }),
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := brokers[tt.brokerAuto]
			name := "auto-" + strconv.Itoa(i)
			resp := metadataAt(t, tb, tt.version, tt.allow, named(name))
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != tt.wantCode || *resp.Topics[0].Topic != name {
				t.Fatalf("topics %+v", resp.Topics)
			}
			ti, created := tb.Node.Topic(name)
			if created != (tt.wantCode == 0) {
				t.Fatalf("created = %v", created)
			}
			if created && (len(ti.Partitions) != 2 || len(resp.Topics[0].Partitions) != 2) {
				t.Fatalf("partitions: node %d, response %d", len(ti.Partitions), len(resp.Topics[0].Partitions))
			}
			if created && tt.version >= 10 && resp.Topics[0].TopicID != ti.ID {
				t.Fatalf("topic id %x, node %x", resp.Topics[0].TopicID, ti.ID)
			}
		})
	}
}

func TestMetadataTopicSelection(t *testing.T) {
	tb := newTestBroker(t)
	ctx := adminCtx(t)
	if _, err := tb.admin(t).CreateTopics(ctx, 1, 1, nil, "x", "y"); err != nil {
		t.Fatal(err)
	}
	x, _ := tb.Node.Topic("x")
	byID := func(id [16]byte) kmsg.MetadataRequestTopic {
		rt := kmsg.NewMetadataRequestTopic()
		rt.TopicID = id
		return rt
	}
	tests := []struct {
		name      string
		allow     bool
		topics    []kmsg.MetadataRequestTopic
		wantNames []string
		wantCodes []int16
	}{
		{name: "null is all", topics: nil, wantNames: []string{"x", "y"}, wantCodes: []int16{0, 0}},
		{name: "empty is none", topics: []kmsg.MetadataRequestTopic{}},
		{name: "one by name", topics: named("y"), wantNames: []string{"y"}, wantCodes: []int16{0}},
		{name: "duplicate names answered once", topics: named("x", "x"), wantNames: []string{"x"}, wantCodes: []int16{0}},
		{name: "by id", topics: []kmsg.MetadataRequestTopic{byID(x.ID)}, wantNames: []string{"x"}, wantCodes: []int16{0}},
		{name: "unknown id", topics: []kmsg.MetadataRequestTopic{byID([16]byte{9})}, wantNames: []string{""},
			wantCodes: []int16{kerr.UnknownTopicID.Code}},
		{name: "invalid name", allow: true, topics: named("bad name!"), wantNames: []string{"bad name!"},
			wantCodes: []int16{kerr.InvalidTopicException.Code}},
		{name: "invalid name no create", topics: named(".."), wantNames: []string{".."},
			wantCodes: []int16{kerr.InvalidTopicException.Code}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := metadataAt(t, tb, 12, tt.allow, tt.topics)
			if len(resp.Topics) != len(tt.wantNames) {
				t.Fatalf("topics %+v", resp.Topics)
			}
			for i, rt := range resp.Topics {
				name := ""
				if rt.Topic != nil {
					name = *rt.Topic
				}
				if name != tt.wantNames[i] || rt.ErrorCode != tt.wantCodes[i] {
					t.Fatalf("topic %d: %q code %d, want %q %d", i, name, rt.ErrorCode, tt.wantNames[i], tt.wantCodes[i])
				}
			}
		})
	}
	if _, ok := tb.Node.Topic("bad name!"); ok {
		t.Fatal("invalid topic created")
	}
}

// TestMetadataThroughClient drives auto-creation the way producers do: a
// franz-go client that allows it asks for an unknown topic.
func TestMetadataThroughClient(t *testing.T) {
	tb := newTestBroker(t)
	ctx := adminCtx(t)
	details, err := tb.admin(t).ListTopics(ctx, "never-created")
	if err != nil {
		t.Fatal(err)
	}
	if d := details["never-created"]; d.Err == nil {
		t.Fatal("kadm listing created the topic")
	}
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	req.Topics = named("client-made")
	resp, err := req.RequestWith(ctx, tb.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("%+v", resp.Topics)
	}
	if _, ok := tb.Node.Topic("client-made"); !ok {
		t.Fatal("topic not created")
	}
}
