package broker

// IncrementalAlterConfigs: v0-1
//
// Behavior:
//   - Topic resources: SET and DELETE change the topic's overrides; the whole
//     resulting set is validated and stored at once (all or nothing per topic).
//     APPEND and SUBTRACT work on cleanup.policy only (the one list config) and
//     only when the result is exactly one valid policy ("compact" or
//     "delete"); anything else is INVALID_CONFIG with the reason.
//   - A SET with a null value or a config named twice in one resource is
//     INVALID_REQUEST; an unknown config name is INVALID_CONFIG.
//   - ValidateOnly checks without storing.
//   - Broker resources are INVALID_REQUEST ("broker configs are static"); other
//     resource types are INVALID_REQUEST too. An unknown topic is
//     UNKNOWN_TOPIC_OR_PARTITION.
//
// Version notes:
//   - v1 is v0 with flexible encoding; both behave the same.

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
)

func init() {
	register(kmsg.IncrementalAlterConfigs.Int16(), 0, 1, (*Broker).handleIncrementalAlterConfigs)
}

func (b *Broker) handleIncrementalAlterConfigs(ctx context.Context, _ *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewIncrementalAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			err = b.alterTopicConfigs(ctx, rr, req.ValidateOnly)
		case kmsg.ConfigResourceTypeBroker:
			err = newKafkaError(kerr.InvalidRequest, "broker configs are static")
		default:
			err = newKafkaError(kerr.InvalidRequest, "config resource type %s is not supported", rr.ResourceType)
		}
		if err != nil {
			r.ErrorCode = b.codeFor(err, "alter configs", logKeyTopic, rr.ResourceName)
			r.ErrorMessage = clientMessage(err)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}

func (b *Broker) alterTopicConfigs(ctx context.Context, rr kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) error {
	ti, ok := b.node.Topic(rr.ResourceName)
	if !ok {
		return raftfsm.ErrUnknownTopic
	}
	overrides := make(map[string]string, len(ti.Overrides)+len(rr.Configs))
	for k, v := range ti.Overrides {
		overrides[k] = v
	}
	seen := map[string]bool{}
	for _, c := range rr.Configs {
		if seen[c.Name] {
			return newKafkaError(kerr.InvalidRequest, "config %q is listed more than once", c.Name)
		}
		seen[c.Name] = true
		def, known := topicconfig.Lookup(c.Name)
		if !known {
			return newKafkaError(kerr.InvalidConfig, "unknown topic config %q", c.Name)
		}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.Value == nil {
				return newKafkaError(kerr.InvalidRequest, "config %q: SET needs a value", c.Name)
			}
			overrides[c.Name] = *c.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(overrides, c.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if def.Type != "LIST" {
				return newKafkaError(kerr.InvalidConfig, "config %q: %s applies only to list configs", c.Name, c.Op)
			}
			if c.Value == nil {
				return newKafkaError(kerr.InvalidRequest, "config %q: %s needs a value", c.Name, c.Op)
			}
			cur, ok := overrides[c.Name]
			if !ok {
				cur = resolvedValue(ti.Config, def)
			}
			v, err := applyListOp(cur, *c.Value, c.Op)
			if err != nil {
				return newKafkaError(kerr.InvalidConfig, "config %q: %v", c.Name, err)
			}
			overrides[c.Name] = v
		default:
			return newKafkaError(kerr.InvalidRequest, "config %q: unknown operation %d", c.Name, c.Op)
		}
	}
	if err := topicconfig.ValidateAll(overrides); err != nil {
		return err
	}
	if err := b.node.SetTopicConfig(ctx, rr.ResourceName, overrides, validateOnly); err != nil {
		return err
	}
	return nil
}

// applyListOp appends to or subtracts from a comma-separated list value. The
// result must be exactly one element: the only list config, cleanup.policy,
// takes one policy (topicconfig rejects "compact,delete").
func applyListOp(cur, arg string, op kmsg.IncrementalAlterConfigOp) (string, error) {
	list := splitList(cur)
	for _, item := range splitList(arg) {
		i := slices.Index(list, item)
		switch {
		case op == kmsg.IncrementalAlterConfigOpAppend && i < 0:
			list = append(list, item)
		case op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0:
			list = slices.Delete(list, i, i+1)
		}
	}
	if len(list) != 1 {
		return "", newKafkaError(kerr.InvalidConfig, "%s would leave %q; exactly one value is allowed", op, strings.Join(list, ","))
	}
	return list[0], nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
