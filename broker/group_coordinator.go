package broker

// The group coordinator: which node serves a group, the groups in memory, their
// records in __consumer_offsets, and the loop that runs their deadlines.
//
// A group belongs to the __consumer_offsets partition its id hashes to (Kafka's
// rule: abs(javaHashCode(id)) % partitions), and its coordinator is the leader
// of that partition's Raft group, so coordinators move with shard leadership
// once there are several nodes. Everything a restarted coordinator needs
// (committed offsets, each group's generation, members and assignments) is a
// record in that partition written through raftfsm.Node.Produce, compacted by
// key like any shard and deleted with tombstones. A partition is loaded (a
// read of its live records, O(live keys)) at startup and again whenever this
// node leads it in a new Raft term.
//
// Locks: coordinator.mu guards the group map and the load state; group.mu
// guards one group. Order: coordinator.mu before group.mu. Raft writes for a
// group happen under its group.mu, so a group's records reach the log in the
// order its state changed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// offsetsTopic is Kafka's internal topic for group offsets and metadata.
const offsetsTopic = "__consumer_offsets"

// Log attribute keys of the coordinator.
const (
	logKeyGroup  = "group"
	logKeyMember = "member"
)

// GroupConfig configures the group coordinator. Kafka's broker setting of the
// same meaning is named on each field.
type GroupConfig struct {
	// MinSessionTimeout and MaxSessionTimeout bound a member's session timeout
	// (group.min.session.timeout.ms 6 s, group.max.session.timeout.ms 30 min);
	// outside them JoinGroup answers INVALID_SESSION_TIMEOUT.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is how long the first rebalance of an empty group
	// waits for more members (group.initial.rebalance.delay.ms, 3 s); 0 none.
	InitialRebalanceDelay time.Duration
	// MaxSize is the most members a group may have (group.max.size).
	MaxSize int32
	// OffsetsRetention is how long offsets of a group without members are
	// kept (offsets.retention.minutes, 7 days), counted from the moment the
	// group became empty, or from each commit for groups that never had
	// members (Flink's memberless commits).
	OffsetsRetention time.Duration
	// OffsetsRetentionCheckInterval is how often expired offsets are removed
	// (offsets.retention.check.interval.ms, 10 min).
	OffsetsRetentionCheckInterval time.Duration
	// OffsetsTopicPartitions is the partition count of __consumer_offsets when
	// this broker creates it (offsets.topic.num.partitions). An existing
	// topic keeps its count: changing it would move every group.
	OffsetsTopicPartitions int32
	// CreateOffsetsTopic creates __consumer_offsets as soon as the node is
	// ready; otherwise it is created on the first group request (Kafka's
	// behaviour), which keeps it out of tests that list every topic.
	CreateOffsetsTopic bool
	// MaxLagSeries caps the per-group, per-partition series the lag
	// collector exports in one scrape (group names are chosen by users).
	MaxLagSeries int
}

// DefaultGroupConfig returns Kafka's defaults.
func DefaultGroupConfig() GroupConfig {
	return GroupConfig{
		MinSessionTimeout:             6 * time.Second,
		MaxSessionTimeout:             30 * time.Minute,
		InitialRebalanceDelay:         3 * time.Second,
		MaxSize:                       1<<31 - 1,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,
		OffsetsTopicPartitions:        50,
		MaxLagSeries:                  10000,
	}
}

// Bounds of GroupConfig fields, checked by Validate. cmd/shardcache checks its
// flags against the same constants. Durations that Kafka sends as int32
// milliseconds stop at MaxInt32 ms (24.8 days).
const (
	// MinGroupSessionTimeout bounds MinSessionTimeout from below;
	// MaxGroupSessionTimeout bounds MaxSessionTimeout from above.
	MinGroupSessionTimeout = time.Millisecond
	MaxGroupSessionTimeout = (1<<31 - 1) * time.Millisecond
	// MaxGroupInitialRebalanceDelay bounds InitialRebalanceDelay (from 0).
	MaxGroupInitialRebalanceDelay = (1<<31 - 1) * time.Millisecond
	// MinGroupMaxSize bounds MaxSize from below.
	MinGroupMaxSize = 1
	// MinOffsetsRetention bounds OffsetsRetention from below.
	MinOffsetsRetention = time.Millisecond
	// MinOffsetsTopicPartitions and MaxOffsetsTopicPartitions bound
	// OffsetsTopicPartitions.
	MinOffsetsTopicPartitions = 1
	MaxOffsetsTopicPartitions = 1000
)

