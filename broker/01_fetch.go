package broker

// Fetch: v4-12
//
// Behavior:
//   - Only consumers: ReplicaID must be -1, else every partition answers
//     INVALID_REQUEST (followers replicate through Raft, not Fetch).
//   - Needs READ on each topic (authorizer.go), else its partitions answer
//     TOPIC_AUTHORIZATION_FAILED.
//   - Per partition: OFFSET_OUT_OF_RANGE below the log start or above the high
//     watermark; otherwise the live records from the fetch offset, read from the
//     local store and encoded as RecordBatch v2 (records.go), compressed with
//     the codec each record was produced with or the topic's compression.type
//     (fetch_compress.go). Offsets
//     compacted away are skipped: a batch's base offset is its first live record,
//     its base timestamp that record's (later records may have negative
//     timestamp deltas, as in Kafka's own batches).
//   - Nothing live between the fetch offset and the high watermark: one empty
//     batch covering the gap, so the consumer's position reaches the high
//     watermark (docs/ARCHITECTURE.md rule 3). An empty answer is zero bytes, never null.
//   - Byte limits: PartitionMaxBytes per partition and MaxBytes per response,
//     lowered to what the broker's memory budget has room for (fetch_memory.go),
//     counted in encoded batch bytes (headers and record framing included); the
//     first record of the first partition with data is returned whatever its
//     size (KIP-74), nothing else exceeds either limit. A later partition whose
//     first record (or gap batch) does not fit in what is left answers no
//     records.
//   - Long poll: below MinBytes the handler waits on the shards' Store.Wait
//     channels until data arrives, MaxWaitMillis passes, or the connection or
//     broker closes, then reads again.
//   - CurrentLeaderEpoch (v9+, -1 skips the check): newer than the group's Raft
//     term -> UNKNOWN_LEADER_EPOCH, older -> FENCED_LEADER_EPOCH.
//   - Every batch's partition leader epoch is the partition's Raft group term
//     when the fetch is answered (raftfsm.Node.LeaderEpoch, what Metadata and
//     ListOffsets report), not the term the records were written in: the
//     store does not keep per-record terms.
//   - Transactions (docs/ARCHITECTURE.md rule 7): LastStableOffset is the first
//     offset of the oldest open transaction (the high watermark without one).
//     read_committed (IsolationLevel 1) reads only below it, and its gap
//     batch stops there; read_uncommitted reads staged records too.
//     AbortedTransactions is always empty (an empty array, not null, for
//     read_committed): an abort deletes its records at once, so nothing
//     aborted is ever below the last stable offset. Markers are control
//     batches (txn_control.go) that clients skip.
//
//   - Who serves (KIP-392): the leader of the partition's Raft group, from its
//     store. A replica that does not lead (or a leader that has not applied its
//     whole log yet) serves Fetch v11+ up to its own applied high watermark:
//     above it, it answers no records and no error (never OFFSET_OUT_OF_RANGE,
//     on which clients reset their position), and a long poll waits. Fetch
//     below v11 on such a replica, and any fetch on a node without a replica,
//     answers NOT_LEADER_OR_FOLLOWER (v12+ with CurrentLeader), and so does a
//     replica that has not heard from its leader for a few election timeouts.
//   - Rack (v11+): when the consumer's rack differs from the leader's and an
//     in-sync replica is in it, the leader answers no records and
//     PreferredReadReplica = that replica; the client then fetches there.
//
//   - Partitions are read at once when their byte limits fit in MaxBytes
//     together (fillFetchParallel), and a partition answered with more to
//     read is read ahead for the connection's next fetch
//     (fetch_readahead.go); both give the answer an in-order read gives.
//   - Fetch sessions (KIP-227, v7+, fetch_sessions.go): a full fetch with
//     SessionEpoch 0 opens a session while the cache has a slot; incremental
//     fetches list only changed partitions and ForgottenTopics, and their
//     answers only partitions with news. FETCH_SESSION_ID_NOT_FOUND and
//     INVALID_FETCH_SESSION_EPOCH as in Kafka.
//
// Version notes: v4 is the Java 4.x floor (KIP-896) and adds LastStableOffset
// and AbortedTransactions; v5 LogStartOffset; v7 sessions and the top-level
// ErrorCode; v9 CurrentLeaderEpoch; v11 Rack and PreferredReadReplica; v12 is
// flexible (LastFetchedEpoch/DivergingEpoch are for followers and unused).
// v13+ (topic ids) is not served.

