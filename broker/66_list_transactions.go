package broker

// ListTransactions: v0-2
//
// Behavior (Kafka's TransactionStateManager.listTransactionStates):
//   - Lists the transactions this node coordinates: those of the
//     __transaction_state partitions it leads, each loaded first. The admin
//     client asks every broker and merges the answers, so on a cluster each
//     transaction is listed once, by its coordinator. Rows are ordered by
//     transactional id.
//   - Filters, each ignored when empty: StateFilters (Kafka's exact state
//     names; unknown names are returned in UnknownStateFilters and do not
//     filter), ProducerIDFilters, DurationFilterMillis (v1+, KIP-994: only
//     transactions running longer than it, so ids with no transaction
//     running are left out; -1 keeps all) and
//     TransactionalIDPattern (v2+, KIP-1152: a regular expression the whole
//     id must match). Dead transactions are never listed.
//   - COORDINATOR_LOAD_IN_PROGRESS while a led partition cannot be loaded;
//     INVALID_REGULAR_EXPRESSION for a pattern that does not compile.
//
// Version notes: v1 DurationFilterMillis; v2 TransactionalIDPattern, which is
// compiled as Go's RE2 syntax (Kafka compiles Java's; the common subset,
// without lookaround or backreferences, means the same).

import (
	"context"
	"regexp"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.ListTransactions.Int16(), 0, 2, (*Broker).handleListTransactions)
}

func (b *Broker) handleListTransactions(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	f := txnFilter{minDurationMs: -1}
	if req.Version >= 1 {
		f.minDurationMs = req.DurationFilterMillis
	}
	for _, name := range req.StateFilters {
		s, ok := txnStateByName[name]
		if !ok {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
			continue
		}
		if f.states == nil {
			f.states = map[kmsg.TransactionState]bool{}
		}
		f.states[s] = true
	}
	for _, pid := range req.ProducerIDFilters {
		if f.producerIDs == nil {
			f.producerIDs = map[int64]bool{}
		}
		f.producerIDs[pid] = true
	}
	if p := req.TransactionalIDPattern; p != nil && *p != "" {
		// The whole id must match (Java's Matcher.matches); the pattern is
		// checked alone first, so a pattern cannot close the anchoring group.
		_, err := regexp.Compile(*p)
		var re *regexp.Regexp
		if err == nil {
			re, err = regexp.Compile(`^(?:` + *p + `)$`)
		}
		if err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp, nil
		}
		f.pattern = re
	}
	txns, e := b.txns.listTxns(ctx, &f)
	if e != nil {
		resp.ErrorCode = e.Code
		return resp, nil
	}
	// Kafka lists only the ids the principal may DESCRIBE, silently.
	txns = slices.DeleteFunc(txns, func(t listedTxn) bool {
		return !b.permits(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, t.id)
	})
	resp.TransactionStates = make([]kmsg.ListTransactionsResponseTransactionState, len(txns))
	for i, t := range txns {
		ts := &resp.TransactionStates[i]
		*ts = kmsg.NewListTransactionsResponseTransactionState()
		ts.TransactionalID = t.id
		ts.ProducerID = t.pid
		ts.TransactionState = t.state.String()
	}
	return resp, nil
}
