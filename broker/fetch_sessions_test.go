package broker

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionFetch is a Fetch v12 request that answers at once, for the given
// session id and epoch, fetching the given partitions of topic from offsets.
func sessionFetch(id, epoch int32, topic string, offsets map[int32]int64) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.ReplicaID = -1
	req.MaxBytes = 50 << 20
	req.SessionID, req.SessionEpoch = id, epoch
	if len(offsets) > 0 {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		for p := range int32(len(offsets) + 16) {
			off, ok := offsets[p]
			if !ok {
				continue
			}
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, off, 1<<20
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// answered lists the partitions of resp with the number of record bytes each.
func answered(resp *kmsg.FetchResponse) map[int32]int {
	out := map[int32]int{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[p.Partition] = len(p.RecordBatches)
		}
	}
	return out
}

func produceTo(t testing.TB, cl *kgo.Client, topic string, partition int32, key string) {
	t.Helper()
	r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key), Value: []byte("v")}
	if err := cl.ProduceSync(dataCtx(t), r).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestFetchSessionLifecycle walks one session through Kafka's rules (KIP-227)
// with raw requests: open, incremental fetches that answer only what changed,
// forgotten partitions, epoch errors, close.
func TestFetchSessionLifecycle(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "sess", 3, nil)
	cl := tb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	raw := tb.client(t)
	fetch := func(req *kmsg.FetchRequest) *kmsg.FetchResponse {
		t.Helper()
		return rawRequest[*kmsg.FetchResponse](t, raw, req)
	}

	if r := fetch(sessionFetch(12345, 1, "", nil)); r.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("incremental fetch of an unknown session: error %d, want FETCH_SESSION_ID_NOT_FOUND", r.ErrorCode)
	}
	if r := fetch(sessionFetch(0, -1, "sess", map[int32]int64{0: 0})); r.SessionID != 0 || len(answered(r)) != 1 {
		t.Fatalf("sessionless fetch: session %d, partitions %v", r.SessionID, answered(r))
	}

	produceTo(t, cl, "sess", 0, "a")
	open := fetch(sessionFetch(0, 0, "sess", map[int32]int64{0: 0, 1: 0, 2: 0}))
	id := open.SessionID
	if open.ErrorCode != 0 || id == 0 {
		t.Fatalf("full fetch with epoch 0: error %d, session %d; want a session", open.ErrorCode, id)
	}
	if got := answered(open); len(got) != 3 || got[0] == 0 {
		t.Fatalf("full fetch answered %v, want all 3 partitions and records in 0", got)
	}
	if n := tb.Broker.fetchSessions.len(); n != 1 {
		t.Fatalf("%d sessions cached, want 1", n)
	}

	if r := fetch(sessionFetch(id, 5, "", nil)); r.ErrorCode != kerr.InvalidFetchSessionEpoch.Code {
		t.Fatalf("wrong epoch: error %d, want INVALID_FETCH_SESSION_EPOCH", r.ErrorCode)
	}
	// Partition 0 moves to offset 1 (the client consumed "a"); nothing is new.
	r := fetch(sessionFetch(id, 1, "sess", map[int32]int64{0: 1}))
	if r.ErrorCode != 0 || r.SessionID != id || len(answered(r)) != 0 {
		t.Fatalf("incremental fetch with nothing new: error %d, session %d, partitions %v; want none", r.ErrorCode, r.SessionID, answered(r))
	}
	// A write to partition 2: only it is answered, though the request lists nothing.
	produceTo(t, cl, "sess", 2, "b")
	r = fetch(sessionFetch(id, 2, "", nil))
	if got := answered(r); len(got) != 1 || got[2] == 0 {
		t.Fatalf("after a write to partition 2 the session answered %v, want only partition 2 with records", got)
	}
	if r.Topics[0].Partitions[0].HighWatermark != 1 {
		t.Fatalf("partition 2 high watermark %d, want 1", r.Topics[0].Partitions[0].HighWatermark)
	}
	// Forget partition 1, move 2 past its record, then write to 1 and 2.
	req := sessionFetch(id, 3, "sess", map[int32]int64{2: 1})
	ft := kmsg.NewFetchRequestForgottenTopic()
	ft.Topic, ft.Partitions = "sess", []int32{1}
	req.ForgottenTopics = append(req.ForgottenTopics, ft)
	if got := answered(fetch(req)); len(got) != 0 {
		t.Fatalf("after forgetting partition 1: answered %v, want none", got)
	}
	produceTo(t, cl, "sess", 1, "c")
	produceTo(t, cl, "sess", 2, "d")
	if got := answered(fetch(sessionFetch(id, 4, "", nil))); len(got) != 1 || got[2] == 0 {
		t.Fatalf("answered %v, want partition 2 only (1 was forgotten)", got)
	}
	// A repeated epoch is refused: the session has moved on.
	if r := fetch(sessionFetch(id, 4, "", nil)); r.ErrorCode != kerr.InvalidFetchSessionEpoch.Code {
		t.Fatalf("repeated epoch: error %d, want INVALID_FETCH_SESSION_EPOCH", r.ErrorCode)
	}
	// Epoch -1 closes the session and answers as a sessionless full fetch.
	if r := fetch(sessionFetch(id, -1, "sess", map[int32]int64{1: 0})); r.SessionID != 0 || answered(r)[1] == 0 {
		t.Fatalf("closing fetch: session %d, answered %v; want no session and partition 1's record", r.SessionID, answered(r))
	}
	if r := fetch(sessionFetch(id, 5, "", nil)); r.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("closed session: error %d, want FETCH_SESSION_ID_NOT_FOUND", r.ErrorCode)
	}
	if n := tb.Broker.fetchSessions.len(); n != 0 {
		t.Fatalf("%d sessions cached after close, want 0", n)
	}
}