import (
	"context"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

func init() { register(kmsg.Fetch.Int16(), 4, 12, (*Broker).handleFetch) }

// fetchMaxRecords caps the records read for one partition of one fetch, so tiny
// records cannot make one answer unbounded in record count.
const fetchMaxRecords = 1 << 16

// fetchTarget is one requested partition resolved to its shard.
type fetchTarget struct {
	shard shardstore.ShardID
	group uint32
	// replica: served from this node's replica, which does not (yet) lead.
	replica bool
	// preferred is the read replica to name instead of answering (-1: none).
	preferred int32
	// fixedCodec, when fixed: the topic's compression.type names a codec,
	// which every answered batch takes (fetch_compress.go).
	fixed      bool
	fixedCodec shardstore.Codec
	err        error // resolution failed: answered with this error
}

func (b *Broker) handleFetch(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	// KIP-227: an incremental fetch becomes the session's full partition list
	// here, and finish drops what did not change (fetch_sessions.go).
	session, serr := b.fetchSessions.begin(req)
	if serr != nil {
		resp.ErrorCode = serr.Code
		return resp, nil
	}
	defer session.finish(resp)

	targets := b.resolveFetch(rc, req)

	var deadline <-chan time.Time
	if req.MaxWaitMillis > 0 && req.MinBytes > 0 {
		t := time.NewTimer(time.Duration(req.MaxWaitMillis) * time.Millisecond)
		defer t.Stop()
		deadline = t.C
	}
	var bytes, records int
	var charged int64 // memory budget held for the response (fetch_memory.go)
	defer func() { b.budget.release(charged) }()
	// What the connection read ahead for this fetch (fetch_readahead.go):
	// used by the first read only; a long poll's later reads are fresh. The
	// deferred discard gives it back when the fetch ends before that read
	// (the connection or the broker closing while the budget is full).
	ahead := rc.takeReadAhead()
	defer func() { ahead.discard(b) }()
	var reads []partitionRead
	for {
		// Take the wait channels before reading, so a write that lands between
		// the read and the wait still wakes us.
		var waits []<-chan struct{}
		if deadline != nil {
			for _, ts := range targets {
				for _, t := range ts {
					if t.err == nil {
						waits = append(waits, b.store.Wait(t.shard))
					}
				}
			}
		}
		var hasErr bool
		limit, c, err := b.chargeFetch(ctx, req, charged)
		if charged = c; err != nil {
			return nil, err // the connection or the broker is closing
		}
		reads, bytes, records, hasErr = b.fillFetch(rc, req, resp, targets, limit, ahead)
		ahead.discard(b)
		ahead = nil
		charged = b.settleFetch(charged, bytes)
		if deadline == nil || hasErr || bytes >= int(req.MinBytes) || len(waits) == 0 {
			break
		}
		if !b.waitFetch(ctx, deadline, waits) {
			break
		}
	}
	b.metrics.fetchBytes.Add(float64(bytes))
	b.metrics.fetchRecords.Add(float64(records))
	b.startReadAhead(rc, req, targets, reads)
	return resp, nil
}

// waitFetch blocks until a wait channel closes (true) or the deadline, the
// connection or the broker ends the wait (false).
func (b *Broker) waitFetch(ctx context.Context, deadline <-chan time.Time, waits []<-chan struct{}) bool {
	cases := make([]reflect.SelectCase, 0, len(waits)+3)
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline)},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(b.closing)},
	)
	for _, w := range waits {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
	}
	chosen, _, _ := reflect.Select(cases)
	return chosen >= 3
}

