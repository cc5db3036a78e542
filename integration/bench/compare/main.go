// Command compare runs Apache Kafka beside shardcache on this machine and drives
// both with the same franz-go workloads, interleaved over rounds, then prints a
// markdown table of medians and shardcache/Kafka ratios (`make bench-compare`).
//
// Brokers: one Apache Kafka KRaft node (broker and controller in one process,
// Kafka's defaults, the JVM options of bin/kafka-server-start.sh) and one
// shardcache node (./bin/shardcache, its defaults), each on loopback ports with
// its own data directory. Only one runs at a time. The Kafka jars (kafka_2.13,
// kafka-tools and their runtime dependencies) come from Maven Central on the
// first run, through integration/bench/compare/kafka/pom.xml and
// `mvn dependency:copy-dependencies`, into -kafka-cache; later runs are offline.
//
// A run starts one broker on a fresh data directory, runs every workload on it
// in order, restarts it, and removes it. Rounds alternate the order (Kafka,
// shardcache, then shardcache, Kafka, ...), so a drift in the machine's load
// falls on both.
//
// Each workload creates a new topic with cleanup.policy=compact (the same
// CreateTopics request on both brokers; Kafka's log cleaner runs as it does by
// default), then:
//
//  1. produce: Keys distinct 16 B keys, each written Versions times, with one
//     franz-go producer: acks=all, idempotent, linger -linger, the workload's
//     codec (snappy is franz-go's default), and a buffer bounded at -max-buffered
//     records (Produce blocks when it is full). Reported: records/s and the p50
//     and p99 of the Produce requests' round trips (franz-go's BrokerE2E, from
//     writing a request to reading its response): the broker's latency, not time
//     records wait in the client's buffer. Also the broker process's CPU time
//     (user and system, /proc in 10 ms ticks) over the produce, per record:
//     on a machine shared with the client, what a broker spends is what the
//     client cannot, and it moves less with the machine's load than rates do.
//  2. the data directory's bytes (per file the smaller of its length and its
//     allocated blocks, as du counts sparse files), as the growth over the
//     workload.
//  3. full read, a GlobalKTable-style restore: a new consumer without a group
//     assigns every partition from the earliest offset and reads to the end
//     offsets listed before it started. Reported: records read, seconds,
//     records/s, and the broker's CPU time over the read.
//  4. the broker's RSS (VmRSS).
//  5. the data directory's growth again, -idle-wait (7 s) after the produce
//     ended, with nothing sent since the read, once two readings a second
//     apart are within 256 KiB (at most 30 s more): what it comes down to at rest.
//     shardcache compacts its newest tables away once quiet for 5 s
//     (--idle-compaction); Kafka's cleaner never touches the active segment.
//
// After workload p10 (or the last one, when p10 is not run): restart to serving,
// from SIGTERM's exit to the first successful Metadata request and fetch of a
// record of p10's topic, timed from the new exec. It comes before the 10,000
// partitions, whose reload takes Kafka over a minute per restart.
//
// Workloads (-workloads picks some by id):
//
//	p5     200k keys × 5 versions, 100 B values, 4 partitions, snappy
//	p10    -restore-keys (100k) keys × 10 versions, 100 B values, 4 partitions,
//	       snappy; its full read is issue 12's GlobalKTable restore after 10
//	       overwrites per key (-restore-keys 1000000 for its 1M keys)
//	1k     100k keys × 2, 1 KiB values, 4 partitions, snappy
//	none   100k keys × 5, 100 B values, 4 partitions, uncompressed
//	lz4    the same with lz4
//	zstd   the same with zstd
//	parts  20k keys × 1, 100 B values, -many-partitions (10,000) partitions: two
//	       records per partition, since Kafka at 10,000 partitions produces a few
//	       thousand records/s on two busy cores
//	live   -live-keys (1M) keys × 1, 100 B values, 8 partitions
//
// Usage:
//
//	go run ./integration/bench/compare [flags]
//
// Flags:
//
//	-rounds           rounds; each runs both brokers once (default 3)
//	-workloads        comma-separated workload ids (default all, in the order above)
//	-kafka-version    Apache Kafka version from Maven Central (default 4.4.0)
//	-kafka-cache      folder for the Kafka jars (default $XDG_CACHE_HOME or
//	                  ~/.cache, then shardcache/bench-compare)
//	-java             the java command (default java: Java 17 or newer)
//	-shardcache       shardcache binary (default <module root>/bin/shardcache)
//	-work-dir         parent of the brokers' data directories (default the system
//	                  temporary directory)
//	-restore-keys     keys of workload p10 (default 100,000)
//	-live-keys        keys of workload live (default 1,000,000; 10,000,000 is the
//	                  issue's figure: run it on its own, -workloads live, since it
//	                  does not fit the default run's 10 minutes)
//	-many-partitions  partitions of workload parts (default 10,000)
//	-linger           producer linger (default 5ms)
//	-max-buffered     producer buffer bound in records (default 10,000)
//	-produce-timeout  cap on one produce phase (default 5m)
//	-read-timeout     cap on one full read (default 5m)
//	-idle-wait        from the end of a produce to the second data dir
//	                  measure, with nothing sent (default 7s)
//
// On the shared two-core machine this project builds on (load average 7-10),
// three rounds of every workload but parts took 5 minutes, and one round of
// parts 2.5, most of it Kafka creating and reloading 10,000 partitions: the
// defaults exceed 10 minutes there. The idle measure (step 5) adds about 8 s
// per workload, broker and round: three rounds of every workload but parts
// took 6 min 52 s on a quiet machine (1 min 23 s before it); -idle-wait 0
// leaves only the wait for the size to hold still (a second or more). The
// load average is printed before and after, since a shared machine moves
// every figure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	rounds         int
	workloads      string
	kafkaVersion   string
	kafkaCache     string
	java           string
	shardcache     string
	workDir        string
	restoreKeys    int
	liveKeys       int
	manyPartitions int
	client         clientSettings
	readTimeout    time.Duration
	idleWait       time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; each runs both brokers once")
	flag.StringVar(&cfg.workloads, "workloads", "", "comma-separated workload ids (default all)")
	flag.StringVar(&cfg.kafkaVersion, "kafka-version", "4.4.0", "Apache Kafka version from Maven Central")
	flag.StringVar(&cfg.kafkaCache, "kafka-cache", "", "folder for the Kafka jars (default $XDG_CACHE_HOME or ~/.cache, then shardcache/bench-compare)")
	flag.StringVar(&cfg.java, "java", "java", "the java command")
	flag.StringVar(&cfg.shardcache, "shardcache", "", "shardcache binary (default <module root>/bin/shardcache)")
	flag.StringVar(&cfg.workDir, "work-dir", "", "parent of the brokers' data directories (default the system temporary directory)")
	flag.IntVar(&cfg.restoreKeys, "restore-keys", 100_000, "keys of workload p10 (10 versions each)")
	flag.IntVar(&cfg.liveKeys, "live-keys", 1_000_000, "keys of workload live (1 version each)")
	flag.IntVar(&cfg.manyPartitions, "many-partitions", 10_000, "partitions of workload parts")
	flag.DurationVar(&cfg.client.linger, "linger", 5*time.Millisecond, "producer linger")
	flag.IntVar(&cfg.client.maxBuffered, "max-buffered", 10_000, "producer buffer bound in records")
	flag.DurationVar(&cfg.client.timeout, "produce-timeout", 5*time.Minute, "cap on one produce phase")
	flag.DurationVar(&cfg.readTimeout, "read-timeout", 5*time.Minute, "cap on one full read")
	flag.DurationVar(&cfg.idleWait, "idle-wait", 7*time.Second, "time from the end of a produce to the idle data dir measure")
	flag.Parse()
	cfg.client.keyBytes = 16
	log.SetFlags(log.Ltime)
	log.SetPrefix("compare: ")
	if flag.NArg() > 0 {
		log.Printf("unexpected arguments: %q", flag.Args())
		os.Exit(2)
	}
	ws, err := cfg.validate()
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	harness.Main(func(ctx context.Context) error { return run(ctx, cfg, ws) })
}

