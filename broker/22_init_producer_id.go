package broker

// InitProducerId: v0-4
//
// Behavior:
//   - No TransactionalID (an idempotent producer, the Java default since 3.0):
//     a fresh producer id with epoch 0 from raftfsm (Node.InitProducerID), unique
//     across restarts. The transaction timeout is ignored (Flink sends one hour).
//   - v3+ with an existing ProducerID/ProducerEpoch (KIP-360, a producer
//     recovering from an error): a fresh id as well; without transactions there
//     is no state tied to the old id that must be fenced.
//
// Not implemented: transactional ids. A request with a TransactionalID answers
// INVALID_REQUEST (the broker does not offer transactions yet; they arrive with
// the transactions issue).
//
// Version notes: v2+ is flexible; v3 adds ProducerID/ProducerEpoch (KIP-360);
// v4 only marks that clients handle PRODUCER_FENCED. v5+ (KIP-890/939) is not
// served.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.InitProducerID.Int16(), 0, 4, (*Broker).handleInitProducerID) }

func (b *Broker) handleInitProducerID(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID = -1
	resp.ProducerEpoch = -1
	if req.TransactionalID != nil {
		resp.ErrorCode = b.codeFor(errTransactionsUnsupported, "init producer id")
		return resp, nil
	}
	id, epoch, err := b.node.InitProducerID(ctx)
	if err != nil {
		resp.ErrorCode = b.codeFor(err, "init producer id")
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, epoch
	return resp, nil
}
