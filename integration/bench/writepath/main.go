// Command writepath measures what one shardcache node spends to store a record:
// CPU per record, bytes written to disk per byte of record, and where Pebble
// writes them (WAL, flushes, compactions), for one binary or two side by side.
//
// Each round starts a fresh node per binary (alternating which goes first),
// creates a compacted topic, produces -records keyed records (keys cycle over
// -keys) with acks=all and -codec (snappy by default), then waits for the node
// to go idle (its compactions done, at most -settle) and reads:
//
//   - records/s and p99 latency of the produce (as integration/bench);
//   - CPU seconds of the broker process, from the topic's creation to idle,
//     per million records;
//   - write_bytes of /proc/<pid>/io (what reached the block layer) per byte of
//     record keys and values;
//   - Pebble's own counters from /metrics (shardcache_pebble_*; a binary
//     without them shows "-"): WAL bytes, flush and compaction bytes, per
//     record byte;
//   - the data dir's size at the end, and how much of it is Pebble's WAL files
//     (*.log) and tables (*.sst);
//   - with -restart (the default), restart to serving: the node is stopped
//     with SIGTERM and started again, then it takes another -records/4
//     records and is killed with SIGKILL as the last one is acknowledged
//     (what it applied but did not flush is replayed from the Raft log) and
//     started again; each is timed from the exec to /readyz answering 200
//     and a fetch returning a record of the topic;
//   - with -new-keys-after-restart N as well, the produce rate of N records
//     of keys the topic has never had, right after the SIGTERM restart (a
//     restarted node has no key filters until it has scanned its key index).
//
// With -profile-dir every node runs with --pprof and a CPU profile of
// -profile-seconds is taken from 2 s into each produce (DIR/<label>-r<N>.pprof).
//
// Usage:
//
//	go run ./integration/bench/writepath [flags]
//
// Flags:
//
//	-binary           shardcache binary (default ./bin/shardcache, or a build)
//	-baseline-binary  a second binary run beside it in every round (optional)
//	-rounds           rounds (default 3); medians are printed
//	-records, -keys, -partitions, -key-bytes, -value-bytes, -linger,
//	-max-buffered     the produce workload (as integration/bench)
//	-codec            the producer's compression: none, gzip, snappy (default), lz4, zstd
//	-duration         cap on a produce run (default 300s; a run that hits it fails)
//	-settle           cap on the wait for the node to go idle (default 30s)
//	-profile-dir      write CPU profiles there
//	-profile-seconds  length of each profile (default 10)
//	-broker-args      extra broker flags, space separated, for both binaries
//	-restart          measure restart to serving (default true)
//	-new-keys-after-restart  records of new keys produced after the SIGTERM restart (default 0: none)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	binary, baseline string
	rounds           int
	// workload is the produce run's settings (Seeds and Topic are set per
	// run).
	workload       harness.ProduceConfig
	partitions     int
	settle         time.Duration
	profileDir     string
	profileSeconds int
	brokerArgs     string
	restart        bool
	newKeys        int
	codec          string
}

func main() {
	var cfg config
	w := &cfg.workload
	flag.StringVar(&cfg.binary, "binary", "", "shardcache binary (default ./bin/shardcache or a build)")
	flag.StringVar(&cfg.baseline, "baseline-binary", "", "a second binary to run beside -binary")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds")
	flag.IntVar(&w.Records, "records", 2_000_000, "records to produce")
	flag.IntVar(&w.Keys, "keys", 1_000_000, "distinct keys")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of the benchmark topic")
	flag.IntVar(&w.KeyBytes, "key-bytes", 16, "key size in bytes")
	flag.IntVar(&w.ValueBytes, "value-bytes", 100, "value size in bytes")
	flag.DurationVar(&w.Linger, "linger", 5*time.Millisecond, "producer linger")
	flag.IntVar(&w.MaxBuffered, "max-buffered", 10_000, "producer buffer in records")
	flag.DurationVar(&w.Duration, "duration", 300*time.Second, "cap on the produce phase (a run that hits it fails: every record must be stored)")
	flag.DurationVar(&cfg.settle, "settle", 30*time.Second, "cap on the wait for the node to go idle")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "write CPU profiles there")
	flag.IntVar(&cfg.profileSeconds, "profile-seconds", 10, "length of each CPU profile in seconds")
	flag.StringVar(&cfg.brokerArgs, "broker-args", "", "extra broker flags, space separated")
	flag.BoolVar(&cfg.restart, "restart", true, "measure restart to serving after SIGTERM and after SIGKILL")
	flag.IntVar(&cfg.newKeys, "new-keys-after-restart", 0, "with -restart, records of new keys to produce right after the SIGTERM restart")
	flag.StringVar(&cfg.codec, "codec", "snappy", "the producer's compression: "+harness.CodecNames)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("writepath: ")
	if err := cfg.validate(); err != nil {
		log.Print(err)
		os.Exit(2)
	}
	w.ClientOpts = append(w.ClientOpts, kgo.ProducerBatchCompression(harness.Codecs[cfg.codec]))
	harness.Main(func(ctx context.Context) error { return run(ctx, cfg) })
}

