package raftfsm

// The produce path's proposals: a request's partition batches grouped into
// one CmdProduceParts entry per Raft group (ProduceMany), transaction markers,
// producer ids, and the shard commands of the compaction loop and
// DeleteRecords. shardstore.Batch.Append applies them on every replica.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/shardstore"
)

// partition finds a partition's topic and placement.
func (n *Node) partition(topic string, partition int32) (*topicMeta, PartitionInfo, error) {
	t, ok := n.metadata().topics[topic]
	if !ok {
		return nil, PartitionInfo{}, ErrUnknownTopic
	}
	if partition < 0 || int(partition) >= len(t.Partitions) {
		return nil, PartitionInfo{}, ErrUnknownPartition
	}
	return t, t.Partitions[partition], nil
}

// dataGroup returns the open data group g, or ErrNotLeader when this node does
// not carry it.
func (n *Node) dataGroup(g uint32) (*group, error) {
	if g == metaGroup {
		return nil, fmt.Errorf("raftfsm: partition placed on the metadata group")
	}
	grp := n.group(g)
	if grp == nil {
		return nil, fmt.Errorf("%w: group %d is not carried by this node", ErrNotLeader, g)
	}
	return grp, nil
}

// Produce appends one batch to a partition through its Raft group and returns the
// result once the entry is committed and applied. Errors: ErrUnknownTopic,
// ErrUnknownPartition, ErrNotLeader (this node does not lead the partition's
// group), ErrNotReady, ErrClosed, ctx errors, and the shardstore append errors
// (ErrKeyRequired, ErrOutOfOrderSequence, ...).
func (n *Node) Produce(ctx context.Context, topic string, partition int32, p shardstore.Producer, recs []shardstore.Record) (shardstore.AppendResult, error) {
	res := n.ProduceMany(ctx, []PartBatch{{Topic: topic, Partition: partition, Producer: p, Records: recs}})[0]
	return res.AppendResult, res.Err
}

// PartBatch is one partition's produce batch for ProduceMany.
type PartBatch struct {
	Topic     string
	Partition int32
	Producer  shardstore.Producer
	Records   []shardstore.Record
}

// PartResult is the outcome of one PartBatch: the append's result, or Err.
type PartResult struct {
	shardstore.AppendResult
	Err error
}

// maxPartsEntryBytes bounds the records (as produceSize counts them) that
// ProduceMany puts in one CmdProduceParts entry, so an entry stays about as
// large as one produce batch and trailingLogs entries stay a bounded number
// of bytes.
const maxPartsEntryBytes = 1 << 20

// ProduceMany appends batches to many partitions and returns one result per
// batch, in order, once every batch is committed and applied (or failed).
// The batches of one Raft group share Raft entries (CmdProduceParts, up to
// maxPartsEntryBytes each; a lone batch is a CmdProduce, as Produce
// proposes), and each group is proposed on its own goroutine, so a request
// with a record or two in each of 10,000 partitions costs an entry, a
// goroutine and a store commit per Raft group, not per partition. Each batch
// still succeeds or fails alone: the errors of Produce, per batch (a retried
// batch is answered from the store with its original offsets, as by
// Produce; a group this node does not lead fails its batches with
// ErrNotLeader).
func (n *Node) ProduceMany(ctx context.Context, batches []PartBatch) []PartResult {
	return n.ProduceManyQueued(ctx, batches, nil)
}

