package broker

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// readAheadTopic creates topic (compact,delete) with parts partitions of
// 200 records each over 150 keys (the first 50 keys written twice, so the log
// has gaps) and returns the partitions' high watermark.
func readAheadTopic(t *testing.T, tb *testBroker, topic string, parts int32) int64 {
	t.Helper()
	tb.createDataTopic(t, topic, parts, map[string]string{"cleanup.policy": "compact,delete"})
	pcl := tb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range parts {
		var recs []*kgo.Record
		for i := range 200 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p,
				Key: fmt.Appendf(nil, "k%03d", i%150), Value: fmt.Appendf(nil, "%0100d", i)})
		}
		if err := pcl.ProduceSync(dataCtx(t), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return 200
}

// fetchAt is a Fetch of every partition in from, 1,500 bytes each.
func fetchAt(topic string, from map[int32]int64) *kmsg.FetchRequest {
	req := fetchOne(12, topic, 0, 0)
	req.Topics[0].Partitions = nil
	for p := range int32(len(from)) {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, from[p], 1500
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	}
	return req
}

// freshFetch sends req on a new connection, which has read nothing ahead.
func freshFetch(t *testing.T, tb *testBroker, req *kmsg.FetchRequest) *kmsg.FetchResponse {
	t.Helper()
	cl := tb.client(t)
	defer cl.Close()
	return rawRequest[*kmsg.FetchResponse](t, cl, req)
}

// sameFetchAnswer fails unless got and want answer the same, partition by
// partition, and returns each partition's next fetch offset.
func sameFetchAnswer(t *testing.T, got, want *kmsg.FetchResponse, from map[int32]int64) map[int32]int64 {
	t.Helper()
	next := map[int32]int64{}
	for j, w := range want.Topics[0].Partitions {
		g := got.Topics[0].Partitions[j]
		if g.Partition != w.Partition || g.ErrorCode != w.ErrorCode || g.HighWatermark != w.HighWatermark ||
			g.LogStartOffset != w.LogStartOffset || !bytes.Equal(g.RecordBatches, w.RecordBatches) {
			t.Fatalf("partition %d from %d: %d bytes (error %d, high watermark %d), a new connection got %d bytes (error %d, high watermark %d)",
				w.Partition, from[w.Partition], len(g.RecordBatches), g.ErrorCode, g.HighWatermark,
				len(w.RecordBatches), w.ErrorCode, w.HighWatermark)
		}
		_, n := fetchRecords(t, g.RecordBatches, from[g.Partition])
		next[g.Partition] = max(n, from[g.Partition])
	}
	return next
}

// TestFetchReadAheadSameAnswer: a consumer reading partitions to their end,
// fetch after fetch on one connection, gets what a new connection gets for
// the same request, and its fetches use what was read ahead for them.
func TestFetchReadAheadSameAnswer(t *testing.T) {
	tb := newTestBroker(t)
	hw := readAheadTopic(t, tb, "ahead", 4)
	reader := tb.client(t)
	from := map[int32]int64{0: 0, 1: 0, 2: 0, 3: 0}
	for fetches := 0; ; fetches++ {
		done := true
		for _, o := range from {
			done = done && o >= hw
		}
		if done {
			break
		}
		if fetches > 100 {
			t.Fatalf("still short of the end after %d fetches: %v", fetches, from)
		}
		req := fetchAt("ahead", from)
		got := rawRequest[*kmsg.FetchResponse](t, reader, req)
		from = sameFetchAnswer(t, got, freshFetch(t, tb, req), from)
	}
	used := metricValue(t, tb.Broker.metrics.fetchReadAhead.WithLabelValues("used"))
	if used == 0 {
		t.Fatal("no fetch used a partition read ahead")
	}
	t.Logf("partitions read ahead and used: %v", used)
}

// TestFetchReadAheadDroppedAfterWrite: a write to a partition after it was
// read ahead drops the read, and so does DeleteRecords (which moves no high
// watermark): the next fetch does not return the record the write replaced
// nor records below the new log start, and answers what a new connection
// gets.
func TestFetchReadAheadDroppedAfterWrite(t *testing.T) {
	tb := newTestBroker(t)
	readAheadTopic(t, tb, "stale", 2)
	reader := tb.client(t)
	from := map[int32]int64{0: 0, 1: 0}
	req := fetchAt("stale", from)
	from = sameFetchAnswer(t, rawRequest[*kmsg.FetchResponse](t, reader, req), freshFetch(t, tb, req), from)

	// Wait for the read-aheads (the reader's, and the new connection's that
	// no fetch follows) to finish.
	read := tb.Broker.metrics.fetchReadAhead.WithLabelValues("read")
	for i := 0; metricValue(t, read) < 4; i++ {
		if i == 500 {
			t.Fatalf("read ahead %v partitions, want 4", metricValue(t, read))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Offsets 50..149 hold keys k050..k149 (k000..k049 were rewritten at
	// 150..199). Replace the key at partition 0's next offset.
	key := fmt.Sprintf("k%03d", from[0])
	pcl := tb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := pcl.ProduceSync(dataCtx(t), &kgo.Record{Topic: "stale", Partition: 0, Key: []byte(key), Value: []byte("new")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	del := atVersion[*kmsg.DeleteRecordsResponse](t, tb.Addr, deleteRecordsOne("stale", 1, from[1]+1), 2)
	if p := del.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.LowWatermark != from[1]+1 {
		t.Fatalf("DeleteRecords before %d: %+v", from[1]+1, p)
	}
	dropped := metricValue(t, tb.Broker.metrics.fetchReadAhead.WithLabelValues("dropped"))
	req = fetchAt("stale", from)
	got := rawRequest[*kmsg.FetchResponse](t, reader, req)
	sameFetchAnswer(t, got, freshFetch(t, tb, req), from)
	recs, _ := fetchRecords(t, got.Topics[0].Partitions[0].RecordBatches, from[0])
	if len(recs) == 0 || recs[0].Offset == from[0] || string(recs[0].Key) == key {
		t.Fatalf("partition 0 from %d answers the record replaced since (%d records)", from[0], len(recs))
	}
	if p := got.Topics[0].Partitions[1]; p.ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Fatalf("partition 1 from %d, below its new log start: error %d, %d bytes", from[1], p.ErrorCode, len(p.RecordBatches))
	}
	if n := metricValue(t, tb.Broker.metrics.fetchReadAhead.WithLabelValues("dropped")); n <= dropped {
		t.Fatalf("dropped read-aheads %v, want more than %v", n, dropped)
	}
}
