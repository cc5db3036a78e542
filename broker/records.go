package broker

// Record batches (RecordBatch v2, "magic 2") on both sides of the data path.
//
// Produce side: parseBatchHeader, scanRecords and decodeRecords check one
// client batch field by field and turn it into shardstore records plus the
// producer identity that idempotence needs. Nothing is allocated for the
// records until all of them have been checked, and then exactly what they
// need: one slice of records, one of headers. Decompression (decompress.go) is
// bounded by Config.MaxDecompressedBytes and by what the caller reserved;
// batch_memory.go charges all of it to the memory budget first.
//
// Fetch side: batchWriter (and appendBatch over it) and appendGapBatch encode
// into one caller-owned buffer, computing the Length and CRC32C fields that
// kmsg's AppendTo leaves to the caller. Fetch feeds batchWriter straight from
// the store's iterator (Store.ReadFunc): no record is copied or decoded into
// a slice first.
//
// Layout of a v2 batch (offsets in bytes):
//
//	 0 baseOffset int64        27 firstTimestamp int64
//	 8 batchLength int32       35 maxTimestamp int64
//	12 partitionLeaderEpoch    43 producerId int64
//	16 magic int8              51 producerEpoch int16
//	17 crc uint32 (over 21..)  53 baseSequence int32
//	21 attributes int16        57 numRecords int32
//	23 lastOffsetDelta int32   61 records
//
// A record is: length varint, attributes int8, timestampDelta varlong,
// offsetDelta varint, key (varint length, -1 = null), value (same), header
// count varint, then per header a key (varint length) and a value (varint
// length, -1 = null). Varints are zigzag encoded, as in protobuf's sint64.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shardcache/shardcache/shardstore"
)

