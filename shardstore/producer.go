package shardstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Idempotent producers (docs/ARCHITECTURE.md rule 8). Per (shard, producer id) the store keeps
// the producer's epoch, its last producerWindow batches and when it last wrote
// under the pid/ key, apart from the records, so compaction never forgets it.
// ExpireProducers (expire.go) forgets producers without an open transaction idle for
// producer.id.expiration.ms; a forgotten producer is an unknown one again.

// producerWindow is how many batches per producer are remembered for
// deduplication (Kafka's max.in.flight.requests.per.connection limit for
// idempotence).
const producerWindow = 5

// producerBatch is one remembered batch.
type producerBatch struct {
	first, last int32 // sequences of its first and last record
	base        int64 // offset of its first record
}

// producerState is the persisted state of one producer on one shard.
type producerState struct {
	epoch   int16
	batches []producerBatch // oldest first, at most producerWindow
	// lastMs is the append time (AppendOptions.AppendTimeMs, the proposer's
	// clock) of the producer's last accepted batch; undated is set for state
	// written before it was kept (producerVersion1), until ExpireProducers
	// dates it.
	lastMs  int64
	undated bool
}

// lastSequence is the sequence of the last of n records starting at first;
// sequences wrap from MaxInt32 to 0.
func lastSequence(first int32, n int) int32 {
	return int32((int64(first) + int64(n) - 1) % (math.MaxInt32 + 1))
}

// nextSequence follows last, wrapping at MaxInt32.
func nextSequence(last int32) int32 {
	if last == math.MaxInt32 {
		return 0
	}
	return last + 1
}

// check applies Kafka's sequence rules to a batch of n records from p against the
// producer's state ps (nil: unknown producer). For a retried batch it returns the
// base offset the batch got the first time, with dup set.
func (ps *producerState) check(p Producer, n int) (dupBase int64, dup bool, err error) {
	if p.BaseSequence < 0 {
		return 0, false, ErrOutOfOrderSequence
	}
	if ps == nil {
		return 0, false, nil // an unknown producer may start anywhere
	}
	switch {
	case p.Epoch < ps.epoch:
		return 0, false, ErrInvalidProducerEpoch
	case p.Epoch > ps.epoch:
		if p.BaseSequence != 0 {
			return 0, false, ErrOutOfOrderSequence
		}
		return 0, false, nil
	}
	last := lastSequence(p.BaseSequence, n)
	for _, b := range ps.batches {
		if b.first == p.BaseSequence && b.last == last {
			return b.base, true, nil
		}
	}
	if len(ps.batches) > 0 && p.BaseSequence != nextSequence(ps.batches[len(ps.batches)-1].last) {
		return 0, false, ErrOutOfOrderSequence
	}
	return 0, false, nil
}

// add returns the state after a batch of n records from p was accepted at base,
// appended at appendMs. It never modifies ps.
func (ps *producerState) add(p Producer, n int, base, appendMs int64) *producerState {
	next := &producerState{epoch: p.Epoch, lastMs: appendMs}
	if ps != nil && ps.epoch == p.Epoch {
		keep := ps.batches
		if len(keep) >= producerWindow {
			keep = keep[len(keep)-producerWindow+1:]
		}
		next.batches = append(next.batches, keep...)
	}
	next.batches = append(next.batches, producerBatch{
		first: p.BaseSequence, last: lastSequence(p.BaseSequence, n), base: base,
	})
	return next
}

// expired reports whether the producer last wrote before beforeMs.
func (ps *producerState) expired(beforeMs int64) bool {
	return !ps.undated && ps.lastMs < beforeMs
}

// encode writes the current version:
//
//	version:1 (2) epoch:2 lastMs:8 n:1 n x {first:4 last:4 base:8}
//
// producerVersion1 lacked lastMs.
func (ps *producerState) encode() []byte {
	b := make([]byte, 0, 12+16*len(ps.batches))
	b = append(b, producerVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(ps.epoch))
	b = binary.BigEndian.AppendUint64(b, uint64(ps.lastMs))
	b = append(b, byte(len(ps.batches)))
	for _, pb := range ps.batches {
		b = binary.BigEndian.AppendUint32(b, uint32(pb.first))
		b = binary.BigEndian.AppendUint32(b, uint32(pb.last))
		b = binary.BigEndian.AppendUint64(b, uint64(pb.base))
	}
	return b
}

