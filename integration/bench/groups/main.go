// Command groups measures shardcache's consumer group coordinator with franz-go
// and prints a markdown table:
//
//  1. rebalance after a graceful leave: three group members (eager range
//     balancer) share a -partitions topic; one leaves (LeaveGroup on Close).
//     Measured: from the Close call until the two survivors own every
//     partition (their OnPartitionsAssigned callbacks).
//  2. rebalance after a kill: the same, but the third member's connections are
//     cut and every new dial refused, so it neither heartbeats nor leaves, as a
//     killed process. Measured from the cut; dominated by -session-timeout.
//  3. OffsetCommit throughput: -committers goroutines, each its own client and
//     group, send OffsetCommit (one partition, memberless) back to back for
//     -commit-duration; every commit is a Raft write. Also with one committer.
//
// Usage:
//
//	go run ./integration/bench/groups [flags]
//
// Flags:
//
//	-bootstrap          seed broker; empty starts ./bin/shardcache (or builds it)
//	                    with a temporary data dir and --group-initial-rebalance-delay 0s
//	-partitions         partitions of the topic (default 12)
//	-rounds             rebalances measured per kind (default 3)
//	-heartbeat          members' heartbeat interval (default 1s)
//	-session-timeout    members' session timeout (default 6s, the broker's minimum)
//	-committers         concurrent committers (default 16)
//	-commit-duration    length of each commit run (default 5s)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	bootstrap      string
	partitions     int
	rounds         int
	heartbeat      time.Duration
	session        time.Duration
	committers     int
	commitDuration time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bootstrap, "bootstrap", "", "seed broker host:port (empty: start a local broker)")
	flag.IntVar(&cfg.partitions, "partitions", 12, "partitions of the topic")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rebalances measured per kind")
	flag.DurationVar(&cfg.heartbeat, "heartbeat", time.Second, "members' heartbeat interval")
	flag.DurationVar(&cfg.session, "session-timeout", 6*time.Second, "members' session timeout")
	flag.IntVar(&cfg.committers, "committers", 16, "concurrent committers")
	flag.DurationVar(&cfg.commitDuration, "commit-duration", 5*time.Second, "length of each commit run")
	flag.Parse()
	if cfg.partitions < 3 || cfg.rounds < 1 || cfg.committers < 1 || cfg.heartbeat <= 0 ||
		cfg.session <= cfg.heartbeat || cfg.commitDuration <= 0 {
		log.Fatal("bad flags: need -partitions >= 3, -rounds >= 1, -committers >= 1, 0 < -heartbeat < -session-timeout")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg config) error {
	addr, stop, err := harness.Bootstrap(ctx, cfg.bootstrap, "", "--group-initial-rebalance-delay=0s")
	if err != nil {
		return err
	}
	defer stop()
	admin, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	topic := fmt.Sprintf("bench-groups-%d", time.Now().UnixNano())
	if _, err := adm.CreateTopic(ctx, int32(cfg.partitions), 1, nil, topic); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}

	var graceful, killed []time.Duration
	for i := 0; i < cfg.rounds; i++ {
		d, err := rebalance(ctx, cfg, addr, topic, fmt.Sprintf("leave-%d", i), false)
		if err != nil {
			return fmt.Errorf("graceful round %d: %w", i, err)
		}
		graceful = append(graceful, d)
		d, err = rebalance(ctx, cfg, addr, topic, fmt.Sprintf("kill-%d", i), true)
		if err != nil {
			return fmt.Errorf("kill round %d: %w", i, err)
		}
		killed = append(killed, d)
	}
	one, err := commitRun(ctx, addr, topic, 1, cfg.commitDuration)
	if err != nil {
		return err
	}
	many, err := commitRun(ctx, addr, topic, cfg.committers, cfg.commitDuration)
	if err != nil {
		return err
	}

	fmt.Printf("\nshardcache consumer groups, %d partitions, heartbeat %s, session timeout %s, %d rounds\n\n",
		cfg.partitions, cfg.heartbeat, cfg.session, cfg.rounds)
	fmt.Println("| measurement | median | max |")
	fmt.Println("|---|---:|---:|")
	slices.Sort(graceful)
	slices.Sort(killed)
	fmt.Printf("| rebalance, 3 -> 2 members, graceful leave | %s | %s |\n", fmtDur(harness.Quantile(graceful, 0.5)), fmtDur(slices.Max(graceful)))
	fmt.Printf("| rebalance, 3 -> 2 members, member killed | %s | %s |\n", fmtDur(harness.Quantile(killed, 0.5)), fmtDur(slices.Max(killed)))
	fmt.Printf("\n| OffsetCommit | commits/s |\n|---|---:|\n")
	fmt.Printf("| 1 committer | %.0f |\n", one)
	fmt.Printf("| %d committers (own groups) | %.0f |\n", cfg.committers, many)
	return nil
}

