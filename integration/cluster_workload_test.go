//go:build unix

package integration

// The Jepsen-style queue workload of the cluster fault tests (jepsen-io/redpanda,
// workload/queue.clj), recorded in a checker.History:
//
//   - producers: franz-go idempotent clients (acks=all), each sending unique
//     values round-robin to the partitions of a delete-policy topic and, one
//     send in four, to a compacted topic (a few keys, now and then a
//     tombstone). A send is OK with its acknowledged offset, Fail only on an
//     error that proves the batch was refused as such, Info otherwise (a
//     timeout, a lost connection, a client closed with the record in flight);
//   - consumers: members of one consumer group on the delete-policy topic,
//     autocommitting; every record they poll is a Poll, every assignment an
//     Assign;
//   - observers: ListOffsets(latest) of every partition, the group's committed
//     offsets, and Metadata from every live node, which yields LeaderChange
//     events (a higher leader epoch naming another leader) and two checks of
//     its own: a node's leader epoch for a partition never goes back, and no
//     two answers name different leaders for one epoch (both fail the test;
//     TestClusterBugStaleLeaderWithNewEpoch pins the bug that once broke them);
//   - the drain also fails the test when a replica answers OFFSET_OUT_OF_RANGE
//     inside its log (clients reset their position on it);
//   - the final drain, after the faults are healed: every replica of every
//     partition is read with Fetch from the log start to the leader's high
//     watermark (followers serve Fetch v11+ up to their applied high
//     watermark), one drain consumer per replica.
//
// checker.Check then judges the whole history.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/integration/checker"
)

// workloadConfig sizes a workload.
type workloadConfig struct {
	// Partitions of each topic.
	Partitions int32
	// Producers and Consumers are the number of clients of each kind.
	Producers, Consumers int
	// SendInterval is the pause between two sends of one producer.
	SendInterval time.Duration
	// MaxOutstanding caps one producer's sends without an outcome, per
	// partition.
	MaxOutstanding int
	// Compacted adds the compacted topic; Keys is its key count per producer.
	Compacted bool
	Keys      int
}

// defaultWorkload is the workload of the fault tests: about 400 sends a second.
var defaultWorkload = workloadConfig{
	Partitions:     3,
	Producers:      2,
	Consumers:      2,
	SendInterval:   5 * time.Millisecond,
	MaxOutstanding: 100,
	Compacted:      true,
	Keys:           8,
}

// workload runs against a testCluster and records into History.
type workload struct {
	t       testing.TB
	c       *testCluster
	cfg     workloadConfig
	History *checker.History

	LogTopic, CompactTopic, Group string

	// prodCtx ends the producers' send loops; obsCtx the consumers and
	// observers.
	prodCtx, obsCtx       context.Context
	prodCancel, obsCancel context.CancelFunc
	prodWG, obsWG         sync.WaitGroup
	producers             []*kgo.Client
	consumers             []*kgo.Client

	// okSends counts OK sends per topic partition, for waitProgress.
	okMu    sync.Mutex
	okSends map[topicPartition]int

	// inDoubt counts produce requests whose response was never read (the
	// connection failed after the request was written): their batches were
	// retried, and idempotence must give them their original offsets.
	inDoubt atomic.Int64

	// leaders is the leader watcher's state.
	leaderMu  sync.Mutex
	leaders   map[topicPartition]leaderSeen
	nodeEpoch map[nodePartition]int32
	changes   []leaderChangeAt
	// problems are misbehaviours the checker has no kind for; problemCount
	// counts those not kept. epochIssues are leader epoch anomalies (see
	// TestClusterBugStaleLeaderWithNewEpoch), failed on like problems.
	problems     []string
	problemCount int
	epochIssues  []string
	epochSeen    map[string]bool // epochIssues' keys, to log each issue once
}

type topicPartition struct {
	Topic     string
	Partition int32
}

type nodePartition struct {
	Node int32
	topicPartition
}

// leaderSeen is the newest leader known for a partition.
type leaderSeen struct {
	Leader, Epoch int32
	Node          int32 // the node that first reported it
}

// leaderChangeAt is a LeaderChange and when the watcher saw it.
type leaderChangeAt struct {
	checker.LeaderChange
	At time.Time
}

