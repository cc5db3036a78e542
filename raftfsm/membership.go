package raftfsm

// Membership: how a node joins, how the groups it carries follow the placement,
// and how each group's leader moves its Raft configuration toward that
// placement. One control loop per node (run) does all of it, woken by metadata
// changes and leadership changes (kick) and at least every controlInterval.
//
// Joining: a new node sends "register" to any node of --join; the metadata
// leader registers it (the FSM recomputes the placement, cluster.go) and its
// control loop adds the node to the metadata group as a non-voter. The new
// node, having learnt the cluster id from the reply, opens the metadata group
// without bootstrapping and receives the log (or a snapshot). Once its
// metadata shows it in a data group's placement it opens that group, and that
// group's leader adds it the same way.
//
// Each change of a group's configuration is one step per loop round:
//  1. remove a server that is not wanted (transfer leadership first when it is
//     this node);
//  2. add a wanted server that is missing, as a non-voter, so it catches up
//     without counting toward the quorum, once the node has the group open
//     (readyToAdd); a data group's leader first snapshots and trims its log,
//     so the server is sent a snapshot rather than the whole log, unless an
//     earlier snapshot already trimmed it and few entries follow that one
//     (trimLogForNewServer, recentSnapshotSuffices);
//  3. promote a non-voter that should vote once it has caught up (its applied
//     index within promoteLag of the leader's commit index);
//  4. hand leadership to the group's preferred leader when it is a caught-up
//     voter and this node has led for longer than leaderHysteresis.
// The metadata group has metaVoterTarget voters; every other active node
// follows it as a non-voter, so every node has every metadata change.
//
// A wiped node that comes back listens where its old server did, so until
// that server is removed (and in Raft's last replication attempt when it is)
// the leader would send the old server's traffic to the new one: log entries,
// and once the log is trimmed, snapshots, whose install rolls the new
// server's Raft state (applied index, configuration) back to an older one.
// This node therefore never dials a stale server (staleServer): ServerAddr
// gives it an address the stream layer refuses.

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

const (
	controlInterval  = 500 * time.Millisecond
	controlMinGap    = 20 * time.Millisecond
	configTimeout    = 5 * time.Second
	promoteLag       = 256
	leaderHysteresis = 10 * time.Second
	statusTimeout    = time.Second
	// openWait bounds how long a leader waits for a node to open a group
	// before adding it (readyToAdd).
	openWait = 5 * time.Second
)

// kick wakes the control loop.
func (n *Node) kick() {
	select {
	case n.kickCh <- struct{}{}:
	default:
	}
}

// run is the node's control loop. join: the node has no cluster yet and must
// join through Config.Join; restarted: it had state before this start.
func (n *Node) run(join, restarted bool) {
	defer n.wg.Done()
	ctx := n.closeCtx
	if join {
		if err := n.join(ctx); err != nil {
			if ctx.Err() == nil {
				n.fail(err)
			}
			return
		}
	} else if restarted && len(n.cfg.Join) > 0 {
		if err := n.checkJoinCluster(ctx); err != nil {
			n.fail(err)
			return
		}
	}
	tick := time.NewTicker(controlInterval)
	defer tick.Stop()
	for {
		n.controlRound(ctx)
		select {
		case <-n.shutdownCh:
			return
		case <-n.kickCh:
		case <-tick.C:
		}
		// At most one round per controlMinGap, however often it is kicked
		// (every metadata change kicks, failed proposals included).
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(controlMinGap):
		}
	}
}

