package broker

// The partition leader's check of a transactional batch (Kafka 3.6+,
// KIP-890 part 1; transaction.partition.verification.enable): a producer may
// write a transactional batch only to a partition its coordinator has added
// to its ongoing transaction. Without it, a batch from a producer id no
// coordinator issued, or to a partition never added, opens a transaction on
// the shard that no marker will ever end, and the partition's last stable
// offset stops there for good (a hanging transaction).
//
// As Kafka's leader (UnifiedLog.hasOngoingTransaction), the check is made only
// for a producer's first transactional batch on the shard: once the shard
// holds an open transaction of the producer, its batches need no look-up, and
// the shard's own epoch check fences zombies. Kafka's leader asks the
// coordinator over AddPartitionsToTxn v4 (verifyOnly); here the leader reads
// the coordinator's state in memory when it is the coordinator itself (on a
// single node it always is), and otherwise asks the coordinator's node with a
// broker RPC (raftfsm/broker_rpc.go, op "verify_txn"), which runs the same
// check there. A coordinator that cannot be reached, or no longer leads the
// transactional id's partition, answers the retriable NOT_ENOUGH_REPLICAS, so
// the producer retries and the next attempt finds the new coordinator.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// rpcVerifyTxn is the broker RPC that runs checkTxnPartition on the
// coordinator's node.
const rpcVerifyTxn = "verify_txn"

// verifyTxnTimeout bounds the call to a remote coordinator; past it the
// produce is answered NOT_ENOUGH_REPLICAS and the producer retries.
const verifyTxnTimeout = 5 * time.Second

// verifyTxnRequest is rpcVerifyTxn's payload.
type verifyTxnRequest struct {
	TransactionalID string `json:"transactional_id"`
	ProducerID      int64  `json:"producer_id"`
	ProducerEpoch   int16  `json:"producer_epoch"`
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
}

// verifyTxnResponse is rpcVerifyTxn's answer: a Kafka error code (0: the
// batch may go on) and the message for the client.
type verifyTxnResponse struct {
	ErrorCode int16  `json:"error_code,omitempty"`
	Message   string `json:"message,omitempty"`
}

// verifyTxnBatch checks a transactional batch of producer pr, sent with
// transactional id id, to partition partition of topic (shard shard, led by
// this node) before it is proposed. It answers with the errors Kafka's
// leader answers a produce of v11 or older (ReplicaManager):
// INVALID_PRODUCER_ID_MAPPING for an id the coordinator does not know or
// another producer id, INVALID_PRODUCER_EPOCH for another epoch,
// INVALID_TXN_STATE "partition was not added to the transaction", and
// NOT_ENOUGH_REPLICAS (retriable, no metadata refresh) while the coordinator
// is loading, the transaction is ending or the coordinator cannot be asked.
// nil when the batch may go on, or when no transactional id is known to this
// node of a cluster yet (its metadata may lag the coordinator's).
func (c *txnCoordinator) verifyTxnBatch(ctx context.Context, id string, pr shardstore.Producer, topic string, partition int32, shard shardstore.ShardID) error {
	if !c.cfg.VerifyPartitions {
		return nil
	}
	open, err := c.b.store.OpenTxn(shard, pr.ID)
	if err != nil {
		return err
	}
	if open {
		return nil
	}
	ti, ok := c.b.node.Topic(txnStateTopic)
	if !ok {
		// No transactional id was ever initialized in the cluster, if this
		// node is all of it; elsewhere its metadata may just lag.
		if c.soleNode() {
			return kerr.InvalidProducerIDMapping
		}
		return nil
	}
	p := partitionFor(id, len(ti.Partitions))
	group := ti.Partitions[p].Group
	if c.b.node.IsLeader(group) {
		return c.checkTxnPartition(ctx, id, pr.ID, pr.Epoch, topic, partition)
	}
	leader, _, ok := c.b.node.GroupLeader(group)
	if !ok {
		return cannotVerify(errors.New("the transaction's coordinator is not known"))
	}
	return c.verifyRemote(ctx, leader, verifyTxnRequest{TransactionalID: id, ProducerID: pr.ID,
		ProducerEpoch: pr.Epoch, Topic: topic, Partition: partition})
}