// startWorkload creates the topics, waits until every partition is led and
// replicated on every node, and starts every client.
func startWorkload(t testing.TB, c *testCluster, cfg workloadConfig) *workload {
	t.Helper()
	base := topicName(t)
	w := &workload{
		t:         t,
		c:         c,
		cfg:       cfg,
		History:   &checker.History{},
		LogTopic:  base + "-log",
		Group:     base + "-group",
		okSends:   make(map[topicPartition]int),
		leaders:   make(map[topicPartition]leaderSeen),
		nodeEpoch: make(map[nodePartition]int32),
		epochSeen: make(map[string]bool),
	}
	admin := c.Client(t)
	createClusterTopic(t, admin, w.LogTopic, cfg.Partitions, map[string]string{"cleanup.policy": "delete"})
	topics := []string{w.LogTopic}
	if cfg.Compacted {
		w.CompactTopic = base + "-compact"
		createClusterTopic(t, admin, w.CompactTopic, cfg.Partitions, map[string]string{"cleanup.policy": "compact"})
		topics = append(topics, w.CompactTopic)
	}
	c.WaitReplicated(topics...)
	c.WaitLeaders(topics...)

	w.prodCtx, w.prodCancel = context.WithCancel(context.Background())
	w.obsCtx, w.obsCancel = context.WithCancel(context.Background())
	// If the test fails before Stop, the clients still stop before the cluster.
	t.Cleanup(func() { w.stopClients() })

	w.observe(w.watchLeaders)
	for i := range cfg.Producers {
		w.startProducer(i)
	}
	for i := range cfg.Consumers {
		w.startConsumer(fmt.Sprintf("c%d", i))
	}
	w.observe(w.watchListOffsets)
	w.observe(w.watchCommits)
	return w
}

// Topics returns the workload's topics.
func (w *workload) Topics() []string {
	if w.CompactTopic == "" {
		return []string{w.LogTopic}
	}
	return []string{w.LogTopic, w.CompactTopic}
}

// observe runs fn(ctx) until the observers stop.
func (w *workload) observe(fn func(ctx context.Context)) {
	w.obsWG.Add(1)
	go func() {
		defer w.obsWG.Done()
		fn(w.obsCtx)
	}()
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// inDoubtHook counts produce requests written whose response was not read.
type inDoubtHook struct{ n *atomic.Int64 }

func (h inDoubtHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key == kmsg.Produce.Int16() && e2e.WriteErr == nil && e2e.ReadErr != nil {
		h.n.Add(1)
	}
}

// definite lists the produce errors that prove a batch was refused: the
// broker validates a batch before it proposes it, and every retry of a batch
// sends the same records, so none of its tries was written.
var definite = []*kerr.Error{
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
	kerr.InvalidTopicException, kerr.TopicAuthorizationFailed, kerr.InvalidRequiredAcks,
}

// outcomeOf classifies a produce callback's error.
func outcomeOf(err error) checker.Outcome {
	if err == nil {
		return checker.OK
	}
	for _, d := range definite {
		if errors.Is(err, d) {
			return checker.Fail
		}
	}
	return checker.Info
}

// startProducer starts producer i. Each tick it sends the next value to the
// next partition (round-robin; every fourth send goes to the compacted topic)
// unless that partition already has MaxOutstanding sends of this producer
// without an outcome: then it skips the tick, so a partition without a leader
// does not hold the others up.
func (w *workload) startProducer(i int) {
	name := fmt.Sprintf("p%d", i)
	cl := w.c.Client(w.t,
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence is franz-go's default
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProduceRequestTimeout(5*time.Second),
		kgo.RequestTimeoutOverhead(3*time.Second),
		kgo.RecordDeliveryTimeout(30*time.Second),
		kgo.WithHooks(inDoubtHook{&w.inDoubt}),
	)
	w.producers = append(w.producers, cl)
	w.prodWG.Add(1)
	go func() {
		defer w.prodWG.Done()
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		var mu sync.Mutex
		outstanding := make(map[topicPartition]int)
		tick := time.NewTicker(w.cfg.SendInterval)
		defer tick.Stop()
		for n, seq := 0, 0; ; n++ {
			select {
			case <-w.prodCtx.Done():
				return
			case <-tick.C:
			}
			s := checker.Send{
				Producer:  name,
				Topic:     w.LogTopic,
				Partition: int32(n) % w.cfg.Partitions,
				Key:       []byte(name),
			}
			if w.cfg.Compacted && n%4 == 3 {
				s.Topic = w.CompactTopic
				s.Partition = int32(n/4) % w.cfg.Partitions
				s.Key = fmt.Appendf(nil, "%s-k%d", name, rng.IntN(w.cfg.Keys))
			}
			tp := topicPartition{s.Topic, s.Partition}
			mu.Lock()
			full := outstanding[tp] >= w.cfg.MaxOutstanding
			if !full {
				outstanding[tp]++
			}
			mu.Unlock()
			if full {
				continue
			}
			seq++
			s.Value = fmt.Appendf(nil, "%s-%d", name, seq)
			if s.Topic == w.CompactTopic && rng.IntN(8) == 0 {
				s.Value = nil // a tombstone
			}
			id := w.History.BeginSend(s)
			rec := &kgo.Record{Topic: s.Topic, Partition: s.Partition, Key: s.Key, Value: s.Value}
			cl.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
				o := outcomeOf(err)
				w.History.EndSend(id, o, r.Offset)
				if o == checker.OK {
					w.okMu.Lock()
					w.okSends[tp]++
					w.okMu.Unlock()
				}
				mu.Lock()
				outstanding[tp]--
				mu.Unlock()
			})
		}
	}()
}

