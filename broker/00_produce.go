package broker

// Produce: v3-11
//
// Behavior:
//   - Each partition's Records must be exactly one RecordBatch v2;
//     decodeProduceBatch (batch_memory.go) validates it against the topic's
//     max.message.bytes and Config.MaxDecompressedBytes.
//   - Only the leader of a partition's Raft group accepts it: elsewhere the
//     partition answers NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE while no
//     leader is known) and, v10+ (KIP-951), CurrentLeader and the leader's
//     NodeEndpoints. Only the affected partitions fail.
//   - Partitions are decoded one after the other, each batch's memory charged
//     to the broker's budget before it is decompressed and held until its
//     proposal ends, so a request's peak is bounded by the budget, not by its
//     size. Decoded batches are gathered up to produceFlushBytes (as sent)
//     and proposed together (raftfsm Node.ProduceMany) while decoding
//     goes on: the batches of one Raft group share a Raft entry and a store
//     commit, each group proposed on its own goroutine, so a request touching
//     10,000 partitions costs a few entries per Raft group, not one per
//     partition; each batch still succeeds or fails alone. When the budget
//     runs short, the batches decoded so far are proposed before decoding
//     waits, so a request never waits on its own memory. A batch that needs
//     more memory than the budget can ever give is refused with
//     MESSAGE_TOO_LARGE. acks=1 means what acks=-1
//     means: the answer comes once the entry is committed by a quorum and
//     applied on the leader (offsets are assigned when an entry is applied,
//     and hashicorp/raft reports no earlier point). TimeoutMillis bounds that
//     wait and the wait for memory
//     (REQUEST_TIMED_OUT).
//   - acks=0 is processed the same way but answered with nothing (the handler
//     returns nil), so the next request on the connection is still answered in
//     order. If any partition fails, the connection is closed instead (the
//     handler returns an error), as Kafka does, so the client learns.
//   - Authorization (authorizer.go): a request with a TransactionalID needs
//     WRITE on that transactional id, else every partition answers
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED; each topic needs WRITE, else its
//     partitions answer TOPIC_AUTHORIZATION_FAILED. (Idempotent producers
//     are checked at InitProducerId, as in Kafka 4, KIP-679.)
//   - Unknown topics are created with Config.DefaultPartitions when
//     Config.AutoCreateTopics is set, otherwise UNKNOWN_TOPIC_OR_PARTITION;
//     creating needs CREATE on the cluster or the topic, else
//     TOPIC_AUTHORIZATION_FAILED.
//   - Keyless records on a compacted topic: INVALID_RECORD with the message
//     "compacted topic requires a record key" and, v8+, one RecordErrors entry
//     per keyless record. Nothing of the batch is written (docs/ARCHITECTURE.md rule 4).
//   - Internal topics (__consumer_offsets, __transaction_state) are refused
//     with INVALID_TOPIC_EXCEPTION, as Kafka refuses client appends to them.
//   - A retried idempotent batch (same producer id, epoch and sequence) is not
//     written again and answers its original base offset (docs/ARCHITECTURE.md rule 8).
//
//   - Transactional batches (docs/ARCHITECTURE.md rule 7) take their offsets
//     at once and are staged until the transaction's marker: the key index
//     and read_committed readers see them only after the commit. A
//     transactional batch needs the request's TransactionalID and a producer
//     id (else INVALID_RECORD); a plain batch from a producer with an open
//     transaction in the partition answers INVALID_TXN_STATE; a batch from a
//     fenced epoch INVALID_PRODUCER_EPOCH.
//   - The first transactional batch of a producer on a partition is checked
//     against its coordinator (Kafka 3.6+, KIP-890 part 1; txn_verify.go):
//     INVALID_PRODUCER_ID_MAPPING for a producer id the transactional id
//     does not hold, INVALID_PRODUCER_EPOCH for another epoch,
//     INVALID_TXN_STATE when the partition was not added to the ongoing
//     transaction, NOT_ENOUGH_REPLICAS (retriable) while the coordinator
//     cannot tell. When another node coordinates the transactional id, the
//     leader asks it over the cluster port. Off with
//     TxnConfig.VerifyPartitions.
//
// Version notes: v3 is the first with RecordBatch v2 (and the Java 4.x floor,
// KIP-896). LogAppendTime is always -1 (create time). LogStartOffset v5+;
// RecordErrors and ErrorMessage v8+; v9+ is flexible (kmsg handles tags). v12
// (KIP-890 transactions v2) and v13 (topic ids) are not served.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

func init() { register(kmsg.Produce.Int16(), 3, 11, (*Broker).handleProduce) }

