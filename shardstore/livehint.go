package shardstore

// A compacted topic whose keys are rewritten in turn (a GlobalKTable's source,
// a cache refreshed key by key) keeps its live records at the end of its log:
// after 10 versions of every key, the first 90% of the offsets are records
// deleted by SingleDelete. Until Pebble compacts each delete into its record,
// an iterator from the log start steps over both, one pair per dead offset (a
// full read of 1M keys after 10 versions spent seconds there before reaching
// the first live record). liveHint remembers how far the dead prefix reaches,
// so that Read seeks past it.
//
// The hint is a lower bound on the first readable offset. It rests on one
// rule of the record span: a record is only ever written at an offset >= the
// high watermark (Append, appendStaged and markers all write at new offsets),
// so an offset that is unreadable below the high watermark stays unreadable.
// Only a snapshot ingest rewrites a shard's offsets; it resets the hint.
//
// It learns from two sides:
//   - writes: Append reports the offsets it deletes (superseded records and
//     keys repeated within a batch) as runs (deadRuns), and Store.apply
//     advances the hint past a run of deleted offsets that starts at it. Deletions out of order are
//     kept in a small bitmap window above the hint; ones beyond the window are
//     dropped (the hint then stops there: it stays a lower bound). Deletions
//     by expiry and transaction aborts are not reported.
//   - reads: a Read that finds its first record at X learns that [from, X)
//     is unreadable; one that finds nothing learns it up to the high
//     watermark it read under.
//
// liveHint is guarded by its shard's mu.
type liveHint struct {
	// from: every offset below it is unreadable.
	from int64
	// base is the first offset of dead, a multiple of 64 <= from; bit i of
	// dead says offset base+i was deleted.
	base int64
	dead []uint64
	// gen counts resets, so that a Read that began before an ingest does not
	// teach the hint about the shard it replaced.
	gen uint64
}

// liveHintWindow is the span of offsets above the hint whose deletions are
// remembered (a 512-byte bitmap per shard that sees deletions out of order).
const liveHintWindow = 4096

// maxDeadRuns bounds the runs of deleted offsets a batch collects per shard
// (16 bytes each). Keys rewritten in turn delete one run per batch; deletions
// scattered further are dropped, which only keeps the hint lower.
const maxDeadRuns = 256

// deadRuns are the offsets a batch deleted in a shard, as runs [lo, hi) in
// the order of deletion, for liveHint.deleted.
type deadRuns []struct{ lo, hi int64 }

// add records that offset o was deleted, extending the last run when o
// follows it.
func (d *deadRuns) add(o int64) {
	if n := len(*d); n > 0 && (*d)[n-1].hi == o {
		(*d)[n-1].hi++
		return
	}
	if len(*d) < maxDeadRuns {
		*d = append(*d, struct{ lo, hi int64 }{o, o + 1})
	}
}

// reset forgets everything (the shard's records were replaced).
func (h *liveHint) reset() {
	*h = liveHint{gen: h.gen + 1}
}

// learn raises the hint to from (never lowers it).
func (h *liveHint) learn(from int64) {
	if from <= h.from {
		return
	}
	h.from = from
	h.skip()
}

// deleted records that the offsets in runs are unreadable and advances the
// hint over those starting at it. logStart is the shard's log start offset
// (everything below it is unreadable too).
func (h *liveHint) deleted(logStart int64, runs deadRuns) {
	if logStart > h.from {
		h.from = logStart
	}
	for _, r := range runs {
		lo := max(r.lo, h.from)
		switch {
		case lo >= r.hi:
			continue
		case lo == h.from:
			h.from = r.hi
			h.skip()
			continue
		}
		if h.dead == nil {
			h.dead = make([]uint64, liveHintWindow/64)
			h.base = h.from &^ 63
		}
		h.slide()
		for o := lo; o < r.hi && o-h.base < liveHintWindow; o++ {
			i := o - h.base
			h.dead[i/64] |= 1 << (i % 64)
		}
	}
	h.skip()
}

// skip advances from over the deleted offsets recorded at it.
func (h *liveHint) skip() {
	if h.dead == nil {
		return
	}
	for {
		h.slide()
		i := h.from - h.base
		if i >= liveHintWindow || h.dead[i/64]&(1<<(i%64)) == 0 {
			return
		}
		h.from++
	}
}

// slide moves the window so that it starts at the word holding from, clearing
// the words it uncovers.
func (h *liveHint) slide() {
	shift := (h.from - h.base) / 64
	if shift == 0 {
		return
	}
	n := int64(len(h.dead))
	if shift >= n {
		clear(h.dead)
	} else {
		copy(h.dead, h.dead[shift:])
		clear(h.dead[n-shift:])
	}
	h.base += shift * 64
}
