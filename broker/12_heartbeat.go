package broker

// Heartbeat: v0-4
//
// Behavior:
//   - Needs READ on the group (authorizer.go), else GROUP_AUTHORIZATION_FAILED.
//   - Refreshes the member's session (GroupConfig bounds it; a member whose
//     session passes without a heartbeat, JoinGroup, SyncGroup or
//     OffsetCommit is removed and the group rebalances).
//   - Answers REBALANCE_IN_PROGRESS while the group waits at the join barrier,
//     so members rejoin; NONE in CompletingRebalance and Stable.
//   - Errors: INVALID_GROUP_ID (empty id), UNKNOWN_MEMBER_ID (no such group
//     or member, or the group is Empty), FENCED_INSTANCE_ID,
//     ILLEGAL_GENERATION, COORDINATOR_NOT_AVAILABLE (group being removed),
//     NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS.
//
// Version notes: v1 ThrottleMillis; v3 InstanceID; v4+ flexible.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.Heartbeat.Int16(), 0, 4, (*Broker).handleHeartbeat) }

func (b *Broker) handleHeartbeat(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if !b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil
	}
	resp.ErrorCode = b.groups.heartbeat(ctx, req)
	return resp, nil
}

func (c *coordinator) heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) int16 {
	if !validGroupID(req.Group) {
		return kerr.InvalidGroupID.Code
	}
	_, p, err := c.route(ctx, req.Group)
	if err != nil {
		return c.b.codeFor(err, "heartbeat", logKeyGroup, req.Group)
	}
	g := c.lookup(req.Group, p, false)
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == stateDead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if code := g.checkMember(req.MemberID, req.InstanceID); code != 0 {
		return code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	m := g.members[req.MemberID]
	m.deadline = time.Now().Add(m.sessionTimeout)
	if g.state == statePreparingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}
