package broker

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkFetchTail is a consumer at the end of its partitions: each fetch
// asks, with the usual 1 MiB partition limit, for the last record of 4
// partitions that each hold a few MiB. B/op is the point: it was the
// partition limit per partition, whatever the answer held.
//
//	go test -run X -bench BenchmarkFetchTail -benchmem ./broker/
func BenchmarkFetchTail(b *testing.B) {
	const parts, perPart = 4, 20_000
	tb := newTestBroker(b)
	tb.createDataTopic(b, "tail", parts, nil)
	cl := tb.client(b, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	value := make([]byte, 100)
	for p := range int32(parts) {
		recs := make([]*kgo.Record, 0, perPart)
		for i := range perPart {
			recs = append(recs, &kgo.Record{Topic: "tail", Partition: p, Key: fmt.Appendf(nil, "k%06d", i), Value: value})
		}
		if err := cl.ProduceSync(dataCtx(b), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes, req.MaxWaitMillis, req.MinBytes = 50<<20, 0, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "tail"
	for p := range int32(parts) {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, perPart-1, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := req.RequestWith(dataCtx(b), cl)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
				b.Fatalf("partition %d: error %d, %d bytes", p.Partition, p.ErrorCode, len(p.RecordBatches))
			}
		}
	}
}
