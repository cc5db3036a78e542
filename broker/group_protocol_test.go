package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// rawMember drives the classic group protocol by hand, one connection each,
// so a JoinGroup waiting at the barrier does not hold up the others.
type rawMember struct {
	t          testing.TB
	cl         *kgo.Client
	group      string
	id         string
	instance   *string
	generation int32
	session    time.Duration
	rebalance  time.Duration
	metadata   []byte
}

func newRawMember(t testing.TB, gb *groupBroker, group string) *rawMember {
	return &rawMember{t: t, cl: gb.client(t), group: group, generation: -1,
		session: 10 * time.Second, rebalance: 10 * time.Second, metadata: []byte("m")}
}

func (m *rawMember) joinReq(version int16) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group = m.group
	req.MemberID = m.id
	req.InstanceID = m.instance
	req.SessionTimeoutMillis = int32(m.session / time.Millisecond)
	req.RebalanceTimeoutMillis = int32(m.rebalance / time.Millisecond)
	req.ProtocolType = "consumer"
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "range"
	p.Metadata = m.metadata
	req.Protocols = []kmsg.JoinGroupRequestProtocol{p}
	return req
}

// pinnedClient is a client that sends key at version at most (kgo otherwise
// picks the highest version both sides support, whatever a request says).
func pinnedClient(t testing.TB, addr string, key kmsg.Key, version int16, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(key.Int16(), version)
	return newClient(t, addr, append([]kgo.Opt{kgo.MaxVersions(versions)}, opts...)...)
}

// join sends one JoinGroup (v9) and records the member id and generation.
func (m *rawMember) join() *kmsg.JoinGroupResponse {
	m.t.Helper()
	return m.joinVersion(9)
}

// joinVersion is join at the given JoinGroup version; m.cl must be pinned to
// it (pinnedClient).
func (m *rawMember) joinVersion(version int16) *kmsg.JoinGroupResponse {
	m.t.Helper()
	resp := groupRequest[*kmsg.JoinGroupResponse](m.t, m.cl, m.joinReq(version))
	if resp.MemberID != "" {
		m.id = resp.MemberID
	}
	if resp.ErrorCode == 0 {
		m.generation = resp.Generation
	}
	return resp
}

// joinFully joins, answering MEMBER_ID_REQUIRED once.
func (m *rawMember) joinFully() *kmsg.JoinGroupResponse {
	m.t.Helper()
	resp := m.join()
	if resp.ErrorCode == kerr.MemberIDRequired.Code {
		resp = m.join()
	}
	if resp.ErrorCode != 0 {
		m.t.Fatalf("join %s: %v", m.group, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp
}

// joinAsync runs join on a goroutine.
func (m *rawMember) joinAsync() <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	req := m.joinReq(9)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := req.RequestWith(ctx, m.cl)
		if err != nil {
			resp = nil
		}
		ch <- resp
	}()
	return ch
}

func (m *rawMember) take(resp *kmsg.JoinGroupResponse) *kmsg.JoinGroupResponse {
	m.t.Helper()
	if resp == nil {
		m.t.Fatal("join failed at transport level")
	}
	if resp.ErrorCode == 0 {
		m.id, m.generation = resp.MemberID, resp.Generation
	}
	return resp
}

func (m *rawMember) sync(assign map[string][]byte) *kmsg.SyncGroupResponse {
	m.t.Helper()
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.MemberID, req.InstanceID, req.Generation = m.group, m.id, m.instance, m.generation
	for id, a := range assign {
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = id, a
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	return groupRequest[*kmsg.SyncGroupResponse](m.t, m.cl, req)
}

func (m *rawMember) syncAsync() <-chan *kmsg.SyncGroupResponse {
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.MemberID, req.InstanceID, req.Generation = m.group, m.id, m.instance, m.generation
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, _ := req.RequestWith(ctx, m.cl)
		ch <- resp
	}()
	return ch
}

func (m *rawMember) heartbeat() int16 {
	m.t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group, req.MemberID, req.InstanceID, req.Generation = m.group, m.id, m.instance, m.generation
	return groupRequest[*kmsg.HeartbeatResponse](m.t, m.cl, req).ErrorCode
}

