package integration

// Consumer groups through the real binary with franz-go: members joining and
// leaving while producers write (eager range and cooperative-sticky
// balancers), no partition owned by two members at once, every record
// processed at least once, committed offsets kept across a restart and a
// kill, and Flink's memberless commits.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupBrokerArgs make rebalances quick: no initial delay.
var groupBrokerArgs = []string{"--group-initial-rebalance-delay", "0s"}

// ownership records which member holds which partition, as the members'
// OnPartitionsAssigned / Revoked / Lost callbacks report it, and every time
// two members held one partition at once.
type ownership struct {
	mu       sync.Mutex
	owner    map[int32]string
	overlaps []string
}

func (o *ownership) assigned(member string, ps map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, parts := range ps {
		for _, p := range parts {
			if cur, ok := o.owner[p]; ok && cur != member {
				o.overlaps = append(o.overlaps, fmt.Sprintf("partition %d assigned to %s while %s owns it", p, member, cur))
			}
			o.owner[p] = member
		}
	}
}

func (o *ownership) released(member string, ps map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, parts := range ps {
		for _, p := range parts {
			if o.owner[p] == member {
				delete(o.owner, p)
			}
		}
	}
}

// groupMember is one franz-go group consumer polling on its own goroutine.
type groupMember struct {
	name string
	cl   *kgo.Client
	stop context.CancelFunc
	done chan struct{}
}

func startMember(t *testing.T, b *testBroker, name, group, topic string, balancer kgo.GroupBalancer,
	own *ownership, seen func(*kgo.Record)) *groupMember {
	t.Helper()
	cl := b.Client(t,
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.Balancers(balancer),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.HeartbeatInterval(300*time.Millisecond), kgo.SessionTimeout(10*time.Second),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.AutoCommitInterval(200*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { own.assigned(name, ps) }),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, ps map[string][]int32) {
			// Commit what was processed before giving the partitions up, so the
			// next owner resumes there (at least once, few duplicates).
			_ = cl.CommitUncommittedOffsets(ctx)
			own.released(name, ps)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { own.released(name, ps) }),
	)
	ctx, cancel := context.WithCancel(context.Background())
	m := &groupMember{name: name, cl: cl, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(seen)
		}
	}()
	t.Cleanup(m.leave)
	return m
}

// leave stops polling and closes the client (LeaveGroup); idempotent.
func (m *groupMember) leave() {
	if m.stop == nil {
		return
	}
	m.stop()
	<-m.done
	m.cl.Close()
	m.stop = nil
}

func TestGroupsFranzRebalanceWhileProducing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"range", kgo.RangeBalancer()},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) { testRebalanceWhileProducing(t, tc.balancer) })
	}
}

