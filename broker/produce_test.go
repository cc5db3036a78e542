package broker

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

// dataCtx is a context bounded by the test's own deadline budget.
func dataCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createDataTopic creates a topic through kadm.
func (tb *testBroker) createDataTopic(t testing.TB, name string, partitions int32, configs map[string]string) {
	t.Helper()
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = &v
	}
	resp, err := tb.admin(t).CreateTopics(dataCtx(t), partitions, 1, cfg, name)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if r := resp[name]; r.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", name, r.Err, r.ErrMessage)
	}
}

// shardState reads a partition's shard state straight from the store.
func (tb *testBroker) shardState(t testing.TB, topic string, partition int32) shardstore.State {
	t.Helper()
	ti, ok := tb.Node.Topic(topic)
	if !ok {
		t.Fatalf("no topic %s", topic)
	}
	st, err := tb.Store.State(ti.Partitions[partition].Shard)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rawRequest sends one kmsg request through a kgo client.
func rawRequest[R kmsg.Response](t testing.TB, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	resp, err := cl.Request(dataCtx(t), req)
	if err != nil {
		t.Fatalf("%s request: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp.(R)
}

// produceBatch is a v8+ produce request of one raw batch to one partition.
func produceBatch(topic string, partition int32, raw []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 9
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func producePartitionResp(t testing.TB, resp *kmsg.ProduceResponse) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response shape: %+v", resp)
	}
	return resp.Topics[0].Partitions[0]
}

// fetchSpy watches the Fetch requests a kgo client writes, through a dialer, so
// a test can see the client's fetch position (the offset it asks for next).
type fetchSpy struct {
	mu      sync.Mutex
	offsets map[string]map[int32]int64 // topic -> partition -> highest fetch offset
}

func newFetchSpy() *fetchSpy { return &fetchSpy{offsets: map[string]map[int32]int64{}} }

func (s *fetchSpy) dial(ctx context.Context, network, host string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	return &spyConn{Conn: c, spy: s}, nil
}

// offset returns the highest offset the client fetched topic/partition at (-1: none).
func (s *fetchSpy) offset(topic string, partition int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.offsets[topic][partition]; ok {
		return o
	}
	return -1
}

func (s *fetchSpy) observe(frame []byte) {
	if len(frame) < 10 || int16(binary.BigEndian.Uint16(frame)) != kmsg.Fetch.Int16() {
		return
	}
	version := int16(binary.BigEndian.Uint16(frame[2:]))
	rest := frame[8:]
	if n := int16(binary.BigEndian.Uint16(rest)); n > 0 {
		rest = rest[2+int(n):]
	} else {
		rest = rest[2:]
	}
	if version >= 12 { // flexible header v2: tagged fields after the client id
		r := &kbin.Reader{Src: rest}
		kmsg.SkipTags(r)
		rest = r.Src
	}
	req := kmsg.FetchRequest{Version: version}
	if err := req.ReadFrom(rest); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range req.Topics {
		if s.offsets[t.Topic] == nil {
			s.offsets[t.Topic] = map[int32]int64{}
		}
		for _, p := range t.Partitions {
			if cur, ok := s.offsets[t.Topic][p.Partition]; !ok || p.FetchOffset > cur {
				s.offsets[t.Topic][p.Partition] = p.FetchOffset
			}
		}
	}
}

type spyConn struct {
	net.Conn
	spy *fetchSpy
	mu  sync.Mutex
	buf []byte
}

func (c *spyConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 4 {
		size := int(binary.BigEndian.Uint32(c.buf))
		if len(c.buf) < 4+size {
			break
		}
		c.spy.observe(c.buf[4 : 4+size])
		c.buf = c.buf[4+size:]
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// readTopic consumes every partition of topic from the start with a fresh kgo
// client until the client's fetch position reaches each partition's high
// watermark (as the store reports it now), and returns the records polled. It
// fails the test if the position does not get there: that is a consumer stuck
// before the high watermark (docs/ARCHITECTURE.md rule 3).
func (tb *testBroker) readTopic(t testing.TB, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ti, ok := tb.Node.Topic(topic)
	if !ok {
		t.Fatalf("no topic %s", topic)
	}
	hwms := map[int32]int64{}
	for p := range ti.Partitions {
		hwms[int32(p)] = tb.shardState(t, topic, int32(p)).HighWatermark
	}
	spy := newFetchSpy()
	cl := tb.client(t, append([]kgo.Opt{kgo.Dialer(spy.dial), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
	ctx := dataCtx(t)
	var out []*kgo.Record
	for {
		done := true
		for p, hwm := range hwms {
			if spy.offset(topic, p) < hwm {
				done = false
			}
		}
		if done {
			return out
		}
		// Poll in short rounds: the position is checked between them.
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			var pos []string
			for p, hwm := range hwms {
				pos = append(pos, fmt.Sprintf("p%d at %d of %d", p, spy.offset(topic, p), hwm))
			}
			t.Fatalf("consumer did not reach the high watermark: %v (%d records read)", pos, len(out))
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		out = append(out, fs.Records()...)
	}
}

// batchCodecHook reports the compression codec of every produced batch. kgo
// calls it after the produce promise, so tests wait on the channel.
type batchCodecHook struct {
	codecs chan uint8
}

func (h *batchCodecHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	select {
	case h.codecs <- m.CompressionType:
	default:
	}
}

// waitCodec waits until a batch with codec was written.
func (h *batchCodecHook) waitCodec(t testing.TB, codec uint8) {
	t.Helper()
	ctx := dataCtx(t)
	for {
		select {
		case c := <-h.codecs:
			if c == codec {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no batch was sent with codec %d", codec)
		}
	}
}

func TestProduceCodecsRoundTrip(t *testing.T) {
	tb := newTestBroker(t)
	for i, c := range compressionCodecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "codec-" + c.name
			tb.createDataTopic(t, topic, 1, nil)
			hook := &batchCodecHook{codecs: make(chan uint8, 100)}
			cl := tb.client(t, kgo.ProducerBatchCompression(c.codec), kgo.WithHooks(hook), kgo.DefaultProduceTopic(topic))
			var recs []*kgo.Record
			for j := range 50 {
				recs = append(recs, &kgo.Record{
					Key:       fmt.Appendf(nil, "key-%03d", j),
					Value:     fmt.Appendf(nil, "value %d of a record that compresses well well well well well", j),
					Headers:   []kgo.RecordHeader{{Key: "n", Value: fmt.Appendf(nil, "%d", j)}},
					Timestamp: time.UnixMilli(int64(1_700_000_000_000 + j)),
				})
			}
			if err := cl.ProduceSync(dataCtx(t), recs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			hook.waitCodec(t, uint8(i))
			got := tb.readTopic(t, topic)
			if len(got) != len(recs) {
				t.Fatalf("read %d records, want %d", len(got), len(recs))
			}
			for j, r := range got {
				w := recs[j]
				if r.Offset != int64(j) || string(r.Key) != string(w.Key) || string(r.Value) != string(w.Value) ||
					!r.Timestamp.Equal(w.Timestamp) || len(r.Headers) != 1 || string(r.Headers[0].Value) != string(w.Headers[0].Value) {
					t.Fatalf("record %d: got %+v want %+v", j, r, w)
				}
			}
		})
	}
	if got := counterValue(t, tb.Broker.metrics.produceRecords); got != float64(50*len(compressionCodecs)) {
		t.Fatalf("produce records metric %v", got)
	}
	if counterValue(t, tb.Broker.metrics.fetchRecords) < float64(50*len(compressionCodecs)) {
		t.Fatal("fetch records metric not counted")
	}
}

func TestProduceKeylessOnCompact(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "compacted", 1, nil)
	cl := tb.client(t, kgo.DefaultProduceTopic("compacted"))

	err := cl.ProduceSync(dataCtx(t), &kgo.Record{Value: []byte("no key")}).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless produce through kgo: %v, want INVALID_RECORD", err)
	}

	// v8+: the message says why and RecordErrors names the keyless records.
	recs := threeRecords()
	recs[1].Key = nil
	raw := wireBatch{firstTs: 1, records: recs}.build(t)
	p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("compacted", 0, raw)))
	if p.ErrorCode != kerr.InvalidRecord.Code || p.ErrorMessage == nil || *p.ErrorMessage != keyRequiredMessage {
		t.Fatalf("partition answer %+v", p)
	}
	if len(p.ErrorRecords) != 1 || p.ErrorRecords[0].RelativeOffset != 1 {
		t.Fatalf("record errors %+v", p.ErrorRecords)
	}
	if st := tb.shardState(t, "compacted", 0); st.HighWatermark != 0 {
		t.Fatalf("nothing of the batch may be written: hwm %d", st.HighWatermark)
	}

	// The same records are fine on a delete-policy topic.
	tb.createDataTopic(t, "appendonly", 1, map[string]string{"cleanup.policy": "delete"})
	p = producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("appendonly", 0, raw)))
	if p.ErrorCode != 0 || p.BaseOffset != 0 || p.LogAppendTime != -1 || p.LogStartOffset != 0 {
		t.Fatalf("delete topic answer %+v", p)
	}
}

