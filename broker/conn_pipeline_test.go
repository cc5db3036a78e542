package broker

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// TestProducePipelinedInOrder sends one connection's idempotent produce
// requests back to back, as a client with 5 in flight does, with other
// requests between them: the broker handles produces while earlier ones wait
// for Raft (conn.processAll), and still answers every request in the order
// it came, and appends each partition's batches in sequence order, with
// nothing refused as out of order.
func TestProducePipelinedInOrder(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "pipe", 2, map[string]string{"cleanup.policy": "delete"})
	cl := tb.client(t)
	pid := rawRequest[*kmsg.InitProducerIDResponse](t, cl, kmsg.NewPtrInitProducerIDRequest())
	if pid.ErrorCode != 0 {
		t.Fatalf("init producer id: %v", kerr.ErrorForCode(pid.ErrorCode))
	}
	const rounds, perBatch = 12, 50
	batch := func(p int32, seq int32) []byte {
		recs := make([]kmsg.Record, perBatch)
		for i := range recs {
			recs[i] = testKmsgRecord(i, fmt.Appendf(nil, "p%d-%d", p, int(seq)+i), []byte("v"), 0)
		}
		return wireBatch{firstTs: 1, records: recs,
			producer: &shardstore.Producer{ID: pid.ProducerID, Epoch: pid.ProducerEpoch, BaseSequence: seq}}.build(t)
	}
	rc := dialRaw(t, tb.Addr)
	// Requests: a produce to both partitions per round; after every third
	// round a Metadata request, which must wait for the produces before it.
	type sent struct {
		corr int32
		key  int16
	}
	var order []sent
	corr := int32(100)
	for r := range rounds {
		req := produceBatch("pipe", 0, batch(0, int32(r*perBatch)))
		p1 := kmsg.NewProduceRequestTopicPartition()
		p1.Partition, p1.Records = 1, batch(1, int32(r*perBatch))
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, p1)
		rc.request(req, 9, corr)
		order = append(order, sent{corr, kmsg.Produce.Int16()})
		corr++
		if r%3 == 2 {
			rc.request(metadataReq("pipe"), 12, corr)
			order = append(order, sent{corr, kmsg.Metadata.Int16()})
			corr++
		}
	}
	next := map[int32]int64{0: 0, 1: 0}
	for _, want := range order {
		version := int16(9)
		if want.key == kmsg.Metadata.Int16() {
			version = 12
		}
		got, resp := rc.response(want.key, version)
		if got != want.corr {
			t.Fatalf("answer with correlation id %d, want %d (answers out of request order)", got, want.corr)
		}
		pr, ok := resp.(*kmsg.ProduceResponse)
		if !ok {
			continue
		}
		for _, p := range pr.Topics[0].Partitions {
			if p.ErrorCode != 0 {
				t.Fatalf("request %d partition %d: %v", got, p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
			if p.BaseOffset != next[p.Partition] {
				t.Fatalf("request %d partition %d: base offset %d, want %d", got, p.Partition, p.BaseOffset, next[p.Partition])
			}
			next[p.Partition] += perBatch
		}
	}
	for p := range int32(2) {
		if st := tb.shardState(t, "pipe", p); st.HighWatermark != rounds*perBatch {
			t.Fatalf("partition %d: high watermark %d, want %d", p, st.HighWatermark, rounds*perBatch)
		}
	}
}
