package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// adminCtx is a context that ends with the test or after 30 s.
func adminCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCreateTopics(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.DefaultPartitions = 3 })
	adm := tb.admin(t)
	ctx := adminCtx(t)
	deleteP := "delete"
	badPolicy := "compact,archive"
	badRetention := "-7"

	tests := []struct {
		name       string
		topic      string
		partitions int32
		rf         int16
		configs    map[string]*string
		validate   bool
		wantErr    *kerr.Error
		wantMsg    string // substring of the error message
		wantParts  int32
	}{
		{name: "defaults", topic: "t-defaults", partitions: -1, rf: -1, wantParts: 3},
		{name: "explicit", topic: "t-explicit", partitions: 2, rf: 1, wantParts: 2},
		{name: "with config", topic: "t-config", partitions: 1, rf: 1,
			configs: map[string]*string{"cleanup.policy": &deleteP}, wantParts: 1},
		{name: "validate only", topic: "t-validate", partitions: 4, rf: 1, validate: true, wantParts: 4},
		{name: "replication factor 3", topic: "t-rf3", partitions: 1, rf: 3,
			wantErr: kerr.InvalidReplicationFactor, wantMsg: "larger than the 1 available broker"},
		{name: "replication factor 0", topic: "t-rf0", partitions: 1, rf: 0, wantErr: kerr.InvalidReplicationFactor},
		{name: "zero partitions", topic: "t-p0", partitions: 0, rf: 1, wantErr: kerr.InvalidPartitions},
		{name: "bad policy", topic: "t-badpolicy", partitions: 1, rf: 1,
			configs: map[string]*string{"cleanup.policy": &badPolicy}, wantErr: kerr.InvalidConfig, wantMsg: "cleanup.policy"},
		{name: "bad retention", topic: "t-badret", partitions: 1, rf: 1,
			configs: map[string]*string{"retention.ms": &badRetention}, wantErr: kerr.InvalidConfig, wantMsg: "retention.ms"},
		{name: "unknown config", topic: "t-unknowncfg", partitions: 1, rf: 1,
			configs: map[string]*string{"no.such.config": &deleteP}, wantErr: kerr.InvalidConfig, wantMsg: "no.such.config"},
		{name: "null config value", topic: "t-nullcfg", partitions: 1, rf: 1,
			configs: map[string]*string{"retention.ms": nil}, wantErr: kerr.InvalidConfig},
		{name: "bad name chars", topic: "bad/name", partitions: 1, rf: 1, wantErr: kerr.InvalidTopicException},
		{name: "dot name", topic: "..", partitions: 1, rf: 1, wantErr: kerr.InvalidTopicException},
		{name: "too long name", topic: strings.Repeat("x", 250), partitions: 1, rf: 1, wantErr: kerr.InvalidTopicException},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			create := adm.CreateTopics
			if tt.validate {
				create = adm.ValidateCreateTopics
			}
			resps, err := create(ctx, tt.partitions, tt.rf, tt.configs, tt.topic)
			if err != nil {
				t.Fatal(err)
			}
			r := resps[tt.topic]
			if tt.wantErr != nil {
				if !errors.Is(r.Err, tt.wantErr) || !strings.Contains(r.ErrMessage, tt.wantMsg) {
					t.Fatalf("err %v (%q), want %v containing %q", r.Err, r.ErrMessage, tt.wantErr, tt.wantMsg)
				}
				if _, ok := tb.Node.Topic(tt.topic); ok {
					t.Fatal("topic created despite the error")
				}
				return
			}
			if r.Err != nil {
				t.Fatalf("err %v (%s)", r.Err, r.ErrMessage)
			}
			if r.NumPartitions != tt.wantParts || r.ReplicationFactor != 1 {
				t.Fatalf("partitions %d rf %d", r.NumPartitions, r.ReplicationFactor)
			}
			ti, exists := tb.Node.Topic(tt.topic)
			if exists == tt.validate {
				t.Fatalf("topic exists = %v after validateOnly = %v", exists, tt.validate)
			}
			if tt.validate {
				return
			}
			if len(ti.Partitions) != int(tt.wantParts) || r.ID != kadm.TopicID(ti.ID) || ti.ID == ([16]byte{}) {
				t.Fatalf("node has %d partitions, id %x; response id %x", len(ti.Partitions), ti.ID, r.ID)
			}
			for name, v := range tt.configs {
				c := r.Configs[name]
				if c.Value == nil || *c.Value != *v || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
					t.Fatalf("config %s in response: %+v", name, c)
				}
			}
		})
	}

	t.Run("already exists", func(t *testing.T) {
		resps, err := adm.CreateTopics(ctx, 1, 1, nil, "t-explicit")
		if err != nil {
			t.Fatal(err)
		}
		if err := resps["t-explicit"].Err; !errors.Is(err, kerr.TopicAlreadyExists) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCreateTopicsRequestLevel(t *testing.T) {
	tb := newTestBroker(t)
	cl := tb.client(t)
	ctx := adminCtx(t)

	topic := func(name string) kmsg.CreateTopicsRequestTopic {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
		return rt
	}
	t.Run("duplicates", func(t *testing.T) {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Topics = []kmsg.CreateTopicsRequestTopic{topic("dup"), topic("dup"), topic("single")}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 2 {
			t.Fatalf("%d topics answered: %+v", len(resp.Topics), resp.Topics)
		}
		for _, rt := range resp.Topics {
			want := int16(0)
			if rt.Topic == "dup" {
				want = kerr.InvalidRequest.Code
			}
			if rt.ErrorCode != want {
				t.Fatalf("%s: error code %d, want %d", rt.Topic, rt.ErrorCode, want)
			}
		}
		if _, ok := tb.Node.Topic("dup"); ok {
			t.Fatal("duplicated topic was created")
		}
	})
	t.Run("manual assignment", func(t *testing.T) {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := topic("assigned")
		rt.NumPartitions, rt.ReplicationFactor = -1, -1
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Replicas = []int32{1}
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Topics[0].ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("error code %d", resp.Topics[0].ErrorCode)
		}
	})
	t.Run("v7 topic id and configs", func(t *testing.T) {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.SetVersion(7)
		req.Topics = append(req.Topics, topic("v7"))
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		rt := resp.Topics[0]
		ti, _ := tb.Node.Topic("v7")
		if rt.ErrorCode != 0 || rt.TopicID != ti.ID || rt.TopicID == ([16]byte{}) {
			t.Fatalf("response %+v, node id %x", rt, ti.ID)
		}
		if len(rt.Configs) == 0 {
			t.Fatal("no configs in a v7 response")
		}
		for _, c := range rt.Configs {
			if c.Name == "cleanup.policy" && (c.Value == nil || *c.Value != "compact") {
				t.Fatalf("cleanup.policy = %v", c.Value)
			}
		}
	})
}

func TestListAndDeleteTopics(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.AutoCreateTopics = false })
	adm := tb.admin(t)
	ctx := adminCtx(t)
	if _, err := adm.CreateTopics(ctx, 2, 1, nil, "a", "b", "c"); err != nil {
		t.Fatal(err)
	}

	details, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		d, ok := details[name]
		ti, _ := tb.Node.Topic(name)
		if !ok || d.Err != nil || len(d.Partitions) != 2 || d.ID != kadm.TopicID(ti.ID) {
			t.Fatalf("%s: %+v (node id %x)", name, d, ti.ID)
		}
	}

	resps, err := adm.DeleteTopics(ctx, "a", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if err := resps["a"].Err; err != nil {
		t.Fatalf("delete a: %v", err)
	}
	if err := resps["missing"].Err; !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete missing: %v", err)
	}
	if _, ok := tb.Node.Topic("a"); ok {
		t.Fatal("a still exists")
	}

	// v6 by topic id.
	ti, _ := tb.Node.Topic("b")
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.SetVersion(6)
	byID := kmsg.NewDeleteTopicsRequestTopic()
	byID.TopicID = ti.ID
	unknownID := kmsg.NewDeleteTopicsRequestTopic()
	unknownID.TopicID = [16]byte{1, 2, 3}
	req.Topics = append(req.Topics, byID, unknownID)
	resp, err := req.RequestWith(ctx, tb.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 2 || resp.Topics[0].ErrorCode != 0 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "b" {
		t.Fatalf("delete by id: %+v", resp.Topics)
	}
	if resp.Topics[1].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("unknown id: error code %d", resp.Topics[1].ErrorCode)
	}
	if _, ok := tb.Node.Topic("b"); ok {
		t.Fatal("b still exists")
	}
	// A fresh client: kgo answers metadata requests from a cache for a while.
	details, err = tb.admin(t).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := details["c"]; !ok || len(details) != 1 {
		t.Fatalf("topics after deletes: %v", details.Names())
	}
}

