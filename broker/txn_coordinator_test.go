package broker

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

// fakeClock is time.Now moved forward by what a test adds.
type fakeClock struct{ skew atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *fakeClock) add(d time.Duration) { c.skew.Add(int64(d)) }
func testTxnConfig() TxnConfig           { c := DefaultTxnConfig(); c.TopicPartitions = 3; return c }
func codeName(code int16) string         { return fmt.Sprint(kerr.ErrorForCode(code)) }
func txnPtr(s string) *string            { return &s }
func (gb *groupBroker) txnClient(t testing.TB) *txnClient {
	return &txnClient{t: t, cl: gb.client(t)}
}

// newTxnBroker starts a broker with test transaction settings and a fake
// clock; stopped when the test ends.
func newTxnBroker(t testing.TB) (*groupBroker, *fakeClock) {
	t.Helper()
	clock := &fakeClock{}
	gb := &groupBroker{t: t, dir: t.TempDir(), cfg: testGroupConfig(), txn: testTxnConfig(), now: clock.now}
	gb.start()
	t.Cleanup(func() { gb.Stop() })
	return gb, clock
}

// txnClient sends the transaction coordinator's requests raw through kgo,
// which finds the coordinator with FindCoordinator key type TRANSACTION.
type txnClient struct {
	t  testing.TB
	cl *kgo.Client
}

func (c *txnClient) init(id string, timeoutMs int32, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
	c.t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 4
	req.TransactionalID = txnPtr(id)
	req.TransactionTimeoutMillis = timeoutMs
	req.ProducerID, req.ProducerEpoch = pid, epoch
	return groupRequest[*kmsg.InitProducerIDResponse](c.t, c.cl, req)
}

// initOK retries InitProducerId through CONCURRENT_TRANSACTIONS and returns
// the producer id and epoch.
func (c *txnClient) initOK(id string) (int64, int16) {
	c.t.Helper()
	var resp *kmsg.InitProducerIDResponse
	waitUntil(c.t, 20*time.Second, "init producer id "+id, func() error {
		resp = c.init(id, 60_000, -1, -1)
		if resp.ErrorCode != 0 {
			return kerr.ErrorForCode(resp.ErrorCode)
		}
		return nil
	})
	return resp.ProducerID, resp.ProducerEpoch
}

func (c *txnClient) add(version int16, id string, pid int64, epoch int16, topic string, parts ...int32) []int16 {
	c.t.Helper()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, parts
	req.Topics = append(req.Topics, rt)
	resp := groupRequest[*kmsg.AddPartitionsToTxnResponse](c.t, c.cl, req)
	var codes []int16
	for _, st := range resp.Topics {
		for _, sp := range st.Partitions {
			codes = append(codes, sp.ErrorCode)
		}
	}
	return codes
}

func (c *txnClient) addOffsets(id string, pid int64, epoch int16, group string) int16 {
	c.t.Helper()
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.Version = 3
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = id, pid, epoch, group
	return groupRequest[*kmsg.AddOffsetsToTxnResponse](c.t, c.cl, req).ErrorCode
}

func (c *txnClient) end(version int16, id string, pid int64, epoch int16, commit bool) int16 {
	c.t.Helper()
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, commit
	return groupRequest[*kmsg.EndTxnResponse](c.t, c.cl, req).ErrorCode
}

// endDone repeats EndTxn until it answers NONE (through CONCURRENT_TRANSACTIONS
// while the markers are written).
func (c *txnClient) endDone(id string, pid int64, epoch int16, commit bool) {
	c.t.Helper()
	waitUntil(c.t, 20*time.Second, "end transaction "+id, func() error {
		if code := c.end(3, id, pid, epoch, commit); code != 0 {
			return kerr.ErrorForCode(code)
		}
		return nil
	})
}

func wantCode(t testing.TB, what string, got int16, want *kerr.Error) {
	t.Helper()
	wantCode := int16(0)
	if want != nil {
		wantCode = want.Code
	}
	if got != wantCode {
		t.Fatalf("%s: %s, want %s", what, codeName(got), codeName(wantCode))
	}
}