const (
	batchHeaderSize = 61 // bytes before the first record
	batchCRCStart   = 21 // the CRC covers the batch from attributes on
	batchLenEnd     = 12 // baseOffset and batchLength are not counted by batchLength
	minRecordSize   = 7  // one byte each: length, attributes, 2 deltas, key, value, headers

	attrCompression   = 0x07
	attrTransactional = 0x10
	attrControl       = 0x20

	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLz4    = 3
	codecZstd   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyRequiredMessage is what a producer reads when it sends a keyless record to a
// compacted topic (docs/ARCHITECTURE.md rule 4).
const keyRequiredMessage = "compacted topic requires a record key"

// batchError is a record batch rejected by decodeBatch. It unwraps to its Kafka
// error, so errorCode maps it; its text is the ErrorMessage a client sees.
type batchError struct {
	code *kerr.Error
	msg  string
	// records are the indexes of the records at fault (Produce v8+ RecordErrors).
	records []int
}

func (e *batchError) Error() string { return e.msg }
func (e *batchError) Unwrap() error { return e.code }

func corrupt(format string, args ...any) error {
	return &batchError{code: kerr.CorruptMessage, msg: fmt.Sprintf(format, args...)}
}

func invalidRecord(format string, args ...any) error {
	return &batchError{code: kerr.InvalidRecord, msg: fmt.Sprintf(format, args...)}
}

// batchLimits are the limits a batch is checked against.
type batchLimits struct {
	// MaxMessageBytes is the topic's max.message.bytes: the batch as sent.
	MaxMessageBytes int32
	// MaxDecompressedBytes bounds the records after decompression.
	MaxDecompressedBytes int32
	// Policy decides whether keyless records are refused (compact).
	Policy shardstore.Policy
	// BeforeWait, when set, runs before decoding waits for budget memory:
	// the produce handler proposes the batches it has decoded and holds, so
	// their memory is freed and never waits on itself.
	BeforeWait func()
}

// decodedBatch is a validated produce batch.
type decodedBatch struct {
	Producer shardstore.Producer
	// Records alias raw (uncompressed batches) or a fresh decompression buffer;
	// they are valid as long as raw is.
	Records []shardstore.Record
	// Transactional is the batch's transactional attribute bit.
	Transactional bool
}

// batchHeader is what a v2 batch's first 61 bytes say, once checked.
type batchHeader struct {
	codec          int16
	firstTimestamp int64
	numRecords     int32
	producer       shardstore.Producer
	transactional  bool
}

// parseBatchHeader checks raw, which must be exactly one v2 record batch, up
// to its records: length, max.message.bytes, magic, CRC, attributes and the
// record count. It allocates nothing. Errors are *batchError values.
func parseBatchHeader(raw []byte, lim batchLimits) (batchHeader, error) {
	var h batchHeader
	if len(raw) < batchHeaderSize {
		return h, corrupt("record batch of %d bytes is shorter than its %d byte header", len(raw), batchHeaderSize)
	}
	length := int64(int32(binary.BigEndian.Uint32(raw[8:])))
	switch total := batchLenEnd + length; {
	case total < batchHeaderSize:
		return h, corrupt("record batch length %d is shorter than the batch header", length)
	case total > int64(len(raw)):
		return h, corrupt("record batch length %d exceeds the %d bytes sent", length, len(raw)-batchLenEnd)
	case total < int64(len(raw)):
		return h, invalidRecord("a partition's records must be exactly one record batch (%d bytes follow the batch)", int64(len(raw))-total)
	}
	if lim.MaxMessageBytes > 0 && len(raw) > int(lim.MaxMessageBytes) {
		return h, &batchError{code: kerr.MessageTooLarge,
			msg: fmt.Sprintf("record batch of %d bytes exceeds max.message.bytes %d", len(raw), lim.MaxMessageBytes)}
	}
	if magic := int8(raw[16]); magic != 2 {
		return h, invalidRecord("record batch magic %d is not supported, only 2", magic)
	}
	if want, got := binary.BigEndian.Uint32(raw[17:]), crc32.Checksum(raw[batchCRCStart:], castagnoli); want != got {
		return h, corrupt("record batch CRC mismatch")
	}
	attrs := int16(binary.BigEndian.Uint16(raw[21:]))
	if attrs&attrControl != 0 {
		return h, invalidRecord("control batches may not be produced by clients")
	}
	h.codec = attrs & attrCompression
	if h.codec > codecZstd {
		return h, &batchError{code: kerr.UnsupportedCompressionType,
			msg: fmt.Sprintf("compression codec %d is not supported", h.codec)}
	}
	lastOffsetDelta := int32(binary.BigEndian.Uint32(raw[23:]))
	h.firstTimestamp = int64(binary.BigEndian.Uint64(raw[27:]))
	h.producer = shardstore.Producer{
		ID:            int64(binary.BigEndian.Uint64(raw[43:])),
		Epoch:         int16(binary.BigEndian.Uint16(raw[51:])),
		BaseSequence:  int32(binary.BigEndian.Uint32(raw[53:])),
		Transactional: attrs&attrTransactional != 0,
	}
	h.transactional = h.producer.Transactional
	if h.producer.ID < 0 {
		h.producer = shardstore.NoProducer
	}
	h.numRecords = int32(binary.BigEndian.Uint32(raw[57:]))
	if h.numRecords <= 0 {
		return h, invalidRecord("record batch has %d records", h.numRecords)
	}
	if lastOffsetDelta != h.numRecords-1 {
		return h, invalidRecord("record batch last offset delta %d does not match its %d records", lastOffsetDelta, h.numRecords)
	}
	// Every record takes at least minRecordSize bytes: a count that the
	// records' bytes (or, compressed, the most they may decompress to) cannot
	// hold is refused before anything is allocated for it.
	bodyMax := len(raw) - batchHeaderSize
	if h.codec != codecNone {
		bodyMax = lim.maxDecompressed()
	}
	if int64(h.numRecords) > int64(bodyMax/minRecordSize) {
		return h, corrupt("record batch claims %d records in at most %d bytes", h.numRecords, bodyMax)
	}
	return h, nil
}

func (lim batchLimits) maxDecompressed() int {
	if lim.MaxDecompressedBytes <= 0 {
		return DefaultMaxDecompressedBytes
	}
	return int(lim.MaxDecompressedBytes)
}

// decodeBatch validates raw, which must be exactly one v2 record batch, and
// decodes its records. Errors are *batchError values carrying the Kafka code.
// It charges nothing to a memory budget; the produce path uses
// Broker.decodeProduceBatch (batch_memory.go), which does.
func decodeBatch(raw []byte, lim batchLimits) (decodedBatch, error) {
	h, err := parseBatchHeader(raw, lim)
	if err != nil {
		return decodedBatch{}, err
	}
	body := raw[batchHeaderSize:]
	if h.codec != codecNone {
		if body, err = decompressBatch(body, h.codec, lim.maxDecompressed(), lim.maxDecompressed()); err != nil {
			return decodedBatch{}, err
		}
	}
	if err := checkRecordCount(body, h); err != nil {
		return decodedBatch{}, err
	}
	recs := make([]shardstore.Record, h.numRecords)
	shape, err := scanRecords(body, h, recs)
	if err != nil {
		return decodedBatch{}, err
	}
	return decodeRecords(body, h, shape, lim, recs)
}

// decompressBatch decompresses a batch's records into at most limit bytes,
// turning errors into batch errors: MESSAGE_TOO_LARGE past max (the
// configured bound), errDecompressTooLarge itself when the output passed a
// limit below max (the caller's estimate was short), CORRUPT_MESSAGE otherwise.
func decompressBatch(body []byte, codec int16, limit, max int) ([]byte, error) {
	out, err := decompressBounded(body, codec, limit)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, errDecompressTooLarge) && limit < max:
		return nil, errDecompressTooLarge
	case errors.Is(err, errDecompressTooLarge):
		return nil, &batchError{code: kerr.MessageTooLarge,
			msg: fmt.Sprintf("record batch decompresses to more than %d bytes", max)}
	}
	return nil, corrupt("record batch does not decompress: %v", err)
}