// TestFetchSessionCacheFull: with one slot, a second session of the same size
// gets none (and its full fetches still work); a larger one evicts the first,
// whose next incremental fetch is FETCH_SESSION_ID_NOT_FOUND.
func TestFetchSessionCacheFull(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.FetchSessionCacheSlots = 1 })
	tb.createDataTopic(t, "slots", 2, nil)
	raw := tb.client(t)
	fetch := func(req *kmsg.FetchRequest) *kmsg.FetchResponse {
		t.Helper()
		return rawRequest[*kmsg.FetchResponse](t, raw, req)
	}
	a := fetch(sessionFetch(0, 0, "slots", map[int32]int64{0: 0})).SessionID
	if a == 0 {
		t.Fatal("first session not opened")
	}
	if r := fetch(sessionFetch(0, 0, "slots", map[int32]int64{1: 0})); r.SessionID != 0 || r.ErrorCode != 0 || len(answered(r)) != 1 {
		t.Fatalf("second session of one partition in a full cache: session %d, error %d, answered %v; want a sessionless answer", r.SessionID, r.ErrorCode, answered(r))
	}
	b := fetch(sessionFetch(0, 0, "slots", map[int32]int64{0: 0, 1: 0})).SessionID
	if b == 0 || b == a {
		t.Fatalf("larger session got id %d (first %d), want a new one evicting the first", b, a)
	}
	if r := fetch(sessionFetch(a, 1, "", nil)); r.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("evicted session: error %d, want FETCH_SESSION_ID_NOT_FOUND", r.ErrorCode)
	}
	if r := fetch(sessionFetch(b, 1, "", nil)); r.ErrorCode != 0 || r.SessionID != b {
		t.Fatalf("surviving session: error %d, session %d", r.ErrorCode, r.SessionID)
	}
}

// TestFetchSessionsWithKgo: franz-go's consumer uses sessions; it reads every
// record of a many-partition topic through incremental fetches.
func TestFetchSessionsWithKgo(t *testing.T) {
	tb := newTestBroker(t)
	const parts, keys = 50, 500
	tb.createDataTopic(t, "many", parts, nil)
	cl := tb.client(t, kgo.DefaultProduceTopic("many"))
	var recs []*kgo.Record
	for k := range keys {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", k), Value: []byte("v")})
	}
	if err := cl.ProduceSync(dataCtx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumer := tb.client(t, kgo.ConsumeTopics("many"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	for len(seen) < keys {
		fs := consumer.PollFetches(dataCtx(t))
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll after %d keys: %v", len(seen), err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = true })
	}
	if n := metricValue(t, tb.Broker.metrics.fetchSessions); n != 1 {
		t.Fatalf("shardcache_broker_fetch_sessions = %v while the consumer runs, want 1", n)
	}
}

// TestFetchSessionBadInput: a negative epoch other than -1 is
// INVALID_FETCH_SESSION_EPOCH; a full fetch listing a partition twice opens a
// session holding it once; an incremental fetch that forgets every partition
// closes the session.
func TestFetchSessionBadInput(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "bad", 1, nil)
	raw := tb.client(t)
	fetch := func(req *kmsg.FetchRequest) *kmsg.FetchResponse {
		t.Helper()
		return rawRequest[*kmsg.FetchResponse](t, raw, req)
	}
	if r := fetch(sessionFetch(0, -2, "bad", map[int32]int64{0: 0})); r.ErrorCode != kerr.InvalidFetchSessionEpoch.Code {
		t.Fatalf("epoch -2: error %d, want INVALID_FETCH_SESSION_EPOCH", r.ErrorCode)
	}
	req := sessionFetch(0, 0, "bad", map[int32]int64{0: 0})
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, req.Topics[0].Partitions[0])
	id := fetch(req).SessionID
	if id == 0 {
		t.Fatal("no session opened")
	}
	tb.Broker.fetchSessions.mu.Lock()
	n := len(tb.Broker.fetchSessions.byID[id].parts)
	tb.Broker.fetchSessions.mu.Unlock()
	if n != 1 {
		t.Fatalf("session holds %d partitions, want 1", n)
	}
	forget := sessionFetch(id, 1, "", nil)
	ft := kmsg.NewFetchRequestForgottenTopic()
	ft.Topic, ft.Partitions = "bad", []int32{0}
	forget.ForgottenTopics = append(forget.ForgottenTopics, ft)
	if r := fetch(forget); r.ErrorCode != 0 || r.SessionID != 0 {
		t.Fatalf("forgetting everything: error %d, session %d; want a closed session", r.ErrorCode, r.SessionID)
	}
	if r := fetch(sessionFetch(id, 2, "", nil)); r.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("after the session emptied: error %d, want FETCH_SESSION_ID_NOT_FOUND", r.ErrorCode)
	}
}
