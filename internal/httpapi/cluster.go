package httpapi

// The cluster as one node sees it, and the operator's removal of a dead node.
//
//	GET    /v1/cluster             nodes and Raft groups (clusterResponse)
//	GET    /v1/cluster/local       this node's own Raft groups (localResponse)
//	DELETE /v1/cluster/nodes/{id}  remove a node that is gone for good
//
// Behavior:
//   - /v1/cluster answers from this node's cluster metadata (nodes, placement,
//     leaders) and its own Raft groups, then asks every other active node's
//     /v1/cluster/local, concurrently, within peerTimeout for all of them. A
//     node that answers as itself is "alive"; one that does not is
//     "unreachable"; a node an operator removed is "removed" and is not asked.
//     The answer never waits longer than peerTimeout for peers, so it also
//     serves while part of the cluster is down, which is when it is wanted.
//   - Term, configuration and indexes of a Raft group come from its leader's
//     own report when the leader answered, else from the answering replica
//     with the highest term (reported_by names it). replica_lag is each
//     replica's distance from that commit index; null when the replica did
//     not answer or does not carry the group yet.
//   - /v1/cluster/local reads memory only and never asks another node, so a
//     fan-out cannot cascade. The fan-out is over HTTPS with Config.PeerTLS,
//     and carries the caller's bearer token when authentication is on
//     (auth.go).
//   - DELETE calls raftfsm's Node.RemoveNode: the metadata group places the
//     node's replicas on the other nodes and each Raft group's leader then
//     moves its configuration (raftfsm/membership.go). It answers once this
//     node's metadata has the change; replicas move afterwards. Removing a
//     removed node again succeeds. A removed id can never rejoin.
//   - Errors are JSON {"error", "code"}: 400 bad_request, 404 unknown_node,
//     503 not_ready, 500 internal_error.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shardcache/shardcache/raftfsm"
)

const (
	// peerTimeout bounds the whole fan-out of one GET /v1/cluster to the other
	// nodes; a node that has not answered by then is unreachable.
	peerTimeout = 500 * time.Millisecond
	// maxPeerResponseBytes bounds one /v1/cluster/local body read from a peer
	// (1,025 Raft groups take about 250 KiB).
	maxPeerResponseBytes = 4 << 20
	// maxPeerRequests bounds the concurrent peer requests of one /v1/cluster.
	maxPeerRequests = 16
	// removeNodeTimeout bounds DELETE /v1/cluster/nodes/{id}.
	removeNodeTimeout = 15 * time.Second
	// maxNodeIDDigits: node ids are int32 >= 0.
	maxNodeIDDigits = 10
)

// Node states in /v1/cluster.
const (
	nodeAlive       = "alive"
	nodeUnreachable = "unreachable"
	nodeRemoved     = "removed"
)

const codeUnknownNode = "unknown_node"

// clusterResponse is the GET /v1/cluster document.
type clusterResponse struct {
	ClusterID string `json:"cluster_id"`
	// NodeID is the node that answered.
	NodeID int32 `json:"node_id"`
	// MetadataLeader leads Raft group 0, -1 when unknown.
	MetadataLeader int32              `json:"metadata_leader"`
	Nodes          []clusterNode      `json:"nodes"`
	RaftGroups     []clusterRaftGroup `json:"raft_groups"`
}

// clusterNode is one registered node.
type clusterNode struct {
	ID          int32  `json:"id"`
	ClusterAddr string `json:"cluster_addr"`
	KafkaAddr   string `json:"kafka_addr"`
	HTTPAddr    string `json:"http_addr"`
	Rack        string `json:"rack"`
	// State is nodeAlive, nodeUnreachable or nodeRemoved.
	State string `json:"state"`
	// Ready is the node's own readiness (its /readyz), for alive nodes only.
	Ready *bool `json:"ready,omitempty"`
	// Error says why a node is unreachable, or why an alive node is not ready.
	Error string `json:"error,omitempty"`
}

