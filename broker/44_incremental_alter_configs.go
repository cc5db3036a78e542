package broker

// IncrementalAlterConfigs: v0-1
//
// Behavior:
//   - Authorization (authorizer.go): ALTER_CONFIGS on the topic, else
//     TOPIC_AUTHORIZATION_FAILED; on the cluster for a broker resource, else
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Topic resources: SET, DELETE, APPEND and SUBTRACT travel as they are to
//     the metadata state machine, which applies them to the topic's overrides
//     in force when the change is committed (raftfsm.Node.AlterTopicConfig).
//     Concurrent admins changing one topic therefore never undo each other's
//     changes. The resulting set is validated there (all or nothing per topic):
//     an unknown config name or a bad value is INVALID_CONFIG with the reason.
//   - APPEND and SUBTRACT work on LIST configs (cleanup.policy and the
//     throttled replica lists); on a config the topic does not override they
//     start from the built-in default, as Kafka's controller does. Another
//     type is INVALID_CONFIG.
//   - A SET, APPEND or SUBTRACT with a null value, an unknown operation or a
//     config named twice in one resource is INVALID_REQUEST.
//   - ValidateOnly checks without storing.
//   - Internal topics (__consumer_offsets, __transaction_state) are refused
//     with INVALID_TOPIC_EXCEPTION: their configs are the coordinators' (see
//     20_delete_topics.go for the choice of code).
//   - Broker resources are INVALID_REQUEST ("broker configs are static"); other
//     resource types are INVALID_REQUEST too. An unknown topic is
//     UNKNOWN_TOPIC_OR_PARTITION.
//
// Version notes:
//   - v1 is v0 with flexible encoding; both behave the same.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/topicconfig"
)

func init() {
	register(kmsg.IncrementalAlterConfigs.Int16(), 0, 1, (*Broker).handleIncrementalAlterConfigs)
}

func (b *Broker) handleIncrementalAlterConfigs(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewIncrementalAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !b.allowed(rc, kmsg.ACLOperationAlterConfigs, kmsg.ACLResourceTypeTopic, rr.ResourceName) {
				err = kerr.TopicAuthorizationFailed
				break
			}
			err = b.alterTopicConfigs(ctx, rr, req.ValidateOnly)
		case kmsg.ConfigResourceTypeBroker:
			if !b.allowedCluster(rc, kmsg.ACLOperationAlterConfigs) {
				err = kerr.ClusterAuthorizationFailed
				break
			}
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
	if isInternalTopic(rr.ResourceName) {
		return errInternalTopic("change the configs of", rr.ResourceName)
	}
	ops := make([]topicconfig.Op, 0, len(rr.Configs))
	seen := map[string]bool{}
	for _, c := range rr.Configs {
		if seen[c.Name] {
			return newKafkaError(kerr.InvalidRequest, "config %q is listed more than once", c.Name)
		}
		seen[c.Name] = true
		op := topicconfig.Op{Name: c.Name}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			op.Type = topicconfig.OpSet
		case kmsg.IncrementalAlterConfigOpDelete:
			op.Type = topicconfig.OpDelete
		case kmsg.IncrementalAlterConfigOpAppend:
			op.Type = topicconfig.OpAppend
		case kmsg.IncrementalAlterConfigOpSubtract:
			op.Type = topicconfig.OpSubtract
		default:
			return newKafkaError(kerr.InvalidRequest, "config %q: unknown operation %d", c.Name, c.Op)
		}
		if op.Type != topicconfig.OpDelete {
			if c.Value == nil {
				return newKafkaError(kerr.InvalidRequest, "config %q: %s needs a value", c.Name, op.Type)
			}
			op.Value = *c.Value
		}
		ops = append(ops, op)
	}
	return b.node.AlterTopicConfig(ctx, rr.ResourceName, ops, validateOnly)
}
