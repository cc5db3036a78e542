package raftfsm

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
	ID [16]byte
	// Partitions and Overrides are shared with the node's metadata and read
	// only: a caller must not modify them (Node.Topic would otherwise copy
	// every partition on every produce and fetch).
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
	// ErrUnknownNode: no registered node has that id.
	ErrUnknownNode = errors.New("raftfsm: unknown node")
	// ErrNodeRemoved: the node id belongs to a node removed from the cluster.
	ErrNodeRemoved = errors.New("raftfsm: node removed")
	// ErrAddrInUse: another registered node has that cluster address.
	ErrAddrInUse = errors.New("raftfsm: cluster address in use")
	// ErrBadRequest: a cluster operation that cannot be done as asked.
	ErrBadRequest = errors.New("raftfsm: bad request")
	// ErrIdentity: the data dir belongs to another node id or cluster.
	ErrIdentity = errors.New("raftfsm: identity mismatch")
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
	// shardCommandTimeout bounds the forwarding of a topic's shard commands to
	// the leaders of its groups; what does not make it is reconciled.
	shardCommandTimeout = 5 * time.Second
)

// Node runs this node's Raft groups (one for cluster metadata, a pool for
// partitions) over one shard store, and its part of the cluster: the
// node-to-node listener, joining, and the control loop (membership.go).
type Node struct {
	cfg     Config
	log     *slog.Logger
	store   *shardstore.Store
	metrics *metrics
	proc    *processor
	mux     *Mux // nil: in-memory transport, one node only
	// brokerRPC serves broker RPCs (broker_rpc.go); nil until SetBrokerRPC.
	brokerRPC atomic.Pointer[BrokerRPCHandler]

	groupsMu sync.RWMutex
	groups   map[uint32]*group // the groups this node carries; 0 is metadata

	metaMu sync.RWMutex
	meta   *metadata

	// clusterID is this node's cluster ("" while joining); incarnation is
	// part of its Raft server id (identity.go). Both come from the identity.
	clusterID   atomic.Pointer[string]
	incarnation uint32

	// propMu serializes metadata proposals that allocate shard ids.
	propMu sync.Mutex
	// pending bounds data-group proposals handed to Raft (pending.go).
	pending pendingBudget

	// isr tracks which replicas are caught up with their leaders (isr.go).
	isr isrTracker

	pidMu           sync.Mutex
	pidNext, pidEnd int64

	stateMu sync.Mutex
	stateCh chan struct{} // closed and replaced on every readiness or metadata change
	kickCh  chan struct{} // wakes the control loop

	// noHandOff makes Close skip the leadership hand-off, as a crash would
	// (tests only).
	noHandOff bool
	// placementFilter rewrites the placement the control loop acts on (tests
	// only: today's placement never takes a live node out of a group).
	placementFilter atomic.Pointer[func(g uint32, rs []int32) []int32]

	// trimMu serializes trimLog (idletrim.go), which lowers a group's
	// TrailingLogs for one snapshot and puts it back.
	trimMu sync.Mutex

	initDone    atomic.Bool
	failErr     atomic.Pointer[error]
	failed      chan struct{} // closed with failErr set
	closed      atomic.Bool
	closeOnce   sync.Once
	closeErr    error
	shutdownCh  chan struct{}
	closeCtx    context.Context // cancelled by Close
	closeCancel context.CancelFunc
	wg          sync.WaitGroup
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
	n.changed()
	n.kick()
}

// changed wakes everyone waiting for a readiness or metadata change.
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

// NodeID is this node's id.
func (n *Node) NodeID() int32 { return n.cfg.NodeID }

// ClusterID is the cluster's id as Kafka shows it (22 characters of URL-safe
// base64 of a random UUID), chosen when the cluster is bootstrapped and kept in
// cluster metadata.
func (n *Node) ClusterID() string {
	if p := n.clusterID.Load(); p != nil {
		return *p
	}
	return ""
}

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

// leadsMeta reports whether this node leads the metadata group.
func (n *Node) leadsMeta() bool {
	g := n.group(metaGroup)
	return g != nil && g.raft.State() == raft.Leader
}