// ProduceManyQueued is ProduceMany that also calls queued, once, as soon as
// every entry it proposes is in its Raft group's queue (raft.Apply returned)
// or failed before it, and before it waits for them to commit and apply.
// Entries a later call proposes are then behind this call's in every group's
// log: the broker takes a connection's next produce request from that point
// on, and each partition keeps the order its client sent (broker/conn.go).
// queued may run on another goroutine; nil means none.
func (n *Node) ProduceManyQueued(ctx context.Context, batches []PartBatch, queued func()) []PartResult {
	if queued != nil {
		queued = sync.OnceFunc(queued)
		defer queued() // nothing was proposed, or every proposal has returned
	}
	out := make([]PartResult, len(batches))
	if err := n.checkReady(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	type groupWork struct {
		g     *group
		err   error // the group cannot take proposals here
		idx   []int // into batches
		parts []ProducePart
	}
	var work []*groupWork
	byGroup := map[uint32]*groupWork{}
	m := n.metadata()
	now := n.cfg.Now().UnixMilli()
	for i := range batches {
		pb := &batches[i]
		t, ok := m.topics[pb.Topic]
		if !ok {
			out[i].Err = ErrUnknownTopic
			continue
		}
		if pb.Partition < 0 || int(pb.Partition) >= len(t.Partitions) {
			out[i].Err = ErrUnknownPartition
			continue
		}
		part := t.Partitions[pb.Partition]
		gw := byGroup[part.Group]
		if gw == nil {
			gw = &groupWork{}
			gw.g, gw.err = n.dataGroup(part.Group)
			byGroup[part.Group] = gw
			work = append(work, gw)
		}
		if gw.err != nil {
			out[i].Err = gw.err
			continue
		}
		if pb.Producer.ID >= 0 && gw.g.raft.State() == raft.Leader {
			// A retry of an applied batch is answered from the store (see
			// Produce).
			if res, dup, err := n.store.Duplicate(part.Shard, pb.Producer, len(pb.Records)); err == nil && dup {
				out[i].AppendResult = res
				continue
			}
		}
		gw.idx = append(gw.idx, i)
		gw.parts = append(gw.parts, ProducePart{
			Shard:              part.Shard,
			Policy:             t.config.CleanupPolicy,
			MinCompactionLagMs: t.config.MinCompactionLagMs,
			Producer:           pb.Producer,
			Records:            pb.Records,
		})
	}
	// Each group's parts, cut into entries of at most maxPartsEntryBytes.
	type entry struct {
		g     *group
		idx   []int
		parts []ProducePart
	}
	var entries []entry
	for _, gw := range work {
		sortPartsByShard(gw.idx, gw.parts)
		for start := 0; start < len(gw.parts); {
			end, size := start, 0
			for end < len(gw.parts) && (end == start || size+recordsSize(gw.parts[end].Records) <= maxPartsEntryBytes) {
				size += recordsSize(gw.parts[end].Records)
				end++
			}
			entries = append(entries, entry{gw.g, gw.idx[start:end], gw.parts[start:end]})
			start = end
		}
	}
	// inQueue counts the entries not yet in their group's Raft queue; queued
	// is called once it reaches zero, from the proposal that brings it there.
	var inQueue atomic.Int32
	inQueue.Store(int32(len(entries)))
	entered := func() {
		if inQueue.Add(-1) == 0 && queued != nil {
			queued()
		}
	}
	var wg sync.WaitGroup
	for i, e := range entries {
		if i == len(entries)-1 {
			n.proposeParts(ctx, e.g, now, e.idx, e.parts, out, entered)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.proposeParts(ctx, e.g, now, e.idx, e.parts, out, entered)
		}()
	}
	wg.Wait()
	return out
}

// sortPartsByShard orders parts (and idx, their places in the request) by
// shard, keeping the request's order within a shard. A shard's keys are one
// span of the store (shardstore's key layout): applied in shard order, each
// part's writes search Pebble's memtable skiplist near the previous part's,
// through nodes still in the CPU's cache. A produce request lists its
// partitions in any order. With 10,000 partitions, together with the metas
// written in shard order (shardstore's Batch.Commit), this cost 11% less CPU
// per record (profiles README, "An append's writes in key order").
func sortPartsByShard(idx []int, parts []ProducePart) {
	if slices.IsSortedFunc(parts, func(a, b ProducePart) int { return cmp.Compare(a.Shard, b.Shard) }) {
		return
	}
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(parts[a].Shard, parts[b].Shard) })
	sortedIdx := make([]int, len(idx))
	sortedParts := make([]ProducePart, len(parts))
	for i, o := range order {
		sortedIdx[i], sortedParts[i] = idx[o], parts[o]
	}
	copy(idx, sortedIdx)
	copy(parts, sortedParts)
}

// proposeParts proposes parts, the batches of out's entries idx, as one
// entry of group g with append time nowMs, and fills their results. It calls
// entered once, when the entry is in Raft's queue or has failed before it.
func (n *Node) proposeParts(ctx context.Context, g *group, nowMs int64, idx []int, parts []ProducePart, out []PartResult, entered func()) {
	entered = sync.OnceFunc(entered)
	defer entered()
	if len(parts) == 1 {
		p := &parts[0]
		c := &Command{
			Type:     CmdProduce,
			Shard:    p.Shard,
			Options:  shardstore.AppendOptions{Policy: p.Policy, AppendTimeMs: nowMs, MinCompactionLagMs: p.MinCompactionLagMs},
			Producer: p.Producer,
			Records:  p.Records,
		}
		resp, _, err := n.proposeQueued(ctx, g, c, entered)
		if err == nil {
			res, ok := resp.(shardstore.AppendResult)
			if !ok {
				err = fmt.Errorf("raftfsm: produce applied with response %T", resp)
			}
			out[idx[0]].AppendResult = res
		}
		out[idx[0]].Err = err
		return
	}
	c := &Command{Type: CmdProduceParts, Options: shardstore.AppendOptions{AppendTimeMs: nowMs}, Parts: parts}
	resp, _, err := n.proposeQueued(ctx, g, c, entered)
	res, ok := resp.([]PartResult)
	if err == nil && (!ok || len(res) != len(parts)) {
		err = fmt.Errorf("raftfsm: produce_parts of %d applied with response %T", len(parts), resp)
	}
	for j, i := range idx {
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i] = res[j]
	}
}