// Validate checks the group settings, naming the first bad field.
func (c GroupConfig) Validate() error {
	switch {
	case c.MinSessionTimeout < MinGroupSessionTimeout:
		return fmt.Errorf("broker: Groups.MinSessionTimeout %s is below %s", c.MinSessionTimeout, MinGroupSessionTimeout)
	case c.MaxSessionTimeout < c.MinSessionTimeout:
		return fmt.Errorf("broker: Groups.MaxSessionTimeout %s is below MinSessionTimeout %s", c.MaxSessionTimeout, c.MinSessionTimeout)
	case c.MaxSessionTimeout > MaxGroupSessionTimeout:
		return fmt.Errorf("broker: Groups.MaxSessionTimeout %s is above %s", c.MaxSessionTimeout, MaxGroupSessionTimeout)
	case c.InitialRebalanceDelay < 0 || c.InitialRebalanceDelay > MaxGroupInitialRebalanceDelay:
		return fmt.Errorf("broker: Groups.InitialRebalanceDelay %s is not between 0 and %s", c.InitialRebalanceDelay, MaxGroupInitialRebalanceDelay)
	case c.MaxSize < MinGroupMaxSize:
		return fmt.Errorf("broker: Groups.MaxSize %d is below %d", c.MaxSize, MinGroupMaxSize)
	case c.OffsetsRetention < MinOffsetsRetention:
		return fmt.Errorf("broker: Groups.OffsetsRetention %s is below %s", c.OffsetsRetention, MinOffsetsRetention)
	case c.OffsetsRetentionCheckInterval <= 0:
		return fmt.Errorf("broker: Groups.OffsetsRetentionCheckInterval %s is not positive", c.OffsetsRetentionCheckInterval)
	case c.OffsetsTopicPartitions < MinOffsetsTopicPartitions || c.OffsetsTopicPartitions > MaxOffsetsTopicPartitions:
		return fmt.Errorf("broker: Groups.OffsetsTopicPartitions %d is not between %d and %d", c.OffsetsTopicPartitions, MinOffsetsTopicPartitions, MaxOffsetsTopicPartitions)
	case c.MaxLagSeries < 0:
		return fmt.Errorf("broker: Groups.MaxLagSeries %d is negative", c.MaxLagSeries)
	}
	return nil
}

// Coordinator errors, mapped to Kafka codes by errorCode through kerr.
var (
	errNotCoordinator  = kerr.NotCoordinator
	errCoordinatorLoad = kerr.CoordinatorLoadInProgress
	errCoordinatorNA   = kerr.CoordinatorNotAvailable
)

// maxGroupIDBytes bounds group ids: the record keys store them with an int16
// length.
const maxGroupIDBytes = 1<<15 - 1

