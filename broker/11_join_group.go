package broker

// JoinGroup: v0-9
//
// Behavior (Apache Kafka's classic group protocol):
//   - Needs READ on the group (authorizer.go), else GROUP_AUTHORIZATION_FAILED.
//   - INVALID_GROUP_ID for an empty group id; INVALID_SESSION_TIMEOUT outside
//     GroupConfig.MinSessionTimeout..MaxSessionTimeout; INCONSISTENT_GROUP_PROTOCOL
//     when the first member offers no protocol type or no protocols, or a later
//     member's type differs or none of its protocols is supported by every member;
//     GROUP_MAX_SIZE_REACHED beyond GroupConfig.MaxSize; NOT_COORDINATOR /
//     COORDINATOR_LOAD_IN_PROGRESS from the coordinator routing.
//   - A new dynamic member on v4+ gets MEMBER_ID_REQUIRED with its member id
//     (KIP-394) and joins with it; v0-3 join at once with a fresh id.
//   - The request waits at the join barrier: until every member (and every
//     id handed out with MEMBER_ID_REQUIRED) has rejoined, or the largest
//     rebalance timeout passes; dynamic members that did not rejoin are then
//     removed. The first rebalance of an empty group waits
//     GroupConfig.InitialRebalanceDelay (extended per new member up to the
//     rebalance timeout). The leader's answer lists every member with its
//     metadata for the chosen protocol: the one every member supports that
//     most members list first.
//   - Static members (group.instance.id, KIP-345): a known instance joining
//     without a member id replaces its old member id (the old id is fenced:
//     FENCED_INSTANCE_ID) and takes the request's protocols. In a Stable group
//     whose selected protocol stays the same no rebalance happens and it gets
//     the current generation, as in Kafka: below v9 the answer's leader is the
//     leader id before the replacement, so a restarted static leader (librdkafka
//     joins with v5) is told the old id and syncs as a follower, never as the
//     leader of zero members; v9+ names the leader now, and the leader gets
//     SkipAssignment and the members (KIP-814). A member id that does not
//     match its instance's is FENCED_INSTANCE_ID.
//   - A known member rejoining a Stable group with the same protocols, not the
//     leader, gets the current generation without a rebalance; the leader or
//     changed protocols start a rebalance.
//
// Version notes: v1 RebalanceTimeoutMillis (v0 uses the session timeout); v4
// MEMBER_ID_REQUIRED; v5 InstanceID; v6+ flexible; v7 ProtocolType in the
// response; v8 Reason (logged at debug); v9 SkipAssignment.

import (
	"bytes"
	"context"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.JoinGroup.Int16(), 0, 9, (*Broker).handleJoinGroup) }

func (b *Broker) handleJoinGroup(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.JoinGroupRequest)
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	r := joinResult{code: kerr.GroupAuthorizationFailed.Code, generation: -1}
	if b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, req.Group) {
		r = b.groups.join(ctx, rc, req)
	}
	resp.ErrorCode = r.code
	resp.MemberID = r.memberID
	resp.Generation = r.generation
	resp.LeaderID = r.leader
	resp.SkipAssignment = r.skipAssignment
	resp.Members = r.members
	if r.code == 0 {
		pt := r.protocolType
		resp.ProtocolType = &pt
		resp.Protocol = r.protocol
		if req.Version < 7 && resp.Protocol == nil {
			empty := ""
			resp.Protocol = &empty
		}
	} else if req.Version < 7 {
		empty := ""
		resp.Protocol = &empty
	}
	if resp.Members == nil {
		resp.Members = []kmsg.JoinGroupResponseMember{}
	}
	return resp, nil
}

// validGroupID: the membership APIs (JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup) and OffsetDelete need a non-empty id that fits the record keys.
// OffsetCommit, OffsetFetch, DescribeGroups and DeleteGroups accept the empty
// id, as Kafka does for backwards compatibility; they only check the length.
func validGroupID(id string) bool { return id != "" && len(id) <= maxGroupIDBytes }

