package broker

// Transactional offset commits (TxnOffsetCommit, docs/ARCHITECTURE.md rule 7).
// The offsets are written to __consumer_offsets as transactional records of
// the producer (no sequence, the coordinator's write), so the shard stages
// them: they take offsets but stay out of the key index until the
// transaction's marker, which AddOffsetsToTxn made sure reaches this
// partition. The group remembers which partitions each producer has staged.
// Whenever its offsets are read, a partition with staged offsets is read
// again from the key index (committed data only: a commit made the staged
// offset live if it is the newer record, an abort left the old one), and a
// producer whose transaction is no longer open in the partition is
// forgotten. Until then OffsetFetch with RequireStable answers those
// partitions UNSTABLE_OFFSET_COMMIT.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/shardstore"
)

func addTxnOffset(m map[string]map[int64]map[topicPartition]bool, group string, pid int64, tp topicPartition) {
	if m[group] == nil {
		m[group] = map[int64]map[topicPartition]bool{}
	}
	if m[group][pid] == nil {
		m[group][pid] = map[topicPartition]bool{}
	}
	m[group][pid][tp] = true
}

// txnCommit serves TxnOffsetCommit after the handler checked the topics:
// parts are written as staged records of producer pid/epoch.
func (c *coordinator) txnCommit(ctx context.Context, groupID string, pid int64, epoch int16, parts []commitPart) {
	setAll := func(code int16) {
		for _, p := range parts {
			*p.code = code
		}
	}
	_, p, err := c.route(ctx, groupID)
	if err != nil {
		setAll(c.b.codeFor(err, "txn offset commit", logKeyGroup, groupID))
		return
	}
	g := c.lookup(groupID, p, true)
	if err := g.acquire(ctx); err != nil {
		setAll(c.writeErrorCode(err, "txn offset commit", groupID))
		return
	}
	defer g.release()
	infos := map[string][16]byte{}
	var recs []shardstore.Record
	var ok []commitPart
	now := c.b.txns.now().UnixMilli()
	for _, cp := range parts {
		if cp.offset.Metadata != nil && len(*cp.offset.Metadata) > maxOffsetMetadataBytes {
			*cp.code = kerr.OffsetMetadataTooLarge.Code
			continue
		}
		if _, seen := infos[cp.topic]; !seen {
			infos[cp.topic], _ = c.b.node.TopicID(cp.topic)
		}
		cp.offset.CommitMs = now
		cp.offset.TopicID = infos[cp.topic]
		recs = append(recs, shardstore.Record{Key: offsetKey(groupID, cp.topic, cp.partition), Value: cp.offset.encode(), Timestamp: now})
		ok = append(ok, cp)
	}
	if len(recs) == 0 {
		return
	}
	producer := shardstore.Producer{ID: pid, Epoch: epoch, BaseSequence: -1, Transactional: true}
	wctx, cancel := context.WithTimeout(ctx, groupWriteTimeout)
	defer cancel()
	if _, err := c.b.node.Produce(wctx, offsetsTopic, g.partition, producer, recs); err != nil {
		code := c.writeErrorCode(err, "txn offset commit", groupID)
		for _, cp := range ok {
			*cp.code = code
		}
		return
	}
	g.mu.Lock()
	if g.state != stateDead {
		if g.txnOffsets == nil {
			g.txnOffsets = map[int64]map[topicPartition]bool{}
		}
		if g.txnOffsets[pid] == nil {
			g.txnOffsets[pid] = map[topicPartition]bool{}
		}
		for _, cp := range ok {
			g.txnOffsets[pid][topicPartition{cp.topic, cp.partition}] = true
		}
	}
	g.mu.Unlock()
	for _, cp := range ok {
		*cp.code = 0
	}
}

// resolveTxnOffsets refreshes the partitions g has staged offsets for from
// the store and returns those still pending (caller holds g.mu; reads of the
// local store only).
func (c *coordinator) resolveTxnOffsets(g *group) map[topicPartition]bool {
	if len(g.txnOffsets) == 0 {
		return nil
	}
	ti, ok := c.b.node.Topic(offsetsTopic)
	if !ok || int(g.partition) >= len(ti.Partitions) {
		return nil
	}
	shard := ti.Partitions[g.partition].Shard
	var unstable map[topicPartition]bool
	for pid, tps := range g.txnOffsets {
		open, err := c.b.store.OpenTxn(shard, pid)
		if err != nil {
			open = true // keep it; the next read tries again
		}
		for tp := range tps {
			rec, found, err := c.b.store.Lookup(shard, offsetKey(g.name, tp.topic, tp.partition))
			if err == nil && found && rec.Value != nil {
				if o, err := decodeCommittedOffset(rec.Value); err == nil {
					g.offsets[tp] = o
				}
			}
			if open {
				if unstable == nil {
					unstable = map[topicPartition]bool{}
				}
				unstable[tp] = true
			}
		}
		if !open {
			delete(g.txnOffsets, pid)
		}
	}
	return unstable
}
