package raftfsm

// A node's life: Open decides whether this node bootstraps a new cluster, joins
// one, or restarts with the state it has; it opens the groups it carries and
// starts the control loop (membership.go) that opens more as placement assigns
// them. Close hands leaderships away, then shuts every group down.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// group is one Raft group of the node.
type group struct {
	id     uint32
	raft   *raft.Raft
	fsm    *fsm
	logs   *LogStore
	trans  raft.Transport
	snaps  *snapshotStore
	notify chan bool
	// stop is closed when the group alone is closed (stale.go), ending its
	// leadership watcher.
	stop chan struct{}
	// ready: this node leads the group and a Barrier applied in this term, so
	// the whole log is applied.
	ready atomic.Bool
	// leaderSince is when this node last became the group's leader (unix ns);
	// leaderTerm the term it won then (set once its Barrier applied).
	leaderSince atomic.Int64
	leaderTerm  atomic.Uint64
	// servers is the group's configuration as last read by the control loop;
	// nil until read.
	servers atomic.Pointer[[]raft.Server]
	// reconciled is the metadata this node's last successful shard reconcile
	// of the group saw, so an unchanged metadata is not reconciled again.
	reconciled atomic.Pointer[metadata]
	// reporting is set while a leader report of this group is under way.
	reporting atomic.Bool
	// openWaits: when this leader first found a node it is to add without
	// the group open (membership.go); used by the control loop only.
	openWaits map[int32]time.Time
}

// Open starts the node. On an empty data dir without Config.Join it bootstraps
// a new cluster (one voter per group); with Join it joins the cluster those
// nodes belong to; with state it restarts as the node it was and ignores Join
// (but refuses to start when a Join node belongs to another cluster). It
// returns before the node is ready; see WaitReady.
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
	pending := &pendingBudget{}
	m, err := newMetrics(cfg.Registerer, pending)
	if err != nil {
		return nil, err
	}
	n := &Node{
		pending:    pending,
		cfg:        cfg,
		log:        cfg.Logger.With(keyNodeID, cfg.NodeID),
		store:      cfg.Store,
		metrics:    m,
		groups:     map[uint32]*group{},
		stateCh:    make(chan struct{}),
		shutdownCh: make(chan struct{}),
		kickCh:     make(chan struct{}, 1),
		failed:     make(chan struct{}),
	}
	if cfg.Listener == nil && cfg.ClusterAddr == "" {
		// One node on the in-memory transport: a name, never dialled.
		n.cfg.ClusterAddr = fmt.Sprintf("inmem-node-%d", cfg.NodeID)
	}
	n.closeCtx, n.closeCancel = context.WithCancel(context.Background())
	n.proc = &processor{resolve: n.resolve}
	// A data dir from before the Raft log DB keeps its Raft keys in the
	// state DB: move them first.
	if err := moveLogKeys(cfg.Store, n.log); err != nil {
		return nil, err
	}
	if n.meta, err = loadMetadata(cfg.Store.DB(), n.resolve); err != nil {
		return nil, err
	}
	// Shards created before shards recorded their group get it from the
	// placement metadata has always kept (a no-op once done).
	if err := backfillShardGroups(cfg.Store, n.meta.shardGroups()); err != nil {
		return nil, err
	}
	db := cfg.Store.LogDB()
	stored, hasIdentity, err := loadIdentity(db)
	if err != nil {
		return nil, err
	}
	withState, err := groupsWithState(db)
	if err != nil {
		return nil, err
	}
	bootstrap := false
	switch {
	case hasIdentity:
		if err := checkIdentity(stored, cfg.NodeID); err != nil {
			return nil, err
		}
	case len(withState) > 0:
		// A data dir from before identities were stored: adopt it.
		stored = identity{nodeID: cfg.NodeID, clusterID: n.meta.clusterID} // incarnation 0: the server ids it has
		if stored.clusterID == "" {
			stored.clusterID = newClusterID()
		}
		if err := saveIdentity(db, stored); err != nil {
			return nil, err
		}
	case n.meta.clusterID != "":
		// The state store holds a cluster's data, but the Raft log store
		// has neither an identity nor a Raft log: it was lost, or the node
		// was started with another --raft-log-dir. Bootstrapping or
		// joining over that state would mix two histories.
		return nil, errNoRaftLog(n.meta.clusterID)
	case len(cfg.Join) == 0:
		bootstrap = true
		stored = identity{nodeID: cfg.NodeID, clusterID: newClusterID(), incarnation: newIncarnation()}
		if err := saveIdentity(db, stored); err != nil {
			return nil, err
		}
		n.log.Info("bootstrapping a new cluster", keyCluster, stored.clusterID)
	default:
		// The cluster id comes with the join.
		stored = identity{nodeID: cfg.NodeID, incarnation: newIncarnation()}
	}
	n.clusterID.Store(&stored.clusterID)
	n.incarnation = stored.incarnation

	if cfg.Listener != nil {
		n.mux = NewMux(cfg.Listener, MuxConfig{
			NodeID:        cfg.NodeID,
			ClusterID:     n.ClusterID,
			Advertised:    cfg.ClusterAddr,
			HandleRPC:     n.serveRPC,
			Logger:        n.log,
			TLS:           cfg.ClusterTLS,
			TLSPermissive: cfg.ClusterTLSPermissive,
			OnRefused:     n.metrics.connRefused,
			PeerHosts:     n.peerHosts,
		})
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.mux.Serve(); err != nil {
				n.fail(fmt.Errorf("cluster listener: %w", err))
			}
		}()
	}

	var open []uint32
	switch {
	case bootstrap:
		for id := uint32(0); id <= uint32(cfg.DataGroups); id++ {
			open = append(open, id)
		}
	case stored.clusterID != "":
		open = withState
		if len(open) == 0 || open[0] != metaGroup {
			open = append([]uint32{metaGroup}, open...)
		}
	}
	for _, id := range open {
		if _, err := n.openGroup(id, bootstrap); err != nil {
			n.Close()
			return nil, fmt.Errorf("raftfsm: open group %d: %w", id, err)
		}
	}
	n.wg.Add(1)
	go n.run(stored.clusterID == "", hasIdentity || len(withState) > 0)
	cfg.Store.OnIdle(n.trimIdleLogs)
	if n.mux != nil {
		n.isr.start(cfg.Now())
		n.wg.Add(1)
		go n.runISR()
	}
	return n, nil
}

