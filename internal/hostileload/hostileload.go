// Package hostileload is the hostile load of the integration test
// TestHostileLoad and the benchmark integration/bench/hostile: many
// connections at once sending what costs a Kafka broker the most memory per
// byte, and a sampler of a process's resident memory.
//
// Attacks, each on its own connections, in a loop until the context ends:
//
//   - bombs: Produce requests whose every partition carries a record batch
//     that decompresses to as much as the broker accepts, or a quarter more,
//     with gzip, snappy, lz4 and zstd; all records share one key. The
//     connection waits for each response.
//   - arrays: 16 MiB request frames made of array counts: a Metadata v1
//     request of empty topic names (the costliest well-formed decode there
//     is), the same with a count the frame cannot hold, and a Fetch request
//     whose nested partition count claims the whole frame.
//   - slowloris: a size prefix announcing the largest request the broker
//     takes, then one byte now and then.
//
// Nothing here asserts; callers look at the broker.
package hostileload

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config is the load to run.
type Config struct {
	// Addr is the broker's Kafka host:port.
	Addr string
	// Topic is where bombs are produced; it must exist with Partitions
	// partitions (each bomb request carries one batch per partition).
	Topic      string
	Partitions int
	// Bombs, Arrays and Slowloris are how many connections of each attack
	// run at once; all zero means 20, 15 and 15: 50 connections. Bomb
	// connections take the four codecs in turn.
	Bombs, Arrays, Slowloris int
	// MaxDecompressedBytes and MaxRequestBytes are the broker's limits, which
	// size the bombs and the slowloris frames.
	MaxDecompressedBytes int
	MaxRequestBytes      int
	// Logf, if set, receives a line for unexpected failures.
	Logf func(format string, args ...any)
}

// Stats counts what the attackers did.
type Stats struct {
	BombRequests   atomic.Int64 // produce requests sent
	BombResponses  atomic.Int64 // produce responses read
	BatchesRefused atomic.Int64 // batches answered with an error
	BatchesWritten atomic.Int64 // batches the broker accepted
	ArrayFrames    atomic.Int64 // 16 MiB frames sent in full
	Slowloris      atomic.Int64 // slowloris connections opened
	Dials          atomic.Int64 // connections opened in all
}

func (s *Stats) String() string {
	return fmt.Sprintf("%d bomb requests (%d answered: %d batches refused, %d written), %d array frames, %d slowloris connections, %d connections",
		s.BombRequests.Load(), s.BombResponses.Load(), s.BatchesRefused.Load(), s.BatchesWritten.Load(),
		s.ArrayFrames.Load(), s.Slowloris.Load(), s.Dials.Load())
}

// ArrayFrameBytes is the size of the array-count frames.
const ArrayFrameBytes = 16 << 20

// Load is a prepared load: its requests are built (which takes a few
// seconds: the bombs are compressed from their full size).
type Load struct {
	cfg    Config
	bombs  [][]byte
	arrays [][]byte
}

// Prepare builds the load's requests.
func Prepare(cfg Config) (*Load, error) {
	if cfg.Bombs == 0 && cfg.Arrays == 0 && cfg.Slowloris == 0 {
		cfg.Bombs, cfg.Arrays, cfg.Slowloris = 20, 15, 15
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	bombs, err := bombRequests(cfg)
	if err != nil {
		return nil, err
	}
	return &Load{cfg: cfg, bombs: bombs, arrays: arrayFrames()}, nil
}

// Run runs the load until ctx ends and returns what it did.
func (l *Load) Run(ctx context.Context) *Stats {
	cfg, bombs, arrays := l.cfg, l.bombs, l.arrays
	st := &Stats{}
	var wg sync.WaitGroup
	for i := 0; i < cfg.Bombs+cfg.Arrays+cfg.Slowloris; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch {
			case i < cfg.Bombs:
				bombLoop(ctx, cfg, st, bombs[i%len(bombs)])
			case i < cfg.Bombs+cfg.Arrays:
				arrayLoop(ctx, cfg, st, arrays[i%len(arrays)])
			default:
				slowlorisLoop(ctx, cfg, st)
			}
		}()
	}
	wg.Wait()
	return st
}

func dial(ctx context.Context, cfg Config, st *Stats) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err == nil {
		st.Dials.Add(1)
		context.AfterFunc(ctx, func() { nc.Close() })
	}
	return nc, err
}

// pause waits a little before a new attempt, so a refused dial does not spin.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Millisecond):
	}
}

func bombLoop(ctx context.Context, cfg Config, st *Stats, frame []byte) {
	for ctx.Err() == nil {
		nc, err := dial(ctx, cfg, st)
		if err != nil {
			pause(ctx)
			continue
		}
		for ctx.Err() == nil {
			_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
			if _, err := nc.Write(frame); err != nil {
				break
			}
			st.BombRequests.Add(1)
			resp, err := readProduceResponse(nc)
			if err != nil {
				break
			}
			st.BombResponses.Add(1)
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						st.BatchesRefused.Add(1)
					} else {
						st.BatchesWritten.Add(1)
					}
				}
			}
		}
		nc.Close()
		pause(ctx)
	}
}

func readProduceResponse(r io.Reader) (*kmsg.ProduceResponse, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(produceVersion)
	if len(buf) < 5 {
		return nil, errors.New("short produce response")
	}
	if err := resp.ReadFrom(buf[5:]); err != nil { // correlation id, header tags
		return nil, err
	}
	return resp, nil
}