// proposeLocal proposes c on group id, which this node must lead.
func (n *Node) proposeLocal(ctx context.Context, id uint32, c *Command) (any, uint64, error) {
	g := n.group(id)
	if g == nil {
		return nil, 0, fmt.Errorf("%w: group %d is not carried here", ErrNotLeader, id)
	}
	return n.propose(ctx, g, c)
}

// propose applies c through group g, which this node must lead, and returns
// the FSM's response and the entry's index, or its error. A data-group
// proposal first waits for room in the pending budget (pending.go), bounded by
// ctx; it holds that room until Raft has finished with the entry, even when
// ctx ends first.
func (n *Node) propose(ctx context.Context, g *group, c *Command) (any, uint64, error) {
	return n.proposeQueued(ctx, g, c, nil)
}

// proposeQueued is propose that calls queued (when not nil) as soon as
// raft.Apply has put the entry in the group's queue, before waiting for it.
func (n *Node) proposeQueued(ctx context.Context, g *group, c *Command, queued func()) (any, uint64, error) {
	if n.closed.Load() {
		return nil, 0, ErrClosed
	}
	if g.raft.State() != raft.Leader {
		if addr, _ := g.raft.LeaderWithID(); addr == "" {
			return nil, 0, ErrNotReady
		}
		return nil, 0, ErrNotLeader
	}
	data := EncodeCommand(nil, c)
	release := func() {}
	if g.id != metaGroup {
		cost := int64(len(data)) + proposalOverhead
		limit := n.cfg.MaxPendingProposalBytes
		if limit <= 0 {
			limit = DefaultMaxPendingProposalBytes
		}
		if err := n.pending.acquire(ctx, cost, limit, n.shutdownCh); err != nil {
			return nil, 0, err
		}
		n.metrics.setPending(n.pending.stats())
		release = func() {
			n.pending.release(cost)
			n.metrics.setPending(n.pending.stats())
		}
	}
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			// Not ctx.Err(): it stays nil until ctx's own timer fires, which
			// on a loaded machine can be after the deadline has passed, and a
			// nil error here would read as an applied entry with no response.
			release()
			return nil, 0, context.DeadlineExceeded
		}
	}
	f := g.raft.Apply(data, timeout)
	if queued != nil {
		queued()
	}
	if ctx.Done() == nil {
		f.Error()
		release()
	} else {
		done := make(chan struct{})
		go func() {
			f.Error()
			release()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	if err := f.Error(); err != nil {
		return nil, 0, n.raftError(ctx, err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, 0, err
	}
	return f.Response(), f.Index(), nil
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
		// Raft's timer was set to ctx's deadline and may fire before ctx's.
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
			return context.DeadlineExceeded
		}
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return err
}

// metaOp runs a metadata request here when this node leads the metadata group,
// else on its leader, then waits until this node's own metadata has applied
// the change, so the caller's next read sees it. A leadership change while the
// request is under way is retried until ctx ends: like a Kafka client's retry,
// a change that was committed before the old leader lost its leadership may
// then answer as already done (ErrTopicExists, for example).
func (n *Node) metaOp(ctx context.Context, req *rpcRequest) (rpcResponse, error) {
	backoff := 20 * time.Millisecond
	for {
		var (
			resp rpcResponse
			err  error
		)
		if n.leadsMeta() {
			resp = n.applyMetaRPC(ctx, req)
			err = resp.err()
		} else {
			resp, err = n.callMetaLeader(ctx, req)
		}
		if err == nil {
			return resp, n.waitMetaApplied(ctx, resp.Index)
		}
		if !errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
			if resp.Index > 0 {
				n.waitMetaApplied(ctx, resp.Index)
			}
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-n.shutdownCh:
			return resp, ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// waitMetaApplied waits until this node's metadata group has applied index.
func (n *Node) waitMetaApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.stateChan()
		g := n.group(metaGroup)
		if g == nil || g.fsm.appliedIndex.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: metadata not applied here yet: %v", ErrNotReady, ctx.Err())
		case <-n.shutdownCh:
			return ErrClosed
		}
	}
}

