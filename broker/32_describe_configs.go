package broker

// DescribeConfigs: v1-4
//
// Behavior:
//   - Authorization (authorizer.go): DESCRIBE_CONFIGS on the topic, else
//     TOPIC_AUTHORIZATION_FAILED; on the cluster for a broker resource, else
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Topic resources list every topic config Kafka 4.x defines (the table in
//     internal/topicconfig), or the ones in ConfigNames (unknown names are left
//     out), with the value the topic uses and its source: DYNAMIC_TOPIC_CONFIG
//     for the topic's overrides, STATIC_BROKER_CONFIG for broker-level
//     defaults, DEFAULT_CONFIG otherwise. Configs shardcache stores without
//     acting on them (segment.bytes, compression.type, ...) are listed like the
//     others; their documentation says so. IsDefault is set for
//     DEFAULT_CONFIG; topic configs are never read-only. An unknown topic is
//     UNKNOWN_TOPIC_OR_PARTITION.
//   - Broker resources (name "" or this node's id) answer a small read-only
//     set: broker.id, num.partitions, default.replication.factor,
//     auto.create.topics.enable, log.cleanup.policy, socket.request.max.bytes.
//     Another broker id is INVALID_REQUEST; other resource types too.
//
// Version notes:
//   - v1+: synonyms when IncludeSynonyms: the topic override, the broker-level
//     setting under its broker name (for example log.cleanup.policy), and the
//     built-in default, in that order of precedence.
//   - v3+: ConfigType, and Documentation when IncludeDocumentation.
//   - v0 is not served.

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.DescribeConfigs.Int16(), 1, 4, (*Broker).handleDescribeConfigs) }

func (b *Broker) handleDescribeConfigs(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !b.allowed(rc, kmsg.ACLOperationDescribeConfigs, kmsg.ACLResourceTypeTopic, rr.ResourceName) {
				err = kerr.TopicAuthorizationFailed
				break
			}
			r.Configs, err = b.describeTopicConfigs(req, rr)
		case kmsg.ConfigResourceTypeBroker:
			if !b.allowedCluster(rc, kmsg.ACLOperationDescribeConfigs) {
				err = kerr.ClusterAuthorizationFailed
				break
			}
			r.Configs, err = b.describeBrokerConfigs(req, rr)
		default:
			err = newKafkaError(kerr.InvalidRequest, "config resource type %s is not supported", rr.ResourceType)
		}
		if err != nil {
			r.ErrorCode = b.codeFor(err, "describe configs", logKeyTopic, rr.ResourceName)
			r.ErrorMessage = clientMessage(err)
			r.Configs = nil
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}