// clusterRaftGroup is one Raft group: 0 is cluster metadata, 1..N data.
type clusterRaftGroup struct {
	RaftGroupID uint32 `json:"raft_group_id"`
	// Replicas are the nodes placed on the group, preferred leader first; for
	// group 0, every active node (it follows the metadata group).
	Replicas []int32 `json:"replicas"`
	// Leader is the group's leader as this node knows it, -1 when unknown.
	Leader int32 `json:"leader"`
	// Term is the current Raft term (a data group's Kafka leader epoch).
	Term uint64 `json:"term"`
	// Voters and Nonvoters are the group's Raft configuration.
	Voters    []int32 `json:"voters"`
	Nonvoters []int32 `json:"nonvoters"`
	// CommitIndex and AppliedIndex are reported_by's.
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// ReplicaLag maps each replica (and each server in the configuration) to
	// how many entries its applied index is behind CommitIndex; null when it
	// did not answer or does not carry the group.
	ReplicaLag map[string]*uint64 `json:"replica_lag"`
	// ReportedBy is the node whose report gave term, configuration and
	// indexes: the leader when it answered; -1 when no node carrying the group
	// answered.
	ReportedBy int32 `json:"reported_by"`
}

// localResponse is the GET /v1/cluster/local document: this node's own view
// of the Raft groups it carries.
type localResponse struct {
	ClusterID  string           `json:"cluster_id"`
	NodeID     int32            `json:"node_id"`
	Ready      bool             `json:"ready"`
	RaftGroups []localRaftGroup `json:"raft_groups"`
}

type localRaftGroup struct {
	RaftGroupID uint32 `json:"raft_group_id"`
	// State is the Raft role: Leader, Follower, Candidate or Shutdown.
	State string `json:"state"`
	// Leader is the leader this replica follows, -1 when unknown.
	Leader       int32   `json:"leader"`
	Term         uint64  `json:"term"`
	LastIndex    uint64  `json:"last_index"`
	CommitIndex  uint64  `json:"commit_index"`
	AppliedIndex uint64  `json:"applied_index"`
	Ready        bool    `json:"ready"`
	Voters       []int32 `json:"voters"`
	Nonvoters    []int32 `json:"nonvoters"`
}

// removeNodeResponse answers DELETE /v1/cluster/nodes/{id}.
type removeNodeResponse struct {
	RemovedNodeID int32         `json:"removed_node_id"`
	Nodes         []clusterNode `json:"nodes"`
}

// newPeerClient is the client /v1/cluster asks other nodes with: no proxy
// from the environment, no redirects, every step bounded by peerTimeout;
// over TLS with tlsCfg when it is set.
func newPeerClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:        tlsCfg,
			TLSHandshakeTimeout:    peerTimeout,
			DialContext:            (&net.Dialer{Timeout: peerTimeout}).DialContext,
			ResponseHeaderTimeout:  peerTimeout,
			MaxResponseHeaderBytes: 64 << 10,
			MaxIdleConnsPerHost:    2,
			IdleConnTimeout:        30 * time.Second,
			DisableCompression:     true,
		},
		Timeout:       peerTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clusterLocal serves GET /v1/cluster/local.
func (h *Handler) clusterLocal(w http.ResponseWriter, _ *http.Request) {
	b, aerr := h.backendOpen()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, localView(b.Node))
}

// cluster serves GET /v1/cluster.
func (h *Handler) cluster(w http.ResponseWriter, r *http.Request) {
	b, aerr := h.backendOpen()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, h.clusterView(r.Context(), b.Node))
}