func (w *workload) startConsumer(name string) {
	var cl *kgo.Client
	cl = w.c.Client(w.t,
		kgo.ConsumerGroup(w.Group),
		kgo.ConsumeTopics(w.LogTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.RequestTimeoutOverhead(3*time.Second),
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.AutoCommitInterval(500*time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			for topic, ps := range assigned {
				for _, p := range ps {
					w.History.AddAssign(checker.Assign{Consumer: name, Topic: topic, Partition: p})
				}
			}
		}),
	)
	w.consumers = append(w.consumers, cl)
	w.observe(func(ctx context.Context) {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				w.History.AddPoll(checker.Poll{
					Consumer: name, Topic: r.Topic, Partition: r.Partition,
					Offset: r.Offset, Key: r.Key, Value: r.Value,
				})
			})
			cl.AllowRebalance()
		}
	})
}

// watchListOffsets records ListOffsets(latest) of every partition of the
// delete-policy topic.
func (w *workload) watchListOffsets(ctx context.Context) {
	adm := kadm.NewClient(w.c.Client(w.t, kgo.RequestTimeoutOverhead(2*time.Second)))
	every(ctx, 200*time.Millisecond, func() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		start := time.Now()
		listed, err := adm.ListEndOffsets(rctx, w.LogTopic)
		end := time.Now()
		if err != nil {
			return
		}
		for p, lo := range listed[w.LogTopic] {
			if lo.Err != nil || lo.Offset < 0 {
				continue
			}
			w.History.AddListOffsetsLatest(checker.ListOffsetsLatest{
				Topic: w.LogTopic, Partition: p, Offset: lo.Offset, Start: start, End: end,
			})
		}
	})
}

// watchCommits records the group's committed offsets.
func (w *workload) watchCommits(ctx context.Context) {
	adm := kadm.NewClient(w.c.Client(w.t, kgo.RequestTimeoutOverhead(2*time.Second)))
	every(ctx, 300*time.Millisecond, func() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		start := time.Now()
		offs, err := adm.FetchOffsets(rctx, w.Group)
		end := time.Now()
		if err != nil {
			return
		}
		for p, o := range offs[w.LogTopic] {
			if o.Err != nil || o.At < 0 {
				continue
			}
			w.History.AddCommit(checker.Commit{
				Group: w.Group, Topic: w.LogTopic, Partition: p, Offset: o.At, Start: start, End: end,
			})
		}
	})
}

// watchLeaders asks every live node for the workload's partitions.
func (w *workload) watchLeaders(ctx context.Context) {
	every(ctx, 200*time.Millisecond, func() { w.pollLeaders(ctx) })
}

func (w *workload) pollLeaders(ctx context.Context) {
	for _, id := range w.c.live() {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		md, err := w.c.metadata(rctx, id, w.Topics())
		cancel()
		if err != nil {
			continue
		}
		for _, mt := range md.Topics {
			if mt.Topic == nil || kerr.ErrorForCode(mt.ErrorCode) != nil {
				continue
			}
			for _, mp := range mt.Partitions {
				if kerr.ErrorForCode(mp.ErrorCode) != nil || mp.Leader < 0 {
					continue
				}
				w.sawLeader(id, topicPartition{*mt.Topic, mp.Partition}, mp.Leader, mp.LeaderEpoch)
			}
		}
	}
}

