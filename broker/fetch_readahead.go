package broker

import (
	"runtime"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Read-ahead: a consumer's next fetch is read while it takes in this one's
// answer. A consumer has one fetch in flight per broker (franz-go, the Java
// client, librdkafka), so during a full read the broker and the consumer took
// turns: the broker read and encoded records while the consumer waited, then
// the consumer decoded them while the broker waited. On a machine with a spare
// core, the broker now reads each partition that has more to give from where
// the consumer will ask next, as soon as an answer is built.
//
// The next fetch uses a partition read ahead only when that is the answer it
// would read itself:
//   - the same partition of the same shard, served the same way (leader or
//     replica), from the same offset with the same byte limit and isolation;
//   - the shard unchanged since: its counters (State: every append, delete,
//     expiry or DeleteRecords moves one of them), last stable offset and
//     leader epoch are the ones the read saw;
//   - a fetch whose partitions are read in parallel (fetchInParallel), because
//     a partition read ahead is read the same way: with its own limit, no
//     record larger than it.
//
// Anything else is read again and the read-ahead dropped. A connection holds
// at most one read-ahead, charged to the memory budget, and only while the
// budget is less than half used; it is dropped by the connection's next
// fetch, whatever that asks, or when the connection closes.

// readAhead is one connection's reads for its next fetch, done in the
// background: done closes once reads is complete.
type readAhead struct {
	done    chan struct{}
	reads   map[readAheadKey]*readAheadPart
	charged int64
}

type readAheadKey struct {
	topic     string
	partition int32
}

// readAheadPart is one partition read ahead: its answer (sp) and how it was
// asked for and read.
type readAheadPart struct {
	target        fetchTarget
	from          int64
	limit         int32
	readCommitted bool
	codecs        codecSet
	sp            kmsg.FetchResponseTopicPartition
	r             partitionRead
	used          bool // taken into an answer, which owns sp's buffer now
}

// startReadAhead reads ahead, for rc's connection, every partition of req
// whose answer (reads, in request order) left records between the
// consumer's next offset and the end it could read.
func (b *Broker) startReadAhead(rc *requestContext, req *kmsg.FetchRequest, targets [][]fetchTarget, reads []partitionRead) {
	if rc.conn == nil || runtime.GOMAXPROCS(0) < 2 {
		return
	}
	ra := &readAhead{done: make(chan struct{}), reads: make(map[readAheadKey]*readAheadPart)}
	var want int64
	k := 0
	for i := range req.Topics {
		rt := &req.Topics[i]
		for j := range rt.Partitions {
			r := reads[k]
			k++
			t := targets[i][j]
			if r.err != nil || t.err != nil || t.preferred >= 0 || r.records == 0 || r.next >= r.end {
				continue
			}
			rp := &rt.Partitions[j]
			ra.reads[readAheadKey{rt.Topic, rp.Partition}] = &readAheadPart{
				target: t, from: r.next, limit: rp.PartitionMaxBytes, readCommitted: req.IsolationLevel == 1,
				codecs: fetchCodecs(req.Version),
			}
			want += int64(rp.PartitionMaxBytes)
		}
	}
	if len(ra.reads) == 0 || !b.budget.tryAcquireSpare(fetchChargeFactor*want) {
		return
	}
	ra.charged = fetchChargeFactor * want
	rc.conn.ahead = ra
	go func() {
		defer close(ra.done)
		var held int64
		for _, p := range ra.reads {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p.from, p.limit, -1
			p.sp = kmsg.NewFetchResponseTopicPartition()
			p.r = b.fetchPartition(&rp, &p.sp, p.target, int(p.limit), false, p.readCommitted, p.codecs)
			held += int64(len(p.sp.RecordBatches))
		}
		b.metrics.fetchReadAhead.WithLabelValues("read").Add(float64(len(ra.reads)))
		// Keep the charge for what is held, as fetches do.
		if used := fetchChargeFactor * held; used < ra.charged {
			b.budget.release(ra.charged - used)
			ra.charged = used
		}
	}()
}

// takeReadAhead returns the read-ahead of rc's connection (nil if none) and
// leaves the connection without one. The caller waits for it and drops it
// (discard).
func (rc *requestContext) takeReadAhead() *readAhead {
	if rc.conn == nil {
		return nil
	}
	ra := rc.conn.ahead
	rc.conn.ahead = nil
	if ra != nil {
		<-ra.done
	}
	return ra
}

// useReadAhead answers rp into sp from ahead when the partition was read
// ahead as the fetch would read it now; ok is false otherwise (ahead nil
// included).
func (b *Broker) useReadAhead(ahead *readAhead, req *kmsg.FetchRequest, topic string, rp *kmsg.FetchRequestTopicPartition,
	sp *kmsg.FetchResponseTopicPartition, t fetchTarget) (partitionRead, bool) {
	if ahead == nil {
		return partitionRead{}, false
	}
	p := ahead.reads[readAheadKey{topic, rp.Partition}]
	if p == nil || p.r.err != nil || p.r.oversized || p.target != t ||
		p.from != rp.FetchOffset || p.limit != rp.PartitionMaxBytes || p.readCommitted != (req.IsolationLevel == 1) ||
		p.codecs != fetchCodecs(req.Version) {
		return partitionRead{}, false
	}
	st, err := b.store.State(t.shard)
	if err != nil || st != p.r.st {
		return partitionRead{}, false
	}
	if lso, err := b.store.LastStableOffset(t.shard); err != nil || lso != p.r.lso {
		return partitionRead{}, false
	}
	if b.node.LeaderEpoch(t.group) != p.r.epoch || b.checkLeaderEpoch(t.group, rp.CurrentLeaderEpoch) != nil {
		return partitionRead{}, false
	}
	sp.HighWatermark = p.sp.HighWatermark
	sp.LastStableOffset = p.sp.LastStableOffset
	sp.LogStartOffset = p.sp.LogStartOffset
	sp.RecordBatches = p.sp.RecordBatches
	p.used = true
	return p.r, true
}

// discard gives back what ra holds and was not used: its buffers and its
// memory charge. ra may be nil; it must be complete (done closed).
func (ra *readAhead) discard(b *Broker) {
	if ra == nil {
		return
	}
	used := 0
	for _, p := range ra.reads {
		if p.used {
			used++
			continue
		}
		if p.r.err == nil && p.r.bytes > 0 {
			putFetchBuf(p.sp.RecordBatches)
		}
	}
	b.metrics.fetchReadAhead.WithLabelValues("used").Add(float64(used))
	b.metrics.fetchReadAhead.WithLabelValues("dropped").Add(float64(len(ra.reads) - used))
	b.budget.release(ra.charged)
}
