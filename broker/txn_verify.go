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
// the coordinator's state in memory when it is the coordinator itself, which
// on a single node it always is.
//
// Not implemented: on a cluster, when another node coordinates the
// transactional id, the batch is not verified. That needs a node-to-node call
// to the coordinator (an RPC of raftfsm/rpc.go), which does not exist yet.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/shardstore"
)

// verifyTxnBatch checks a transactional batch of producer pr, sent with
// transactional id id, to partition partition of topic (shard shard, led by
// this node) before it is proposed. It answers with the errors Kafka's
// leader answers a produce of v11 or older (ReplicaManager):
// INVALID_PRODUCER_ID_MAPPING for an id the coordinator does not know or
// another producer id, INVALID_PRODUCER_EPOCH for another epoch,
// INVALID_TXN_STATE "partition was not added to the transaction", and
// NOT_ENOUGH_REPLICAS (retriable, no metadata refresh) while the coordinator
// is loading or the transaction is ending. nil when the batch may go on, or
// when this node cannot tell (see the file comment).
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
	if !c.b.node.IsLeader(ti.Partitions[p].Group) {
		return nil // another node coordinates id
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
	case m.ProducerID < 0 || m.ProducerID != pr.ID || m.State == txnDead:
		return kerr.InvalidProducerIDMapping
	case m.Epoch != pr.Epoch:
		return kerr.InvalidProducerEpoch // PRODUCER_FENCED as Produce v11 and older say it
	case m.State == txnPrepareCommit || m.State == txnPrepareAbort || m.State == txnPrepareEpochFence:
		return cannotVerify(kerr.ConcurrentTransactions)
	case m.State != txnOngoing || !m.Partitions.has(topic, partition):
		return newKafkaError(kerr.InvalidTxnState, "partition was not added to the transaction")
	}
	return nil
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