func TestProduceIdempotentDuplicate(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "idem", 1, map[string]string{"cleanup.policy": "delete"})
	cl := tb.client(t)
	pid := rawRequest[*kmsg.InitProducerIDResponse](t, cl, kmsg.NewPtrInitProducerIDRequest())
	if pid.ErrorCode != 0 {
		t.Fatalf("init producer id: %v", kerr.ErrorForCode(pid.ErrorCode))
	}
	// Something before, so the batch's offset is not trivially 0.
	first := wireBatch{firstTs: 1, records: threeRecords()}.build(t)
	if p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("idem", 0, first))); p.ErrorCode != 0 {
		t.Fatalf("first produce: %v", kerr.ErrorForCode(p.ErrorCode))
	}
	raw := wireBatch{firstTs: 1, records: threeRecords(),
		producer: &shardstore.Producer{ID: pid.ProducerID, Epoch: pid.ProducerEpoch, BaseSequence: 0}}.build(t)
	var offsets []int64
	for range 2 {
		p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("idem", 0, raw)))
		if p.ErrorCode != 0 {
			t.Fatalf("produce: %v", kerr.ErrorForCode(p.ErrorCode))
		}
		offsets = append(offsets, p.BaseOffset)
	}
	if offsets[0] != 3 || offsets[1] != 3 {
		t.Fatalf("base offsets %v, want the original 3 twice", offsets)
	}
	if st := tb.shardState(t, "idem", 0); st.HighWatermark != 6 {
		t.Fatalf("hwm %d: the retry was written again", st.HighWatermark)
	}
	if n := len(tb.readTopic(t, "idem")); n != 6 {
		t.Fatalf("read %d records, want 6", n)
	}
}

