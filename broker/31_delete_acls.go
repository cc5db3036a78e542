package broker

// DeleteAcls: v1-3
//
// Behavior:
//   - Needs ALTER on the cluster, else every filter answers
//     CLUSTER_AUTHORIZATION_FAILED.
//   - Filters select bindings as DescribeAcls's does; one with an unknown
//     enum value answers INVALID_REQUEST.
//   - The valid filters go to the metadata leader in one Raft write (any node
//     accepts the request); the metadata group resolves them against the
//     ACLs in force when it applies the deletion and answers, per filter,
//     the bindings it deleted, which the response lists. A binding two
//     filters match is listed under both.
//
// Version notes: v0 is gone from Kafka 4 (KIP-896); v2+ is flexible.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
)

func init() { register(kmsg.DeleteACLs.Int16(), 1, 3, (*Broker).handleDeleteACLs) }

func (b *Broker) handleDeleteACLs(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	resp.Results = make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
	for i := range resp.Results {
		resp.Results[i] = kmsg.NewDeleteACLsResponseResult()
	}
	if !b.allowedCluster(rc, kmsg.ACLOperationAlter) {
		for i := range resp.Results {
			resp.Results[i].ErrorCode = kerr.ClusterAuthorizationFailed.Code
		}
		return resp, nil
	}
	filters := make([]acl.Filter, len(req.Filters))
	for i, rf := range req.Filters {
		filters[i] = acl.Filter{
			ResourceType: rf.ResourceType,
			Name:         rf.ResourceName,
			Pattern:      rf.ResourcePatternType,
			Principal:    rf.Principal,
			Host:         rf.Host,
			Operation:    rf.Operation,
			Permission:   rf.PermissionType,
		}
	}
	fail := func(i int, err error) {
		resp.Results[i].ErrorCode = b.codeFor(err, "delete acls")
		resp.Results[i].ErrorMessage = clientMessage(err)
	}
	writeACLChanges(filters, (*acl.Filter).Validate, fail, func(chunk []acl.Filter, at []int) {
		deleted, err := b.node.DeleteACLs(ctx, chunk)
		if err != nil {
			for _, i := range at {
				fail(i, err)
			}
			return
		}
		for j, i := range at {
			r := &resp.Results[i]
			for _, bd := range deleted[j] {
				m := kmsg.NewDeleteACLsResponseResultMatchingACL()
				m.ResourceType, m.ResourceName, m.ResourcePatternType = bd.ResourceType, bd.Name, bd.Pattern
				m.Principal, m.Host, m.Operation, m.PermissionType = bd.Principal, bd.Host, bd.Operation, bd.Permission
				r.MatchingACLs = append(r.MatchingACLs, m)
			}
		}
		b.log.Info("acls deleted", logKeyPrincipal, rc.principal, "filters", len(chunk))
	})
	return resp, nil
}