func createTopic(t testing.TB, gb *groupBroker, name string, partitions int32) {
	t.Helper()
	if _, err := gb.Node.CreateTopic(dataCtx(t), name, partitions, nil, false); err != nil {
		t.Fatal(err)
	}
}

// TestTxnCoordinatorStateMachine walks Kafka's transaction state machine
// through a real client and checks every error the notes list.
func TestTxnCoordinatorStateMachine(t *testing.T) {
	gb, _ := newTxnBroker(t)
	createTopic(t, gb, "data", 2)
	c := gb.txnClient(t)
	const id = "flink-sink-0-1"

	// Request checks.
	empty := kmsg.NewPtrInitProducerIDRequest()
	empty.Version, empty.TransactionalID, empty.TransactionTimeoutMillis = 4, txnPtr(""), 60_000
	wantCode(t, "empty id", directRequest[*kmsg.InitProducerIDResponse](t, gb.Addr, empty).ErrorCode, kerr.InvalidRequest)
	wantCode(t, "timeout above max", c.init(id, 3_600_001, -1, -1).ErrorCode, kerr.InvalidTransactionTimeout)
	wantCode(t, "zero timeout", c.init(id, 0, -1, -1).ErrorCode, kerr.InvalidTransactionTimeout)

	// Epoch 0 only for a never-seen id; Flink's 1 h timeout is accepted.
	r := c.init(id, 3_600_000, -1, -1)
	if r.ErrorCode != 0 || r.ProducerEpoch != 0 || r.ProducerID < 0 {
		t.Fatalf("first init: %+v (%s)", r, codeName(r.ErrorCode))
	}
	pid := r.ProducerID
	if p, e := c.initOK(id); p != pid || e != 1 {
		t.Fatalf("second init: %d/%d, want %d/1", p, e, pid)
	}
	// KIP-360 with a stale producer: fenced.
	wantCode(t, "init with stale epoch", c.init(id, 60_000, pid, 0).ErrorCode, kerr.ProducerFenced)
	if r := c.init(id, 60_000, pid, 1); r.ErrorCode != 0 || r.ProducerEpoch != 2 {
		t.Fatalf("KIP-360 bump: %+v (%s)", r, codeName(r.ErrorCode))
	}
	epoch := int16(2)

	// EndTxn on an Empty transaction.
	wantCode(t, "end empty", c.end(3, id, pid, epoch, true), kerr.InvalidTxnState)

	// AddPartitionsToTxn errors.
	if codes := c.add(3, id, pid, epoch, "nosuch", 0); len(codes) != 1 || codes[0] != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown topic: %v", codes)
	}
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch = 3, id, pid, epoch
	for _, tp := range []struct {
		topic string
		p     int32
	}{{"data", 0}, {"data", 9}} {
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = tp.topic, []int32{tp.p}
		req.Topics = append(req.Topics, rt)
	}
	resp := groupRequest[*kmsg.AddPartitionsToTxnResponse](t, c.cl, req)
	wantCode(t, "known partition beside an unknown one", resp.Topics[0].Partitions[0].ErrorCode, kerr.OperationNotAttempted)
	wantCode(t, "unknown partition", resp.Topics[1].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
	wantCode(t, "unknown id", c.add(3, "never", pid, epoch, "data", 0)[0], kerr.InvalidProducerIDMapping)
	wantCode(t, "other producer id", c.add(3, id, pid+1000, epoch, "data", 0)[0], kerr.InvalidProducerIDMapping)
	wantCode(t, "old epoch v3", c.add(3, id, pid, epoch-1, "data", 0)[0], kerr.ProducerFenced)
	old := kmsg.NewPtrAddPartitionsToTxnRequest()
	old.Version, old.TransactionalID, old.ProducerID, old.ProducerEpoch = 1, id, pid, epoch-1
	old.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: "data", Partitions: []int32{0}}}
	// kgo raises the version to the highest both sides speak: sent directly.
	wantCode(t, "old epoch v1", directRequest[*kmsg.AddPartitionsToTxnResponse](t, gb.Addr, old).Topics[0].Partitions[0].ErrorCode, kerr.InvalidProducerEpoch)

	// Commit: NONE, repeated NONE, the opposite INVALID_TXN_STATE.
	for _, code := range c.add(3, id, pid, epoch, "data", 0, 1) {
		wantCode(t, "add", code, nil)
	}
	wantCode(t, "add offsets", c.addOffsets(id, pid, epoch, "group-a"), nil)
	wantCode(t, "commit", c.end(3, id, pid, epoch, true), nil)
	c.endDone(id, pid, epoch, true)
	wantCode(t, "repeated commit", c.end(3, id, pid, epoch, true), nil)
	wantCode(t, "abort after commit", c.end(3, id, pid, epoch, false), kerr.InvalidTxnState)
	wantCode(t, "end with old epoch", c.end(3, id, pid, epoch-1, true), kerr.ProducerFenced)
	oldEnd := kmsg.NewPtrEndTxnRequest()
	oldEnd.Version, oldEnd.TransactionalID, oldEnd.ProducerID, oldEnd.ProducerEpoch, oldEnd.Commit = 1, id, pid, epoch-1, true
	wantCode(t, "end with old epoch v1", directRequest[*kmsg.EndTxnResponse](t, gb.Addr, oldEnd).ErrorCode, kerr.InvalidProducerEpoch)
	wantCode(t, "end with other producer", c.end(3, id, pid+1, epoch, true), kerr.InvalidProducerIDMapping)

	// A new transaction after the commit, then an abort.
	wantCode(t, "add again", c.add(3, id, pid, epoch, "data", 1)[0], nil)
	wantCode(t, "abort", c.end(3, id, pid, epoch, false), nil)
	c.endDone(id, pid, epoch, false)
	wantCode(t, "commit after abort", c.end(3, id, pid, epoch, true), kerr.InvalidTxnState)

	// InitProducerId on an Ongoing transaction fences it (epoch+1), aborts it
	// and answers CONCURRENT_TRANSACTIONS; the retry gets epoch+2.
	wantCode(t, "add before fencing", c.add(3, id, pid, epoch, "data", 0)[0], nil)
	wantCode(t, "init on ongoing", c.init(id, 60_000, -1, -1).ErrorCode, kerr.ConcurrentTransactions)
	if p, e := c.initOK(id); p != pid || e != epoch+2 {
		t.Fatalf("init after fencing: %d/%d, want %d/%d", p, e, pid, epoch+2)
	}
	wantCode(t, "zombie commit", c.end(3, id, pid, epoch, true), kerr.ProducerFenced)
	wantCode(t, "zombie add", c.add(3, id, pid, epoch, "data", 0)[0], kerr.ProducerFenced)
}