func (m *rawMember) leave() int16 {
	m.t.Helper()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 5
	req.Group = m.group
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID, lm.InstanceID = m.id, m.instance
	req.Members = []kmsg.LeaveGroupRequestMember{lm}
	resp := groupRequest[*kmsg.LeaveGroupResponse](m.t, m.cl, req)
	if resp.ErrorCode != 0 {
		return resp.ErrorCode
	}
	return resp.Members[0].ErrorCode
}

// describe returns the group's DescribeGroups answer.
func describeGroup(t testing.TB, cl *kgo.Client, group string) kmsg.DescribeGroupsResponseGroup {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp := groupRequest[*kmsg.DescribeGroupsResponse](t, cl, req)
	return resp.Groups[0]
}

func waitState(t testing.TB, cl *kgo.Client, group, state string, members int) {
	t.Helper()
	waitUntil(t, 20*time.Second, fmt.Sprintf("group %s %s with %d members", group, state, members), func() error {
		g := describeGroup(t, cl, group)
		if g.State != state || len(g.Members) != members {
			return fmt.Errorf("state %s, %d members", g.State, len(g.Members))
		}
		return nil
	})
}

// TestGroupStateMachine walks a group through its states with raw requests.
func TestGroupStateMachine(t *testing.T) {
	gb := newGroupBroker(t)
	a := newRawMember(t, gb, "sm")
	b := newRawMember(t, gb, "sm")
	adm := gb.client(t)

	// v4+: a new member first gets MEMBER_ID_REQUIRED with its id.
	if resp := a.join(); resp.ErrorCode != kerr.MemberIDRequired.Code || resp.MemberID == "" {
		t.Fatalf("first join: code %d member %q, want MEMBER_ID_REQUIRED with an id", resp.ErrorCode, resp.MemberID)
	}
	resp := a.join()
	if resp.ErrorCode != 0 || resp.Generation != 1 || resp.LeaderID != a.id || len(resp.Members) != 1 {
		t.Fatalf("second join: %+v", resp)
	}
	if *resp.Protocol != "range" || *resp.ProtocolType != "consumer" {
		t.Fatalf("protocol %v type %v", *resp.Protocol, *resp.ProtocolType)
	}
	if g := describeGroup(t, adm, "sm"); g.State != "CompletingRebalance" {
		t.Fatalf("after join: %s", g.State)
	}
	if code := a.heartbeat(); code != 0 {
		t.Fatalf("heartbeat in CompletingRebalance: %v", kerr.ErrorForCode(code))
	}
	if s := a.sync(map[string][]byte{a.id: []byte("A1")}); s.ErrorCode != 0 || string(s.MemberAssignment) != "A1" {
		t.Fatalf("leader sync: %+v", s)
	}
	if g := describeGroup(t, adm, "sm"); g.State != "Stable" || string(g.Members[0].MemberAssignment) != "A1" {
		t.Fatalf("after sync: %+v", g)
	}

	// A second member: the group rebalances, a's heartbeat says so, both
	// get generation 2 once a rejoins; b is a follower with no member list.
	b.id = ""
	if r := b.join(); r.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("b first join %d", r.ErrorCode)
	}
	bj := b.joinAsync()
	waitUntil(t, 10*time.Second, "a told to rejoin", func() error {
		if code := a.heartbeat(); code != kerr.RebalanceInProgress.Code {
			return fmt.Errorf("heartbeat %v", kerr.ErrorForCode(code))
		}
		return nil
	})
	if s := a.sync(nil); s.ErrorCode != kerr.RebalanceInProgress.Code {
		t.Fatalf("sync while preparing: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	ra := a.joinFully()
	rb := b.take(<-bj)
	if ra.Generation != 2 || rb.Generation != 2 || rb.ErrorCode != 0 {
		t.Fatalf("generations %d %d (b code %d)", ra.Generation, rb.Generation, rb.ErrorCode)
	}
	if ra.LeaderID != a.id || len(ra.Members) != 2 || len(rb.Members) != 0 {
		t.Fatalf("leader %s members %d/%d", ra.LeaderID, len(ra.Members), len(rb.Members))
	}
	bs := b.syncAsync()
	if s := a.sync(map[string][]byte{a.id: []byte("A2")}); string(s.MemberAssignment) != "A2" {
		t.Fatalf("leader sync gen 2: %+v", s)
	}
	if s := <-bs; s == nil || s.ErrorCode != 0 || len(s.MemberAssignment) != 0 {
		t.Fatalf("follower left out of the assignment must get an empty one: %+v", s)
	}
	// Stale generation.
	stale := *a
	stale.generation = 1
	if code := stale.heartbeat(); code != kerr.IllegalGeneration.Code {
		t.Fatalf("stale heartbeat: %v", kerr.ErrorForCode(code))
	}

	// Leaving: the group rebalances to b alone, then becomes Empty with the
	// next generation when b leaves too.
	if code := a.leave(); code != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(code))
	}
	rb = b.joinFully()
	if rb.Generation != 3 || rb.LeaderID != b.id {
		t.Fatalf("after a left: generation %d leader %s", rb.Generation, rb.LeaderID)
	}
	if code := b.leave(); code != 0 {
		t.Fatalf("b leave: %v", kerr.ErrorForCode(code))
	}
	g := describeGroup(t, adm, "sm")
	if g.State != "Empty" || len(g.Members) != 0 {
		t.Fatalf("after all left: %+v", g)
	}
	if code := b.heartbeat(); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat after leaving: %v", kerr.ErrorForCode(code))
	}
}

