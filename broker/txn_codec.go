package broker

// The records the transaction coordinator keeps in __transaction_state: one
// per transactional id, the latest replacing the one before (the topic is
// compacted like __consumer_offsets, docs/ARCHITECTURE.md "Consumer groups and
// transactions"). Unlike the group records these are Kafka's own encodings,
// from kmsg, so a dump of the topic reads as Kafka's would:
//
//	key:   kmsg.TxnMetadataKey   int16 version 0 | string transactional id
//	value: kmsg.TxnMetadataValue int16 version 1 (flexible, KIP-915) | int64 producer id |
//	       int16 epoch | int32 timeout ms | int8 state | [topic, [int32 partition]] |
//	       int64 last update ms | int64 start ms | tags (previous and next producer id)
//
// A tombstone (null value) forgets an expired transactional id. Version 0
// values (non-flexible) are still decoded.

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnStateTopic is Kafka's internal topic of transaction coordinator state.
const txnStateTopic = "__transaction_state"

const (
	txnKeyVersion   int16 = 0
	txnValueVersion int16 = 1
)

// Transaction states, Kafka's numbering (the State field of TxnMetadataValue).
const (
	txnEmpty             = kmsg.TransactionState(0)
	txnOngoing           = kmsg.TransactionState(1)
	txnPrepareCommit     = kmsg.TransactionState(2)
	txnPrepareAbort      = kmsg.TransactionState(3)
	txnCompleteCommit    = kmsg.TransactionState(4)
	txnCompleteAbort     = kmsg.TransactionState(5)
	txnDead              = kmsg.TransactionState(6)
	txnPrepareEpochFence = kmsg.TransactionState(7)
)

// errBadTxnRecord: a __transaction_state record this code cannot decode.
var errBadTxnRecord = errors.New("broker: bad __transaction_state record")

// maxTxnIDBytes bounds transactional ids (the key stores an int16 length).
const maxTxnIDBytes = 1<<15 - 1

// txnRecordKey is the record key of a transactional id.
func txnRecordKey(id string) []byte {
	k := kmsg.TxnMetadataKey{Version: txnKeyVersion, TransactionalID: id}
	return k.AppendTo(make([]byte, 0, 4+len(id)))
}

// decodeTxnRecordKey returns the transactional id of a record key.
func decodeTxnRecordKey(b []byte) (string, error) {
	var k kmsg.TxnMetadataKey
	if len(b) < 2 || b[0] != 0 || b[1] != byte(txnKeyVersion) {
		return "", fmt.Errorf("%w: key version", errBadTxnRecord)
	}
	if err := k.ReadFrom(b); err != nil {
		return "", fmt.Errorf("%w: key", errBadTxnRecord)
	}
	if 4+len(k.TransactionalID) != len(b) {
		return "", fmt.Errorf("%w: key has trailing bytes", errBadTxnRecord)
	}
	if k.TransactionalID == "" {
		return "", fmt.Errorf("%w: empty transactional id", errBadTxnRecord)
	}
	return k.TransactionalID, nil
}

// topicPartitions is a transaction's partition set: topic -> sorted partitions.
type topicPartitions map[string][]int32

// add puts p of topic into the set; false if it was there.
func (s topicPartitions) add(topic string, p int32) bool {
	ps := s[topic]
	i, found := slices.BinarySearch(ps, p)
	if found {
		return false
	}
	s[topic] = slices.Insert(ps, i, p)
	return true
}

// has reports whether p of topic is in the set.
func (s topicPartitions) has(topic string, p int32) bool {
	_, found := slices.BinarySearch(s[topic], p)
	return found
}

// clone returns a deep copy.
func (s topicPartitions) clone() topicPartitions {
	c := make(topicPartitions, len(s))
	for t, ps := range s {
		c[t] = slices.Clone(ps)
	}
	return c
}

// txnMetadata is one transactional id's state as stored.
type txnMetadata struct {
	ProducerID int64
	Epoch      int16
	// PrevProducerID and NextProducerID are Kafka's KIP-890 fields; -1 here
	// (transactions v1 never rolls the producer id).
	PrevProducerID int64
	NextProducerID int64
	TimeoutMs      int32
	State          kmsg.TransactionState
	// Partitions are the partitions of the open (or ending) transaction.
	Partitions topicPartitions
	// StartMs is the time of the transaction's first add (-1 without one):
	// its timeout counts from there (Kafka's txnStartTimestamp).
	StartMs int64
	// UpdateMs is the time of the last change; transactional id expiry counts
	// from it.
	UpdateMs int64
}

func (m *txnMetadata) encode() []byte {
	v := kmsg.NewTxnMetadataValue()
	v.Version = txnValueVersion
	v.ProducerID = m.ProducerID
	v.ProducerEpoch = m.Epoch
	v.TimeoutMillis = m.TimeoutMs
	v.State = m.State
	v.LastUpdateTimestamp = m.UpdateMs
	v.StartTimestamp = m.StartMs
	v.PreviousProducerID = m.PrevProducerID
	v.NextProducerID = m.NextProducerID
	topics := make([]string, 0, len(m.Partitions))
	for t := range m.Partitions {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		vt := kmsg.NewTxnMetadataValueTopic()
		vt.Topic = t
		vt.Partitions = m.Partitions[t]
		v.Topics = append(v.Topics, vt)
	}
	return v.AppendTo(nil)
}

// decodeTxnMetadata decodes and checks a stored value.
func decodeTxnMetadata(b []byte) (*txnMetadata, error) {
	if len(b) < 2 || b[0] != 0 || b[1] > byte(txnValueVersion) {
		return nil, fmt.Errorf("%w: value version", errBadTxnRecord)
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("%w: value", errBadTxnRecord)
	}
	if v.State < txnEmpty || v.State > txnPrepareEpochFence {
		return nil, fmt.Errorf("%w: state %d", errBadTxnRecord, v.State)
	}
	if v.ProducerID < 0 || v.ProducerEpoch < 0 || v.TimeoutMillis <= 0 {
		return nil, fmt.Errorf("%w: producer %d epoch %d timeout %d", errBadTxnRecord, v.ProducerID, v.ProducerEpoch, v.TimeoutMillis)
	}
	m := &txnMetadata{
		ProducerID:     v.ProducerID,
		Epoch:          v.ProducerEpoch,
		PrevProducerID: -1,
		NextProducerID: -1,
		TimeoutMs:      v.TimeoutMillis,
		State:          v.State,
		Partitions:     topicPartitions{},
		StartMs:        v.StartTimestamp,
		UpdateMs:       v.LastUpdateTimestamp,
	}
	if v.Version >= 1 {
		m.PrevProducerID, m.NextProducerID = v.PreviousProducerID, v.NextProducerID
	}
	for _, t := range v.Topics {
		if t.Topic == "" {
			return nil, fmt.Errorf("%w: empty topic name", errBadTxnRecord)
		}
		for _, p := range t.Partitions {
			if p < 0 {
				return nil, fmt.Errorf("%w: partition %d", errBadTxnRecord, p)
			}
			m.Partitions.add(t.Topic, p)
		}
	}
	return m, nil
}
