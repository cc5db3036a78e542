package raftfsm

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Cluster membership as the metadata group keeps it: the registered nodes, the
// settings chosen when the cluster was bootstrapped, where each data group's
// replicas live, and the last leader each data group reported. All of it is
// replicated through the metadata group, so every node (voter or not) can answer
// Kafka Metadata for every partition, including those of groups it does not
// carry.
//
// Stored keys, beside the topic keys of metadata.go:
//
//	'm' 's'                 -> settings: version | uvarint data groups | uvarint replication factor
//	'm' 'b' <node id:4 BE>  -> node: version | NodeInfo encoding
//	'm' 'g' <group:4 BE>    -> placement: version | uvarint n | varint node ids (first = preferred leader)
//	'm' 'l' <group:4 BE>    -> leader: version | varint node id | uvarint term
const (
	metaKindSettings  = 's'
	metaKindNode      = 'b'
	metaKindPlacement = 'g'
	metaKindLeader    = 'l'
)

// NodeInfo is one registered node.
type NodeInfo struct {
	ID int32
	// Incarnation is drawn when the node's data dir is created; it is part of
	// the node's Raft server ids (identity.go).
	Incarnation uint32
	// ClusterAddr is the node-to-node address other nodes dial (--advertised-cluster-addr).
	ClusterAddr string
	// KafkaAddr is the host:port Kafka clients are told to use.
	KafkaAddr string
	// HTTPAddr is the host:port of the node's HTTP server ("" when unknown).
	HTTPAddr string
	// Rack is the node's rack (--rack), "" for none.
	Rack string
	// Listeners are the node's advertised Kafka listeners when it has more
	// than the one at KafkaAddr, as "NAME://host:port,..." (--listeners);
	// "" when KafkaAddr is its only listener. A string keeps NodeInfo
	// comparable.
	Listeners string
	// Removed marks a node an operator removed; it is kept so its id is never
	// reused by mistake and its removal is visible.
	Removed bool
}

// GroupLeader is the leader a data group last reported through the metadata
// group, with the Raft term it won. Nodes that do not carry the group use it.
type GroupLeader struct {
	Node int32
	Term uint64
}

// clusterSettings are chosen once, when the cluster is bootstrapped.
type clusterSettings struct {
	dataGroups        int
	replicationFactor int
}

func uint32Key(kind byte, v uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixMeta, kind}, v)
}

func (w metaWriter) putSettings(s clusterSettings) error {
	v := []byte{metaValueVersion}
	v = binary.AppendUvarint(v, uint64(s.dataGroups))
	v = binary.AppendUvarint(v, uint64(s.replicationFactor))
	return w.b.Set([]byte{prefixMeta, metaKindSettings}, v, nil)
}

func (w metaWriter) putNode(n *NodeInfo) error {
	return w.b.Set(uint32Key(metaKindNode, uint32(n.ID)), appendNodeInfo([]byte{metaValueVersion}, n), nil)
}

func (w metaWriter) putPlacement(g uint32, replicas []int32) error {
	v := []byte{metaValueVersion}
	v = binary.AppendUvarint(v, uint64(len(replicas)))
	for _, id := range replicas {
		v = binary.AppendVarint(v, int64(id))
	}
	return w.b.Set(uint32Key(metaKindPlacement, g), v, nil)
}

func (w metaWriter) putLeader(g uint32, l GroupLeader) error {
	v := []byte{metaValueVersion}
	v = binary.AppendVarint(v, int64(l.Node))
	v = binary.AppendUvarint(v, l.Term)
	return w.b.Set(uint32Key(metaKindLeader, g), v, nil)
}

func appendNodeInfo(dst []byte, n *NodeInfo) []byte {
	dst = binary.AppendVarint(dst, int64(n.ID))
	dst = binary.AppendUvarint(dst, uint64(n.Incarnation))
	dst = appendString(dst, n.ClusterAddr)
	dst = appendString(dst, n.KafkaAddr)
	dst = appendString(dst, n.HTTPAddr)
	dst = appendString(dst, n.Rack)
	dst = appendBool(dst, n.Removed)
	if n.Listeners != "" {
		// Optional and last, so that nodes without listeners encode as
		// before this field existed and older entries decode unchanged.
		dst = appendString(dst, n.Listeners)
	}
	return dst
}

func (d *decoder) nodeInfo(n *NodeInfo) {
	n.ID = int32(d.varintRange(0, 1<<31-1))
	n.Incarnation = uint32(d.uvarintMax(1<<32 - 1))
	n.ClusterAddr = d.string()
	n.KafkaAddr = d.string()
	n.HTTPAddr = d.string()
	n.Rack = d.string()
	n.Removed = d.bool()
	if len(d.b) > 0 && d.err == nil {
		n.Listeners = d.string()
	}
}

