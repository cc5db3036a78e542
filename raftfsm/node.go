package raftfsm

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// TopicInfo is a topic as cluster metadata knows it. Values returned by Node are
// copies owned by the caller.
type TopicInfo struct {
	Name string
	// ID is the Kafka topic id (a random UUID, never zero).
	ID         [16]byte
	Partitions []PartitionInfo // index = partition number
	// Overrides are the topic's own configs, as set by CreateTopics or
	// IncrementalAlterConfigs; Config is them resolved over the defaults.
	Overrides map[string]string
	Config    topicconfig.Config
}

// PartitionInfo places one partition.
type PartitionInfo struct {
	Partition int32
	Shard     shardstore.ShardID
	// Group is the Raft group that carries the shard: 1..DataGroups (group 0 is
	// cluster metadata).
	Group uint32
}

// Errors returned by Node; the broker maps them to Kafka codes in broker/errors.go.
var (
	ErrUnknownTopic      = errors.New("raftfsm: unknown topic")
	ErrUnknownPartition  = errors.New("raftfsm: unknown partition")
	ErrTopicExists       = errors.New("raftfsm: topic exists")
	ErrInvalidTopic      = errors.New("raftfsm: invalid topic name")
	ErrInvalidPartitions = errors.New("raftfsm: invalid partition count")
	// ErrNotLeader: this node does not lead the group; the client should refresh
	// metadata and retry.
	ErrNotLeader = errors.New("raftfsm: not the leader")
	// ErrNotReady: the group has no leader yet or is still replaying its log.
	ErrNotReady = errors.New("raftfsm: not ready")
	// ErrClosed: the node is shutting down.
	ErrClosed = errors.New("raftfsm: closed")
)

// metaGroup is the id of the cluster metadata group; data groups are 1..N.
const metaGroup uint32 = 0

// Raft tuning that is not in Config.
const (
	maxAppendEntries = 512
	// trailingLogs is kept after a snapshot for followers that lag; entries are
	// at most about 1 MiB (one produce batch), usually far less.
	trailingLogs     = 1024
	snapshotInterval = 30 * time.Second
	snapshotsRetain  = 2
	// defaultApplyTimeout bounds a proposal's wait for room in Raft's queue when
	// ctx has no deadline.
	defaultApplyTimeout = 10 * time.Second
	// producerIDBlock is how many producer ids one metadata command reserves.
	producerIDBlock = 1000
)

// group is one Raft group of the node.
type group struct {
	id     uint32
	raft   *raft.Raft
	fsm    *fsm
	logs   *LogStore
	trans  *raft.InmemTransport
	notify chan bool
	// ready: this node leads the group and a Barrier applied in this term, so
	// the whole log is applied.
	ready atomic.Bool
}

// Node runs this node's Raft groups (one for cluster metadata, a pool for
// partitions) over one shard store.
type Node struct {
	cfg     Config
	log     *slog.Logger
	store   *shardstore.Store
	metrics *metrics
	proc    *processor
	groups  []*group // index = group id; 0 is metadata

	metaMu sync.RWMutex
	meta   *metadata

	// propMu serializes metadata proposals that allocate shard ids, and the
	// reconcile.
	propMu sync.Mutex

	pidMu           sync.Mutex
	pidNext, pidEnd int64

	stateMu sync.Mutex
	stateCh chan struct{} // closed and replaced on every readiness change

	initDone   atomic.Bool
	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
	shutdownCh chan struct{}
	wg         sync.WaitGroup
}

// Open starts the node's Raft groups, bootstrapping a one-voter cluster on first
// start. It returns before the groups are ready; see WaitReady.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger.With(keyNodeID, cfg.NodeID),
		store:      cfg.Store,
		metrics:    m,
		stateCh:    make(chan struct{}),
		shutdownCh: make(chan struct{}),
	}
	n.proc = &processor{resolve: n.resolve}
	if n.meta, err = loadMetadata(cfg.Store.DB(), n.resolve); err != nil {
		return nil, err
	}
	// Placement outlives configuration: keep every group a topic is placed on.
	groups := uint32(cfg.DataGroups)
	for _, t := range n.meta.topics {
		for _, p := range t.Partitions {
			groups = max(groups, p.Group)
		}
	}
	for id := uint32(0); id <= groups; id++ {
		g, err := n.openGroup(id)
		if err != nil {
			n.shutdownGroups()
			return nil, fmt.Errorf("raftfsm: open group %d: %w", id, err)
		}
		n.groups = append(n.groups, g)
	}
	for _, g := range n.groups {
		n.wg.Add(1)
		go n.watchLeadership(g)
	}
	n.wg.Add(1)
	go n.initCluster()
	return n, nil
}