// cutDialer hands out connections it can later cut all at once, refusing
// every dial after the cut: a client behind it behaves like a killed process.
type cutDialer struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (d *cutDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, errors.New("cut")
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) cutAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	for _, c := range d.conns {
		c.Close()
	}
}

// member is one group member and the partitions it owns now.
type member struct {
	cl     *kgo.Client
	dialer *cutDialer
	mu     sync.Mutex
	owned  map[int32]bool
	stop   context.CancelFunc
	done   chan struct{}
}

func (m *member) count() map[int32]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int32]bool, len(m.owned))
	for p := range m.owned {
		out[p] = true
	}
	return out
}

func newMember(cfg config, addr, group, topic string) (*member, error) {
	m := &member{dialer: &cutDialer{}, owned: map[int32]bool{}, done: make(chan struct{})}
	update := func(ps map[string][]int32, add bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, p := range ps[topic] {
			if add {
				m.owned[p] = true
			} else {
				delete(m.owned, p)
			}
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.Dialer(m.dialer.dial),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.Balancers(kgo.RangeBalancer()),
		kgo.HeartbeatInterval(cfg.heartbeat), kgo.SessionTimeout(cfg.session),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
	)
	if err != nil {
		return nil, err
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	return m, nil
}

func (m *member) close() {
	m.stop()
	<-m.done
	m.cl.Close()
}

// covered reports whether the members own every partition, each once.
func covered(ms []*member, partitions int) bool {
	all := map[int32]int{}
	for _, m := range ms {
		for p := range m.count() {
			all[p]++
		}
	}
	if len(all) != partitions {
		return false
	}
	for _, n := range all {
		if n != 1 {
			return false
		}
	}
	return true
}

// rebalance starts three members, waits until they split the topic, removes
// one (Close, or cut when kill) and returns how long until the other two own
// every partition.
func rebalance(ctx context.Context, cfg config, addr, topic, group string, kill bool) (time.Duration, error) {
	var ms []*member
	for i := 0; i < 3; i++ {
		m, err := newMember(cfg, addr, group, topic)
		if err != nil {
			return 0, err
		}
		defer m.close()
		ms = append(ms, m)
	}
	if err := waitFor(ctx, 60*time.Second, func() bool {
		if !covered(ms, cfg.partitions) {
			return false
		}
		for _, m := range ms {
			if len(m.count()) == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return 0, fmt.Errorf("three members never split the topic: %w", err)
	}
	gone, survivors := ms[2], ms[:2]
	start := time.Now()
	if kill {
		gone.dialer.cutAll()
	} else {
		go gone.close()
	}
	if err := waitFor(ctx, cfg.session+60*time.Second, func() bool { return covered(survivors, cfg.partitions) }); err != nil {
		return 0, fmt.Errorf("survivors never took over: %w", err)
	}
	return time.Since(start), nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// commitRun runs n committers for d and returns commits per second.
func commitRun(ctx context.Context, addr, topic string, n int, d time.Duration) (float64, error) {
	var total atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	for i := 0; i < n; i++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			return 0, err
		}
		defer cl.Close()
		group := fmt.Sprintf("committer-%d-%d", n, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := int64(0); runCtx.Err() == nil; off++ {
				req := kmsg.NewPtrOffsetCommitRequest()
				req.Group, req.Generation = group, -1
				rt := kmsg.NewOffsetCommitRequestTopic()
				rt.Topic = topic
				rp := kmsg.NewOffsetCommitRequestTopicPartition()
				rp.Partition, rp.Offset = int32(i%3), off
				rt.Partitions = []kmsg.OffsetCommitRequestTopicPartition{rp}
				req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
				resp, err := req.RequestWith(runCtx, cl)
				if err != nil {
					if runCtx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					return
				}
				if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
					firstErr.CompareAndSwap(nil, kerr.ErrorForCode(code))
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok && err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}

func fmtDur(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
