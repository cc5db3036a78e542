package broker

// EndTxn: v0-4
//
// Behavior (Kafka's transactions v1, txn_coordinator.go):
//   - Needs WRITE on the transactional id (authorizer.go), else
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//   - Ongoing: writes PrepareCommit or PrepareAbort to __transaction_state
//     and answers NONE once that is durable; the markers follow in the
//     background, then Complete*. Accepted from any connection, also a new
//     process that only knows the producer id and epoch (Flink's commit
//     after a restore).
//   - The same result again after Complete*: NONE (a retried COMMIT). While
//     Prepare*: CONCURRENT_TRANSACTIONS. The opposite result, or an Empty
//     transaction: INVALID_TXN_STATE.
//   - INVALID_PRODUCER_ID_MAPPING for an unknown transactional id or another
//     producer id; PRODUCER_FENCED for another epoch (INVALID_PRODUCER_EPOCH
//     before v2, KIP-588); NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//     COORDINATOR_NOT_AVAILABLE from routing.
//
// Not implemented: v5 (KIP-890 transactions v2, which bumps the epoch on
// every EndTxn; no transaction.version feature is advertised).
//
// Version notes: v1 same as v0; v2 PRODUCER_FENCED; v3 flexible; v4 may
// answer TRANSACTION_ABORTABLE, which this broker never does.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.EndTxn.Int16(), 0, 4, (*Broker).handleEndTxn) }

func (b *Broker) handleEndTxn(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	if !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, req.TransactionalID) {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	}
	e := b.txns.endTxn(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit)
	resp.ErrorCode = errCode(fencedFor(e, req.Version, 2))
	return resp, nil
}