// resolve turns overrides into a config; overrides were validated before they
// were proposed, so an error here can only come from changed broker defaults.
func (n *Node) resolve(overrides map[string]string) topicconfig.Config {
	c, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults)
	if err != nil {
		n.log.Warn("topic config does not resolve, using defaults", keyError, err)
		c, _ = topicconfig.Resolve(nil, nil)
	}
	return c
}

func (n *Node) openGroup(id uint32) (*group, error) {
	g := &group{id: id, notify: make(chan bool, 16)}
	var err error
	if g.logs, err = NewLogStore(n.store.DB(), id); err != nil {
		return nil, err
	}
	if g.fsm, err = newFSM(id, n.store, n.proc, n.log, n.metrics); err != nil {
		return nil, err
	}
	if id == metaGroup {
		g.fsm.getMeta = n.metadata
		g.fsm.setMeta = n.publishMeta
	}
	hl := newHclog(n.log.With(keyGroup, id), "raft")
	snaps, err := openSnapshotStore(filepath.Join(n.cfg.Dir, "group-"+strconv.FormatUint(uint64(id), 10)), g.fsm, n.cfg.SnapshotRateBytes, hl)
	if err != nil {
		return nil, err
	}
	addr := raft.ServerAddress(fmt.Sprintf("node-%d/group-%d", n.cfg.NodeID, id))
	_, g.trans = raft.NewInmemTransport(addr)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(strconv.FormatInt(int64(n.cfg.NodeID), 10))
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = snapshotInterval
	rc.TrailingLogs = trailingLogs
	rc.MaxAppendEntries = maxAppendEntries
	rc.BatchApplyCh = true
	rc.NoSnapshotRestoreOnStart = true
	rc.NoLegacyTelemetry = true
	rc.NotifyCh = g.notify
	rc.Logger = hl

	exists, err := raft.HasExistingState(g.logs, g.logs, snaps)
	if err != nil {
		return nil, err
	}
	if !exists {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(rc, g.logs, g.logs, snaps, g.trans, boot); err != nil {
			return nil, err
		}
	}
	if g.raft, err = raft.NewRaft(rc, g.fsm, g.logs, g.logs, snaps, g.trans); err != nil {
		return nil, err
	}
	return g, nil
}

// metadata returns the published metadata; callers must not modify it.
func (n *Node) metadata() *metadata {
	n.metaMu.RLock()
	defer n.metaMu.RUnlock()
	return n.meta
}

func (n *Node) publishMeta(m *metadata) {
	n.metaMu.Lock()
	n.meta = m
	n.metaMu.Unlock()
}

// changed wakes everyone waiting for a readiness change.
func (n *Node) changed() {
	n.stateMu.Lock()
	close(n.stateCh)
	n.stateCh = make(chan struct{})
	n.stateMu.Unlock()
}

func (n *Node) stateChan() <-chan struct{} {
	n.stateMu.Lock()
	defer n.stateMu.Unlock()
	return n.stateCh
}

// watchLeadership follows one group's leadership: on winning it applies a
// Barrier (so the log is replayed) before marking the group ready.
func (n *Node) watchLeadership(g *group) {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case leader := <-g.notify:
			n.metrics.setLeader(g.id, leader)
			g.ready.Store(false)
			n.changed()
			if !leader {
				continue
			}
			n.log.Info("leading raft group", keyGroup, g.id, keyTerm, g.raft.CurrentTerm())
			for g.raft.State() == raft.Leader && len(g.notify) == 0 {
				err := g.raft.Barrier(n.cfg.ElectionTimeout * 10).Error()
				if err == nil {
					g.ready.Store(g.raft.State() == raft.Leader)
					n.changed()
					break
				}
				if errors.Is(err, raft.ErrRaftShutdown) {
					return
				}
				n.log.Warn("raft barrier failed", keyGroup, g.id, keyError, err)
			}
		}
	}
}

