package broker

// One consumer group of the classic protocol (JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup) and its state machine, as Apache Kafka's GroupCoordinator runs it:
//
//	Empty --join--> PreparingRebalance --barrier done--> CompletingRebalance
//	      <--all left--                                 --leader syncs--> Stable
//	Stable / CompletingRebalance --join, leave, expiry--> PreparingRebalance
//	Empty --offsets expired or DeleteGroups--> Dead (removed)
//
// The broker only relays: the leader's assignor (range, sticky,
// cooperative-sticky, anything) computes the assignment, so every client-side
// protocol works. Every field is guarded by group.mu; the coordinator's loop
// drives the deadlines (join barrier, sync barrier, session expiry).

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupState is a group's place in the classic protocol.
type groupState int8

const (
	stateEmpty groupState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

// String is the name Kafka uses in DescribeGroups and ListGroups.
func (s groupState) String() string {
	switch s {
	case stateEmpty:
		return "Empty"
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	case stateDead:
		return "Dead"
	}
	return "Unknown"
}

// protocol is one assignor a member offers, with its subscription metadata.
type protocol struct {
	name     string
	metadata []byte
}

// joinResult answers a JoinGroup that waited for the barrier.
type joinResult struct {
	code           int16
	memberID       string
	generation     int32
	protocolType   string
	protocol       *string
	leader         string
	skipAssignment bool
	members        []kmsg.JoinGroupResponseMember
}

// syncResult answers a SyncGroup.
type syncResult struct {
	code         int16
	protocolType string
	protocol     *string
	assignment   []byte
}

// member is one member of a group.
type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []protocol
	assignment       []byte
	// deadline is when the session expires unless a request refreshes it.
	deadline time.Time
	// joinCh / syncCh are set while a JoinGroup / SyncGroup waits (buffered 1).
	joinCh chan joinResult
	syncCh chan syncResult
	// joinVersion is the JoinGroup version of the waiting request.
	joinVersion int16
}

func (m *member) metadataFor(name string) []byte {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata
		}
	}
	return nil
}

func (m *member) instance() string {
	if m.instanceID == nil {
		return ""
	}
	return *m.instanceID
}

// sameProtocols reports whether ps equals the member's protocols.
func (m *member) sameProtocols(ps []protocol) bool {
	return slices.EqualFunc(m.protocols, ps, func(a, b protocol) bool {
		return a.name == b.name && bytes.Equal(a.metadata, b.metadata)
	})
}

// group is one consumer group. Fields are guarded by mu, except turn.
type group struct {
	mu        sync.Mutex
	name      string
	partition int32 // the __consumer_offsets partition it hashes to

	// turn is the group's write turn, a semaphore of one, held from deciding
	// a write of the group's records to applying its result, across the Raft
	// proposal (group_writes.go). Taken before mu, never while holding mu.
	turn chan struct{}
	// persistWanted: the metadata record lags the state; flushing: a
	// flusher goroutine is at work (group_writes.go).
	persistWanted bool
	flushing      bool

	state        groupState
	stateTime    time.Time // when state last changed (offset expiry of Empty groups)
	protocolType string
	protocol     *string
	generation   int32
	leader       string
	members      map[string]*member
	static       map[string]string    // instance id -> member id
	pending      map[string]time.Time // member ids handed out with MEMBER_ID_REQUIRED -> expiry
	pendingSync  map[string]bool      // members yet to SyncGroup in CompletingRebalance

	// joinDeadline ends the join barrier; initialUntil bounds the extensions of
	// group.initial.rebalance.delay.ms while initialDelay is set.
	joinDeadline time.Time
	initialDelay bool
	initialUntil time.Time
	syncDeadline time.Time

	offsets map[topicPartition]committedOffset
	// txnOffsets are the partitions with offsets staged by TxnOffsetCommit,
	// per producer id, until their transaction ends (group_txn.go).
	txnOffsets map[int64]map[topicPartition]bool
}

// topicPartition names one partition in maps.
type topicPartition struct {
	topic     string
	partition int32
}

