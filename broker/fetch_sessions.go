package broker

// Fetch sessions (KIP-227, incremental fetch). A consumer that fetches many
// partitions opens a session with a full fetch (SessionID 0, SessionEpoch 0);
// the answer names a session id. Its next fetches (SessionEpoch 1, 2, ...) list
// only the partitions whose fetch position or limits changed, new partitions
// and, in ForgottenTopics, the ones to drop; the broker keeps the rest. The
// answer to an incremental fetch lists only the partitions with something
// new: records, an error, a changed high watermark, last stable offset or log
// start offset, or a preferred read replica.
//
// handleFetch (01_fetch.go) calls begin, which turns an incremental request
// into the full list of the session's partitions, serves that as it serves
// any fetch, and calls finish, which drops the unchanged partitions from the
// answer and remembers what it said. Requests and their errors, as Kafka's
// FetchManager.newContext decides them:
//
//	SessionID 0, epoch -1   sessionless full fetch (no session)
//	SessionID 0, epoch 0    full fetch that opens a session, if the cache admits one
//	SessionID s, epoch -1   closes s, then a sessionless full fetch
//	SessionID s, epoch 0    closes s, then a full fetch that opens a new session
//	SessionID s, epoch e>0  incremental: FETCH_SESSION_ID_NOT_FOUND when s is
//	                        unknown (never opened, closed or evicted),
//	                        INVALID_FETCH_SESSION_EPOCH when e is not the
//	                        session's next epoch
//
// The cache holds at most Config.FetchSessionCacheSlots sessions (Kafka's
// max.incremental.fetch.session.cache.slots). When it is full, a new session
// evicts the least recently used one if that one has been idle for
// fetchSessionEvictIdle or has fewer partitions than the newcomer; otherwise
// the newcomer gets no session (SessionID 0) and keeps sending full fetches,
// which always work.

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultFetchSessionCacheSlots is Kafka's max.incremental.fetch.session.cache.slots.
const DefaultFetchSessionCacheSlots = 1000

// fetchSessionEvictIdle is how long a session must be idle before a newcomer
// may evict it from a full cache whatever their sizes (Kafka's
// FetchSessionCache eviction time, 2 minutes).
const fetchSessionEvictIdle = 2 * time.Minute

// fetchSessionPart is one partition of a session: what the client asked last
// (fetch offset and limits) and what the broker answered last.
type fetchSessionPart struct {
	topic     string
	partition int32
	req       kmsg.FetchRequestTopicPartition

	answered          bool // hw, lso and logStart hold the last answer
	hw, lso, logStart int64
	mark              bool // scratch for one pass over parts (s.mu held)
}

type partKey struct {
	topic     string
	partition int32
}

// fetchSession is one open session. mu orders the requests of a session (a
// client has one fetch in flight per broker; a second one with the same epoch
// fails the epoch check).
type fetchSession struct {
	id       int32
	mu       sync.Mutex
	epoch    int32 // the epoch the next request must carry
	parts    []*fetchSessionPart
	index    map[partKey]*fetchSessionPart
	lastUsed time.Time
}

// fetchSessions is the broker's session cache; safe for concurrent use.
type fetchSessions struct {
	slots int // 0: sessions disabled
	now   func() time.Time

	mu   sync.Mutex
	byID map[int32]*fetchSession
	// onChange, if set, is called with the number of sessions after each
	// change, under mu.
	onChange func(n int)
}

func newFetchSessions(slots int, now func() time.Time) *fetchSessions {
	if now == nil {
		now = time.Now
	}
	return &fetchSessions{slots: max(slots, 0), now: now, byID: map[int32]*fetchSession{}}
}

// nextFetchEpoch follows epoch, wrapping past MaxInt32 to 1 (KIP-227).
func nextFetchEpoch(e int32) int32 {
	if e < 0 {
		return e
	}
	if e == math.MaxInt32 {
		return 1
	}
	return e + 1
}

// fetchSessionCtx is what begin hands to finish for one request.
type fetchSessionCtx struct {
	s           *fetchSession // nil: no session for this request
	incremental bool
	full        bool // a new session: the answer lists everything
}

// begin applies the request's session fields. For an incremental fetch it
// rewrites req.Topics to every partition of the session (ForgottenTopics
// applied) in the session's order. A non-nil kerr.Error answers the request
// with that top-level error and nothing else.
func (fs *fetchSessions) begin(req *kmsg.FetchRequest) (fetchSessionCtx, *kerr.Error) {
	if req.Version < 7 {
		return fetchSessionCtx{}, nil // no sessions before v7
	}
	if req.SessionEpoch == 0 || req.SessionEpoch == -1 {
		if req.SessionID != 0 {
			fs.remove(req.SessionID)
		}
		if req.SessionEpoch == -1 || fs.slots == 0 || len(req.Topics) == 0 {
			return fetchSessionCtx{}, nil
		}
		s := fs.open(req)
		if s == nil {
			return fetchSessionCtx{}, nil
		}
		return fetchSessionCtx{s: s, full: true}, nil
	}
	if req.SessionEpoch < 0 {
		return fetchSessionCtx{}, kerr.InvalidFetchSessionEpoch
	}
	fs.mu.Lock()
	s, ok := fs.byID[req.SessionID]
	fs.mu.Unlock()
	if !ok {
		return fetchSessionCtx{}, kerr.FetchSessionIDNotFound
	}
	s.mu.Lock()
	if s.epoch != req.SessionEpoch {
		s.mu.Unlock()
		return fetchSessionCtx{}, kerr.InvalidFetchSessionEpoch
	}
	s.epoch = nextFetchEpoch(s.epoch)
	s.lastUsed = fs.now()
	s.update(req)
	if len(s.parts) == 0 {
		s.mu.Unlock()
		fs.remove(s.id)
		req.Topics = nil
		return fetchSessionCtx{}, nil
	}
	s.expand(req)
	// s.mu stays held until finish: the answer updates the session.
	return fetchSessionCtx{s: s, incremental: true}, nil
}