// allWorkloads lists the workloads in their run order, by id.
func allWorkloads(cfg config) []struct {
	id string
	w  workload
} {
	base := func(name string, keys, versions, value, parts int, codec kgo.CompressionCodec, codecName string) workload {
		return workload{Name: name, Keys: keys, Versions: versions, ValueBytes: value,
			Partitions: parts, Codec: codec, CodecName: codecName}
	}
	return []struct {
		id string
		w  workload
	}{
		{"p5", base("200k × 5", 200_000, 5, 100, 4, kgo.SnappyCompression(), "snappy")},
		{"p10", base(fmt.Sprintf("%s × 10 (GlobalKTable restore)", count(cfg.restoreKeys)), cfg.restoreKeys, 10, 100, 4, kgo.SnappyCompression(), "snappy")},
		{"1k", base("100k × 2, 1 KiB values", 100_000, 2, 1024, 4, kgo.SnappyCompression(), "snappy")},
		{"none", base("100k × 5, uncompressed", 100_000, 5, 100, 4, kgo.NoCompression(), "none")},
		{"lz4", base("100k × 5, lz4", 100_000, 5, 100, 4, kgo.Lz4Compression(), "lz4")},
		{"zstd", base("100k × 5, zstd", 100_000, 5, 100, 4, kgo.ZstdCompression(), "zstd")},
		{"parts", base(fmt.Sprintf("20k × 1, %s partitions", count(cfg.manyPartitions)), 20_000, 1, 100, cfg.manyPartitions, kgo.SnappyCompression(), "snappy")},
		{"live", base(fmt.Sprintf("%s live keys × 1, 8 partitions", count(cfg.liveKeys)), cfg.liveKeys, 1, 100, 8, kgo.SnappyCompression(), "snappy")},
	}
}

