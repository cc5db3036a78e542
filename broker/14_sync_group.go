package broker

// SyncGroup: v0-5
//
// Behavior:
//   - Needs READ on the group (authorizer.go), else GROUP_AUTHORIZATION_FAILED.
//   - The leader's request carries every member's assignment; the broker stores
//     and relays them untouched (any client-side assignor, eager or
//     cooperative, works). Members the leader leaves out get an empty
//     assignment. Followers wait until the leader's SyncGroup arrives; the
//     group is then Stable and its metadata (members, assignments) is written
//     to __consumer_offsets so a restart keeps it; the leader is answered once
//     that write is done (it runs outside the group's lock).
//   - In a Stable group the member's current assignment is answered at once
//     (a static member that rejoined without a rebalance gets its old one).
//   - Errors: INVALID_GROUP_ID (empty id), UNKNOWN_MEMBER_ID (no such group or
//     member, or the group is Empty), FENCED_INSTANCE_ID, ILLEGAL_GENERATION,
//     REBALANCE_IN_PROGRESS (a new barrier started; rejoin),
//     INCONSISTENT_GROUP_PROTOCOL (v5 type or name differ from the group's),
//     NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.
//   - A leader that never syncs: after the rebalance timeout the members that
//     did not send SyncGroup are removed and the group rebalances.
//
// Version notes: v3 InstanceID; v4+ flexible; v5 ProtocolType and Protocol in
// request and response.

import (
	"bytes"
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.SyncGroup.Int16(), 0, 5, (*Broker).handleSyncGroup) }

func (b *Broker) handleSyncGroup(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SyncGroupRequest)
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	r := syncResult{code: kerr.GroupAuthorizationFailed.Code}
	if b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group) {
		r = b.groups.sync(ctx, req)
	}
	resp.ErrorCode = r.code
	resp.MemberAssignment = r.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	if r.code == 0 {
		pt := r.protocolType
		resp.ProtocolType = &pt
		resp.Protocol = r.protocol
	}
	return resp, nil
}

func (c *coordinator) sync(ctx context.Context, req *kmsg.SyncGroupRequest) syncResult {
	fail := func(code int16) syncResult { return syncResult{code: code} }
	if !validGroupID(req.Group) {
		return fail(kerr.InvalidGroupID.Code)
	}
	_, p, err := c.route(ctx, req.Group)
	if err != nil {
		return fail(c.b.codeFor(err, "sync group", logKeyGroup, req.Group))
	}
	g := c.lookup(req.Group, p, false)
	if g == nil {
		return fail(kerr.UnknownMemberID.Code)
	}
	now := time.Now()
	g.mu.Lock()
	res, ch, persist := c.syncLocked(g, req, now)
	g.mu.Unlock()
	c.wake()
	if persist {
		// The leader is answered once the assignment is written, outside the
		// group's lock; a failure is logged and the next change writes it.
		if err := c.persistNow(ctx, g); err != nil && ctx.Err() == nil {
			c.log.Warn("write group metadata failed", logKeyGroup, g.name, logKeyError, err)
		}
	}
	return awaitResult(ctx, c.b.closing, res, ch, fail(kerr.NotCoordinator.Code))
}

// syncLocked runs a SyncGroup under g.mu; persist asks the caller to write
// the group's metadata record (the leader's assignment) once it let go of it.
func (c *coordinator) syncLocked(g *group, req *kmsg.SyncGroupRequest, now time.Time) (_ syncResult, _ chan syncResult, persist bool) {
	fail := func(code int16) (syncResult, chan syncResult, bool) { return syncResult{code: code}, nil, false }
	if g.state == stateDead {
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
	if code := g.checkMember(req.MemberID, req.InstanceID); code != 0 {
		return fail(code)
	}
	if req.Generation != g.generation {
		return fail(kerr.IllegalGeneration.Code)
	}
	if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) ||
		(req.Protocol != nil && (g.protocol == nil || *req.Protocol != *g.protocol)) {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	m := g.members[req.MemberID]
	switch g.state {
	case statePreparingRebalance:
		return fail(kerr.RebalanceInProgress.Code)
	case stateStable:
		m.deadline = now.Add(m.sessionTimeout)
		return syncResult{protocolType: g.protocolType, protocol: g.protocol, assignment: m.assignment}, nil, false
	case stateCompletingRebalance:
		m.deadline = now.Add(m.sessionTimeout)
		m.answerSync(syncResult{code: kerr.RebalanceInProgress.Code})
		ch := make(chan syncResult, 1)
		m.syncCh = ch
		delete(g.pendingSync, m.id)
		if m.id == g.leader {
			assignments := make(map[string][]byte, len(req.GroupAssignment))
			for _, a := range req.GroupAssignment {
				if _, ok := g.members[a.MemberID]; ok {
					assignments[a.MemberID] = bytes.Clone(a.MemberAssignment)
				}
			}
			g.completeSync(now, assignments)
			c.log.Info("group stable", logKeyGroup, g.name, "generation", g.generation, "members", len(g.members))
			return syncResult{}, ch, true
		}
		return syncResult{}, ch, false
	}
	return fail(kerr.UnknownMemberID.Code)
}
