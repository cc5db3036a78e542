package broker

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

func TestTxnRecordRoundTrip(t *testing.T) {
	for _, m := range []*txnMetadata{
		{ProducerID: 7, Epoch: 0, PrevProducerID: -1, NextProducerID: -1, TimeoutMs: 60000, State: txnEmpty,
			Partitions: topicPartitions{}, StartMs: -1, UpdateMs: 5},
		{ProducerID: 1 << 40, Epoch: 32766, PrevProducerID: -1, NextProducerID: -1, TimeoutMs: 3600000, State: txnOngoing,
			Partitions: topicPartitions{"a": {0, 3, 9}, "b": {1}}, StartMs: 10, UpdateMs: 11},
		{ProducerID: 3, Epoch: 2, PrevProducerID: -1, NextProducerID: -1, TimeoutMs: 1, State: txnPrepareEpochFence,
			Partitions: topicPartitions{"x": {0}}, StartMs: 10, UpdateMs: 11},
	} {
		got, err := decodeTxnMetadata(m.encode())
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: %+v, want %+v", got, m)
		}
	}
	id, err := decodeTxnRecordKey(txnRecordKey("flink-0-7"))
	if err != nil || id != "flink-0-7" {
		t.Fatalf("key round trip: %q, %v", id, err)
	}
}

// TestTxnRecordKafkaFormat: the stored records are Kafka's, readable by
// kmsg as Kafka's own __transaction_state records.
func TestTxnRecordKafkaFormat(t *testing.T) {
	m := &txnMetadata{ProducerID: 9, Epoch: 4, PrevProducerID: -1, NextProducerID: -1, TimeoutMs: 900000,
		State: txnPrepareCommit, Partitions: topicPartitions{"t": {2, 1}}, StartMs: 1, UpdateMs: 2}
	m.Partitions = topicPartitions{}
	m.Partitions.add("t", 2)
	m.Partitions.add("t", 1)
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(m.encode()); err != nil {
		t.Fatal(err)
	}
	if v.Version != 1 || v.ProducerID != 9 || v.ProducerEpoch != 4 || v.State.String() != "PrepareCommit" ||
		len(v.Topics) != 1 || !reflect.DeepEqual(v.Topics[0].Partitions, []int32{1, 2}) {
		t.Fatalf("kmsg reads %+v", v)
	}
	// A version 0 value (Kafka before 3.5) decodes too.
	v.Version = 0
	got, err := decodeTxnMetadata(v.AppendTo(nil))
	if err != nil || got.ProducerID != 9 || !got.Partitions.has("t", 1) {
		t.Fatalf("version 0: %+v, %v", got, err)
	}
}

func TestTxnRecordRejects(t *testing.T) {
	good := (&txnMetadata{ProducerID: 1, TimeoutMs: 1, Partitions: topicPartitions{}}).encode()
	for name, b := range map[string][]byte{
		"empty":     {},
		"version 2": append([]byte{0, 2}, good[2:]...),
		"truncated": good[:len(good)-1],
		"state 8": func() []byte {
			v := kmsg.NewTxnMetadataValue()
			v.Version, v.ProducerID, v.TimeoutMillis, v.State = 1, 1, 1, 8
			return v.AppendTo(nil)
		}(),
		"negative pid": func() []byte {
			v := kmsg.NewTxnMetadataValue()
			v.Version, v.ProducerID, v.TimeoutMillis = 1, -1, 1
			return v.AppendTo(nil)
		}(),
		"negative partition": func() []byte {
			v := kmsg.NewTxnMetadataValue()
			v.Version, v.ProducerID, v.TimeoutMillis = 1, 1, 1
			v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "t", Partitions: []int32{-1}}}
			return v.AppendTo(nil)
		}(),
	} {
		if _, err := decodeTxnMetadata(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for name, b := range map[string][]byte{
		"empty":    {},
		"version1": {0, 1, 0, 1, 'x'},
		"empty id": {0, 0, 0, 0},
		"trailing": append(txnRecordKey("x"), 0),
		"short":    {0, 0, 0, 5, 'x'},
	} {
		if _, err := decodeTxnRecordKey(b); err == nil {
			t.Errorf("key %s: decoded", name)
		}
	}
}

// FuzzTxnRecord: the __transaction_state decoders never panic; what they
// accept re-encodes to bytes that decode to the same state.
func FuzzTxnRecord(f *testing.F) {
	f.Add(txnRecordKey("tid"), (&txnMetadata{ProducerID: 1, TimeoutMs: 1, State: txnOngoing,
		Partitions: topicPartitions{"t": {0, 1}}}).encode())
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0, 0, 0xff, 0xff}, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 0xff})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		if id, err := decodeTxnRecordKey(key); err == nil && !bytes.Equal(txnRecordKey(id), key) {
			t.Fatalf("key %x re-encodes to %x", key, txnRecordKey(id))
		}
		m, err := decodeTxnMetadata(value)
		if err != nil {
			return
		}
		again, err := decodeTxnMetadata(m.encode())
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("%+v then %+v", m, again)
		}
	})
}