// resolveFetch maps every requested partition to its shard, once per request.
// The topics the principal may not READ answer TOPIC_AUTHORIZATION_FAILED.
func (b *Broker) resolveFetch(rc *requestContext, req *kmsg.FetchRequest) [][]fetchTarget {
	out := make([][]fetchTarget, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		out[i] = make([]fetchTarget, len(rt.Partitions))
		info, ok := b.node.Topic(rt.Topic)
		readable := b.allowed(rc, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		for j := range rt.Partitions {
			p := rt.Partitions[j].Partition
			out[i][j].preferred = -1
			switch {
			case req.ReplicaID != -1:
				out[i][j].err = newKafkaError(kerr.InvalidRequest, "fetch is served to consumers only (replica id -1)")
			case !readable:
				out[i][j].err = kerr.TopicAuthorizationFailed
			case !ok:
				out[i][j].err = raftfsm.ErrUnknownTopic
			case p < 0 || int(p) >= len(info.Partitions):
				out[i][j].err = raftfsm.ErrUnknownPartition
			default:
				t := &out[i][j]
				t.shard = info.Partitions[p].Shard
				t.group = info.Partitions[p].Group
				t.fixed, t.fixedCodec = info.Config.FixedCompression, info.Config.Compression
				switch b.partitionRole(t.group) {
				case roleLeader:
					if req.Version >= 11 {
						t.preferred = b.preferredReadReplica(t.group, req.Rack)
					}
				case roleFollower, roleLeaderLoading:
					t.replica = true
					if req.Version < 11 || !b.node.ReplicaFresh(t.group) {
						t.err = b.notLeaderError(t.group)
					}
				default:
					t.err = b.notLeaderError(t.group)
				}
			}
		}
	}
	return out
}

// fillFetch (re)builds resp's topics from the store, taking partitions from
// ahead (nil: none) where it read them as they are now. It returns each
// requested partition's read (topics and partitions in request order), the
// record bytes and records answered, and whether any partition has an error
// (which ends a long poll at once, as Kafka does).
func (b *Broker) fillFetch(rc *requestContext, req *kmsg.FetchRequest, resp *kmsg.FetchResponse, targets [][]fetchTarget, limit int, ahead *readAhead) (reads []partitionRead, bytes, records int, hasErr bool) {
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = int(^uint32(0) >> 1)
	}
	maxBytes = min(maxBytes, limit)
	if fetchInParallel(req, targets, maxBytes) {
		if reads, bytes, records, hasErr, ok := b.fillFetchParallel(rc, req, resp, targets, ahead); ok {
			return reads, bytes, records, hasErr
		}
	}
	b.resetFetch(rc, req, resp)
	for i := range req.Topics {
		rt := &req.Topics[i]
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &resp.Topics[i].Partitions[j]
			limit := min(int(rp.PartitionMaxBytes), maxBytes-bytes)
			r := b.fetchPartition(rp, sp, targets[i][j], limit, bytes == 0, req.IsolationLevel == 1, fetchCodecs(req.Version))
			reads = append(reads, r)
			if b.settlePartition(rc, req, sp, targets[i][j], rt.Topic, r) {
				hasErr = true
				continue
			}
			bytes += r.bytes
			records += r.records
		}
	}
	return reads, bytes, records, hasErr
}

// resetFetch gives back the buffers of an earlier read (a long poll reads
// again), so a fetch holds one read's worth, and sets resp to every requested
// partition with no records.
func (b *Broker) resetFetch(rc *requestContext, req *kmsg.FetchRequest, resp *kmsg.FetchResponse) {
	rc.releaseFetchBufs()
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rt.Partitions[j].Partition
			sp.PreferredReadReplica = -1
			sp.RecordBatches = []byte{}
			if req.IsolationLevel == 1 {
				sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
		}
	}
}

// settlePartition records a partition's read in the request's context: the
// buffer its records are in, or the error it answers. It reports whether the
// partition failed.
func (b *Broker) settlePartition(rc *requestContext, req *kmsg.FetchRequest, sp *kmsg.FetchResponseTopicPartition, t fetchTarget, topic string, r partitionRead) bool {
	if r.err != nil {
		sp.ErrorCode = b.codeFor(r.err, "fetch", logKeyTopic, topic, logKeyPartition, sp.Partition)
		if sp.ErrorCode == kerr.NotLeaderForPartition.Code {
			b.fetchLeaderHint(req.Version, sp, t.group)
		}
		return true
	}
	if r.bytes > 0 {
		rc.keepFetchBuf(sp.RecordBatches)
	}
	return false
}

// Reading partitions in parallel. A consumer's fetch is answered while the
// consumer waits: franz-go, the Java client and librdkafka each have one fetch
// in flight per broker. Read one partition after another, a fetch over several
// partitions used one core, and the consumer none. Read at once, the answer is
// the same: fetchInParallel allows it only when the partitions' byte limits
// fit in the response's together, so no partition's limit depends on what the
// partitions before it answered; and fillFetchParallel gives up (the caller
// reads again, in order) when the one other difference shows: a first record
// larger than its partition's limit, which KIP-74 answers whole in the first
// partition with data.

