package broker

// Record batches (RecordBatch v2, "magic 2") on both sides of the data path.
//
// Produce side: decodeBatch checks one client batch field by field and turns it
// into shardstore records plus the producer identity that idempotence needs. It
// never allocates more than the frame it was given (or the decompressed bytes,
// which are bounded by Config.MaxDecompressedBytes) whatever the wire claims.
//
// Fetch side: appendBatch and appendGapBatch encode into one caller-owned
// buffer, computing the Length and CRC32C fields that kmsg's AppendTo leaves to
// the caller.
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
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
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

	// defaultMaxDecompressedBytes applies when Config.MaxDecompressedBytes is 0.
	defaultMaxDecompressedBytes = 64 << 20
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

// decodeBatch validates raw, which must be exactly one v2 record batch, and
// decodes its records. Errors are *batchError values carrying the Kafka code.
func decodeBatch(raw []byte, lim batchLimits) (decodedBatch, error) {
	var out decodedBatch
	if len(raw) < batchHeaderSize {
		return out, corrupt("record batch of %d bytes is shorter than its %d byte header", len(raw), batchHeaderSize)
	}
	length := int64(int32(binary.BigEndian.Uint32(raw[8:])))
	switch total := batchLenEnd + length; {
	case total < batchHeaderSize:
		return out, corrupt("record batch length %d is shorter than the batch header", length)
	case total > int64(len(raw)):
		return out, corrupt("record batch length %d exceeds the %d bytes sent", length, len(raw)-batchLenEnd)
	case total < int64(len(raw)):
		return out, invalidRecord("a partition's records must be exactly one record batch (%d bytes follow the batch)", int64(len(raw))-total)
	}
	if lim.MaxMessageBytes > 0 && len(raw) > int(lim.MaxMessageBytes) {
		return out, &batchError{code: kerr.MessageTooLarge,
			msg: fmt.Sprintf("record batch of %d bytes exceeds max.message.bytes %d", len(raw), lim.MaxMessageBytes)}
	}
	if magic := int8(raw[16]); magic != 2 {
		return out, invalidRecord("record batch magic %d is not supported, only 2", magic)
	}
	if want, got := binary.BigEndian.Uint32(raw[17:]), crc32.Checksum(raw[batchCRCStart:], castagnoli); want != got {
		return out, corrupt("record batch CRC mismatch")
	}
	attrs := int16(binary.BigEndian.Uint16(raw[21:]))
	if attrs&attrControl != 0 {
		return out, invalidRecord("control batches may not be produced by clients")
	}
	codec := attrs & attrCompression
	if codec > codecZstd {
		return out, &batchError{code: kerr.UnsupportedCompressionType,
			msg: fmt.Sprintf("compression codec %d is not supported", codec)}
	}
	lastOffsetDelta := int32(binary.BigEndian.Uint32(raw[23:]))
	firstTimestamp := int64(binary.BigEndian.Uint64(raw[27:]))
	out.Producer = shardstore.Producer{
		ID:            int64(binary.BigEndian.Uint64(raw[43:])),
		Epoch:         int16(binary.BigEndian.Uint16(raw[51:])),
		BaseSequence:  int32(binary.BigEndian.Uint32(raw[53:])),
		Transactional: attrs&attrTransactional != 0,
	}
	out.Transactional = out.Producer.Transactional
	if out.Producer.ID < 0 {
		out.Producer = shardstore.NoProducer
	}
	numRecords := int32(binary.BigEndian.Uint32(raw[57:]))
	if numRecords <= 0 {
		return out, invalidRecord("record batch has %d records", numRecords)
	}
	if lastOffsetDelta != numRecords-1 {
		return out, invalidRecord("record batch last offset delta %d does not match its %d records", lastOffsetDelta, numRecords)
	}

	body := raw[batchHeaderSize:]
	if codec != codecNone {
		max := lim.MaxDecompressedBytes
		if max <= 0 {
			max = defaultMaxDecompressedBytes
		}
		var err error
		if body, err = decompressBounded(body, codec, int(max)); err != nil {
			if errors.Is(err, errDecompressTooLarge) {
				return out, &batchError{code: kerr.MessageTooLarge,
					msg: fmt.Sprintf("record batch decompresses to more than %d bytes", max)}
			}
			return out, corrupt("record batch does not decompress: %v", err)
		}
	}
	// Every record takes at least minRecordSize bytes: a count the bytes cannot
	// hold is refused before anything is allocated for it.
	if int64(numRecords) > int64(len(body)/minRecordSize) {
		return out, corrupt("record batch claims %d records in %d bytes", numRecords, len(body))
	}
	recs := make([]shardstore.Record, numRecords)
	var keyless []int
	r := recordReader{b: body}
	for i := range recs {
		if err := r.record(&recs[i], firstTimestamp, int32(i)); err != nil {
			return out, corrupt("record %d: %v", i, err)
		}
		if recs[i].Key == nil && lim.Policy == shardstore.PolicyCompact {
			keyless = append(keyless, i)
		}
	}
	if len(r.b) != 0 {
		return out, corrupt("record batch has %d bytes after its last record", len(r.b))
	}
	if len(keyless) > 0 {
		return out, &batchError{code: kerr.InvalidRecord, msg: keyRequiredMessage, records: keyless}
	}
	out.Records = recs
	return out, nil
}