func newClusterID() string {
	var u [16]byte
	rand.Read(u[:])
	return base64.RawURLEncoding.EncodeToString(u[:])
}

// openGroup opens group id (a no-op when it is open). With bootstrap, a group
// without state starts as a one-voter cluster of this node; without, it waits
// for a leader to add this node.
func (n *Node) openGroup(id uint32, bootstrap bool) (*group, error) {
	n.groupsMu.Lock()
	defer n.groupsMu.Unlock()
	if g := n.groups[id]; g != nil {
		return g, nil
	}
	if n.closed.Load() {
		return nil, ErrClosed
	}
	g := &group{id: id, notify: make(chan bool, 16), stop: make(chan struct{})}
	var err error
	if g.logs, err = NewLogStore(n.store.LogDB(), id); err != nil {
		return nil, err
	}
	if g.fsm, err = newFSM(id, n.store, n.proc, n.log, n.metrics); err != nil {
		return nil, err
	}
	g.fsm.maxBatchBytes = n.cfg.MaxApplyBatchBytes
	if id == metaGroup {
		g.fsm.getMeta = n.metadata
		g.fsm.setMeta = n.publishMeta
	}
	hl := newHclog(n.log.With(keyGroup, id), "raft")
	if id == metaGroup {
		// Set before the snapshot store opens: it may restore a received
		// snapshot of the metadata group at once.
		g.fsm.reload = n.reloadMeta
	}
	snaps, err := openSnapshotStore(n.groupDir(id), g.fsm, n.cfg.SnapshotRateBytes, hl)
	if err != nil {
		return nil, err
	}
	g.snaps = snaps
	addr := raft.ServerAddress(n.cfg.ClusterAddr)
	if n.mux != nil {
		layer, err := n.mux.Layer(id)
		if err != nil {
			return nil, err
		}
		g.trans = newGroupTransport(layer, n, hl)
		snaps.self, snaps.pull = n.cfg.NodeID, n.pullSnapshot
	} else {
		addr = raft.ServerAddress(fmt.Sprintf("node-%d/group-%d", n.cfg.NodeID, id))
		_, g.trans = raft.NewInmemTransport(addr)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = n.selfServerID()
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = snapshotInterval
	rc.TrailingLogs = trailingLogs
	if n.cfg.trailingLogs > 0 {
		rc.TrailingLogs = n.cfg.trailingLogs
	}
	rc.MaxAppendEntries = maxAppendEntries
	rc.BatchApplyCh = true
	rc.NoSnapshotRestoreOnStart = true
	rc.NoLegacyTelemetry = true
	rc.NotifyCh = g.notify
	rc.Logger = hl

	exists, err := raft.HasExistingState(g.logs, g.logs, snaps)
	if err != nil {
		closeTransport(g.trans)
		return nil, err
	}
	if !exists && bootstrap {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(rc, g.logs, g.logs, snaps, g.trans, boot); err != nil {
			closeTransport(g.trans)
			return nil, err
		}
	}
	if g.raft, err = raft.NewRaft(rc, g.fsm, g.logs, g.logs, snaps, g.trans); err != nil {
		closeTransport(g.trans)
		return nil, err
	}
	n.groups[id] = g
	n.electAloneAtOnce(g)
	n.wg.Add(1)
	go n.watchLeadership(g)
	if !exists {
		n.log.Info("raft group opened", keyGroup, id, "bootstrap", bootstrap)
	}
	return g, nil
}

// electAloneAtOnce has group g, just opened, elect this node without waiting
// out its heartbeat timeout when the group's configuration is this node alone
// as a voter: a bootstrapped or restarted single node. Raft starts every group
// as a follower that calls an election once it has heard from no leader for a
// random time between one and two heartbeat timeouts (1-2 s with the binary's
// defaults), so a restarted single node served nothing for up to 2 s while no
// other server could ever lead its groups.
//
// hashicorp/raft has no call to start an election. ReloadConfig with a shorter
// HeartbeatTimeout makes a follower fire its heartbeat timer at once, and the
// timer then finds no contact from any leader since the start and calls the
// election; the timeout is put back right away, so the value Raft runs with
// does not change. With any other configuration (other voters, or none yet:
// a joining node) nothing is done, and a timeout that cannot be lowered (not
// above LeaderLeaseTimeout) leaves the group to the ordinary timer.
func (n *Node) electAloneAtOnce(g *group) {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	if len(servers) != 1 || servers[0].ID != n.selfServerID() || servers[0].Suffrage != raft.Voter {
		return
	}
	keep := g.raft.ReloadableConfig()
	nudge := keep
	nudge.HeartbeatTimeout = keep.HeartbeatTimeout - time.Millisecond
	if g.raft.ReloadConfig(nudge) != nil {
		return
	}
	if err := g.raft.ReloadConfig(keep); err != nil {
		n.log.Warn("restoring the raft heartbeat timeout failed", keyGroup, g.id, keyError, err)
	}
}

func closeTransport(t raft.Transport) {
	if c, ok := t.(raft.WithClose); ok {
		c.Close()
	}
}

// ServerAddr implements raft.ServerAddressProvider: the address this node dials
// to reach a peer (Config.PeerAddrs, else the peer's registered cluster address).
// A stale server (a wiped node's old incarnation, membership.go) gets an
// address StreamLayer.Dial refuses, since an error would make Raft dial the
// configuration's address, where the new incarnation listens.
func (n *Node) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	node, ok := parseServerID(id)
	if !ok {
		return "", fmt.Errorf("raftfsm: bad server id %q", id)
	}
	if n.staleServer(id) {
		return raft.ServerAddress(staleAddrPrefix + string(id)), nil
	}
	if a := n.dialAddr(node); a != "" {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("raftfsm: no address known for node %d", node)
}

// reloadMeta re-reads metadata from the store after a snapshot of the
// metadata group was installed, and publishes it.
func (n *Node) reloadMeta() error {
	m, err := loadMetadata(n.store.DB(), n.resolve)
	if err != nil {
		return err
	}
	n.publishMeta(m)
	return nil
}

// selfServerID is this node's Raft server id.
func (n *Node) selfServerID() raft.ServerID { return serverID(n.cfg.NodeID, n.incarnation) }

// dialAddr is where this node dials node id; "" when unknown.
func (n *Node) dialAddr(id int32) string {
	if a, ok := n.cfg.PeerAddrs[id]; ok {
		return a
	}
	if id == n.cfg.NodeID {
		return n.cfg.ClusterAddr
	}
	if ni, ok := n.metadata().nodes[id]; ok {
		return ni.ClusterAddr
	}
	return ""
}

// peerHosts returns the hosts of the cluster addresses node id is known by
// here (MuxConfig.PeerHosts): its Config.PeerAddrs override and its
// registered address. known is false for an id with neither.
func (n *Node) peerHosts(id int32) (hosts []string, known bool) {
	if a, ok := n.cfg.PeerAddrs[id]; ok {
		hosts = append(hosts, addrHost(a))
	}
	if id == n.cfg.NodeID {
		hosts = append(hosts, addrHost(n.cfg.ClusterAddr))
	} else if ni, ok := n.metadata().nodes[id]; ok {
		hosts = append(hosts, addrHost(ni.ClusterAddr))
	}
	return hosts, len(hosts) > 0
}

// group returns an open group, or nil.
func (n *Node) group(id uint32) *group {
	n.groupsMu.RLock()
	defer n.groupsMu.RUnlock()
	return n.groups[id]
}

// openGroups returns the open groups ordered by id.
func (n *Node) openGroups() []*group {
	n.groupsMu.RLock()
	defer n.groupsMu.RUnlock()
	out := make([]*group, 0, len(n.groups))
	for id := uint32(0); len(out) < len(n.groups); id++ {
		if g := n.groups[id]; g != nil {
			out = append(out, g)
		}
	}
	return out
}

// watchLeadership follows one group's leadership: on winning it applies a
// Barrier (so the log is replayed) before marking the group ready, and a data
// group's new leader reports itself to the metadata group.
func (n *Node) watchLeadership(g *group) {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-g.stop:
			return
		case leader := <-g.notify:
			n.metrics.setLeader(g.id, leader)
			g.ready.Store(false)
			n.changed()
			if !leader {
				continue
			}
			g.leaderSince.Store(time.Now().UnixNano())
			term := g.raft.CurrentTerm()
			n.log.Info("leading raft group", keyGroup, g.id, keyTerm, term)
			for g.raft.State() == raft.Leader && len(g.notify) == 0 {
				err := n.barrier(g)
				if err == nil {
					// The term read before the Barrier is the one this node
					// won only if it still leads in it now.
					if g.raft.State() == raft.Leader && g.raft.CurrentTerm() == term {
						g.leaderTerm.Store(term)
						g.ready.Store(true)
					}
					n.changed()
					n.kick()
					break
				}
				if errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, ErrClosed) {
					return
				}
				n.log.Warn("raft barrier failed", keyGroup, g.id, keyError, err)
				select { // e.g. a leadership transfer under way: do not spin
				case <-n.shutdownCh:
					return
				case <-g.stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}
}

// barrier applies a Barrier on g and waits for it, or for the node to close:
// hashicorp/raft does not answer futures still queued when it shuts down
// (hashicorp/raft#498), so waiting on the future alone could block Close for
// good. The goroutine that waits on the future ends when raft answers it; if
// raft never does, it ends with the process.
func (n *Node) barrier(g *group) error {
	f := g.raft.Barrier(n.cfg.ElectionTimeout * 10)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.shutdownCh:
		return ErrClosed
	case <-g.stop:
		return ErrClosed
	}
}

