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
	changeACLs(b, rc, "create acls", bindings, (*acl.Binding).Validate,
		func(i int, code int16, msg *string) {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, msg
		},
		func(chunk []acl.Binding, _ []int) error {
			if err := b.node.CreateACLs(ctx, chunk); err != nil {
				return err
			}
			b.log.Info("acls created", logKeyPrincipal, rc.principal, "count", len(chunk))
			return nil
		})
	return resp, nil
}

// changeACLs carries out the changes of a CreateAcls or DeleteAcls request
// (what names it in logs), answering each through answer by its index in
// the request: without ALTER on the cluster every change answers
// CLUSTER_AUTHORIZATION_FAILED; otherwise an invalid change answers its
// error, and the valid ones go to apply in Raft commands of at most
// raftfsm.MaxACLsPerCommand, with the request indexes of the chunk's items.
// If apply fails, each change of the chunk answers its error.
func changeACLs[T any](b *Broker, rc *requestContext, what string, items []T, validate func(*T) error,
	answer func(i int, code int16, msg *string), apply func(chunk []T, at []int) error) {
	if !b.allowedCluster(rc, kmsg.ACLOperationAlter) {
		for i := range items {
			answer(i, kerr.ClusterAuthorizationFailed.Code, nil)
		}
		return
	}
	fail := func(i int, err error) { answer(i, b.codeFor(err, what), clientMessage(err)) }
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
		if err := apply(valid[:n], at[:n]); err != nil {
			for _, i := range at[:n] {
				fail(i, err)
			}
		}
		valid, at = valid[n:], at[n:]
	}
}
