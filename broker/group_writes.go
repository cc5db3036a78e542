package broker

// How the coordinator writes a group's records to __consumer_offsets without
// holding a lock across the Raft proposal (docs/ARCHITECTURE.md: decide under
// the lock, propose outside it, check again on apply).
//
// Each group has a write turn, a semaphore of one. A write takes the turn,
// decides under group.mu what to write (validation, the records, an
// optimistic state change such as Dead for a deletion), releases group.mu,
// proposes, then takes group.mu again to apply the result (or undo the
// optimistic change) and finally gives the turn back. Decisions are made
// inside the turn, so each one sees the outcome of every earlier write of the
// group, and the group's records reach the log in the order its state
// changed. Heartbeats, joins, syncs and the deadline loop take only group.mu,
// briefly: a stalled write delays the group's next writes and nothing else.
//
// The group metadata record (members, assignments, generation) follows state
// changes made under group.mu by the protocol itself (a barrier ending, a
// leader's SyncGroup): persistLater marks the record out of date and a flusher
// goroutine writes the latest state in the group's turn; persistNow writes it
// and returns the outcome, for the requests that answer only once it is
// durable (the leader's SyncGroup, a static member's replacement).

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/shardstore"
)

// groupWriteTimeout bounds one write of a group's records (Kafka's
// offsets.commit.timeout.ms default is 5 s; a Raft round here usually takes
// milliseconds, a lost leadership fails sooner).
const groupWriteTimeout = 30 * time.Second