// removeNode serves DELETE /v1/cluster/nodes/{id}.
func (h *Handler) removeNode(w http.ResponseWriter, r *http.Request) {
	id, aerr := parseNodeID(r.PathValue("id"))
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	b, aerr := h.backendOpen()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), removeNodeTimeout)
	err := b.Node.RemoveNode(ctx, id)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, raftfsm.ErrUnknownNode):
		writeAPIError(w, errorf(http.StatusNotFound, codeUnknownNode, "no node %d is registered in the cluster", id))
		return
	case errors.Is(err, raftfsm.ErrBadRequest):
		writeAPIError(w, errorf(http.StatusBadRequest, codeBadRequest, "node %d cannot be removed: it is the cluster's last active node", id))
		return
	case errors.Is(err, raftfsm.ErrNotReady), errors.Is(err, raftfsm.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		h.log.Warn("node removal not done", keyPeer, id, keyError, err)
		writeAPIError(w, errorf(http.StatusServiceUnavailable, codeNotReady,
			"the removal of node %d was not confirmed: the metadata group has no reachable leader or this node is not ready; retry (removing a removed node again is harmless)", id))
		return
	default:
		h.log.Error("node removal failed", keyPeer, id, keyError, err)
		writeAPIError(w, errorf(http.StatusInternalServerError, codeInternal, "removing node %d failed", id))
		return
	}
	h.log.Info("node removed through the http api", keyPeer, id)
	all := b.Node.AllNodes()
	ctx, cancel = context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	peers := h.askPeers(ctx, b.Node.NodeID(), b.Node.ClusterID(), all)
	writeJSON(w, http.StatusOK, &removeNodeResponse{RemovedNodeID: id, Nodes: nodeStates(all, b.Node, peers)})
}

// parseNodeID parses the {id} of a node path: decimal digits only, an int32.
func parseNodeID(s string) (int32, *apiError) {
	bad := func() (int32, *apiError) {
		shown := s
		if len(shown) > 32 {
			shown = shown[:32] + "..."
		}
		return 0, errorf(http.StatusBadRequest, codeBadRequest, "%q is not a node id: use its decimal number, 0 to 2147483647", shown)
	}
	if s == "" || len(s) > maxNodeIDDigits || strings.Trim(s, "0123456789") != "" {
		return bad()
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return bad()
	}
	return int32(v), nil
}

// localView is this node's report of its own Raft groups.
func localView(n *raftfsm.Node) *localResponse {
	sts := n.GroupStatuses()
	out := &localResponse{ClusterID: n.ClusterID(), NodeID: n.NodeID(), Ready: n.Ready(), RaftGroups: make([]localRaftGroup, 0, len(sts))}
	for _, s := range sts {
		out.RaftGroups = append(out.RaftGroups, localRaftGroup{
			RaftGroupID: s.Group, State: s.State, Leader: s.LeaderNode, Term: s.Term,
			LastIndex: s.LastIndex, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, Ready: s.Ready,
			Voters: nonNil(s.Voters), Nonvoters: nonNil(s.Nonvoters),
		})
	}
	return out
}

func nonNil(ids []int32) []int32 {
	if ids == nil {
		return []int32{}
	}
	return ids
}

// peerAnswer is what one node's /v1/cluster/local gave.
type peerAnswer struct {
	local *localResponse // nil unless it answered 200 as the node asked
	// alive: the node's HTTP port answered as a shardcache node (a starting
	// node answers 503 not_ready and is alive but not ready).
	alive bool
	err   string
}

// askPeers asks every active node but self for its /v1/cluster/local,
// concurrently, until ctx ends. It waits for every request it started.
func (h *Handler) askPeers(ctx context.Context, self int32, clusterID string, nodes []raftfsm.NodeInfo) map[int32]*peerAnswer {
	out := make(map[int32]*peerAnswer, len(nodes))
	var asked []raftfsm.NodeInfo
	for _, ni := range nodes {
		if ni.ID == self || ni.Removed {
			continue
		}
		if ni.HTTPAddr == "" {
			out[ni.ID] = &peerAnswer{err: "no HTTP address registered"}
			continue
		}
		asked = append(asked, ni)
	}
	answers := make([]peerAnswer, len(asked))
	sem := make(chan struct{}, maxPeerRequests)
	var wg sync.WaitGroup
	for i := range asked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				answers[i] = h.askPeer(ctx, asked[i], clusterID)
			case <-ctx.Done():
				answers[i] = peerAnswer{err: fmt.Sprintf("no answer within %s", peerTimeout)}
			}
		}()
	}
	wg.Wait()
	for i, ni := range asked {
		out[ni.ID] = &answers[i]
	}
	return out
}