func TestCreatePartitions(t *testing.T) {
	tb := newTestBroker(t)
	adm := tb.admin(t)
	ctx := adminCtx(t)
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, "grow"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		topic   string
		set     int
		wantErr *kerr.Error
		want    int
	}{
		{"grow to 3", "grow", 3, nil, 3},
		{"same count", "grow", 3, kerr.InvalidPartitions, 3},
		{"shrink", "grow", 2, kerr.InvalidPartitions, 3},
		{"unknown topic", "nope", 2, kerr.UnknownTopicOrPartition, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resps, err := adm.UpdatePartitions(ctx, tt.set, tt.topic)
			if err != nil {
				t.Fatal(err)
			}
			r := resps[tt.topic]
			if tt.wantErr == nil && r.Err != nil || tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
				t.Fatalf("err %v (%s), want %v", r.Err, r.ErrMessage, tt.wantErr)
			}
			ti, _ := tb.Node.Topic(tt.topic)
			if len(ti.Partitions) != tt.want {
				t.Fatalf("node has %d partitions, want %d", len(ti.Partitions), tt.want)
			}
		})
	}
	t.Run("validate only and assignments", func(t *testing.T) {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.ValidateOnly = true
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = "grow", 5
		assigned := kmsg.NewCreatePartitionsRequestTopic()
		assigned.Topic, assigned.Count = "other", 5
		assigned.Assignment = append(assigned.Assignment, kmsg.NewCreatePartitionsRequestTopicAssignment())
		req.Topics = append(req.Topics, rt, assigned)
		resp, err := req.RequestWith(ctx, tb.client(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 2 || resp.Topics[0].ErrorCode != 0 || resp.Topics[1].ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("%+v", resp.Topics)
		}
		if ti, _ := tb.Node.Topic("grow"); len(ti.Partitions) != 3 {
			t.Fatalf("validate only changed the count to %d", len(ti.Partitions))
		}
	})
	t.Run("duplicates", func(t *testing.T) {
		req := kmsg.NewPtrCreatePartitionsRequest()
		for _, count := range []int32{4, 5} {
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = "grow", count
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, tb.client(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 1 || resp.Topics[0].Topic != "grow" || resp.Topics[0].ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("want one INVALID_REQUEST answer for grow, got %+v", resp.Topics)
		}
		if ti, _ := tb.Node.Topic("grow"); len(ti.Partitions) != 3 {
			t.Fatalf("a duplicated topic grew to %d partitions", len(ti.Partitions))
		}
	})
}

// configOf finds one config of a described resource.
func configOf(t testing.TB, rc kadm.ResourceConfig, key string) kadm.Config {
	t.Helper()
	for _, c := range rc.Configs {
		if c.Key == key {
			return c
		}
	}
	t.Fatalf("%s: no config %q in %+v", rc.Name, key, rc.Configs)
	return kadm.Config{}
}

func TestDescribeConfigs(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.DefaultCleanupPolicy = "delete" })
	adm := tb.admin(t)
	ctx := adminCtx(t)
	hour := "3600000"
	if _, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"retention.ms": &hour}, "described"); err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "described", "missing")
	if err != nil {
		t.Fatal(err)
	}
	var got kadm.ResourceConfig
	for _, rc := range rcs {
		switch rc.Name {
		case "described":
			got = rc
		case "missing":
			if !errors.Is(rc.Err, kerr.UnknownTopicOrPartition) {
				t.Fatalf("missing topic: %v", rc.Err)
			}
		}
	}
	if got.Err != nil || len(got.Configs) != len(topicconfig.Defs()) {
		t.Fatalf("described: %v, %d configs", got.Err, len(got.Configs))
	}
	tests := []struct {
		key, value string
		source     kmsg.ConfigSource
		synonyms   int
	}{
		{"retention.ms", "3600000", kmsg.ConfigSourceDynamicTopicConfig, 2},
		{"cleanup.policy", "delete", kmsg.ConfigSourceStaticBrokerConfig, 2},
		{"delete.retention.ms", "86400000", kmsg.ConfigSourceDefaultConfig, 1},
		{"max.message.bytes", "1048588", kmsg.ConfigSourceDefaultConfig, 1},
	}
	for _, tt := range tests {
		c := configOf(t, got, tt.key)
		if c.Value == nil || *c.Value != tt.value || c.Source != tt.source || len(c.Synonyms) != tt.synonyms {
			t.Errorf("%s = %v source %v synonyms %+v; want %s %v %d", tt.key, c.Value, c.Source, c.Synonyms, tt.value, tt.source, tt.synonyms)
		}
	}
	if s := configOf(t, got, "cleanup.policy").Synonyms; s[0].Key != "log.cleanup.policy" || s[1].Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("cleanup.policy synonyms %+v", s)
	}

	t.Run("v4 names filter, types and docs", func(t *testing.T) {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.SetVersion(4)
		req.IncludeDocumentation = true
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "described"
		r.ConfigNames = []string{"cleanup.policy", "retention.bytes", "not.a.config"}
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(ctx, tb.client(t))
		if err != nil {
			t.Fatal(err)
		}
		cs := resp.Resources[0].Configs
		if len(cs) != 2 || cs[0].Name != "cleanup.policy" || cs[0].ConfigType != kmsg.ConfigTypeList ||
			cs[1].ConfigType != kmsg.ConfigTypeLong || cs[0].Documentation == nil || cs[0].ConfigSynonyms != nil {
			t.Fatalf("%+v", cs)
		}
	})

	t.Run("broker", func(t *testing.T) {
		rcs, err := adm.DescribeBrokerConfigs(ctx, tb.Node.NodeID())
		if err != nil {
			t.Fatal(err)
		}
		rc := rcs[0]
		if rc.Err != nil {
			t.Fatal(rc.Err)
		}
		want := map[string]string{"log.cleanup.policy": "delete", "num.partitions": "1", "auto.create.topics.enable": "true"}
		for k, v := range want {
			if c := configOf(t, rc, k); c.Value == nil || *c.Value != v || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
				t.Errorf("%s = %+v, want %s", k, c, v)
			}
		}
	})
}

