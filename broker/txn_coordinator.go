package broker

// The transaction coordinator: which node serves a transactional id, the
// transactions in memory, their records in __transaction_state, and the loop
// that aborts timed-out transactions and forgets idle transactional ids.
//
// It follows the group coordinator's design (group_coordinator.go), one
// design for both internal topics: a transactional id belongs to the
// __transaction_state partition it hashes to (Kafka's rule, partitionFor),
// its coordinator is the leader of that partition's Raft group, and its state
// is one record in that partition, written through raftfsm.Node.Produce and
// compacted by key. A partition is loaded (its live records read) whenever
// this node leads it in a new Raft term; transactions a load finds ending
// (Prepare*) are finished then, so an EndTxn answered just before a crash
// still gets its markers.
//
// The state machine is Kafka's (TransactionMetadata, TransactionCoordinator):
//
//	Empty -> Ongoing (first AddPartitionsToTxn / AddOffsetsToTxn)
//	Ongoing -> PrepareCommit | PrepareAbort (EndTxn; answered once durable)
//	Ongoing -> PrepareAbort with epoch+1 (InitProducerId fencing, timeout)
//	Prepare* -> Complete* (after the markers are written)
//	Empty, Complete* -> Empty with epoch+1 (InitProducerId)
//
// Locks: txnCoordinator.mu guards the map and the load state; each txn has
// a write turn (a semaphore of one) held while its next state is decided and
// written, so no lock is held across a proposal (docs/ARCHITECTURE.md). A
// request that finds the turn taken waits for it (or its ctx); a request that
// finds a transaction ending answers CONCURRENT_TRANSACTIONS, and the client
// retries.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// Log attribute keys of the transaction coordinator.
const logKeyTxnID = "transactional_id"

// TxnConfig configures the transaction coordinator. Kafka's broker setting
// of the same meaning is named on each field.
type TxnConfig struct {
	// MaxTimeout is the largest transaction timeout a producer may ask for
	// (transaction.max.timeout.ms); InitProducerId with more answers
	// INVALID_TRANSACTION_TIMEOUT. 1 h here, against Kafka's 15 min, so
	// Flink's KafkaSink (which asks for 1 h) works unconfigured.
	MaxTimeout time.Duration
	// IDExpiration forgets a transactional id that has had no transaction
	// for this long (transactional.id.expiration.ms, 7 days).
	IDExpiration time.Duration
	// TopicPartitions is the partition count of __transaction_state when
	// this broker creates it (transaction.state.log.num.partitions, 50).
	TopicPartitions int32
	// AbortCheckInterval is how often timed-out transactions are looked for
	// (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s).
	AbortCheckInterval time.Duration
	// IDExpirationCheckInterval is how often idle transactional ids are
	// looked for (transaction.remove.expired.transaction.cleanup.interval.ms, 1 h).
	IDExpirationCheckInterval time.Duration
	// VerifyPartitions refuses a transactional batch for a partition the
	// producer's coordinator has not added to its ongoing transaction
	// (transaction.partition.verification.enable, on; txn_verify.go). Off,
	// such a batch opens a transaction on the partition that only an
	// admin's WriteTxnMarkers ends.
	VerifyPartitions bool
}

// DefaultTxnConfig returns the defaults.
func DefaultTxnConfig() TxnConfig {
	return TxnConfig{
		MaxTimeout:                time.Hour,
		IDExpiration:              7 * 24 * time.Hour,
		TopicPartitions:           50,
		AbortCheckInterval:        10 * time.Second,
		IDExpirationCheckInterval: time.Hour,
		VerifyPartitions:          true,
	}
}

// Bounds of TxnConfig fields, checked by Validate; cmd/shardcache checks its
// flags against the same constants. Timeouts travel as int32 milliseconds.
const (
	MinTxnMaxTimeout   = time.Millisecond
	MaxTxnMaxTimeout   = (1<<31 - 1) * time.Millisecond
	MinTxnIDExpiration = time.Millisecond
	MaxTxnIDExpiration = (1<<31 - 1) * time.Millisecond
)

