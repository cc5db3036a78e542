package broker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func listTxnsReq(version int16, states []string, pids []int64, durationMs int64, pattern *string) *kmsg.ListTransactionsRequest {
	req := kmsg.NewPtrListTransactionsRequest()
	req.Version = version
	req.StateFilters, req.ProducerIDFilters = states, pids
	req.DurationFilterMillis, req.TransactionalIDPattern = durationMs, pattern
	return req
}

func listedIDs(resp *kmsg.ListTransactionsResponse) []string {
	var out []string
	for _, ts := range resp.TransactionStates {
		out = append(out, ts.TransactionalID+":"+ts.TransactionState)
	}
	return out
}

func describeProducersReq(topic string, partitions ...int32) *kmsg.DescribeProducersRequest {
	req := kmsg.NewPtrDescribeProducersRequest()
	req.Topics = []kmsg.DescribeProducersRequestTopic{{Topic: topic, Partitions: partitions}}
	return req
}

func abortMarkerReq(topic string, partition int32, pid int64, epoch int16) *kmsg.WriteTxnMarkersRequest {
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	req.Version = 1
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed = pid, epoch, false
	m.Topics = []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: topic, Partitions: []int32{partition}}}
	req.Markers = []kmsg.WriteTxnMarkersRequestMarker{m}
	return req
}

