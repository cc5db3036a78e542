package broker

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchParallelSameAnswer: a fetch whose partitions are read at once
// (fillFetchParallel) answers byte for byte what reading them in order does,
// over random offsets and limits on partitions with replaced keys, gaps and
// records larger than the limits (KIP-74's first record included). The order
// is forced with GOMAXPROCS 1 (fetchInParallel needs two cores).
func TestFetchParallelSameAnswer(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "par", 4, nil)
	pcl := tb.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	rng := rand.New(rand.NewPCG(7, 8))
	hw := make([]int64, 4)
	for round := range 3 {
		var recs []*kgo.Record
		for p := range int32(4) {
			for i := range 40 {
				size := 20 + rng.IntN(200)
				if rng.IntN(10) == 0 {
					size = 2000 + rng.IntN(2000) // above most limits below
				}
				recs = append(recs, &kgo.Record{Topic: "par", Partition: p,
					Key: fmt.Appendf(nil, "k%d", rng.IntN(30)), Value: make([]byte, size)})
				_ = i
				hw[p]++
			}
		}
		if err := pcl.ProduceSync(dataCtx(t), recs...).FirstErr(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	cl := tb.client(t)
	fetch := func(req *kmsg.FetchRequest, procs int) *kmsg.FetchResponse {
		t.Helper()
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		return rawRequest[*kmsg.FetchResponse](t, cl, req)
	}
	parallelAnswers := 0
	for try := range 200 {
		req := fetchOne(12, "par", 0, 0)
		req.Topics[0].Partitions = nil
		sum := 0
		for _, p := range rng.Perm(4)[:2+rng.IntN(3)] {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = int32(p)
			rp.FetchOffset = rng.Int64N(hw[p] + 1)
			rp.PartitionMaxBytes = int32(batchHeaderSize + rng.IntN(3000))
			sum += int(rp.PartitionMaxBytes)
			req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
		}
		// Half the requests leave room for every limit (read in parallel),
		// half not (read in order either way).
		req.MaxBytes = int32(sum)
		if try%2 == 1 {
			req.MaxBytes = int32(sum / 2)
		}
		inOrder := fetch(req, 1)
		parallel := fetch(req, 2)
		for j, want := range inOrder.Topics[0].Partitions {
			got := parallel.Topics[0].Partitions[j]
			if got.Partition != want.Partition || got.ErrorCode != want.ErrorCode ||
				got.HighWatermark != want.HighWatermark || !bytes.Equal(got.RecordBatches, want.RecordBatches) {
				t.Fatalf("try %d, partition %d from %d (limit %d, response limit %d): parallel answered %d bytes (error %d), in order %d bytes (error %d)",
					try, want.Partition, req.Topics[0].Partitions[j].FetchOffset, req.Topics[0].Partitions[j].PartitionMaxBytes, req.MaxBytes,
					len(got.RecordBatches), got.ErrorCode, len(want.RecordBatches), want.ErrorCode)
			}
			if try%2 == 0 && len(want.RecordBatches) > 0 {
				parallelAnswers++
			}
		}
	}
	if parallelAnswers == 0 {
		t.Fatal("no request that fits every limit answered records")
	}
}
