package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/metricstest"
)

// flinkCommit commits like Flink's KafkaSource: FindCoordinator, then
// OffsetCommit with generation -1 and no member id.
func flinkCommit(t testing.TB, cl *kgo.Client, group, topic string, offsets map[int32]int64, metadata string) {
	t.Helper()
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = group
	if r := groupRequest[*kmsg.FindCoordinatorResponse](t, cl, fc); r.ErrorCode != 0 || r.NodeID < 0 {
		t.Fatalf("find coordinator: %+v", r)
	}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation, req.MemberID = group, -1, ""
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p, o := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, o, 1
		rp.Metadata = kmsg.StringPtr(metadata)
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	resp := groupRequest[*kmsg.OffsetCommitResponse](t, cl, req)
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("commit partition %d: %v", p.Partition, kerr.ErrorForCode(p.ErrorCode))
		}
	}
}

// fetchCommitted reads a group's offsets with OffsetFetch v8 (all topics).
func fetchCommitted(t testing.TB, cl *kgo.Client, group string) map[string]kmsg.OffsetFetchResponseGroupTopicPartition {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	req.Groups = []kmsg.OffsetFetchRequestGroup{rg}
	req.RequireStable = true
	resp := groupRequest[*kmsg.OffsetFetchResponse](t, cl, req)
	if resp.Groups[0].ErrorCode != 0 {
		t.Fatalf("offset fetch: %v", kerr.ErrorForCode(resp.Groups[0].ErrorCode))
	}
	out := map[string]kmsg.OffsetFetchResponseGroupTopicPartition{}
	for _, tp := range resp.Groups[0].Topics {
		for _, p := range tp.Partitions {
			out[fmt.Sprintf("%s/%d", tp.Topic, p.Partition)] = p
		}
	}
	return out
}

func createTopics(t testing.TB, cl *kgo.Client, partitions int32, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topics...); err != nil {
		t.Fatal(err)
	}
}

// TestGroupMemberlessCommitAndRestart: Flink's commits are accepted, their
// metadata comes back from OffsetFetch (v1 per partition and v8 batched),
// and every committed offset and a Stable group survive a restart.
func TestGroupMemberlessCommitAndRestart(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	createTopics(t, cl, 3, "orders")
	flinkCommit(t, cl, "flink-job", "orders", map[int32]int64{0: 10, 1: 20, 2: 30}, "chk-7")
	flinkCommit(t, cl, "flink-job", "orders", map[int32]int64{1: 21}, "chk-8")

	a := newRawMember(t, gb, "members")
	a.joinFully()
	a.sync(map[string][]byte{a.id: []byte("assignment")})
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.Generation, req.MemberID = "members", a.generation, a.id
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "orders"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 2, 99
	rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
	req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	if r := groupRequest[*kmsg.OffsetCommitResponse](t, cl, req); r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("member commit: %v", kerr.ErrorForCode(r.Topics[0].Partitions[0].ErrorCode))
	}

	check := func(cl *kgo.Client) {
		t.Helper()
		got := fetchCommitted(t, cl, "flink-job")
		want := map[string]int64{"orders/0": 10, "orders/1": 21, "orders/2": 30}
		if len(got) != len(want) {
			t.Fatalf("committed %v", got)
		}
		for k, off := range want {
			p := got[k]
			meta := "chk-7"
			if k == "orders/1" {
				meta = "chk-8"
			}
			if p.Offset != off || p.Metadata == nil || *p.Metadata != meta || p.LeaderEpoch != 1 {
				t.Fatalf("%s: offset %d metadata %v epoch %d, want %d %q 1", k, p.Offset, p.Metadata, p.LeaderEpoch, off, meta)
			}
		}
		// OffsetFetch v1: per-partition answers, -1 for no commit.
		v1 := kmsg.NewPtrOffsetFetchRequest()
		v1.Version = 1
		v1.Group = "flink-job"
		ft := kmsg.NewOffsetFetchRequestTopic()
		ft.Topic, ft.Partitions = "orders", []int32{2, 7}
		v1.Topics = []kmsg.OffsetFetchRequestTopic{ft}
		r1 := groupRequest[*kmsg.OffsetFetchResponse](t, cl, v1)
		if ps := r1.Topics[0].Partitions; ps[0].Offset != 30 || ps[1].Offset != -1 || ps[1].ErrorCode != 0 {
			t.Fatalf("v1 fetch: %+v", ps)
		}
		if m := fetchCommitted(t, cl, "members")["orders/2"]; m.Offset != 99 {
			t.Fatalf("member group offset %d", m.Offset)
		}
	}
	check(cl)

	gb.Restart()
	cl = gb.client(t)
	check(cl)
	g := describeGroup(t, cl, "members")
	if g.State != "Stable" || len(g.Members) != 1 || g.Members[0].MemberID != a.id ||
		string(g.Members[0].MemberAssignment) != "assignment" {
		t.Fatalf("group after restart: %+v", g)
	}
	// The member carries on with its generation.
	a.cl = cl
	if code := a.heartbeat(); code != 0 {
		t.Fatalf("heartbeat after restart: %v", kerr.ErrorForCode(code))
	}
}