// checkTxnPartition is the coordinator's side of the check: the ongoing
// transaction of id must be producer pid's at epoch epoch and hold the
// partition. This node must lead id's __transaction_state partition; when it
// does not (any more), the answer is the retriable cannotVerify.
func (c *txnCoordinator) checkTxnPartition(ctx context.Context, id string, pid int64, epoch int16, topic string, partition int32) error {
	ti, ok := c.b.node.Topic(txnStateTopic)
	if !ok {
		return kerr.InvalidProducerIDMapping // no transactional id was ever initialized
	}
	p := partitionFor(id, len(ti.Partitions))
	if !c.b.node.IsLeader(ti.Partitions[p].Group) {
		return cannotVerify(errors.New("this node no longer coordinates the transactional id"))
	}
	if _, err := c.loader.ensure(ctx, ti, p); err != nil {
		return cannotVerify(err)
	}
	t := c.get(id, p, false)
	if t == nil {
		return kerr.InvalidProducerIDMapping
	}
	m := t.snapshot()
	switch {
	case m.ProducerID < 0 || m.ProducerID != pid || m.State == txnDead:
		return kerr.InvalidProducerIDMapping
	case m.Epoch != epoch:
		return kerr.InvalidProducerEpoch // PRODUCER_FENCED as Produce v11 and older say it
	case m.State == txnPrepareCommit || m.State == txnPrepareAbort || m.State == txnPrepareEpochFence:
		return cannotVerify(kerr.ConcurrentTransactions)
	case m.State != txnOngoing || !m.Partitions.has(topic, partition):
		return newKafkaError(kerr.InvalidTxnState, "partition was not added to the transaction")
	}
	return nil
}

// verifyRemote asks node leader, the transaction's coordinator, to run
// checkTxnPartition.
func (c *txnCoordinator) verifyRemote(ctx context.Context, leader int32, req verifyTxnRequest) error {
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTxnTimeout)
	defer cancel()
	out, err := c.b.node.CallBroker(ctx, leader, rpcVerifyTxn, payload)
	if errors.Is(err, raftfsm.ErrBadRequest) {
		// A node of an earlier version, during a rolling upgrade, knows no
		// broker RPC: the batch goes on unverified, as it did before.
		return nil
	}
	if err != nil {
		return cannotVerify(fmt.Errorf("asking coordinator node %d: %w", leader, err))
	}
	var resp verifyTxnResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return cannotVerify(fmt.Errorf("coordinator node %d answered %q: %w", leader, out, err))
	}
	if resp.ErrorCode == 0 {
		return nil
	}
	code := kerr.ErrorForCode(resp.ErrorCode)
	var ke *kerr.Error
	if !errors.As(code, &ke) {
		return cannotVerify(fmt.Errorf("coordinator node %d answered error code %d", leader, resp.ErrorCode))
	}
	return newKafkaError(ke, "%s", resp.Message)
}

// serveVerifyTxn answers rpcVerifyTxn from another node's partition leader.
func (c *txnCoordinator) serveVerifyTxn(ctx context.Context, payload json.RawMessage) (json.RawMessage, error) {
	var req verifyTxnRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("%w: verify_txn: %v", raftfsm.ErrBadRequest, err)
	}
	var resp verifyTxnResponse
	if err := c.checkTxnPartition(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Topic, req.Partition); err != nil {
		resp.ErrorCode = errorCode(err)
		resp.Message = err.Error()
	}
	return json.Marshal(resp)
}

// cannotVerify is Kafka's answer when the coordinator cannot tell yet: a
// retriable error that makes no client refresh its metadata.
func cannotVerify(err error) error {
	return newKafkaError(kerr.NotEnoughReplicas, "unable to verify the partition has been added to the transaction: %v", err)
}

// soleNode reports whether this node is the only one in the cluster.
func (c *txnCoordinator) soleNode() bool {
	n := 0
	for _, ni := range c.b.node.Nodes() {
		if !ni.Removed {
			n++
		}
	}
	return n <= 1
}