// proposeShards proposes one shard command per group, on each group's leader
// wherever it is. A group whose leader cannot be reached is left to that
// leader's shard reconcile (membership.go), which creates or deletes what
// metadata says; the failure is logged, not returned, because the metadata
// change it follows is already committed.
func (n *Node) proposeShards(ctx context.Context, typ CommandType, byGroup map[uint32][]shardstore.ShardID) {
	for g, ss := range byGroup {
		c := &Command{Type: typ, Shards: ss}
		if err := n.proposeOnLeader(ctx, g, c); err != nil && ctx.Err() == nil {
			n.log.Warn("shard command not applied; the group's leader will reconcile", keyGroup, g, "command", typ, keyError, err)
		}
	}
}

// proposeOnLeader proposes a shard command on data group g's leader: here when
// this node leads it, else through the "shard_command" RPC to the node this
// node believes leads it (its own Raft state, the leader table, then the
// placement), bounded by shardCommandTimeout.
func (n *Node) proposeOnLeader(ctx context.Context, g uint32, c *Command) error {
	ctx, cancel := context.WithTimeout(ctx, shardCommandTimeout)
	defer cancel()
	for {
		var err error
		if grp := n.group(g); grp != nil && grp.raft.State() == raft.Leader {
			_, _, err = n.propose(ctx, grp, c)
		} else if leader, _, ok := n.GroupLeader(g); ok && leader != n.cfg.NodeID {
			var resp rpcResponse
			resp, err = n.call(ctx, n.dialAddr(leader), &rpcRequest{Op: opShardCommand, Group: g, Command: EncodeCommand(nil, c)})
			if err == nil {
				err = resp.err()
			}
		} else {
			err = ErrNotReady
		}
		if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNotReady)) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func shardsByGroup(ps []PartitionInfo) map[uint32][]shardstore.ShardID {
	out := map[uint32][]shardstore.ShardID{}
	for _, p := range ps {
		out[p.Group] = append(out[p.Group], p.Shard)
	}
	return out
}

// newPartitions places count new partitions numbered from first on fresh shards:
// shard s goes to data group 1 + s mod the cluster's pool size.
func (n *Node) newPartitions(first, count int32) []PartitionInfo {
	m := n.metadata()
	groups := uint64(max(m.settings.dataGroups, 1))
	ps := make([]PartitionInfo, count)
	for i := range ps {
		s := shardstore.ShardID(m.nextShard + uint64(i))
		ps[i] = PartitionInfo{Partition: first + int32(i), Shard: s, Group: 1 + uint32(uint64(s)%groups)}
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

// CreateTopic creates a topic and its shards. Any node accepts it: the change
// runs on the metadata leader, and this call returns once this node's metadata
// has the topic. Errors: ErrTopicExists, ErrInvalidTopic, ErrInvalidPartitions
// (count < 1 or too many), topicconfig.ErrUnknown / ErrInvalid. validateOnly
// checks without creating.
func (n *Node) CreateTopic(ctx context.Context, name string, partitions int32, overrides map[string]string, validateOnly bool) (TopicInfo, error) {
	if err := n.checkReady(); err != nil {
		return TopicInfo{}, err
	}
	if err := n.checkNewTopic(name, partitions, overrides); err != nil {
		return TopicInfo{}, err
	}
	if validateOnly {
		if _, ok := n.metadata().topics[name]; ok {
			return TopicInfo{}, ErrTopicExists
		}
		t := &topicMeta{Name: name, Partitions: n.newPartitions(0, partitions), Overrides: overrides, config: n.resolve(overrides)}
		return t.info(), nil
	}
	if _, err := n.metaOp(ctx, &rpcRequest{Op: opCreateTopic, Topic: name, Partitions: partitions, Overrides: overrides}); err != nil {
		return TopicInfo{}, err
	}
	t, ok := n.Topic(name)
	if !ok {
		return TopicInfo{}, ErrUnknownTopic // deleted meanwhile
	}
	return t, nil
}

func (n *Node) checkNewTopic(name string, partitions int32, overrides map[string]string) error {
	if !validTopicName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if partitions < 1 || partitions > maxPartitions {
		return fmt.Errorf("%w: %d (1 to %d)", ErrInvalidPartitions, partitions, maxPartitions)
	}
	_, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults)
	return err
}

// createTopicLocal runs CreateTopic on the metadata leader and returns the
// metadata index of the change.
func (n *Node) createTopicLocal(ctx context.Context, name string, partitions int32, overrides map[string]string, validateOnly bool) (uint64, error) {
	if err := n.checkNewTopic(name, partitions, overrides); err != nil {
		return 0, err
	}
	n.propMu.Lock()
	defer n.propMu.Unlock()
	if _, ok := n.metadata().topics[name]; ok {
		return 0, ErrTopicExists
	}
	if validateOnly {
		return 0, nil
	}
	t := &topicMeta{Name: name, ID: newTopicID(), Partitions: n.newPartitions(0, partitions), Overrides: maps.Clone(overrides)}
	resp, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdCreateTopic, Topic: *t})
	if err != nil {
		return 0, err
	}
	created := resp.(*topicMeta)
	n.proposeShards(ctx, CmdCreateShards, shardsByGroup(created.Partitions))
	n.log.Info("topic created", keyTopic, name, keyCount, partitions)
	return idx, nil
}