func TestIncrementalAlterConfigs(t *testing.T) {
	tb := newTestBroker(t)
	adm := tb.admin(t)
	ctx := adminCtx(t)
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, "altered"); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	tests := []struct {
		name     string
		ops      []kadm.AlterConfig
		validate bool
		wantErr  *kerr.Error
		want     map[string]string // overrides after the step
	}{
		{name: "set two", ops: []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "retention.ms", Value: str("1000")},
			{Op: kadm.SetConfig, Name: "delete.retention.ms", Value: str("5000")},
		}, want: map[string]string{"retention.ms": "1000", "delete.retention.ms": "5000"}},
		{name: "validate only", validate: true, ops: []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "retention.ms", Value: str("2000")},
		}, want: map[string]string{"retention.ms": "1000", "delete.retention.ms": "5000"}},
		{name: "delete one", ops: []kadm.AlterConfig{
			{Op: kadm.DeleteConfig, Name: "delete.retention.ms"},
		}, want: map[string]string{"retention.ms": "1000"}},
		{name: "bad value is all or nothing", wantErr: kerr.InvalidConfig, ops: []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "retention.bytes", Value: str("100")},
			{Op: kadm.SetConfig, Name: "max.message.bytes", Value: str("-1")},
		}, want: map[string]string{"retention.ms": "1000"}},
		{name: "unknown name", wantErr: kerr.InvalidConfig, ops: []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "no.such.config", Value: str("1")},
		}, want: map[string]string{"retention.ms": "1000"}},
		{name: "append to non-list", wantErr: kerr.InvalidConfig, ops: []kadm.AlterConfig{
			{Op: kadm.AppendConfig, Name: "retention.ms", Value: str("5")},
		}, want: map[string]string{"retention.ms": "1000"}},
		{name: "append delete to the default policy", ops: []kadm.AlterConfig{
			{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: str("delete")},
		}, want: map[string]string{"retention.ms": "1000", "cleanup.policy": "compact,delete"}},
		{name: "append present policy", ops: []kadm.AlterConfig{
			{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: str("compact")},
		}, want: map[string]string{"retention.ms": "1000", "cleanup.policy": "compact,delete"}},
		{name: "subtract compact", ops: []kadm.AlterConfig{
			{Op: kadm.SubtractConfig, Name: "cleanup.policy", Value: str("compact")},
		}, want: map[string]string{"retention.ms": "1000", "cleanup.policy": "delete"}},
		{name: "append bad policy", wantErr: kerr.InvalidConfig, ops: []kadm.AlterConfig{
			{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: str("archive")},
		}, want: map[string]string{"retention.ms": "1000", "cleanup.policy": "delete"}},
		{name: "set without value", wantErr: kerr.InvalidRequest, ops: []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "segment.ms"},
		}, want: map[string]string{"retention.ms": "1000", "cleanup.policy": "delete"}},
		{name: "config Kafka defines but shardcache does not act on", ops: []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "segment.bytes", Value: str("52428800")},
		}, want: map[string]string{"retention.ms": "1000", "cleanup.policy": "delete", "segment.bytes": "52428800"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alter := adm.AlterTopicConfigs
			if tt.validate {
				alter = adm.ValidateAlterTopicConfigs
			}
			resps, err := alter(ctx, tt.ops, "altered")
			if err != nil {
				t.Fatal(err)
			}
			r := resps[0]
			if tt.wantErr == nil && r.Err != nil || tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
				t.Fatalf("err %v (%s), want %v", r.Err, r.ErrMessage, tt.wantErr)
			}
			if tt.wantErr != nil && r.ErrMessage == "" {
				t.Fatal("error without a message")
			}
			ti, _ := tb.Node.Topic("altered")
			if len(ti.Overrides) != len(tt.want) {
				t.Fatalf("overrides %v, want %v", ti.Overrides, tt.want)
			}
			for k, v := range tt.want {
				if ti.Overrides[k] != v {
					t.Fatalf("overrides %v, want %v", ti.Overrides, tt.want)
				}
			}
		})
	}

	t.Run("describe after alter", func(t *testing.T) {
		rcs, err := adm.DescribeTopicConfigs(ctx, "altered")
		if err != nil {
			t.Fatal(err)
		}
		c := configOf(t, rcs[0], "retention.ms")
		if *c.Value != "1000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			t.Fatalf("%+v", c)
		}
		if ti, _ := tb.Node.Topic("altered"); ti.Config.RetentionMs != 1000 {
			t.Fatalf("resolved retention %d", ti.Config.RetentionMs)
		}
	})
	t.Run("unknown topic", func(t *testing.T) {
		resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: str("1")}}, "nope")
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(resps[0].Err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("%v", resps[0].Err)
		}
	})
	t.Run("broker configs are static", func(t *testing.T) {
		resps, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "num.partitions", Value: str("3")}}, tb.Node.NodeID())
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(resps[0].Err, kerr.InvalidRequest) || !strings.Contains(resps[0].ErrMessage, "static") {
			t.Fatalf("%v %q", resps[0].Err, resps[0].ErrMessage)
		}
	})
}