// coordinator owns every group this node coordinates.
type coordinator struct {
	b   *Broker
	cfg GroupConfig
	log *slog.Logger

	mu     sync.Mutex
	groups map[string]*group
	// loaded maps an offsets partition to the Raft term it was loaded in.
	loaded map[int32]int32

	createMu sync.Mutex // serializes creating __consumer_offsets

	kick   chan struct{} // wakes the loop after a deadline moved earlier
	stop   chan struct{} // closed by close
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func newCoordinator(b *Broker, cfg GroupConfig) *coordinator {
	ctx, cancel := context.WithCancel(context.Background())
	c := &coordinator{
		b:      b,
		cfg:    cfg,
		log:    b.log,
		groups: map[string]*group{},
		loaded: map[int32]int32{},
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// close stops the loop and answers every waiting request; idempotent.
func (c *coordinator) close() {
	c.once.Do(func() {
		close(c.stop)
		c.cancel()
		c.wg.Wait()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, g := range c.groups {
			g.mu.Lock()
			g.failWaiters(kerr.NotCoordinator.Code)
			g.mu.Unlock()
		}
	})
}

// wake makes the loop recompute its next deadline.
func (c *coordinator) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run is the coordinator's one goroutine: startup loading, then the deadlines
// of every group and the periodic offset expiry, until close.
func (c *coordinator) run() {
	defer c.wg.Done()
	if err := c.b.node.WaitReady(c.ctx); err != nil {
		return
	}
	if c.cfg.CreateOffsetsTopic {
		if _, err := c.offsetsTopicInfo(c.ctx, true); err != nil && c.ctx.Err() == nil {
			c.log.Warn("create offsets topic failed", logKeyTopic, offsetsTopic, logKeyError, err)
		}
	}
	if ti, ok := c.b.node.Topic(offsetsTopic); ok {
		for _, p := range ti.Partitions {
			if _, err := c.ensureLoaded(ti, p.Partition); err != nil && c.ctx.Err() == nil {
				c.log.Debug("offsets partition not loaded", logKeyPartition, p.Partition, logKeyError, err)
			}
		}
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nextExpiry := time.Now().Add(c.cfg.OffsetsRetentionCheckInterval)
	for {
		now := time.Now()
		next := c.sweep(now)
		if !now.Before(nextExpiry) {
			c.expireOffsets(now)
			nextExpiry = now.Add(c.cfg.OffsetsRetentionCheckInterval)
		}
		if next.IsZero() || nextExpiry.Before(next) {
			next = nextExpiry
		}
		timer.Reset(max(time.Until(next), time.Millisecond))
		select {
		case <-c.stop:
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// snapshot lists the groups in memory.
func (c *coordinator) snapshot() []*group {
	c.mu.Lock()
	defer c.mu.Unlock()
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	return gs
}

// sweep applies every passed deadline and returns the earliest next one.
func (c *coordinator) sweep(now time.Time) time.Time {
	var next time.Time
	for _, g := range c.snapshot() {
		g.mu.Lock()
		if g.state != stateDead {
			c.tick(g, now)
			if t := g.nextDeadline(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		g.mu.Unlock()
	}
	return next
}

// completeJoin ends a group's join barrier (caller holds g.mu), counting it
// and persisting a group that became Empty.
func (c *coordinator) completeJoin(g *group, now time.Time) {
	c.b.groupMetrics.rebalances.Inc()
	if g.completeJoin(now) {
		c.persistGroup(g)
	}
}

// tick applies a group's passed deadlines (caller holds g.mu).
func (c *coordinator) tick(g *group, now time.Time) {
	g.tick(now, func() { c.completeJoin(g, now) })
}

// javaHashCode is Java's String.hashCode over the id's UTF-16 code units, so
// a group lands on the partition Kafka would choose.
func javaHashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// partitionFor is the __consumer_offsets partition of a group.
func partitionFor(group string, partitions int) int32 {
	return int32(int(javaHashCode(group)&0x7fffffff) % partitions)
}

// offsetsTopicInfo returns __consumer_offsets, creating it (compacted) when
// create is set and it does not exist.
func (c *coordinator) offsetsTopicInfo(ctx context.Context, create bool) (raftfsm.TopicInfo, error) {
	if ti, ok := c.b.node.Topic(offsetsTopic); ok {
		return ti, nil
	}
	if !create {
		return raftfsm.TopicInfo{}, errCoordinatorNA
	}
	c.createMu.Lock()
	defer c.createMu.Unlock()
	if ti, ok := c.b.node.Topic(offsetsTopic); ok {
		return ti, nil
	}
	ti, err := c.b.node.CreateTopic(ctx, offsetsTopic, c.cfg.OffsetsTopicPartitions,
		map[string]string{topicconfig.CleanupPolicy: "compact"}, false)
	if errors.Is(err, raftfsm.ErrTopicExists) {
		if ti, ok := c.b.node.Topic(offsetsTopic); ok {
			return ti, nil
		}
	}
	if err != nil {
		return raftfsm.TopicInfo{}, err
	}
	c.log.Info("offsets topic created", logKeyTopic, offsetsTopic, "partitions", c.cfg.OffsetsTopicPartitions)
	return ti, nil
}

// route finds the offsets partition of a group and makes sure this node
// coordinates it and has loaded it. Errors: NOT_COORDINATOR (another node
// leads the partition), COORDINATOR_NOT_AVAILABLE (no topic yet, shutting
// down), COORDINATOR_LOAD_IN_PROGRESS.
func (c *coordinator) route(ctx context.Context, groupID string) (raftfsm.TopicInfo, int32, error) {
	select {
	case <-c.stop:
		return raftfsm.TopicInfo{}, 0, errNotCoordinator
	default:
	}
	if !c.b.node.Ready() {
		return raftfsm.TopicInfo{}, 0, errCoordinatorLoad
	}
	ti, err := c.offsetsTopicInfo(ctx, true)
	if err != nil {
		if errors.Is(err, raftfsm.ErrNotReady) || errors.Is(err, raftfsm.ErrNotLeader) {
			return ti, 0, errCoordinatorNA
		}
		return ti, 0, err
	}
	p := partitionFor(groupID, len(ti.Partitions))
	if _, err := c.ensureLoaded(ti, p); err != nil {
		return ti, p, err
	}
	return ti, p, nil
}

// ensureLoaded loads an offsets partition if this node leads it and has not
// loaded it in the current term.
func (c *coordinator) ensureLoaded(ti raftfsm.TopicInfo, p int32) (int32, error) {
	pi := ti.Partitions[p]
	if !c.b.node.IsLeader(pi.Group) {
		return 0, errNotCoordinator
	}
	epoch := c.b.node.LeaderEpoch(pi.Group)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.loaded[p]; ok && e == epoch {
		return epoch, nil
	}
	if err := c.loadLocked(p, pi.Shard); err != nil {
		c.log.Error("load offsets partition failed", logKeyPartition, p, logKeyError, err)
		return 0, errCoordinatorLoad
	}
	c.loaded[p] = epoch
	return epoch, nil
}

// loadLocked rebuilds the groups of one offsets partition from its live
// records; groups of that partition already in memory are dropped (their
// waiting requests answered NOT_COORDINATOR). Caller holds c.mu.
func (c *coordinator) loadLocked(p int32, shard shardstore.ShardID) error {
	start := time.Now()
	metas := map[string]*storedGroup{}
	offsets := map[string]map[topicPartition]committedOffset{}
	var from int64
	records := 0
	for {
		recs, err := c.b.store.Read(shard, from, 4<<20, 0)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			r := &recs[i]
			records++
			k, err := decodeGroupRecordKey(r.Key)
			if err != nil {
				c.log.Warn("skipping offsets record", logKeyPartition, p, "offset", r.Offset, logKeyError, err)
				continue
			}
			switch k.typ {
			case recordTypeGroup:
				if r.Value == nil {
					delete(metas, k.group)
					continue
				}
				sg, err := decodeStoredGroup(r.Value)
				if err != nil {
					c.log.Warn("skipping offsets record", logKeyPartition, p, "offset", r.Offset, logKeyError, err)
					continue
				}
				metas[k.group] = sg
			case recordTypeOffset:
				tp := topicPartition{k.topic, k.partition}
				if r.Value == nil {
					delete(offsets[k.group], tp)
					continue
				}
				o, err := decodeCommittedOffset(r.Value)
				if err != nil {
					c.log.Warn("skipping offsets record", logKeyPartition, p, "offset", r.Offset, logKeyError, err)
					continue
				}
				if offsets[k.group] == nil {
					offsets[k.group] = map[topicPartition]committedOffset{}
				}
				offsets[k.group][tp] = o
			}
		}
		from = recs[len(recs)-1].Offset + 1
	}
	for name, g := range c.groups {
		if g.partition == p {
			g.mu.Lock()
			g.failWaiters(kerr.NotCoordinator.Code)
			g.transition(stateDead, start)
			g.mu.Unlock()
			delete(c.groups, name)
		}
	}
	now := time.Now()
	for name, sg := range metas {
		g := newGroup(name, p, now)
		g.restore(sg, now)
		c.groups[name] = g
	}
	for name, offs := range offsets {
		if len(offs) == 0 {
			continue
		}
		g := c.groups[name]
		if g == nil {
			g = newGroup(name, p, now)
			c.groups[name] = g
		}
		g.offsets = offs
	}
	c.log.Info("offsets partition loaded", logKeyPartition, p, "records", records,
		"groups", len(metas), "elapsed", time.Since(start).Round(time.Microsecond))
	c.wake()
	return nil
}

// lookup returns a group, creating an Empty one when create is set; nil when
// it does not exist.
func (c *coordinator) lookup(name string, p int32, create bool) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	if g == nil && create {
		g = newGroup(name, p, time.Now())
		c.groups[name] = g
	}
	return g
}

// forget removes a group from the map if it is still the one in it.
func (c *coordinator) forget(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups[g.name] == g {
		delete(c.groups, g.name)
	}
}

// write appends records to an offsets partition through Raft and waits until
// they are applied.
func (c *coordinator) write(ctx context.Context, p int32, recs []shardstore.Record) error {
	if ctx == nil {
		ctx = c.ctx
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := time.Now().UnixMilli()
	for i := range recs {
		recs[i].Timestamp = now
	}
	_, err := c.b.node.Produce(ctx, offsetsTopic, p, shardstore.NoProducer, recs)
	return err
}

// persistGroup writes the group's metadata record (caller holds g.mu). A
// failure is logged: the state in memory stays right, and the next change
// writes the record again.
func (c *coordinator) persistGroup(g *group) {
	rec := shardstore.Record{Key: groupKey(g.name), Value: g.stored().encode()}
	if err := c.write(c.ctx, g.partition, []shardstore.Record{rec}); err != nil && c.ctx.Err() == nil {
		c.log.Warn("write group metadata failed", logKeyGroup, g.name, logKeyError, err)
	}
}

// expireOffsets removes offsets past their retention and then groups left
// Empty with no offsets (Kafka's offset expiry and group cleanup).
func (c *coordinator) expireOffsets(now time.Time) {
	retention := c.cfg.OffsetsRetention
	for _, g := range c.snapshot() {
		g.mu.Lock()
		if g.state != stateEmpty {
			g.mu.Unlock()
			continue
		}
		var recs []shardstore.Record
		var expired []topicPartition
		for tp, o := range g.offsets {
			var due bool
			switch {
			case o.ExpireMs >= 0:
				due = now.UnixMilli() >= o.ExpireMs
			case g.protocolType != "":
				// A group that had members: retention counts from the moment
				// it became empty (KIP-211).
				due = now.Sub(g.stateTime) >= retention
			default:
				due = now.Sub(time.UnixMilli(o.CommitMs)) >= retention
			}
			if due {
				expired = append(expired, tp)
				recs = append(recs, shardstore.Record{Key: offsetKey(g.name, tp.topic, tp.partition)})
			}
		}
		dead := len(g.offsets) == len(expired)
		if dead {
			recs = append(recs, shardstore.Record{Key: groupKey(g.name)})
		}
		if len(recs) > 0 {
			if err := c.write(c.ctx, g.partition, recs); err != nil {
				if c.ctx.Err() == nil {
					c.log.Warn("expire offsets failed", logKeyGroup, g.name, logKeyError, err)
				}
				g.mu.Unlock()
				continue
			}
		}
		for _, tp := range expired {
			delete(g.offsets, tp)
		}
		if len(expired) > 0 {
			c.log.Info("offsets expired", logKeyGroup, g.name, "partitions", len(expired))
		}
		if dead {
			g.transition(stateDead, now)
		}
		g.mu.Unlock()
		if dead {
			c.forget(g)
		}
	}
}

// awaitResult returns res when ch is nil (the request was answered at once),
// else the result later sent on ch, or gone when ctx ends or the broker closes
// first: JoinGroup and SyncGroup wait so for the rest of the group.
func awaitResult[R any](ctx context.Context, closing <-chan struct{}, res R, ch <-chan R, gone R) R {
	if ch == nil {
		return res
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return gone
	case <-closing:
		return gone
	}
}