func decodeProducer(b []byte) (*producerState, error) {
	if len(b) < 4 {
		return nil, errCorrupt
	}
	ps := &producerState{epoch: int16(binary.BigEndian.Uint16(b[1:]))}
	switch b[0] {
	case producerVersion1:
		ps.undated = true
		b = b[3:]
	case producerVersion:
		if len(b) < 12 {
			return nil, errCorrupt
		}
		ps.lastMs = int64(binary.BigEndian.Uint64(b[3:]))
		b = b[11:]
	default:
		return nil, errCorrupt
	}
	n := int(b[0])
	if n > producerWindow || len(b) != 1+16*n {
		return nil, errCorrupt
	}
	ps.batches = make([]producerBatch, n)
	for i := range ps.batches {
		o := 1 + 16*i
		ps.batches[i] = producerBatch{
			first: int32(binary.BigEndian.Uint32(b[o:])),
			last:  int32(binary.BigEndian.Uint32(b[o+4:])),
			base:  int64(binary.BigEndian.Uint64(b[o+8:])),
		}
	}
	return ps, nil
}

// Duplicate reports whether a batch of n records from p repeats one the shard
// has already appended, and if so returns what Append would answer for it:
// the batch's original base offset with Duplicate set. It reads committed
// state only, so a leader may answer a retry at once instead of proposing it
// again (a retry whose own proposal waited for a slow disk would otherwise
// time out as its first attempt did). false says nothing: Append decides.
func (s *Store) Duplicate(id ShardID, p Producer, n int) (AppendResult, bool, error) {
	if p.ID < 0 || n <= 0 {
		return AppendResult{}, false, nil
	}
	st, err := s.readView(id)
	if err != nil {
		return AppendResult{}, false, err
	}
	defer s.life.RUnlock()
	if ps, ok := s.shard(id).committedProducer(p.ID); ok {
		if ps == nil {
			return AppendResult{}, false, nil
		}
		base, dup, err := ps.check(p, n)
		if err != nil || !dup {
			return AppendResult{}, false, nil
		}
		return AppendResult{BaseOffset: base, LogStartOffset: st.LogStartOffset, Duplicate: true}, true, nil
	}
	v, closer, err := s.db.Get(producerKey(id, p.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		return AppendResult{}, false, nil
	}
	if err != nil {
		return AppendResult{}, false, err
	}
	defer closer.Close()
	ps, err := decodeProducer(v)
	if err != nil {
		return AppendResult{}, false, err
	}
	base, dup, err := ps.check(p, n)
	if err != nil || !dup {
		return AppendResult{}, false, nil
	}
	return AppendResult{BaseOffset: base, LogStartOffset: st.LogStartOffset, Duplicate: true}, true, nil
}

// ProducerInfo is one producer's state in a shard, as DescribeProducers shows
// it.
type ProducerInfo struct {
	ID    int64
	Epoch int16
	// LastSequence is the sequence of the last remembered batch of the
	// current epoch, -1 when there is none (a coordinator's write or a
	// marker started the epoch).
	LastSequence int32
	// LastAppendMs is the append time of the producer's last batch or
	// marker, -1 for state written before append times were kept.
	LastAppendMs int64
	// TxnStartOffset is the first offset of the producer's open transaction
	// in the shard, -1 when none is open.
	TxnStartOffset int64
}

// Producers lists the producers whose state the shard keeps, by producer id,
// with their open transactions (O(producers) reads of committed state).
// Errors: ErrUnknownShard, read errors.
func (s *Store) Producers(id ShardID) ([]ProducerInfo, error) {
	if _, err := s.readView(id); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	snap := s.db.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: sub(id, subProducer), UpperBound: producersEnd(id)})
	if err != nil {
		return nil, err
	}
	var out []ProducerInfo
	for ok := it.First(); ok; ok = it.Next() {
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindProducer {
			_ = it.Close()
			return nil, errCorrupt
		}
		ps, err := decodeProducer(it.Value())
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		pi := ProducerInfo{ID: pk.id, Epoch: ps.epoch, LastSequence: -1, LastAppendMs: ps.lastMs, TxnStartOffset: -1}
		if ps.undated {
			pi.LastAppendMs = -1
		}
		if n := len(ps.batches); n > 0 {
			pi.LastSequence = ps.batches[n-1].last
		}
		out = append(out, pi)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	it, err = snap.NewIter(&pebble.IterOptions{LowerBound: sub(id, subOpenTxn), UpperBound: sub(id, subOpenTxn+1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		pk, good := parseKey(it.Key())
		if !good || pk.kind != kindOpenTxn || len(it.Value()) != 8 {
			return nil, errCorrupt
		}
		first := int64(binary.BigEndian.Uint64(it.Value()))
		i, found := slices.BinarySearchFunc(out, pk.id, func(p ProducerInfo, id int64) int { return cmp.Compare(p.ID, id) })
		if !found {
			// An open transaction always has producer state; keep it
			// visible rather than hide a transaction that holds the LSO.
			out = slices.Insert(out, i, ProducerInfo{ID: pk.id, Epoch: -1, LastSequence: -1, LastAppendMs: -1, TxnStartOffset: first})
			continue
		}
		out[i].TxnStartOffset = first
	}
	return out, it.Error()
}
