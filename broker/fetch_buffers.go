package broker

import (
	"math/bits"
	"sync"
)

// Fetch's record buffers are recycled. fetchPartition encodes a partition's
// records into a buffer of its own, and appendResponse then copies it into the
// framed answer. Left to the collector, the buffers of a full read added up to
// as many bytes as it returned, and each collection they caused scanned the
// key cache and everything else live. Now fetchPartition takes a buffer here,
// the request's context keeps it, and conn.finish gives it back once the answer
// is written (or dropped).
//
// Buffers come in power-of-two sizes above 4 KiB up to 8 MiB, so a pooled
// buffer holds at most twice the bytes the budget charges for (fetch_memory.go).
// A smaller one (a consumer at the tail asks for a record or two per
// partition) is allocated at its size, as a larger one is, and left to the
// collector: rounded up to 4 KiB, a fetch over thousands of partitions would
// hold far more than it answers. A pool keeps what it holds until the second
// collection after it was put back (sync.Pool), so idle buffers do not
// outlive a quiet period.
const (
	minFetchBufShift = 12
	maxFetchBufShift = 23
)

// fetchBufPools[c] holds buffers of 1<<(c+minFetchBufShift) bytes; [0] is
// never used (4 KiB and less are not pooled).
var fetchBufPools [maxFetchBufShift - minFetchBufShift + 1]sync.Pool

// fetchBufClass is the pool of buffers of at least n bytes, or -1 for n of
// 4 KiB or less, or above 8 MiB.
func fetchBufClass(n int) int {
	if n <= 1<<minFetchBufShift {
		return -1
	}
	c := bits.Len(uint(n-1)) - minFetchBufShift
	if c >= len(fetchBufPools) {
		return -1
	}
	return c
}

// getFetchBuf returns an empty buffer with room for n bytes.
func getFetchBuf(n int) []byte {
	c := fetchBufClass(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if p, ok := fetchBufPools[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 1<<(c+minFetchBufShift))
}

// putFetchBuf gives b back; a buffer of another size (grown by append, or
// too large for a pool) is left to the collector. Nothing may use b after.
func putFetchBuf(b []byte) {
	c := fetchBufClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+minFetchBufShift) {
		return
	}
	b = b[:0]
	fetchBufPools[c].Put(&b)
}

// keepFetchBuf records a buffer that rc's answer refers to, for
// releaseFetchBufs.
func (rc *requestContext) keepFetchBuf(b []byte) {
	rc.fetchBufs = append(rc.fetchBufs, b)
}

// releaseFetchBufs gives back the buffers kept for rc's answer. It is called
// once the answer is written, and by fillFetch before it rebuilds the answer
// (a long poll reads again), when nothing refers to them any more.
func (rc *requestContext) releaseFetchBufs() {
	for _, b := range rc.fetchBufs {
		putFetchBuf(b)
	}
	rc.fetchBufs = nil
}