// produceFlushBytes is how many bytes of batches (as sent) a produce request
// gathers before it proposes what it holds, so a large request's first
// batches go through Raft while the rest is decoded. A request as clients
// usually send it (kgo's and the Java client's default cap is 1 MiB per
// partition; a record or two in each of 10,000 partitions is about 2 MiB)
// is proposed at once: one entry and one fsync per Raft group, however many
// partitions it touches.
const produceFlushBytes = 4 << 20

// producePart is one partition of a produce request on its way to Raft.
type producePart struct {
	topic   string
	resp    *kmsg.ProduceResponseTopicPartition
	batch   decodedBatch
	size    int
	shard   shardstore.ShardID
	charged int64 // budget memory held until the proposal ends
}

func (b *Broker) handleProduce(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)

	if req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}
	txnRequest := req.TransactionID != nil
	txnDenied := txnRequest && !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, *req.TransactionID)

	var proposals sync.WaitGroup
	var hintMu sync.Mutex // NodeEndpoints (KIP-951) shared by the partitions
	defer proposals.Wait()
	// notQueued counts the produceParts calls whose proposals are not yet in
	// Raft's queues, plus one for the decoding; when it reaches zero the
	// connection may start its next produce request (rc.queued, conn.go).
	var notQueued atomic.Int32
	notQueued.Store(1)
	partsQueued := func() {
		if notQueued.Add(-1) == 0 && rc.queued != nil {
			rc.queued()
		}
	}
	decoded := sync.OnceFunc(partsQueued)
	defer decoded()
	// pending are decoded batches not yet proposed (pendingBytes their
	// size as sent); flush proposes them on a goroutine of their own, once they
	// hold produceFlushBytes (so Raft and the store work while the rest is
	// decoded) or when decoding is about to wait for memory.
	var pending []*producePart
	var pendingBytes int64
	flush := func() {
		if len(pending) == 0 {
			return
		}
		parts := pending
		pending, pendingBytes = nil, 0
		proposals.Add(1)
		notQueued.Add(1)
		go func() {
			defer proposals.Done()
			b.produceParts(ctx, rc.listener, req.TransactionID, resp, &hintMu, parts, partsQueued)
		}()
	}
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for ti := range req.Topics {
		rt := &req.Topics[ti]
		st := &resp.Topics[ti]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		var info raftfsm.TopicInfo
		var topicErr error
		switch {
		case txnDenied:
			topicErr = kerr.TransactionalIDAuthorizationFailed
		case !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, rt.Topic):
			topicErr = kerr.TopicAuthorizationFailed
		case isInternalTopic(rt.Topic):
			// Kafka refuses client appends to internal topics; the coordinators
			// write them through raftfsm directly.
			topicErr = newKafkaError(kerr.InvalidTopicException, "cannot produce to internal topic %s", rt.Topic)
		default:
			info, topicErr = b.lookupOrCreateTopic(ctx, rc, rt.Topic, b.cfg.AutoCreateTopics)
		}
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			sp := &st.Partitions[pi]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			err := topicErr
			if err == nil && (rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions)) {
				err = raftfsm.ErrUnknownPartition
			}
			if err == nil && b.partitionRole(info.Partitions[rp.Partition].Group) != roleLeader {
				g := info.Partitions[rp.Partition].Group
				err = b.notLeaderError(g)
				b.produceLeaderHint(rc.listener, resp, sp, g)
			}
			var batch decodedBatch
			var charged int64
			if err == nil {
				batch, charged, err = b.decodeProduceBatch(ctx, rp.Records, batchLimits{
					MaxMessageBytes:      info.Config.MaxMessageBytes,
					MaxDecompressedBytes: b.cfg.MaxDecompressedBytes,
					Policy:               info.Config.CleanupPolicy,
					BeforeWait:           flush,
				})
			}
			if err == nil && batch.Transactional && (!txnRequest || batch.Producer.ID < 0 || batch.Producer.BaseSequence < 0) {
				// (A transactional batch without a sequence is the group
				// coordinator's own write, group_txn.go.)
				b.budget.release(charged)
				err = invalidRecord("a transactional batch needs the request's transactional id, a producer id and a sequence")
			}
			if err != nil {
				b.setProduceError(sp, err, rt.Topic)
				continue
			}
			pending = append(pending, &producePart{topic: rt.Topic, resp: sp, batch: batch, size: len(rp.Records),
				shard: info.Partitions[rp.Partition].Shard, charged: charged})
			if pendingBytes += int64(len(rp.Records)); pendingBytes >= produceFlushBytes {
				flush()
			}
		}
	}
	if len(pending) > 0 {
		parts := pending
		pending = nil
		notQueued.Add(1)
		decoded()
		b.produceParts(ctx, rc.listener, req.TransactionID, resp, &hintMu, parts, partsQueued)
	}
	decoded()
	proposals.Wait()

	if req.Acks == 0 {
		// Nothing goes back for acks=0, so a failure would go unnoticed: close
		// the connection, as Kafka does, and the client sees a disconnect and
		// refreshes its metadata.
		if failed := failedPartitions(resp); failed > 0 {
			return nil, fmt.Errorf("acks=0 produce failed in %d partitions: closing the connection so the client learns", failed)
		}
		return nil, nil
	}
	return resp, nil
}