func (c config) validate() ([]workload, error) {
	switch {
	case c.rounds <= 0:
		return nil, errors.New("-rounds must be positive")
	case c.restoreKeys <= 0 || c.liveKeys <= 0:
		return nil, errors.New("-restore-keys and -live-keys must be positive")
	case c.manyPartitions <= 0:
		return nil, errors.New("-many-partitions must be positive")
	case c.client.maxBuffered <= 0:
		return nil, errors.New("-max-buffered must be positive")
	case c.client.linger < 0 || c.idleWait < 0:
		return nil, errors.New("-linger and -idle-wait must not be negative")
	case c.client.timeout <= 0 || c.readTimeout <= 0:
		return nil, errors.New("-produce-timeout and -read-timeout must be positive")
	case c.kafkaVersion == "" || strings.ContainsAny(c.kafkaVersion, "/ \t"):
		return nil, fmt.Errorf("-kafka-version %q is not a version", c.kafkaVersion)
	}
	all := allWorkloads(c)
	if c.workloads == "" {
		ws := make([]workload, len(all))
		for i, a := range all {
			ws[i] = a.w
		}
		return ws, nil
	}
	var ws []workload
	for _, id := range strings.Split(c.workloads, ",") {
		i := slices.IndexFunc(all, func(a struct {
			id string
			w  workload
		}) bool {
			return a.id == strings.TrimSpace(id)
		})
		if i < 0 {
			ids := make([]string, len(all))
			for j, a := range all {
				ids[j] = a.id
			}
			return nil, fmt.Errorf("-workloads: unknown id %q (ids: %s)", id, strings.Join(ids, ", "))
		}
		ws = append(ws, all[i].w)
	}
	return ws, nil
}

// runResult is one broker's samples in one round.
type runResult struct {
	samples []sample // per workload
	restart time.Duration
}

func run(ctx context.Context, cfg config, ws []workload) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if cfg.shardcache == "" {
		cfg.shardcache = filepath.Join(root, "bin", "shardcache")
	}
	if _, err := os.Stat(cfg.shardcache); err != nil {
		return fmt.Errorf("shardcache binary (make build makes ./bin/shardcache): %w", err)
	}
	if cfg.kafkaCache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no cache folder (set -kafka-cache): %w", err)
		}
		cfg.kafkaCache = filepath.Join(dir, "shardcache", "bench-compare")
	}
	if _, err := exec.LookPath(cfg.java); err != nil {
		return fmt.Errorf("-java: %w", err)
	}
	libs, err := fetchKafka(ctx, root, cfg.kafkaCache, cfg.kafkaVersion)
	if err != nil {
		return err
	}

	began := time.Now()
	loadBefore := loadAverage()
	results := map[string][]runResult{}
	for r := 0; r < cfg.rounds; r++ {
		order := []string{"Kafka", "shardcache"}
		if r%2 == 1 {
			order = []string{"shardcache", "Kafka"}
		}
		for _, name := range order {
			log.Printf("round %d/%d: %s", r+1, cfg.rounds, name)
			rr, err := runOne(ctx, cfg, libs, name, ws, r)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, name, err)
			}
			results[name] = append(results[name], rr)
		}
	}
	printReport(cfg, ws, results, loadBefore, time.Since(began))
	return nil
}