// fetchInParallel reports whether req's partitions may be read at once: more
// than one core, at least two partitions to read, each partition's limit at
// least a batch header, and their sum within the response's maxBytes.
func fetchInParallel(req *kmsg.FetchRequest, targets [][]fetchTarget, maxBytes int) bool {
	if runtime.GOMAXPROCS(0) < 2 {
		return false
	}
	readable, sum := 0, 0
	for i := range req.Topics {
		for j := range req.Topics[i].Partitions {
			if targets[i][j].err != nil {
				continue
			}
			pmb := int(req.Topics[i].Partitions[j].PartitionMaxBytes)
			if pmb < batchHeaderSize {
				return false
			}
			if sum += pmb; sum > maxBytes {
				return false
			}
			readable++
		}
	}
	return readable >= 2
}

// fillFetchParallel reads every partition of req at once, on up to GOMAXPROCS
// goroutines (this one included), or takes it from ahead. ok is false, and
// resp to be rebuilt, when a partition's first record was larger than its
// limit and no partition before it answered records: read in order, that
// partition would have been the first with data and answered the record
// (KIP-74).
func (b *Broker) fillFetchParallel(rc *requestContext, req *kmsg.FetchRequest, resp *kmsg.FetchResponse, targets [][]fetchTarget, ahead *readAhead) (reads []partitionRead, bytes, records int, hasErr, ok bool) {
	b.resetFetch(rc, req, resp)
	type slot struct{ i, j int }
	var slots []slot
	for i := range req.Topics {
		for j := range req.Topics[i].Partitions {
			slots = append(slots, slot{i, j})
		}
	}
	reads = make([]partitionRead, len(slots))
	var next atomic.Int64
	work := func() {
		for {
			k := int(next.Add(1)) - 1
			if k >= len(slots) {
				return
			}
			i, j := slots[k].i, slots[k].j
			rp := &req.Topics[i].Partitions[j]
			sp := &resp.Topics[i].Partitions[j]
			if r, ok := b.useReadAhead(ahead, req, req.Topics[i].Topic, rp, sp, targets[i][j]); ok {
				reads[k] = r
				continue
			}
			// first is false: whether a first record may exceed the limit
			// depends on the partitions before; oversized tells.
			reads[k] = b.fetchPartition(rp, sp, targets[i][j],
				int(rp.PartitionMaxBytes), false, req.IsolationLevel == 1, fetchCodecs(req.Version))
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(slots)) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()

	sum := 0
	for _, r := range reads {
		if r.oversized && sum == 0 {
			// Nothing is kept yet: every answered buffer goes back here.
			for k, s := range slots {
				if r := reads[k]; r.err == nil && r.bytes > 0 {
					putFetchBuf(resp.Topics[s.i].Partitions[s.j].RecordBatches)
				}
			}
			return nil, 0, 0, false, false
		}
		sum += r.bytes
	}
	for k, s := range slots {
		r := reads[k]
		sp := &resp.Topics[s.i].Partitions[s.j]
		if b.settlePartition(rc, req, sp, targets[s.i][s.j], req.Topics[s.i].Topic, r) {
			hasErr = true
			continue
		}
		bytes += r.bytes
		records += r.records
	}
	return reads, bytes, records, hasErr, true
}

// partitionRead is what fetchPartition answered for one partition.
type partitionRead struct {
	bytes, records int
	// oversized: the first record from the fetch offset is larger than the
	// limit, so nothing was answered.
	oversized bool
	err       error
	// For a read that answered records or a gap: the shard as it was read
	// (its counters, last stable offset and leader epoch), where the
	// consumer's next fetch starts, and the end of what it could read (the
	// high watermark, or for read_committed the last stable offset).
	st        shardstore.State
	lso       int64
	epoch     int32
	next, end int64
}

// fetchPartition answers one partition into sp. first is whether nothing has
// been answered yet, so the first record is due whatever the limit (KIP-74).
// Batches are compressed with the codecs of codecs (fetch_compress.go).
// sp.RecordBatches is a buffer from getFetchBuf when records are answered; the
// caller keeps it (settlePartition). It touches nothing but sp, so partitions
// may be read at once.
func (b *Broker) fetchPartition(rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition,
	t fetchTarget, limit int, first, readCommitted bool, codecs codecSet) partitionRead {
	if t.err != nil {
		return partitionRead{err: t.err}
	}
	st, err := b.store.State(t.shard)
	if err != nil {
		return partitionRead{err: err}
	}
	lso, err := b.store.LastStableOffset(t.shard)
	if err != nil {
		return partitionRead{err: err}
	}
	lso = min(lso, st.HighWatermark)
	sp.HighWatermark = st.HighWatermark
	sp.LastStableOffset = lso
	sp.LogStartOffset = st.LogStartOffset
	end := st.HighWatermark // readers stop before end
	if readCommitted {
		end = lso
	}
	if err := b.checkLeaderEpoch(t.group, rp.CurrentLeaderEpoch); err != nil {
		return partitionRead{err: err}
	}
	if t.preferred >= 0 {
		sp.PreferredReadReplica = t.preferred
		return partitionRead{}
	}
	from := rp.FetchOffset
	if from < st.LogStartOffset || (from > st.HighWatermark && !t.replica) {
		return partitionRead{err: shardstore.ErrOffsetOutOfRange}
	}
	if from >= end {
		// On a replica that lags, an offset above its high watermark was
		// written on the leader and will arrive: no records, no error. A
		// read_committed reader at the last stable offset waits the same way.
		return partitionRead{}
	}
	if limit <= 0 {
		if !first {
			return partitionRead{} // the response is full; the consumer asks again
		}
		limit = 1
	}
	// The batches carry the group's term as their partition leader epoch: the
	// epoch Metadata reports now. Offsets do not record the term they were
	// written in, so a batch written under an older leader says the current one.
	epoch := b.node.LeaderEpoch(t.group)
	// Records are encoded as the store iterates them, into one buffer: the
	// limit counts the batches on the wire, and only the first record of the
	// first non-empty partition may exceed it (KIP-74).
	w := batchWriter{dst: getFetchBuf(fetchBufferSize(st, limit, from, end)), epoch: epoch, codecs: codecs,
		fixed: t.fixed, fixedCodec: t.fixedCodec}
	nrec, full := 0, false
	err = b.store.ReadFunc(t.shard, from, func(rec *shardstore.Record) bool {
		// A write applied after State was read may show up here; the answer
		// stays consistent with the high watermark it reports.
		if rec.Offset >= end {
			return false
		}
		if w.len()+w.size(rec) > limit && (nrec > 0 || !first) {
			full = true
			return false
		}
		w.add(rec)
		nrec++
		return nrec < fetchMaxRecords
	})
	if err == nil && nrec > 0 {
		sp.RecordBatches = w.bytes()
	} else {
		putFetchBuf(w.dst)
	}
	switch {
	case err != nil:
		return partitionRead{err: err}
	case nrec > 0:
		return partitionRead{bytes: len(sp.RecordBatches), records: nrec,
			st: st, lso: lso, epoch: epoch, next: w.last + 1, end: end}
	case full:
		// The first record from the offset does not fit: nothing from
		// this partition, and the consumer asks again.
		return partitionRead{oversized: true}
	case !first && limit < batchHeaderSize:
		return partitionRead{}
	}
	// Nothing readable in [from, end): a batch covering the gap.
	sp.RecordBatches = appendGapBatch(make([]byte, 0, batchHeaderSize), epoch, from, end)
	return partitionRead{bytes: len(sp.RecordBatches), st: st, lso: lso, epoch: epoch, next: end, end: end}
}

// fetchBufferSize sizes a partition's answer buffer for the records in
// [from, end): the limit, or less when they take less. Their stored encoding
// is larger than their wire encoding (by more than the batch header per
// record), so the shard's readable bytes bound the whole shard, and the
// average stored record times the offsets in the range estimates a short
// range: a consumer at the end of a large partition asks for a record or two
// under a 1 MiB limit, and got a 1 MiB buffer per partition per fetch
// (BenchmarkFetchTail: 4.2 MB allocated per fetch of 4 partitions). A range
// of records larger than the average only grows the buffer, once or twice.
func fetchBufferSize(st shardstore.State, limit int, from, end int64) int {
	n := st.LiveBytes + batchHeaderSize
	if span := end - from; st.LiveRecords > 0 && span < st.LiveRecords {
		n = min(n, span*(st.LiveBytes/st.LiveRecords+1)+batchHeaderSize)
	}
	return int(min(int64(limit), n))
}

// checkLeaderEpoch compares a client's CurrentLeaderEpoch (-1: no check) with
// the group's Raft term, as Fetch and ListOffsets do (KIP-320).
func (b *Broker) checkLeaderEpoch(group uint32, current int32) error {
	if current < 0 {
		return nil
	}
	switch ours := b.node.LeaderEpoch(group); {
	case current > ours:
		return kerr.UnknownLeaderEpoch
	case current < ours:
		return kerr.FencedLeaderEpoch
	}
	return nil
}