// TestTxnCoordinatorRestart: an Ongoing transaction and its partitions
// survive a restart, and a new process commits it with a bare EndTxn
// (Flink's commit after a restore); the ids keep their epochs.
func TestTxnCoordinatorRestart(t *testing.T) {
	gb, _ := newTxnBroker(t)
	createTopic(t, gb, "data", 2)
	c := gb.txnClient(t)
	pid, epoch := c.initOK("restored")
	wantCode(t, "add", c.add(3, "restored", pid, epoch, "data", 0, 1)[0], nil)
	other, otherEpoch := c.initOK("other")

	gb.Restart()
	c = gb.txnClient(t)
	wantCode(t, "add a partition after restart", c.add(3, "restored", pid, epoch, "data", 1)[0], nil)
	m := gb.Broker.txns.get("restored", partitionFor("restored", 3), false).snapshot()
	if m.State != txnOngoing || !m.Partitions.has("data", 0) || !m.Partitions.has("data", 1) {
		t.Fatalf("restored transaction: %+v", m)
	}
	wantCode(t, "commit from a new process", c.end(3, "restored", pid, epoch, true), nil)
	c.endDone("restored", pid, epoch, true)
	if p, e := c.initOK("other"); p != other || e != otherEpoch+1 {
		t.Fatalf("other after restart: %d/%d, want %d/%d", p, e, other, otherEpoch+1)
	}
	// A transaction left in PrepareCommit by a stop is completed on load.
	wantCode(t, "add", c.add(3, "restored", pid, epoch, "data", 0)[0], nil)
	wantCode(t, "commit", c.end(3, "restored", pid, epoch, true), nil)
	gb.Restart()
	c = gb.txnClient(t)
	c.endDone("restored", pid, epoch, true)
}