// TestGroupOffsetDeleteAndDeleteGroups removes offsets and whole groups;
// the removals survive a restart.
func TestGroupOffsetDeleteAndDeleteGroups(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	createTopics(t, cl, 2, "t")
	flinkCommit(t, cl, "g1", "t", map[int32]int64{0: 1, 1: 2}, "")
	flinkCommit(t, cl, "g2", "t", map[int32]int64{0: 5}, "")
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	del := kadm.TopicsSet{}
	del.Add("t", 0)
	resp, err := adm.DeleteOffsets(ctx, "g1", del)
	if err != nil || resp.Error() != nil {
		t.Fatalf("delete offsets: %v %v", err, resp.Error())
	}
	dg, err := adm.DeleteGroups(ctx, "g2")
	if err != nil || dg["g2"].Err != nil {
		t.Fatalf("delete groups: %v %+v", err, dg)
	}
	gb.Restart()
	cl = gb.client(t)
	got := fetchCommitted(t, cl, "g1")
	if len(got) != 1 || got["t/1"].Offset != 2 {
		t.Fatalf("g1 after offset delete and restart: %v", got)
	}
	if got := fetchCommitted(t, cl, "g2"); len(got) != 0 {
		t.Fatalf("g2 after delete and restart: %v", got)
	}
	listed, err := kadm.NewClient(cl).ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(listed.Groups(), ","); names != "g1" {
		t.Fatalf("groups listed: %q", names)
	}
}

// TestGroupOffsetRetention: offsets of a group without members expire after
// the retention, and the group goes with them.
func TestGroupOffsetRetention(t *testing.T) {
	gb := newGroupBroker(t, func(c *GroupConfig) {
		c.OffsetsRetention = 300 * time.Millisecond
		c.OffsetsRetentionCheckInterval = 50 * time.Millisecond
	})
	cl := gb.client(t)
	createTopics(t, cl, 1, "t")
	flinkCommit(t, cl, "short-lived", "t", map[int32]int64{0: 3}, "")
	waitUntil(t, 10*time.Second, "offsets expired", func() error {
		if got := fetchCommitted(t, cl, "short-lived"); len(got) != 0 {
			return fmt.Errorf("still committed: %v", got)
		}
		if g := describeGroup(t, cl, "short-lived"); g.State != "Dead" {
			return fmt.Errorf("group %s", g.State)
		}
		return nil
	})
	gb.Restart()
	if got := fetchCommitted(t, gb.client(t), "short-lived"); len(got) != 0 {
		t.Fatalf("expired offsets back after restart: %v", got)
	}
}

// TestGroupBacklogMetricsAndSummary: lag and live backlog per group and
// partition, in Broker.Groups and in the metrics; the registry lints clean.
func TestGroupBacklogMetricsAndSummary(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	createTopics(t, cl, 1, "kv")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// 6 writes over 3 keys: high watermark 6, 3 live records (offsets 3,4,5).
	for i := 0; i < 6; i++ {
		r := &kgo.Record{Topic: "kv", Key: []byte(fmt.Sprintf("k%d", i%3)), Value: []byte("v")}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	flinkCommit(t, cl, "reader", "kv", map[int32]int64{0: 1}, "")
	// The live backlog comes from a background refresh the first call starts.
	waitUntil(t, 10*time.Second, "backlog summary", func() error {
		sum := gb.Broker.Groups()
		if len(sum) != 1 || len(sum[0].Partitions) != 1 {
			return fmt.Errorf("summary %+v", sum)
		}
		p := sum[0].Partitions[0]
		if p.Committed != 1 || p.HighWatermark != 6 || p.Lag != 5 || p.LiveBacklog != 3 {
			return fmt.Errorf("partition summary %+v, want committed 1, hwm 6, lag 5, live backlog 3", p)
		}
		return nil
	})
	got := gaugeValues(t, gb.Metrics)
	if got[`shardcache_group_backlog_records{group="reader",topic="kv",partition="0"}`] != 3 ||
		got[`shardcache_group_lag_offsets{group="reader",topic="kv",partition="0"}`] != 5 {
		t.Fatalf("metrics %v", got)
	}
	metricstest.Lint(t, gb.Metrics)

	// k0 again and a new k3 (offsets 6, 7): live records 4, 5, 6 and 7. A
	// later refresh sees them.
	for _, k := range []string{"k0", "k3"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kv", Key: []byte(k), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "backlog after more writes", func() error {
		p := gb.Broker.Groups()[0].Partitions[0]
		if p.HighWatermark != 8 || p.Lag != 7 || p.LiveBacklog != 4 {
			return fmt.Errorf("partition summary %+v, want hwm 8, lag 7, live backlog 4", p)
		}
		return nil
	})
}