// fail records a fatal error: WaitReady returns it and Ready is false.
func (n *Node) fail(err error) {
	if n.closed.Load() {
		return
	}
	if n.failErr.CompareAndSwap(nil, &err) {
		n.log.Error("raft node failed", keyError, err)
		close(n.failed)
		n.changed()
	}
}

// Failed is closed when the node fails for good (for example it was removed
// from the cluster, or joining was refused); Err then says why. The process
// should shut down.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Err returns the error that failed the node, or nil.
func (n *Node) Err() error {
	if p := n.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// WaitReady blocks until the node is ready and every group it carries has a
// leader (and has applied its whole log where this node leads), the node
// fails, or ctx ends. A node that starts serving after WaitReady therefore
// answers for every partition at once.
func (n *Node) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.stateChan()
		if p := n.failErr.Load(); p != nil {
			return *p
		}
		if n.closed.Load() {
			return ErrClosed
		}
		if n.Ready() && n.groupsLed() {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C: // leader changes elsewhere do not signal stateCh
		case <-n.shutdownCh:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// groupsLed reports whether every open group has a leader, and has applied its
// whole log where this node leads.
func (n *Node) groupsLed() bool {
	for _, g := range n.openGroups() {
		if g.raft.State() == raft.Leader {
			if !g.ready.Load() {
				return false
			}
			continue
		}
		if _, id := g.raft.LeaderWithID(); id == "" {
			return false
		}
	}
	return true
}

// Ready reports whether the node serves: it is registered in the cluster and
// has not failed. Whether a given partition can be served depends on its
// group (IsLeader, ReplicaFresh); a group without a leader during an election
// does not make the whole node unready.
func (n *Node) Ready() bool {
	if n.closed.Load() || n.failErr.Load() != nil || !n.initDone.Load() {
		return false
	}
	for _, g := range n.openGroups() {
		if g.fsm.stopped.Load() {
			return false
		}
	}
	return true
}

// Close hands the leadership of every group it leads to another voter (so a
// rolling restart costs no election timeout), shuts every group down and
// waits for them. It does not close the Store. Idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if !n.noHandOff {
			n.transferLeaderships()
		}
		n.closed.Store(true)
		n.store.OnIdle(nil)
		close(n.shutdownCh)
		n.closeCancel()
		n.closeErr = n.shutdownGroups()
		if n.mux != nil {
			n.mux.Close()
		}
		n.wg.Wait()
		n.changed()
	})
	return n.closeErr
}