// Validate checks the transaction settings, naming the first bad field.
func (c TxnConfig) Validate() error {
	switch {
	case c.MaxTimeout < MinTxnMaxTimeout || c.MaxTimeout > MaxTxnMaxTimeout:
		return fmt.Errorf("broker: Transactions.MaxTimeout %s is not between %s and %s", c.MaxTimeout, MinTxnMaxTimeout, MaxTxnMaxTimeout)
	case c.IDExpiration < MinTxnIDExpiration || c.IDExpiration > MaxTxnIDExpiration:
		return fmt.Errorf("broker: Transactions.IDExpiration %s is not between %s and %s", c.IDExpiration, MinTxnIDExpiration, MaxTxnIDExpiration)
	case c.TopicPartitions < MinOffsetsTopicPartitions || c.TopicPartitions > MaxOffsetsTopicPartitions:
		return fmt.Errorf("broker: Transactions.TopicPartitions %d is not between %d and %d", c.TopicPartitions, MinOffsetsTopicPartitions, MaxOffsetsTopicPartitions)
	case c.AbortCheckInterval <= 0:
		return fmt.Errorf("broker: Transactions.AbortCheckInterval %s is not positive", c.AbortCheckInterval)
	case c.IDExpirationCheckInterval <= 0:
		return fmt.Errorf("broker: Transactions.IDExpirationCheckInterval %s is not positive", c.IDExpirationCheckInterval)
	}
	return nil
}

// txnWriteTimeout bounds one write of a transaction's record.
const txnWriteTimeout = 30 * time.Second

// txn is one transactional id this node coordinates.
type txn struct {
	id        string
	partition int32
	// turn is the write turn: held while the next state is decided and
	// written (see the file comment).
	turn chan struct{}

	mu sync.Mutex // guards meta and gone, for readers without the turn
	// meta is the state as last written (durable).
	meta txnMetadata
	// gone is set when the txn left the map (partition moved, id expired):
	// a holder of the turn must not write for it any more.
	gone bool
}

// snapshot returns a copy of the state.
func (t *txn) snapshot() txnMetadata {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.meta
	m.Partitions = m.Partitions.clone()
	return m
}

// txnCoordinator owns every transactional id this node coordinates.
type txnCoordinator struct {
	b   *Broker
	cfg TxnConfig
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	txns map[string]*txn

	// loader keeps the load state of the __transaction_state partitions
	// (partition_loader.go).
	loader *partitionLoader

	// coordinatorLife: the loop, the loader's watch and the markers'
	// writers run through goFunc; close waits for them.
	coordinatorLife
}

func newTxnCoordinator(b *Broker, cfg TxnConfig, now func() time.Time) *txnCoordinator {
	c := &txnCoordinator{
		b: b, cfg: cfg, log: b.log, now: now,
		txns: map[string]*txn{},
	}
	c.init()
	c.loader = newPartitionLoader(b.node, b.log,
		&internalTopic{name: txnStateTopic, partitions: cfg.TopicPartitions, what: "transaction state topic"},
		c.stop, c.loadPartition, c.unloadPartition)
	c.goFunc(c.run)
	return c
}

// close stops the loop and every goroutine of the coordinator; idempotent.
func (c *txnCoordinator) close() { c.shutdown(nil) }

// run aborts timed-out transactions and expires idle transactional ids,
// until close. It also loads the partitions this node leads: at start, and
// whenever it comes to lead one (as Kafka loads a partition on election), so
// that a transaction left in Prepare* by a failed coordinator gets its markers
// and an Ongoing one its timeout without waiting for a request of its id.
func (c *txnCoordinator) run() {
	if err := c.b.node.WaitReady(c.ctx); err != nil {
		return
	}
	// The loader loads on every metadata change (a group's new leader
	// reports itself to the metadata group); the abort check looks again as
	// a fallback.
	c.goFunc(func() { c.loader.watch(c.ctx) })
	abort := time.NewTicker(c.cfg.AbortCheckInterval)
	defer abort.Stop()
	expire := time.NewTicker(c.cfg.IDExpirationCheckInterval)
	defer expire.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-abort.C:
			c.loader.loadLed(c.ctx)
			c.abortTimedOut(c.now())
		case <-expire.C:
			c.expireIDs(c.now())
		}
	}
}

