package broker

// DescribeTransactions: v0
//
// Behavior (Kafka's TransactionCoordinator.handleDescribeTransactions):
//   - For each transactional id this node coordinates (the leader of its
//     __transaction_state partition, as FindCoordinator names it): its
//     state name (Empty, Ongoing, PrepareCommit, PrepareAbort,
//     CompleteCommit, CompleteAbort, PrepareEpochFence), producer id and
//     epoch, timeout, the start of the transaction (-1 when none is open)
//     and its partitions (those of the open or ending transaction).
//   - Per id: NOT_COORDINATOR on another node (the admin client looks the
//     coordinator up again), COORDINATOR_LOAD_IN_PROGRESS and
//     COORDINATOR_NOT_AVAILABLE from routing, TRANSACTIONAL_ID_NOT_FOUND for
//     an id without state, INVALID_REQUEST for an empty id.
//   - kafka-transactions.sh describe --transactional-id reads it.

import (
	"context"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DescribeTransactions.Int16(), 0, 0, (*Broker).handleDescribeTransactions)
}

func (b *Broker) handleDescribeTransactions(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	resp.TransactionStates = make([]kmsg.DescribeTransactionsResponseTransactionState, len(req.TransactionalIDs))
	for i, id := range req.TransactionalIDs {
		ts := &resp.TransactionStates[i]
		*ts = kmsg.NewDescribeTransactionsResponseTransactionState()
		ts.TransactionalID = id
		if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, id) {
			ts.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			continue
		}
		m, e := b.txns.describeTxn(ctx, id)
		if e != nil {
			ts.ErrorCode = e.Code
			continue
		}
		ts.State = m.State.String()
		ts.TimeoutMillis = m.TimeoutMs
		ts.StartTimestamp = m.StartMs
		ts.ProducerID = m.ProducerID
		ts.ProducerEpoch = m.Epoch
		for _, topic := range slices.Sorted(maps.Keys(m.Partitions)) {
			tt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
			tt.Topic = topic
			tt.Partitions = append(tt.Partitions, m.Partitions[topic]...)
			ts.Topics = append(ts.Topics, tt)
		}
	}
	return resp, nil
}