// controlRound does one round of the control loop's work.
func (n *Node) controlRound(ctx context.Context) {
	m := n.metadata()
	self := n.cfg.NodeID
	// Groups this node carries. A node is not ready while one placed on it
	// is not open (a wiped node that joined again opens them once its
	// metadata shows the placement).
	healed := true
	for g := range m.placement {
		if containsNode(n.placed(m, g), self) && n.group(g) == nil {
			if _, err := n.openGroup(g, false); err != nil {
				healed = false
				if ctx.Err() == nil {
					n.log.Warn("opening placed raft group failed", keyGroup, g, keyError, err)
				}
			}
		}
	}
	n.dropStaleGroups(ctx, m)
	if g := n.group(metaGroup); g != nil && g.ready.Load() && m.settings.dataGroups == 0 {
		n.initCluster(ctx)
		m = n.metadata()
	}
	if m.settings.dataGroups > 0 && !n.registered(m) {
		n.register(ctx)
		m = n.metadata()
	}
	// Groups this node leads: membership, leader reports, shard healing. A
	// node becomes ready only after the groups it leads were healed once.
	for _, g := range n.openGroups() {
		n.refreshServers(g)
		if g.raft.State() != raft.Leader {
			if _, id := g.raft.LeaderWithID(); id == "" {
				healed = false // an election may still make this node the leader
			}
			continue
		}
		if !g.ready.Load() {
			healed = false
			continue
		}
		n.reconcileMembership(ctx, g, m)
		if g.id == metaGroup {
			continue
		}
		n.reportLeader(ctx, g, m)
		if tl, ok := m.leaders[g.id]; !ok || tl.Node != n.cfg.NodeID || tl.Term != g.leaderTerm.Load() {
			// Metadata answers name a leader only from the table: not
			// ready before this node's report is in it.
			healed = false
		}
		if g.reconciled.Load() == m {
			continue
		}
		if err := n.reconcileShards(ctx, g, m); err != nil {
			healed = false
			if ctx.Err() == nil {
				n.log.Warn("shard reconcile failed", keyGroup, g.id, keyError, err)
			}
			continue
		}
		g.reconciled.Store(m)
	}
	if !n.initDone.Load() && healed && n.registered(m) && n.metaCaughtUp(ctx) {
		n.initDone.Store(true)
		n.changed()
		n.log.Info("raft node ready", keyCount, len(n.openGroups()))
	}
}

// metaCaughtUp reports whether this node's metadata is current enough to
// answer clients: it leads the metadata group, or it has applied as far as the
// metadata leader's commit index, asked over the status RPC. (A follower's own
// commit index is no guide right after a restart: heartbeats do not carry it,
// so it can look caught up before the leader has told it anything.) A node
// that just restarted would otherwise answer Metadata from its own old copy.
func (n *Node) metaCaughtUp(ctx context.Context) bool {
	g := n.group(metaGroup)
	if g == nil {
		return false
	}
	if g.raft.State() == raft.Leader {
		return g.ready.Load()
	}
	leader, ok := n.metaLeader()
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := n.call(ctx, n.dialAddr(leader), &rpcRequest{Op: opStatus})
	if err != nil || resp.err() != nil {
		return false
	}
	for _, s := range resp.Status {
		if s.Group == metaGroup && s.State == raft.Leader.String() {
			// raft's applied index, not the FSM's: the FSM never sees no-op,
			// barrier or configuration entries.
			return g.raft.AppliedIndex() >= s.CommitIndex
		}
	}
	return false
}

// initCluster stores the cluster id and settings once, on the bootstrapping
// node (or a node upgraded from before cluster settings existed).
func (n *Node) initCluster(ctx context.Context) {
	groups := int64(n.cfg.DataGroups)
	for _, t := range n.metadata().topics {
		for _, p := range t.Partitions {
			groups = max(groups, int64(p.Group))
		}
	}
	c := &Command{Type: CmdInitCluster, ClusterID: n.ClusterID(), DataGroups: groups, ReplicationFactor: int64(n.cfg.ReplicationFactor)}
	if _, _, err := n.proposeLocal(ctx, metaGroup, c); err != nil && ctx.Err() == nil {
		n.log.Warn("cluster initialization failed, retrying", keyError, err)
	}
}

// selfInfo is this node as it registers itself.
func (n *Node) selfInfo() NodeInfo {
	return NodeInfo{ID: n.cfg.NodeID, Incarnation: n.incarnation, ClusterAddr: n.cfg.ClusterAddr, KafkaAddr: n.cfg.KafkaAddr, HTTPAddr: n.cfg.HTTPAddr, Rack: n.cfg.Rack, Listeners: n.cfg.KafkaListeners}
}

// registered reports whether m has this node with its current addresses.
func (n *Node) registered(m *metadata) bool {
	ni, ok := m.nodes[n.cfg.NodeID]
	return ok && *ni == n.selfInfo()
}

// register (re-)registers this node through the metadata leader.
func (n *Node) register(ctx context.Context) {
	self := n.selfInfo()
	ctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	_, err := n.metaOp(ctx, &rpcRequest{Op: opRegister, Node: &self})
	switch {
	case errors.Is(err, ErrNodeRemoved), errors.Is(err, ErrAddrInUse):
		n.fail(err)
	case err != nil && ctx.Err() == nil:
		n.log.Warn("node registration failed, retrying", keyError, err)
	}
}