// topicInfo returns __transaction_state, creating it (compacted) when create
// is set and it does not exist, as the group coordinator creates
// __consumer_offsets.
func (c *txnCoordinator) topicInfo(ctx context.Context, create bool) (raftfsm.TopicInfo, error) {
	return c.loader.info(ctx, create)
}

// route finds the partition of a transactional id and makes sure this node
// coordinates it and has loaded it (partitionLoader.route).
func (c *txnCoordinator) route(ctx context.Context, id string) (raftfsm.TopicInfo, int32, error) {
	return c.loader.route(ctx, id)
}

// loadPartition reads a partition and installs its transactions, finishing
// those a previous coordinator left ending; the loader calls it under the
// partition's load lock.
func (c *txnCoordinator) loadPartition(pi raftfsm.PartitionInfo, _ int32) error {
	metas, err := c.readPartition(pi.Partition, pi.Shard)
	if err != nil {
		return err
	}
	for _, t := range c.install(pi.Partition, metas) {
		c.goFunc(func() { c.finish(t) })
	}
	return nil
}

// unloadPartition drops the transactions of a partition this node no longer
// leads; a holder of a turn sees its txn gone and stops writing.
func (c *txnCoordinator) unloadPartition(p int32) {
	c.install(p, nil)
}

// readPartition rebuilds the transactions of one partition from its live
// records, O(live keys).
func (c *txnCoordinator) readPartition(p int32, shard shardstore.ShardID) (map[string]*txnMetadata, error) {
	metas := map[string]*txnMetadata{}
	var from int64
	for {
		recs, err := c.b.store.Read(shard, from, 4<<20, 0)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			r := &recs[i]
			if r.Marker != nil {
				continue
			}
			id, err := decodeTxnRecordKey(r.Key)
			if err != nil {
				c.log.Warn("skipping transaction state record", logKeyPartition, p, "offset", r.Offset, logKeyError, err)
				continue
			}
			if r.Value == nil {
				delete(metas, id)
				continue
			}
			m, err := decodeTxnMetadata(r.Value)
			if err != nil {
				c.log.Warn("skipping transaction state record", logKeyPartition, p, "offset", r.Offset, logKeyError, err)
				continue
			}
			metas[id] = m
		}
		from = recs[len(recs)-1].Offset + 1
	}
	return metas, nil
}

// install replaces the transactions of partition p and returns those that
// were ending (Prepare*, or fenced), which the caller finishes.
func (c *txnCoordinator) install(p int32, metas map[string]*txnMetadata) []*txn {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range c.txns {
		if t.partition == p {
			t.mu.Lock()
			t.gone = true
			t.mu.Unlock()
			delete(c.txns, id)
		}
	}
	var ending []*txn
	for id, m := range metas {
		t := &txn{id: id, partition: p, turn: make(chan struct{}, 1), meta: *m}
		c.txns[id] = t
		switch m.State {
		case txnPrepareCommit, txnPrepareAbort, txnPrepareEpochFence:
			ending = append(ending, t)
		}
	}
	return ending
}

// get returns the txn of id, creating an empty one (not yet written) when
// create is set; nil when unknown.
func (c *txnCoordinator) get(id string, p int32, create bool) *txn {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txns[id]
	if t == nil && create {
		t = &txn{id: id, partition: p, turn: make(chan struct{}, 1), meta: txnMetadata{ProducerID: -1, Epoch: -1}}
		c.txns[id] = t
	}
	return t
}