func newGroup(name string, partition int32, now time.Time) *group {
	return &group{
		name:        name,
		partition:   partition,
		turn:        make(chan struct{}, 1),
		state:       stateEmpty,
		stateTime:   now,
		members:     map[string]*member{},
		static:      map[string]string{},
		pending:     map[string]time.Time{},
		pendingSync: map[string]bool{},
		offsets:     map[topicPartition]committedOffset{},
	}
}

func (g *group) transition(s groupState, now time.Time) {
	g.state = s
	g.stateTime = now
}

// newMemberID is Kafka's form: the client id, a dash and a random suffix.
func newMemberID(clientID string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return clientID + "-" + hex.EncodeToString(b[:])
}

// supportsProtocols reports whether a member offering ps (of type typ) may
// join: the group is empty, or the type matches and at least one offered
// protocol is supported by every current member.
func (g *group) supportsProtocols(typ string, ps []protocol) bool {
	if len(g.members) == 0 {
		return typ != "" && len(ps) > 0
	}
	if typ != g.protocolType {
		return false
	}
	return slices.ContainsFunc(ps, func(p protocol) bool { return g.allSupport(p.name) })
}

// allSupport reports whether every current member offers the protocol name.
func (g *group) allSupport(name string) bool {
	for _, m := range g.members {
		if !slices.ContainsFunc(m.protocols, func(q protocol) bool { return q.name == name }) {
			return false
		}
	}
	return true
}

// selectProtocol picks the protocol every member supports that most members
// list first among those; ties go to the leader's preference.
func (g *group) selectProtocol() string {
	var candidates []string
	var first *member
	if m, ok := g.members[g.leader]; ok {
		first = m
	} else {
		for _, m := range g.sortedMembers() {
			first = m
			break
		}
	}
	for _, p := range first.protocols {
		if g.allSupport(p.name) {
			candidates = append(candidates, p.name)
		}
	}
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if slices.Contains(candidates, p.name) {
				votes[p.name]++
				break
			}
		}
	}
	best := ""
	for _, c := range candidates { // in the leader's order, so ties keep it
		if best == "" || votes[c] > votes[best] {
			best = c
		}
	}
	return best
}

// sortedMembers lists members by id, for deterministic answers.
func (g *group) sortedMembers() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *member) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return ms
}

// allJoined: every member and every pending member id has rejoined.
func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if m.joinCh == nil {
			return false
		}
	}
	return true
}

func (g *group) addMember(m *member) {
	g.members[m.id] = m
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	if g.protocolType == "" || len(g.members) == 1 {
		g.protocolType = m.protocolType
	}
}