// DeleteTopic removes a topic and its shards (ErrUnknownTopic). Any node
// accepts it (see CreateTopic).
func (n *Node) DeleteTopic(ctx context.Context, name string) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opDeleteTopic, Topic: name})
	return err
}

func (n *Node) deleteTopicLocal(ctx context.Context, name string) (uint64, error) {
	n.propMu.Lock()
	defer n.propMu.Unlock()
	t, ok := n.metadata().topics[name]
	if !ok {
		return 0, ErrUnknownTopic
	}
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdDeleteTopic, Topic: topicMeta{Name: name}})
	if err != nil {
		return 0, err
	}
	n.proposeShards(ctx, CmdDeleteShards, shardsByGroup(t.Partitions))
	n.log.Info("topic deleted", keyTopic, name)
	return idx, nil
}

// CreatePartitions grows a topic to count partitions (ErrInvalidPartitions when
// count is not larger than the current count). Any node accepts it.
func (n *Node) CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if validateOnly {
		_, err := n.checkPartitions(name, count)
		return err
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opCreatePartitions, Topic: name, Partitions: count})
	return err
}

func (n *Node) checkPartitions(name string, count int32) (int32, error) {
	t, ok := n.metadata().topics[name]
	if !ok {
		return 0, ErrUnknownTopic
	}
	cur := int32(len(t.Partitions))
	if count <= cur || count > maxPartitions {
		return 0, fmt.Errorf("%w: %d (topic has %d, limit %d)", ErrInvalidPartitions, count, cur, maxPartitions)
	}
	return cur, nil
}

func (n *Node) createPartitionsLocal(ctx context.Context, name string, count int32, validateOnly bool) (uint64, error) {
	n.propMu.Lock()
	defer n.propMu.Unlock()
	cur, err := n.checkPartitions(name, count)
	if err != nil || validateOnly {
		return 0, err
	}
	ps := n.newPartitions(cur, count-cur)
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdCreatePartitions, Topic: topicMeta{Name: name, Partitions: ps}})
	if err != nil {
		return 0, err
	}
	n.proposeShards(ctx, CmdCreateShards, shardsByGroup(ps))
	return idx, nil
}

// SetTopicConfig replaces a topic's overrides with overrides (validated first).
// Any node accepts it.
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
	_, err := n.metaOp(ctx, &rpcRequest{Op: opSetTopicConfig, Topic: name, Overrides: overrides})
	return err
}

func (n *Node) setTopicConfigLocal(ctx context.Context, name string, overrides map[string]string, validateOnly bool) (uint64, error) {
	if _, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults); err != nil {
		return 0, err
	}
	if validateOnly {
		return 0, nil
	}
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdSetTopicConfig, Topic: topicMeta{Name: name, Overrides: overrides}})
	return idx, err
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
	return t, t.Partitions[partition], nil
}

// dataGroup returns the open data group g, or ErrNotLeader when this node does
// not carry it.
func (n *Node) dataGroup(g uint32) (*group, error) {
	if g == metaGroup {
		return nil, fmt.Errorf("raftfsm: partition placed on the metadata group")
	}
	grp := n.group(g)
	if grp == nil {
		return nil, fmt.Errorf("%w: group %d is not carried by this node", ErrNotLeader, g)
	}
	return grp, nil
}