func (c config) validate() error {
	w := c.workload
	w.Seeds, w.Topic = []string{"set per run"}, "set per run"
	if err := w.Validate(); err != nil {
		return err
	}
	if _, ok := harness.Codecs[c.codec]; !ok {
		return fmt.Errorf("unknown -codec %q: %s", c.codec, harness.CodecNames)
	}
	switch {
	case c.rounds <= 0:
		return errors.New("-rounds must be positive")
	case c.partitions <= 0:
		return errors.New("-partitions must be positive")
	case c.settle < 0:
		return errors.New("-settle must not be negative")
	case c.profileSeconds <= 0:
		return errors.New("-profile-seconds must be positive")
	}
	return nil
}

// side is one binary under test.
type side struct {
	label, binary string
	runs          []result
}

// result is one produce run's measurements.
type result struct {
	recordsPerSec float64
	p99           time.Duration
	recordBytes   int64
	records       int64
	cpu           time.Duration // broker CPU from topic creation to idle
	diskWrite     int64         // /proc/pid/io write_bytes over the same span
	pebble        map[string]float64
	dirBytes      int64
	walBytes      int64 // of dirBytes, Pebble's WAL files (*.log)
	tableBytes    int64 // of dirBytes, Pebble's tables (*.sst)
	// restartTerm and restartKill are restart to serving after SIGTERM and
	// after SIGKILL at the end of a load; 0 without -restart.
	restartTerm, restartKill time.Duration
	// newKeysPerSec is the produce rate of -new-keys-after-restart records
	// of new keys after the SIGTERM restart; 0 without.
	newKeysPerSec float64
}

func run(ctx context.Context, cfg config) error {
	sides := []*side{{label: "binary", binary: cfg.binary}}
	if cfg.baseline != "" {
		sides = append(sides, &side{label: "baseline", binary: cfg.baseline})
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	load := harness.LoadAverage()
	for r := range cfg.rounds {
		for i := range sides {
			s := sides[(i+r)%len(sides)] // alternate which binary goes first
			res, err := runOne(ctx, cfg, s, r)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", s.label, r+1, err)
			}
			s.runs = append(s.runs, res)
			log.Printf("%s round %d: %.0f records/s, p99 %v, %.2f s CPU per 1M records, %.2f disk bytes per record byte, data dir %.1f MiB",
				s.label, r+1, res.recordsPerSec, res.p99.Round(time.Millisecond), perMillion(res.cpu.Seconds(), res.records),
				ratio(float64(res.diskWrite), res.recordBytes), float64(res.dirBytes)/(1<<20))
		}
	}
	report(cfg, sides, load)
	return nil
}