// TestIncrementalAlterConfigsKeepsConcurrentChanges is the regression test for
// IncrementalAlterConfigs losing updates: the handler read the overrides,
// edited them and proposed the whole map, so of several admins changing one
// topic at once only the last write survived. Each of 8 admins sets its own
// config of the same topic, several rounds over; every change must be kept.
func TestIncrementalAlterConfigsKeepsConcurrentChanges(t *testing.T) {
	tb := newTestBroker(t)
	ctx := adminCtx(t)
	settings := map[string]string{
		"retention.ms": "1000", "delete.retention.ms": "2000", "min.compaction.lag.ms": "3000",
		"segment.ms": "4000", "segment.bytes": "5242880", "flush.ms": "6000",
		"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime",
	}
	admins := make([]*kadm.Client, 0, len(settings))
	for range settings {
		admins = append(admins, tb.admin(t))
	}
	for round := range 5 {
		topic := fmt.Sprintf("contended-%d", round)
		if _, err := admins[0].CreateTopics(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, len(settings))
		i := 0
		for name, value := range settings {
			adm := admins[i]
			i++
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: name, Value: &value}}, topic)
				if err == nil {
					err = resps[0].Err
				}
				if err != nil {
					errs <- fmt.Errorf("set %s: %w", name, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ti, _ := tb.Node.Topic(topic)
		for name, value := range settings {
			if ti.Overrides[name] != value {
				t.Fatalf("round %d: %s = %q after concurrent changes, want %q (overrides %v)", round, name, ti.Overrides[name], value, ti.Overrides)
			}
		}
		rcs, err := admins[0].DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		for name, value := range settings {
			if c := configOf(t, rcs[0], name); *c.Value != value || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Fatalf("described %s = %q (%v), want %q", name, *c.Value, c.Source, value)
			}
		}
	}
}