func (n *Node) groupsReady() bool {
	for _, g := range n.groups {
		if !g.ready.Load() || g.fsm.stopped.Load() {
			return false
		}
	}
	return true
}

// initCluster waits for every group, then picks the cluster id on first start
// and reconciles shards with metadata, and marks the node ready.
func (n *Node) initCluster() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.shutdownCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		ch := n.stateChan()
		if n.groupsReady() {
			err := n.ensureClusterID(ctx)
			if err == nil {
				err = n.reconcile(ctx)
			}
			if err == nil {
				n.initDone.Store(true)
				n.changed()
				n.log.Info("raft node ready", keyCount, len(n.groups))
				return
			}
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("raft node initialization failed, retrying", keyError, err)
		}
		select {
		case <-ch:
		case <-n.shutdownCh:
			return
		}
	}
}

func (n *Node) ensureClusterID(ctx context.Context) error {
	if n.metadata().clusterID != "" {
		return nil
	}
	var u [16]byte
	rand.Read(u[:])
	_, err := n.propose(ctx, n.groups[metaGroup], &Command{Type: CmdSetClusterID, ClusterID: base64.RawURLEncoding.EncodeToString(u[:])})
	return err
}

// reconcile heals a crash between a topic's metadata command and its shard
// commands: shards that metadata places but the store lacks are created, and
// shards the store has but no topic owns are deleted.
func (n *Node) reconcile(ctx context.Context) error {
	n.propMu.Lock()
	defer n.propMu.Unlock()
	want := n.metadata().shardGroups()
	have := map[shardstore.ShardID]bool{}
	for _, s := range n.store.Shards() {
		have[s] = true
	}
	create := map[uint32][]shardstore.ShardID{}
	del := map[uint32][]shardstore.ShardID{}
	for s, g := range want {
		if !have[s] {
			create[g] = append(create[g], s)
		}
	}
	for s := range have {
		if _, ok := want[s]; !ok {
			g := n.placeShard(s)
			del[g] = append(del[g], s)
		}
	}
	for g, ss := range create {
		n.log.Info("creating missing shards", keyGroup, g, keyCount, len(ss))
		if err := n.proposeShards(ctx, CmdCreateShards, map[uint32][]shardstore.ShardID{g: ss}); err != nil {
			return err
		}
	}
	for g, ss := range del {
		n.log.Info("deleting orphan shards", keyGroup, g, keyCount, len(ss))
		if err := n.proposeShards(ctx, CmdDeleteShards, map[uint32][]shardstore.ShardID{g: ss}); err != nil {
			return err
		}
	}
	return nil
}

// placeShard picks the data group of a new shard.
func (n *Node) placeShard(s shardstore.ShardID) uint32 {
	return 1 + uint32(uint64(s)%uint64(n.cfg.DataGroups))
}

// WaitReady blocks until every group has a leader and has applied its whole log.
func (n *Node) WaitReady(ctx context.Context) error {
	for {
		ch := n.stateChan()
		if n.closed.Load() {
			return ErrClosed
		}
		if n.Ready() {
			return nil
		}
		select {
		case <-ch:
		case <-n.shutdownCh:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready reports whether WaitReady would return at once.
func (n *Node) Ready() bool {
	return !n.closed.Load() && n.initDone.Load() && n.groupsReady()
}

// Close hands off leadership where it can, shuts every group down and waits for
// them. It does not close the Store. Idempotent.
//
// With one voter per group there is nobody to hand leadership to.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		close(n.shutdownCh)
		n.closeErr = n.shutdownGroups()
		n.wg.Wait()
		n.changed()
	})
	return n.closeErr
}

