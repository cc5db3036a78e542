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
	bindings := make([]acl.Binding, len(req.Creations))
	for i, c := range req.Creations {
		bindings[i] = acl.Binding{
			ResourceType: c.ResourceType,
			Name:         c.ResourceName,
			Pattern:      c.ResourcePatternType,
			Principal:    c.Principal,
			Host:         c.Host,
			Operation:    c.Operation,
			Permission:   c.PermissionType,
		}
	}
	fail := func(i int, err error) {
		resp.Results[i].ErrorCode = b.codeFor(err, "create acls")
		resp.Results[i].ErrorMessage = clientMessage(err)
	}
	writeACLChanges(bindings, (*acl.Binding).Validate, fail, func(chunk []acl.Binding, at []int) {
		if err := b.node.CreateACLs(ctx, chunk); err != nil {
			for _, i := range at {
				fail(i, err)
			}
			return
		}
		b.log.Info("acls created", logKeyPrincipal, rc.principal, "count", len(chunk))
	})
	return resp, nil
}

// writeACLChanges validates each of items, answering the invalid ones
// through fail, and hands the valid ones to apply in Raft commands of at
// most raftfsm.MaxACLsPerCommand, with the request indexes of the chunk's
// items (CreateAcls and DeleteAcls).
func writeACLChanges[T any](items []T, validate func(*T) error, fail func(i int, err error), apply func(chunk []T, at []int)) {
	var valid []T
	var at []int
	for i := range items {
		if err := validate(&items[i]); err != nil {
			fail(i, err)
			continue
		}
		valid = append(valid, items[i])
		at = append(at, i)
	}
	for len(valid) > 0 {
		n := min(len(valid), raftfsm.MaxACLsPerCommand)
		apply(valid[:n], at[:n])
		valid, at = valid[n:], at[n:]
	}
}