// runOne starts one broker on a fresh data directory, runs every workload, then
// measures a restart, and removes the directory.
func runOne(ctx context.Context, cfg config, libs, name string, ws []workload, round int) (runResult, error) {
	dir, err := os.MkdirTemp(cfg.workDir, "bench-compare-")
	if err != nil {
		return runResult{}, err
	}
	defer os.RemoveAll(dir)
	var n *node
	if name == "Kafka" {
		n, err = newKafka(ctx, cfg.java, libs, dir)
	} else {
		n, err = newShardcache(cfg.shardcache, dir)
	}
	if err != nil {
		return runResult{}, err
	}
	if _, err := n.start(ctx, ""); err != nil {
		return runResult{}, err
	}
	defer n.stop()

	var rr runResult
	restarted := false
	restart := func(topic string) error {
		var err error
		if rr.restart, err = n.restart(ctx, topic); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		log.Printf("  restart to serving: %.2f s", rr.restart.Seconds())
		restarted = true
		return nil
	}
	var topic string
	for i, w := range ws {
		topic = fmt.Sprintf("compare-r%d-w%d", round, i)
		before, err := n.dirBytes()
		if err != nil {
			return rr, err
		}
		if err := createTopic(ctx, n.addr, topic, w.Partitions); err != nil {
			return rr, err
		}
		cpu0, err := n.cpuTime()
		if err != nil {
			return rr, err
		}
		s, err := produce(ctx, n.addr, topic, w, cfg.client)
		if err != nil {
			return rr, fmt.Errorf("%s: produce: %w", w.Name, err)
		}
		cpu1, err := n.cpuTime()
		if err != nil {
			return rr, err
		}
		s.produceCPU = cpu1 - cpu0
		after, err := n.dirBytes()
		if err != nil {
			return rr, err
		}
		s.dataDirBytes = after - before
		produced := time.Now()
		s.readRecords, s.readSecs, err = readAll(ctx, n.addr, topic, cfg.readTimeout)
		if err != nil {
			return rr, fmt.Errorf("%s: %w", w.Name, err)
		}
		cpu2, err := n.cpuTime()
		if err != nil {
			return rr, err
		}
		s.readCPU = cpu2 - cpu1
		if s.rssBytes, err = n.rssBytes(); err != nil {
			return rr, err
		}
		// Idle: nothing sent for -idle-wait after the produce (the read
		// writes nothing), then until the size holds about still for a
		// second.
		// shardcache compacts its L0 once quiet for 5 s (--idle-compaction);
		// Kafka's cleaner never touches the active segment.
		time.Sleep(cfg.idleWait - time.Since(produced))
		idle, err := settledDirBytes(n, idleSettleCap)
		if err != nil {
			return rr, err
		}
		s.dataDirIdleBytes = idle - before
		log.Printf("  %s: produce %.0f records/s (p99 %v), read %d records in %.2f s",
			w.Name, float64(s.produced)/s.produceSecs, s.p99.Round(time.Millisecond), s.readRecords, s.readSecs)
		rr.samples = append(rr.samples, s)
		if w.Versions == 10 && !restarted {
			if err := restart(topic); err != nil {
				return rr, err
			}
		}
	}
	if !restarted {
		return rr, restart(topic)
	}
	return rr, nil
}

// idleSettleCap bounds settledDirBytes's wait; settleTolerance is the change
// between readings it takes for settled: Kafka's KRaft metadata log grows by
// a few hundred bytes a second while nothing is sent, and a compaction writes
// megabytes a second.
const (
	idleSettleCap   = 30 * time.Second
	settleTolerance = 256 << 10
)

// settledDirBytes measures n's data dir once a second until two readings
// are within settleTolerance (a compaction writes its output before it
// removes its input), or returns the last reading after maxWait.
func settledDirBytes(n *node, maxWait time.Duration) (int64, error) {
	last, err := n.dirBytes()
	if err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(maxWait); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		cur, err := n.dirBytes()
		if err != nil {
			return 0, err
		}
		if d := cur - last; d < settleTolerance && d > -settleTolerance {
			last = cur
			break
		}
		last = cur
	}
	return last, nil
}

// moduleRoot is the directory of the shardcache module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the shardcache module: run from the checkout")
	}
	return filepath.Dir(gomod), nil
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute load averages.
func loadAverage() string { return harness.LoadAverage() }