func runOne(ctx context.Context, cfg config, s *side, round int) (result, error) {
	args := strings.Fields(cfg.brokerArgs)
	if cfg.profileDir != "" {
		args = append(args, "--pprof")
	}
	b, err := harness.StartBroker(ctx, s.binary, args...)
	if err != nil {
		return result{}, err
	}
	defer b.Stop()

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.KafkaAddr))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	admin := kadm.NewClient(cl)
	topic := fmt.Sprintf("writepath-%d", time.Now().UnixNano())
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := admin.CreateTopic(cctx, int32(cfg.partitions), 1, nil, topic)
	cancel()
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return result{}, fmt.Errorf("create topic: %w", err)
	}

	pid := b.PID()
	cpu0, err := harness.CPUTime(pid)
	if err != nil {
		return result{}, err
	}
	io0, err := writeBytes(pid)
	if err != nil {
		return result{}, err
	}
	pm0, err := pebbleMetrics(ctx, b.HTTPAddr)
	if err != nil {
		return result{}, err
	}

	profDone := make(chan error, 1)
	if cfg.profileDir != "" {
		path := filepath.Join(cfg.profileDir, fmt.Sprintf("%s-r%d.pprof", s.label, round+1))
		go func() {
			select {
			case <-time.After(2 * time.Second):
			case <-ctx.Done():
				profDone <- ctx.Err()
				return
			}
			node := &harness.Node{ID: 1, HTTPAddr: b.HTTPAddr}
			profDone <- node.CPUProfile(ctx, time.Duration(cfg.profileSeconds)*time.Second, path)
		}()
	} else {
		profDone <- nil
	}

	w := cfg.workload
	w.Seeds, w.Topic = []string{b.KafkaAddr}, topic
	prod, err := harness.Produce(ctx, w)
	if err != nil {
		return result{}, fmt.Errorf("produce: %w", err)
	}
	if prod.Failed > 0 {
		return result{}, fmt.Errorf("produce: %d records failed (first: %v)", prod.Failed, prod.FirstErr)
	}
	if err := <-profDone; err != nil {
		return result{}, err
	}
	if err := waitIdle(ctx, pid, cfg.settle); err != nil {
		return result{}, err
	}
	cpu1, err := harness.CPUTime(pid)
	if err != nil {
		return result{}, err
	}
	io1, err := writeBytes(pid)
	if err != nil {
		return result{}, err
	}
	pm1, err := pebbleMetrics(ctx, b.HTTPAddr)
	if err != nil {
		return result{}, err
	}
	dir, err := dirBytes(b.DataDir())
	if err != nil {
		return result{}, err
	}
	res := result{
		recordsPerSec: prod.RecordsPerSec(), p99: prod.P99, records: prod.Records, recordBytes: prod.Bytes,
		cpu: cpu1 - cpu0, diskWrite: io1 - io0,
		dirBytes: dir[""], walBytes: dir[".log"], tableBytes: dir[".sst"],
	}
	if pm1 != nil {
		res.pebble = map[string]float64{}
		for k, v := range pm1 {
			res.pebble[k] = v - pm0[k]
		}
	}
	if cfg.restart {
		if res.restartTerm, err = restartToServing(ctx, b, topic, false); err != nil {
			return result{}, fmt.Errorf("restart after SIGTERM: %w", err)
		}
		if cfg.newKeys > 0 {
			nw := w
			nw.Seeds, nw.Records, nw.Keys, nw.FirstKey = []string{b.KafkaAddr}, cfg.newKeys, cfg.newKeys, w.Keys
			prod, err := harness.Produce(ctx, nw)
			if err == nil && prod.Failed > 0 {
				err = fmt.Errorf("%d records failed (first: %v)", prod.Failed, prod.FirstErr)
			}
			if err != nil {
				return result{}, fmt.Errorf("produce of new keys after the restart: %w", err)
			}
			res.newKeysPerSec = prod.RecordsPerSec()
		}
		w.Seeds, w.Records = []string{b.KafkaAddr}, max(w.Records/4, 1)
		prod, err := harness.Produce(ctx, w)
		if err == nil && prod.Failed > 0 {
			err = fmt.Errorf("%d records failed (first: %v)", prod.Failed, prod.FirstErr)
		}
		if err != nil {
			return result{}, fmt.Errorf("produce before the kill: %w", err)
		}
		if res.restartKill, err = restartToServing(ctx, b, topic, true); err != nil {
			return result{}, fmt.Errorf("restart after SIGKILL: %w", err)
		}
	}
	return res, nil
}

// restartToServing restarts b (SIGKILL with kill, else SIGTERM) and returns
// the time from the exec to /readyz answering 200 plus the time a new client
// then takes to fetch a record of topic.
func restartToServing(ctx context.Context, b *harness.Broker, topic string, kill bool) (time.Duration, error) {
	ready, err := b.Restart(ctx, kill)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.KafkaAddr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		fs := cl.PollRecords(fctx, 1)
		if err := fctx.Err(); err != nil {
			return 0, fmt.Errorf("no record fetched: %w", err)
		}
		if fs.NumRecords() > 0 {
			return ready + time.Since(start), nil
		}
	}
}

// waitIdle returns once the process used under a tenth of a core over a
// second (its flushes and compactions done), or after limit.
func waitIdle(ctx context.Context, pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	prev, err := harness.CPUTime(pid)
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		now, err := harness.CPUTime(pid)
		if err != nil {
			return err
		}
		if now-prev < 100*time.Millisecond {
			return nil
		}
		prev = now
	}
	return nil
}

// writeBytes is write_bytes of /proc/<pid>/io: bytes the process caused to be
// sent to the block layer.
func writeBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no write_bytes", pid)
}