// TestTxnAdminAPIs: ListTransactions with each filter, DescribeTransactions,
// DescribeProducers and an admin's WriteTxnMarkers abort of a hanging
// transaction, after which read_committed readers move past it.
func TestTxnAdminAPIs(t *testing.T) {
	gb, clock := newTxnBroker(t)
	createTopic(t, gb, "t", 1)
	done := txnProducer(t, gb, "tx-done", "t")
	produceTxn(t, done, true, "a", "1")
	open := txnProducer(t, gb, "tx-open", "t")
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("b"), Value: []byte("hanging")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := gb.client(t)
	adm := kadm.NewClient(cl)
	waitUntil(t, 20*time.Second, "tx-done complete", func() error {
		d, err := adm.DescribeTransactions(dataCtx(t), "tx-done")
		if err != nil {
			return err
		}
		if s := d["tx-done"].State; s != "CompleteCommit" {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})

	// DescribeTransactions.
	desc := atVersion[*kmsg.DescribeTransactionsResponse](t, gb.Addr, &kmsg.DescribeTransactionsRequest{
		TransactionalIDs: []string{"tx-open", "nobody", ""}}, 0)
	ts := desc.TransactionStates
	if len(ts) != 3 || ts[0].ErrorCode != 0 || ts[0].State != "Ongoing" || ts[0].TimeoutMillis != 60000 ||
		ts[0].StartTimestamp <= 0 || len(ts[0].Topics) != 1 || ts[0].Topics[0].Topic != "t" || !slices.Equal(ts[0].Topics[0].Partitions, []int32{0}) {
		t.Fatalf("describe tx-open: %+v", ts)
	}
	if ts[1].ErrorCode != kerr.TransactionalIDNotFound.Code || ts[2].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("describe unknown and empty ids: %s, %s", codeName(ts[1].ErrorCode), codeName(ts[2].ErrorCode))
	}
	openPID, openEpoch := ts[0].ProducerID, ts[0].ProducerEpoch

	// ListTransactions and its filters.
	pattern := func(s string) *string { return &s }
	for _, tt := range []struct {
		name string
		req  *kmsg.ListTransactionsRequest
		want []string
	}{
		{"all", listTxnsReq(0, nil, nil, -1, nil), []string{"tx-done:CompleteCommit", "tx-open:Ongoing"}},
		{"state", listTxnsReq(0, []string{"Ongoing"}, nil, -1, nil), []string{"tx-open:Ongoing"}},
		{"producer id", listTxnsReq(0, nil, []int64{openPID}, -1, nil), []string{"tx-open:Ongoing"}},
		{"unknown producer id", listTxnsReq(0, nil, []int64{openPID + 1000}, -1, nil), nil},
		{"duration not reached", listTxnsReq(1, nil, nil, 60_000, nil), nil},
		{"v0 has no duration filter", listTxnsReq(0, nil, nil, 60_000, nil), []string{"tx-done:CompleteCommit", "tx-open:Ongoing"}},
		{"pattern", listTxnsReq(2, nil, nil, -1, pattern("tx-d.*")), []string{"tx-done:CompleteCommit"}},
		{"pattern matches whole ids", listTxnsReq(2, nil, nil, -1, pattern("tx")), nil},
		{"empty pattern", listTxnsReq(2, nil, nil, -1, pattern("")), []string{"tx-done:CompleteCommit", "tx-open:Ongoing"}},
	} {
		resp := atVersion[*kmsg.ListTransactionsResponse](t, gb.Addr, tt.req, tt.req.Version)
		if resp.ErrorCode != 0 || !slices.Equal(listedIDs(resp), tt.want) {
			t.Fatalf("%s: %s %v, want %v", tt.name, codeName(resp.ErrorCode), listedIDs(resp), tt.want)
		}
	}
	resp := atVersion[*kmsg.ListTransactionsResponse](t, gb.Addr, listTxnsReq(0, []string{"Bogus", "Ongoing"}, nil, -1, nil), 0)
	if !slices.Equal(resp.UnknownStateFilters, []string{"Bogus"}) || !slices.Equal(listedIDs(resp), []string{"tx-open:Ongoing"}) {
		t.Fatalf("unknown state filter: %+v", resp)
	}
	if resp := atVersion[*kmsg.ListTransactionsResponse](t, gb.Addr, listTxnsReq(2, nil, nil, -1, pattern("a)|(b")), 2); resp.ErrorCode != kerr.InvalidRegularExpression.Code {
		t.Fatalf("bad pattern: %s", codeName(resp.ErrorCode))
	}
	clock.add(2 * time.Minute) // past the duration filter, not yet checked for timeouts
	if resp := atVersion[*kmsg.ListTransactionsResponse](t, gb.Addr, listTxnsReq(1, nil, nil, 60_000, nil), 1); !slices.Equal(listedIDs(resp), []string{"tx-open:Ongoing"}) {
		t.Fatalf("duration filter: %v", listedIDs(resp))
	}

	// DescribeProducers: the open transaction's first offset.
	prods := atVersion[*kmsg.DescribeProducersResponse](t, gb.Addr, describeProducersReq("t", 0, 7), 0)
	parts := prods.Topics[0].Partitions
	if parts[0].ErrorCode != 0 || len(parts[0].ActiveProducers) != 2 || parts[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("describe producers: %+v", parts)
	}
	var hanging kmsg.DescribeProducersResponseTopicPartitionActiveProducer
	for _, ap := range parts[0].ActiveProducers {
		if ap.ProducerID == openPID {
			hanging = ap
		} else if ap.CurrentTxnStartOffset != -1 {
			t.Fatalf("committed producer with an open transaction: %+v", ap)
		}
	}
	if hanging.CurrentTxnStartOffset != 2 || hanging.ProducerEpoch != int32(openEpoch) || hanging.LastSequence != 0 || hanging.LastTimestamp <= 0 {
		t.Fatalf("open producer %+v (pid %d epoch %d)", hanging, openPID, openEpoch)
	}
	if resp := atVersion[*kmsg.DescribeProducersResponse](t, gb.Addr, describeProducersReq("nope", 0), 0); resp.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown topic: %+v", resp.Topics[0].Partitions[0])
	}

	// WriteTxnMarkers: bad requests first, then the abort.
	for _, tt := range []struct {
		req  *kmsg.WriteTxnMarkersRequest
		want *kerr.Error
	}{
		{abortMarkerReq("nope", 0, openPID, openEpoch), kerr.UnknownTopicOrPartition},
		{abortMarkerReq("t", 3, openPID, openEpoch), kerr.UnknownTopicOrPartition},
		{abortMarkerReq("t", 0, -1, 0), kerr.InvalidRequest},
	} {
		resp := atVersion[*kmsg.WriteTxnMarkersResponse](t, gb.Addr, tt.req, 1)
		if got := resp.Markers[0].Topics[0].Partitions[0].ErrorCode; got != tt.want.Code {
			t.Fatalf("marker %+v: %s, want %s", tt.req.Markers[0], codeName(got), tt.want)
		}
	}
	wresp := atVersion[*kmsg.WriteTxnMarkersResponse](t, gb.Addr, abortMarkerReq("t", 0, openPID, openEpoch), 1)
	if m := wresp.Markers[0]; m.ProducerID != openPID || m.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("abort marker: %+v", m)
	}
	waitStable(t, gb, "t")
	if got := consumeAll(t, gb, "t", true); !slices.Equal(got, []string{"a=1"}) {
		t.Fatalf("read_committed after the admin abort: %v", got)
	}
	if got := consumeAll(t, gb, "t", false); slices.Contains(got, "b=hanging") {
		t.Fatalf("aborted data readable: %v", got)
	}
	prods = atVersion[*kmsg.DescribeProducersResponse](t, gb.Addr, describeProducersReq("t", 0), 0)
	for _, ap := range prods.Topics[0].Partitions[0].ActiveProducers {
		if ap.CurrentTxnStartOffset != -1 {
			t.Fatalf("open transaction after the abort: %+v", ap)
		}
	}
	// A marker older than the producer's epoch is refused.
	if openEpoch > 0 {
		stale := atVersion[*kmsg.WriteTxnMarkersResponse](t, gb.Addr, abortMarkerReq("t", 0, openPID, openEpoch-1), 1)
		if got := stale.Markers[0].Topics[0].Partitions[0].ErrorCode; got != kerr.InvalidProducerEpoch.Code {
			t.Fatalf("stale marker: %s", codeName(got))
		}
	}
	bumped := atVersion[*kmsg.WriteTxnMarkersResponse](t, gb.Addr, abortMarkerReq("t", 0, openPID, openEpoch+1), 1)
	if got := bumped.Markers[0].Topics[0].Partitions[0].ErrorCode; got != 0 {
		t.Fatalf("marker of a newer epoch: %s", codeName(got))
	}
	stale := atVersion[*kmsg.WriteTxnMarkersResponse](t, gb.Addr, abortMarkerReq("t", 0, openPID, openEpoch), 1)
	if got := stale.Markers[0].Topics[0].Partitions[0].ErrorCode; got != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("stale marker: %s", codeName(got))
	}
}