// join runs one JoinGroup and waits at the barrier when the request must.
func (c *coordinator) join(ctx context.Context, rc *requestContext, req *kmsg.JoinGroupRequest) joinResult {
	fail := func(code int16) joinResult {
		return joinResult{code: code, memberID: req.MemberID, generation: -1}
	}
	if !validGroupID(req.Group) {
		return fail(kerr.InvalidGroupID.Code)
	}
	if req.InstanceID != nil && (*req.InstanceID == "" || len(*req.InstanceID) > maxGroupIDBytes) {
		return fail(kerr.InvalidRequest.Code)
	}
	_, p, err := c.route(ctx, req.Group)
	if err != nil {
		return fail(c.b.codeFor(err, "join group", logKeyGroup, req.Group))
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout {
		return fail(kerr.InvalidSessionTimeout.Code)
	}
	rebalance := session
	if req.Version >= 1 && req.RebalanceTimeoutMillis > 0 {
		rebalance = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	protocols := make([]protocol, 0, len(req.Protocols))
	for _, rp := range req.Protocols {
		protocols = append(protocols, protocol{name: rp.Name, metadata: bytes.Clone(rp.Metadata)})
	}
	if req.Reason != nil {
		c.log.Debug("join group", logKeyGroup, req.Group, logKeyMember, req.MemberID, "reason", *req.Reason)
	}

	g := c.lookup(req.Group, p, req.MemberID == "")
	if g == nil {
		return fail(kerr.UnknownMemberID.Code)
	}
	jr := joinRequest{
		version:   req.Version,
		memberID:  req.MemberID,
		instance:  req.InstanceID,
		clientID:  rc.clientID,
		host:      remoteHost(rc),
		session:   session,
		rebalance: rebalance,
		ptype:     req.ProtocolType,
		protocols: protocols,
	}
	g.mu.Lock()
	var res joinResult
	var ch chan joinResult
	var replaced *staticReplacement
	switch {
	case g.state == stateDead:
		res = fail(kerr.CoordinatorNotAvailable.Code)
	case !g.supportsProtocols(req.ProtocolType, protocols):
		res = fail(kerr.InconsistentGroupProtocol.Code)
	case req.MemberID == "":
		res, ch, replaced = c.joinNew(g, jr, time.Now())
	default:
		res, ch = c.joinKnown(g, jr, time.Now())
	}
	g.mu.Unlock()
	c.wake()
	if replaced != nil {
		res = c.persistReplacement(ctx, g, replaced, res)
	}
	return awaitResult(ctx, c.b.closing, res, ch, fail(kerr.NotCoordinator.Code))
}

// joinRequest is what joinNew and joinKnown need of a JoinGroup.
type joinRequest struct {
	version            int16
	memberID           string
	instance           *string
	clientID, host     string
	session, rebalance time.Duration
	ptype              string
	protocols          []protocol
}

func (jr joinRequest) fail(code int16) joinResult {
	return joinResult{code: code, memberID: jr.memberID, generation: -1}
}

// joinNew handles a JoinGroup without a member id. Caller holds g.mu. A
// static member replaced without a rebalance comes back with its
// replacement, which the caller persists once it let go of g.mu.
func (c *coordinator) joinNew(g *group, jr joinRequest, now time.Time) (joinResult, chan joinResult, *staticReplacement) {
	newID := newMemberID(jr.clientID)
	if jr.instance != nil {
		if oldID, ok := g.static[*jr.instance]; ok {
			if m := g.members[oldID]; m != nil {
				return c.replaceStatic(g, m, newID, jr, now)
			}
		}
		res, ch := c.addAndJoin(g, newID, jr, now)
		return res, ch, nil
	}
	if jr.version >= 4 {
		if int32(len(g.members)+len(g.pending)) >= c.cfg.MaxSize {
			return jr.fail(kerr.GroupMaxSizeReached.Code), nil, nil
		}
		g.pending[newID] = now.Add(jr.session)
		return joinResult{code: kerr.MemberIDRequired.Code, memberID: newID, generation: -1}, nil, nil
	}
	res, ch := c.addAndJoin(g, newID, jr, now)
	return res, ch, nil
}

// staticReplacement is what undoing a static member's replacement needs.
type staticReplacement struct {
	instance, oldID, newID string
	leaderBefore           string
	protocols              []protocol
	session, rebalance     time.Duration
}

// persistReplacement writes the group's metadata record after a static
// member's replacement without a rebalance, and answers res once it is
// written. If the write fails the replacement is undone, as Kafka does: the
// old member id is back and the request gets the write's error (no member id,
// the leader as before).
func (c *coordinator) persistReplacement(ctx context.Context, g *group, r *staticReplacement, res joinResult) joinResult {
	err := c.persistNow(ctx, g)
	if err == nil {
		return res
	}
	code := c.writeErrorCode(err, "join group", g.name)
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[r.newID]; m != nil && g.static[r.instance] == r.newID {
		delete(g.members, r.newID)
		m.id = r.oldID
		m.protocols, m.sessionTimeout, m.rebalanceTimeout = r.protocols, r.session, r.rebalance
		g.members[r.oldID] = m
		g.static[r.instance] = r.oldID
		if g.leader == r.newID {
			g.leader = r.oldID
		}
	}
	c.log.Warn("static member replacement not written, undone", logKeyGroup, g.name, logKeyMember, r.oldID,
		"new_member", r.newID, logKeyError, err)
	return joinResult{code: code, generation: g.generation, protocolType: g.protocolType, protocol: g.protocol,
		leader: r.leaderBefore}
}

// replaceStatic gives a static member's instance a new member id (KIP-345),
// as Kafka's GroupMetadataManager replaces a static member: the old id is
// fenced, the member keeps its assignment and takes the request's protocols
// and timeouts. In a Stable group whose selected protocol would not change,
// there is no rebalance: the member gets the current generation, and the
// answer names the leader as it was before the replacement below v9 (so a
// restarted static leader is told the old leader id, syncs as a follower and
// gets its old assignment), or from v9 the leader now, with the member list
// and SkipAssignment for the leader (KIP-814); that answer waits until the
// new member id is written (persistReplacement).
func (c *coordinator) replaceStatic(g *group, m *member, newID string, jr joinRequest, now time.Time) (joinResult, chan joinResult, *staticReplacement) {
	oldID := m.id
	leaderBefore := g.leader
	undo := &staticReplacement{instance: *jr.instance, oldID: oldID, newID: newID, leaderBefore: leaderBefore,
		protocols: m.protocols, session: m.sessionTimeout, rebalance: m.rebalanceTimeout}
	m.answerJoin(joinResult{code: kerr.FencedInstanceID.Code, memberID: oldID, generation: -1})
	m.answerSync(syncResult{code: kerr.FencedInstanceID.Code})
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	g.static[*jr.instance] = newID
	if g.leader == oldID {
		g.leader = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
	c.updateMember(m, jr, now)
	m.protocols = jr.protocols
	c.log.Info("static member replaced", logKeyGroup, g.name, logKeyMember, newID, "old_member", oldID)
	switch g.state {
	case stateStable:
		if g.protocol != nil && g.selectProtocol() == *g.protocol {
			res := joinResult{memberID: newID, generation: g.generation, protocolType: g.protocolType,
				protocol: g.protocol, leader: leaderBefore}
			if jr.version >= 9 {
				res.leader = g.leader
				if newID == g.leader {
					res.skipAssignment = true
					res.members = g.responseMembers()
				}
			}
			return res, nil, undo // answered once the new id is written
		}
		g.prepareRebalance(now, 0)
	case stateCompletingRebalance:
		// The leader may already be assigning to the old id: rebalance.
		g.prepareRebalance(now, 0)
	}
	res, ch := c.awaitJoin(g, m, jr.version, now)
	return res, ch, nil
}

// addAndJoin adds a member and waits at the barrier.
func (c *coordinator) addAndJoin(g *group, id string, jr joinRequest, now time.Time) (joinResult, chan joinResult) {
	if int32(len(g.members)+len(g.pending)) >= c.cfg.MaxSize {
		return jr.fail(kerr.GroupMaxSizeReached.Code), nil
	}
	m := &member{id: id, instanceID: jr.instance, protocolType: jr.ptype, protocols: jr.protocols}
	c.updateMember(m, jr, now)
	g.addMember(m)
	switch g.state {
	case stateEmpty:
		g.prepareRebalance(now, c.cfg.InitialRebalanceDelay)
	case stateStable, stateCompletingRebalance:
		g.prepareRebalance(now, 0)
	case statePreparingRebalance:
		g.extendInitialDelay(now, c.cfg.InitialRebalanceDelay)
	}
	return c.awaitJoin(g, m, jr.version, now)
}

func (c *coordinator) updateMember(m *member, jr joinRequest, now time.Time) {
	m.clientID = jr.clientID
	m.clientHost = jr.host
	m.sessionTimeout = jr.session
	m.rebalanceTimeout = jr.rebalance
	m.deadline = now.Add(jr.session)
}

// awaitJoin registers the member's JoinGroup at the barrier, completing it
// when this was the last member missing.
func (c *coordinator) awaitJoin(g *group, m *member, version int16, now time.Time) (joinResult, chan joinResult) {
	m.answerJoin(joinResult{code: kerr.RebalanceInProgress.Code, memberID: m.id, generation: -1})
	ch := make(chan joinResult, 1)
	m.joinCh = ch
	m.joinVersion = version
	if g.canCompleteJoin() {
		c.completeJoin(g, now)
	}
	return joinResult{}, ch
}

// joinKnown handles a JoinGroup with a member id. Caller holds g.mu.
func (c *coordinator) joinKnown(g *group, jr joinRequest, now time.Time) (joinResult, chan joinResult) {
	if _, ok := g.pending[jr.memberID]; ok {
		delete(g.pending, jr.memberID)
		return c.addAndJoin(g, jr.memberID, jr, now)
	}
	if code := g.checkMember(jr.memberID, jr.instance); code != 0 {
		return jr.fail(code), nil
	}
	m := g.members[jr.memberID]
	c.updateMember(m, jr, now)
	switch g.state {
	case statePreparingRebalance:
		m.protocols = jr.protocols
		return c.awaitJoin(g, m, jr.version, now)
	case stateCompletingRebalance:
		if m.sameProtocols(jr.protocols) {
			// A repeated JoinGroup (a lost response): answer it again.
			res := joinResult{memberID: m.id, generation: g.generation, protocolType: g.protocolType,
				protocol: g.protocol, leader: g.leader}
			if m.id == g.leader {
				res.members = g.responseMembers()
			}
			return res, nil
		}
		m.protocols = jr.protocols
		g.prepareRebalance(now, 0)
		return c.awaitJoin(g, m, jr.version, now)
	case stateStable:
		if m.id == g.leader || !m.sameProtocols(jr.protocols) {
			m.protocols = jr.protocols
			g.prepareRebalance(now, 0)
			return c.awaitJoin(g, m, jr.version, now)
		}
		return joinResult{memberID: m.id, generation: g.generation, protocolType: g.protocolType,
			protocol: g.protocol, leader: g.leader}, nil
	}
	return jr.fail(kerr.UnknownMemberID.Code), nil
}

// checkMember validates a member id (and instance id) against the group, as
// Kafka's ClassicGroup.validateMember: UNKNOWN_MEMBER_ID for an instance the
// group does not know, FENCED_INSTANCE_ID when the instance is now another
// member, else UNKNOWN_MEMBER_ID when the member is not in the group. Caller
// holds g.mu.
func (g *group) checkMember(id string, instance *string) int16 {
	if instance != nil {
		cur, ok := g.static[*instance]
		switch {
		case !ok:
			return kerr.UnknownMemberID.Code
		case cur != id:
			return kerr.FencedInstanceID.Code
		}
	}
	if _, ok := g.members[id]; !ok {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

// responseMembers lists the members with their metadata for the chosen
// protocol, as the leader's JoinGroup answer carries them.
func (g *group) responseMembers() []kmsg.JoinGroupResponseMember {
	var out []kmsg.JoinGroupResponseMember
	for _, m := range g.sortedMembers() {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		jm.InstanceID = m.instanceID
		if g.protocol != nil {
			jm.ProtocolMetadata = m.metadataFor(*g.protocol)
		}
		out = append(out, jm)
	}
	return out
}

// remoteHost is the client's address as Kafka shows it ("/127.0.0.1").
func remoteHost(rc *requestContext) string {
	if rc == nil || rc.remote == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(rc.remote.String())
	if err != nil {
		host = rc.remote.String()
	}
	return "/" + host
}
