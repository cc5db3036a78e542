package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/shardcache/shardcache/shardstore"
	"github.com/twmb/franz-go/pkg/kerr"
)

// What one produce batch holds in memory from its decoding to the end of its
// proposal, charged to the memory budget (budget.go, classWork) before
// anything is decompressed or allocated for it.
//
// The records' bytes exist several times at the peak: the decompressed
// records (compressed batches only: an uncompressed batch's records alias the
// request frame, charged already), the Raft command raftfsm encodes, and the
// copies made while Raft writes its log entry to Pebble and the state
// machine applies it. Each record adds a shardstore.Record on each side of
// Raft, each header a shardstore.Header and its key. The constants were
// measured with TestBatchMemoryCoversProduce (batch_memory_test.go), which
// fails if a produce allocates more than batchMemory says.
const (
	// batchWriteCopies is how many copies of a batch's record bytes exist
	// while it is proposed and applied, besides the decompressed records.
	batchWriteCopies = 8
	// batchRecordBytes is the memory per record beyond its bytes.
	batchRecordBytes = 256
	// batchHeaderBytes is the memory per header beyond its key and value.
	batchHeaderBytes = 96
	// unknownRatio estimates the decompressed size of records whose codec
	// declares nothing, as a multiple of their compressed size; a short
	// estimate costs a second decompression, never more memory.
	unknownRatio = 8
	// minDecompressEstimate is the smallest estimate used for such records.
	minDecompressEstimate = 64 << 10
)

// batchMemory is the memory a batch holds: records is the size of its
// records after decompression, decompressed the buffer they were
// decompressed into (0 for an uncompressed batch), numRecords and shape what
// the records hold (shape's zero value before they are scanned).
func batchMemory(records, decompressed int64, numRecords int32, shape recordsShape) int64 {
	return batchWriteCopies*records + decompressed + int64(numRecords)*batchRecordBytes +
		int64(shape.headers)*batchHeaderBytes + int64(shape.headerKeyBytes)
}

// decompressedSize is what a batch's decompression buffer of size bytes
// counts in batchMemory.
func decompressedSize(compressed bool, size int64) int64 {
	if compressed {
		return size
	}
	return 0
}

// decodeProduceBatch decodes one partition's batch for Produce like
// decodeBatch, but charges the memory budget for it first, waiting while the
// budget is full (until ctx ends: REQUEST_TIMED_OUT). It returns what it
// charged, which the caller releases once the batch's proposal has finished.
//
// The charge starts from what the batch's codec declares (declaredSize) or
// an estimate (decompressLimits). If the records decompress to more, the
// charge is raised to the declared bound or the configured maximum and the
// records decompressed again; if
// their headers need more than was charged and the budget cannot give it at
// once, everything is released, the exact amount waited for, and the batch
// decoded again. A batch is never decoded with memory it has not charged,
// and never waits while holding a charge. One that needs more than the budget
// can ever give is refused with MESSAGE_TOO_LARGE.
func (b *Broker) decodeProduceBatch(ctx context.Context, raw []byte, lim batchLimits) (decodedBatch, int64, error) {
	h, err := parseBatchHeader(raw, lim)
	if err != nil {
		return decodedBatch{}, 0, err
	}
	compressed := h.codec != codecNone
	maxDec := int64(lim.maxDecompressed())
	size, retry := int64(len(raw)-batchHeaderSize), int64(0)
	if compressed {
		size, retry = decompressLimits(raw[batchHeaderSize:], h, maxDec)
	}

	var charged int64
	release := func() {
		b.budget.release(charged)
		charged = 0
	}
	var shape recordsShape
	var recs []shardstore.Record // decoded by the scan, from this attempt's body
	scanned := false
	for attempt := 0; ; attempt++ {
		if err := b.chargeBatch(ctx, batchMemory(size, decompressedSize(compressed, size), h.numRecords, shape), &charged, lim.BeforeWait); err != nil {
			return decodedBatch{}, 0, err
		}
		body := raw[batchHeaderSize:]
		if compressed {
			body, err = decompressBatch(body, h.codec, int(size), int(maxDec))
			if errors.Is(err, errDecompressTooLarge) {
				release()
				if retry == 0 {
					return decodedBatch{}, 0, corrupt("record batch decompresses to more than its codec declares")
				}
				size, retry = retry, 0 // the estimate was short
				continue
			}
			if err != nil {
				release()
				return decodedBatch{}, 0, err
			}
		}
		if !scanned {
			if err := checkRecordCount(body, h); err != nil {
				release()
				return decodedBatch{}, 0, err
			}
			recs = make([]shardstore.Record, h.numRecords) // charged from the start
			if shape, err = scanRecords(body, h, recs); err != nil {
				release()
				return decodedBatch{}, 0, err
			}
			scanned = true
		} else {
			recs = nil // they alias an earlier attempt's body
		}
		// The decompression buffer may be larger than the records it holds
		// (the limit was an estimate); the records keep all of it alive.
		need := batchMemory(int64(len(body)), decompressedSize(compressed, int64(cap(body))), h.numRecords, shape)
		switch {
		case need <= charged:
			b.budget.release(charged - need)
			charged = need
		case attempt < 2 && b.budget.tryAcquire(need-charged):
			charged = need
		case attempt < 2:
			// Drop the records and wait for the exact amount holding nothing.
			release()
			size, retry = int64(len(body)), 0
			continue
		default:
			release()
			return decodedBatch{}, 0, fmt.Errorf("broker: batch needs %d bytes after charging %d", need, charged)
		}
		batch, err := decodeRecords(body, h, shape, lim, recs)
		if err != nil {
			release()
			return decodedBatch{}, 0, err
		}
		return batch, charged, nil
	}
}

// decompressLimits picks the limit of a batch's first decompression, from
// what its codec declares (declaredSize) or an estimate, and the limit of a
// second one should the first fall short (0: none; passing the first limit
// then means corrupt data, or MESSAGE_TOO_LARGE if it was maxDec).
func decompressLimits(body []byte, h batchHeader, maxDec int64) (first, retry int64) {
	n, kind := declaredSize(body, h.codec)
	estimate := max(unknownRatio*int64(len(body)), minDecompressEstimate)
	switch kind {
	case sizeExact:
		first = n
	case sizeBound: // often far above the truth: start from the estimate
		first, retry = min(n, estimate), n
	case sizeStated:
		first, retry = n, maxDec
	default:
		first, retry = estimate, maxDec
	}
	// Every record takes minRecordSize bytes at least.
	first = min(max(first, int64(h.numRecords)*minRecordSize), maxDec)
	if retry = min(retry, maxDec); retry <= first {
		retry = 0
	}
	return first, retry
}

// chargeBatch acquires n bytes of work memory into *charged, turning an
// amount the budget can never give into MESSAGE_TOO_LARGE. beforeWait, if
// set, runs first when the memory is not there at once.
func (b *Broker) chargeBatch(ctx context.Context, n int64, charged *int64, beforeWait func()) error {
	if beforeWait != nil {
		if b.budget.tryAcquire(n) {
			*charged = n
			return nil
		}
		beforeWait()
	}
	err := b.budget.acquire(ctx, classWork, n, 0)
	if errors.Is(err, errBudgetTooLarge) {
		return &batchError{code: kerr.MessageTooLarge, msg: fmt.Sprintf(
			"record batch needs about %d bytes of broker memory to decode and write, more than the %d that one batch may use (the memory budget, --max-inflight-bytes, less what reading requests may use)",
			n, b.budget.maxAcquire(classWork, 0))}
	}
	if err == nil {
		*charged = n
	}
	return err
}