// acquire takes t's write turn; false when ctx ends or the coordinator
// closes first, or t left the map meanwhile (the caller answers
// NOT_COORDINATOR: the id's partition moved).
func (c *txnCoordinator) acquire(ctx context.Context, t *txn) error {
	select {
	case t.turn <- struct{}{}:
	case <-ctx.Done():
		return kerr.ConcurrentTransactions
	case <-c.stop:
		return errNotCoordinator
	}
	t.mu.Lock()
	gone := t.gone
	t.mu.Unlock()
	if gone {
		<-t.turn
		return errNotCoordinator
	}
	return nil
}

func (t *txn) release() { <-t.turn }

// write stores m as t's state (a tombstone when m is nil) and, once applied,
// makes it t's state in memory. The caller holds t's turn.
func (c *txnCoordinator) write(ctx context.Context, t *txn, m *txnMetadata) error {
	if ctx == nil {
		ctx = c.ctx
	}
	ctx, cancel := context.WithTimeout(ctx, txnWriteTimeout)
	defer cancel()
	rec := shardstore.Record{Key: txnRecordKey(t.id), Timestamp: c.now().UnixMilli()}
	if m != nil {
		rec.Value = m.encode()
	}
	if _, err := c.b.node.Produce(ctx, txnStateTopic, t.partition, shardstore.NoProducer, []shardstore.Record{rec}); err != nil {
		return err
	}
	t.mu.Lock()
	if m != nil {
		t.meta = *m
	}
	t.mu.Unlock()
	return nil
}

// coordinatorEpoch is the leader epoch of t's partition, which markers carry.
func (c *txnCoordinator) coordinatorEpoch(t *txn) int32 {
	ti, ok := c.b.node.Topic(txnStateTopic)
	if !ok || int(t.partition) >= len(ti.Partitions) {
		return -1
	}
	return c.b.node.LeaderEpoch(ti.Partitions[t.partition].Group)
}

// txnResult is the outcome of a coordinator operation: a Kafka error (nil
// for NONE) and, for InitProducerId, the producer id and epoch.
type txnResult struct {
	err   *kerr.Error
	pid   int64
	epoch int16
}

// initProducerID serves InitProducerId with a transactional id (Kafka's
// TransactionCoordinator.handleInitProducerId). expectedPID/expectedEpoch are
// -1 unless a v3+ client bumps its epoch (KIP-360).
func (c *txnCoordinator) initProducerID(ctx context.Context, id string, timeoutMs int32, expectedPID int64, expectedEpoch int16) txnResult {
	if timeoutMs <= 0 || time.Duration(timeoutMs)*time.Millisecond > c.cfg.MaxTimeout {
		return txnResult{err: kerr.InvalidTransactionTimeout}
	}
	_, p, err := c.route(ctx, id)
	if err != nil {
		return txnResult{err: coordinatorError(err)}
	}
	t := c.get(id, p, true)
	if err := c.acquire(ctx, t); err != nil {
		return txnResult{err: coordinatorError(err)}
	}
	defer t.release()
	cur := t.snapshot()
	now := c.now().UnixMilli()
	next := cur
	next.TimeoutMs = timeoutMs
	next.UpdateMs = now
	switch {
	case cur.ProducerID < 0 || cur.State == txnDead:
		// Never seen (or forgotten): a fresh producer id at epoch 0, the
		// only case that answers epoch 0 (Flink's lingering-transaction
		// probe stops there).
		pid, _, err := c.b.node.InitProducerID(ctx)
		if err != nil {
			return txnResult{err: coordinatorError(err)}
		}
		next = txnMetadata{ProducerID: pid, Epoch: 0, PrevProducerID: -1, NextProducerID: -1,
			TimeoutMs: timeoutMs, State: txnEmpty, Partitions: topicPartitions{}, StartMs: -1, UpdateMs: now}
	case expectedPID >= 0 && (expectedPID != cur.ProducerID || expectedEpoch != cur.Epoch):
		// KIP-360: the client's idea of its producer is stale.
		return txnResult{err: kerr.ProducerFenced}
	case cur.State == txnPrepareCommit || cur.State == txnPrepareAbort || cur.State == txnPrepareEpochFence:
		return txnResult{err: kerr.ConcurrentTransactions}
	case cur.State == txnOngoing:
		// Fence the old producer (epoch+1) and abort its transaction; the
		// client retries and gets epoch+2 once the abort completed.
		if err := c.beginEnd(ctx, t, cur, false, true); err != nil {
			return txnResult{err: coordinatorError(err)}
		}
		return txnResult{err: kerr.ConcurrentTransactions}
	default: // Empty, CompleteCommit, CompleteAbort
		next.Partitions = topicPartitions{}
		next.StartMs = -1
		next.State = txnEmpty
		if cur.Epoch >= math.MaxInt16-1 {
			pid, _, err := c.b.node.InitProducerID(ctx)
			if err != nil {
				return txnResult{err: coordinatorError(err)}
			}
			next.PrevProducerID, next.ProducerID, next.Epoch = cur.ProducerID, pid, 0
		} else {
			next.Epoch = cur.Epoch + 1
		}
	}
	if err := c.write(ctx, t, &next); err != nil {
		if cur.ProducerID < 0 {
			c.forget(t)
		}
		return txnResult{err: coordinatorError(err)}
	}
	return txnResult{pid: next.ProducerID, epoch: next.Epoch}
}

