package broker

// LeaveGroup: v0-5
//
// Behavior:
//   - Needs READ on the group (authorizer.go), else GROUP_AUTHORIZATION_FAILED
//     (top level).
//   - Removes the members and rebalances the rest at once (no wait for their
//     session timeouts). When the last member leaves, the group becomes Empty
//     with the next generation and keeps its committed offsets.
//   - v3+ (KIP-345) takes a batch of members, each by member id or by
//     group.instance.id; each gets its own code: UNKNOWN_MEMBER_ID, or
//     FENCED_INSTANCE_ID when the instance is now another member id. v0-2
//     answer the single member's code at the top level.
//   - Group-level errors (top level): INVALID_GROUP_ID (empty id),
//     NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE;
//     UNKNOWN_MEMBER_ID for an unknown group.
//
// Version notes: v1 ThrottleMillis; v3 Members batch; v4+ flexible; v5 Reason
// (logged at debug).

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.LeaveGroup.Int16(), 0, 5, (*Broker).handleLeaveGroup) }

func (b *Broker) handleLeaveGroup(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if !b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	members := req.Members
	if req.Version < 3 {
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = req.MemberID
		members = []kmsg.LeaveGroupRequestMember{m}
	}
	top, codes := b.groups.leave(ctx, req.Group, members)
	resp.ErrorCode = top
	if req.Version < 3 {
		if top == 0 && len(codes) == 1 {
			resp.ErrorCode = codes[0]
		}
		return resp, nil
	}
	if top != 0 {
		return resp, nil
	}
	for i, rm := range members {
		m := kmsg.NewLeaveGroupResponseMember()
		m.MemberID = rm.MemberID
		m.InstanceID = rm.InstanceID
		m.ErrorCode = codes[i]
		resp.Members = append(resp.Members, m)
	}
	return resp, nil
}

// leave removes members; it returns the group-level code and one code per
// member.
func (c *coordinator) leave(ctx context.Context, groupID string, members []kmsg.LeaveGroupRequestMember) (int16, []int16) {
	if !validGroupID(groupID) {
		return kerr.InvalidGroupID.Code, nil
	}
	_, p, err := c.route(ctx, groupID)
	if err != nil {
		return c.b.codeFor(err, "leave group", logKeyGroup, groupID), nil
	}
	g := c.lookup(groupID, p, false)
	if g == nil {
		return kerr.UnknownMemberID.Code, nil
	}
	g.mu.Lock()
	defer c.wake()
	defer g.mu.Unlock()
	if g.state == stateDead {
		return kerr.CoordinatorNotAvailable.Code, nil
	}
	now := time.Now()
	codes := make([]int16, len(members))
	left := 0
	for i, rm := range members {
		if rm.Reason != nil {
			c.log.Debug("leave group", logKeyGroup, groupID, logKeyMember, rm.MemberID, "reason", *rm.Reason)
		}
		id := rm.MemberID
		if rm.InstanceID != nil {
			cur, ok := g.static[*rm.InstanceID]
			switch {
			case !ok:
				codes[i] = kerr.UnknownMemberID.Code
				continue
			case id != "" && id != cur:
				codes[i] = kerr.FencedInstanceID.Code
				continue
			}
			id = cur
		}
		if _, ok := g.pending[id]; ok {
			delete(g.pending, id)
			left++
			continue
		}
		m, ok := g.members[id]
		if !ok {
			codes[i] = kerr.UnknownMemberID.Code
			continue
		}
		g.removeMember(m, kerr.UnknownMemberID.Code)
		left++
		c.log.Info("member left", logKeyGroup, groupID, logKeyMember, id)
	}
	if left > 0 {
		switch g.state {
		case stateStable, stateCompletingRebalance:
			g.prepareRebalance(now, 0)
		}
		if g.state == statePreparingRebalance && (len(g.members) == 0 || g.canCompleteJoin()) {
			c.completeJoin(g, now)
		}
	}
	return 0, codes
}