func TestProduceRejectedBatches(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.MaxDecompressedBytes = 1 << 20 })
	tb.createDataTopic(t, "rej", 1, map[string]string{"max.message.bytes": "2000"})
	cl := tb.client(t)

	badCRC := wireBatch{firstTs: 1, records: threeRecords()}.build(t)
	badCRC[len(badCRC)-2] ^= 0x40
	bomb := wireBatch{codec: kgo.ZstdCompression(), records: []kmsg.Record{
		testKmsgRecord(0, []byte("k"), make([]byte, 64<<20), 0)}}.build(t)
	big := wireBatch{records: []kmsg.Record{testKmsgRecord(0, []byte("k"), make([]byte, 3000), 0)}}.build(t)
	tests := []struct {
		name string
		raw  []byte
		code *kerr.Error
	}{
		{"bad crc", badCRC, kerr.CorruptMessage},
		{"decompression bomb", bomb, kerr.MessageTooLarge},
		{"over max.message.bytes", big, kerr.MessageTooLarge},
		{"control batch", wireBatch{records: threeRecords(), attrs: attrControl}.build(t), kerr.InvalidRecord},
		{"transactional batch", wireBatch{records: threeRecords(), attrs: attrTransactional,
			producer: &shardstore.Producer{ID: 1, Epoch: 0, BaseSequence: 0}}.build(t), kerr.InvalidRecord}, // no transactional id
		{"not a batch", []byte("garbage"), kerr.CorruptMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, produceBatch("rej", 0, tt.raw)))
			if p.ErrorCode != tt.code.Code {
				t.Fatalf("code %v, want %v", kerr.ErrorForCode(p.ErrorCode), tt.code)
			}
			if p.ErrorMessage == nil {
				t.Fatal("no error message")
			}
		})
	}
	if st := tb.shardState(t, "rej", 0); st.HighWatermark != 0 {
		t.Fatalf("hwm %d after rejected batches", st.HighWatermark)
	}
	// kgo sees MESSAGE_TOO_LARGE for a record over max.message.bytes.
	incompressible := make([]byte, 3000)
	rand.Read(incompressible)
	err := tb.client(t, kgo.DefaultProduceTopic("rej"), kgo.ProducerBatchCompression(kgo.NoCompression())).ProduceSync(dataCtx(t),
		&kgo.Record{Key: []byte("k"), Value: incompressible}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("kgo produce over max.message.bytes: %v", err)
	}
	// The broker is alive and the topic takes normal writes.
	err = tb.client(t, kgo.DefaultProduceTopic("rej")).ProduceSync(dataCtx(t),
		&kgo.Record{Key: []byte("k"), Value: []byte("fine")}).FirstErr()
	if err != nil {
		t.Fatalf("produce after rejections: %v", err)
	}
}