// forget drops t from the map if it is still the one there.
func (c *txnCoordinator) forget(t *txn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.txns[t.id] == t {
		delete(c.txns, t.id)
		t.mu.Lock()
		t.gone = true
		t.mu.Unlock()
	}
}

// checkProducer is the common check of AddPartitionsToTxn, AddOffsetsToTxn
// and EndTxn: the id is known, the producer id is its own and the epoch is
// current.
func checkProducer(m txnMetadata, pid int64, epoch int16) *kerr.Error {
	switch {
	case m.ProducerID < 0 || m.ProducerID != pid:
		return kerr.InvalidProducerIDMapping
	case epoch != m.Epoch:
		return kerr.ProducerFenced
	}
	return nil
}

// lookupForProducer routes id and returns its txn with the turn held, or an
// error to answer.
func (c *txnCoordinator) lookupForProducer(ctx context.Context, id string) (*txn, *kerr.Error) {
	_, p, err := c.route(ctx, id)
	if err != nil {
		return nil, coordinatorError(err)
	}
	t := c.get(id, p, false)
	if t == nil {
		return nil, kerr.InvalidProducerIDMapping
	}
	if err := c.acquire(ctx, t); err != nil {
		return nil, coordinatorError(err)
	}
	return t, nil
}

// addPartitions adds partitions to id's transaction (AddPartitionsToTxn and,
// with the group's __consumer_offsets partition, AddOffsetsToTxn). The
// caller checked that the partitions exist.
func (c *txnCoordinator) addPartitions(ctx context.Context, id string, pid int64, epoch int16, parts topicPartitions) *kerr.Error {
	t, kerrc := c.lookupForProducer(ctx, id)
	if kerrc != nil {
		return kerrc
	}
	defer t.release()
	cur := t.snapshot()
	if e := checkProducer(cur, pid, epoch); e != nil {
		return e
	}
	switch cur.State {
	case txnPrepareCommit, txnPrepareAbort, txnPrepareEpochFence:
		return kerr.ConcurrentTransactions
	case txnDead:
		return kerr.InvalidProducerIDMapping
	}
	next := cur
	if cur.State != txnOngoing {
		next.Partitions = topicPartitions{}
		next.State = txnOngoing
		next.StartMs = c.now().UnixMilli() // the timeout counts from the first add
	}
	added := false
	for topic, ps := range parts {
		for _, p := range ps {
			if next.Partitions.add(topic, p) {
				added = true
			}
		}
	}
	if !added && cur.State == txnOngoing {
		return nil
	}
	next.UpdateMs = c.now().UnixMilli()
	if err := c.write(ctx, t, &next); err != nil {
		return coordinatorError(err)
	}
	return nil
}