// failedPartitions counts the partitions of a produce answer with an error.
func failedPartitions(resp *kmsg.ProduceResponse) int {
	n := 0
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].ErrorCode != 0 {
				n++
			}
		}
	}
	return n
}

// produceParts verifies the transactional batches of parts, proposes the
// rest together (raftfsm Node.ProduceMany), fills each partition's response
// and releases the parts' memory. hintMu guards the response's
// NodeEndpoints, shared by the calls of one request. queued is called once,
// when the proposals are in Raft's queues (or none will be made).
func (b *Broker) produceParts(ctx context.Context, lis *listener, txnID *string, resp *kmsg.ProduceResponse, hintMu *sync.Mutex, parts []*producePart, queued func()) {
	queued = sync.OnceFunc(queued)
	defer queued()
	defer func() {
		for _, p := range parts {
			b.budget.release(p.charged)
		}
	}()
	ok := b.verifyTxnParts(ctx, txnID, parts)
	batches := make([]raftfsm.PartBatch, len(ok))
	for i, p := range ok {
		batches[i] = raftfsm.PartBatch{Topic: p.topic, Partition: p.resp.Partition, Producer: p.batch.Producer, Records: p.batch.Records}
	}
	var topics map[string]raftfsm.TopicInfo // for leader hints
	var records, bytes int
	for i, res := range b.node.ProduceManyQueued(ctx, batches, queued) {
		p := ok[i]
		if res.Err != nil {
			b.setProduceError(p.resp, res.Err, p.topic)
			if errors.Is(res.Err, raftfsm.ErrNotLeader) {
				// Leadership moved since the handler's check (KIP-951 hint).
				ti, found := topics[p.topic]
				if !found {
					ti, found = b.node.Topic(p.topic)
					if topics == nil {
						topics = map[string]raftfsm.TopicInfo{}
					}
					topics[p.topic] = ti
				}
				if int(p.resp.Partition) < len(ti.Partitions) {
					hintMu.Lock()
					b.produceLeaderHint(lis, resp, p.resp, ti.Partitions[p.resp.Partition].Group)
					hintMu.Unlock()
				}
			}
			continue
		}
		p.resp.BaseOffset = res.BaseOffset
		p.resp.LogStartOffset = res.LogStartOffset
		if !res.Duplicate {
			records += len(p.batch.Records)
			bytes += p.size
		}
	}
	b.metrics.produceBytes.Add(float64(bytes))
	b.metrics.produceRecords.Add(float64(records))
}

// verifyTxnParts checks the transactional batches of parts against their
// coordinator (txn_verify.go), each on its own goroutine since the
// coordinator may be another node, fails those that do not pass, and
// returns the parts still to propose.
func (b *Broker) verifyTxnParts(ctx context.Context, txnID *string, parts []*producePart) []*producePart {
	var txn []int
	for i, p := range parts {
		if p.batch.Transactional {
			txn = append(txn, i)
		}
	}
	if len(txn) == 0 {
		return parts
	}
	failed := make([]bool, len(parts))
	verify := func(i int) {
		p := parts[i]
		if err := b.txns.verifyTxnBatch(ctx, *txnID, p.batch.Producer, p.topic, p.resp.Partition, p.shard); err != nil {
			b.setProduceError(p.resp, err, p.topic)
			failed[i] = true
		}
	}
	var wg sync.WaitGroup
	for _, i := range txn[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verify(i)
		}()
	}
	verify(txn[0])
	wg.Wait()
	ok := make([]*producePart, 0, len(parts))
	for i, p := range parts {
		if !failed[i] {
			ok = append(ok, p)
		}
	}
	return ok
}

// setProduceError fills a partition's error code, message and (v8+) per-record
// errors.
func (b *Broker) setProduceError(sp *kmsg.ProduceResponseTopicPartition, err error, topic string) {
	sp.ErrorCode = b.codeFor(err, "produce", logKeyTopic, topic, logKeyPartition, sp.Partition)
	sp.ErrorMessage = clientMessage(err)
	if be, ok := err.(*batchError); ok {
		for _, i := range be.records {
			re := kmsg.NewProduceResponseTopicPartitionErrorRecord()
			re.RelativeOffset = int32(i)
			re.ErrorMessage = &be.msg
			sp.ErrorRecords = append(sp.ErrorRecords, re)
		}
	}
}
