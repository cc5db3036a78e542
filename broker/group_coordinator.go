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
// read of its live records, O(live keys)) as soon as the leader table names
// this node its leader, once per epoch, and its groups are dropped when this
// node stops leading it: the rule both coordinators share
// (partition_loader.go). The loop also watches the metadata: a
// topic deleted or re-created loses its committed offsets
// (dropDeletedTopicOffsets in group_offsets.go).
//
// Locks: coordinator.mu guards the group map (the loader its load state); group.mu
// guards one group. Order: coordinator.mu before group.mu. Neither is held
// across a Raft proposal or a partition read (docs/ARCHITECTURE.md): a
// group's writes take its write turn (group_writes.go), decide under group.mu,
// propose with no lock held and check again under group.mu when the write
// returns; a partition is read under its own load lock, and only the swap of
// its groups into the map takes coordinator.mu. One group's slow write or one
// partition's slow load therefore never delays another group's requests or
// the deadline loop.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

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
	// BacklogRefreshInterval is the most often the live backlog of every
	// group partition is counted again for the metrics and the status page
	// (in the background, when they ask; group_backlog.go).
	BacklogRefreshInterval time.Duration
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
		BacklogRefreshInterval:        10 * time.Second,
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
	case c.BacklogRefreshInterval <= 0:
		return fmt.Errorf("broker: Groups.BacklogRefreshInterval %s is not positive", c.BacklogRefreshInterval)
	}
	return nil
}

// Coordinator errors, mapped to Kafka codes by errorCode through kerr.
var (
	errNotCoordinator  = kerr.NotCoordinator
	errCoordinatorLoad = kerr.CoordinatorLoadInProgress
	errCoordinatorNA   = kerr.CoordinatorNotAvailable
)

// coordinatorHooks let tests stall the coordinator's I/O; nil funcs do nothing.
type coordinatorHooks struct {
	// beforeWrite runs before records of a consumer group are proposed; an
	// error fails the write instead.
	beforeWrite func(ctx context.Context, group string) error
	// beforeLoad runs before an offsets partition is read.
	beforeLoad func(ctx context.Context, partition int32)
}

// maxGroupIDBytes bounds group ids: the record keys store them with an int16
// length.
const maxGroupIDBytes = 1<<15 - 1

// coordinator owns every group this node coordinates.
type coordinator struct {
	b   *Broker
	cfg GroupConfig
	log *slog.Logger

	hooks coordinatorHooks
	// backlog caches the groups' live backlog (group_backlog.go).
	backlog *backlogCache

	mu     sync.Mutex
	groups map[string]*group
	// pruneDue asks the loop to drop the offsets of deleted topics
	// (dropDeletedTopicOffsets): set after a load.
	pruneDue atomic.Bool

	// loader keeps the load state of the __consumer_offsets partitions
	// (partition_loader.go).
	loader *partitionLoader

	// expiring is set while an offset expiry pass runs.
	expiring atomic.Bool

	kick chan struct{} // wakes the loop after a deadline moved earlier

	// coordinatorLife: the loop, startup creation, the loader's watch,
	// expiry passes and metadata flushes run through goFunc; close waits
	// for them.
	coordinatorLife
}

func newCoordinator(b *Broker, cfg GroupConfig) *coordinator {
	c := &coordinator{
		b:      b,
		cfg:    cfg,
		log:    b.log,
		groups: map[string]*group{},
		kick:   make(chan struct{}, 1),
	}
	c.init()
	c.loader = newPartitionLoader(b.node, b.log,
		&internalTopic{name: offsetsTopic, partitions: cfg.OffsetsTopicPartitions, what: "offsets topic"},
		c.stop, c.loadPartition, c.unloadPartition)
	if b.cfg.hooks != nil {
		c.hooks = *b.cfg.hooks
	}
	c.backlog = newBacklogCache(c, cfg.BacklogRefreshInterval)
	c.goFunc(c.run)
	return c
}

