package broker

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// TestProduceManyPartitionsReadBack: an idempotent kgo producer writes a
// record or a few to every partition of a 1,000-partition topic, so each
// produce request carries batches of many partitions that share Raft
// entries; a consumer reads every record back exactly once, in offset order.
func TestProduceManyPartitionsReadBack(t *testing.T) {
	const partitions, records = 1000, 3000
	tb := newTestBroker(t)
	tb.createDataTopic(t, "wide", partitions, nil)
	cl := tb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("wide"))
	ctx := dataCtx(t)
	rs := make([]*kgo.Record, records)
	for i := range rs {
		rs[i] = &kgo.Record{Partition: int32(i % partitions), Key: fmt.Appendf(nil, "k%05d", i), Value: fmt.Appendf(nil, "v%d", i)}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	got := tb.readTopic(t, "wide")
	if len(got) != records {
		t.Fatalf("read %d records, want %d", len(got), records)
	}
	seen := map[string]bool{}
	next := map[int32]int64{}
	for _, r := range got {
		k := string(r.Key)
		var i int
		if _, err := fmt.Sscanf(k, "k%05d", &i); err != nil || seen[k] || string(r.Value) != fmt.Sprintf("v%d", i) || r.Partition != int32(i%partitions) {
			t.Fatalf("record %s=%s in partition %d (seen before: %v)", k, r.Value, r.Partition, seen[k])
		}
		seen[k] = true
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
	}
}

// TestProduceManyPartitionsFailAlone: one raw produce request with an
// idempotent batch for each of eight partitions: one out of sequence, one
// from a fenced epoch, one over max.message.bytes, plus a partition the topic
// does not have. Only those four fail; the request sent again answers every
// good batch with its original offset and writes nothing twice.
func TestProduceManyPartitionsFailAlone(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "mixed", 8, map[string]string{"max.message.bytes": "2000"})
	cl := tb.client(t)
	pid := rawRequest[*kmsg.InitProducerIDResponse](t, cl, kmsg.NewPtrInitProducerIDRequest())
	if pid.ErrorCode != 0 {
		t.Fatalf("init producer id: %v", kerr.ErrorForCode(pid.ErrorCode))
	}
	batchOf := func(p int32, epoch int16, seq int32, value []byte) []byte {
		return wireBatch{firstTs: 1, records: []kmsg.Record{
			testKmsgRecord(0, fmt.Appendf(nil, "a%d", p), value, 0),
			testKmsgRecord(1, fmt.Appendf(nil, "b%d", p), value, 0),
		}, producer: &shardstore.Producer{ID: pid.ProducerID, Epoch: epoch, BaseSequence: seq}}.build(t)
	}
	batch := func(p int32, seq int32) []byte { return batchOf(p, pid.ProducerEpoch, seq, []byte("v")) }
	// Partition 5 has seen sequences 0-1, so 7 leaves a gap; partition 6
	// has seen the next epoch, so this one is fenced.
	for p, raw := range map[int32][]byte{5: batch(5, 0), 6: batchOf(6, pid.ProducerEpoch+1, 0, []byte("v"))} {
		if r := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("mixed", p, raw))); r.ErrorCode != 0 {
			t.Fatalf("first produce to %d: %v", p, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	req := produceBatch("mixed", 0, batch(0, 0))
	for p := int32(1); p <= 8; p++ {
		raw := batch(p, 0)
		switch p {
		case 5:
			raw = batch(p, 7)
		case 7:
			raw = batchOf(p, pid.ProducerEpoch, 0, make([]byte, 3000))
		}
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, raw
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	}

	for round := range 2 {
		resp := rawRequest[*kmsg.ProduceResponse](t, cl, req)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 9 {
			t.Fatalf("round %d: response shape %+v", round, resp)
		}
		for _, p := range resp.Topics[0].Partitions {
			want := int16(0)
			switch p.Partition {
			case 5:
				want = kerr.OutOfOrderSequenceNumber.Code
			case 6:
				want = kerr.InvalidProducerEpoch.Code
			case 7:
				want = kerr.MessageTooLarge.Code
			case 8:
				want = kerr.UnknownTopicOrPartition.Code
			}
			if p.ErrorCode != want {
				t.Fatalf("round %d partition %d: %v, want %v", round, p.Partition, kerr.ErrorForCode(p.ErrorCode), kerr.ErrorForCode(want))
			}
			if want == 0 && p.BaseOffset != 0 {
				t.Fatalf("round %d partition %d: base offset %d, want the original 0", round, p.Partition, p.BaseOffset)
			}
		}
	}
	for p := int32(0); p < 8; p++ {
		want := int64(2)
		if p == 7 {
			want = 0
		}
		if st := tb.shardState(t, "mixed", p); st.HighWatermark != want {
			t.Fatalf("partition %d: high watermark %d, want %d", p, st.HighWatermark, want)
		}
	}
}