// TestTxnAdminInCluster: on three nodes each admin API answers as Kafka's
// brokers do: ListTransactions lists each transaction once, on its
// coordinator; DescribeTransactions answers on the coordinator and
// NOT_COORDINATOR elsewhere; DescribeProducers and WriteTxnMarkers answer on
// the partition's leader and NOT_LEADER_OR_FOLLOWER elsewhere.
func TestTxnAdminInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes take a few seconds to form")
	}
	nodes := newBrokerCluster(t, 3, testGroupConfig())
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, n.Addr)
	}
	cl := newClient(t, seeds[0], kgo.SeedBrokers(seeds...))
	createTopics(t, cl, 1, "ct")
	waitUntil(t, 30*time.Second, "ct on every node", func() error {
		for _, n := range nodes {
			if _, ok := n.Node.Topic("ct"); !ok {
				return fmt.Errorf("node %d lacks it", n.Node.NodeID())
			}
		}
		return nil
	})
	producer := func(id string) *kgo.Client {
		return newClient(t, seeds[0], kgo.SeedBrokers(seeds...), kgo.TransactionalID(id), kgo.DefaultProduceTopic("ct"),
			kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	produceTxn(t, producer("c-done"), true, "a", "1")
	open := producer("c-open")
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("b"), Value: []byte("hanging")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	notLeader := func(code int16) bool {
		return code == kerr.NotLeaderForPartition.Code || code == kerr.LeaderNotAvailable.Code
	}

	// Each transaction is listed by exactly one node, its coordinator, which
	// alone describes it. Leadership may move while we ask: retry then.
	var openPID int64
	var openEpoch int16
	waitUntil(t, 30*time.Second, "each transaction listed and described once", func() error {
		listed := map[string]int{}
		for _, n := range nodes {
			resp := atVersion[*kmsg.ListTransactionsResponse](t, n.Addr, listTxnsReq(0, nil, nil, -1, nil), 0)
			if resp.ErrorCode != 0 {
				return fmt.Errorf("node %d lists: %s", n.Node.NodeID(), codeName(resp.ErrorCode))
			}
			for _, ts := range resp.TransactionStates {
				listed[ts.TransactionalID]++
			}
		}
		if listed["c-done"] != 1 || listed["c-open"] != 1 || len(listed) != 2 {
			return fmt.Errorf("listed %v", listed)
		}
		described := 0
		for _, n := range nodes {
			resp := atVersion[*kmsg.DescribeTransactionsResponse](t, n.Addr, &kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{"c-open"}}, 0)
			switch ts := resp.TransactionStates[0]; ts.ErrorCode {
			case 0:
				if ts.State != "Ongoing" {
					return fmt.Errorf("node %d: state %s", n.Node.NodeID(), ts.State)
				}
				openPID, openEpoch = ts.ProducerID, ts.ProducerEpoch
				described++
			case kerr.NotCoordinator.Code:
			default:
				return fmt.Errorf("node %d describes: %s", n.Node.NodeID(), codeName(ts.ErrorCode))
			}
		}
		if described != 1 {
			return fmt.Errorf("%d nodes describe c-open", described)
		}
		return nil
	})
	waitUntil(t, 30*time.Second, "producers described by the leader only", func() error {
		answered := 0
		for _, n := range nodes {
			p := atVersion[*kmsg.DescribeProducersResponse](t, n.Addr, describeProducersReq("ct", 0), 0).Topics[0].Partitions[0]
			switch {
			case p.ErrorCode == 0:
				found := false
				for _, ap := range p.ActiveProducers {
					found = found || ap.ProducerID == openPID && ap.CurrentTxnStartOffset == 2
				}
				if !found {
					return fmt.Errorf("node %d: no open transaction of %d in %+v", n.Node.NodeID(), openPID, p.ActiveProducers)
				}
				answered++
			case !notLeader(p.ErrorCode):
				return fmt.Errorf("node %d: %s", n.Node.NodeID(), codeName(p.ErrorCode))
			}
		}
		if answered != 1 {
			return fmt.Errorf("%d nodes answered", answered)
		}
		return nil
	})
	waitUntil(t, 30*time.Second, "abort written by the leader", func() error {
		written := false
		for _, n := range nodes {
			resp := atVersion[*kmsg.WriteTxnMarkersResponse](t, n.Addr, abortMarkerReq("ct", 0, openPID, openEpoch), 1)
			switch code := resp.Markers[0].Topics[0].Partitions[0].ErrorCode; {
			case code == 0:
				written = true
			case !notLeader(code):
				return fmt.Errorf("node %d: %s", n.Node.NodeID(), codeName(code))
			}
		}
		if !written {
			return fmt.Errorf("no node wrote it")
		}
		return nil
	})
	adm := kadm.NewClient(cl)
	waitUntil(t, 30*time.Second, "last stable offset at the end", func() error {
		ends, err := adm.ListEndOffsets(dataCtx(t), "ct")
		if err != nil {
			return err
		}
		lsos, err := adm.ListCommittedOffsets(dataCtx(t), "ct")
		if err != nil {
			return err
		}
		if e, l := ends["ct"][0].Offset, lsos["ct"][0].Offset; e != l || e != 4 {
			return fmt.Errorf("high watermark %d, last stable offset %d", e, l)
		}
		return nil
	})
}
