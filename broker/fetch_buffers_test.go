package broker

import "testing"

func TestFetchBufClass(t *testing.T) {
	for _, c := range []struct{ n, class, capacity int }{
		{0, -1, 0},
		{1, -1, 1},
		{4 << 10, -1, 4 << 10},
		{4<<10 + 1, 1, 8 << 10},
		{1 << 20, 8, 1 << 20},
		{1<<20 + 1, 9, 2 << 20},
		{8 << 20, 11, 8 << 20},
		{8<<20 + 1, -1, 8<<20 + 1},
	} {
		if got := fetchBufClass(c.n); got != c.class {
			t.Errorf("fetchBufClass(%d) = %d, want %d", c.n, got, c.class)
		}
		if b := getFetchBuf(c.n); len(b) != 0 || cap(b) != c.capacity {
			t.Errorf("getFetchBuf(%d): len %d cap %d, want 0 and %d", c.n, len(b), cap(b), c.capacity)
		}
	}
}

// TestPutFetchBufKeepsOnlyClassSizes gives back a buffer of a class size and
// one that append grew past it: only the first may come back.
func TestPutFetchBufKeepsOnlyClassSizes(t *testing.T) {
	grown := append(getFetchBuf(64<<10), make([]byte, 64<<10+1)...)
	if fetchBufClass(cap(grown)) >= 0 && cap(grown) == 1<<(fetchBufClass(cap(grown))+minFetchBufShift) {
		t.Skipf("append grew to a class size (%d); nothing to check", cap(grown))
	}
	putFetchBuf(grown) // dropped: a later get never sees a buffer of its size
	for range 100 {
		if b := getFetchBuf(cap(grown)); cap(b) == cap(grown) {
			t.Fatalf("got back a buffer of %d bytes, not a class size", cap(b))
		}
	}
	small := getFetchBuf(200)
	putFetchBuf(small) // dropped: too small to pool
	if again := getFetchBuf(200); cap(again) != 200 {
		t.Fatalf("a 200-byte buffer came back with room for %d", cap(again))
	}
	b := getFetchBuf(100 << 10)
	b = append(b, "stale"...)
	putFetchBuf(b)
	if again := getFetchBuf(100 << 10); len(again) != 0 || cap(again) != 128<<10 {
		t.Fatalf("reused buffer: len %d cap %d, want 0 and %d", len(again), cap(again), 128<<10)
	}
}