// TestCreateTopicsKafkaStreamsConfigs is the regression test for Kafka Streams
// and Connect failing to create their topics: only 6 config names were
// accepted. A windowed changelog as Streams creates it (compact,delete and
// configs shardcache does not act on) is created, and DescribeConfigs reports
// every config with its source.
func TestCreateTopicsKafkaStreamsConfigs(t *testing.T) {
	tb := newTestBroker(t)
	adm := tb.admin(t)
	ctx := adminCtx(t)
	str := func(s string) *string { return &s }
	changelog := map[string]*string{
		"cleanup.policy":         str("compact,delete"),
		"retention.ms":           str("172800000"),
		"message.timestamp.type": str("CreateTime"),
		"segment.bytes":          str("52428800"),
		"min.insync.replicas":    str("1"),
	}
	resps, err := adm.CreateTopics(ctx, 2, 1, changelog, "app-store-changelog")
	if err != nil {
		t.Fatal(err)
	}
	r := resps["app-store-changelog"]
	if r.Err != nil {
		t.Fatalf("create: %v (%s)", r.Err, r.ErrMessage)
	}
	if c := r.Configs["segment.bytes"]; c.Value == nil || *c.Value != "52428800" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("CreateTopics response segment.bytes = %+v", c)
	}
	ti, _ := tb.Node.Topic("app-store-changelog")
	if ti.Config.CleanupPolicy != shardstore.PolicyCompact || !ti.Config.Retention || ti.Config.RetentionMs != 172800000 {
		t.Fatalf("resolved config %+v", ti.Config)
	}

	rcs, err := adm.DescribeTopicConfigs(ctx, "app-store-changelog")
	if err != nil {
		t.Fatal(err)
	}
	rc := rcs[0]
	if rc.Err != nil || len(rc.Configs) != len(topicconfig.Defs()) {
		t.Fatalf("describe: %v, %d configs", rc.Err, len(rc.Configs))
	}
	tests := []struct {
		key, value string
		source     kmsg.ConfigSource
		synonym    string // first broker-level synonym name
	}{
		{"cleanup.policy", "compact,delete", kmsg.ConfigSourceDynamicTopicConfig, "log.cleanup.policy"},
		{"segment.bytes", "52428800", kmsg.ConfigSourceDynamicTopicConfig, "log.segment.bytes"},
		{"segment.ms", "604800000", kmsg.ConfigSourceDefaultConfig, "log.roll.ms"},
		{"compression.type", "producer", kmsg.ConfigSourceDefaultConfig, "compression.type"},
		{"min.cleanable.dirty.ratio", "0.5", kmsg.ConfigSourceDefaultConfig, "log.cleaner.min.cleanable.ratio"},
		{"message.timestamp.after.max.ms", "3600000", kmsg.ConfigSourceDefaultConfig, "log.message.timestamp.after.max.ms"},
		{"unclean.leader.election.enable", "false", kmsg.ConfigSourceDefaultConfig, "unclean.leader.election.enable"},
	}
	for _, tt := range tests {
		c := configOf(t, rc, tt.key)
		if c.Value == nil || *c.Value != tt.value || c.Source != tt.source {
			t.Errorf("%s = %v (%v), want %s (%v)", tt.key, c.Value, c.Source, tt.value, tt.source)
			continue
		}
		last := c.Synonyms[len(c.Synonyms)-1]
		if last.Key != tt.synonym || last.Source != kmsg.ConfigSourceDefaultConfig {
			t.Errorf("%s synonyms %+v, want the default under %s", tt.key, c.Synonyms, tt.synonym)
		}
	}

	// Connect's internal topics: compact with configs of their own.
	connect := map[string]*string{"cleanup.policy": str("compact"), "min.compaction.lag.ms": str("0"),
		"max.compaction.lag.ms": str("9223372036854775807"), "compression.type": str("zstd")}
	if resps, err := adm.CreateTopics(ctx, 1, 1, connect, "connect-configs"); err != nil || resps["connect-configs"].Err != nil {
		t.Fatalf("connect topic: %v %+v", err, resps["connect-configs"])
	}
	// Ranges are Kafka's.
	bad := map[string]*string{"segment.bytes": str("1024")}
	resps, err = adm.CreateTopics(ctx, 1, 1, bad, "bad-segment")
	if err != nil {
		t.Fatal(err)
	}
	if r := resps["bad-segment"]; !errors.Is(r.Err, kerr.InvalidConfig) || !strings.Contains(r.ErrMessage, "segment.bytes") {
		t.Fatalf("segment.bytes=1024: %v %q", r.Err, r.ErrMessage)
	}
	tiered := map[string]*string{"remote.storage.enable": str("true")}
	resps, err = adm.CreateTopics(ctx, 1, 1, tiered, "tiered")
	if err != nil {
		t.Fatal(err)
	}
	if r := resps["tiered"]; !errors.Is(r.Err, kerr.InvalidConfig) {
		t.Fatalf("remote.storage.enable=true: %v %q", r.Err, r.ErrMessage)
	}
}

