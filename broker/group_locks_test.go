package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

// stall blocks the calls a test picks until released (or their context
// ends), and reports each call it blocks.
type stall struct {
	armed   atomic.Bool
	entered chan string
	release chan struct{}
}

func newStall(t testing.TB) *stall {
	s := &stall{entered: make(chan string, 64), release: make(chan struct{})}
	// Call it after starting the broker: cleanups run last first, so the
	// stall opens before the broker closes and cannot hold up its Close.
	t.Cleanup(s.open)
	return s
}

func (s *stall) open() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

func (s *stall) block(ctx context.Context, what string) {
	if !s.armed.Load() {
		return
	}
	select {
	case s.entered <- what:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
}

// waitEntered waits until a call is blocked.
func (s *stall) waitEntered(t testing.TB, what string) {
	t.Helper()
	select {
	case got := <-s.entered:
		if got != what {
			t.Fatalf("stalled %s, want %s", got, what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not stalled within 10s", what)
	}
}

// within runs f and fails the test if it does not return within d: the
// request it makes must not wait for the stalled one.
func within[R any](t testing.TB, d time.Duration, what string, f func(ctx context.Context) (R, error)) R {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := f(ctx)
	if err != nil {
		t.Fatalf("%s: %v (within %s)", what, err, d)
	}
	return r
}

func heartbeatWithin(t testing.TB, m *rawMember, d time.Duration) int16 {
	t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.InstanceID, req.Generation = m.group, m.id, m.instance, m.generation
	return within(t, d, "heartbeat of "+m.group, func(ctx context.Context) (int16, error) {
		resp, err := req.RequestWith(ctx, m.cl)
		if err != nil {
			return 0, err
		}
		return resp.ErrorCode, nil
	})
}

// TestGroupStalledCommitDoesNotHoldUpOtherGroups pins issue 9: the
// coordinator held a group's lock across the Raft proposal of its records, so
// one slow commit stopped the deadline loop (which visits every group under
// its lock): other groups' members were not expired, and the slow group's own
// heartbeats waited. Writes now happen outside the group's lock.
func TestGroupStalledCommitDoesNotHoldUpOtherGroups(t *testing.T) {
	gb := newGroupBroker(t)
	s := newStall(t)
	gb.hooks = &coordinatorHooks{beforeWrite: func(ctx context.Context, group string) error {
		if group == "slow" {
			s.block(ctx, "write of slow")
		}
		return nil
	}}
	gb.Restart()
	cl := gb.client(t)
	createTopics(t, cl, 1, "stall")

	fast := newRawMember(t, gb, "fast")
	fast.session = 500 * time.Millisecond
	fast.joinFully()
	fast.sync(map[string][]byte{fast.id: []byte("f")})
	slow := newRawMember(t, gb, "slow")
	slow.joinFully()
	slow.sync(map[string][]byte{slow.id: []byte("s")})

	s.armed.Store(true)
	committed := make(chan int16, 1)
	go func() {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "slow", slow.id, slow.generation
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "stall"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 42
		rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
		req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := req.RequestWith(ctx, gb.client(t))
		if err != nil {
			committed <- -1
			return
		}
		committed <- resp.Topics[0].Partitions[0].ErrorCode
	}()
	s.waitEntered(t, "write of slow")

	if code := heartbeatWithin(t, slow, 3*time.Second); code != 0 {
		t.Fatalf("heartbeat of the stalled group: %v", kerr.ErrorForCode(code))
	}
	if code := heartbeatWithin(t, fast, 3*time.Second); code != 0 {
		t.Fatalf("heartbeat of another group: %v", kerr.ErrorForCode(code))
	}
	// fast stops heartbeating: its session (500 ms) expires and the group
	// empties, though slow's write is still stalled.
	waitState(t, cl, "fast", "Empty", 0)
	other := newRawMember(t, gb, "other")
	other.joinFully()
	if r := other.sync(map[string][]byte{other.id: []byte("o")}); r.ErrorCode != 0 {
		t.Fatalf("a new group during the stall: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	select {
	case code := <-committed:
		t.Fatalf("the stalled commit was answered (%v) before its write finished", kerr.ErrorForCode(code))
	default:
	}

	s.open()
	select {
	case code := <-committed:
		if code != 0 {
			t.Fatalf("the stalled commit: %v", kerr.ErrorForCode(code))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the commit was not answered after its write was released")
	}
	if got := fetchCommitted(t, cl, "slow"); got["stall/0"].Offset != 42 {
		t.Fatalf("committed offsets of slow: %+v", got)
	}
}

// groupsOnDistinctPartitions returns two group ids whose offsets partitions
// (of n) differ.
func groupsOnDistinctPartitions(n int) (a, b string) {
	a = "slow"
	for i := 0; ; i++ {
		b = fmt.Sprintf("fast-%d", i)
		if partitionFor(b, n) != partitionFor(a, n) {
			return a, b
		}
	}
}

// TestGroupStalledLoadDoesNotHoldUpOtherPartitions pins issue 9: loading an
// offsets partition (a read of all its records) ran under the coordinator's
// lock, and the startup loads ran before the deadline loop, so one slow load
// held up every group of every partition. Each partition now loads on its
// own; only requests for that partition's groups wait for it.
func TestGroupStalledLoadDoesNotHoldUpOtherPartitions(t *testing.T) {
	gb := newGroupBroker(t)
	s := newStall(t)
	cl := gb.client(t)
	createTopics(t, cl, 1, "loads")
	slowID, fastID := groupsOnDistinctPartitions(int(gb.cfg.OffsetsTopicPartitions))
	flinkCommit(t, cl, slowID, "loads", map[int32]int64{0: 5}, "")
	slowPartition := partitionFor(slowID, int(gb.cfg.OffsetsTopicPartitions))

	gb.hooks = &coordinatorHooks{beforeLoad: func(ctx context.Context, p int32) {
		if p == slowPartition {
			s.block(ctx, "load of slow's partition")
		}
	}}
	s.armed.Store(true)
	gb.Restart()
	s.waitEntered(t, "load of slow's partition")

	fast := newRawMember(t, gb, fastID)
	fast.session = 500 * time.Millisecond
	within(t, 5*time.Second, "join "+fastID, func(ctx context.Context) (struct{}, error) {
		for {
			resp, err := fast.joinReq(9).RequestWith(ctx, fast.cl)
			if err != nil {
				return struct{}{}, err
			}
			fast.id = resp.MemberID
			switch resp.ErrorCode {
			case kerr.MemberIDRequired.Code:
				continue
			case 0:
				fast.generation = resp.Generation
				return struct{}{}, nil
			}
			return struct{}{}, kerr.ErrorForCode(resp.ErrorCode)
		}
	})
	fast.sync(map[string][]byte{fast.id: []byte("f")})
	if code := heartbeatWithin(t, fast, 3*time.Second); code != 0 {
		t.Fatalf("heartbeat during another partition's load: %v", kerr.ErrorForCode(code))
	}
	waitState(t, gb.client(t), fastID, "Empty", 0)

	s.open()
	if got := fetchCommitted(t, gb.client(t, kgo.RequestRetries(20)), slowID); got["loads/0"].Offset != 5 {
		t.Fatalf("offsets of %s after its partition loaded: %+v", slowID, got)
	}
}

// TestGroupStaticReplacementUndoneWhenNotWritten: as in Kafka, a static
// member's replacement without a rebalance is answered only once the new
// member id is written; when that write fails the request gets the error and
// the old member id is back, so the running instance is not fenced by a
// replacement that never became durable.
func TestGroupStaticReplacementUndoneWhenNotWritten(t *testing.T) {
	gb := newGroupBroker(t)
	var failing atomic.Bool
	gb.hooks = &coordinatorHooks{beforeWrite: func(ctx context.Context, group string) error {
		if failing.Load() {
			return raftfsm.ErrNotLeader
		}
		return nil
	}}
	gb.Restart()
	inst := "instance-1"
	a := newRawMember(t, gb, "undo")
	a.instance = &inst
	if r := a.join(); r.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	a.sync(map[string][]byte{a.id: []byte("A")})

	failing.Store(true)
	restarted := newRawMember(t, gb, "undo")
	restarted.cl = pinnedClient(t, gb.Addr, kmsg.JoinGroup, 5, kgo.RequestRetries(0))
	restarted.instance = &inst
	r := restarted.joinVersion(5)
	if r.ErrorCode != kerr.NotCoordinator.Code || r.MemberID != "" || r.LeaderID != a.id {
		t.Fatalf("replacement whose write failed: code %v, member %q, leader %q; want NOT_COORDINATOR, no id, leader %q",
			kerr.ErrorForCode(r.ErrorCode), r.MemberID, r.LeaderID, a.id)
	}
	failing.Store(false)
	if code := a.heartbeat(); code != 0 {
		t.Fatalf("the old member id after the undone replacement: %v", kerr.ErrorForCode(code))
	}
	if g := describeGroup(t, gb.client(t), "undo"); g.State != "Stable" || len(g.Members) != 1 || g.Members[0].MemberID != a.id {
		t.Fatalf("group after the undone replacement: %+v", g)
	}
}
