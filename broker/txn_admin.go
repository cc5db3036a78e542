package broker

// The transaction coordinator's read-only views for the admin APIs:
// DescribeTransactions (65_describe_transactions.go) and ListTransactions
// (66_list_transactions.go), Kafka's TransactionCoordinator
// handleDescribeTransactions and TransactionStateManager
// listTransactionStates. Both read the durable state in memory (txn.snapshot)
// without taking a transaction's write turn, so a slow write never holds
// them up.

import (
	"context"
	"errors"
	"regexp"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

// txnStateByName maps Kafka's transaction state names (TransactionState.name,
// exact and case-sensitive as Kafka's fromName) to states.
var txnStateByName = func() map[string]kmsg.TransactionState {
	m := map[string]kmsg.TransactionState{}
	for _, s := range []kmsg.TransactionState{txnEmpty, txnOngoing, txnPrepareCommit, txnPrepareAbort,
		txnCompleteCommit, txnCompleteAbort, txnDead, txnPrepareEpochFence} {
		m[s.String()] = s
	}
	return m
}()

// describeTxn returns the state of transactional id id, which this node must
// coordinate: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS or
// COORDINATOR_NOT_AVAILABLE from routing, TRANSACTIONAL_ID_NOT_FOUND for an
// id without state (never initialized, expired, or Dead).
func (c *txnCoordinator) describeTxn(ctx context.Context, id string) (txnMetadata, *kerr.Error) {
	if id == "" {
		return txnMetadata{}, kerr.InvalidRequest
	}
	_, p, err := c.route(ctx, id)
	if err != nil {
		return txnMetadata{}, coordinatorError(err)
	}
	t := c.get(id, p, false)
	if t == nil {
		return txnMetadata{}, kerr.TransactionalIDNotFound
	}
	m := t.snapshot()
	if m.ProducerID < 0 || m.State == txnDead {
		// Created by an InitProducerId whose first write has not applied.
		return txnMetadata{}, kerr.TransactionalIDNotFound
	}
	return m, nil
}

// txnFilter is what ListTransactions selects on; empty fields select all.
type txnFilter struct {
	states      map[kmsg.TransactionState]bool
	producerIDs map[int64]bool
	// minDurationMs, when >= 0, keeps transactions running longer than it
	// (now - start > minDurationMs, Kafka's rule). A transactional id with
	// no transaction running (start -1 here) is left out: Kafka would
	// compare against the start of its last transaction, which this
	// coordinator does not keep once it completed.
	minDurationMs int64
	pattern       *regexp.Regexp
}

func (f *txnFilter) keep(id string, m *txnMetadata, nowMs int64) bool {
	switch {
	case m.ProducerID < 0 || m.State == txnDead:
		return false
	case len(f.producerIDs) > 0 && !f.producerIDs[m.ProducerID]:
		return false
	case len(f.states) > 0 && !f.states[m.State]:
		return false
	case f.minDurationMs >= 0 && (m.StartMs < 0 || nowMs-m.StartMs <= f.minDurationMs):
		return false
	case f.pattern != nil && !f.pattern.MatchString(id):
		return false
	}
	return true
}

// listedTxn is one row of ListTransactions.
type listedTxn struct {
	id    string
	pid   int64
	state kmsg.TransactionState
}

// listTxns lists the transactions this node coordinates that f keeps,
// ordered by transactional id. Every __transaction_state partition this node
// leads is loaded first (COORDINATOR_LOAD_IN_PROGRESS while one cannot be);
// without the topic there is nothing to list.
func (c *txnCoordinator) listTxns(ctx context.Context, f *txnFilter) ([]listedTxn, *kerr.Error) {
	if !c.b.node.Ready() {
		return nil, kerr.CoordinatorLoadInProgress
	}
	ti, ok := c.b.node.Topic(txnStateTopic)
	if !ok {
		return nil, nil
	}
	led := map[int32]bool{}
	for _, pi := range ti.Partitions {
		if !c.b.node.IsLeader(pi.Group) {
			continue
		}
		_, err := c.loader.ensure(ctx, ti, pi.Partition)
		switch {
		case err == nil:
			led[pi.Partition] = true
		case errors.Is(err, errNotCoordinator):
			// Leadership moved meanwhile: the new leader lists it.
		default:
			return nil, kerr.CoordinatorLoadInProgress
		}
	}
	nowMs := c.now().UnixMilli()
	var out []listedTxn
	for _, t := range c.list() {
		if !led[t.partition] {
			continue
		}
		m := t.snapshot()
		if f.keep(t.id, &m, nowMs) {
			out = append(out, listedTxn{id: t.id, pid: m.ProducerID, state: m.State})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// ledPartition returns partition p of topic if this node leads it (the
// partition-level admin APIs, 27 and 61, are served by leaders only, as in
// Kafka): UNKNOWN_TOPIC_OR_PARTITION for an unknown one,
// NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE with no known leader)
// elsewhere, so the admin client looks the leader up.
func (b *Broker) ledPartition(topic string, p int32) (raftfsm.PartitionInfo, error) {
	info, ok := b.node.Topic(topic)
	switch {
	case !ok:
		return raftfsm.PartitionInfo{}, raftfsm.ErrUnknownTopic
	case p < 0 || int(p) >= len(info.Partitions):
		return raftfsm.PartitionInfo{}, raftfsm.ErrUnknownPartition
	}
	part := info.Partitions[p]
	if b.partitionRole(part.Group) != roleLeader {
		return raftfsm.PartitionInfo{}, b.notLeaderError(part.Group)
	}
	return part, nil
}