// endTxn serves EndTxn (Kafka's TransactionCoordinator.handleEndTransaction,
// transactions v1): NONE once Prepare* is durable, before the markers.
func (c *txnCoordinator) endTxn(ctx context.Context, id string, pid int64, epoch int16, commit bool) *kerr.Error {
	t, kerrc := c.lookupForProducer(ctx, id)
	if kerrc != nil {
		return kerrc
	}
	defer t.release()
	cur := t.snapshot()
	if e := checkProducer(cur, pid, epoch); e != nil {
		return e
	}
	switch cur.State {
	case txnOngoing:
		if err := c.beginEnd(ctx, t, cur, commit, false); err != nil {
			return coordinatorError(err)
		}
		return nil
	case txnCompleteCommit:
		if commit {
			return nil // a retried COMMIT
		}
	case txnCompleteAbort:
		if !commit {
			return nil
		}
	case txnPrepareCommit:
		if commit {
			return kerr.ConcurrentTransactions
		}
	case txnPrepareAbort:
		if !commit {
			return kerr.ConcurrentTransactions
		}
	case txnPrepareEpochFence:
		return kerr.ConcurrentTransactions
	}
	return kerr.InvalidTxnState
}

// beginEnd writes Prepare* for t's Ongoing transaction (with the epoch bumped
// when fence is set) and starts writing its markers in the background. The
// caller holds t's turn; the background finish takes it after the caller
// released it.
func (c *txnCoordinator) beginEnd(ctx context.Context, t *txn, cur txnMetadata, commit, fence bool) error {
	next := cur
	next.State = txnPrepareAbort
	if commit {
		next.State = txnPrepareCommit
	}
	if fence {
		next.Epoch = cur.Epoch + 1 // Kafka's PrepareEpochFence, written as PrepareAbort
		if cur.Epoch == math.MaxInt16 {
			next.Epoch = cur.Epoch // cannot bump: abort at the same epoch
		}
	}
	next.UpdateMs = c.now().UnixMilli()
	if err := c.write(ctx, t, &next); err != nil {
		return err
	}
	c.goFunc(func() { c.finish(t) })
	return nil
}

