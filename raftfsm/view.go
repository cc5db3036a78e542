package raftfsm

// The cluster as Kafka clients see it: nodes, and for each data group its
// leader, leader epoch, replicas and in-sync replicas. Everything here reads
// memory only (the published metadata, the raft library's atomics, the
// configuration the control loop last read), so Metadata requests never wait
// on Raft.

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Nodes returns the registered nodes that were not removed, by id.
func (n *Node) Nodes() []NodeInfo {
	m := n.metadata()
	ids := m.activeNodes()
	out := make([]NodeInfo, 0, len(ids))
	for _, id := range ids {
		out = append(out, *m.nodes[id])
	}
	return out
}

// TopicIDs maps every topic's name to its id: a cheap way to see which topics
// went away or were re-created (same name, new id) since an earlier call.
func (n *Node) TopicIDs() map[string][16]byte {
	m := n.metadata()
	out := make(map[string][16]byte, len(m.topics))
	for name, t := range m.topics {
		out[name] = t.ID
	}
	return out
}

// TopicID returns a topic's id.
func (n *Node) TopicID(name string) ([16]byte, bool) {
	t, ok := n.metadata().topics[name]
	if !ok {
		return [16]byte{}, false
	}
	return t.ID, true
}

// MetadataChanged returns a channel closed at the next change of this node's
// metadata or readiness; call it again for the change after that. Read the
// state after taking the channel, so no change is missed.
func (n *Node) MetadataChanged() <-chan struct{} { return n.stateChan() }

// AllNodes returns every registered node, removed ones included, by id.
func (n *Node) AllNodes() []NodeInfo {
	m := n.metadata()
	out := make([]NodeInfo, 0, len(m.nodes))
	for _, ni := range m.nodes {
		out = append(out, *ni)
	}
	sortNodeInfos(out)
	return out
}

// NodeInfo returns one registered node.
func (n *Node) NodeInfo(id int32) (NodeInfo, bool) {
	ni, ok := n.metadata().nodes[id]
	if !ok {
		return NodeInfo{}, false
	}
	return *ni, true
}

// GroupLeader returns the leader of group g and its Kafka leader epoch (the
// Raft term it won), from the leader table the metadata group keeps: each new
// leader reports itself with the term it won once its Barrier applied. Every
// node answers from that one replicated table, applied in order, so an epoch
// never names two leaders and a node's answers never go back. (A node's own
// Raft view would not do: a follower pairs the leader it last heard from with
// its current term, which may belong to an election that leader lost, and a
// leader that answered for itself before its report was committed could,
// after a restart, answer an older epoch from the table.) The table lags a new
// leader's report by a moment; meanwhile the old leader answers
// NOT_LEADER_OR_FOLLOWER and clients ask again. ok is false when no leader is
// known, or when the table names this node and it no longer leads in that
// term.
func (n *Node) GroupLeader(g uint32) (leader int32, epoch int32, ok bool) {
	if g == metaGroup {
		// Every node carries the metadata group; it has no partitions, so
		// its own Raft view is enough.
		grp := n.group(g)
		if grp == nil {
			return -1, -1, false
		}
		if grp.raft.State() == raft.Leader && grp.ready.Load() {
			return n.cfg.NodeID, int32(grp.leaderTerm.Load()), true
		}
		if id, ok := n.metaLeader(); ok {
			return id, int32(grp.raft.CurrentTerm()), true
		}
		return -1, -1, false
	}
	tl, haveTable := n.metadata().leaders[g]
	if !haveTable || tl.Node < 0 {
		return -1, -1, false
	}
	if tl.Node == n.cfg.NodeID {
		grp := n.group(g)
		if grp == nil || grp.raft.State() != raft.Leader || !grp.ready.Load() || grp.leaderTerm.Load() != tl.Term {
			return -1, -1, false
		}
	}
	return tl.Node, int32(tl.Term), true
}

// RaftLeader returns the leader of group g as this node's Raft knows it (the
// last leader it heard from), without the leader table's guarantees: a
// routing hint for while the table lags a new leader, never an epoch.
func (n *Node) RaftLeader(g uint32) (int32, bool) {
	grp := n.group(g)
	if grp == nil {
		return 0, false
	}
	_, id := grp.raft.LeaderWithID()
	if id == "" {
		return 0, false
	}
	return parseServerID(id)
}