// TestInternalTopicsRefuseAdminChanges is the regression test for internal
// topics being unprotected: DeleteTopics (by name and by id), CreatePartitions
// and IncrementalAlterConfigs on __consumer_offsets and __transaction_state
// are refused with INVALID_TOPIC_EXCEPTION, validate-only requests too, and
// the topics stay as they were.
func TestInternalTopicsRefuseAdminChanges(t *testing.T) {
	gb := newGroupBroker(t, func(c *GroupConfig) { c.CreateOffsetsTopic = true })
	cl := gb.client(t)
	adm := kadm.NewClient(cl)
	ctx := adminCtx(t)
	waitUntil(t, 10*time.Second, "offsets topic created", func() error {
		if _, ok := gb.Node.Topic(offsetsTopic); !ok {
			return errors.New("no " + offsetsTopic)
		}
		return nil
	})
	// __transaction_state, once it exists, is protected the same way.
	if _, err := gb.Node.CreateTopic(ctx, "__transaction_state", 2, nil, false); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	for _, topic := range []string{offsetsTopic, "__transaction_state"} {
		before, _ := gb.Node.Topic(topic)
		t.Run(topic, func(t *testing.T) {
			wantRefused := func(what string, err error, msg string) {
				t.Helper()
				if !errors.Is(err, kerr.InvalidTopicException) || !strings.Contains(msg, topic) {
					t.Errorf("%s: %v %q, want INVALID_TOPIC_EXCEPTION naming the topic", what, err, msg)
				}
			}
			dr, err := adm.DeleteTopics(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			wantRefused("DeleteTopics", dr[topic].Err, dr[topic].ErrMessage)

			byID := kmsg.NewPtrDeleteTopicsRequest()
			rt := kmsg.NewDeleteTopicsRequestTopic()
			rt.TopicID = before.ID
			byID.Topics = append(byID.Topics, rt)
			resp, err := byID.RequestWith(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			got := resp.Topics[0]
			msg := ""
			if got.ErrorMessage != nil {
				msg = *got.ErrorMessage
			}
			wantRefused("DeleteTopics by id", kerr.ErrorForCode(got.ErrorCode), msg)

			for _, validate := range []bool{false, true} {
				create := adm.CreatePartitions
				alter := adm.AlterTopicConfigs
				if validate {
					create, alter = adm.ValidateCreatePartitions, adm.ValidateAlterTopicConfigs
				}
				cr, err := create(ctx, 60, topic)
				if err != nil {
					t.Fatal(err)
				}
				wantRefused("CreatePartitions", cr[topic].Err, cr[topic].ErrMessage)
				ar, err := alter(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: str("delete")}}, topic)
				if err != nil {
					t.Fatal(err)
				}
				wantRefused("IncrementalAlterConfigs", ar[0].Err, ar[0].ErrMessage)
			}
			after, ok := gb.Node.Topic(topic)
			if !ok || after.ID != before.ID || len(after.Partitions) != len(before.Partitions) ||
				fmt.Sprint(after.Overrides) != fmt.Sprint(before.Overrides) {
				t.Fatalf("%s changed: before %+v after %+v", topic, before, after)
			}
		})
	}
}