func testRebalanceWhileProducing(t *testing.T, balancer kgo.GroupBalancer) {
	b := startBroker(t, groupBrokerArgs...)
	adm := b.Admin(t)
	topic := topicName(t)
	const partitions, total = 12, 3000
	createTopic(t, adm, topic, partitions, nil)
	group := "g-" + topic

	var mu sync.Mutex
	seen := map[string]int{}
	record := func(r *kgo.Record) {
		mu.Lock()
		seen[string(r.Key)]++
		mu.Unlock()
	}
	seenCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	own := &ownership{owner: map[int32]string{}}
	members := []*groupMember{
		startMember(t, b, "m1", group, topic, balancer, own, record),
		startMember(t, b, "m2", group, topic, balancer, own, record),
		startMember(t, b, "m3", group, topic, balancer, own, record),
	}

	// Producers: two goroutines, unique keys, bounded.
	prod := b.Client(t, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	produced := make(chan int, total)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 2 {
				r := &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")}
				if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Errorf("produce: %v", err)
					return
				}
				produced <- i
			}
		}()
	}
	n := 0
	waitProduced := func(upTo int) {
		for n < upTo {
			select {
			case <-produced:
				n++
			case <-ctx.Done():
				t.Fatalf("produced %d of %d", n, upTo)
			}
		}
	}
	// Mid-stream: a fourth member joins, then one of the first three leaves.
	waitProduced(total / 3)
	members = append(members, startMember(t, b, "m4", group, topic, balancer, own, record))
	waitProduced(2 * total / 3)
	members[0].leave()
	wg.Wait()
	waitProduced(total)

	waitFor(t, 90*time.Second, 100*time.Millisecond, "every record processed", func() error {
		if c := seenCount(); c != total {
			return fmt.Errorf("%d of %d keys seen", c, total)
		}
		return nil
	})
	waitFor(t, 60*time.Second, 100*time.Millisecond, "three members hold all partitions, offsets committed", func() error {
		gs, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		g := gs[group]
		if g.State != "Stable" || len(g.Members) != 3 {
			return fmt.Errorf("group %s with %d members", g.State, len(g.Members))
		}
		lag, err := adm.Lag(ctx, group)
		if err != nil {
			return err
		}
		var sum int64
		for _, l := range lag[group].Lag[topic] {
			if l.Err != nil {
				return l.Err
			}
			sum += l.Lag
		}
		if len(lag[group].Lag[topic]) != partitions || sum != 0 {
			return fmt.Errorf("lag %d over %d partitions", sum, len(lag[group].Lag[topic]))
		}
		return nil
	})
	own.mu.Lock()
	overlaps := own.overlaps
	own.mu.Unlock()
	if len(overlaps) > 0 {
		t.Fatalf("partitions owned by two members at once:\n%v", overlaps)
	}

	// Committed offsets survive a graceful restart.
	for _, m := range members {
		m.leave() // commits on revoke, then LeaveGroup
	}
	committed := fetchGroupOffsets(t, adm, group, topic)
	b.Stop(t)
	b.Start(t)
	after := fetchGroupOffsets(t, b.Admin(t), group, topic)
	if fmt.Sprint(after) != fmt.Sprint(committed) {
		t.Fatalf("committed offsets changed across restart:\nbefore %v\nafter  %v", committed, after)
	}
	var sum int64
	for _, o := range after {
		sum += o
	}
	if len(after) != partitions || sum != total {
		t.Fatalf("committed offsets %v sum to %d, want %d over %d partitions", after, sum, total, partitions)
	}
}

// fetchGroupOffsets returns partition -> committed offset for one topic.
func fetchGroupOffsets(t testing.TB, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	if err := resp.Error(); err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		out[p] = o.At
	}
	return out
}

// TestGroupsFlinkMemberlessCommitSurvivesKill commits as Flink's KafkaSource
// does (FindCoordinator, then OffsetCommit with generation -1 and no member
// id), reads it back with OffsetFetch, and finds it again after kill -9.
func TestGroupsFlinkMemberlessCommitSurvivesKill(t *testing.T) {
	b := startBroker(t)
	requireLocalBroker(t)
	adm := b.Admin(t)
	topic := topicName(t)
	createTopic(t, adm, topic, 2, nil)
	group := "flink-" + topic
	cl := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = group
	fcr, err := fc.RequestWith(ctx, cl)
	if err != nil || fcr.ErrorCode != 0 {
		t.Fatalf("find coordinator: %v %+v", err, fcr)
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.Generation, commit.MemberID = group, -1, ""
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p, off := range []int64{17, 42} {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.Metadata = int32(p), off, kmsg.StringPtr("checkpoint-3")
		rt.Partitions = append(rt.Partitions, rp)
	}
	commit.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	cr, err := commit.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range cr.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("commit %d: %v", p.Partition, kerr.ErrorForCode(p.ErrorCode))
		}
	}
	check := func(cl *kgo.Client) {
		t.Helper()
		f := kmsg.NewPtrOffsetFetchRequest()
		f.Version = 7
		f.Group = group
		ft := kmsg.NewOffsetFetchRequestTopic()
		ft.Topic, ft.Partitions = topic, []int32{0, 1}
		f.Topics = []kmsg.OffsetFetchRequestTopic{ft}
		f.RequireStable = true
		fr, err := f.RequestWith(ctx, cl)
		if err != nil || fr.ErrorCode != 0 {
			t.Fatalf("offset fetch: %v %+v", err, fr)
		}
		var got []string
		for _, p := range fr.Topics[0].Partitions {
			got = append(got, fmt.Sprintf("%d:%d:%s", p.Partition, p.Offset, *p.Metadata))
		}
		sort.Strings(got)
		if want := "[0:17:checkpoint-3 1:42:checkpoint-3]"; fmt.Sprint(got) != want {
			t.Fatalf("offset fetch %v, want %s", got, want)
		}
	}
	check(cl)
	b.Kill(t)
	b.Start(t)
	check(b.Client(t))
}