// acquire takes the group's write turn, or fails when ctx ends first.
func (g *group) acquire(ctx context.Context) error {
	select {
	case g.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryAcquire takes the write turn if it is free.
func (g *group) tryAcquire() bool {
	select {
	case g.turn <- struct{}{}:
		return true
	default:
		return false
	}
}

// release gives the write turn back.
func (g *group) release() { <-g.turn }

// write appends a group's records to its offsets partition through Raft and
// waits until they are applied. The caller holds g's write turn and not g.mu.
func (c *coordinator) write(ctx context.Context, g *group, recs []shardstore.Record) error {
	if ctx == nil {
		ctx = c.ctx
	}
	if h := c.hooks.beforeWrite; h != nil {
		if err := h(ctx, g.name); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, groupWriteTimeout)
	defer cancel()
	now := time.Now().UnixMilli()
	for i := range recs {
		recs[i].Timestamp = now
	}
	_, err := c.b.node.Produce(ctx, offsetsTopic, g.partition, shardstore.NoProducer, recs)
	return err
}

// writeErrorCode maps a failed write of group records to the code a group
// request answers, as Kafka's coordinator does: the client looks for the
// coordinator again on NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE.
func (c *coordinator) writeErrorCode(err error, op, group string) int16 {
	code := c.b.codeFor(err, op, logKeyGroup, group)
	switch code {
	case kerr.NotLeaderForPartition.Code, kerr.LeaderNotAvailable.Code, kerr.KafkaStorageError.Code:
		return kerr.NotCoordinator.Code
	case kerr.UnknownTopicOrPartition.Code, kerr.NotEnoughReplicas.Code, kerr.RequestTimedOut.Code:
		return kerr.CoordinatorNotAvailable.Code
	case kerr.MessageTooLarge.Code, kerr.RecordListTooLarge.Code:
		return kerr.UnknownServerError.Code
	}
	return code
}

// persistLater marks the group's metadata record out of date and makes sure a
// flusher will write it (caller holds g.mu). It never blocks.
func (c *coordinator) persistLater(g *group) {
	g.persistWanted = true
	if g.flushing {
		return
	}
	g.flushing = true
	if !c.goFunc(func() { c.flush(g) }) {
		g.flushing = false // closing: the record is written by the next leader's state, or never
	}
}

// flush writes the group's metadata record, in the group's turn, until it is
// no longer out of date. A failure is logged: the state in memory stays
// right, and the next change writes the record again.
func (c *coordinator) flush(g *group) {
	for {
		if err := g.acquire(c.ctx); err != nil {
			g.mu.Lock()
			g.flushing = false
			g.mu.Unlock()
			return
		}
		g.mu.Lock()
		if !g.persistWanted || g.state == stateDead {
			g.flushing = false
			g.mu.Unlock()
			g.release()
			return
		}
		g.persistWanted = false
		rec := shardstore.Record{Key: groupKey(g.name), Value: g.stored().encode()}
		g.mu.Unlock()
		err := c.write(c.ctx, g, []shardstore.Record{rec})
		g.release()
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn("write group metadata failed", logKeyGroup, g.name, logKeyError, err)
		}
	}
}

// persistNow writes the group's metadata record as it is now and returns the
// outcome (caller holds neither g.mu nor the turn).
func (c *coordinator) persistNow(ctx context.Context, g *group) error {
	if err := g.acquire(ctx); err != nil {
		return err
	}
	defer g.release()
	g.mu.Lock()
	if g.state == stateDead {
		g.mu.Unlock()
		return errNotCoordinator
	}
	g.persistWanted = false
	rec := shardstore.Record{Key: groupKey(g.name), Value: g.stored().encode()}
	g.mu.Unlock()
	return c.write(ctx, g, []shardstore.Record{rec})
}

// expireOffsets removes offsets past their retention and then groups left
// Empty with no offsets (Kafka's offset expiry and group cleanup). It runs on
// its own goroutine; a group busy writing is skipped until the next pass.
func (c *coordinator) expireOffsets(now time.Time) {
	retention := c.cfg.OffsetsRetention
	for _, g := range c.snapshot() {
		if c.ctx.Err() != nil {
			return
		}
		if !g.tryAcquire() {
			continue
		}
		c.expireGroup(g, now, retention)
		g.release()
	}
}

// expireGroup is expireOffsets for one group; the caller holds its turn.
func (c *coordinator) expireGroup(g *group, now time.Time, retention time.Duration) {
	g.mu.Lock()
	if g.state != stateEmpty {
		g.mu.Unlock()
		return
	}
	var recs []shardstore.Record
	var expired []topicPartition
	for tp, o := range g.offsets {
		var due bool
		switch {
		case o.ExpireMs >= 0:
			due = now.UnixMilli() >= o.ExpireMs
		case g.protocolType != "":
			// A group that had members: retention counts from the moment
			// it became empty (KIP-211).
			due = now.Sub(g.stateTime) >= retention
		default:
			due = now.Sub(time.UnixMilli(o.CommitMs)) >= retention
		}
		if due {
			expired = append(expired, tp)
			recs = append(recs, shardstore.Record{Key: offsetKey(g.name, tp.topic, tp.partition)})
		}
	}
	if len(recs) == 0 {
		g.mu.Unlock()
		return
	}
	// A group left with nothing goes Dead now, so nothing joins or commits
	// to it while its tombstones are written; undone if the write fails.
	dead := len(g.offsets) == len(expired)
	emptySince := g.stateTime
	if dead {
		recs = append(recs, shardstore.Record{Key: groupKey(g.name)})
		g.transition(stateDead, now)
	}
	g.mu.Unlock()

	err := c.write(c.ctx, g, recs)

	g.mu.Lock()
	if err != nil {
		if dead && g.state == stateDead {
			g.transition(stateEmpty, emptySince)
		}
		g.mu.Unlock()
		if c.ctx.Err() == nil {
			c.log.Warn("expire offsets failed", logKeyGroup, g.name, logKeyError, err)
		}
		return
	}
	for _, tp := range expired {
		delete(g.offsets, tp)
	}
	g.mu.Unlock()
	c.log.Info("offsets expired", logKeyGroup, g.name, "partitions", len(expired))
	if dead {
		c.forget(g)
	}
}