// open creates a session for a full fetch, or returns nil when the cache has
// no room. The returned session is locked until finish.
func (fs *fetchSessions) open(req *kmsg.FetchRequest) *fetchSession {
	s := &fetchSession{epoch: 1, index: map[partKey]*fetchSessionPart{}}
	s.update(req)
	now := fs.now()
	s.lastUsed = now
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.byID) >= fs.slots {
		var lru *fetchSession
		for _, o := range fs.byID {
			if lru == nil || o.lastUsed.Before(lru.lastUsed) {
				lru = o
			}
		}
		// lastUsed and parts of another session are read under fs.mu only
		// through this snapshot: a racing request may touch them, which at
		// worst picks a different victim.
		if !lru.evictable(now, len(s.parts)) {
			return nil
		}
		delete(fs.byID, lru.id)
	}
	for {
		id := rand.Int32N(math.MaxInt32) + 1
		if _, taken := fs.byID[id]; !taken {
			s.id = id
			break
		}
	}
	fs.byID[s.id] = s
	fs.changed()
	s.mu.Lock()
	return s
}

// evictable reports whether a newcomer with n partitions may take o's slot.
func (o *fetchSession) evictable(now time.Time, n int) bool {
	if !o.mu.TryLock() {
		return false // serving a request right now
	}
	defer o.mu.Unlock()
	return now.Sub(o.lastUsed) >= fetchSessionEvictIdle || len(o.parts) < n
}

func (fs *fetchSessions) remove(id int32) {
	fs.mu.Lock()
	delete(fs.byID, id)
	fs.changed()
	fs.mu.Unlock()
}

func (fs *fetchSessions) changed() {
	if fs.onChange != nil {
		fs.onChange(len(fs.byID))
	}
}

// len returns the number of open sessions.
func (fs *fetchSessions) len() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.byID)
}

// update adds or updates the request's partitions and drops its forgotten
// ones (s.mu held).
func (s *fetchSession) update(req *kmsg.FetchRequest) {
	forgot := false
	for i := range req.ForgottenTopics {
		ft := &req.ForgottenTopics[i]
		for _, n := range ft.Partitions {
			k := partKey{ft.Topic, n}
			if p, ok := s.index[k]; ok {
				delete(s.index, k)
				p.mark, forgot = true, true
			}
		}
	}
	if forgot {
		s.parts = slices.DeleteFunc(s.parts, func(p *fetchSessionPart) bool { return p.mark })
	}
	for i := range req.Topics {
		rt := &req.Topics[i]
		for j := range rt.Partitions {
			rp := rt.Partitions[j]
			k := partKey{rt.Topic, rp.Partition}
			if p, ok := s.index[k]; ok {
				p.req = rp
				continue
			}
			p := &fetchSessionPart{topic: rt.Topic, partition: rp.Partition, req: rp}
			s.index[k] = p
			s.parts = append(s.parts, p)
		}
	}
}

// expand sets req.Topics to every partition of the session, in order, with
// consecutive partitions of one topic under one topic entry.
func (s *fetchSession) expand(req *kmsg.FetchRequest) {
	topics := make([]kmsg.FetchRequestTopic, 0, 1)
	for _, p := range s.parts {
		if n := len(topics); n == 0 || topics[n-1].Topic != p.topic {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = p.topic
			topics = append(topics, t)
		}
		t := &topics[len(topics)-1]
		t.Partitions = append(t.Partitions, p.req)
	}
	req.Topics = topics
	req.ForgottenTopics = nil
}

// finish sets the answer's session id, records what each partition answered
// and, for an incremental fetch, drops the partitions with nothing new. The
// partitions answered with records move to the end of the session's order, so
// the next fetch serves the others first under MaxBytes (as Kafka rotates
// them).
func (c fetchSessionCtx) finish(resp *kmsg.FetchResponse) {
	s := c.s
	if s == nil {
		resp.SessionID = 0
		return
	}
	defer s.mu.Unlock()
	resp.SessionID = s.id
	var moved []*fetchSessionPart
	for i := range resp.Topics {
		rt := &resp.Topics[i]
		kept := rt.Partitions[:0]
		for j := range rt.Partitions {
			sp := &rt.Partitions[j]
			p := s.index[partKey{rt.Topic, sp.Partition}]
			if p == nil {
				continue // not possible: the request was built from the session
			}
			changed := !p.answered || len(sp.RecordBatches) > 0 || sp.ErrorCode != 0 ||
				sp.PreferredReadReplica >= 0 || sp.HighWatermark != p.hw ||
				sp.LastStableOffset != p.lso || sp.LogStartOffset != p.logStart
			p.answered = true
			p.hw, p.lso, p.logStart = sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset
			if len(sp.RecordBatches) > 0 && !p.mark {
				p.mark = true
				moved = append(moved, p)
			}
			if c.full || changed {
				kept = append(kept, *sp)
			}
		}
		rt.Partitions = kept
	}
	if c.incremental {
		topics := resp.Topics[:0]
		for _, t := range resp.Topics {
			if len(t.Partitions) > 0 {
				topics = append(topics, t)
			}
		}
		resp.Topics = topics
	}
	if len(moved) > 0 {
		s.parts = append(slices.DeleteFunc(s.parts, func(p *fetchSessionPart) bool { return p.mark }), moved...)
		for _, p := range moved {
			p.mark = false
		}
	}
}