// TestGroupJoinBarrier: members that do not rejoin within the rebalance
// timeout are removed, and the others get the new generation.
func TestGroupJoinBarrier(t *testing.T) {
	gb := newGroupBroker(t)
	a, b, c := newRawMember(t, gb, "barrier"), newRawMember(t, gb, "barrier"), newRawMember(t, gb, "barrier")
	for _, m := range []*rawMember{a, b, c} {
		m.rebalance = 500 * time.Millisecond
	}
	a.joinFully()
	a.sync(map[string][]byte{a.id: []byte("x")})
	bj := b.joinFully // b joins through MEMBER_ID_REQUIRED and waits for a
	_ = bj
	if r := b.join(); r.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("b: %d", r.ErrorCode)
	}
	bwait := b.joinAsync()
	a.joinFully()
	b.take(<-bwait)
	a.sync(map[string][]byte{a.id: []byte("x"), b.id: []byte("y")})
	waitState(t, gb.client(t), "barrier", "Stable", 2)

	// c joins; a rejoins, b never does: after the rebalance timeout the
	// barrier ends without b.
	if r := c.join(); r.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("c: %d", r.ErrorCode)
	}
	cwait := c.joinAsync()
	ra := a.joinFully()
	rc := c.take(<-cwait)
	if rc.ErrorCode != 0 || ra.Generation != 3 || rc.Generation != 3 {
		t.Fatalf("generations a %d c %d (c code %d)", ra.Generation, rc.Generation, rc.ErrorCode)
	}
	if len(ra.Members)+len(rc.Members) != 2 {
		t.Fatalf("leader's member list: %d + %d, want 2", len(ra.Members), len(rc.Members))
	}
	if code := b.heartbeat(); code != kerr.UnknownMemberID.Code {
		t.Fatalf("b after the barrier: %v", kerr.ErrorForCode(code))
	}
}

// TestGroupSessionExpiry: a member that stops heartbeating is removed after
// its session timeout and the group rebalances (here: to Empty).
func TestGroupSessionExpiry(t *testing.T) {
	gb := newGroupBroker(t)
	a := newRawMember(t, gb, "expiry")
	a.session = 300 * time.Millisecond
	a.joinFully()
	a.sync(map[string][]byte{a.id: []byte("x")})
	cl := gb.client(t)
	waitState(t, cl, "expiry", "Empty", 0)
	if code := a.heartbeat(); code != kerr.UnknownMemberID.Code {
		t.Fatalf("expired member heartbeat: %v", kerr.ErrorForCode(code))
	}
	if g := describeGroup(t, cl, "expiry"); g.ProtocolType != "consumer" {
		t.Fatalf("empty group keeps its protocol type: %+v", g)
	}
}