func (n *Node) shutdownGroups() error {
	var errs []error
	for _, g := range n.groups {
		if err := g.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("group %d: %w", g.id, err))
		}
		g.trans.Close()
		n.metrics.setLeader(g.id, false)
	}
	return errors.Join(errs...)
}

// NodeID is this node's id.
func (n *Node) NodeID() int32 { return n.cfg.NodeID }

// ClusterID is the cluster's id as Kafka shows it (22 characters of URL-safe
// base64 of a random UUID), chosen when the cluster is bootstrapped and kept in
// cluster metadata.
func (n *Node) ClusterID() string { return n.metadata().clusterID }

// Topics lists every topic, sorted by name.
func (n *Node) Topics() []TopicInfo {
	ts := n.metadata().sortedTopics()
	out := make([]TopicInfo, len(ts))
	for i, t := range ts {
		out[i] = t.info()
	}
	return out
}

// Topic returns one topic by name.
func (n *Node) Topic(name string) (TopicInfo, bool) {
	t, ok := n.metadata().topics[name]
	if !ok {
		return TopicInfo{}, false
	}
	return t.info(), true
}

// TopicByID returns one topic by id.
func (n *Node) TopicByID(id [16]byte) (TopicInfo, bool) {
	t, ok := n.metadata().byID[id]
	if !ok {
		return TopicInfo{}, false
	}
	return t.info(), true
}

// checkReady returns ErrClosed or ErrNotReady when client operations must wait.
func (n *Node) checkReady() error {
	if n.closed.Load() {
		return ErrClosed
	}
	if !n.initDone.Load() {
		return ErrNotReady
	}
	return nil
}

// propose applies c through group g and returns the FSM's response, or its
// error.
func (n *Node) propose(ctx context.Context, g *group, c *Command) (any, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if g.raft.State() != raft.Leader {
		if addr, _ := g.raft.LeaderWithID(); addr == "" {
			return nil, ErrNotReady
		}
		return nil, ErrNotLeader
	}
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, ctx.Err()
		}
	}
	f := g.raft.Apply(EncodeCommand(nil, c), timeout)
	if ctx.Done() != nil {
		done := make(chan struct{})
		go func() {
			f.Error()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := f.Error(); err != nil {
		return nil, n.raftError(ctx, err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

// raftError maps hashicorp/raft errors to this package's sentinels.
func (n *Node) raftError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return err
}

// proposeShards proposes one shard command per group.
func (n *Node) proposeShards(ctx context.Context, typ CommandType, byGroup map[uint32][]shardstore.ShardID) error {
	for g, ss := range byGroup {
		if int(g) >= len(n.groups) || g == metaGroup {
			return fmt.Errorf("raftfsm: shard placed on unknown group %d", g)
		}
		if _, err := n.propose(ctx, n.groups[g], &Command{Type: typ, Shards: ss}); err != nil {
			return err
		}
	}
	return nil
}

func shardsByGroup(ps []PartitionInfo) map[uint32][]shardstore.ShardID {
	out := map[uint32][]shardstore.ShardID{}
	for _, p := range ps {
		out[p.Group] = append(out[p.Group], p.Shard)
	}
	return out
}

// newPartitions places count new partitions numbered from first on fresh shards.
func (n *Node) newPartitions(first, count int32) []PartitionInfo {
	next := n.metadata().nextShard
	ps := make([]PartitionInfo, count)
	for i := range ps {
		s := shardstore.ShardID(next + uint64(i))
		ps[i] = PartitionInfo{Partition: first + int32(i), Shard: s, Group: n.placeShard(s)}
	}
	return ps
}

func newTopicID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) {
		rand.Read(id[:])
		id[6] = id[6]&0x0f | 0x40 // version 4
		id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	}
	return id
}

// CreateTopic creates a topic and its shards and returns once both are applied.
// Errors: ErrTopicExists, ErrInvalidTopic, ErrInvalidPartitions (count < 1 or too
// many), topicconfig.ErrUnknown / ErrInvalid. validateOnly checks without creating.
func (n *Node) CreateTopic(ctx context.Context, name string, partitions int32, overrides map[string]string, validateOnly bool) (TopicInfo, error) {
	if err := n.checkReady(); err != nil {
		return TopicInfo{}, err
	}
	if !validTopicName(name) {
		return TopicInfo{}, fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if partitions < 1 || partitions > maxPartitions {
		return TopicInfo{}, fmt.Errorf("%w: %d (1 to %d)", ErrInvalidPartitions, partitions, maxPartitions)
	}
	cfg, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults)
	if err != nil {
		return TopicInfo{}, err
	}
	n.propMu.Lock()
	defer n.propMu.Unlock()
	if _, ok := n.metadata().topics[name]; ok {
		return TopicInfo{}, ErrTopicExists
	}
	t := &topicMeta{Name: name, ID: newTopicID(), Partitions: n.newPartitions(0, partitions), config: cfg}
	if len(overrides) > 0 {
		t.Overrides = make(map[string]string, len(overrides))
		for k, v := range overrides {
			t.Overrides[k] = v
		}
	}
	if validateOnly {
		return t.info(), nil
	}
	resp, err := n.propose(ctx, n.groups[metaGroup], &Command{Type: CmdCreateTopic, Topic: *t})
	if err != nil {
		return TopicInfo{}, err
	}
	created := resp.(*topicMeta)
	if err := n.proposeShards(ctx, CmdCreateShards, shardsByGroup(created.Partitions)); err != nil {
		return TopicInfo{}, err
	}
	n.log.Info("topic created", keyTopic, name, keyCount, partitions)
	return created.info(), nil
}

// DeleteTopic removes a topic and its shards (ErrUnknownTopic).
func (n *Node) DeleteTopic(ctx context.Context, name string) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	n.propMu.Lock()
	defer n.propMu.Unlock()
	t, ok := n.metadata().topics[name]
	if !ok {
		return ErrUnknownTopic
	}
	if _, err := n.propose(ctx, n.groups[metaGroup], &Command{Type: CmdDeleteTopic, Topic: topicMeta{Name: name}}); err != nil {
		return err
	}
	if err := n.proposeShards(ctx, CmdDeleteShards, shardsByGroup(t.Partitions)); err != nil {
		return err
	}
	n.log.Info("topic deleted", keyTopic, name)
	return nil
}