// gaugeValues gathers every gauge as name{label="value",...} -> value, labels
// in the order the metric declares them.
func gaugeValues(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	order := map[string][]string{
		"shardcache_group_backlog_records": {"group", "topic", "partition"},
		"shardcache_group_lag_offsets":     {"group", "topic", "partition"},
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetGauge() == nil {
				continue
			}
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var parts []string
			for _, n := range order[mf.GetName()] {
				parts = append(parts, fmt.Sprintf("%s=%q", n, labels[n]))
			}
			key := mf.GetName()
			if len(parts) > 0 {
				key += "{" + strings.Join(parts, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestGroupLagSeriesCap: the collector exports at most MaxLagSeries series.
func TestGroupLagSeriesCap(t *testing.T) {
	gb := newGroupBroker(t, func(c *GroupConfig) { c.MaxLagSeries = 2 })
	cl := gb.client(t)
	createTopics(t, cl, 3, "t")
	flinkCommit(t, cl, "a", "t", map[int32]int64{0: 0, 1: 0, 2: 0}, "")
	got := gaugeValues(t, gb.Metrics)
	series := 0
	for k := range got {
		if strings.HasPrefix(k, "shardcache_group_lag_offsets{") {
			series++
		}
	}
	if series != 2 || got["shardcache_group_lag_series_dropped"] != 1 {
		t.Fatalf("%d lag series (want the cap of 2), dropped %v", series, got["shardcache_group_lag_series_dropped"])
	}
}

// TestGroupEmptyIDHandledAsKafka pins issue 9: the empty group id was refused
// by OffsetCommit and DeleteGroups although Kafka keeps it valid there (and in
// OffsetFetch and DescribeGroups) for backwards compatibility, so an admin or
// an old client committing under "" failed. The APIs of group membership and
// OffsetDelete answer INVALID_GROUP_ID, as Kafka's GroupCoordinatorService does.
func TestGroupEmptyIDHandledAsKafka(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	createTopics(t, cl, 1, "empty-id")
	m := &rawMember{t: t, cl: cl, group: "", id: "m", generation: 1, session: 10 * time.Second,
		rebalance: 10 * time.Second, metadata: []byte("m")}

	invalid := map[string]int16{
		"JoinGroup":  groupRequest[*kmsg.JoinGroupResponse](t, cl, m.joinReq(9)).ErrorCode,
		"SyncGroup":  m.sync(nil).ErrorCode,
		"Heartbeat":  m.heartbeat(),
		"LeaveGroup": m.leave(),
		"OffsetDelete": func() int16 {
			req := kmsg.NewPtrOffsetDeleteRequest()
			rt := kmsg.NewOffsetDeleteRequestTopic()
			rt.Topic = "empty-id"
			rt.Partitions = []kmsg.OffsetDeleteRequestTopicPartition{kmsg.NewOffsetDeleteRequestTopicPartition()}
			req.Topics = []kmsg.OffsetDeleteRequestTopic{rt}
			return groupRequest[*kmsg.OffsetDeleteResponse](t, cl, req).ErrorCode
		}(),
	}
	for api, code := range invalid {
		if code != kerr.InvalidGroupID.Code {
			t.Errorf("%s with an empty group id: %v, want INVALID_GROUP_ID", api, kerr.ErrorForCode(code))
		}
	}

	if g := describeGroup(t, cl, ""); g.ErrorCode != 0 || g.State != "Dead" {
		t.Fatalf("describe the unknown empty group: %v %s", kerr.ErrorForCode(g.ErrorCode), g.State)
	}
	flinkCommit(t, cl, "", "empty-id", map[int32]int64{0: 7}, "meta")
	if got := fetchCommitted(t, cl, ""); got["empty-id/0"].Offset != 7 {
		t.Fatalf("OffsetFetch of the empty group: %+v", got)
	}
	if g := describeGroup(t, cl, ""); g.ErrorCode != 0 || g.State != "Empty" {
		t.Fatalf("describe the empty group: %v %s", kerr.ErrorForCode(g.ErrorCode), g.State)
	}
	del := func() int16 {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Groups = []string{""}
		return groupRequest[*kmsg.DeleteGroupsResponse](t, cl, req).Groups[0].ErrorCode
	}
	if code := del(); code != 0 {
		t.Fatalf("delete the empty group: %v", kerr.ErrorForCode(code))
	}
	if code := del(); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete it again: %v, want GROUP_ID_NOT_FOUND", kerr.ErrorForCode(code))
	}
	if got := fetchCommitted(t, cl, ""); len(got) != 0 {
		t.Fatalf("offsets of the deleted empty group: %+v", got)
	}
}

// TestGroupCommitErrorsInKafkasOrder pins issue 9: OffsetCommit checked the
// group before the partitions, so a partition of an unknown topic was answered
// with the group's error (ILLEGAL_GENERATION, say) instead of
// UNKNOWN_TOPIC_OR_PARTITION, and an unknown group.instance.id was not
// refused. Kafka's order: unknown topics and partitions first (KafkaApis,
// before the coordinator); then ClassicGroup.validateOffsetCommit: Dead,
// memberless commit to an Empty group, the member (instance, then member id),
// the generation, and only then REBALANCE_IN_PROGRESS; metadata size last.
func TestGroupCommitErrorsInKafkasOrder(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	createTopics(t, cl, 1, "known")
	a := newRawMember(t, gb, "order")
	a.joinFully()
	a.sync(map[string][]byte{a.id: []byte("x")})

	type part struct {
		topic     string
		partition int32
		metadata  string
	}
	commit := func(group, member string, instance *string, generation int32, parts ...part) []int16 {
		t.Helper()
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.InstanceID, req.Generation = group, member, instance, generation
		for _, p := range parts {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = p.topic
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = p.partition, 1
			rp.Metadata = kmsg.StringPtr(p.metadata)
			rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
			req.Topics = append(req.Topics, rt)
		}
		var codes []int16
		for _, rt := range groupRequest[*kmsg.OffsetCommitResponse](t, cl, req).Topics {
			for _, rp := range rt.Partitions {
				codes = append(codes, rp.ErrorCode)
			}
		}
		return codes
	}
	check := func(name string, got []int16, want ...*kerr.Error) {
		t.Helper()
		for i, w := range want {
			code := int16(0)
			if w != nil {
				code = w.Code
			}
			if i >= len(got) || got[i] != code {
				t.Errorf("%s: partition %d answered %v, want %v", name, i, kerr.ErrorForCode(got[min(i, len(got)-1)]), w)
			}
		}
	}
	known, unknownTopic, unknownPartition := part{"known", 0, ""}, part{"nosuch", 0, ""}, part{"known", 9, ""}
	big := part{"known", 0, strings.Repeat("m", maxOffsetMetadataBytes+1)}
	nobody := "nobody"

	check("stale generation, unknown topic and partition",
		commit("order", a.id, nil, a.generation+1, unknownTopic, known, unknownPartition),
		kerr.UnknownTopicOrPartition, kerr.IllegalGeneration, kerr.UnknownTopicOrPartition)
	check("unknown group, only unknown partitions", commit("no-such-group", "m", nil, 5, unknownTopic),
		kerr.UnknownTopicOrPartition)
	check("unknown instance id of a known member", commit("order", a.id, &nobody, a.generation, known),
		kerr.UnknownMemberID)
	check("stale generation before metadata size", commit("order", a.id, nil, a.generation+1, big),
		kerr.IllegalGeneration)
	check("metadata too large", commit("order", a.id, nil, a.generation, big), kerr.OffsetMetadataTooLarge)

	// A second member joins: PreparingRebalance accepts the current
	// generation (onPartitionsRevoked commits); CompletingRebalance answers
	// ILLEGAL_GENERATION for the old generation before REBALANCE_IN_PROGRESS.
	b := newRawMember(t, gb, "order")
	if r := b.join(); r.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("b: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	bj := b.joinAsync()
	waitUntil(t, 10*time.Second, "a told to rejoin", func() error {
		if code := a.heartbeat(); code != kerr.RebalanceInProgress.Code {
			return fmt.Errorf("heartbeat %v", kerr.ErrorForCode(code))
		}
		return nil
	})
	check("preparing rebalance, current generation", commit("order", a.id, nil, a.generation, known), nil)
	old := a.generation
	a.joinFully()
	b.take(<-bj)
	check("completing rebalance, old generation", commit("order", a.id, nil, old, known), kerr.IllegalGeneration)
	check("completing rebalance, new generation", commit("order", a.id, nil, a.generation, known), kerr.RebalanceInProgress)
	check("completing rebalance, memberless", commit("order", "", nil, -1, known), kerr.UnknownMemberID)
}