// TestTxnCoordinatorTimeout: an Ongoing transaction past its timeout,
// counted from its first add, is fenced and aborted.
func TestTxnCoordinatorTimeout(t *testing.T) {
	gb, clock := newTxnBroker(t)
	createTopic(t, gb, "data", 1)
	c := gb.txnClient(t)
	pid, epoch := c.initOK("slow")
	wantCode(t, "add", c.add(3, "slow", pid, epoch, "data", 0)[0], nil)
	co := gb.Broker.txns
	co.abortTimedOut(clock.now().Add(59 * time.Second))
	if m := co.get("slow", partitionFor("slow", 3), false).snapshot(); m.State != txnOngoing {
		t.Fatalf("aborted before its timeout: %v", m.State)
	}
	clock.add(61 * time.Second)
	co.abortTimedOut(clock.now())
	waitUntil(t, 20*time.Second, "abort of the timed-out transaction", func() error {
		if m := co.get("slow", partitionFor("slow", 3), false).snapshot(); m.State != txnCompleteAbort || m.Epoch != epoch+1 {
			return fmt.Errorf("state %v epoch %d", m.State, m.Epoch)
		}
		return nil
	})
	wantCode(t, "commit of the timed-out producer", c.end(3, "slow", pid, epoch, true), kerr.ProducerFenced)
	if p, e := c.initOK("slow"); p != pid || e != epoch+2 {
		t.Fatalf("init after timeout: %d/%d", p, e)
	}
}

// TestTxnCoordinatorIDExpiration: an idle transactional id is forgotten
// after IDExpiration, durably, and starts again at epoch 0.
func TestTxnCoordinatorIDExpiration(t *testing.T) {
	gb, clock := newTxnBroker(t)
	c := gb.txnClient(t)
	pid, _ := c.initOK("flink-0-41")
	c.initOK("flink-0-42")
	clock.add(6 * 24 * time.Hour)
	c.initOK("flink-0-42") // active again
	clock.add(2 * 24 * time.Hour)
	gb.Broker.txns.expireIDs(clock.now())
	gb.Restart()
	c = gb.txnClient(t)
	if r := c.init("flink-0-41", 60_000, -1, -1); r.ErrorCode != 0 || r.ProducerEpoch != 0 || r.ProducerID == pid {
		t.Fatalf("expired id: %+v (%s)", r, codeName(r.ErrorCode))
	}
	if r := c.init("flink-0-42", 60_000, -1, -1); r.ErrorCode != 0 || r.ProducerEpoch != 2 {
		t.Fatalf("active id: %+v (%s)", r, codeName(r.ErrorCode))
	}
}