// loadClusterKey decodes one of the cluster keys into m; it reports false for a
// kind it does not own.
func (m *metadata) loadClusterKey(k []byte, d *decoder) bool {
	switch k[1] {
	case metaKindSettings:
		m.settings.dataGroups = int(d.uvarint())
		m.settings.replicationFactor = int(d.uvarint())
	case metaKindNode:
		n := &NodeInfo{}
		d.nodeInfo(n)
		m.nodes[n.ID] = n
	case metaKindPlacement:
		if len(k) != 6 {
			d.fail("placement key")
			return true
		}
		cnt := d.count(1)
		rs := make([]int32, 0, cnt)
		for i := 0; i < cnt && d.err == nil; i++ {
			rs = append(rs, int32(d.varintRange(0, 1<<31-1)))
		}
		m.placement[binary.BigEndian.Uint32(k[2:])] = rs
	case metaKindLeader:
		if len(k) != 6 {
			d.fail("leader key")
			return true
		}
		l := GroupLeader{Node: int32(d.varintRange(-1, 1<<31-1)), Term: d.uvarint()}
		m.leaders[binary.BigEndian.Uint32(k[2:])] = l
	default:
		return false
	}
	return true
}

// activeNodes returns the ids of registered nodes that were not removed,
// ascending.
func (m *metadata) activeNodes() []int32 {
	var ids []int32
	for id, n := range m.nodes {
		if !n.Removed {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// replace recomputes the placement after a change of nodes and writes the
// groups whose replicas changed.
func (m *metadata) replace(w metaWriter) error {
	if m.settings.dataGroups == 0 {
		return nil // not initialized yet: placed at CmdInitCluster
	}
	next := placeGroups(m.placement, m.activeNodes(), m.settings.dataGroups, m.settings.replicationFactor)
	for g, rs := range next {
		if equalNodes(m.placement[g], rs) {
			continue
		}
		m.placement[g] = rs
		if err := w.putPlacement(g, rs); err != nil {
			return err
		}
	}
	return nil
}

func equalNodes(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// applyCluster applies the membership commands to the metadata clone m.
func (p *processor) applyCluster(w metaWriter, m *metadata, c *Command) any {
	switch c.Type {
	case CmdInitCluster:
		if m.clusterID == "" && c.ClusterID != "" {
			m.clusterID = c.ClusterID
			if err := w.putClusterID(c.ClusterID); err != nil {
				return err
			}
		}
		if m.settings.dataGroups == 0 {
			if c.DataGroups < 1 || c.DataGroups > maxDataGroups || c.ReplicationFactor < 1 {
				return fmt.Errorf("%w: init cluster with %d groups, replication factor %d", ErrBadCommand, c.DataGroups, c.ReplicationFactor)
			}
			m.settings = clusterSettings{dataGroups: int(c.DataGroups), replicationFactor: int(c.ReplicationFactor)}
			if err := w.putSettings(m.settings); err != nil {
				return err
			}
			if err := m.replace(w); err != nil {
				return err
			}
		}
		return m.clusterID
	case CmdRegisterNode:
		n := c.Member
		if n.ID < 0 || n.ClusterAddr == "" {
			return fmt.Errorf("%w: register node %d at %q", ErrBadCommand, n.ID, n.ClusterAddr)
		}
		if old, ok := m.nodes[n.ID]; ok && old.Removed {
			return fmt.Errorf("%w: node %d was removed from the cluster; give the new node another --node-id", ErrNodeRemoved, n.ID)
		}
		for _, other := range m.nodes {
			if other.ID != n.ID && !other.Removed && other.ClusterAddr == n.ClusterAddr {
				return fmt.Errorf("%w: cluster address %s is node %d's", ErrAddrInUse, n.ClusterAddr, other.ID)
			}
		}
		n.Removed = false
		m.nodes[n.ID] = &n
		if err := w.putNode(&n); err != nil {
			return err
		}
		return m.replace(w)
	case CmdRemoveNode:
		old, ok := m.nodes[c.NodeID]
		if !ok {
			return ErrUnknownNode
		}
		if old.Removed {
			return nil
		}
		if len(m.activeNodes()) <= 1 {
			return fmt.Errorf("%w: node %d is the last one", ErrBadRequest, c.NodeID)
		}
		n := *old
		n.Removed = true
		m.nodes[n.ID] = &n
		if err := w.putNode(&n); err != nil {
			return err
		}
		return m.replace(w)
	case CmdSetGroupLeader:
		// Terms only grow: a late report of an older term changes nothing, so
		// leader epochs never go back.
		if cur, ok := m.leaders[c.Group]; ok && cur.Term > c.Term {
			return nil
		}
		l := GroupLeader{Node: c.NodeID, Term: c.Term}
		m.leaders[c.Group] = l
		return w.putLeader(c.Group, l)
	}
	return fmt.Errorf("%w: unknown type %d", ErrBadCommand, uint8(c.Type))
}