// CreatePartitions grows a topic to count partitions (ErrInvalidPartitions when
// count is not larger than the current count).
func (n *Node) CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	n.propMu.Lock()
	defer n.propMu.Unlock()
	t, ok := n.metadata().topics[name]
	if !ok {
		return ErrUnknownTopic
	}
	cur := int32(len(t.Partitions))
	if count <= cur || count > maxPartitions {
		return fmt.Errorf("%w: %d (topic has %d, limit %d)", ErrInvalidPartitions, count, cur, maxPartitions)
	}
	if validateOnly {
		return nil
	}
	ps := n.newPartitions(cur, count-cur)
	if _, err := n.propose(ctx, n.groups[metaGroup], &Command{Type: CmdCreatePartitions, Topic: topicMeta{Name: name, Partitions: ps}}); err != nil {
		return err
	}
	return n.proposeShards(ctx, CmdCreateShards, shardsByGroup(ps))
}

// SetTopicConfig replaces a topic's overrides with overrides (validated first).
func (n *Node) SetTopicConfig(ctx context.Context, name string, overrides map[string]string, validateOnly bool) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if _, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults); err != nil {
		return err
	}
	if _, ok := n.metadata().topics[name]; !ok {
		return ErrUnknownTopic
	}
	if validateOnly {
		return nil
	}
	_, err := n.propose(ctx, n.groups[metaGroup], &Command{Type: CmdSetTopicConfig, Topic: topicMeta{Name: name, Overrides: overrides}})
	return err
}

// partition finds a partition's topic and placement.
func (n *Node) partition(topic string, partition int32) (*topicMeta, PartitionInfo, error) {
	t, ok := n.metadata().topics[topic]
	if !ok {
		return nil, PartitionInfo{}, ErrUnknownTopic
	}
	if partition < 0 || int(partition) >= len(t.Partitions) {
		return nil, PartitionInfo{}, ErrUnknownPartition
	}
	p := t.Partitions[partition]
	if int(p.Group) >= len(n.groups) || p.Group == metaGroup {
		return nil, PartitionInfo{}, fmt.Errorf("raftfsm: partition placed on unknown group %d", p.Group)
	}
	return t, p, nil
}