// TestProduceTransactionalIDPlainBatch: a request naming a transactional id
// with a batch that is not transactional is written as a plain batch, as
// Kafka does (transactional batches are TestTxnProduceReadCommitted's).
func TestProduceTransactionalIDPlainBatch(t *testing.T) {
	tb := newTestBroker(t)
	cl := tb.client(t)
	req := produceBatch("txn", 0, wireBatch{records: threeRecords()}.build(t))
	id := "my-txn"
	req.TransactionID = &id
	p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl, req))
	if p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("answer %+v", p)
	}
}

func TestProduceUnknownTopicWithoutAutoCreate(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.AutoCreateTopics = false })
	cl := tb.client(t)
	p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl,
		produceBatch("missing", 0, wireBatch{records: threeRecords()}.build(t))))
	if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("code %v", kerr.ErrorForCode(p.ErrorCode))
	}
	if _, ok := tb.Node.Topic("missing"); ok {
		t.Fatal("topic was created")
	}
	p = producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl,
		produceBatch("__consumer_offsets", 0, wireBatch{records: threeRecords()}.build(t))))
	if p.ErrorCode != kerr.InvalidTopicException.Code {
		t.Fatalf("produce to an internal topic: %v", kerr.ErrorForCode(p.ErrorCode))
	}
	tb.createDataTopic(t, "one", 1, nil)
	p = producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl,
		produceBatch("one", 1, wireBatch{records: threeRecords()}.build(t))))
	if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("partition 1 of a 1-partition topic: %v", kerr.ErrorForCode(p.ErrorCode))
	}
}

func TestProduceAutoCreate(t *testing.T) {
	tb := newTestBroker(t, func(c *testBrokerConfig) { c.DefaultPartitions = 3 })
	cl := tb.client(t)
	p := producePartitionResp(t, rawRequest[*kmsg.ProduceResponse](t, cl,
		produceBatch("fresh", 2, wireBatch{records: threeRecords()}.build(t))))
	if p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("answer %+v", p)
	}
	if ti, ok := tb.Node.Topic("fresh"); !ok || len(ti.Partitions) != 3 {
		t.Fatalf("auto-created topic %+v", ti)
	}
}