// sawLeader takes in node id's report that leader leads tp in epoch.
func (w *workload) sawLeader(id int32, tp topicPartition, leader, epoch int32) {
	w.leaderMu.Lock()
	defer w.leaderMu.Unlock()
	np := nodePartition{id, tp}
	if prev, ok := w.nodeEpoch[np]; ok && epoch < prev {
		w.addEpochIssueLocked(fmt.Sprint("back", id, tp, prev, epoch), fmt.Sprintf("node %d at %s: leader epoch of %s/%d went back from %d to %d (leader %d)",
			id, time.Now().Format("15:04:05.000"), tp.Topic, tp.Partition, prev, epoch, leader))
	}
	w.nodeEpoch[np] = max(w.nodeEpoch[np], epoch)
	cur, ok := w.leaders[tp]
	switch {
	case !ok:
		w.leaders[tp] = leaderSeen{leader, epoch, id}
	case epoch > cur.Epoch:
		w.leaders[tp] = leaderSeen{leader, epoch, id}
		if leader != cur.Leader {
			lc := checker.LeaderChange{Topic: tp.Topic, Partition: tp.Partition, From: cur.Leader, To: leader}
			w.History.AddLeaderChange(lc)
			w.changes = append(w.changes, leaderChangeAt{lc, time.Now()})
		}
	case epoch == cur.Epoch && leader != cur.Leader:
		w.addEpochIssueLocked(fmt.Sprint("two", tp, epoch, leader, cur.Leader), fmt.Sprintf("%s/%d at %s: node %d names leader %d for epoch %d, node %d named leader %d for the same epoch",
			tp.Topic, tp.Partition, time.Now().Format("15:04:05.000"), id, leader, epoch, cur.Node, cur.Leader))
	}
}

// LeaderOf returns the current leader of tp as the watcher knows it.
func (w *workload) LeaderOf(topic string, partition int32) int32 {
	w.t.Helper()
	w.pollLeaders(w.obsCtx)
	w.leaderMu.Lock()
	defer w.leaderMu.Unlock()
	ls, ok := w.leaders[topicPartition{topic, partition}]
	if !ok {
		w.t.Fatalf("no leader known for %s/%d", topic, partition)
	}
	return ls.Leader
}

