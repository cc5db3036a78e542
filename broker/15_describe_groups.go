package broker

// DescribeGroups: v0-5
//
// Behavior:
//   - Needs DESCRIBE on each group (authorizer.go), else that group answers
//     GROUP_AUTHORIZATION_FAILED.
//   - Per group: state (Empty, PreparingRebalance, CompletingRebalance,
//     Stable, Dead), protocol type, chosen protocol and members (id, instance
//     id, client id, client host). As in Kafka, a Stable group's members carry
//     their subscription metadata and assignment; in other states both are
//     empty (nothing settled to show). An unknown group answers state Dead
//     with no error. The empty id is a group like any other, as in Kafka.
//   - Errors per group: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//     COORDINATOR_NOT_AVAILABLE, INVALID_GROUP_ID (id too long).
//   - kadm's Lag combines this with OffsetFetch and ListOffsets.
//
// Version notes: v1 ThrottleMillis; v3 AuthorizedOperations (KIP-430, when
// asked for); v4 InstanceID; v5+ flexible. v6
// (ErrorMessage) is not served.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.DescribeGroups.Int16(), 0, 5, (*Broker).handleDescribeGroups) }

func (b *Broker) handleDescribeGroups(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, id) {
			g := kmsg.NewDescribeGroupsResponseGroup()
			g.Group, g.ErrorCode = id, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, g)
			continue
		}
		g := b.describeGroup(ctx, id)
		if req.Version >= 3 && req.IncludeAuthorizedOperations {
			g.AuthorizedOperations = b.authorizedOperations(rc, kmsg.ACLResourceTypeGroup, id, groupOperations)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func (b *Broker) describeGroup(ctx context.Context, id string) kmsg.DescribeGroupsResponseGroup {
	dg := kmsg.NewDescribeGroupsResponseGroup()
	dg.Group = id
	dg.State = stateDead.String()
	dg.Members = []kmsg.DescribeGroupsResponseGroupMember{}
	if len(id) > maxGroupIDBytes {
		dg.ErrorCode = kerr.InvalidGroupID.Code
		return dg
	}
	_, p, err := b.groups.route(ctx, id)
	if err != nil {
		dg.ErrorCode = b.codeFor(err, "describe groups", logKeyGroup, id)
		return dg
	}
	g := b.groups.lookup(id, p, false)
	if g == nil {
		return dg
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	dg.State = g.state.String()
	dg.ProtocolType = g.protocolType
	if g.protocol != nil && g.state != stateDead {
		dg.Protocol = *g.protocol
	}
	if g.state == stateDead {
		return dg
	}
	for _, m := range g.sortedMembers() {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = m.instanceID
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.ProtocolMetadata = []byte{}
		dm.MemberAssignment = []byte{}
		if g.state == stateStable && g.protocol != nil {
			dm.ProtocolMetadata = m.metadataFor(*g.protocol)
			dm.MemberAssignment = m.assignment
		}
		dg.Members = append(dg.Members, dm)
	}
	return dg
}
