package broker

// DescribeAcls: v1-3
//
// Behavior:
//   - Needs DESCRIBE on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
//   - The filter selects bindings as Kafka's AclBindingFilter does (a null
//     name, principal or host and ANY match everything; pattern type MATCH
//     selects the bindings that apply to the named resource: the literal
//     name, the literal "*" and the prefixes of the name). An unknown enum
//     value is INVALID_REQUEST.
//   - The bindings come from this node's metadata (replicated through Raft,
//     raftfsm/acls.go), grouped by resource pattern, in resource type, name
//     and pattern type order.
//
// Version notes: v0 (literal patterns only) is gone from Kafka 4 (KIP-896);
// v2+ is flexible (kmsg handles tags).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
)

func init() { register(kmsg.DescribeACLs.Int16(), 1, 3, (*Broker).handleDescribeACLs) }

func (b *Broker) handleDescribeACLs(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil
	}
	f := acl.Filter{
		ResourceType: req.ResourceType,
		Name:         req.ResourceName,
		Pattern:      req.ResourcePatternType,
		Principal:    req.Principal,
		Host:         req.Host,
		Operation:    req.Operation,
		Permission:   req.PermissionType,
	}
	if err := f.Validate(); err != nil {
		resp.ErrorCode = errorCode(err)
		resp.ErrorMessage = clientMessage(err)
		return resp, nil
	}
	var last *kmsg.DescribeACLsResponseResource
	for _, bd := range b.node.ACLs().Bindings() {
		if !f.Matches(&bd) {
			continue
		}
		// Bindings are sorted by resource type, name and pattern type, so
		// one resource's bindings are adjacent.
		if last == nil || last.ResourceType != bd.ResourceType || last.ResourceName != bd.Name || last.ResourcePatternType != bd.Pattern {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = bd.ResourceType, bd.Name, bd.Pattern
			resp.Resources = append(resp.Resources, r)
			last = &resp.Resources[len(resp.Resources)-1]
		}
		a := kmsg.NewDescribeACLsResponseResourceACL()
		a.Principal, a.Host, a.Operation, a.PermissionType = bd.Principal, bd.Host, bd.Operation, bd.Permission
		last.ACLs = append(last.ACLs, a)
	}
	return resp, nil
}