// TestGroupStaticMembership: a static member that restarts (rejoins without
// a member id) gets a new id and its old assignment without a rebalance; its
// old id is fenced.
func TestGroupStaticMembership(t *testing.T) {
	gb := newGroupBroker(t)
	inst := "instance-1"
	a := newRawMember(t, gb, "static")
	a.instance = &inst
	ra := a.join() // static members join without MEMBER_ID_REQUIRED
	if ra.ErrorCode != 0 || ra.Generation != 1 {
		t.Fatalf("static join: %+v", ra)
	}
	a.sync(map[string][]byte{a.id: []byte("assigned")})
	old := *a

	restarted := newRawMember(t, gb, "static")
	restarted.instance = &inst
	rr := restarted.join()
	if rr.ErrorCode != 0 || rr.Generation != 1 || rr.MemberID == old.id {
		t.Fatalf("static rejoin: code %d generation %d id %q (old %q)", rr.ErrorCode, rr.Generation, rr.MemberID, old.id)
	}
	if !rr.SkipAssignment || rr.LeaderID != rr.MemberID {
		t.Fatalf("the static leader's rejoin (v9) must skip the assignment: %+v", rr)
	}
	if s := restarted.sync(nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "assigned" {
		t.Fatalf("sync after static rejoin: %+v", s)
	}
	if g := describeGroup(t, gb.client(t), "static"); g.State != "Stable" || len(g.Members) != 1 {
		t.Fatalf("group after static rejoin: %+v", g)
	}
	if code := old.heartbeat(); code != kerr.FencedInstanceID.Code {
		t.Fatalf("old member id: %v, want FENCED_INSTANCE_ID", kerr.ErrorForCode(code))
	}
	if code := old.leave(); code != kerr.FencedInstanceID.Code {
		t.Fatalf("old member leave: %v, want FENCED_INSTANCE_ID", kerr.ErrorForCode(code))
	}
	if code := restarted.leave(); code != 0 {
		t.Fatalf("leave by instance: %v", kerr.ErrorForCode(code))
	}
}

// TestGroupErrorCodes checks the error code of each kind of bad input.
func TestGroupErrorCodes(t *testing.T) {
	gb := newGroupBroker(t, func(c *GroupConfig) { c.MaxSize = 1 })
	cl := gb.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "known"); err != nil {
		t.Fatal(err)
	}
	full := newRawMember(t, gb, "full")
	full.joinFully()
	full.sync(nil)

	join := func(mut func(*kmsg.JoinGroupRequest)) func() int16 {
		return func() int16 {
			m := newRawMember(t, gb, "codes")
			req := m.joinReq(9)
			mut(req)
			return groupRequest[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode
		}
	}
	commit := func(group, member string, generation int32, topic string, partition int32) func() int16 {
		return func() int16 {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Group, req.MemberID, req.Generation = group, member, generation
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = partition, 1
			rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
			req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
			return groupRequest[*kmsg.OffsetCommitResponse](t, cl, req).Topics[0].Partitions[0].ErrorCode
		}
	}
	tests := []struct {
		name string
		do   func() int16
		want *kerr.Error
	}{
		{"join empty group id", join(func(r *kmsg.JoinGroupRequest) { r.Group = "" }), kerr.InvalidGroupID},
		{"join session too short", join(func(r *kmsg.JoinGroupRequest) { r.SessionTimeoutMillis = 10 }), kerr.InvalidSessionTimeout},
		{"join session too long", join(func(r *kmsg.JoinGroupRequest) { r.SessionTimeoutMillis = 31 * 60 * 1000 }), kerr.InvalidSessionTimeout},
		{"join without protocols", join(func(r *kmsg.JoinGroupRequest) { r.Protocols = nil }), kerr.InconsistentGroupProtocol},
		{"join without protocol type", join(func(r *kmsg.JoinGroupRequest) { r.ProtocolType = "" }), kerr.InconsistentGroupProtocol},
		{"join other protocol type", join(func(r *kmsg.JoinGroupRequest) { r.Group = "full"; r.ProtocolType = "connect" }), kerr.InconsistentGroupProtocol},
		{"join unsupported protocol", join(func(r *kmsg.JoinGroupRequest) { r.Group = "full"; r.Protocols[0].Name = "sticky" }), kerr.InconsistentGroupProtocol},
		{"join full group", join(func(r *kmsg.JoinGroupRequest) { r.Group = "full" }), kerr.GroupMaxSizeReached},
		{"join unknown member", join(func(r *kmsg.JoinGroupRequest) { r.MemberID = "nobody" }), kerr.UnknownMemberID},
		{"heartbeat unknown group", func() int16 {
			return (&rawMember{t: t, cl: cl, group: "nogroup", id: "x", generation: 1}).heartbeat()
		}, kerr.UnknownMemberID},
		{"heartbeat unknown member", func() int16 {
			return (&rawMember{t: t, cl: cl, group: "full", id: "x", generation: 1}).heartbeat()
		}, kerr.UnknownMemberID},
		{"heartbeat wrong generation", func() int16 {
			return (&rawMember{t: t, cl: cl, group: "full", id: full.id, generation: 7}).heartbeat()
		}, kerr.IllegalGeneration},
		{"sync wrong generation", func() int16 {
			return (&rawMember{t: t, cl: cl, group: "full", id: full.id, generation: 7}).sync(nil).ErrorCode
		}, kerr.IllegalGeneration},
		{"commit unknown topic", commit("c1", "", -1, "nosuchtopic", 0), kerr.UnknownTopicOrPartition},
		{"commit unknown partition", commit("c1", "", -1, "known", 5), kerr.UnknownTopicOrPartition},
		{"commit generation to the unknown empty group", commit("", "m", 3, "known", 0), kerr.IllegalGeneration},
		{"commit memberless to a group with members", commit("full", "", -1, "known", 0), kerr.UnknownMemberID},
		{"commit wrong generation", commit("full", full.id, 9, "known", 0), kerr.IllegalGeneration},
		{"commit generation to an unknown group", commit("c2", "m", 3, "known", 0), kerr.IllegalGeneration},
		{"find transaction coordinator of the empty id", func() int16 {
			req := kmsg.NewPtrFindCoordinatorRequest()
			req.CoordinatorType = 1
			req.CoordinatorKey = ""
			req.Version = 3
			return groupRequest[*kmsg.FindCoordinatorResponse](t, cl, req).ErrorCode
		}, kerr.InvalidRequest},
		{"delete group with members", func() int16 {
			req := kmsg.NewPtrDeleteGroupsRequest()
			req.Groups = []string{"full"}
			return groupRequest[*kmsg.DeleteGroupsResponse](t, cl, req).Groups[0].ErrorCode
		}, kerr.NonEmptyGroup},
		{"delete unknown group", func() int16 {
			req := kmsg.NewPtrDeleteGroupsRequest()
			req.Groups = []string{"never"}
			return groupRequest[*kmsg.DeleteGroupsResponse](t, cl, req).Groups[0].ErrorCode
		}, kerr.GroupIDNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.do(); got != tt.want.Code {
				t.Fatalf("got %v, want %s", kerr.ErrorForCode(got), tt.want.Message)
			}
		})
	}
	// None of that disturbed the full group.
	if g := describeGroup(t, cl, "full"); g.State != "Stable" || len(g.Members) != 1 || g.Members[0].MemberID != full.id {
		t.Fatalf("group after bad requests: %+v", g)
	}
}

