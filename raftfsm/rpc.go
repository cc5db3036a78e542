package raftfsm

// Control RPCs between nodes: joining, forwarding metadata changes to the
// metadata group's leader, forwarding shard commands to a data group's leader,
// and asking a node how far each of its groups has applied. They ride the
// node-to-node port as the mux's "rpc" connection kind (transport.go), one
// request per connection: they are rare (topic changes, joins, one status call
// per group and second), so a pool would buy nothing.
//
// Frame: 4-byte big-endian length, then a JSON object; at most rpcMaxFrame
// bytes. JSON keeps the control plane easy to read in a packet capture and
// cheap to extend; the data path never uses it.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/internal/topicconfig"
)

const (
	rpcMaxFrame = 1 << 20
	// rpcServeTimeout bounds one served RPC, reading to writing.
	rpcServeTimeout = 30 * time.Second
	// rpcDefaultTimeout bounds a call whose ctx has no deadline.
	rpcDefaultTimeout = 10 * time.Second
)

// RPC operations.
const (
	opRegister         = "register"          // Node: register or update a node (join)
	opCreateTopic      = "create_topic"      // Topic, Partitions, Overrides, ValidateOnly
	opDeleteTopic      = "delete_topic"      // Topic
	opCreatePartitions = "create_partitions" // Topic, Partitions, ValidateOnly
	opSetTopicConfig   = "set_topic_config"  // Topic, Overrides, ValidateOnly
	opAlterTopicConfig = "alter_configs"     // Topic, ConfigOps, ValidateOnly
	opAllocatePIDs     = "allocate_pids"     // -> PIDStart
	opRemoveNode       = "remove_node"       // NodeID
	opSetLeader        = "set_leader"        // Group, NodeID, Term
	opShardCommand     = "shard_command"     // Group, Command (create or delete shards, transaction markers)
	opStatus           = "status"            // -> Status
	opUpsertScram      = "upsert_scram"      // Scram
	opDeleteScram      = "delete_scram"      // Scram.User, Scram.Mechanism
	opCreateACLs       = "create_acls"       // ACLs
	opDeleteACLs       = "delete_acls"       // ACLFilters -> DeletedACLs
	opBroker           = "broker"            // BrokerOp, Payload -> Payload (broker_rpc.go)
	opSnapshotStream   = "snapshot_stream"   // Group, ExportID -> the offered stream follows the response (snapshot.go)
)

type rpcRequest struct {
	Op           string            `json:"op"`
	Node         *NodeInfo         `json:"node,omitempty"`
	Topic        string            `json:"topic,omitempty"`
	Partitions   int32             `json:"partitions,omitempty"`
	Overrides    map[string]string `json:"overrides,omitempty"`
	ValidateOnly bool              `json:"validate_only,omitempty"`
	NodeID       int32             `json:"node_id,omitempty"`
	Group        uint32            `json:"group,omitempty"`
	Term         uint64            `json:"term,omitempty"`
	Command      []byte            `json:"command,omitempty"`
	ConfigOps    []topicconfig.Op  `json:"config_ops,omitempty"`
	Scram        *ScramCredential  `json:"scram,omitempty"`
	ACLs         []acl.Binding     `json:"acls,omitempty"`
	ACLFilters   []acl.Filter      `json:"acl_filters,omitempty"`
	BrokerOp     string            `json:"broker_op,omitempty"`
	Payload      json.RawMessage   `json:"payload,omitempty"`
	ExportID     uint64            `json:"export_id,omitempty"`
}

type rpcResponse struct {
	// Code is empty on success, else one of rpcErrors' codes (or "internal").
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Index is the metadata log index the change was applied at; the caller
	// waits until its own metadata has applied it.
	Index     uint64        `json:"index,omitempty"`
	ClusterID string        `json:"cluster_id,omitempty"`
	PIDStart  int64         `json:"pid_start,omitempty"`
	Status    []GroupStatus `json:"status,omitempty"`
	// DeletedACLs are the bindings each filter of opDeleteACLs deleted.
	DeletedACLs [][]acl.Binding `json:"deleted_acls,omitempty"`
	// Payload is a broker RPC's response (opBroker).
	Payload json.RawMessage `json:"payload,omitempty"`
}

// rpcErrors maps the sentinels callers test with errors.Is to wire codes.
var rpcErrors = []struct {
	code string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"not_ready", ErrNotReady},
	{"closed", ErrClosed},
	{"unknown_topic", ErrUnknownTopic},
	{"unknown_partition", ErrUnknownPartition},
	{"topic_exists", ErrTopicExists},
	{"invalid_topic", ErrInvalidTopic},
	{"invalid_partitions", ErrInvalidPartitions},
	{"unknown_node", ErrUnknownNode},
	{"node_removed", ErrNodeRemoved},
	{"addr_in_use", ErrAddrInUse},
	{"bad_request", ErrBadRequest},
	{"identity", ErrIdentity},
	{"config_unknown", topicconfig.ErrUnknown},
	{"config_invalid", topicconfig.ErrInvalid},
	{"unknown_credential", ErrUnknownCredential},
	{"bad_credential", scram.ErrBadCredential},
	{"invalid_acl", acl.ErrInvalid},
}

