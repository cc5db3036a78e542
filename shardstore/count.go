package shardstore

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