// IsLeader reports whether this node leads group g and has applied its whole
// log in this term (so it may answer for the group's partitions).
func (n *Node) IsLeader(g uint32) bool {
	grp := n.group(g)
	return grp != nil && grp.raft.State() == raft.Leader && grp.ready.Load()
}

// LeadsLoading reports whether this node leads group g but has not yet applied
// its whole log in this term (its Barrier is under way).
func (n *Node) LeadsLoading(g uint32) bool {
	grp := n.group(g)
	return grp != nil && grp.raft.State() == raft.Leader && !grp.ready.Load()
}

// Carries reports whether this node holds a replica of group g.
func (n *Node) Carries(g uint32) bool { return n.group(g) != nil }

// LeaderEpoch is the Kafka leader epoch of group g's partitions (see
// GroupLeader), -1 when unknown.
func (n *Node) LeaderEpoch(g uint32) int32 {
	_, e, _ := n.GroupLeader(g)
	return e
}

// Replicas returns the nodes placed on group g, preferred leader first.
func (n *Node) Replicas(g uint32) []int32 {
	return append([]int32(nil), n.metadata().placement[g]...)
}

// InSync returns the in-sync replicas of group g (isr.go): the voters of its
// configuration as this node last read it (a node that does not carry g uses
// the placement) that lead the group or were seen caught up with its leader
// within isrLagTime. A single node on the in-memory transport answers its
// voters.
func (n *Node) InSync(g uint32) []int32 {
	voters := n.Replicas(g)
	if grp := n.group(g); grp != nil {
		if p := grp.servers.Load(); p != nil {
			voters = voters[:0]
			for _, s := range *p {
				if s.Suffrage != raft.Voter {
					continue
				}
				if id, ok := parseServerID(s.ID); ok {
					voters = append(voters, id)
				}
			}
		}
	}
	if n.mux == nil {
		return sortedNodeIDs(voters)
	}
	leader, _, hasLeader := n.GroupLeader(g)
	now := n.cfg.Now()
	out := make([]int32, 0, len(voters))
	for _, id := range voters {
		if (hasLeader && id == leader) || n.isr.inSync(g, id, now) {
			out = append(out, id)
		}
	}
	return sortedNodeIDs(out)
}

// MetadataLeader returns the metadata group's leader, -1 when unknown.
func (n *Node) MetadataLeader() int32 {
	if id, ok := n.metaLeader(); ok {
		return id
	}
	return -1
}

// replicaStaleAfter, in election timeouts, is how long a replica may go
// without hearing from its leader and still serve reads.
const replicaStaleAfter = 5

func sortNodeInfos(ns []NodeInfo) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].ID < ns[j].ID })
}

// RemoveNode removes a node from the cluster, an operator's action for a node
// that is gone for good: the metadata group places its replicas on the other
// nodes (cluster.go), and each group's leader then adds the new replicas and
// removes the old one from its configuration (membership.go). Any node accepts
// it. Errors: ErrUnknownNode, ErrBadRequest (the last node).
func (n *Node) RemoveNode(ctx context.Context, id int32) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	// The metadata leader judges whether id exists: this node's metadata
	// may not have a node that joined a moment ago.
	_, err := n.metaOp(ctx, &rpcRequest{Op: opRemoveNode, NodeID: id})
	return err
}

// ReplicaFresh reports whether this node's replica of group g may serve reads:
// it carries g, its FSM has not stopped, and it leads or has heard from a
// leader within a few election timeouts. A replica cut off from its leader
// stops serving, so consumers go back to the leader instead of reading an
// ever older copy.
func (n *Node) ReplicaFresh(g uint32) bool {
	grp := n.group(g)
	if grp == nil || grp.fsm.stopped.Load() {
		return false
	}
	if grp.raft.State() == raft.Leader {
		return true
	}
	last := grp.raft.LastContact()
	return !last.IsZero() && time.Since(last) < replicaStaleAfter*n.cfg.ElectionTimeout
}