// Produce appends one batch to a partition through its Raft group and returns the
// result once the entry is committed and applied. Errors: ErrUnknownTopic,
// ErrUnknownPartition, ErrNotLeader, ErrNotReady, ErrClosed, ctx errors, and the
// shardstore append errors (ErrKeyRequired, ErrOutOfOrderSequence, ...).
func (n *Node) Produce(ctx context.Context, topic string, partition int32, p shardstore.Producer, recs []shardstore.Record) (shardstore.AppendResult, error) {
	if err := n.checkReady(); err != nil {
		return shardstore.AppendResult{}, err
	}
	t, part, err := n.partition(topic, partition)
	if err != nil {
		return shardstore.AppendResult{}, err
	}
	c := &Command{
		Type:  CmdProduce,
		Shard: part.Shard,
		Options: shardstore.AppendOptions{
			Policy:             t.config.CleanupPolicy,
			AppendTimeMs:       n.cfg.Now().UnixMilli(),
			MinCompactionLagMs: t.config.MinCompactionLagMs,
		},
		Producer: p,
		Records:  recs,
	}
	resp, err := n.propose(ctx, n.groups[part.Group], c)
	if err != nil {
		return shardstore.AppendResult{}, err
	}
	res, ok := resp.(shardstore.AppendResult)
	if !ok {
		return shardstore.AppendResult{}, fmt.Errorf("raftfsm: produce applied with response %T", resp)
	}
	return res, nil
}

// InitProducerID allocates a fresh producer id (epoch 0) for an idempotent
// producer. Ids are unique across restarts: they come from blocks reserved
// through the metadata group, and a restart never reuses a reserved block.
func (n *Node) InitProducerID(ctx context.Context) (id int64, epoch int16, err error) {
	if err := n.checkReady(); err != nil {
		return 0, 0, err
	}
	n.pidMu.Lock()
	defer n.pidMu.Unlock()
	if n.pidNext >= n.pidEnd {
		resp, err := n.propose(ctx, n.groups[metaGroup], &Command{Type: CmdAllocateProducerIDs, Count: producerIDBlock})
		if err != nil {
			return 0, 0, err
		}
		start := resp.(int64)
		n.pidNext, n.pidEnd = start, start+producerIDBlock
	}
	id = n.pidNext
	n.pidNext++
	return id, 0, nil
}

// LeaderEpoch is the Kafka leader epoch of a group's partitions: its Raft term.
func (n *Node) LeaderEpoch(group uint32) int32 {
	if int(group) >= len(n.groups) {
		return -1
	}
	return int32(n.groups[group].raft.CurrentTerm())
}

// IsLeader reports whether this node leads the group.
func (n *Node) IsLeader(group uint32) bool {
	if int(group) >= len(n.groups) {
		return false
	}
	return n.groups[group].raft.State() == raft.Leader
}

// ExpireTombstones, ExpireSuperseded and DeleteRecordsBefore propose the matching
// shardstore.Batch operation for a partition through its Raft group, so every
// replica applies it at the same log position. The compaction loop calls them.
func (n *Node) ExpireTombstones(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireTombstones, BeforeMs: beforeMs})
}

// ExpireSuperseded: see ExpireTombstones.
func (n *Node) ExpireSuperseded(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireSuperseded, BeforeMs: beforeMs})
}

// DeleteRecordsBefore: see ExpireTombstones.
func (n *Node) DeleteRecordsBefore(ctx context.Context, topic string, partition int32, offset int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdDeleteRecordsBefore, Offset: offset})
}

func (n *Node) shardCommand(ctx context.Context, topic string, partition int32, c *Command) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	_, part, err := n.partition(topic, partition)
	if err != nil {
		return err
	}
	c.Shard = part.Shard
	_, err = n.propose(ctx, n.groups[part.Group], c)
	return err
}