// removeMember drops a member, answering its waiting requests with code.
func (g *group) removeMember(m *member, code int16) {
	delete(g.members, m.id)
	delete(g.pendingSync, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	m.answerJoin(joinResult{code: code, memberID: m.id, generation: -1})
	m.answerSync(syncResult{code: code})
	if g.leader == m.id {
		g.leader = ""
		for _, o := range g.sortedMembers() {
			g.leader = o.id
			break
		}
	}
}

func (m *member) answerJoin(r joinResult) {
	if m.joinCh != nil {
		m.joinCh <- r
		m.joinCh = nil
	}
}

func (m *member) answerSync(r syncResult) {
	if m.syncCh != nil {
		m.syncCh <- r
		m.syncCh = nil
	}
}

// prepareRebalance starts a join barrier. From Empty with an initial delay
// configured the barrier waits that long (extended by each new member up to
// the rebalance timeout) so that a starting fleet joins one generation.
func (g *group) prepareRebalance(now time.Time, initialDelay time.Duration) {
	if g.state == stateCompletingRebalance {
		for _, m := range g.members {
			m.assignment = nil
			m.answerSync(syncResult{code: kerr.RebalanceInProgress.Code})
		}
		clear(g.pendingSync)
	}
	timeout := time.Duration(0)
	for _, m := range g.members {
		timeout = max(timeout, m.rebalanceTimeout)
	}
	if g.state == stateEmpty && initialDelay > 0 {
		g.initialDelay = true
		g.initialUntil = now.Add(max(timeout, initialDelay))
		g.joinDeadline = now.Add(initialDelay)
	} else {
		g.initialDelay = false
		g.joinDeadline = now.Add(timeout)
	}
	g.transition(statePreparingRebalance, now)
}

// extendInitialDelay pushes the initial barrier on when a new member joins.
func (g *group) extendInitialDelay(now time.Time, delay time.Duration) {
	if g.state == statePreparingRebalance && g.initialDelay {
		g.joinDeadline = minTime(now.Add(delay), g.initialUntil)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// canCompleteJoin: the barrier may end before its deadline.
func (g *group) canCompleteJoin() bool {
	return g.state == statePreparingRebalance && !g.initialDelay && g.allJoined()
}

// completeJoin ends the join barrier: members that did not rejoin are removed
// (static members stay until their session expires, as in Kafka), the
// generation advances, a protocol is chosen and every waiting JoinGroup is
// answered; the leader's answer lists the members. It returns true when the
// group became Empty (the caller persists it).
func (g *group) completeJoin(now time.Time) bool {
	for _, m := range g.sortedMembers() {
		if m.joinCh == nil && m.instanceID == nil {
			g.removeMember(m, kerr.UnknownMemberID.Code)
		}
	}
	clear(g.pending)
	g.initialDelay = false
	g.generation++
	if len(g.members) == 0 {
		g.protocol = nil
		g.leader = ""
		g.transition(stateEmpty, now)
		return true
	}
	if _, ok := g.members[g.leader]; !ok {
		g.leader = ""
		// Prefer a member that is waiting: it will run the assignor now.
		for _, m := range g.sortedMembers() {
			if m.joinCh != nil {
				g.leader = m.id
				break
			}
		}
		if g.leader == "" {
			g.leader = g.sortedMembers()[0].id
		}
	}
	p := g.selectProtocol()
	g.protocol = &p
	g.transition(stateCompletingRebalance, now)
	timeout := time.Duration(0)
	for _, m := range g.members {
		timeout = max(timeout, m.rebalanceTimeout)
		g.pendingSync[m.id] = true
	}
	g.syncDeadline = now.Add(timeout)

	var all []kmsg.JoinGroupResponseMember
	for _, m := range g.sortedMembers() {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		jm.InstanceID = m.instanceID
		jm.ProtocolMetadata = m.metadataFor(p)
		all = append(all, jm)
	}
	for _, m := range g.members {
		m.deadline = now.Add(m.sessionTimeout)
		r := joinResult{
			memberID:     m.id,
			generation:   g.generation,
			protocolType: g.protocolType,
			protocol:     g.protocol,
			leader:       g.leader,
		}
		if m.id == g.leader {
			r.members = all
		}
		m.answerJoin(r)
	}
	return false
}

// completeSync stores the leader's assignment and answers every waiting
// SyncGroup; members the leader left out get an empty assignment.
func (g *group) completeSync(now time.Time, assignments map[string][]byte) {
	for _, m := range g.members {
		m.assignment = assignments[m.id]
		if m.assignment == nil {
			m.assignment = []byte{}
		}
	}
	clear(g.pendingSync)
	g.transition(stateStable, now)
	for _, m := range g.members {
		m.answerSync(syncResult{protocolType: g.protocolType, protocol: g.protocol, assignment: m.assignment})
	}
}

// stored is the group's metadata record.
func (g *group) stored() *storedGroup {
	sg := &storedGroup{
		ProtocolType: g.protocolType,
		Generation:   g.generation,
		Protocol:     g.protocol,
		StateMs:      g.stateTime.UnixMilli(),
	}
	if g.leader != "" {
		l := g.leader
		sg.Leader = &l
	}
	if g.state != stateStable {
		// Only a Stable group's members and assignments are worth restoring;
		// any other state restarts as Empty, members rejoin.
		return sg
	}
	for _, m := range g.sortedMembers() {
		var md []byte
		if g.protocol != nil {
			md = m.metadataFor(*g.protocol)
		}
		sg.Members = append(sg.Members, storedMember{
			ID:                 m.id,
			InstanceID:         m.instanceID,
			ClientID:           m.clientID,
			ClientHost:         m.clientHost,
			RebalanceTimeoutMs: int32(m.rebalanceTimeout / time.Millisecond),
			SessionTimeoutMs:   int32(m.sessionTimeout / time.Millisecond),
			Metadata:           md,
			Assignment:         m.assignment,
		})
	}
	return sg
}

// restore rebuilds a group from its metadata record: Stable with its members
// (each gets a fresh session) or Empty.
func (g *group) restore(sg *storedGroup, now time.Time) {
	g.protocolType = sg.ProtocolType
	g.generation = sg.Generation
	g.protocol = sg.Protocol
	g.leader = ""
	clear(g.members)
	clear(g.static)
	g.transition(stateEmpty, time.UnixMilli(sg.StateMs))
	if len(sg.Members) == 0 || sg.Protocol == nil {
		g.protocol = nil
		return
	}
	for _, sm := range sg.Members {
		m := &member{
			id:               sm.ID,
			instanceID:       sm.InstanceID,
			clientID:         sm.ClientID,
			clientHost:       sm.ClientHost,
			sessionTimeout:   time.Duration(sm.SessionTimeoutMs) * time.Millisecond,
			rebalanceTimeout: time.Duration(sm.RebalanceTimeoutMs) * time.Millisecond,
			protocolType:     sg.ProtocolType,
			protocols:        []protocol{{name: *sg.Protocol, metadata: bytes.Clone(sm.Metadata)}},
			assignment:       bytes.Clone(sm.Assignment),
		}
		m.deadline = now.Add(m.sessionTimeout)
		g.addMember(m)
	}
	if sg.Leader != nil {
		g.leader = *sg.Leader
	}
	g.transition(stateStable, now)
}

// failWaiters answers every waiting request with code (shutdown, reload).
func (g *group) failWaiters(code int16) {
	for _, m := range g.members {
		m.answerJoin(joinResult{code: code, memberID: m.id, generation: -1})
		m.answerSync(syncResult{code: code})
	}
}

// nextDeadline is the earliest time the loop must look at the group again;
// zero when nothing is due.
func (g *group) nextDeadline() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	switch g.state {
	case statePreparingRebalance:
		consider(g.joinDeadline)
	case stateCompletingRebalance:
		consider(g.syncDeadline)
	}
	for _, m := range g.members {
		if m.joinCh == nil && m.syncCh == nil {
			consider(m.deadline)
		}
	}
	for _, t := range g.pending {
		consider(t)
	}
	return next
}

// tick applies every deadline that has passed; completeJoin is called when
// the join barrier ends. It reports whether it ended one.
func (g *group) tick(now time.Time, completeJoin func()) bool {
	for id, t := range g.pending {
		if !now.Before(t) {
			delete(g.pending, id)
		}
	}
	expired := false
	for _, m := range g.sortedMembers() {
		if m.joinCh == nil && m.syncCh == nil && !now.Before(m.deadline) {
			g.removeMember(m, kerr.UnknownMemberID.Code)
			expired = true
		}
	}
	switch g.state {
	case stateStable:
		if expired {
			g.prepareRebalance(now, 0)
		}
	case stateCompletingRebalance:
		if !now.Before(g.syncDeadline) {
			// Members that never sent SyncGroup (the leader, typically) are
			// dropped, and the group rebalances without them.
			for id := range g.pendingSync {
				if m, ok := g.members[id]; ok && m.syncCh == nil {
					g.removeMember(m, kerr.UnknownMemberID.Code)
				}
			}
			expired = true
		}
		if expired {
			g.prepareRebalance(now, 0)
		}
	}
	if g.state == statePreparingRebalance {
		if g.initialDelay && !now.Before(g.joinDeadline) {
			g.initialDelay = false
		}
		if !now.Before(g.joinDeadline) || g.canCompleteJoin() {
			completeJoin()
			return true
		}
	}
	return false
}
