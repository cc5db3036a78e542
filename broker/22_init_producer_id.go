package broker

// InitProducerId: v0-4
//
// Behavior:
//   - Authorization (authorizer.go): WRITE on the transactional id, else
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED; without one, IDEMPOTENT_WRITE on
//     the cluster or WRITE on some topic (Kafka 4, KIP-679), else
//     CLUSTER_AUTHORIZATION_FAILED.
//   - No TransactionalID (an idempotent producer, the Java default since 3.0):
//     a fresh producer id with epoch 0 from raftfsm (Node.InitProducerID), unique
//     across restarts. The transaction timeout is ignored (Flink sends one hour).
//   - v3+ with an existing ProducerID/ProducerEpoch (KIP-360, a producer
//     recovering from an error) and no TransactionalID: a fresh id as well;
//     no state is tied to the old id.
//   - With a TransactionalID, at the id's transaction coordinator
//     (txn_coordinator.go), Kafka's rules: an empty id INVALID_REQUEST; a
//     timeout above --transaction-max-timeout (1 h) INVALID_TRANSACTION_TIMEOUT;
//     a never-seen id a fresh producer id with epoch 0 (only then); Empty or
//     Complete* the same producer id with epoch+1 (a fresh id once the epoch
//     is exhausted); an Ongoing transaction is fenced (epoch+1) and aborted,
//     answering CONCURRENT_TRANSACTIONS (the retry gets epoch+2); while a
//     transaction ends CONCURRENT_TRANSACTIONS; v3+ with a ProducerID/Epoch
//     that is not the current one PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
//     before v4, KIP-588). NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and
//     COORDINATOR_NOT_AVAILABLE from routing.
//
// Version notes: v2+ is flexible; v3 adds ProducerID/ProducerEpoch (KIP-360);
// v4 only marks that clients handle PRODUCER_FENCED. v5+ (KIP-890/939) is not
// served.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.InitProducerID.Int16(), 0, 4, (*Broker).handleInitProducerID) }

func (b *Broker) handleInitProducerID(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID = -1
	resp.ProducerEpoch = -1
	if req.TransactionalID != nil {
		if !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, *req.TransactionalID) {
			resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			return resp, nil
		}
		if *req.TransactionalID == "" || len(*req.TransactionalID) > maxTxnIDBytes {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return resp, nil
		}
		res := b.txns.initProducerID(ctx, *req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch)
		resp.ErrorCode = errCode(fencedFor(res.err, req.Version, 4))
		if res.err == nil {
			resp.ProducerID, resp.ProducerEpoch = res.pid, res.epoch
		}
		return resp, nil
	}
	if !b.allowedIdempotentWrite(rc) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
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