var errShort = errors.New("truncated")

// recordReader walks the records of a batch. Every length is checked against the
// bytes left before it is used.
type recordReader struct {
	b []byte
}

func (r *recordReader) varint() (int64, error) {
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

func (r *recordReader) record(rec *shardstore.Record, firstTimestamp int64, wantDelta int32) error {
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
	nh, err := r.varint()
	if err != nil {
		return err
	}
	// A header takes at least two bytes.
	if nh < 0 || nh > int64(len(r.b)/2) {
		return fmt.Errorf("header count %d with %d bytes left", nh, len(r.b))
	}
	if nh > 0 {
		rec.Headers = make([]shardstore.Header, nh)
		for i := range rec.Headers {
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
			rec.Headers[i] = shardstore.Header{Key: string(k), Value: v}
		}
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the record's fields", len(r.b))
	}
	r.b = rest
	return nil
}

// errDecompressTooLarge: the records decompress past the configured bound.
var errDecompressTooLarge = errors.New("decompressed size over the limit")

var (
	gzipReaders sync.Pool // *gzip.Reader
	lz4Readers  = sync.Pool{New: func() any { return lz4.NewReader(nil) }}
	zstdDecs    sync.Map // max bytes (int) -> *zstd.Decoder
	xerialMagic = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}
)