func TestTxnConfigValidate(t *testing.T) {
	if err := DefaultTxnConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*TxnConfig){
		"max timeout 0":       func(c *TxnConfig) { c.MaxTimeout = 0 },
		"max timeout too big": func(c *TxnConfig) { c.MaxTimeout = MaxTxnMaxTimeout + time.Millisecond },
		"expiration 0":        func(c *TxnConfig) { c.IDExpiration = 0 },
		"partitions 0":        func(c *TxnConfig) { c.TopicPartitions = 0 },
		"abort interval 0":    func(c *TxnConfig) { c.AbortCheckInterval = 0 },
	} {
		c := DefaultTxnConfig()
		f(&c)
		if c.Validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

func (c *txnClient) txnOffsetCommit(id, group string, pid int64, epoch int16, topic string, partition int32, offset int64) int16 {
	c.t.Helper()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version = 3
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = id, group, pid, epoch
	req.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = partition, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return groupRequest[*kmsg.TxnOffsetCommitResponse](c.t, c.cl, req).Topics[0].Partitions[0].ErrorCode
}

// offsetFetch answers the group's offset of topic/partition with
// RequireStable set, and the partition's error code.
func (c *txnClient) offsetFetch(group, topic string, partition int32) (int64, int16) {
	c.t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 7
	req.Group, req.RequireStable = group, true
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{partition}
	req.Topics = append(req.Topics, rt)
	resp := groupRequest[*kmsg.OffsetFetchResponse](c.t, c.cl, req)
	if resp.ErrorCode != 0 {
		c.t.Fatalf("offset fetch: %s", codeName(resp.ErrorCode))
	}
	p := resp.Topics[0].Partitions[0]
	return p.Offset, p.ErrorCode
}

// TestTxnOffsetCommit: offsets sent to a transaction are UNSTABLE while it
// is open, committed with it, dropped by an abort, and survive a restart
// of the coordinator while pending.
func TestTxnOffsetCommit(t *testing.T) {
	gb, _ := newTxnBroker(t)
	createTopic(t, gb, "in", 1)
	c := gb.txnClient(t)
	pid, epoch := c.initOK("etl")
	wantCode(t, "add offsets", c.addOffsets("etl", pid, epoch, "etl-group"), nil)
	wantCode(t, "txn offset commit", c.txnOffsetCommit("etl", "etl-group", pid, epoch, "in", 0, 10), nil)
	wantCode(t, "unknown topic", c.txnOffsetCommit("etl", "etl-group", pid, epoch, "nosuch", 0, 1), kerr.UnknownTopicOrPartition)
	if _, code := c.offsetFetch("etl-group", "in", 0); code != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("pending offset: %s", codeName(code))
	}
	gb.Restart()
	c = gb.txnClient(t)
	if _, code := c.offsetFetch("etl-group", "in", 0); code != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("pending offset after restart: %s", codeName(code))
	}
	wantCode(t, "commit", c.end(3, "etl", pid, epoch, true), nil)
	c.endDone("etl", pid, epoch, true)
	if off, code := c.offsetFetch("etl-group", "in", 0); code != 0 || off != 10 {
		t.Fatalf("committed offset: %d %s", off, codeName(code))
	}
	// An aborted transaction's offsets are dropped.
	wantCode(t, "add offsets again", c.addOffsets("etl", pid, epoch, "etl-group"), nil)
	wantCode(t, "txn offset commit 2", c.txnOffsetCommit("etl", "etl-group", pid, epoch, "in", 0, 20), nil)
	wantCode(t, "abort", c.end(3, "etl", pid, epoch, false), nil)
	c.endDone("etl", pid, epoch, false)
	if off, code := c.offsetFetch("etl-group", "in", 0); code != 0 || off != 10 {
		t.Fatalf("offset after abort: %d %s", off, codeName(code))
	}
}

// TestCoordinatorErrorMapping: what a transactional request answers for an
// error of routing or writing. A group without a leader for the moment is
// NOT_COORDINATOR, as a lost leadership is: clients look the coordinator up
// again on it.
func TestCoordinatorErrorMapping(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want *kerr.Error
	}{
		{kerr.ConcurrentTransactions, kerr.ConcurrentTransactions},
		{fmt.Errorf("write: %w", raftfsm.ErrNotLeader), kerr.NotCoordinator},
		{raftfsm.ErrClosed, kerr.NotCoordinator},
		{fmt.Errorf("propose: %w", raftfsm.ErrNotReady), kerr.NotCoordinator},
		{errors.New("disk on fire"), kerr.CoordinatorNotAvailable},
	} {
		if got := coordinatorError(tt.err); got != tt.want {
			t.Errorf("coordinatorError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