// HandOffLeadership hands the leadership of every group this node leads to
// another voter and waits for the transfers (each bounded by raft). A node
// about to stop calls it first, while it still serves, so clients move to the
// new leaders before its Kafka port closes. Close does it too.
func (n *Node) HandOffLeadership() {
	if !n.closed.Load() {
		n.transferLeaderships()
	}
}

// transferLeaderships asks every group this node leads, and that has another
// voter, to hand leadership over, and waits for them (bounded).
func (n *Node) transferLeaderships() {
	var futures []raft.Future
	for _, g := range n.openGroups() {
		if g.raft.State() != raft.Leader || !g.hasOtherVoter(n.selfServerID()) {
			continue
		}
		futures = append(futures, g.raft.LeadershipTransfer())
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			n.log.Warn("leadership transfer failed", keyError, err)
		}
	}
	if len(futures) > 0 {
		n.log.Info("leaderships handed over", keyCount, len(futures))
	}
}

// hasOtherVoter reports whether the last read configuration has a voter other
// than self.
func (g *group) hasOtherVoter(self raft.ServerID) bool {
	p := g.servers.Load()
	if p == nil {
		return false
	}
	for _, s := range *p {
		if s.Suffrage == raft.Voter && s.ID != self {
			return true
		}
	}
	return false
}

func (n *Node) shutdownGroups() error {
	groups := n.openGroups()
	futures := make([]raft.Future, len(groups))
	for i, g := range groups {
		futures[i] = g.raft.Shutdown()
	}
	// Close the transports before waiting: raft's pipelined AppendEntries
	// writes have no deadline, and a replication goroutine blocked writing to
	// a peer that stopped reading would hold Shutdown up for good. Closing
	// the connections unblocks it.
	for _, g := range groups {
		closeTransport(g.trans)
	}
	var errs []error
	for i, g := range groups {
		if err := futures[i].Error(); err != nil {
			errs = append(errs, fmt.Errorf("group %d: %w", g.id, err))
		}
		g.snaps.closeOffers()
		n.metrics.setLeader(g.id, false)
	}
	return errors.Join(errs...)
}