// Produce appends one batch to a partition through its Raft group and returns the
// result once the entry is committed and applied. Errors: ErrUnknownTopic,
// ErrUnknownPartition, ErrNotLeader (this node does not lead the partition's
// group), ErrNotReady, ErrClosed, ctx errors, and the shardstore append errors
// (ErrKeyRequired, ErrOutOfOrderSequence, ...).
func (n *Node) Produce(ctx context.Context, topic string, partition int32, p shardstore.Producer, recs []shardstore.Record) (shardstore.AppendResult, error) {
	res := n.ProduceMany(ctx, []PartBatch{{Topic: topic, Partition: partition, Producer: p, Records: recs}})[0]
	return res.AppendResult, res.Err
}

// PartBatch is one partition's produce batch for ProduceMany.
type PartBatch struct {
	Topic     string
	Partition int32
	Producer  shardstore.Producer
	Records   []shardstore.Record
}

// PartResult is the outcome of one PartBatch: the append's result, or Err.
type PartResult struct {
	shardstore.AppendResult
	Err error
}

// maxPartsEntryBytes bounds the records (as produceSize counts them) that
// ProduceMany puts in one CmdProduceParts entry, so an entry stays about as
// large as one produce batch and trailingLogs entries stay a bounded number
// of bytes.
const maxPartsEntryBytes = 1 << 20

// ProduceMany appends batches to many partitions and returns one result per
// batch, in order, once every batch is committed and applied (or failed).
// The batches of one Raft group share Raft entries (CmdProduceParts, up to
// maxPartsEntryBytes each; a lone batch is a CmdProduce, as Produce
// proposes), and each group is proposed on its own goroutine, so a request
// with a record or two in each of 10,000 partitions costs an entry, a
// goroutine and a store commit per Raft group, not per partition. Each batch
// still succeeds or fails alone: the errors of Produce, per batch (a retried
// batch is answered from the store with its original offsets, as by
// Produce; a group this node does not lead fails its batches with
// ErrNotLeader).
func (n *Node) ProduceMany(ctx context.Context, batches []PartBatch) []PartResult {
	return n.ProduceManyQueued(ctx, batches, nil)
}

