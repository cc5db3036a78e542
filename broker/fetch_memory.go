package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// What a fetch response holds while it is built, charged to the memory
// budget (budget.go, classWork) before the store is read: the records read
// from the store and their encoding as batches, about twice the response's
// record bytes, and the records' structs. The charge is taken for each read
// of a long poll and trimmed to what the response holds once it is built.
const (
	// fetchChargeFactor is the memory charged per byte of records answered.
	fetchChargeFactor = 3
	// fetchMinBytes is the least a fetch waits for when the budget is full;
	// with more room it takes up to what the request allows.
	fetchMinBytes = 64 << 10
)

// chargeFetch releases prev, what the previous read of this fetch held, and
// charges the budget for the next read: as much of the request's MaxBytes
// as there is room for (at most a quarter of the budget's work share),
// or, when the budget is full, fetchMinBytes after waiting. It returns the
// response byte limit the charge covers and the charge.
func (b *Broker) chargeFetch(ctx context.Context, req *kmsg.FetchRequest, prev int64) (int, int64, error) {
	b.budget.release(prev)
	most := int64(req.MaxBytes)
	if most <= 0 {
		most = int64(^uint32(0) >> 1)
	}
	most = min(fetchChargeFactor*most, b.budget.maxAcquire(classWork, 0)/4)
	least := min(int64(fetchChargeFactor*fetchMinBytes), most)
	charged, err := b.budget.acquireUpTo(ctx, least, most)
	if err != nil {
		return 0, 0, err
	}
	return int(charged / fetchChargeFactor), charged, nil
}

// settleFetch trims a fetch's charge to the bytes its response holds.
func (b *Broker) settleFetch(charged int64, bytes int) int64 {
	if used := fetchChargeFactor * int64(bytes); used < charged {
		b.budget.release(charged - used)
		return used
	}
	return charged
}