// close stops the loop and every other goroutine of the coordinator (their
// writes end with its context) and answers every waiting request; idempotent.
func (c *coordinator) close() {
	c.shutdown(func() {
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

// run is the coordinator's loop: the deadlines of every group and the
// periodic offset expiry, until close. Startup loading and expiry passes run
// on goroutines of their own, so neither a slow partition read nor a slow
// write ever holds up a deadline.
func (c *coordinator) run() {
	if err := c.b.node.WaitReady(c.ctx); err != nil {
		return
	}
	c.goFunc(c.createStartup)
	c.goFunc(func() { c.loader.watch(c.ctx) })

	// A topic deleted or re-created: its committed offsets go.
	changed := c.b.node.MetadataChanged()
	topics := c.b.node.TopicIDs()
	replaced := map[string]bool{}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nextExpiry := time.Now().Add(c.cfg.OffsetsRetentionCheckInterval)
	for {
		now := time.Now()
		if c.pruneDue.Swap(false) {
			c.dropDeletedTopicOffsets(replaced)
			clear(replaced)
		}
		next := c.sweep(now)
		if !now.Before(nextExpiry) {
			if c.expiring.CompareAndSwap(false, true) {
				if !c.goFunc(func() {
					defer c.expiring.Store(false)
					c.expireOffsets(now)
					c.dropDeletedTopicOffsets(nil)
				}) {
					c.expiring.Store(false)
				}
			}
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
		case <-changed:
			changed = c.b.node.MetadataChanged()
			cur := c.b.node.TopicIDs()
			if topicsGone(topics, cur, replaced) {
				c.pruneDue.Store(true)
			}
			topics = cur
		}
	}
}

// createStartup creates __consumer_offsets if configured to; the loader's
// watch loads the partitions this node leads (requests load theirs on demand
// anyway).
func (c *coordinator) createStartup() {
	if c.cfg.CreateOffsetsTopic {
		if _, err := c.offsetsTopicInfo(c.ctx, true); err != nil && c.ctx.Err() == nil {
			c.log.Warn("create offsets topic failed", logKeyTopic, offsetsTopic, logKeyError, err)
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
// and persisting a group that became Empty (in the background).
func (c *coordinator) completeJoin(g *group, now time.Time) {
	c.b.groupMetrics.rebalances.Inc()
	if g.completeJoin(now) {
		c.persistLater(g)
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
	return c.loader.info(ctx, create)
}

// route finds the offsets partition of a group and makes sure this node
// coordinates it and has loaded it (partitionLoader.route).
func (c *coordinator) route(ctx context.Context, groupID string) (raftfsm.TopicInfo, int32, error) {
	return c.loader.route(ctx, groupID)
}

// loadPartition reads an offsets partition and installs its groups; the
// loader calls it under the partition's load lock, with no coordinator lock
// held, so requests for other partitions' groups, and the deadline loop, go
// on meanwhile.
func (c *coordinator) loadPartition(pi raftfsm.PartitionInfo, epoch int32) error {
	groups, err := c.readPartition(pi.Partition, pi.Shard)
	if err != nil {
		return err
	}
	c.install(pi.Partition, groups)
	return nil
}

// unloadPartition drops the groups of an offsets partition this node no
// longer leads (Kafka's onResignation).
func (c *coordinator) unloadPartition(p int32) {
	c.install(p, nil)
}

// readPartition rebuilds the groups of one offsets partition from its live
// records, O(live keys). It takes no coordinator lock.
func (c *coordinator) readPartition(p int32, shard shardstore.ShardID) (map[string]*group, error) {
	if h := c.hooks.beforeLoad; h != nil {
		h(c.ctx, p)
	}
	start := time.Now()
	metas := map[string]*storedGroup{}
	offsets := map[string]map[topicPartition]committedOffset{}
	// Offsets staged by TxnOffsetCommit are not committed yet: left out,
	// remembered per producer (group_txn.go).
	staged, err := c.b.store.StagedOffsets(shard)
	if err != nil {
		return nil, err
	}
	txnOffsets := map[string]map[int64]map[topicPartition]bool{}
	var from int64
	records := 0
	for {
		recs, err := c.b.store.Read(shard, from, 4<<20, 0)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			r := &recs[i]
			if r.Marker != nil {
				continue // a transaction marker (AddOffsetsToTxn added the partition)
			}
			records++
			k, err := decodeGroupRecordKey(r.Key)
			if err != nil {
				c.log.Warn("skipping offsets record", logKeyPartition, p, "offset", r.Offset, logKeyError, err)
				continue
			}
			if pid, ok := staged[r.Offset]; ok {
				if k.typ == recordTypeOffset {
					addTxnOffset(txnOffsets, k.group, pid, topicPartition{k.topic, k.partition})
				}
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
	now := time.Now()
	groups := make(map[string]*group, len(metas))
	for name, sg := range metas {
		g := newGroup(name, p, now)
		g.restore(sg, now)
		groups[name] = g
	}
	for name, offs := range offsets {
		if len(offs) == 0 {
			continue
		}
		g := groups[name]
		if g == nil {
			g = newGroup(name, p, now)
			groups[name] = g
		}
		g.offsets = offs
	}
	for name, byPID := range txnOffsets {
		g := groups[name]
		if g == nil {
			g = newGroup(name, p, now)
			groups[name] = g
		}
		g.txnOffsets = byPID
	}
	c.log.Info("offsets partition loaded", logKeyPartition, p, "records", records,
		"groups", len(metas), "elapsed", time.Since(start).Round(time.Microsecond))
	return groups, nil
}

// install replaces the groups of partition p with groups (none to unload).
// The groups it replaces turn Dead (their waiting requests are answered
// NOT_COORDINATOR; a write of theirs still in flight applies to nothing).
func (c *coordinator) install(p int32, groups map[string]*group) {
	now := time.Now()
	c.mu.Lock()
	for name, g := range c.groups {
		if g.partition == p {
			g.mu.Lock()
			g.failWaiters(kerr.NotCoordinator.Code)
			g.transition(stateDead, now)
			g.mu.Unlock()
			delete(c.groups, name)
		}
	}
	for name, g := range groups {
		c.groups[name] = g
	}
	c.mu.Unlock()
	if groups == nil {
		return
	}
	c.pruneDue.Store(true) // topics may have gone while another node coordinated
	c.wake()
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