// checkRecordCount refuses a batch whose records, decompressed, cannot hold
// the records its header counts. parseBatchHeader could only bound a
// compressed batch's count by what it may decompress to; this runs before
// the records are allocated, so a small compressed batch claiming millions of
// records costs nothing.
func checkRecordCount(body []byte, h batchHeader) error {
	if int64(h.numRecords) > int64(len(body)/minRecordSize) {
		return corrupt("record batch claims %d records in %d bytes of records", h.numRecords, len(body))
	}
	return nil
}

// recordsShape is what scanRecords learns about a batch's records before
// anything is allocated for them.
type recordsShape struct {
	headers        int // headers in all records
	headerKeyBytes int // bytes of all header keys (copied into strings)
	keyless        int // records without a key
}

// scanRecords checks every record of body, the batch's (decompressed)
// records, without allocating; decodeRecords then cannot fail. With recs
// (h.numRecords long) it also decodes each record but its headers into it,
// so decodeRecords needs no second pass for a batch without headers, the
// common case (the two passes were 8% of a produce's CPU).
func scanRecords(body []byte, h batchHeader, recs []shardstore.Record) (recordsShape, error) {
	var shape recordsShape
	r := recordReader{b: body}
	var scratch shardstore.Record
	rec := &scratch
	for i := int32(0); i < h.numRecords; i++ {
		if recs != nil {
			rec = &recs[i]
			// Kept with the record, so a fetch answers with the producer's codec.
			rec.Codec = shardstore.Codec(h.codec)
		}
		if err := r.record(rec, nil, h.firstTimestamp, i, &shape); err != nil {
			return shape, corrupt("record %d: %v", i, err)
		}
	}
	if len(r.b) != 0 {
		return shape, corrupt("record batch has %d bytes after its last record", len(r.b))
	}
	return shape, nil
}

// keylessError is INVALID_RECORD for a compacted topic's batch with keyless
// records, naming each of them (Produce v8+ RecordErrors).
func keylessError(body []byte, h batchHeader, shape recordsShape) error {
	keyless := make([]int, 0, shape.keyless)
	r := recordReader{b: body}
	var rec shardstore.Record
	for i := int32(0); i < h.numRecords; i++ {
		_ = r.record(&rec, nil, 0, i, nil)
		if rec.Key == nil {
			keyless = append(keyless, int(i))
		}
	}
	return &batchError{code: kerr.InvalidRecord, msg: keyRequiredMessage, records: keyless}
}

// decodeRecords decodes the records scanRecords checked, with one allocation
// for the records and one for all their headers. Keys, values and header
// values alias body; a compacted topic's keyless records are refused
// (docs/ARCHITECTURE.md rule 4). recs is what scanRecords filled from this
// body, or nil.
func decodeRecords(body []byte, h batchHeader, shape recordsShape, lim batchLimits, recs []shardstore.Record) (decodedBatch, error) {
	if shape.keyless > 0 && lim.Policy == shardstore.PolicyCompact {
		return decodedBatch{}, keylessError(body, h, shape)
	}
	if recs != nil && shape.headers == 0 {
		return decodedBatch{Producer: h.producer, Records: recs, Transactional: h.transactional}, nil
	}
	if recs == nil {
		recs = make([]shardstore.Record, h.numRecords)
	}
	var headers []shardstore.Header
	if shape.headers > 0 {
		headers = make([]shardstore.Header, shape.headers)
	}
	r := recordReader{b: body}
	for i := range recs {
		_ = r.record(&recs[i], &headers, h.firstTimestamp, int32(i), nil)
		// Kept with the record, so a fetch answers with the producer's codec.
		recs[i].Codec = shardstore.Codec(h.codec)
	}
	return decodedBatch{Producer: h.producer, Records: recs, Transactional: h.transactional}, nil
}