func arrayLoop(ctx context.Context, cfg Config, st *Stats, frame []byte) {
	for ctx.Err() == nil {
		nc, err := dial(ctx, cfg, st)
		if err != nil {
			pause(ctx)
			continue
		}
		_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
		if _, err := nc.Write(frame); err == nil {
			st.ArrayFrames.Add(1)
			_, _ = io.Copy(io.Discard, nc) // until the broker closes it
		}
		nc.Close()
		pause(ctx)
	}
}

func slowlorisLoop(ctx context.Context, cfg Config, st *Stats) {
	// A produce request header, then a trickle of its body.
	start := binary.BigEndian.AppendUint32(nil, uint32(cfg.MaxRequestBytes))
	start = append(start, 0, 0, 0, 9, 0, 0, 0, 1)
	for ctx.Err() == nil {
		nc, err := dial(ctx, cfg, st)
		if err != nil {
			pause(ctx)
			continue
		}
		st.Slowloris.Add(1)
		_ = nc.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err = nc.Write(start)
		tick := time.NewTicker(200 * time.Millisecond)
		for err == nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
				_, err = nc.Write([]byte{0})
			}
		}
		tick.Stop()
		nc.Close()
		pause(ctx)
	}
}

const produceVersion = 9

// bombRequests builds one framed Produce request per codec. Each carries one
// batch per partition: the first decompresses to just under
// MaxDecompressedBytes (accepted if the broker has the memory), the others to
// a quarter more (refused once the limit is passed).
func bombRequests(cfg Config) ([][]byte, error) {
	value := bytes.Repeat([]byte{'a'}, 1000)
	atLimit := records(cfg.MaxDecompressedBytes-64<<10, value)
	over := records(cfg.MaxDecompressedBytes+cfg.MaxDecompressedBytes/4, value)
	codecs := []kgo.CompressionCodec{kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	out := make([][]byte, len(codecs))
	errs := make([]error, len(codecs))
	var wg sync.WaitGroup
	for i, codec := range codecs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = bombRequest(cfg, codec, atLimit, over)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// bombRequest builds the framed Produce request of one codec.
func bombRequest(cfg Config, codec kgo.CompressionCodec, atLimit, over rawRecords) ([]byte, error) {
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		return nil, err
	}
	at, err := sealBatch(c, atLimit)
	if err != nil {
		return nil, err
	}
	ov, err := sealBatch(c, over)
	if err != nil {
		return nil, err
	}
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(produceVersion)
	req.Acks = -1
	req.TimeoutMillis = 30000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = cfg.Topic
	for p := 0; p < cfg.Partitions; p++ {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = int32(p)
		rp.Records = ov
		if p == 0 {
			rp.Records = at
		}
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("hostile")).AppendRequest(nil, req, 1), nil
}

// rawRecords are the encoded records of a batch and how many there are.
type rawRecords struct {
	b []byte
	n int
}

// records encodes records of value under one key until they take size bytes.
func records(size int, value []byte) rawRecords {
	var out rawRecords
	for len(out.b) < size {
		r := kmsg.Record{OffsetDelta: int32(out.n), Key: []byte("bomb"), Value: value}
		body := r.AppendTo(nil)[1:] // without its (zero) length
		r.Length = int32(len(body))
		out.b = r.AppendTo(out.b)
		out.n++
	}
	return out
}

// sealBatch compresses recs into a v2 record batch with its length and CRC.
func sealBatch(c kgo.Compressor, recs rawRecords) ([]byte, error) {
	var buf bytes.Buffer
	compressed, codec := c.Compress(&buf, recs.b)
	if compressed == nil {
		return nil, errors.New("compression failed")
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           int16(codec),
		LastOffsetDelta:      int32(recs.n - 1),
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(recs.n),
		Records:              append([]byte(nil), compressed...),
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out, nil
}

// arrayFrames builds the 16 MiB frames of array counts, with size prefixes.
func arrayFrames() [][]byte {
	header := func(key, version int16) []byte {
		b := binary.BigEndian.AppendUint32(nil, ArrayFrameBytes)
		b = binary.BigEndian.AppendUint16(b, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		b = binary.BigEndian.AppendUint32(b, 1)
		return binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	}
	full := func(b []byte) []byte { // zero-fill to the announced size
		return append(b, make([]byte, 4+ArrayFrameBytes-len(b))...)
	}
	// Metadata v1: as many empty topic names as the frame holds.
	emptyNames := header(kmsg.Metadata.Int16(), 1)
	emptyNames = binary.BigEndian.AppendUint32(emptyNames, uint32((4+ArrayFrameBytes-len(emptyNames)-4)/2))
	// Metadata v1: a count the frame cannot hold.
	hugeCount := binary.BigEndian.AppendUint32(header(kmsg.Metadata.Int16(), 1), 0x7fffffff)
	// Fetch v4: one topic whose partition count claims the rest of the frame.
	nested := header(kmsg.Fetch.Int16(), 4)
	nested = binary.BigEndian.AppendUint32(nested, 0xffffffff) // replica id -1
	nested = binary.BigEndian.AppendUint32(nested, 0)          // max wait
	nested = binary.BigEndian.AppendUint32(nested, 0)          // min bytes
	nested = binary.BigEndian.AppendUint32(nested, 1<<20)      // max bytes
	nested = append(nested, 0)                                 // isolation level
	nested = binary.BigEndian.AppendUint32(nested, 1)          // one topic
	nested = binary.BigEndian.AppendUint16(nested, 0)          // empty name
	nested = binary.BigEndian.AppendUint32(nested, uint32(ArrayFrameBytes-len(nested)))
	return [][]byte{full(emptyNames), full(hugeCount), full(nested)}
}

// Metric reads one sample of a Prometheus metric, by its full name with
// labels as exposed (for example "shardcache_broker_inflight_bytes"), from a
// broker's HTTP address.
func Metric(httpAddr, name string) (float64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}
