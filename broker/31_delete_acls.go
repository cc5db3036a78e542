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
	changeACLs(b, rc, "delete acls", filters, (*acl.Filter).Validate,
		func(i int, code int16, msg *string) {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, msg
		},
		func(chunk []acl.Filter, at []int) error {
			deleted, err := b.node.DeleteACLs(ctx, chunk)
			if err != nil {
				return err
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
			return nil
		})
	return resp, nil
}