// TestGroupRestartedStaticLeaderIsNotLeaderOfZeroMembers pins issue 9: a
// static leader that restarts (JoinGroup v5-v8 without a member id while the
// group is Stable) was told it leads the group under its new member id, with
// no member list, so librdkafka (which joins with v5) ran its assignor over
// zero members. Kafka answers below v9 with the leader id as it was before
// the replacement (the old member id) and no members, so the restarted member
// syncs as a follower and gets its old assignment; v9 names the new id as
// leader, lists the members and sets SkipAssignment (KIP-814).
func TestGroupRestartedStaticLeaderIsNotLeaderOfZeroMembers(t *testing.T) {
	gb := newGroupBroker(t)
	for version := int16(5); version <= 9; version++ {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			group := fmt.Sprintf("static-restart-v%d", version)
			instA, instB := "instance-a", "instance-b"
			a, b := newRawMember(t, gb, group), newRawMember(t, gb, group)
			a.instance, b.instance = &instA, &instB
			if r := a.join(); r.ErrorCode != 0 || r.LeaderID != a.id {
				t.Fatalf("a joins: %+v", r)
			}
			a.sync(map[string][]byte{a.id: []byte("A")})
			bj := b.joinAsync()
			waitUntil(t, 10*time.Second, "a told to rejoin", func() error {
				if code := a.heartbeat(); code != kerr.RebalanceInProgress.Code {
					return fmt.Errorf("heartbeat %v", kerr.ErrorForCode(code))
				}
				return nil
			})
			ra := a.joinFully()
			rb := b.take(<-bj)
			if rb.ErrorCode != 0 || ra.LeaderID != a.id {
				t.Fatalf("second generation: a %+v, b %+v", ra, rb)
			}
			bs := b.syncAsync()
			a.sync(map[string][]byte{a.id: []byte("A"), b.id: []byte("B")})
			if s := <-bs; s == nil || string(s.MemberAssignment) != "B" {
				t.Fatalf("b sync: %+v", s)
			}
			oldLeader, generation := a.id, a.generation

			restarted := newRawMember(t, gb, group)
			restarted.cl = pinnedClient(t, gb.Addr, kmsg.JoinGroup, version)
			restarted.instance = &instA
			r := restarted.joinVersion(version)
			if r.ErrorCode != 0 || r.MemberID == oldLeader || r.Generation != generation {
				t.Fatalf("restarted leader: code %v id %q generation %d (old id %q, generation %d)",
					kerr.ErrorForCode(r.ErrorCode), r.MemberID, r.Generation, oldLeader, generation)
			}
			if version < 9 {
				if r.LeaderID != oldLeader || len(r.Members) != 0 || r.SkipAssignment {
					t.Fatalf("v%d: leader %q with %d members (skip %v); want the old leader id %q and no members",
						version, r.LeaderID, len(r.Members), r.SkipAssignment, oldLeader)
				}
			} else if r.LeaderID != r.MemberID || len(r.Members) != 2 || !r.SkipAssignment {
				t.Fatalf("v9: leader %q with %d members (skip %v); want itself, both members and SkipAssignment",
					r.LeaderID, len(r.Members), r.SkipAssignment)
			}
			if s := restarted.sync(nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "A" {
				t.Fatalf("sync after the restart: %+v", s)
			}
			if code := b.heartbeat(); code != 0 {
				t.Fatalf("the follower must not be sent into a rebalance: %v", kerr.ErrorForCode(code))
			}
			if g := describeGroup(t, gb.client(t), group); g.State != "Stable" || len(g.Members) != 2 {
				t.Fatalf("group after the restart: %s with %d members", g.State, len(g.Members))
			}

			// A restarted follower that changed its subscription but not the
			// protocol the group would select: Kafka keeps the group Stable
			// and still names the current leader.
			follower := newRawMember(t, gb, group)
			follower.cl = pinnedClient(t, gb.Addr, kmsg.JoinGroup, version)
			follower.instance = &instB
			follower.metadata = []byte("changed")
			rf := follower.joinVersion(version)
			if rf.ErrorCode != 0 || rf.Generation != generation || rf.LeaderID != r.MemberID || len(rf.Members) != 0 {
				t.Fatalf("restarted follower: %+v, want generation %d and leader %q", rf, generation, r.MemberID)
			}
			if s := follower.sync(nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "B" {
				t.Fatalf("follower sync after the restart: %+v", s)
			}
		})
	}
}