func errorResponse(err error) rpcResponse {
	for _, e := range rpcErrors {
		if errors.Is(err, e.err) {
			return rpcResponse{Code: e.code, Message: err.Error()}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return rpcResponse{Code: "not_ready", Message: err.Error()}
	}
	return rpcResponse{Code: "internal", Message: err.Error()}
}

// err turns a response back into an error that wraps the sentinel.
func (r *rpcResponse) err() error {
	if r.Code == "" {
		return nil
	}
	for _, e := range rpcErrors {
		if e.code == r.Code {
			return fmt.Errorf("%w (remote: %s)", e.err, r.Message)
		}
	}
	return fmt.Errorf("raftfsm: remote error: %s", r.Message)
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > rpcMaxFrame {
		return fmt.Errorf("raftfsm: rpc frame of %d bytes is over %d", len(b), rpcMaxFrame)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > rpcMaxFrame {
		return fmt.Errorf("raftfsm: rpc frame of %d bytes is over %d", n, rpcMaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// serveRPC serves one rpc connection (MuxConfig.HandleRPC).
func (n *Node) serveRPC(conn net.Conn, sender int32) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(rpcServeTimeout))
	var req rpcRequest
	if err := readFrame(conn, &req); err != nil {
		n.log.Warn("bad control rpc", keyPeer, sender, keyError, err)
		return
	}
	if err := n.checkSender(conn, sender, &req); err != nil {
		n.log.Warn("refused control rpc", keyPeer, sender, keyRemoteAddr, conn.RemoteAddr().String(), "op", req.Op, keyError, err)
		n.metrics.connRefused(refuseIdentity.label())
		_ = writeFrame(conn, errorResponse(err))
		return
	}
	if req.Op == opSnapshotStream {
		n.serveSnapshotStream(conn, sender, &req)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcServeTimeout-time.Second)
	defer cancel()
	stop := context.AfterFunc(n.closeCtx, cancel)
	defer stop()
	resp := n.handleRPC(ctx, &req)
	if err := writeFrame(conn, resp); err != nil {
		n.log.Debug("control rpc reply not sent", keyPeer, sender, keyError, err)
	}
}

// checkSender applies the node-to-node TLS identity rule (transport_tls.go)
// to an rpc: a node registering itself must hold a certificate naming the
// host it registers; any other request from a node id known here, one naming
// a host that id is known by. A request forwarded by another node (a
// registration relayed to the metadata leader) is checked against the
// forwarding node. Without TLS there is nothing to check.
func (n *Node) checkSender(conn net.Conn, sender int32, req *rpcRequest) error {
	if _, isTLS := conn.(*tls.Conn); !isTLS {
		return nil
	}
	if req.Op == opRegister && req.Node != nil && req.Node.ID == sender {
		if certNamesHost(conn, addrHost(req.Node.ClusterAddr)) {
			return nil
		}
		return fmt.Errorf("%w: node %d registers cluster address %s, which its TLS certificate does not name", ErrIdentity, sender, req.Node.ClusterAddr)
	}
	if hosts, known := n.peerHosts(sender); known && !certNamesHost(conn, hosts...) {
		return fmt.Errorf("%w: the TLS certificate of node %d names none of its hosts %v", ErrIdentity, sender, hosts)
	}
	return nil
}

// handleRPC runs one request. Metadata changes are run here when this node
// leads the metadata group and forwarded to its leader otherwise, so a caller
// may ask any node.
func (n *Node) handleRPC(ctx context.Context, req *rpcRequest) rpcResponse {
	switch req.Op {
	case opStatus:
		return rpcResponse{Status: n.GroupStatuses(), ClusterID: n.ClusterID()}
	case opBroker:
		return n.serveBrokerRPC(ctx, req)
	case opShardCommand:
		c, err := DecodeCommand(req.Command)
		if err != nil {
			return errorResponse(fmt.Errorf("%w: %v", ErrBadRequest, err))
		}
		if c.Type != CmdCreateShards && c.Type != CmdDeleteShards && c.Type != CmdTxnMarker {
			return errorResponse(fmt.Errorf("%w: %s is not a shard command", ErrBadRequest, c.Type))
		}
		g := n.group(req.Group)
		if g == nil || req.Group == metaGroup {
			return errorResponse(fmt.Errorf("%w: group %d is not carried here", ErrNotLeader, req.Group))
		}
		_, _, err = n.propose(ctx, g, c)
		if err != nil {
			return errorResponse(err)
		}
		return rpcResponse{}
	}
	if !n.leadsMeta() {
		resp, err := n.callMetaLeader(ctx, req)
		if err != nil && resp.Code == "" {
			return errorResponse(err)
		}
		return resp
	}
	return n.applyMetaRPC(ctx, req)
}

// applyMetaRPC runs a metadata request on the metadata leader.
func (n *Node) applyMetaRPC(ctx context.Context, req *rpcRequest) rpcResponse {
	var (
		idx uint64
		err error
	)
	resp := rpcResponse{}
	switch req.Op {
	case opRegister:
		if req.Node == nil {
			return errorResponse(fmt.Errorf("%w: register without a node", ErrBadRequest))
		}
		_, idx, err = n.proposeLocal(ctx, metaGroup, &Command{Type: CmdRegisterNode, Member: *req.Node})
		resp.ClusterID = n.ClusterID()
		if err == nil {
			n.log.Info("node registered", keyPeer, req.Node.ID, "cluster_addr", req.Node.ClusterAddr)
			n.kick()
		}
	case opCreateTopic:
		idx, err = n.createTopicLocal(ctx, req.Topic, req.Partitions, req.Overrides, req.ValidateOnly)
	case opDeleteTopic:
		idx, err = n.deleteTopicLocal(ctx, req.Topic)
	case opCreatePartitions:
		idx, err = n.createPartitionsLocal(ctx, req.Topic, req.Partitions, req.ValidateOnly)
	case opSetTopicConfig:
		idx, err = n.setTopicConfigLocal(ctx, req.Topic, req.Overrides, req.ValidateOnly)
	case opAlterTopicConfig:
		idx, err = n.alterTopicConfigLocal(ctx, req.Topic, req.ConfigOps, req.ValidateOnly)
	case opAllocatePIDs:
		var v any
		v, idx, err = n.proposeLocal(ctx, metaGroup, &Command{Type: CmdAllocateProducerIDs, Count: producerIDBlock})
		if err == nil {
			resp.PIDStart = v.(int64)
		}
	case opRemoveNode:
		_, idx, err = n.proposeLocal(ctx, metaGroup, &Command{Type: CmdRemoveNode, NodeID: req.NodeID})
		if err == nil {
			n.log.Info("node removed", keyPeer, req.NodeID)
			n.kick()
		}
	case opUpsertScram, opDeleteScram:
		idx, err = n.scramLocal(ctx, req.Op, req.Scram)
	case opCreateACLs, opDeleteACLs:
		idx, err = n.aclsLocal(ctx, req, &resp)
	case opSetLeader:
		_, idx, err = n.proposeLocal(ctx, metaGroup, &Command{Type: CmdSetGroupLeader, Group: req.Group, NodeID: req.NodeID, Term: req.Term})
	default:
		err = fmt.Errorf("%w: unknown rpc op %q", ErrBadRequest, req.Op)
	}
	if err != nil {
		// The metadata this refusal was judged on: the caller waits for it,
		// so "topic exists" is followed by the topic showing locally.
		r := errorResponse(err)
		if g := n.group(metaGroup); g != nil {
			r.Index = g.fsm.appliedIndex.Load()
		}
		return r
	}
	resp.Index = idx
	return resp
}

// call sends one request to the node at addr and returns its response; a
// transport failure is an error wrapping ErrNotReady (the caller may retry).
func (n *Node) call(ctx context.Context, addr string, req *rpcRequest) (rpcResponse, error) {
	if n.mux == nil {
		return rpcResponse{}, fmt.Errorf("%w: no cluster transport", ErrNotReady)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcDefaultTimeout)
		defer cancel()
	}
	conn, err := n.mux.DialRPC(ctx, addr)
	if err != nil {
		return rpcResponse{}, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var resp rpcResponse
	if err := writeFrame(conn, req); err != nil {
		return rpcResponse{}, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	if err := readFrame(conn, &resp); err != nil {
		return rpcResponse{}, fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return resp, nil
}

// callMetaLeader sends req to the metadata group's leader, waiting for one to
// be known and following leader changes until ctx ends. The response's own
// error (if any) is returned as an error.
func (n *Node) callMetaLeader(ctx context.Context, req *rpcRequest) (rpcResponse, error) {
	backoff := 20 * time.Millisecond
	for {
		var last error
		if id, ok := n.metaLeader(); ok && id != n.cfg.NodeID {
			resp, err := n.call(ctx, n.dialAddr(id), req)
			if err == nil {
				if rerr := resp.err(); rerr == nil || !errors.Is(rerr, ErrNotLeader) {
					return resp, rerr
				}
			}
			last = err
		} else if ok {
			// Became the leader meanwhile.
			resp := n.applyMetaRPC(ctx, req)
			return resp, resp.err()
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return rpcResponse{}, last
			}
			return rpcResponse{}, fmt.Errorf("%w: no metadata leader: %v", ErrNotReady, ctx.Err())
		case <-n.shutdownCh:
			return rpcResponse{}, ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// metaLeader returns the metadata group's leader as this node knows it.
func (n *Node) metaLeader() (int32, bool) { return n.RaftLeader(metaGroup) }
