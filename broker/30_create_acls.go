package broker

// CreateAcls: v1-3
//
// Behavior:
//   - Needs ALTER on the cluster, else every creation answers
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Each creation is validated as Kafka validates it (INVALID_REQUEST with
//     Kafka's message): a concrete resource type, LITERAL or PREFIXED, a
//     concrete operation and permission, a non-empty name ("kafka-cluster"
//     for the cluster), a TYPE:NAME principal and a host ("*" for all).
//   - The valid creations are stored in one Raft write through the metadata
//     leader (any node accepts the request); a binding that exists already
//     is not an error. If the write fails, each valid creation answers its
//     error.
//
// Version notes: v0 is gone from Kafka 4 (KIP-896); v2+ is flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.CreateACLs.Int16(), 1, 3, (*Broker).handleCreateACLs) }

func (b *Broker) handleCreateACLs(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	resp.Results = make([]kmsg.CreateACLsResponseResult, len(req.Creations))
	for i := range resp.Results {
		resp.Results[i] = kmsg.NewCreateACLsResponseResult()
	}
	if !b.allowedCluster(rc, kmsg.ACLOperationAlter) {
		for i := range resp.Results {
			resp.Results[i].ErrorCode = kerr.ClusterAuthorizationFailed.Code
		}
		return resp, nil
	}
	var valid []acl.Binding
	var at []int
	for i, c := range req.Creations {
		bd := acl.Binding{
			ResourceType: c.ResourceType,
			Name:         c.ResourceName,
			Pattern:      c.ResourcePatternType,
			Principal:    c.Principal,
			Host:         c.Host,
			Operation:    c.Operation,
			Permission:   c.PermissionType,
		}
		if err := bd.Validate(); err != nil {
			resp.Results[i].ErrorCode = errorCode(err)
			resp.Results[i].ErrorMessage = clientMessage(err)
			continue
		}
		valid = append(valid, bd)
		at = append(at, i)
	}
	for len(valid) > 0 {
		n := min(len(valid), raftfsm.MaxACLsPerCommand)
		if err := b.node.CreateACLs(ctx, valid[:n]); err != nil {
			code := b.codeFor(err, "create acls")
			for _, i := range at[:n] {
				resp.Results[i].ErrorCode = code
				resp.Results[i].ErrorMessage = clientMessage(err)
			}
		} else {
			b.log.Info("acls created", logKeyPrincipal, rc.principal, "count", n)
		}
		valid, at = valid[n:], at[n:]
	}
	return resp, nil
}