func TestControlBatchRoundTrip(t *testing.T) {
	for _, m := range []txnMarker{
		{Offset: 0, Timestamp: 0, ProducerID: 0, ProducerEpoch: 0, Commit: false, CoordinatorEpoch: 0},
		{Offset: 1 << 40, Timestamp: 1700000000000, ProducerID: 1 << 50, ProducerEpoch: 32767, Commit: true, CoordinatorEpoch: 1<<31 - 1},
	} {
		raw := appendControlBatch(nil, 3, m)
		got, err := decodeControlBatch(raw)
		if err != nil || got != m {
			t.Fatalf("%v: got %v, %v", m, got, err)
		}
		// kmsg reads it as Kafka's control batch.
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(raw); err != nil {
			t.Fatal(err)
		}
		if rb.Attributes != 0x30 || rb.ProducerID != m.ProducerID || rb.ProducerEpoch != m.ProducerEpoch ||
			rb.FirstSequence != -1 || rb.NumRecords != 1 || rb.PartitionLeaderEpoch != 3 || rb.FirstOffset != m.Offset {
			t.Fatalf("kmsg reads %+v", rb)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(rb.Records); err != nil {
			t.Fatal(err)
		}
		var k kmsg.ControlRecordKey
		var v kmsg.EndTxnMarker
		if k.ReadFrom(rec.Key) != nil || v.ReadFrom(rec.Value) != nil {
			t.Fatalf("control record %x / %x", rec.Key, rec.Value)
		}
		if (k.Type == 1) != m.Commit || v.CoordinatorEpoch != m.CoordinatorEpoch {
			t.Fatalf("control record %+v %+v for %v", k, v, m)
		}
	}
}

func TestControlRecordRejects(t *testing.T) {
	for name, kv := range map[string][2][]byte{
		"empty":       {nil, nil},
		"key version": {{0, 1, 0, 1}, endTxnMarkerValue(0)},
		"type 2":      {{0, 0, 0, 2}, endTxnMarkerValue(0)},
		"long key":    {{0, 0, 0, 1, 0}, endTxnMarkerValue(0)},
		"short value": {controlRecordKey(true), {0, 0, 0}},
		"value v1":    {controlRecordKey(true), {0, 1, 0, 0, 0, 0}},
	} {
		if _, _, err := decodeControlRecord(kv[0], kv[1]); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// A data batch is not a control batch.
	data := wireBatch{firstTs: 1, records: threeRecords()}.build(t)
	if _, err := decodeControlBatch(data); err == nil {
		t.Error("data batch decoded as a control batch")
	}
	// Clients may not produce control batches.
	raw := appendControlBatch(nil, 0, txnMarker{ProducerID: 1, Commit: true})
	if _, err := decodeBatch(raw, batchLimits{}); err == nil {
		t.Error("produce accepted a control batch")
	}
}

// FuzzControlBatch: the control batch decoder never panics; what it accepts
// re-encodes to the same bytes.
func FuzzControlBatch(f *testing.F) {
	f.Add(appendControlBatch(nil, 1, txnMarker{Offset: 5, ProducerID: 2, Commit: true}), false)
	f.Add(appendControlBatch(nil, 1, txnMarker{Offset: 5, ProducerID: 2}), true)
	f.Add([]byte{}, false)
	f.Add(wireBatch{firstTs: 1, records: threeRecords()}.build(f), true)
	f.Fuzz(func(t *testing.T, raw []byte, fixCRC bool) {
		if fixCRC && len(raw) >= batchCRCStart {
			raw = append([]byte(nil), raw...)
			binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[batchCRCStart:], castagnoli))
		}
		m, err := decodeControlBatch(raw)
		if err != nil {
			return
		}
		epoch := int32(binary.BigEndian.Uint32(raw[12:]))
		if again := appendControlBatch(nil, epoch, m); !bytes.Equal(again, raw) {
			t.Fatalf("%x re-encodes to %x", raw, again)
		}
	})
}

// TestAppendBatchMarkers: a marker among records becomes a control batch of
// its own, sized as fitBatches counts it.
func TestAppendBatchMarkers(t *testing.T) {
	recs := []shardstore.Record{
		{Offset: 3, Timestamp: 5, Key: []byte("a"), Value: []byte("1")},
		{Offset: 4, Timestamp: 6, Marker: &shardstore.Marker{ProducerID: 9, ProducerEpoch: 1, Commit: true, CoordinatorEpoch: 2}},
		{Offset: 5, Timestamp: 7, Key: []byte("b"), Value: []byte("2")},
	}
	raw := appendBatch(nil, 1, recs)
	if fitBatches(recs, len(raw)) != 3 || fitBatches(recs, len(raw)-1) != 2 {
		t.Fatalf("fitBatches(%d) = %d, (%d) = %d", len(raw), fitBatches(recs, len(raw)), len(raw)-1, fitBatches(recs, len(raw)-1))
	}
	var offsets []int64
	for len(raw) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(raw); err != nil {
			t.Fatal(err)
		}
		n := 12 + int(rb.Length)
		if rb.Attributes&0x20 != 0 {
			m, err := decodeControlBatch(raw[:n])
			if err != nil || m.Offset != 4 || !m.Commit || m.ProducerID != 9 {
				t.Fatalf("control batch %v, %v", m, err)
			}
			if n != controlBatchSize {
				t.Fatalf("control batch of %d bytes, controlBatchSize %d", n, controlBatchSize)
			}
		}
		offsets = append(offsets, rb.FirstOffset)
		raw = raw[n:]
	}
	if len(offsets) != 3 || offsets[0] != 3 || offsets[1] != 4 || offsets[2] != 5 {
		t.Fatalf("batches at %v", offsets)
	}
}
