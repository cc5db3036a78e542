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
	r, err := ReadToEndTimed(ctx, addr, topic, ends, timeout)
	return r.Records, r.Secs, err
}

// ReadResult is what ReadToEndTimed measured.
type ReadResult struct {
	// Records read, and seconds from the client's creation to the last one.
	Records int64
	Secs    float64
	// FirstSecs is the seconds from the client's creation to the first poll
	// that returned records: the client's start, the first fetch's answer
	// and its decoding.
	FirstSecs float64
	// Polls counts PollFetches calls.
	Polls int
}

// ReadToEndTimed is ReadToEnd with the time to the first records and the
// number of polls.
func ReadToEndTimed(ctx context.Context, addr, topic string, ends kadm.ListedOffsets, timeout time.Duration) (ReadResult, error) {
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
		return ReadResult{}, err
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r ReadResult
	for len(want) > 0 {
		fs := cl.PollFetches(rctx)
		r.Polls++
		if rctx.Err() != nil {
			return r, fmt.Errorf("read of %s: %d partitions short of their end offset after %v", topic, len(want), timeout)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("fetch partition %d: %w", p, err)
			}
		})
		if ferr != nil {
			return r, ferr
		}
		if r.Records == 0 && fs.NumRecords() > 0 {
			r.FirstSecs = time.Since(start).Seconds()
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			r.Records += int64(len(p.Records))
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= want[p.Partition] {
				delete(want, p.Partition)
			}
		})
	}
	r.Secs = time.Since(start).Seconds()
	return r, nil
}
