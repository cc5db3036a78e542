package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	pending *pendingBudget

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
		release = func() { n.pending.release(cost) }
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
