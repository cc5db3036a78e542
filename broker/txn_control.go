package broker

// Control batches: the COMMIT and ABORT markers that end a transaction in
// each of its partitions (docs/ARCHITECTURE.md rule 7). Kafka's format
// (ControlRecordType, EndTransactionMarker): a RecordBatch v2 with attributes
// 0x30 (transactional and control), the transaction's producer id and epoch,
// base sequence -1 and one record whose key is kmsg.ControlRecordKey
// (int16 version 0, int16 type: 0 abort, 1 commit) and whose value is
// kmsg.EndTxnMarker (int16 version 0, int32 coordinator epoch). A marker has
// an offset of its own, so consumers step over it, and clients hide it unless
// asked to keep control records (franz-go's KeepControlRecords).

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// Control record types of transaction markers.
const (
	controlAbort  = kmsg.ControlRecordKeyType(0)
	controlCommit = kmsg.ControlRecordKeyType(1)
)

// txnMarker is one transaction marker at its offset in a partition.
type txnMarker struct {
	Offset           int64
	Timestamp        int64
	ProducerID       int64
	ProducerEpoch    int16
	Commit           bool
	CoordinatorEpoch int32
}

// controlRecordKey and endTxnMarkerValue are a marker's record key and value.
func controlRecordKey(commit bool) []byte {
	k := kmsg.ControlRecordKey{Version: 0, Type: controlAbort}
	if commit {
		k.Type = controlCommit
	}
	return k.AppendTo(make([]byte, 0, 4))
}

func endTxnMarkerValue(coordinatorEpoch int32) []byte {
	v := kmsg.EndTxnMarker{Version: 0, CoordinatorEpoch: coordinatorEpoch}
	return v.AppendTo(make([]byte, 0, 6))
}

// decodeControlRecord reads a marker's record key and value: whether it
// commits, and the coordinator epoch. Only version 0 transaction markers are
// accepted (Kafka writes nothing else into a data partition).
func decodeControlRecord(key, value []byte) (commit bool, coordinatorEpoch int32, err error) {
	var k kmsg.ControlRecordKey
	if len(key) != 4 || k.ReadFrom(key) != nil || k.Version != 0 {
		return false, 0, corrupt("control record key %x is not a version 0 control key", key)
	}
	switch k.Type {
	case controlAbort, controlCommit:
	default:
		return false, 0, corrupt("control record type %d is not a transaction marker", k.Type)
	}
	var v kmsg.EndTxnMarker
	if len(value) != 6 || v.ReadFrom(value) != nil || v.Version != 0 {
		return false, 0, corrupt("end transaction marker %x is not version 0", value)
	}
	return k.Type == controlCommit, v.CoordinatorEpoch, nil
}

// appendControlBatch appends m as a control batch of one record, partition
// leader epoch epoch.
func appendControlBatch(dst []byte, epoch int32, m txnMarker) []byte {
	start := len(dst)
	dst = appendBatchHeader(dst, m.Offset, epoch, 0, m.Timestamp, m.Timestamp, 1)
	b := dst[start:]
	binary.BigEndian.PutUint16(b[21:], attrTransactional|attrControl)
	binary.BigEndian.PutUint64(b[43:], uint64(m.ProducerID))
	binary.BigEndian.PutUint16(b[51:], uint16(m.ProducerEpoch))
	rec := shardstore.Record{Offset: m.Offset, Timestamp: m.Timestamp,
		Key: controlRecordKey(m.Commit), Value: endTxnMarkerValue(m.CoordinatorEpoch)}
	dst = appendRecord(dst, &rec, 0, 0)
	return finishBatch(dst, start)
}

// decodeControlBatch reads raw, which must be exactly one control batch as
// appendControlBatch writes it, back into a marker. Errors are *batchError
// values. Produce refuses control batches from clients (parseBatchHeader);
// this is for the batches the broker itself writes and reads back.
func decodeControlBatch(raw []byte) (txnMarker, error) {
	var m txnMarker
	if len(raw) < batchHeaderSize {
		return m, corrupt("control batch of %d bytes is shorter than its %d byte header", len(raw), batchHeaderSize)
	}
	if length := int64(int32(binary.BigEndian.Uint32(raw[8:]))); batchLenEnd+length != int64(len(raw)) {
		return m, corrupt("control batch length %d does not match the %d bytes", length, len(raw)-batchLenEnd)
	}
	if magic := int8(raw[16]); magic != 2 {
		return m, invalidRecord("record batch magic %d is not supported, only 2", magic)
	}
	if want, got := binary.BigEndian.Uint32(raw[17:]), crc32.Checksum(raw[batchCRCStart:], castagnoli); want != got {
		return m, corrupt("control batch CRC mismatch")
	}
	if attrs := binary.BigEndian.Uint16(raw[21:]); attrs != attrTransactional|attrControl {
		return m, corrupt("control batch attributes %#x, want %#x", attrs, attrTransactional|attrControl)
	}
	if delta := int32(binary.BigEndian.Uint32(raw[23:])); delta != 0 {
		return m, corrupt("control batch last offset delta %d, want 0", delta)
	}
	m.Offset = int64(binary.BigEndian.Uint64(raw))
	m.Timestamp = int64(binary.BigEndian.Uint64(raw[27:]))
	if maxTs := int64(binary.BigEndian.Uint64(raw[35:])); maxTs != m.Timestamp {
		return m, corrupt("control batch max timestamp %d differs from its first %d", maxTs, m.Timestamp)
	}
	m.ProducerID = int64(binary.BigEndian.Uint64(raw[43:]))
	m.ProducerEpoch = int16(binary.BigEndian.Uint16(raw[51:]))
	if m.ProducerID < 0 || m.ProducerEpoch < 0 {
		return m, corrupt("control batch producer %d epoch %d", m.ProducerID, m.ProducerEpoch)
	}
	if seq := int32(binary.BigEndian.Uint32(raw[53:])); seq != -1 {
		return m, corrupt("control batch base sequence %d, want -1", seq)
	}
	if n := int32(binary.BigEndian.Uint32(raw[57:])); n != 1 {
		return m, corrupt("control batch has %d records, want 1", n)
	}
	r := recordReader{b: raw[batchHeaderSize:]}
	size, err := r.varint()
	if err != nil || size != int64(len(r.b)) {
		return m, corrupt("control record length does not match the batch")
	}
	if len(r.b) == 0 || r.b[0] != 0 {
		return m, corrupt("control record attributes")
	}
	r.b = r.b[1:]
	tsDelta, err1 := r.varint()
	offDelta, err2 := r.varint()
	key, err3 := r.bytes()
	value, err4 := r.bytes()
	headers, err5 := r.varint()
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
		return m, corrupt("control record is truncated")
	}
	if tsDelta != 0 || offDelta != 0 || headers != 0 || len(r.b) != 0 {
		return m, corrupt("control record deltas %d/%d, %d headers, %d bytes left", tsDelta, offDelta, headers, len(r.b))
	}
	m.Commit, m.CoordinatorEpoch, err = decodeControlRecord(key, value)
	if err != nil {
		return m, err
	}
	return m, nil
}

// String names a marker for logs and test failures.
func (m txnMarker) String() string {
	kind := "abort"
	if m.Commit {
		kind = "commit"
	}
	return fmt.Sprintf("%s marker at %d (producer %d epoch %d, coordinator epoch %d)", kind, m.Offset, m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch)
}