func (b *Broker) describeTopicConfigs(req *kmsg.DescribeConfigsRequest, rr kmsg.DescribeConfigsRequestResource) ([]kmsg.DescribeConfigsResponseResourceConfig, error) {
	ti, ok := b.node.Topic(rr.ResourceName)
	if !ok {
		return nil, raftfsm.ErrUnknownTopic
	}
	want := nameFilter(rr.ConfigNames)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, v := range b.topicConfigValues(ti) {
		if !want(v.def.Name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = v.def.Name
		c.Value = kmsg.StringPtr(v.value)
		c.Source = v.source
		c.IsDefault = v.source == kmsg.ConfigSourceDefaultConfig
		if req.IncludeSynonyms {
			c.ConfigSynonyms = b.topicConfigSynonyms(ti, v.def)
		}
		if req.Version >= 3 {
			c.ConfigType, _ = kmsg.ParseConfigType(v.def.Type)
			if req.IncludeDocumentation {
				c.Documentation = kmsg.StringPtr(v.def.Doc)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// topicConfigValue is one config of a topic as DescribeConfigs and
// CreateTopics (v5+) report it.
type topicConfigValue struct {
	def    topicconfig.Def
	value  string
	source kmsg.ConfigSource
}

// topicConfigValues lists every topic config Kafka defines, in name order,
// with the value the topic uses and where it comes from: the topic's override
// (DYNAMIC_TOPIC_CONFIG), a broker-level default (STATIC_BROKER_CONFIG) or the
// built-in default (DEFAULT_CONFIG). For the configs shardcache acts on, a
// value not overridden by the topic is read from its resolved Config, so it is
// what the node really applies even if Config.TopicDefaults is not set.
func (b *Broker) topicConfigValues(ti raftfsm.TopicInfo) []topicConfigValue {
	defs := topicconfig.Defs()
	out := make([]topicConfigValue, 0, len(defs))
	for _, d := range defs {
		value, src := topicconfig.Value(d, ti.Overrides, b.cfg.TopicDefaults)
		if src == topicconfig.SourceDefault && d.Acts {
			if rv := resolvedValue(ti.Config, d); rv != value {
				value, src = rv, topicconfig.SourceBroker
			}
		}
		out = append(out, topicConfigValue{def: d, value: value, source: configSource(src)})
	}
	return out
}

// configSource maps where a value comes from to Kafka's ConfigSource.
func configSource(s topicconfig.Source) kmsg.ConfigSource {
	switch s {
	case topicconfig.SourceTopic:
		return kmsg.ConfigSourceDynamicTopicConfig
	case topicconfig.SourceBroker:
		return kmsg.ConfigSourceStaticBrokerConfig
	}
	return kmsg.ConfigSourceDefaultConfig
}

// resolvedValue formats the field of cfg that config d sets, as Kafka spells
// the value; d.Default for the configs shardcache does not act on.
func resolvedValue(cfg topicconfig.Config, d topicconfig.Def) string {
	switch d.Name {
	case topicconfig.CleanupPolicy:
		return cfg.PolicyValue()
	case topicconfig.DeleteRetentionMs:
		return strconv.FormatInt(cfg.DeleteRetentionMs, 10)
	case topicconfig.RetentionMs:
		return strconv.FormatInt(cfg.RetentionMs, 10)
	case topicconfig.RetentionBytes:
		return strconv.FormatInt(cfg.RetentionBytes, 10)
	case topicconfig.MaxMessageBytes:
		return strconv.FormatInt(int64(cfg.MaxMessageBytes), 10)
	case topicconfig.MinCompactionLagMs:
		return strconv.FormatInt(cfg.MinCompactionLagMs, 10)
	case topicconfig.CompressionType:
		return cfg.CompressionValue()
	}
	return d.Default
}

// topicConfigSynonyms lists where a topic config's value can come from, the
// one in force first: the topic override, the broker-level setting under its
// broker name (Def.BrokerName, for example log.cleanup.policy), and the
// built-in default.
func (b *Broker) topicConfigSynonyms(ti raftfsm.TopicInfo, d topicconfig.Def) []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	var out []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
	add := func(name, value string, src kmsg.ConfigSource) {
		s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
		s.Name, s.Value, s.Source = name, kmsg.StringPtr(value), src
		out = append(out, s)
	}
	brokerName := d.BrokerName
	if brokerName == "" {
		brokerName = d.Name
	}
	if v, ok := ti.Overrides[d.Name]; ok {
		add(d.Name, v, kmsg.ConfigSourceDynamicTopicConfig)
	}
	if v, ok := b.cfg.TopicDefaults[d.Name]; ok {
		add(brokerName, v, kmsg.ConfigSourceStaticBrokerConfig)
	}
	add(brokerName, d.Default, kmsg.ConfigSourceDefaultConfig)
	return out
}

func (b *Broker) describeBrokerConfigs(req *kmsg.DescribeConfigsRequest, rr kmsg.DescribeConfigsRequestResource) ([]kmsg.DescribeConfigsResponseResourceConfig, error) {
	id := strconv.Itoa(int(b.node.NodeID()))
	if rr.ResourceName != "" && rr.ResourceName != id {
		return nil, newKafkaError(kerr.InvalidRequest, "broker %q is not this broker (%s)", rr.ResourceName, id)
	}
	cleanup, ok := b.cfg.TopicDefaults[topicconfig.CleanupPolicy]
	if !ok {
		d, _ := topicconfig.Lookup(topicconfig.CleanupPolicy)
		cleanup = d.Default
	}
	type entry struct {
		name, value, doc string
		typ              kmsg.ConfigType
	}
	entries := []entry{
		{"auto.create.topics.enable", strconv.FormatBool(b.cfg.AutoCreateTopics), "whether unknown topics are created on first use", kmsg.ConfigTypeBoolean},
		{"broker.id", id, "this broker's node id", kmsg.ConfigTypeInt},
		{"default.replication.factor", "1", "replicas per partition (one: a single-node broker)", kmsg.ConfigTypeInt},
		{"log.cleanup.policy", cleanup, "cleanup.policy of topics that do not set one", kmsg.ConfigTypeList},
		{"num.partitions", strconv.Itoa(int(b.cfg.DefaultPartitions)), "partitions of a topic created without a count", kmsg.ConfigTypeInt},
		{"socket.request.max.bytes", strconv.Itoa(int(b.cfg.MaxRequestBytes)), "largest request frame accepted", kmsg.ConfigTypeInt},
	}
	want := nameFilter(rr.ConfigNames)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, e := range entries {
		if !want(e.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly = e.name, kmsg.StringPtr(e.value), true
		c.Source = kmsg.ConfigSourceStaticBrokerConfig
		if req.IncludeSynonyms {
			s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			s.Name, s.Value, s.Source = e.name, kmsg.StringPtr(e.value), kmsg.ConfigSourceStaticBrokerConfig
			c.ConfigSynonyms = append(c.ConfigSynonyms, s)
		}
		if req.Version >= 3 {
			c.ConfigType = e.typ
			if req.IncludeDocumentation {
				c.Documentation = kmsg.StringPtr(e.doc)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// nameFilter reports whether a config name was asked for; a nil list asks for
// all.
func nameFilter(names []string) func(string) bool {
	if names == nil {
		return func(string) bool { return true }
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return func(n string) bool { return set[n] }
}