// WaitLeaderMoved waits until the watcher has seen some partition of the
// workload's topics move away from node since the given time.
func (w *workload) WaitLeaderMoved(node int32, since time.Time, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w.leaderMu.Lock()
		for _, ch := range w.changes {
			if ch.From == node && !ch.At.Before(since) {
				w.leaderMu.Unlock()
				w.t.Logf("leadership of %s/%d moved from node %d to node %d %v after the fault",
					ch.Topic, ch.Partition, ch.From, ch.To, ch.At.Sub(since).Round(time.Millisecond))
				return
			}
		}
		w.leaderMu.Unlock()
		if time.Now().After(deadline) {
			w.t.Errorf("no partition led by node %d moved to another leader within %v of the fault: the fault had no effect", node, timeout)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// okCount returns the OK sends to each partition so far.
func (w *workload) okCount() map[topicPartition]int {
	w.okMu.Lock()
	defer w.okMu.Unlock()
	return maps.Clone(w.okSends)
}

// WaitProgress waits until every partition of every topic has at least n more
// OK sends than it had when called. It fails the test after timeout.
func (w *workload) WaitProgress(n int, timeout time.Duration) {
	w.t.Helper()
	began := time.Now()
	base := w.okCount()
	deadline := began.Add(timeout)
	for {
		now := w.okCount()
		var behind []string
		for _, topic := range w.Topics() {
			for p := range w.cfg.Partitions {
				tp := topicPartition{topic, p}
				if now[tp]-base[tp] < n {
					behind = append(behind, fmt.Sprintf("%s/%d: %d", topic, p, now[tp]-base[tp]))
				}
			}
		}
		if len(behind) == 0 {
			w.t.Logf("every partition took %d more acknowledged sends in %v", n, time.Since(began).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			w.t.Errorf("partitions without %d more acknowledged sends within %v: %s", n, timeout, strings.Join(behind, ", "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the producers (waiting up to 30s for their outstanding sends),
// then the consumers and observers.
func (w *workload) Stop() {
	w.t.Helper()
	w.prodCancel()
	w.prodWG.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, cl := range w.producers {
		if err := cl.Flush(ctx); err != nil {
			w.t.Logf("producer p%d: flush: %v (sends still out count as info)", i, err)
		}
	}
	w.stopClients()
}

// stopClients closes every client: sends still out fail (and count as info).
// Idempotent.
func (w *workload) stopClients() {
	w.prodCancel()
	w.prodWG.Wait()
	for _, cl := range w.producers {
		cl.Close()
	}
	w.obsCancel()
	for _, cl := range w.consumers {
		// Leave the group (bounded: its coordinator may be down), then
		// close; a consumer blocked in PollFetches returns.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = cl.LeaveGroupContext(ctx)
		cancel()
		cl.CloseAllowingRebalance()
	}
	w.obsWG.Wait()
}

// Drain reads every replica of every partition from its log start to the
// leader's high watermark, once the cluster is ready and led again.
func (w *workload) Drain() {
	w.t.Helper()
	began := time.Now()
	w.c.WaitReady()
	w.c.WaitLeaders(w.Topics()...)
	type job struct {
		tp         topicPartition
		start, end int64
	}
	jobs := make(map[int32][]job) // replica -> partitions to read there
	adm := kadm.NewClient(w.c.Client(w.t))
	for _, topic := range w.Topics() {
		var starts, ends kadm.ListedOffsets
		w.c.waitFor("offsets of "+topic, func(ctx context.Context) error {
			var err error
			if starts, err = adm.ListStartOffsets(ctx, topic); err == nil {
				err = starts.Error()
			}
			if err == nil {
				if ends, err = adm.ListEndOffsets(ctx, topic); err == nil {
					err = ends.Error()
				}
			}
			return err
		})
		var parts map[int32]partitionState
		w.c.waitFor("replicas of "+topic, func(ctx context.Context) error {
			var err error
			parts, err = w.c.partitions(ctx, w.c.live()[0], topic)
			return err
		})
		for p, st := range parts {
			for _, r := range st.Replicas {
				jobs[r] = append(jobs[r], job{topicPartition{topic, p}, starts[topic][p].Offset, ends[topic][p].Offset})
			}
		}
	}
	var wg sync.WaitGroup
	for r, js := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			for _, j := range js {
				w.drainReplica(ctx, r, j.tp, j.start, j.end)
			}
		}()
	}
	wg.Wait()
	w.t.Logf("drained %d replicas in %v", len(jobs), time.Since(began).Round(time.Millisecond))
}

// drainTimeout bounds the drain of one replica (every partition on it).
const drainTimeout = 30 * time.Second

// drainReplica reads tp on replica r from start until its position reaches
// end, recording every record as a drain Poll of consumer "drain-n<r>". A
// replica that does not get there before ctx ends (drainTimeout for all its
// partitions) is left short; the checker then reports the acknowledged sends
// it missed.
func (w *workload) drainReplica(ctx context.Context, r int32, tp topicPartition, start, end int64) {
	consumer := fmt.Sprintf("drain-n%d", r)
	w.History.AddAssign(checker.Assign{Consumer: consumer, Topic: tp.Topic, Partition: tp.Partition, Drain: true})
	pos := start
	var lastErr error
	for pos < end {
		if ctx.Err() != nil {
			w.t.Errorf("drain %s/%d on node %d: position %d short of the high watermark %d when the replica's %v ran out (last error: %v)",
				tp.Topic, tp.Partition, r, pos, end, drainTimeout, lastErr)
			return
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 200
		req.MinBytes = 1
		req.MaxBytes = 4 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = tp.Topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = tp.Partition
		rp.FetchOffset = pos
		rp.CurrentLeaderEpoch = -1
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		kresp, err := w.c.requestNode(rctx, r, req)
		rcancel()
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		resp := kresp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			lastErr = fmt.Errorf("fetch answer: error %v, %d topics", err, len(resp.Topics))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		rpr := &resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(rpr.ErrorCode); err != nil {
			lastErr = err
			if errors.Is(err, kerr.OffsetOutOfRange) {
				// A replica never answers this within [log start, its
				// high watermark], and clients reset on it.
				w.addProblem("drain: node %d answered OFFSET_OUT_OF_RANGE to a fetch of %s/%d at %d (leader's high watermark %d, its own %d)",
					r, tp.Topic, tp.Partition, pos, end, rpr.HighWatermark)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset: pos, Topic: tp.Topic, Partition: tp.Partition,
		}, rpr, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			lastErr = fp.Err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, rec := range fp.Records {
			if rec.Offset >= end {
				break // past what the leader reported: not part of this drain
			}
			w.History.AddPoll(checker.Poll{
				Consumer: consumer, Topic: tp.Topic, Partition: tp.Partition,
				Offset: rec.Offset, Key: rec.Key, Value: rec.Value, Drain: true,
			})
		}
		if next > pos {
			pos = next
		}
	}
}

// maxProblems caps the problems kept; the rest are counted.
const maxProblems = 20

// addProblem records a cluster misbehaviour the checker has no kind for.
func (w *workload) addProblem(format string, args ...any) {
	w.leaderMu.Lock()
	defer w.leaderMu.Unlock()
	w.addProblemLocked(fmt.Sprintf(format, args...))
}

func (w *workload) addProblemLocked(msg string) {
	w.problemCount++
	if len(w.problems) < maxProblems {
		w.problems = append(w.problems, msg)
	}
}

// addEpochIssueLocked records msg unless an issue with the same key was.
func (w *workload) addEpochIssueLocked(key, msg string) {
	if w.epochSeen[key] {
		return
	}
	w.epochSeen[key] = true
	w.epochIssues = append(w.epochIssues, msg)
}

// Check runs checker.Check, logs the verdict and the workload's own figures,
// and fails the test on any anomaly or problem.
func (w *workload) Check() checker.Result {
	w.t.Helper()
	res := checker.Check(w.History, checker.Options{
		Compacted:        map[string]bool{w.CompactTopic: w.CompactTopic != ""},
		MinLeaderChanges: 1,
		MaxExamples:      10,
	})
	groups := w.c.RaftGroups(w.Topics()...)
	w.leaderMu.Lock()
	problems := slices.Clone(w.problems)
	if more := w.problemCount - len(problems); more > 0 {
		problems = append(problems, fmt.Sprintf("... and %d more", more))
	}
	epochIssues := slices.Clone(w.epochIssues)
	counts := make(map[topicPartition]int)
	for _, ch := range w.changes {
		counts[topicPartition{ch.Topic, ch.Partition}]++
	}
	w.leaderMu.Unlock()
	var byPart []string
	for _, tp := range slices.SortedFunc(maps.Keys(counts), func(a, b topicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	}) {
		name := "log"
		if tp.Topic == w.CompactTopic {
			name = "compact"
		}
		byPart = append(byPart, fmt.Sprintf("%s/%d: %d", name, tp.Partition, counts[tp]))
	}
	w.t.Logf("workload: %d produce requests in doubt (retried after a lost response); leader changes by partition: %s",
		w.inDoubt.Load(), strings.Join(byPart, ", "))
	w.t.Logf("raft groups by partition: log %s; compact %s", w.groupList(groups, w.LogTopic), w.groupList(groups, w.CompactTopic))
	if res.Valid {
		w.t.Logf("checker: %s", res)
	} else {
		w.t.Errorf("checker found anomalies: %s", res)
	}
	for _, p := range problems {
		w.t.Errorf("cluster problem: %s", p)
	}
	for _, p := range epochIssues {
		w.t.Errorf("leader epoch anomaly: %s", p)
	}
	return res
}

// leads returns how many of the workload's partitions node id leads, as the
// watcher knows it.
func (w *workload) leads(id int32) int {
	w.pollLeaders(w.obsCtx)
	w.leaderMu.Lock()
	defer w.leaderMu.Unlock()
	n := 0
	for _, ls := range w.leaders {
		if ls.Leader == id {
			n++
		}
	}
	return n
}

// groupList names the raft group of each partition of topic, in partition
// order.
func (w *workload) groupList(groups map[topicPartition]uint32, topic string) string {
	if topic == "" {
		return "-"
	}
	var out []string
	for p := range w.cfg.Partitions {
		g, ok := groups[topicPartition{topic, p}]
		if !ok {
			out = append(out, fmt.Sprintf("%d:?", p))
			continue
		}
		out = append(out, fmt.Sprintf("%d:g%d", p, g))
	}
	return strings.Join(out, " ")
}