var errShort = errors.New("truncated")

// recordReader walks the records of a batch. Every length is checked against the
// bytes left before it is used.
type recordReader struct {
	b []byte
}

func (r *recordReader) varint() (int64, error) {
	// One or two bytes, the common cases (deltas, and lengths below 8 KiB),
	// without binary.Varint's loop: BenchmarkDecodeBatch, 158 against 245
	// µs per 1,000 records with scanRecords' single pass, 3 of them here.
	if len(r.b) > 0 && r.b[0] < 0x80 {
		u := uint64(r.b[0])
		r.b = r.b[1:]
		return int64(u>>1) ^ -int64(u&1), nil
	}
	if len(r.b) > 1 && r.b[1] < 0x80 {
		u := uint64(r.b[0]&0x7f) | uint64(r.b[1])<<7
		r.b = r.b[2:]
		return int64(u>>1) ^ -int64(u&1), nil
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		return 0, errShort
	}
	r.b = r.b[n:]
	return v, nil
}

// bytes reads a varint-length-prefixed field; -1 is null.
func (r *recordReader) bytes() ([]byte, error) {
	n, err := r.varint()
	switch {
	case err != nil:
		return nil, err
	case n == -1:
		return nil, nil
	case n < -1 || n > int64(len(r.b)):
		return nil, fmt.Errorf("field length %d with %d bytes left", n, len(r.b))
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, nil
}

// record reads one record into rec. With headers nil it only checks the
// record (rec.Headers stays nil) and, with shape set, counts what decoding it
// will allocate; otherwise it takes rec's headers from the front of *headers.
func (r *recordReader) record(rec *shardstore.Record, headers *[]shardstore.Header, firstTimestamp int64, wantDelta int32, shape *recordsShape) error {
	length, err := r.varint()
	if err != nil {
		return err
	}
	if length < 0 || length > int64(len(r.b)) {
		return fmt.Errorf("record length %d with %d bytes left", length, len(r.b))
	}
	rest := r.b[length:]
	r.b = r.b[:length]
	if len(r.b) < 1 {
		return errShort
	}
	r.b = r.b[1:] // record attributes: unused
	tsDelta, err := r.varint()
	if err != nil {
		return err
	}
	offDelta, err := r.varint()
	if err != nil {
		return err
	}
	if offDelta != int64(wantDelta) {
		return fmt.Errorf("offset delta %d, want %d", offDelta, wantDelta)
	}
	rec.Timestamp = firstTimestamp + tsDelta
	if rec.Key, err = r.bytes(); err != nil {
		return err
	}
	if rec.Value, err = r.bytes(); err != nil {
		return err
	}
	if shape != nil && rec.Key == nil {
		shape.keyless++
	}
	nh, err := r.varint()
	if err != nil {
		return err
	}
	// A header takes at least two bytes.
	if nh < 0 || nh > int64(len(r.b)/2) {
		return fmt.Errorf("header count %d with %d bytes left", nh, len(r.b))
	}
	rec.Headers = nil
	if nh > 0 && headers != nil {
		rec.Headers = (*headers)[:nh:nh]
		*headers = (*headers)[nh:]
	}
	for i := 0; i < int(nh); i++ {
		k, err := r.bytes()
		if err != nil {
			return err
		}
		if k == nil {
			return errors.New("null header key")
		}
		v, err := r.bytes()
		if err != nil {
			return err
		}
		if shape != nil {
			shape.headers++
			shape.headerKeyBytes += len(k)
		}
		if rec.Headers != nil {
			rec.Headers[i] = shardstore.Header{Key: string(k), Value: v}
		}
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the record's fields", len(r.b))
	}
	r.b = rest
	return nil
}

// appendBatch appends recs, which must be in offset order, to dst as record
// batches v2 (batchWriter) and returns the grown buffer.
func appendBatch(dst []byte, epoch int32, recs []shardstore.Record) []byte {
	w := batchWriter{dst: dst, epoch: epoch}
	for i := range recs {
		w.add(&recs[i])
	}
	return w.bytes()
}

// batchWriter encodes records, as they come in offset order, into record
// batches v2: no producer (-1s), partition leader epoch epoch. A batch's base
// offset and base timestamp are its first record's (Kafka's baseTimestamp; a
// later record with an older timestamp has a negative delta) and offset
// deltas are relative to the base, so compacted gaps between records are
// fine; a new batch starts when a delta would not fit in an int32, or when
// the record's codec differs from the batch's. A transaction marker
// (Record.Marker) becomes a control batch of its own (txn_control.go), which
// ends the batch before it.
//
// A batch takes the codec its records were produced with, or fixedCodec for
// every record when fixed (the topic's compression.type names one), when
// codecs has it (fetch_compress.go), and is compressed as it closes;
// otherwise, or when compressing does not make it smaller, it goes
// uncompressed. size says what a record would add, uncompressed, before add
// adds it, so the fetch path fills a byte limit without a second pass: the
// limit counts records uncompressed, and a compressed answer comes in under
// it.
type batchWriter struct {
	dst    []byte
	epoch  int32
	codecs codecSet // codecs batches may be compressed with
	// fixed: every record takes fixedCodec rather than its own.
	fixed      bool
	fixedCodec shardstore.Codec
	open       bool // a batch is open at start
	start      int
	base       int64 // the open batch's base offset, base timestamp, largest
	ts         int64 // timestamp and last offset
	maxTs      int64
	last       int64
	n          int32
	codec      shardstore.Codec // the open batch's codec
}

// codecOf is the codec rec's batch gets.
func (w *batchWriter) codecOf(rec *shardstore.Record) shardstore.Codec {
	c := rec.Codec
	if w.fixed {
		c = w.fixedCodec
	}
	if w.codecs.has(c) {
		return c
	}
	return shardstore.CodecNone
}

// size returns how many bytes add(rec) would append.
func (w *batchWriter) size(rec *shardstore.Record) int {
	if rec.Marker != nil {
		return controlBatchSize
	}
	if w.open && rec.Offset-w.base <= math.MaxInt32 && w.codecOf(rec) == w.codec {
		body := recordBodySize(rec, rec.Offset-w.base, rec.Timestamp-w.ts)
		return varintLen(int64(body)) + body
	}
	body := recordBodySize(rec, 0, 0)
	return batchHeaderSize + varintLen(int64(body)) + body
}

// add appends rec, whose offset must be above every record added before.
func (w *batchWriter) add(rec *shardstore.Record) {
	if m := rec.Marker; m != nil {
		w.close()
		w.dst = appendControlBatch(w.dst, w.epoch, txnMarker{Offset: rec.Offset, Timestamp: rec.Timestamp,
			ProducerID: m.ProducerID, ProducerEpoch: m.ProducerEpoch, Commit: m.Commit, CoordinatorEpoch: m.CoordinatorEpoch})
		return
	}
	codec := w.codecOf(rec)
	if w.open && (rec.Offset-w.base > math.MaxInt32 || codec != w.codec) {
		w.close()
	}
	if !w.open {
		w.open, w.start, w.codec = true, len(w.dst), codec
		w.base, w.ts, w.maxTs, w.n = rec.Offset, rec.Timestamp, rec.Timestamp, 0
		// lastOffsetDelta, maxTimestamp and numRecords are set by close.
		w.dst = appendBatchHeader(w.dst, w.base, w.epoch, 0, w.ts, w.ts, 0)
	}
	w.dst = appendRecord(w.dst, rec, rec.Offset-w.base, rec.Timestamp-w.ts)
	w.maxTs = max(w.maxTs, rec.Timestamp)
	w.last = rec.Offset
	w.n++
}

// close finishes the open batch, if any.
func (w *batchWriter) close() {
	if !w.open {
		return
	}
	b := w.dst[w.start:]
	binary.BigEndian.PutUint32(b[23:], uint32(w.last-w.base))
	binary.BigEndian.PutUint64(b[35:], uint64(w.maxTs))
	binary.BigEndian.PutUint32(b[57:], uint32(w.n))
	if w.codec != shardstore.CodecNone {
		w.compress()
	}
	w.dst = finishBatch(w.dst, w.start)
	w.open = false
}

// compress replaces the open batch's records with their compression, and
// sets the codec in its attributes, when that is smaller.
func (w *batchWriter) compress() {
	body := w.dst[w.start+batchHeaderSize:]
	scratch := compressBuf.Get().(*bytes.Buffer)
	defer compressBuf.Put(scratch)
	c := compressRecords(scratch, w.codec, body)
	if c == nil || len(c) >= len(body) {
		return
	}
	w.dst = append(w.dst[:w.start+batchHeaderSize], c...)
	binary.BigEndian.PutUint16(w.dst[w.start+21:], uint16(w.codec))
}

// len is the bytes written so far, the open batch included.
func (w *batchWriter) len() int { return len(w.dst) }

// bytes finishes the open batch and returns the buffer.
func (w *batchWriter) bytes() []byte {
	w.close()
	return w.dst
}

// appendGapBatch appends an empty batch (no records) whose offset range covers
// [from, hwm): a consumer at from moves to hwm even though nothing in between is
// readable any more (docs/ARCHITECTURE.md rule 3). A gap wider than an int32 is covered up
// to from+MaxInt32; the consumer's next fetch covers the rest.
func appendGapBatch(dst []byte, epoch int32, from, hwm int64) []byte {
	delta := min(hwm-1-from, math.MaxInt32)
	start := len(dst)
	dst = appendBatchHeader(dst, from, epoch, int32(delta), -1, -1, 0)
	return finishBatch(dst, start)
}

func appendBatchHeader(dst []byte, base int64, epoch, lastOffsetDelta int32, firstTs, maxTs int64, numRecords int32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(base))
	dst = binary.BigEndian.AppendUint32(dst, 0) // length, set by finishBatch
	dst = binary.BigEndian.AppendUint32(dst, uint32(epoch))
	dst = append(dst, 2)                        // magic
	dst = binary.BigEndian.AppendUint32(dst, 0) // crc, set by finishBatch
	dst = binary.BigEndian.AppendUint16(dst, 0) // attributes
	dst = binary.BigEndian.AppendUint32(dst, uint32(lastOffsetDelta))
	dst = binary.BigEndian.AppendUint64(dst, uint64(firstTs))
	dst = binary.BigEndian.AppendUint64(dst, uint64(maxTs))
	dst = binary.BigEndian.AppendUint64(dst, math.MaxUint64)      // producer id -1
	dst = binary.BigEndian.AppendUint16(dst, math.MaxUint16)      // producer epoch -1
	dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32)      // base sequence -1
	return binary.BigEndian.AppendUint32(dst, uint32(numRecords)) //
}