// finish writes the markers of t's ending transaction into each of its
// partitions and then Complete*. It retries until it succeeds, t leaves this
// node, or the coordinator closes (a new coordinator finishes it on load).
func (c *txnCoordinator) finish(t *txn) {
	backoff := 50 * time.Millisecond
	for {
		if err := c.acquire(c.ctx, t); err != nil {
			return
		}
		cur := t.snapshot()
		commit := cur.State == txnPrepareCommit
		if cur.State != txnPrepareCommit && cur.State != txnPrepareAbort && cur.State != txnPrepareEpochFence {
			t.release()
			return
		}
		err := c.writeMarkers(c.ctx, cur, commit, c.coordinatorEpoch(t))
		if err == nil {
			next := cur
			next.State = txnCompleteAbort
			if commit {
				next.State = txnCompleteCommit
			}
			next.Partitions = topicPartitions{}
			next.StartMs = -1
			next.UpdateMs = c.now().UnixMilli()
			err = c.write(c.ctx, t, &next)
		}
		t.release()
		if err == nil {
			return
		}
		c.log.Warn("transaction markers not written yet", logKeyTxnID, t.id, logKeyError, err)
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// writeMarkers writes the COMMIT or ABORT marker into every partition of the
// transaction, each on its partition's leader, concurrently. A partition
// whose topic is gone is skipped; any other error fails the round (finish
// tries again: a marker written twice only adds an empty marker).
func (c *txnCoordinator) writeMarkers(ctx context.Context, m txnMetadata, commit bool, coordinatorEpoch int32) error {
	ctx, cancel := context.WithTimeout(ctx, txnWriteTimeout)
	defer cancel()
	marker := shardstore.Marker{ProducerID: m.ProducerID, ProducerEpoch: m.Epoch, Commit: commit, CoordinatorEpoch: coordinatorEpoch}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for topic, ps := range m.Partitions {
		for _, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.b.node.WriteTxnMarker(ctx, topic, p, marker)
				if errors.Is(err, raftfsm.ErrUnknownTopic) || errors.Is(err, raftfsm.ErrUnknownPartition) {
					err = nil
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("marker for %s/%d: %w", topic, p, err):
					default:
					}
				}
			}()
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// abortTimedOut fences and aborts every Ongoing transaction whose timeout,
// counted from its first add, has passed.
func (c *txnCoordinator) abortTimedOut(now time.Time) {
	for _, t := range c.list() {
		m := t.snapshot()
		if m.State != txnOngoing || m.StartMs < 0 || now.UnixMilli() <= m.StartMs+int64(m.TimeoutMs) {
			continue
		}
		select {
		case t.turn <- struct{}{}:
		default:
			continue // busy: the next pass looks again
		}
		cur := t.snapshot()
		if cur.State == txnOngoing && !t.isGone() && now.UnixMilli() > cur.StartMs+int64(cur.TimeoutMs) {
			if err := c.beginEnd(c.ctx, t, cur, false, true); err != nil && c.ctx.Err() == nil {
				c.log.Warn("abort of timed-out transaction failed", logKeyTxnID, t.id, logKeyError, err)
			} else if err == nil {
				c.log.Info("transaction timed out, aborted", logKeyTxnID, t.id, "producer_id", cur.ProducerID)
			}
		}
		t.release()
	}
}

// expireIDs forgets transactional ids with no open transaction whose last
// change is older than IDExpiration (a tombstone in __transaction_state).
func (c *txnCoordinator) expireIDs(now time.Time) {
	cutoff := now.Add(-c.cfg.IDExpiration).UnixMilli()
	for _, t := range c.list() {
		m := t.snapshot()
		if !idle(m.State) || m.UpdateMs > cutoff {
			continue
		}
		select {
		case t.turn <- struct{}{}:
		default:
			continue
		}
		cur := t.snapshot()
		if idle(cur.State) && cur.UpdateMs <= cutoff && !t.isGone() {
			if err := c.write(c.ctx, t, nil); err == nil {
				c.forget(t)
			}
		}
		t.release()
	}
}

func idle(s kmsg.TransactionState) bool {
	return s == txnEmpty || s == txnCompleteCommit || s == txnCompleteAbort
}

func (t *txn) isGone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gone
}

// list returns the transactions in memory.
func (c *txnCoordinator) list() []*txn {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := make([]*txn, 0, len(c.txns))
	for _, t := range c.txns {
		ts = append(ts, t)
	}
	return ts
}

// coordinatorError maps an error of routing or writing to the Kafka error a
// transactional request answers: the coordinator errors as they are, a lost
// leadership as NOT_COORDINATOR, anything else as COORDINATOR_NOT_AVAILABLE
// (retriable, so the client looks the coordinator up again). A group with no
// leader for the moment (ErrNotReady: an election, as when a preferred
// leader takes its partition back) is a lost leadership too, as Kafka's
// coordinator answers NOT_COORDINATOR when the partition is not led here and
// as the group coordinator does (writeErrorCode): franz-go looks the
// coordinator up again on NOT_COORDINATOR, but failed every buffered record
// of a transaction on a COORDINATOR_NOT_AVAILABLE answered in that window
// (TestTxnClusterCoordinatorKillNine, once in make test).
func coordinatorError(err error) *kerr.Error {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		return ke
	case errors.Is(err, raftfsm.ErrNotLeader), errors.Is(err, raftfsm.ErrClosed), errors.Is(err, raftfsm.ErrNotReady):
		return kerr.NotCoordinator
	}
	return kerr.CoordinatorNotAvailable
}

// fencedFor answers PRODUCER_FENCED as INVALID_PRODUCER_EPOCH to request
// versions from before KIP-588, which do not know the newer code.
func fencedFor(e *kerr.Error, version, firstFencedVersion int16) *kerr.Error {
	if e == kerr.ProducerFenced && version < firstFencedVersion {
		return kerr.InvalidProducerEpoch
	}
	return e
}

// errCode is e's code, 0 for nil.
func errCode(e *kerr.Error) int16 {
	if e == nil {
		return 0
	}
	return e.Code
}
