package broker

// Committed offsets: validation of a commit against the group, the records
// written for it, and the reads OffsetFetch and the lag views make.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// maxOffsetMetadataBytes is Kafka's offset.metadata.max.bytes.
const maxOffsetMetadataBytes = 4096

// commitPart is one partition of an OffsetCommit.
type commitPart struct {
	topic     string
	partition int32
	offset    committedOffset
	code      *int16 // where the answer goes
}

// commitCheck validates an OffsetCommit against the group (caller holds
// g.mu), in the order of Kafka's ClassicGroup.validateOffsetCommit: a Dead
// group is COORDINATOR_NOT_AVAILABLE; a generation < 0 (a commit by a consumer
// that assigns partitions itself, as Flink does) is accepted while the group
// is Empty; otherwise a commit naming a member, an instance or a generation
// must match the member (FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID) and then the
// generation (ILLEGAL_GENERATION), and one naming none is UNKNOWN_MEMBER_ID;
// only then does a group completing a rebalance answer REBALANCE_IN_PROGRESS.
func (g *group) commitCheck(memberID string, instance *string, generation int32) int16 {
	if g.state == stateDead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if generation < 0 && g.state == stateEmpty {
		return 0
	}
	if generation >= 0 || memberID != "" || instance != nil {
		if code := g.checkMember(memberID, instance); code != 0 {
			return code
		}
		if generation != g.generation {
			return kerr.IllegalGeneration.Code
		}
	} else if g.state != stateEmpty {
		return kerr.UnknownMemberID.Code
	}
	if g.state == stateCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// commit validates and writes a commit. Each part's code is filled in, in
// Kafka's order: partitions of unknown topics or partitions first (Kafka
// answers them before the coordinator sees the request), then the group id,
// the coordinator and the group's checks for the rest, then the metadata size.
func (c *coordinator) commit(ctx context.Context, groupID, memberID string, instance *string, generation int32, parts []commitPart) {
	known := parts[:0:0]
	infos := map[string]raftfsm.TopicInfo{}
	for _, cp := range parts {
		info, found := infos[cp.topic]
		if !found {
			info, found = c.b.node.Topic(cp.topic)
			if found {
				infos[cp.topic] = info
			}
		}
		if !found || cp.partition < 0 || int(cp.partition) >= len(info.Partitions) {
			*cp.code = kerr.UnknownTopicOrPartition.Code
			continue
		}
		known = append(known, cp)
	}
	if len(known) == 0 {
		return
	}
	parts = known
	setAll := func(code int16) {
		for _, p := range parts {
			*p.code = code
		}
	}
	if len(groupID) > maxGroupIDBytes { // "" is a valid group here, as in Kafka
		setAll(kerr.InvalidGroupID.Code)
		return
	}
	_, p, err := c.route(ctx, groupID)
	if err != nil {
		setAll(c.b.codeFor(err, "offset commit", logKeyGroup, groupID))
		return
	}
	g := c.lookup(groupID, p, generation < 0)
	if g == nil {
		setAll(kerr.IllegalGeneration.Code)
		return
	}
	// Decide in the group's write turn, write with no lock held, apply after.
	if err := g.acquire(ctx); err != nil {
		setAll(c.writeErrorCode(err, "offset commit", groupID))
		return
	}
	defer g.release()
	now := time.Now()
	g.mu.Lock()
	if code := g.commitCheck(memberID, instance, generation); code != 0 {
		g.mu.Unlock()
		setAll(code)
		return
	}
	if m, ok := g.members[memberID]; ok {
		m.deadline = now.Add(m.sessionTimeout)
	}
	g.mu.Unlock()
	var recs []shardstore.Record
	var ok []commitPart
	for _, cp := range parts {
		if cp.offset.Metadata != nil && len(*cp.offset.Metadata) > maxOffsetMetadataBytes {
			*cp.code = kerr.OffsetMetadataTooLarge.Code
			continue
		}
		cp.offset.CommitMs = now.UnixMilli()
		cp.offset.TopicID = infos[cp.topic].ID
		recs = append(recs, shardstore.Record{Key: offsetKey(groupID, cp.topic, cp.partition), Value: cp.offset.encode()})
		ok = append(ok, cp)
	}
	if len(recs) == 0 {
		return
	}
	if err := c.write(ctx, g, recs); err != nil {
		code := c.writeErrorCode(err, "offset commit", groupID)
		for _, cp := range ok {
			*cp.code = code
		}
		return
	}
	g.mu.Lock()
	// Nothing else wrote for the group meanwhile (the turn). A group that
	// went Dead was replaced by a reload of its partition (a new Raft term):
	// the replacement has what that read of the log found.
	if g.state != stateDead {
		for _, cp := range ok {
			g.offsets[topicPartition{cp.topic, cp.partition}] = cp.offset
		}
	}
	g.mu.Unlock()
	for _, cp := range ok {
		*cp.code = 0
	}
	c.b.groupMetrics.commits.Add(float64(len(ok)))
}

// fetchOffsets returns a copy of a group's committed offsets (nil, nil for an
// unknown group) or the routing error.
func (c *coordinator) fetchOffsets(ctx context.Context, groupID string) (map[topicPartition]committedOffset, error) {
	offs, _, err := c.fetchOffsetsStable(ctx, groupID)
	return offs, err
}

// fetchOffsetsStable is fetchOffsets that also returns the partitions with
// offsets staged by an open transaction (group_txn.go). The coordinator first
// confirms that it still leads the group's offsets partition
// (raftfsm.Node.VerifyLeader): one deposed without knowing it yet (paused,
// cut off) would answer from its memory offsets older than those the new
// coordinator already took, and committed offsets never go back.
func (c *coordinator) fetchOffsetsStable(ctx context.Context, groupID string) (map[topicPartition]committedOffset, map[topicPartition]bool, error) {
	ti, p, err := c.route(ctx, groupID)
	if err != nil {
		return nil, nil, err
	}
	if err := c.b.node.VerifyLeader(ctx, ti.Partitions[p].Group); err != nil {
		return nil, nil, errNotCoordinator
	}
	g := c.lookup(groupID, p, false)
	if g == nil {
		return nil, nil, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == stateDead {
		return nil, nil, nil
	}
	unstable := c.resolveTxnOffsets(g)
	live := c.b.liveOffsets()
	out := make(map[topicPartition]committedOffset, len(g.offsets))
	for tp, o := range g.offsets {
		if live(tp.topic, o) {
			out[tp] = o
		}
	}
	return out, unstable, nil
}

// liveOffsets returns a check that a committed offset still applies: its
// topic exists with the id the offset was committed on (offsets stored before
// ids were kept match any id). Offsets of deleted or re-created topics are
// removed through Raft by dropDeletedTopicOffsets; until that is done, reads
// skip them, so a re-created topic never starts from the old topic's offset.
// The check caches ids per topic; use it for one read only.
func (b *Broker) liveOffsets() func(topic string, o committedOffset) bool {
	ids := map[string][16]byte{}
	return func(topic string, o committedOffset) bool {
		id, ok := ids[topic]
		if !ok {
			if id, ok = b.node.TopicID(topic); !ok {
				return false
			}
			ids[topic] = id
		}
		return o.TopicID == [16]byte{} || o.TopicID == id
	}
}

// topicsGone adds to gone the topics of before that are missing from now or
// have another id there (deleted, maybe re-created), and reports whether
// there were any.
func topicsGone(before, now map[string][16]byte, gone map[string]bool) bool {
	found := false
	for name, id := range before {
		if cur, ok := now[name]; !ok || cur != id {
			gone[name] = true
			found = true
		}
	}
	return found
}

// dropDeletedTopicOffsets removes the committed offsets of topics that were
// deleted or re-created since the offsets were committed, writing their
// tombstones through Raft, as Kafka's coordinator drops the offsets of
// deleted partitions. Each node handles the groups of the offsets partitions
// it leads, so with several nodes every group is handled once, by its
// coordinator. Offsets stored before topic ids were kept (zero id) go when
// their topic is gone, or is in replaced: topics the loop saw deleted or
// re-created since it last ran. The coordinator's loop runs it when metadata
// shows a topic gone or replaced, after a partition is loaded, and at each
// offset expiry check (which retries a write that failed). Like a commit, it
// decides and writes in the group's write turn.
func (c *coordinator) dropDeletedTopicOffsets(replaced map[string]bool) {
	ti, ok := c.b.node.Topic(offsetsTopic)
	if !ok {
		return
	}
	ids := c.b.node.TopicIDs()
	for _, g := range c.snapshot() {
		if int(g.partition) >= len(ti.Partitions) || !c.b.node.IsLeader(ti.Partitions[g.partition].Group) {
			continue
		}
		// Decided and written in the group's write turn (so a commit to a
		// re-created topic cannot land between the decision and the
		// tombstone), with no lock held across the write.
		if err := g.acquire(c.ctx); err != nil {
			continue
		}
		g.mu.Lock()
		var gone []topicPartition
		var recs []shardstore.Record
		for tp, o := range g.offsets {
			id, ok := ids[tp.topic]
			if ok && (o.TopicID == id || o.TopicID == [16]byte{} && !replaced[tp.topic]) {
				continue
			}
			gone = append(gone, tp)
			recs = append(recs, shardstore.Record{Key: offsetKey(g.name, tp.topic, tp.partition)})
		}
		dead := g.state == stateDead
		g.mu.Unlock()
		if len(recs) > 0 && !dead {
			if err := c.write(c.ctx, g, recs); err != nil {
				if c.ctx.Err() == nil {
					c.log.Warn("drop offsets of deleted topics failed", logKeyGroup, g.name, logKeyError, err)
				}
			} else {
				g.mu.Lock()
				for _, tp := range gone {
					delete(g.offsets, tp)
				}
				g.mu.Unlock()
				c.log.Info("offsets of deleted topics dropped", logKeyGroup, g.name, "partitions", len(gone))
			}
		}
		g.release()
	}
}

// subscribedTopics lists the topics the members of a consumer group subscribe
// to (decoded from their metadata for the chosen protocol). Caller holds g.mu.
func (g *group) subscribedTopics() map[string]bool {
	out := map[string]bool{}
	if g.protocolType != "consumer" || g.protocol == nil {
		return out
	}
	for _, m := range g.members {
		for _, t := range decodeSubscription(m.metadataFor(*g.protocol)) {
			out[t] = true
		}
	}
	return out
}
