package raftfsm

// Broker RPCs: calls from the Kafka layer of one node to the Kafka layer of
// another, over the same control connections as the rest of rpc.go. raftfsm
// only carries them: the broker registers one handler (SetBrokerRPC) and
// names its operations; the payload is the broker's own JSON. Today's one
// user is the partition leader's check of a transactional batch against the
// transaction's coordinator (broker/txn_verify.go), Kafka's
// AddPartitionsToTxn verifyOnly call between brokers.

import (
	"context"
	"encoding/json"
	"fmt"
)

// BrokerRPCHandler serves one broker RPC: op names it, payload is the
// caller's request; the returned bytes are the response payload. An error
// reaches the caller as an error wrapping the matching sentinel of rpc.go
// (ErrNotLeader, ErrBadRequest, ...) or as a plain remote error.
type BrokerRPCHandler func(ctx context.Context, op string, payload json.RawMessage) (json.RawMessage, error)

// SetBrokerRPC registers the handler of broker RPCs; until then they are
// answered ErrNotReady.
func (n *Node) SetBrokerRPC(h BrokerRPCHandler) { n.brokerRPC.Store(&h) }

// CallBroker sends a broker RPC to node id and returns its response payload.
// A node that cannot be reached, or has no handler yet, is ErrNotReady.
func (n *Node) CallBroker(ctx context.Context, id int32, op string, payload json.RawMessage) (json.RawMessage, error) {
	addr := n.dialAddr(id)
	if addr == "" {
		return nil, fmt.Errorf("%w: node %d", ErrUnknownNode, id)
	}
	resp, err := n.call(ctx, addr, &rpcRequest{Op: opBroker, BrokerOp: op, Payload: payload})
	if err != nil {
		return nil, err
	}
	if err := resp.err(); err != nil {
		return nil, err
	}
	return resp.Payload, nil
}

// serveBrokerRPC runs a broker RPC received from another node.
func (n *Node) serveBrokerRPC(ctx context.Context, req *rpcRequest) rpcResponse {
	h := n.brokerRPC.Load()
	if h == nil {
		return errorResponse(fmt.Errorf("%w: the broker is not serving yet", ErrNotReady))
	}
	out, err := (*h)(ctx, req.BrokerOp, req.Payload)
	if err != nil {
		return errorResponse(err)
	}
	return rpcResponse{Payload: out}
}