// writeFrame sends one request on a raw connection.
func writeFrame(t testing.TB, c net.Conn, req kmsg.Request, corr int32) {
	t.Helper()
	buf := kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw")).AppendRequest(nil, req, corr)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
}

// directRequest sends req on its own raw connection and reads the answer,
// bypassing kgo's routing (for requests kgo would refuse or resolve itself).
func directRequest[R kmsg.Response](t testing.TB, addr string, req kmsg.Request) R {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	writeFrame(t, c, req, 7)
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	if req.IsFlexible() {
		body = body[1:] // empty tagged fields of response header v1
	}
	resp := req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	return resp.(R)
}

func TestProduceAcksZeroThenNextRequestAnswered(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "acks0", 1, nil)
	c, err := net.Dial("tcp", tb.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := produceBatch("acks0", 0, wireBatch{firstTs: 5, records: threeRecords()}.build(t))
	req.Version = 7
	req.Acks = 0
	writeFrame(t, c, req, 1)
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "acks0"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -1
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	writeFrame(t, c, lo, 2)

	br := bufio.NewReader(c)
	var hdr [8]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("no answer after an acks=0 produce: %v", err)
	}
	size, corr := binary.BigEndian.Uint32(hdr[:]), int32(binary.BigEndian.Uint32(hdr[4:]))
	if corr != 2 {
		t.Fatalf("first answer has correlation id %d, want 2 (acks=0 gets none)", corr)
	}
	body := make([]byte, size-4)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.ListOffsetsResponse{Version: 1}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	// The acks=0 batch was applied before the next request was served.
	if got := resp.Topics[0].Partitions[0]; got.ErrorCode != 0 || got.Offset != 3 {
		t.Fatalf("latest offset after acks=0 produce: %+v", got)
	}
}

// counterValue reads a counter's current value.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// disconnectHook reports every connection kgo loses or closes.
type disconnectHook struct{ ch chan struct{} }

func (h disconnectHook) OnBrokerDisconnect(kgo.BrokerMetadata, net.Conn) {
	select {
	case h.ch <- struct{}{}:
	default:
	}
}

// TestProduceAcksZeroFailureClosesConnection pins issue 9: an acks=0 produce
// that failed was dropped in silence, so the producer never learned its
// records were refused. Kafka closes the connection instead, which makes the
// client see a disconnect and refresh its metadata.
func TestProduceAcksZeroFailureClosesConnection(t *testing.T) {
	tb := newTestBroker(t)
	tb.createDataTopic(t, "acks0-compacted", 1, nil)
	hook := disconnectHook{ch: make(chan struct{}, 1)}
	cl := tb.client(t, kgo.DefaultProduceTopic("acks0-compacted"), kgo.RequiredAcks(kgo.NoAck()),
		kgo.DisableIdempotentWrite(), kgo.WithHooks(hook))

	// A keyed record is fine and the connection stays.
	if err := cl.ProduceSync(dataCtx(t), &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the keyed acks=0 record applied", func() error {
		if st := tb.shardState(t, "acks0-compacted", 0); st.HighWatermark != 1 {
			return fmt.Errorf("high watermark %d", st.HighWatermark)
		}
		return nil
	})
	select {
	case <-hook.ch:
		t.Fatal("a successful acks=0 produce closed the connection")
	default:
	}

	// A keyless record on a compacted topic fails (INVALID_RECORD): the
	// broker closes the connection. kgo reads nothing back for acks=0, so it
	// notices on a later write; keep producing until it does.
	deadline := time.After(10 * time.Second)
	for {
		_ = cl.ProduceSync(dataCtx(t), &kgo.Record{Value: []byte("no key")}).FirstErr()
		select {
		case <-hook.ch:
			return
		case <-deadline:
			t.Fatal("the connection stayed open after a failed acks=0 produce")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