// join registers this node through the first Config.Join node that answers,
// stores the cluster id it learns, and opens the metadata group.
func (n *Node) join(ctx context.Context) error {
	self := n.selfInfo()
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		for _, seed := range n.cfg.Join {
			cctx, cancel := context.WithTimeout(ctx, configTimeout)
			resp, err := n.call(cctx, seed, &rpcRequest{Op: opRegister, Node: &self})
			cancel()
			if err == nil {
				err = resp.err()
			}
			if errors.Is(err, ErrNodeRemoved) || errors.Is(err, ErrAddrInUse) || errors.Is(err, ErrIdentity) {
				return err
			}
			if err != nil || resp.ClusterID == "" {
				if attempt%10 == 0 {
					n.log.Warn("join attempt failed, retrying", "seed", seed, keyError, err)
				}
				continue
			}
			id := identity{nodeID: n.cfg.NodeID, clusterID: resp.ClusterID, incarnation: n.incarnation}
			if err := saveIdentity(n.store.LogDB(), id); err != nil {
				return err
			}
			n.clusterID.Store(&id.clusterID)
			n.log.Info("joined cluster", keyCluster, id.clusterID, "seed", seed)
			_, err = n.openGroup(metaGroup, false)
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// checkJoinCluster refuses to run a node with state whose --join nodes belong
// to another cluster. Unreachable join nodes are not an error: the node
// rejoins what it knows.
func (n *Node) checkJoinCluster(ctx context.Context) error {
	for _, seed := range n.cfg.Join {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := n.call(cctx, seed, &rpcRequest{Op: opStatus})
		cancel()
		if err != nil || resp.ClusterID == "" {
			continue
		}
		if resp.ClusterID != n.ClusterID() {
			return errorsJoinMismatch(seed, resp.ClusterID, n.ClusterID())
		}
		return nil
	}
	return nil
}

func errorsJoinMismatch(seed, theirs, ours string) error {
	return errors.Join(ErrIdentity, errors.New("--join node "+seed+" belongs to cluster "+theirs+", but this data dir belongs to cluster "+ours+" (use an empty data dir to join another cluster)"))
}

// refreshServers re-reads a group's configuration for readers that must not
// block on Raft (Metadata's ISR, leadership hand-off).
func (n *Node) refreshServers(g *group) {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	g.servers.Store(&servers)
}

// wanted returns the nodes group g should have and which of them should vote.
func (n *Node) wanted(g uint32, m *metadata) (all []int32, voters map[int32]bool) {
	voters = map[int32]bool{}
	if g != metaGroup {
		rs := n.placed(m, g)
		for _, id := range rs {
			voters[id] = true
		}
		return rs, voters
	}
	return m.activeNodes(), nil // voters are chosen in reconcileMembership
}

// reconcileMembership does at most one configuration step on a group this node
// leads (see the file comment).
func (n *Node) reconcileMembership(ctx context.Context, g *group, m *metadata) {
	all, voters := n.wanted(g.id, m)
	if len(all) == 0 {
		return // not placed yet (cluster not initialized)
	}
	p := g.servers.Load()
	if p == nil {
		return
	}
	servers := *p
	self := n.selfServerID()
	// A server is wanted when its node is wanted and its id carries the
	// node's registered incarnation: a wiped node that joined again is a new
	// server, and its old one goes.
	in := map[int32]raft.Server{}
	var stale []raft.Server
	for _, s := range servers {
		id, ok := parseServerID(s.ID)
		if !ok {
			stale = append(stale, s)
			continue
		}
		if ni := m.nodes[id]; ni != nil && s.ID != serverID(id, ni.Incarnation) {
			stale = append(stale, s)
			continue
		}
		in[id] = s
	}
	want := map[int32]bool{}
	for _, id := range all {
		want[id] = true
	}
	for id, s := range in {
		if !want[id] {
			stale = append(stale, s)
		}
	}
	// 1. Remove.
	for _, s := range stale {
		if s.ID == self {
			n.log.Info("handing leadership away before leaving raft group", keyGroup, g.id)
			n.logFuture(g, "leadership transfer", g.raft.LeadershipTransfer())
			return
		}
		n.log.Info("removing server from raft group", keyGroup, g.id, "server_id", s.ID)
		n.logFuture(g, "remove server", g.raft.RemoveServer(s.ID, 0, configTimeout))
		return
	}
	// 2. Add missing ones as non-voters.
	for _, id := range sortedNodeIDs(all) {
		if _, ok := in[id]; ok {
			continue
		}
		ni := m.nodes[id]
		if ni == nil {
			continue
		}
		if !n.readyToAdd(ctx, g, id) {
			return
		}
		n.log.Info("adding non-voter to raft group", keyGroup, g.id, keyPeer, id)
		if g.id != metaGroup {
			n.trimLogForNewServer(g)
		}
		if t, ok := g.trans.(*raft.NetworkTransport); ok {
			// A pooled connection to the address may lead to a process
			// that is gone (a wiped node's old one): the first append
			// would fail on it, and Raft tries again only after
			// CommitTimeout. Dropping the pool costs a dial per peer.
			t.CloseStreams()
		}
		n.logFuture(g, "add non-voter", g.raft.AddNonvoter(serverID(id, ni.Incarnation), raft.ServerAddress(ni.ClusterAddr), 0, configTimeout))
		return
	}
	// 3. Promote.
	if g.id == metaGroup {
		target := metaVoterTarget(len(all))
		count := 0
		for _, s := range in {
			if s.Suffrage == raft.Voter {
				count++
			}
		}
		voters = map[int32]bool{}
		if count < target {
			for _, id := range sortedNodeIDs(all) {
				voters[id] = true
			}
		}
	}
	for _, id := range sortedNodeIDs(all) {
		s := in[id]
		if s.Suffrage == raft.Voter || !voters[id] {
			continue
		}
		if !n.caughtUp(ctx, g, id) {
			continue
		}
		n.log.Info("promoting caught-up replica to voter", keyGroup, g.id, keyPeer, id)
		n.logFuture(g, "add voter", g.raft.AddVoter(s.ID, s.Address, 0, configTimeout))
		return
	}
	// 4. Hand leadership to the preferred leader.
	if g.id == metaGroup || len(all) == 0 || all[0] == n.cfg.NodeID {
		return
	}
	pref, ok := in[all[0]]
	if !ok || pref.Suffrage != raft.Voter || time.Since(time.Unix(0, g.leaderSince.Load())) < leaderHysteresis {
		return
	}
	if n.caughtUp(ctx, g, all[0]) {
		n.log.Info("handing leadership to the preferred leader", keyGroup, g.id, keyPeer, all[0])
		n.logFuture(g, "leadership transfer", g.raft.LeadershipTransferToServer(pref.ID, pref.Address))
	}
}

// readyToAdd reports whether node id has group g open, asked over the status
// RPC, so it can be added now. A node opens a data group once its metadata
// places it there, which for a joining node comes just after its
// registration; a server added before that fails its first AppendEntries, and
// Raft tries again only after CommitTimeout (200-400 ms), which the rebuild of
// a wiped node waited for. While the node is up without the group open, the
// control loop asks again after controlMinGap, for up to openWait; then (an
// older version, a node that cannot open it) the server is added anyway.
func (n *Node) readyToAdd(ctx context.Context, g *group, id int32) bool {
	first, waiting := g.openWaits[id]
	if waiting && time.Since(first) > openWait {
		delete(g.openWaits, id)
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := n.call(ctx, n.dialAddr(id), &rpcRequest{Op: opStatus})
	if err != nil || resp.err() != nil {
		delete(g.openWaits, id)
		return true // not up: Raft's retries find it when it is
	}
	for _, s := range resp.Status {
		if s.Group == g.id {
			delete(g.openWaits, id)
			return true
		}
	}
	if !waiting {
		if g.openWaits == nil {
			g.openWaits = map[int32]time.Time{}
		}
		g.openWaits[id] = time.Now()
	}
	n.kick()
	return false
}

// newServerTrailingLogs is how many entries trimLogForNewServer leaves in the
// log before its snapshot: followers that only lag a little still get
// entries, not a snapshot. The new server needs none of them: it is sent the
// snapshot and the entries after it.
const newServerTrailingLogs = promoteLag

// trimLogForNewServer snapshots data group g and trims its log up to the
// snapshot but for the last newServerTrailingLogs entries, so that a server
// added empty (a new or wiped node, or a placement move), which needs the log
// from index 1, is sent the group as a streamed snapshot, ingested as tables,
// rather than the whole log applied entry by entry: that costs the new server
// several times the CPU per byte (docs/ARCHITECTURE.md, Snapshots), and a log
// under the snapshot threshold can still hold gigabytes of large batches.
// Raft's TrailingLogs is lowered for this one snapshot and put back (trimLog,
// idletrim.go).
//
// A log that an earlier snapshot already trimmed, with at most
// newServerTrailingLogs entries after that snapshot, is left as it is
// (recentSnapshotSuffices): the new server is sent that snapshot and those
// few entries.
func (n *Node) trimLogForNewServer(g *group) {
	if recentSnapshotSuffices(g) {
		return
	}
	n.trimLog(g, newServerTrailingLogs)
}

// recentSnapshotSuffices reports whether group g's log already starts past
// index 1, so a new server is sent a snapshot whatever happens, and its latest
// snapshot is at most newServerTrailingLogs entries behind the log's end. A
// new snapshot would then spare the new server only those few entries, and it
// costs a flush of the state DB (logicalSnapshot.Persist): a table of a few
// bytes in Pebble's L0, and a few of those make Pebble compact L0 into Lbase,
// rewriting tens of MB of tables on this leader while it streams the snapshot
// (docs/ARCHITECTURE.md, Membership reconcile).
func recentSnapshotSuffices(g *group) bool {
	first, err := g.logs.FirstIndex()
	if err != nil || first <= 1 {
		return false
	}
	metas, err := g.snaps.List()
	if err != nil || len(metas) == 0 {
		return false
	}
	// List is newest first.
	return g.raft.LastIndex() <= metas[0].Index+newServerTrailingLogs
}

// staleServer reports whether id is a server of a node that has registered
// another incarnation since: a wiped node's old server. What listens at its
// address is the new incarnation, which must not get the old one's traffic
// (see the file comment).
func (n *Node) staleServer(id raft.ServerID) bool {
	node, ok := parseServerID(id)
	if !ok {
		return false
	}
	ni := n.metadata().nodes[node]
	return ni != nil && id != serverID(node, ni.Incarnation)
}

func (n *Node) logFuture(g *group, what string, f raft.Future) {
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
		n.log.Warn("raft configuration change failed", "change", what, keyGroup, g.id, keyError, err)
	}
}

// caughtUp asks node id how far it has applied group g and compares that with
// this leader's commit index.
func (n *Node) caughtUp(ctx context.Context, g *group, id int32) bool {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := n.call(ctx, n.dialAddr(id), &rpcRequest{Op: opStatus})
	if err != nil || resp.err() != nil {
		return false
	}
	commit := g.raft.CommitIndex()
	for _, s := range resp.Status {
		if s.Group == g.id {
			return s.AppliedIndex+promoteLag >= commit
		}
	}
	return false
}

// reportLeader tells the metadata group that this node leads data group g in
// its current term, so nodes that do not carry g can name its leader. It runs
// in the background (one report per group at a time), so a metadata group
// without a leader does not hold up the control loop.
func (n *Node) reportLeader(ctx context.Context, g *group, m *metadata) {
	// The term this node won, recorded with its Barrier: CurrentTerm read now
	// could already belong to an election after a step-down.
	term := g.leaderTerm.Load()
	if term == 0 {
		return
	}
	if cur, ok := m.leaders[g.id]; ok && cur.Node == n.cfg.NodeID && cur.Term == term {
		return
	}
	if !g.reporting.CompareAndSwap(false, true) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer g.reporting.Store(false)
		ctx, cancel := context.WithTimeout(ctx, configTimeout)
		defer cancel()
		if _, err := n.metaOp(ctx, &rpcRequest{Op: opSetLeader, Group: g.id, NodeID: n.cfg.NodeID, Term: term}); err != nil && ctx.Err() == nil {
			n.log.Debug("leader report failed", keyGroup, g.id, keyError, err)
		}
	}()
}

// reconcileShards heals a data group this node leads: shards that metadata
// places on the group but the store lacks are created, and shards the store
// has but no topic owns are deleted. It covers a crash between a topic's
// metadata command and its shard commands, and a shard command that could not
// reach the group's leader. Only shard ids this node's metadata has allocated
// are deleted: a newer shard may belong to a topic whose creation this node's
// metadata has not applied yet.
func (n *Node) reconcileShards(ctx context.Context, g *group, m *metadata) error {
	want := m.shardGroups()
	var create, del []shardstore.ShardID
	for s, grp := range want {
		if grp != g.id {
			continue
		}
		if _, err := n.store.State(s); errors.Is(err, shardstore.ErrUnknownShard) {
			create = append(create, s)
		}
	}
	for _, s := range n.store.GroupShards(g.id) {
		if _, ok := want[s]; !ok && uint64(s) < m.nextShard {
			del = append(del, s)
		}
	}
	sort.Slice(create, func(i, j int) bool { return create[i] < create[j] })
	sort.Slice(del, func(i, j int) bool { return del[i] < del[j] })
	if len(create) > 0 {
		n.log.Info("creating missing shards", keyGroup, g.id, keyCount, len(create))
		if _, _, err := n.propose(ctx, g, &Command{Type: CmdCreateShards, Shards: create}); err != nil {
			return err
		}
	}
	if len(del) > 0 {
		n.log.Info("deleting orphan shards", keyGroup, g.id, keyCount, len(del))
		if _, _, err := n.propose(ctx, g, &Command{Type: CmdDeleteShards, Shards: del}); err != nil {
			return err
		}
	}
	return nil
}