// askPeer fetches one node's /v1/cluster/local and checks that it answers as
// that node of this cluster.
func (h *Handler) askPeer(ctx context.Context, ni raftfsm.NodeInfo, clusterID string) peerAnswer {
	u := url.URL{Scheme: "http", Host: ni.HTTPAddr, Path: "/v1/cluster/local"}
	if h.cfg.PeerTLS != nil {
		u.Scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return peerAnswer{err: fmt.Sprintf("bad HTTP address %q", ni.HTTPAddr)}
	}
	req.Header.Set("Accept", "application/json")
	if auth := forwardAuth(ctx); auth != "" {
		req.Header.Set("Authorization", auth) // the caller's own, checked (auth.go)
	}
	resp, err := h.peers.Do(req)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return peerAnswer{err: fmt.Sprintf("no answer within %s", peerTimeout)}
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return peerAnswer{err: "not reachable: " + err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerResponseBytes+1))
	switch {
	case err != nil:
		return peerAnswer{err: "reading its answer failed: " + err.Error()}
	case len(body) > maxPeerResponseBytes:
		return peerAnswer{err: fmt.Sprintf("answer over %d bytes", maxPeerResponseBytes)}
	}
	if resp.StatusCode != http.StatusOK {
		var e apiErrorBody
		if resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(body, &e) == nil && e.Code == codeNotReady {
			return peerAnswer{alive: true, err: e.Error}
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return peerAnswer{err: fmt.Sprintf("answered HTTP %d: it does not accept the caller's credentials (a client certificate is not forwarded)", resp.StatusCode)}
		}
		return peerAnswer{err: fmt.Sprintf("answered HTTP %d", resp.StatusCode)}
	}
	var lr localResponse
	if err := json.Unmarshal(body, &lr); err != nil {
		return peerAnswer{err: "answered something that is not a shardcache node status"}
	}
	switch {
	case lr.NodeID != ni.ID:
		return peerAnswer{err: fmt.Sprintf("its HTTP address answers as node %d", lr.NodeID)}
	case lr.ClusterID != "" && clusterID != "" && lr.ClusterID != clusterID:
		return peerAnswer{err: fmt.Sprintf("its HTTP address answers for cluster %q", lr.ClusterID)}
	}
	return peerAnswer{local: &lr, alive: true}
}

// nodeStates lists every registered node with its state.
func nodeStates(all []raftfsm.NodeInfo, n *raftfsm.Node, peers map[int32]*peerAnswer) []clusterNode {
	out := make([]clusterNode, 0, len(all))
	for _, ni := range all {
		cn := clusterNode{ID: ni.ID, ClusterAddr: ni.ClusterAddr, KafkaAddr: ni.KafkaAddr, HTTPAddr: ni.HTTPAddr, Rack: ni.Rack}
		switch p := peers[ni.ID]; {
		case ni.Removed:
			cn.State = nodeRemoved
		case ni.ID == n.NodeID():
			cn.State = nodeAlive
			ready := n.Ready()
			cn.Ready = &ready
		case p != nil && p.alive:
			cn.State = nodeAlive
			ready := p.local != nil && p.local.Ready
			cn.Ready = &ready
			cn.Error = p.err
		default:
			cn.State = nodeUnreachable
			if p != nil {
				cn.Error = p.err
			}
		}
		out = append(out, cn)
	}
	return out
}