// ProduceManyQueued is ProduceMany that also calls queued, once, as soon as
// every entry it proposes is in its Raft group's queue (raft.Apply returned)
// or failed before it, and before it waits for them to commit and apply.
// Entries a later call proposes are then behind this call's in every group's
// log: the broker takes a connection's next produce request from that point
// on, and each partition keeps the order its client sent (broker/conn.go).
// queued may run on another goroutine; nil means none.
func (n *Node) ProduceManyQueued(ctx context.Context, batches []PartBatch, queued func()) []PartResult {
	if queued != nil {
		queued = sync.OnceFunc(queued)
		defer queued() // nothing was proposed, or every proposal has returned
	}
	out := make([]PartResult, len(batches))
	if err := n.checkReady(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	type groupWork struct {
		g     *group
		err   error // the group cannot take proposals here
		idx   []int // into batches
		parts []ProducePart
	}
	var work []*groupWork
	byGroup := map[uint32]*groupWork{}
	m := n.metadata()
	now := n.cfg.Now().UnixMilli()
	for i := range batches {
		pb := &batches[i]
		t, ok := m.topics[pb.Topic]
		if !ok {
			out[i].Err = ErrUnknownTopic
			continue
		}
		if pb.Partition < 0 || int(pb.Partition) >= len(t.Partitions) {
			out[i].Err = ErrUnknownPartition
			continue
		}
		part := t.Partitions[pb.Partition]
		gw := byGroup[part.Group]
		if gw == nil {
			gw = &groupWork{}
			gw.g, gw.err = n.dataGroup(part.Group)
			byGroup[part.Group] = gw
			work = append(work, gw)
		}
		if gw.err != nil {
			out[i].Err = gw.err
			continue
		}
		if pb.Producer.ID >= 0 && gw.g.raft.State() == raft.Leader {
			// A retry of an applied batch is answered from the store (see
			// Produce).
			if res, dup, err := n.store.Duplicate(part.Shard, pb.Producer, len(pb.Records)); err == nil && dup {
				out[i].AppendResult = res
				continue
			}
		}
		gw.idx = append(gw.idx, i)
		gw.parts = append(gw.parts, ProducePart{
			Shard:              part.Shard,
			Policy:             t.config.CleanupPolicy,
			MinCompactionLagMs: t.config.MinCompactionLagMs,
			Producer:           pb.Producer,
			Records:            pb.Records,
		})
	}
	// Each group's parts, cut into entries of at most maxPartsEntryBytes.
	type entry struct {
		g     *group
		idx   []int
		parts []ProducePart
	}
	var entries []entry
	for _, gw := range work {
		sortPartsByShard(gw.idx, gw.parts)
		for start := 0; start < len(gw.parts); {
			end, size := start, 0
			for end < len(gw.parts) && (end == start || size+recordsSize(gw.parts[end].Records) <= maxPartsEntryBytes) {
				size += recordsSize(gw.parts[end].Records)
				end++
			}
			entries = append(entries, entry{gw.g, gw.idx[start:end], gw.parts[start:end]})
			start = end
		}
	}
	// inQueue counts the entries not yet in their group's Raft queue; queued
	// is called once it reaches zero, from the proposal that brings it there.
	var inQueue atomic.Int32
	inQueue.Store(int32(len(entries)))
	entered := func() {
		if inQueue.Add(-1) == 0 && queued != nil {
			queued()
		}
	}
	var wg sync.WaitGroup
	for i, e := range entries {
		if i == len(entries)-1 {
			n.proposeParts(ctx, e.g, now, e.idx, e.parts, out, entered)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.proposeParts(ctx, e.g, now, e.idx, e.parts, out, entered)
		}()
	}
	wg.Wait()
	return out
}

// sortPartsByShard orders parts (and idx, their places in the request) by
// shard, keeping the request's order within a shard. A shard's keys are one
// span of the store (shardstore's key layout): applied in shard order, each
// part's writes search Pebble's memtable skiplist near the previous part's,
// through nodes still in the CPU's cache. A produce request lists its
// partitions in any order. With 10,000 partitions, together with the metas
// written in shard order (shardstore's Batch.Commit), this cost 11% less CPU
// per record (profiles README, "An append's writes in key order").
func sortPartsByShard(idx []int, parts []ProducePart) {
	if slices.IsSortedFunc(parts, func(a, b ProducePart) int { return cmp.Compare(a.Shard, b.Shard) }) {
		return
	}
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(parts[a].Shard, parts[b].Shard) })
	sortedIdx := make([]int, len(idx))
	sortedParts := make([]ProducePart, len(parts))
	for i, o := range order {
		sortedIdx[i], sortedParts[i] = idx[o], parts[o]
	}
	copy(idx, sortedIdx)
	copy(parts, sortedParts)
}

// proposeParts proposes parts, the batches of out's entries idx, as one
// entry of group g with append time nowMs, and fills their results. It calls
// entered once, when the entry is in Raft's queue or has failed before it.
func (n *Node) proposeParts(ctx context.Context, g *group, nowMs int64, idx []int, parts []ProducePart, out []PartResult, entered func()) {
	entered = sync.OnceFunc(entered)
	defer entered()
	if len(parts) == 1 {
		p := &parts[0]
		c := &Command{
			Type:     CmdProduce,
			Shard:    p.Shard,
			Options:  shardstore.AppendOptions{Policy: p.Policy, AppendTimeMs: nowMs, MinCompactionLagMs: p.MinCompactionLagMs},
			Producer: p.Producer,
			Records:  p.Records,
		}
		resp, _, err := n.proposeQueued(ctx, g, c, entered)
		if err == nil {
			res, ok := resp.(shardstore.AppendResult)
			if !ok {
				err = fmt.Errorf("raftfsm: produce applied with response %T", resp)
			}
			out[idx[0]].AppendResult = res
		}
		out[idx[0]].Err = err
		return
	}
	c := &Command{Type: CmdProduceParts, Options: shardstore.AppendOptions{AppendTimeMs: nowMs}, Parts: parts}
	resp, _, err := n.proposeQueued(ctx, g, c, entered)
	res, ok := resp.([]PartResult)
	if err == nil && (!ok || len(res) != len(parts)) {
		err = fmt.Errorf("raftfsm: produce_parts of %d applied with response %T", len(parts), resp)
	}
	for j, i := range idx {
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i] = res[j]
	}
}

