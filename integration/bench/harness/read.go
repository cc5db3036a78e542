package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadToEnd is the GlobalKTable-style restore: a new consumer without a group
// (franz-go's default fetch sizes) assigns every partition of topic from the
// earliest offset and reads until each partition reaches its end offset in
// ends (listed before the call). It returns the records read and the seconds
// from the client's creation to the last one; timeout caps the read.
func ReadToEnd(ctx context.Context, addr, topic string, ends kadm.ListedOffsets, timeout time.Duration) (int64, float64, error) {
	want := make(map[int32]int64)
	assign := make(map[int32]kgo.Offset)
	ends.Each(func(o kadm.ListedOffset) {
		assign[o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})

	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var records int64
	for len(want) > 0 {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			return records, 0, fmt.Errorf("read of %s: %d partitions short of their end offset after %v", topic, len(want), timeout)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("fetch partition %d: %w", p, err)
			}
		})
		if ferr != nil {
			return records, 0, ferr
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			records += int64(len(p.Records))
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= want[p.Partition] {
				delete(want, p.Partition)
			}
		})
	}
	return records, time.Since(start).Seconds(), nil
}
