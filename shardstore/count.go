package shardstore

import (
	"cmp"
	"slices"
)

// CountFrom returns how many readable records (State.LiveRecords counts them
// all) have an offset >= from: what a reader positioned at from still has to
// read. It is a key-only scan of [from, HighWatermark), so its cost is the
// answer, which compaction bounds by the shard's live keys; from at or below
// the log start answers LiveRecords without scanning. ErrUnknownShard for an
// unknown shard; the store's closed error after Close.
func (s *Store) CountFrom(id ShardID, from int64) (int64, error) {
	st, err := s.readView(id)
	if err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	if from <= st.LogStartOffset {
		return st.LiveRecords, nil
	}
	if from >= st.HighWatermark {
		return 0, nil
	}
	it, err := s.recordIter(id, from, st.HighWatermark)
	if err != nil {
		return 0, err
	}
	var n int64
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

// CountFromEach answers CountFrom for several positions in one backward scan
// from the high watermark, so its cost does not grow with the number of
// positions (many consumer groups reading one shard). counts[i] is for
// froms[i]; froms may come in any order. The scan stops after maxKeys
// records (maxKeys <= 0: no limit); a position it did not reach gets an upper
// bound instead of the count: the records counted plus the fewer of the
// offsets and the readable records the scan left behind. Positions at or
// below the log start, or at or past the high watermark, are always exact.
func (s *Store) CountFromEach(id ShardID, froms []int64, maxKeys int) (counts []int64, err error) {
	st, err := s.readView(id)
	if err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	counts = make([]int64, len(froms))
	// The positions the scan must reach, highest first.
	order := make([]int, 0, len(froms))
	for i, from := range froms {
		switch {
		case from <= st.LogStartOffset:
			counts[i] = st.LiveRecords
		case from >= st.HighWatermark:
			counts[i] = 0
		default:
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		return counts, nil
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(froms[b], froms[a]) })
	lowest := froms[order[len(order)-1]]
	it, err := s.recordIter(id, lowest, st.HighWatermark)
	if err != nil {
		return nil, err
	}
	var n int64
	next := 0 // order[next] is the highest position not answered yet
	// Every readable record at or after reached is counted in n.
	reached, limited := st.HighWatermark, false
	for valid := it.Last(); valid; valid = it.Prev() {
		off := recordOffset(it.Key())
		for next < len(order) && froms[order[next]] > off {
			counts[order[next]] = n
			next++
		}
		if next == len(order) {
			break
		}
		if maxKeys > 0 && n >= int64(maxKeys) {
			limited = true
			break
		}
		n++
		reached = off
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	for ; next < len(order); next++ {
		if !limited {
			counts[order[next]] = n // the scan covered [lowest, HighWatermark)
			continue
		}
		from := froms[order[next]]
		counts[order[next]] = n + min(reached-from, max(st.LiveRecords-n, 0))
	}
	return counts, nil
}