// clusterView builds the /v1/cluster document.
func (h *Handler) clusterView(ctx context.Context, n *raftfsm.Node) *clusterResponse {
	self := n.NodeID()
	all := n.AllNodes()
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	peers := h.askPeers(ctx, self, n.ClusterID(), all)
	cancel()

	// reports[node][raft group] is what each answering node says of a group.
	reports := map[int32]map[uint32]*localRaftGroup{}
	addReports := func(lr *localResponse) {
		m := make(map[uint32]*localRaftGroup, len(lr.RaftGroups))
		for i := range lr.RaftGroups {
			m[lr.RaftGroups[i].RaftGroupID] = &lr.RaftGroups[i]
		}
		reports[lr.NodeID] = m
	}
	own := localView(n)
	addReports(own)
	for _, p := range peers {
		if p.local != nil {
			addReports(p.local)
		}
	}

	var active []int32
	for _, ni := range all {
		if !ni.Removed {
			active = append(active, ni.ID)
		}
	}
	ids := map[uint32]bool{0: true}
	for g := 1; g <= n.DataGroupCount(); g++ {
		ids[uint32(g)] = true
	}
	for _, rg := range own.RaftGroups {
		ids[rg.RaftGroupID] = true
	}
	order := make([]uint32, 0, len(ids))
	for g := range ids {
		order = append(order, g)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })

	out := &clusterResponse{
		ClusterID: n.ClusterID(), NodeID: self, MetadataLeader: n.MetadataLeader(),
		Nodes:      nodeStates(all, n, peers),
		RaftGroups: make([]clusterRaftGroup, 0, len(order)),
	}
	for _, g := range order {
		out.RaftGroups = append(out.RaftGroups, raftGroupView(n, g, active, reports))
	}
	return out
}

// raftGroupView describes Raft group g from this node's metadata and the
// reports of the nodes that answered.
func raftGroupView(n *raftfsm.Node, g uint32, active []int32, reports map[int32]map[uint32]*localRaftGroup) clusterRaftGroup {
	v := clusterRaftGroup{RaftGroupID: g, Leader: -1, ReportedBy: -1, Voters: []int32{}, Nonvoters: []int32{}}
	var epoch int32 = -1
	if g == 0 {
		v.Replicas = append([]int32{}, active...)
		v.Leader = n.MetadataLeader()
	} else {
		v.Replicas = nonNil(n.Replicas(g))
		if l, e, ok := n.GroupLeader(g); ok {
			v.Leader, epoch = l, e
		}
	}
	// The leader's own report, else the highest term, then commit index.
	var src *localRaftGroup
	if r := reports[v.Leader][g]; r != nil && r.State == "Leader" {
		src, v.ReportedBy = r, v.Leader
	} else {
		for id, m := range reports {
			r := m[g]
			if r == nil {
				continue
			}
			if src == nil || r.Term > src.Term || (r.Term == src.Term && r.CommitIndex > src.CommitIndex) ||
				(r.Term == src.Term && r.CommitIndex == src.CommitIndex && id < v.ReportedBy) {
				src, v.ReportedBy = r, id
			}
		}
	}
	v.Term = uint64(max(epoch, 0))
	if src != nil {
		v.Term = max(v.Term, src.Term)
		v.Voters, v.Nonvoters = nonNil(src.Voters), nonNil(src.Nonvoters)
		v.CommitIndex, v.AppliedIndex = src.CommitIndex, src.AppliedIndex
	}
	v.ReplicaLag = map[string]*uint64{}
	for _, ids := range [][]int32{v.Replicas, v.Voters, v.Nonvoters} {
		for _, id := range ids {
			var lag *uint64
			if r := reports[id][g]; r != nil && src != nil {
				d := uint64(0)
				if src.CommitIndex > r.AppliedIndex {
					d = src.CommitIndex - r.AppliedIndex
				}
				lag = &d
			}
			v.ReplicaLag[strconv.FormatInt(int64(id), 10)] = lag
		}
	}
	return v
}