// finishBatch fills in the Length and CRC of the batch that starts at start.
func finishBatch(dst []byte, start int) []byte {
	b := dst[start:]
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batchLenEnd))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[batchCRCStart:], castagnoli))
	return dst
}

func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func bytesFieldLen(b []byte) int {
	if b == nil {
		return 1 // varint -1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendBytesField(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// recordBodySize is the size of a record in a batch after its length varint.
func recordBodySize(rec *shardstore.Record, offDelta, tsDelta int64) int {
	size := 1 + varintLen(tsDelta) + varintLen(offDelta) +
		bytesFieldLen(rec.Key) + bytesFieldLen(rec.Value) + varintLen(int64(len(rec.Headers)))
	for i := range rec.Headers {
		h := &rec.Headers[i]
		size += varintLen(int64(len(h.Key))) + len(h.Key) + bytesFieldLen(h.Value)
	}
	return size
}

func appendRecord(dst []byte, rec *shardstore.Record, offDelta, tsDelta int64) []byte {
	size := recordBodySize(rec, offDelta, tsDelta)
	dst = binary.AppendVarint(dst, int64(size))
	dst = append(dst, 0) // attributes
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offDelta)
	dst = appendBytesField(dst, rec.Key)
	dst = appendBytesField(dst, rec.Value)
	dst = binary.AppendVarint(dst, int64(len(rec.Headers)))
	for i := range rec.Headers {
		h := &rec.Headers[i]
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytesField(dst, h.Value)
	}
	return dst
}

// controlBatchSize is the encoded size of a transaction marker's batch.
const controlBatchSize = batchHeaderSize + 1 + 1 + 1 + 1 + 1 + 4 + 1 + 6 + 1