// pebbleMetrics scrapes /metrics and sums every shardcache_pebble_* counter
// by name (over its level labels); nil when the binary exports none.
func pebbleMetrics(ctx context.Context, httpAddr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	var out map[string]float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "shardcache_pebble_") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		level := ""
		if n, labels, ok := strings.Cut(name, "{"); ok {
			name = n
			if strings.Contains(labels, `level="0"`) {
				level = "0"
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		if out == nil {
			out = map[string]float64{}
		}
		out[name] += v
		if level != "" {
			out[name+"_l0"] += v
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return out, nil
}

// dirBytes sums the sizes of the regular files under dir: in total (key "")
// and by file name extension.
func dirBytes(dir string) (map[string]int64, error) {
	n := map[string]int64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (obsolete tables, WALs)
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n[""] += fi.Size()
				n[filepath.Ext(path)] += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

func report(cfg config, sides []*side, load string) {
	fmt.Printf("\nwrite path: %d records, %d keys, %d partitions, key %d B, value %d B, linger %v, acks=all, %s; medians of %d rounds; load average before %s, after %s\n\n",
		cfg.workload.Records, cfg.workload.Keys, cfg.partitions, cfg.workload.KeyBytes, cfg.workload.ValueBytes, cfg.workload.Linger, cfg.codec, cfg.rounds, load, harness.LoadAverage())
	head := "| measure |"
	sep := "|---|"
	for _, s := range sides {
		name := s.binary
		if name == "" {
			name = "./bin/shardcache"
		}
		head += fmt.Sprintf(" %s (%s) |", s.label, filepath.Base(name))
		sep += "---:|"
	}
	fmt.Println(head)
	fmt.Println(sep)
	row := func(name string, f func(result) (float64, bool), format func(float64) string) {
		line := "| " + name + " |"
		for _, s := range sides {
			var have []result
			for _, r := range s.runs {
				if _, ok := f(r); ok {
					have = append(have, r)
				}
			}
			if len(have) == 0 {
				line += " - |"
				continue
			}
			line += " " + format(harness.Median(have, func(r result) float64 { v, _ := f(r); return v })) + " |"
		}
		fmt.Println(line)
	}
	always := func(g func(result) float64) func(result) (float64, bool) {
		return func(r result) (float64, bool) { return g(r), true }
	}
	perByte := func(metric string) func(result) (float64, bool) {
		return func(r result) (float64, bool) {
			v, ok := r.pebble[metric]
			return ratio(v, r.recordBytes), ok
		}
	}
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	f2 := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	row("produce records/s", always(func(r result) float64 { return r.recordsPerSec }), f0)
	row("produce p99 ms", always(func(r result) float64 { return float64(r.p99) / float64(time.Millisecond) }), f0)
	row("CPU s per 1M records (to idle)", always(func(r result) float64 { return perMillion(r.cpu.Seconds(), r.records) }), f2)
	row("disk write_bytes per record byte", always(func(r result) float64 { return ratio(float64(r.diskWrite), r.recordBytes) }), f2)
	row("Pebble WAL bytes per record byte", perByte("shardcache_pebble_wal_bytes_written_total"), f2)
	row("Pebble flushed bytes per record byte", perByte("shardcache_pebble_flushed_bytes_total"), f2)
	row("Pebble compacted bytes per record byte", perByte("shardcache_pebble_compacted_bytes_total"), f2)
	row("Pebble compacted into L0 (intra-L0) per record byte", perByte("shardcache_pebble_compacted_bytes_total_l0"), f2)
	row("Pebble flushes", func(r result) (float64, bool) { v, ok := r.pebble["shardcache_pebble_flushes_total"]; return v, ok }, f0)
	row("Pebble compactions", func(r result) (float64, bool) { v, ok := r.pebble["shardcache_pebble_compactions_total"]; return v, ok }, f0)
	f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	row("data dir MiB at idle", always(func(r result) float64 { return float64(r.dirBytes) / (1 << 20) }), f1)
	row("of it Pebble WAL files (*.log) MiB", always(func(r result) float64 { return float64(r.walBytes) / (1 << 20) }), f1)
	row("of it Pebble tables (*.sst) MiB", always(func(r result) float64 { return float64(r.tableBytes) / (1 << 20) }), f1)
	restart := func(g func(result) time.Duration) func(result) (float64, bool) {
		return func(r result) (float64, bool) { return g(r).Seconds(), g(r) > 0 }
	}
	row("restart to serving after SIGTERM, s", restart(func(r result) time.Duration { return r.restartTerm }), f2)
	row("restart to serving after SIGKILL at the end of a load, s", restart(func(r result) time.Duration { return r.restartKill }), f2)
	row("produce of new keys after the SIGTERM restart, records/s", func(r result) (float64, bool) { return r.newKeysPerSec, r.newKeysPerSec > 0 }, f0)
}

func perMillion(v float64, records int64) float64 {
	if records == 0 {
		return 0
	}
	return v / float64(records) * 1e6
}

func ratio(a float64, b int64) float64 {
	if b == 0 {
		return 0
	}
	return a / float64(b)
}
