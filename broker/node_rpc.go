package broker

// Calls from other nodes' brokers, carried by raftfsm's control connections
// (raftfsm/broker_rpc.go). Each operation names the handler that serves it.

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shardcache/shardcache/raftfsm"
)

// serveNodeRPC serves one broker RPC from another node.
func (b *Broker) serveNodeRPC(ctx context.Context, op string, payload json.RawMessage) (json.RawMessage, error) {
	switch op {
	case rpcVerifyTxn:
		return b.txns.serveVerifyTxn(ctx, payload)
	}
	return nil, fmt.Errorf("%w: unknown broker operation %q", raftfsm.ErrBadRequest, op)
}
