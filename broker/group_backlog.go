package broker

// Live backlog figures (GroupPartition.LiveBacklog) for the status page and the
// metrics, kept so that neither a /metrics scrape nor a /v1/status call reads
// a shard.
//
// Counting the live records at or after a committed offset is a scan of the
// shard's keys from that offset; done per group and partition at every scrape
// it cost the sum of every group's backlog (1,000 groups x 100 partitions took
// 25 s per scrape in BenchmarkGroupScrape). Here a refresh, on a goroutine of
// its own, counts all the positions of one shard in a single backward scan
// (Store.CountFromEach) of at most backlogScanLimit keys, so its cost depends
// on the shards, not on the number of groups, and it runs at most once per
// GroupConfig.BacklogRefreshInterval, when someone asks for the figures. A
// scrape reads the last refresh's figures; the lag, the high watermark and
// the cheap exact cases (at or below the log start, at the high watermark)
// come from the shards' in-memory counters at scrape time.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// backlogScanLimit caps the keys one refresh reads from one shard; a group
// further behind gets an upper bound (Store.CountFromEach).
const backlogScanLimit = 1 << 20

// backlogKey names one committed group partition.
type backlogKey struct {
	group string
	tp    topicPartition
}

// backlogCache holds the live backlog of every committed group partition as
// of its last refresh. Safe for concurrent use.
type backlogCache struct {
	c        *coordinator
	interval time.Duration

	// values is replaced whole by each refresh and never changed after.
	values atomic.Pointer[map[backlogKey]int64]

	mu        sync.Mutex
	refreshed time.Time     // when the last refresh started; zero: never
	running   bool          // a refresh is running
	done      chan struct{} // closed when the last refresh started ends
}

func newBacklogCache(c *coordinator, interval time.Duration) *backlogCache {
	done := make(chan struct{})
	close(done)
	return &backlogCache{c: c, interval: interval, done: done}
}

// figures returns the last refresh's figures (nil before the first). The map
// is shared: read it, never change it.
func (bc *backlogCache) figures() map[backlogKey]int64 {
	if p := bc.values.Load(); p != nil {
		return *p
	}
	return nil
}

// maybeRefresh starts a refresh in the background when the figures are older
// than the interval and no refresh is running. It never blocks on one.
func (bc *backlogCache) maybeRefresh(now time.Time) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.running || (!bc.refreshed.IsZero() && now.Sub(bc.refreshed) < bc.interval) {
		return
	}
	done := make(chan struct{})
	bc.running, bc.refreshed, bc.done = true, now, done
	finish := func() {
		bc.mu.Lock()
		bc.running = false
		bc.mu.Unlock()
		close(done)
	}
	if !bc.c.goFunc(func() {
		defer finish()
		bc.refresh()
	}) {
		bc.running = false
		close(done)
	}
}

// wait returns when the refresh started last (if any) has ended (tests,
// benchmarks).
func (bc *backlogCache) wait() {
	bc.mu.Lock()
	done := bc.done
	bc.mu.Unlock()
	<-done
}

// refresh counts the live backlog of every committed group partition, one
// backward scan per shard, and publishes the figures.
func (bc *backlogCache) refresh() {
	start := time.Now()
	b := bc.c.b
	type want struct {
		key  backlogKey
		from int64
	}
	wants := map[shardstore.ShardID][]want{}
	topics := map[string]*raftfsm.TopicInfo{}
	n := 0
	for _, g := range bc.c.snapshot() {
		g.mu.Lock()
		if g.state == stateDead {
			g.mu.Unlock()
			continue
		}
		name := g.name
		committed := make([]want, 0, len(g.offsets))
		for tp, o := range g.offsets {
			committed = append(committed, want{key: backlogKey{name, tp}, from: o.Offset})
		}
		g.mu.Unlock()
		for _, w := range committed {
			info, ok := topics[w.key.tp.topic]
			if !ok {
				if ti, found := b.node.Topic(w.key.tp.topic); found {
					info = &ti
				}
				topics[w.key.tp.topic] = info
			}
			if info == nil || w.key.tp.partition < 0 || int(w.key.tp.partition) >= len(info.Partitions) {
				continue
			}
			shard := info.Partitions[w.key.tp.partition].Shard
			wants[shard] = append(wants[shard], w)
			n++
		}
	}
	values := make(map[backlogKey]int64, n)
	scanned := 0
	for shard, ws := range wants {
		if bc.c.ctx.Err() != nil {
			return
		}
		froms := make([]int64, len(ws))
		for i, w := range ws {
			froms[i] = w.from
		}
		counts, err := b.store.CountFromEach(shard, froms, backlogScanLimit)
		if err != nil {
			continue // the shard went away or the store is closing
		}
		for i, w := range ws {
			values[w.key] = counts[i]
		}
		scanned++
	}
	bc.values.Store(&values)
	bc.c.log.Debug("group backlog refreshed", "partitions", n, "shards", scanned,
		"elapsed", time.Since(start).Round(time.Microsecond))
}

// backlogView answers one Broker.Groups call: topics and shard counters are
// looked up once per call, the live backlog comes from the cache.
type backlogView struct {
	b       *Broker
	figures map[backlogKey]int64
	topics  map[string]*raftfsm.TopicInfo
	states  map[shardstore.ShardID]*shardstore.State
}

func (b *Broker) newBacklogView() *backlogView {
	bc := b.groups.backlog
	bc.maybeRefresh(time.Now())
	return &backlogView{b: b, figures: bc.figures(), topics: map[string]*raftfsm.TopicInfo{},
		states: map[shardstore.ShardID]*shardstore.State{}}
}

// backlogInfo is a group's position in one shard.
type backlogInfo struct {
	hwm, lag, live int64
}

// backlog is a group's position in one partition: HighWatermark - committed
// (from the log start without a commit) from the shard's counters now, and
// the live records at or after it, from the last refresh (capped by the lag;
// exact now at or below the log start and at the high watermark; before the
// first refresh that sees the partition, the fewer of the lag and the shard's
// live records). false when the partition no longer exists.
func (v *backlogView) backlog(group string, tp topicPartition, committed int64) (backlogInfo, bool) {
	info, ok := v.topics[tp.topic]
	if !ok {
		if ti, found := v.b.node.Topic(tp.topic); found {
			info = &ti
		}
		v.topics[tp.topic] = info
	}
	if info == nil || tp.partition < 0 || int(tp.partition) >= len(info.Partitions) {
		return backlogInfo{}, false
	}
	shard := info.Partitions[tp.partition].Shard
	st, ok := v.states[shard]
	if !ok {
		if s, err := v.b.store.State(shard); err == nil {
			st = &s
		}
		v.states[shard] = st
	}
	if st == nil {
		return backlogInfo{}, false
	}
	from := committed
	if from < 0 {
		from = st.LogStartOffset
	}
	from = min(max(from, st.LogStartOffset), st.HighWatermark)
	bl := backlogInfo{hwm: st.HighWatermark, lag: st.HighWatermark - from}
	switch {
	case from <= st.LogStartOffset:
		bl.live = st.LiveRecords
	case from >= st.HighWatermark:
		bl.live = 0
	default:
		if n, ok := v.figures[backlogKey{group, tp}]; ok && committed >= 0 {
			bl.live = min(n, bl.lag)
		} else {
			bl.live = min(bl.lag, st.LiveRecords)
		}
	}
	return bl, true
}