// WriteTxnMarker ends a producer's transaction in one partition through its
// Raft group, on the group's leader wherever it is (here, or over the
// shard_command RPC): the marker takes the partition's next offset and
// commits or aborts what the producer staged there
// (shardstore.Batch.EndTxn). Errors as Produce, and a marker older than the
// producer's epoch (shardstore.ErrInvalidProducerEpoch when applied here).
func (n *Node) WriteTxnMarker(ctx context.Context, topic string, partition int32, m shardstore.Marker) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	t, part, err := n.partition(topic, partition)
	if err != nil {
		return err
	}
	return n.proposeOnLeader(ctx, part.Group, &Command{
		Type:  CmdTxnMarker,
		Shard: part.Shard,
		Options: shardstore.AppendOptions{
			Policy:       t.config.CleanupPolicy,
			AppendTimeMs: n.cfg.Now().UnixMilli(),
		},
		Marker: m,
	})
}

// InitProducerID allocates a fresh producer id (epoch 0) for an idempotent
// producer. Ids are unique cluster-wide and across restarts: each node takes
// blocks reserved through the metadata group, and a block is never handed out
// twice.
func (n *Node) InitProducerID(ctx context.Context) (id int64, epoch int16, err error) {
	if err := n.checkReady(); err != nil {
		return 0, 0, err
	}
	n.pidMu.Lock()
	defer n.pidMu.Unlock()
	if n.pidNext >= n.pidEnd {
		resp, err := n.metaOp(ctx, &rpcRequest{Op: opAllocatePIDs})
		if err != nil {
			return 0, 0, err
		}
		n.pidNext, n.pidEnd = resp.PIDStart, resp.PIDStart+producerIDBlock
	}
	id = n.pidNext
	n.pidNext++
	return id, 0, nil
}

// ExpireTombstones, ExpireSuperseded and DeleteRecordsBefore propose the matching
// shardstore.Batch operation for a partition through its Raft group, so every
// replica applies it at the same log position. The compaction loop calls them
// on the partitions this node leads (ErrNotLeader elsewhere).
func (n *Node) ExpireTombstones(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireTombstones, BeforeMs: beforeMs})
}

// ExpireSuperseded: see ExpireTombstones.
func (n *Node) ExpireSuperseded(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireSuperseded, BeforeMs: beforeMs})
}

// ExpireTxnMarkers: see ExpireTombstones (transaction markers of a
// compacted partition, shardstore.Batch.ExpireTxnMarkers).
func (n *Node) ExpireTxnMarkers(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireTxnMarkers, BeforeMs: beforeMs})
}

// DeleteRecordsBefore: see ExpireTombstones.
func (n *Node) DeleteRecordsBefore(ctx context.Context, topic string, partition int32, offset int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdDeleteRecordsBefore, Offset: offset})
}

// ExpireProducers proposes that every replica forget the state of the
// partition's idle producers, those whose last batch was appended before
// beforeMs (producer.id.expiration.ms; see shardstore.Batch.ExpireProducers).
// The command carries this node's clock for dating state written before
// append times were kept. The compaction loop calls it (ErrNotLeader
// elsewhere).
func (n *Node) ExpireProducers(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireProducers, BeforeMs: beforeMs,
		Options: shardstore.AppendOptions{AppendTimeMs: n.cfg.Now().UnixMilli()}})
}

func (n *Node) shardCommand(ctx context.Context, topic string, partition int32, c *Command) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	_, part, err := n.partition(topic, partition)
	if err != nil {
		return err
	}
	g, err := n.dataGroup(part.Group)
	if err != nil {
		return err
	}
	c.Shard = part.Shard
	_, _, err = n.propose(ctx, g, c)
	return err
}