// WriteTxnMarker ends a producer's transaction in one partition through its
// Raft group, on the group's leader wherever it is (here, or over the
// shard_command RPC): the marker takes the partition's next offset and
// commits or aborts what the producer staged there
// (shardstore.Batch.EndTxn). Errors as Produce, and a marker older than the
// producer's epoch (shardstore.ErrInvalidProducerEpoch when applied here).
func (n *Node) WriteTxnMarker(ctx context.Context, topic string, partition int32, m shardstore.Marker) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	t, part, err := n.partition(topic, partition)
	if err != nil {
		return err
	}
	return n.proposeOnLeader(ctx, part.Group, &Command{
		Type:  CmdTxnMarker,
		Shard: part.Shard,
		Options: shardstore.AppendOptions{
			Policy:       t.config.CleanupPolicy,
			AppendTimeMs: n.cfg.Now().UnixMilli(),
		},
		Marker: m,
	})
}

// InitProducerID allocates a fresh producer id (epoch 0) for an idempotent
// producer. Ids are unique cluster-wide and across restarts: each node takes
// blocks reserved through the metadata group, and a block is never handed out
// twice.
func (n *Node) InitProducerID(ctx context.Context) (id int64, epoch int16, err error) {
	if err := n.checkReady(); err != nil {
		return 0, 0, err
	}
	n.pidMu.Lock()
	defer n.pidMu.Unlock()
	if n.pidNext >= n.pidEnd {
		resp, err := n.metaOp(ctx, &rpcRequest{Op: opAllocatePIDs})
		if err != nil {
			return 0, 0, err
		}
		n.pidNext, n.pidEnd = resp.PIDStart, resp.PIDStart+producerIDBlock
	}
	id = n.pidNext
	n.pidNext++
	return id, 0, nil
}

// ExpireTombstones, ExpireSuperseded and DeleteRecordsBefore propose the matching
// shardstore.Batch operation for a partition through its Raft group, so every
// replica applies it at the same log position. The compaction loop calls them
// on the partitions this node leads (ErrNotLeader elsewhere).
func (n *Node) ExpireTombstones(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireTombstones, BeforeMs: beforeMs})
}

// ExpireSuperseded: see ExpireTombstones.
func (n *Node) ExpireSuperseded(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireSuperseded, BeforeMs: beforeMs})
}

// ExpireTxnMarkers: see ExpireTombstones (transaction markers of a
// compacted partition, shardstore.Batch.ExpireTxnMarkers).
func (n *Node) ExpireTxnMarkers(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireTxnMarkers, BeforeMs: beforeMs})
}

// DeleteRecordsBefore: see ExpireTombstones.
func (n *Node) DeleteRecordsBefore(ctx context.Context, topic string, partition int32, offset int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdDeleteRecordsBefore, Offset: offset})
}

// ExpireProducers proposes that every replica forget the state of the
// partition's idle producers, those whose last batch was appended before
// beforeMs (producer.id.expiration.ms; see shardstore.Batch.ExpireProducers).
// The command carries this node's clock for dating state written before
// append times were kept. The compaction loop calls it (ErrNotLeader
// elsewhere).
func (n *Node) ExpireProducers(ctx context.Context, topic string, partition int32, beforeMs int64) error {
	return n.shardCommand(ctx, topic, partition, &Command{Type: CmdExpireProducers, BeforeMs: beforeMs,
		Options: shardstore.AppendOptions{AppendTimeMs: n.cfg.Now().UnixMilli()}})
}

func (n *Node) shardCommand(ctx context.Context, topic string, partition int32, c *Command) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	_, part, err := n.partition(topic, partition)
	if err != nil {
		return err
	}
	g, err := n.dataGroup(part.Group)
	if err != nil {
		return err
	}
	c.Shard = part.Shard
	_, _, err = n.propose(ctx, g, c)
	return err
}