// decompressBounded decompresses src, failing with errDecompressTooLarge as soon
// as the output would exceed max bytes. It does the job of
// kgo.DefaultDecompressor, whose bound is fixed at MaxInt32 (a decompression
// bomb would be an OOM, not an error): streams are read through a limit, and
// block formats have their declared sizes checked before anything is allocated.
func decompressBounded(src []byte, codec int16, max int) ([]byte, error) {
	switch codec {
	case codecGzip:
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(src))
		} else {
			err = zr.Reset(bytes.NewReader(src))
		}
		if err != nil {
			return nil, err
		}
		defer gzipReaders.Put(zr)
		return readLimited(zr, len(src), max)
	case codecLz4:
		zr := lz4Readers.Get().(*lz4.Reader)
		defer lz4Readers.Put(zr)
		zr.Reset(bytes.NewReader(src))
		return readLimited(zr, len(src), max)
	case codecSnappy:
		if len(src) > 16 && bytes.HasPrefix(src, xerialMagic) {
			return xerialDecode(src[16:], max)
		}
		return snappyBlock(nil, src, max)
	case codecZstd:
		d, err := zstdDecoder(max)
		if err != nil {
			return nil, err
		}
		out, err := d.DecodeAll(src, nil)
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) ||
				errors.Is(err, zstd.ErrFrameSizeExceeded) {
				return nil, errDecompressTooLarge
			}
			return nil, err
		}
		if len(out) > max {
			return nil, errDecompressTooLarge
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// readLimited reads r to the end, refusing more than max bytes. The buffer
// starts from a guess bounded by max and grows only as data actually arrives.
func readLimited(r io.Reader, srcLen, max int) ([]byte, error) {
	guess := min(srcLen*4+512, max+1)
	buf := bytes.NewBuffer(make([]byte, 0, guess))
	n, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if n > int64(max) {
		return nil, errDecompressTooLarge
	}
	return buf.Bytes(), nil
}

// snappyBlock appends one snappy block to dst, checking its declared size first.
func snappyBlock(dst, src []byte, max int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n > max-len(dst) {
		return nil, errDecompressTooLarge
	}
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	if _, err := s2.Decode(dst[len(dst):len(dst)+n], src); err != nil {
		return nil, err
	}
	return dst[:len(dst)+n], nil
}

// xerialDecode decodes the xerial framing Java clients use for snappy: after a
// 16 byte header, chunks of a 4 byte big-endian length and a snappy block.
func xerialDecode(src []byte, max int) ([]byte, error) {
	var total int
	for rem := src; len(rem) > 0; {
		if len(rem) < 4 {
			return nil, errors.New("truncated xerial chunk")
		}
		size := binary.BigEndian.Uint32(rem)
		rem = rem[4:]
		if uint64(size) > uint64(len(rem)) {
			return nil, errors.New("xerial chunk longer than its data")
		}
		n, err := s2.DecodedLen(rem[:size])
		if err != nil {
			return nil, err
		}
		if total += n; total > max {
			return nil, errDecompressTooLarge
		}
		rem = rem[size:]
	}
	dst := make([]byte, 0, total)
	for len(src) > 0 {
		size := binary.BigEndian.Uint32(src)
		var err error
		if dst, err = snappyBlock(dst, src[4:4+size], max); err != nil {
			return nil, err
		}
		src = src[4+size:]
	}
	return dst, nil
}

// zstdDecoder returns the shared decoder bounded at max bytes. DecodeAll is safe
// for concurrent use; the decoder refuses frames that declare, or grow to, more
// than max bytes before allocating for them.
func zstdDecoder(max int) (*zstd.Decoder, error) {
	if d, ok := zstdDecs.Load(max); ok {
		return d.(*zstd.Decoder), nil
	}
	window := max
	if window < zstd.MinWindowSize {
		window = zstd.MinWindowSize
	}
	if window > zstd.MaxWindowSize {
		window = zstd.MaxWindowSize
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderConcurrency(2),
		zstd.WithDecoderMaxMemory(uint64(max)),
		zstd.WithDecoderMaxWindow(uint64(window)),
	)
	if err != nil {
		return nil, err
	}
	if prev, loaded := zstdDecs.LoadOrStore(max, d); loaded {
		d.Close()
		return prev.(*zstd.Decoder), nil
	}
	return d, nil
}

// appendBatch appends recs, which must be in offset order, to dst as record
// batches v2: no compression, no producer (-1s), attributes 0, partition
// leader epoch epoch. A batch's base offset is its first record's offset and
// offset deltas are relative to it, so compacted gaps between records are
// fine; a new batch starts only when a delta would not fit in an int32. It
// returns the grown buffer.
func appendBatch(dst []byte, epoch int32, recs []shardstore.Record) []byte {
	for len(recs) > 0 {
		n := 1
		base := recs[0].Offset
		for n < len(recs) && recs[n].Offset-base <= math.MaxInt32 {
			n++
		}
		dst = appendOneBatch(dst, epoch, recs[:n])
		recs = recs[n:]
	}
	return dst
}

func appendOneBatch(dst []byte, epoch int32, recs []shardstore.Record) []byte {
	base := recs[0].Offset
	minTs, maxTs := recs[0].Timestamp, recs[0].Timestamp
	for i := range recs {
		minTs = min(minTs, recs[i].Timestamp)
		maxTs = max(maxTs, recs[i].Timestamp)
	}
	start := len(dst)
	dst = appendBatchHeader(dst, base, epoch, int32(recs[len(recs)-1].Offset-base), minTs, maxTs, int32(len(recs)))
	for i := range recs {
		dst = appendRecord(dst, &recs[i], recs[i].Offset-base, recs[i].Timestamp-minTs)
	}
	return finishBatch(dst, start)
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

// fitBatches returns how many of recs, from the first, appendBatch encodes in
// at most limit bytes; 0 when not even the first record fits. Timestamp
// deltas are taken from the smallest timestamp of all of recs: a prefix's own
// deltas are never larger, so the sizes are bounds for every prefix and one
// pass answers.
func fitBatches(recs []shardstore.Record, limit int) int {
	if len(recs) == 0 {
		return 0
	}
	minTs := recs[0].Timestamp
	for i := range recs {
		minTs = min(minTs, recs[i].Timestamp)
	}
	size, base := 0, recs[0].Offset
	for i := range recs {
		if i == 0 || recs[i].Offset-base > math.MaxInt32 { // appendBatch starts a batch
			base = recs[i].Offset
			size += batchHeaderSize
		}
		body := recordBodySize(&recs[i], recs[i].Offset-base, recs[i].Timestamp-minTs)
		size += varintLen(int64(body)) + body
		if size > limit {
			return i
		}
	}
	return len(recs)
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

// encodedRecordSize estimates a record's size in a batch, for pre-sizing buffers.
func encodedRecordSize(rec *shardstore.Record) int {
	n := 16 + len(rec.Key) + len(rec.Value)
	for i := range rec.Headers {
		n += 4 + len(rec.Headers[i].Key) + len(rec.Headers[i].Value)
	}
	return n
}
