// Command cluster measures a three-node shardcache cluster beside one node,
// all processes on loopback on this machine, and prints a markdown table per
// measurement with its target beside it:
//
//  1. produce: the keyed workload of integration/bench (franz-go, acks=all,
//     idempotent, -keys keys each written twice, -key-bytes keys,
//     -value-bytes values) into a new -produce-partitions topic on one node
//     and on three nodes with replication factor 3, alternating (1, 3, then 3,
//     1, ...) for -repeat repetitions. Reported: records/s and MB/s of each
//     run, their medians and the ratio of the medians, and the CPU time
//     (utime+stime) each node and the load generator spent per record, which
//     is what bounds the rate when every process shares a few cores. Target:
//     three nodes at least 60% of one.
//  2. failover: three producers write to every partition of a
//     -failover-partitions topic (replication factor 3), one record per
//     partition every 10 ms each: one with kgo's defaults, one with
//     MetadataMinAge -metadata-min-age (kgo waits that long between metadata
//     refreshes, 5 s by default, so it bounds how soon a client learns of a
//     new leader), and the Apache Kafka Java client with its defaults
//     (integration/failover-producer, built with Maven offline: it refreshes
//     metadata retry.backoff.ms after a disconnect). The node that Metadata names leader of some partition is
//     killed with SIGKILL. Measured per partition it led: from the kill to the
//     first acknowledged record that was produced after the process was
//     gone; also when a survivor leads the partition's Raft group in a higher
//     term (/v1/status) and when a survivor's Metadata names a live leader.
//     The node is restarted and the cluster settles; -failovers rounds,
//     rotating the victim. Target: under 5 s with the default Raft timeouts.
//  3. rebuild: -keys keys loaded once each into a -produce-partitions topic
//     (replication factor 3); node -rebuild-node is stopped (SIGTERM), its
//     data dir removed, and it is started again with the same --node-id and
//     --join. Measured: from that start until, on every node, every Raft group
//     it carries has committed and applied the highest commit index any node
//     reports and its state machine has written as far as any node's has
//     (/v1/status, polled every 20 ms), and the live bytes of every topic
//     (from /v1/status) over that time. Target:
//     at least 100 MB/s. Twice: first with the Raft logs as the load left
//     them (a load in large batches leaves a few hundred entries per group,
//     so the leaders send the log); then, with -rebuild-fill, after single
//     records written one at a time took every data group's log past the
//     snapshot threshold and the nodes had up to -snapshot-wait to snapshot
//     and compact it, as a long-running cluster would have: the node must be
//     sent snapshots. While followers cannot restore a snapshot (before
//     branch `snapshot`), that run reports the refusal and the phase moves
//     on.
//  4. partitions: topics of -topic-partitions partitions totalling
//     -partitions (replication factor 3) are created; after -idle the CPU
//     time of each node (utime+stime in /proc/<pid>/stat) is sampled over
//     -cpu-window, and its VmRSS read; the same is first sampled before the
//     topics exist. Then each node in turn is restarted (SIGTERM, start) and
//     timed to /readyz 200. Targets: idle CPU under 5% of a core, restart
//     under 10 s.
//
// Every node runs with the broker's defaults (Raft heartbeat and election
// timeouts 1 s, 4 Raft groups) plus -broker-args. The load generator shares
// the machine with the nodes: on a small shared machine the load average
// printed at the start and before each phase says how far to trust the
// numbers.
//
// Usage:
//
//	go run ./integration/bench/cluster [flags]     (make bench-cluster BENCH_ARGS=...)
//
// Flags:
//
//	-phases              phases to run, comma-separated (default produce,failover,rebuild,partitions)
//	-binary              shardcache binary (default ./bin/shardcache, else built from ./cmd/shardcache)
//	-baseline-binary     produce phase: also run one node and three of this binary, all four clusters alternating;
//	                     failover phase: the same kills on a three-node cluster of this binary first, then on -binary's;
//	                     rebuild phase: a second three-node cluster of this binary, rebuilds alternating (default none)
//	-broker-args         extra flags for every node, space separated
//	-cluster-tls         node-to-node TLS with mutual authentication: a throwaway CA and node certificate, --cluster-tls-* on every node
//	-keys                distinct keys of the produce and rebuild phases (default 1,000,000)
//	-key-bytes           key size (default 16)
//	-value-bytes         value size (default 100)
//	-produce-partitions  partitions of the produce and rebuild topics (default 4)
//	-linger              producer linger (default 5ms)
//	-max-buffered        producer buffer in records (default 10,000)
//	-repeat              produce repetitions per cluster size (default 3)
//	-produce-timeout     cap on one produce run (default 5m)
//	-profile-delay       with -profile-dir: wait after a produce run starts before profiling (default 2s)
//	-failovers           leader kills (default 5)
//	-failover-partitions partitions of the failover topic (default 8)
//	-recover-timeout     longest wait for a partition to take writes after a kill (default 30s)
//	-metadata-min-age    MetadataMinAge of a second failover producer (default 250ms; 0: none)
//	-java                a third failover producer, the Java client with its defaults (default true)
//	-failover-quiet      wait before each kill once every producer follows the settled leaders (default 6s, above kgo's 5s MetadataMinAge)
//	-client-log          failover phase: the kgo-defaults producer's debug log goes to this file (default none)
//	-rebuild-node        node wiped by the rebuild phase (default 3)
//	-rebuild-timeout     longest wait for the wiped node to catch up (default 5m)
//	-rebuild-fill        a second rebuild after filling every data group's raft log past the snapshot threshold (default true)
//	-rebuild-repeat      rebuilds from snapshots on the same cluster after the fill, for a median (default 1)
//	-snapshot-wait       longest wait after the load for snapshots of long raft logs (default 90s)
//	-partitions          partitions of the partitions phase (default 10,000)
//	-topic-partitions    partitions per topic there (default 1,000)
//	-idle                wait before sampling CPU (default 10s)
//	-cpu-window          CPU sampling window (default 30s)
//	-timeout             cap on the whole run (default 45m)
//	-profile-dir         save CPU profiles of the nodes there (adds --pprof): over each produce run, each rebuild, and a second idle window of the partitions phase
//	-profile-window      length of a produce run's and a rebuild's profiles (default 10s; the partitions phase uses -cpu-window)
//	-keep                keep the nodes' data dirs and logs
//	-v                   print the nodes' ERROR log lines
//
// The defaults take about 10 minutes on two cores. For a quick look:
// -keys 50000 -partitions 1000 -repeat 1 -failovers 2 -cpu-window 10s.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

type config struct {
	phases             []string
	binary             string
	baselineBinary     string
	brokerArgs         []string
	keys               int
	keyBytes           int
	valueBytes         int
	produceParts       int
	linger             time.Duration
	maxBuffered        int
	repeat             int
	produceTimeout     time.Duration
	profileDelay       time.Duration
	failovers          int
	failoverPartitions int
	recoverTimeout     time.Duration
	metadataMinAge     time.Duration
	java               bool
	clientLog          string
	failoverQuiet      time.Duration
	rebuildNode        int
	rebuildTimeout     time.Duration
	snapshotWait       time.Duration
	rebuildFill        bool
	rebuildRepeat      int
	partitions         int
	topicPartitions    int
	idle               time.Duration
	cpuWindow          time.Duration
	timeout            time.Duration
	profileDir         string
	profileWindow      time.Duration
	keep               bool
	verbose            bool
}

var allPhases = []string{"produce", "failover", "rebuild", "partitions"}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench-cluster: ")
	var cfg config
	var phases, brokerArgs string
	flag.StringVar(&phases, "phases", strings.Join(allPhases, ","), "phases to run, comma-separated")
	flag.StringVar(&cfg.binary, "binary", "", "shardcache binary (default <module root>/bin/shardcache, else go build)")
	flag.StringVar(&cfg.baselineBinary, "baseline-binary", "", "produce, failover and rebuild phases: a second shardcache binary measured beside -binary in the same run")
	flag.StringVar(&brokerArgs, "broker-args", "", "extra flags for every node, space separated")
	clusterTLS := flag.Bool("cluster-tls", false, "node-to-node TLS with mutual authentication: a throwaway CA and node certificate, --cluster-tls-* on every node")
	flag.IntVar(&cfg.keys, "keys", 1_000_000, "distinct keys of the produce and rebuild phases")
	flag.IntVar(&cfg.keyBytes, "key-bytes", 16, "key size in bytes")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 100, "value size in bytes")
	flag.IntVar(&cfg.produceParts, "produce-partitions", 4, "partitions of the produce and rebuild topics")
	flag.DurationVar(&cfg.linger, "linger", 5*time.Millisecond, "producer linger")
	flag.IntVar(&cfg.maxBuffered, "max-buffered", 10_000, "producer buffer in records")
	flag.IntVar(&cfg.repeat, "repeat", 3, "produce repetitions per cluster size")
	flag.DurationVar(&cfg.produceTimeout, "produce-timeout", 300*time.Second, "cap on one produce run")
	flag.DurationVar(&cfg.profileDelay, "profile-delay", 2*time.Second, "with -profile-dir: wait after a produce run starts before profiling")
	flag.IntVar(&cfg.failovers, "failovers", 5, "leader kills")
	flag.IntVar(&cfg.failoverPartitions, "failover-partitions", 8, "partitions of the failover topic")
	flag.DurationVar(&cfg.recoverTimeout, "recover-timeout", 30*time.Second, "longest wait for a partition to take writes after a kill")
	flag.DurationVar(&cfg.metadataMinAge, "metadata-min-age", 250*time.Millisecond, "MetadataMinAge of a second failover producer beside one with kgo's defaults (0: none)")
	flag.DurationVar(&cfg.failoverQuiet, "failover-quiet", 6*time.Second, "failover phase: wait before each kill, once every producer follows the settled leaders (0: kill as soon as leadership settles)")
	flag.StringVar(&cfg.clientLog, "client-log", "", "failover phase: write the kgo-defaults producer's debug log to this file, for a timeline of its metadata refreshes")
	flag.BoolVar(&cfg.java, "java", true, "a third failover producer: the Apache Kafka Java client with its defaults (integration/failover-producer; needs mvn and java, see scripts/deps.sh)")
	flag.IntVar(&cfg.rebuildNode, "rebuild-node", 3, "node wiped and rebuilt by the rebuild phase (1 to 3)")
	flag.DurationVar(&cfg.rebuildTimeout, "rebuild-timeout", 5*time.Minute, "longest wait for the wiped node to catch up")
	flag.BoolVar(&cfg.rebuildFill, "rebuild-fill", true, "a second rebuild after single records took every data group's raft log past the snapshot threshold")
	flag.IntVar(&cfg.rebuildRepeat, "rebuild-repeat", 1, "rebuilds from snapshots on the same cluster after the fill (a median over them is printed)")
	flag.DurationVar(&cfg.snapshotWait, "snapshot-wait", 90*time.Second, "longest wait after the rebuild load for the nodes to snapshot long raft logs")
	flag.IntVar(&cfg.partitions, "partitions", 10_000, "partitions of the partitions phase")
	flag.IntVar(&cfg.topicPartitions, "topic-partitions", 1000, "partitions per topic in the partitions phase")
	flag.DurationVar(&cfg.idle, "idle", 10*time.Second, "idle wait before sampling CPU")
	flag.DurationVar(&cfg.cpuWindow, "cpu-window", 30*time.Second, "CPU sampling window")
	flag.DurationVar(&cfg.timeout, "timeout", 45*time.Minute, "cap on the whole run")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "save CPU profiles of the nodes in this directory, over each produce run, rebuild and idle window (adds --pprof to every node)")
	flag.DurationVar(&cfg.profileWindow, "profile-window", 10*time.Second, "length of each CPU profile")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the nodes' data dirs and logs")
	flag.BoolVar(&cfg.verbose, "v", false, "print the nodes' ERROR log lines")
	flag.Parse()
	cfg.brokerArgs = strings.Fields(brokerArgs)
	if *clusterTLS {
		dir, err := os.MkdirTemp("", "shardcache-bench-tls-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		cfg.brokerArgs = append(cfg.brokerArgs, harness.ClusterTLSArgs(dir)...)
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			log.Print(err)
			os.Exit(2)
		}
		if !slices.Contains(cfg.brokerArgs, "--pprof") {
			cfg.brokerArgs = append(cfg.brokerArgs, "--pprof")
		}
	}
	for _, p := range strings.Split(phases, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.phases = append(cfg.phases, p)
		}
	}
	if err := cfg.validate(); err != nil {
		log.Print(err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	failed := run(ctx, cfg)
	cancel()
	stop()
	if failed {
		os.Exit(1)
	}
}

func (c config) validate() error {
	for _, p := range c.phases {
		if !slices.Contains(allPhases, p) {
			return fmt.Errorf("-phases: unknown phase %q (known: %s)", p, strings.Join(allPhases, ", "))
		}
	}
	switch {
	case len(c.phases) == 0:
		return errors.New("-phases: no phase")
	case c.keys <= 0:
		return errors.New("-keys must be positive")
	case c.keyBytes < 8:
		return errors.New("-key-bytes must be at least 8")
	case c.valueBytes < 0:
		return errors.New("-value-bytes must not be negative")
	case c.produceParts < 1 || c.failoverPartitions < 1:
		return errors.New("-produce-partitions and -failover-partitions must be positive")
	case c.maxBuffered <= 0:
		return errors.New("-max-buffered must be positive")
	case c.repeat < 1 || c.failovers < 1:
		return errors.New("-repeat and -failovers must be at least 1")
	case c.rebuildRepeat < 1:
		return errors.New("-rebuild-repeat must be at least 1")
	case c.rebuildNode < 1 || c.rebuildNode > 3:
		return errors.New("-rebuild-node must be 1, 2 or 3")
	case c.partitions < 1 || c.topicPartitions < 1 || c.topicPartitions > 10_000:
		return errors.New("-partitions must be positive and -topic-partitions 1 to 10,000")
	case c.produceTimeout <= 0 || c.recoverTimeout <= 0 || c.rebuildTimeout <= 0 || c.cpuWindow <= 0 || c.idle < 0 || c.timeout <= 0 || c.metadataMinAge < 0 || c.snapshotWait < 0 || c.failoverQuiet < 0:
		return errors.New("durations must be positive")
	case c.profileWindow < time.Second:
		return errors.New("-profile-window must be at least 1s")
	case c.baselineBinary != "" && c.binary == "":
		return errors.New("-baseline-binary needs -binary")
	case c.profileDelay < 0:
		return errors.New("-profile-delay must not be negative")
	case c.metadataMinAge > 0 && c.metadataMinAge < 10*time.Millisecond:
		return errors.New("-metadata-min-age must be at least 10ms (kgo's floor)")
	}
	return nil
}

// run runs the phases in order and prints each one's table as it ends; a
// phase that fails is reported and the next one runs. It returns whether any
// phase failed.
func run(ctx context.Context, cfg config) (failed bool) {
	fmt.Printf("# shardcache cluster benchmark\n\n")
	fmt.Printf("- started %s on %s/%s, %d CPUs (GOMAXPROCS %d)\n", time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("- load average at start: %s\n", loadAverage())
	fmt.Printf("- nodes: loopback, broker defaults (Raft timeouts 1 s)%s; load generator on the same machine\n", argsNote(cfg.brokerArgs))
	fmt.Printf("- flags: %s\n", strings.Join(os.Args[1:], " "))
	for _, p := range cfg.phases {
		if ctx.Err() != nil {
			fmt.Printf("\n## %s\n\nnot run: %v\n", p, context.Cause(ctx))
			failed = true
			continue
		}
		fmt.Printf("\n## %s\n\nload average before the phase: %s\n\n", p, loadAverage())
		start := time.Now()
		var err error
		switch p {
		case "produce":
			err = runProduce(ctx, cfg)
		case "failover":
			err = runFailover(ctx, cfg)
		case "rebuild":
			err = runRebuild(ctx, cfg)
		case "partitions":
			err = runPartitions(ctx, cfg)
		}
		if err != nil {
			fmt.Printf("\n**%s failed:** %v\n", p, err)
			failed = true
		}
		log.Printf("%s phase done in %v", p, time.Since(start).Round(time.Second))
	}
	fmt.Printf("\nload average at the end: %s\n", loadAverage())
	return failed
}

// clusterConfig is how every phase starts its nodes.
func (c config) clusterConfig(nodes int) harness.ClusterConfig {
	return harness.ClusterConfig{Nodes: nodes, Binary: c.binary, Args: c.brokerArgs, Verbose: c.verbose, Keep: c.keep}
}

// startCluster starts nodes nodes and waits until leadership has settled on
// the preferred leaders, so no leadership hand-over lands inside a
// measurement.
func startCluster(ctx context.Context, cfg config, nodes int) (*harness.Cluster, error) {
	log.Printf("starting %d node(s)", nodes)
	c, err := harness.StartCluster(ctx, cfg.clusterConfig(nodes))
	if err != nil {
		return nil, err
	}
	if _, err := c.WaitSettled(ctx, 60*time.Second, 100*time.Millisecond, true); err != nil {
		c.Close()
		return nil, err
	}
	log.Printf("%d node(s) up in %s", nodes, c.Dir)
	return c, nil
}

// createTopic creates a topic on c and waits until every node carries every
// partition and Metadata names their leaders, so no measurement includes the
// client's retries while the topic is being set up.
func createTopic(ctx context.Context, c *harness.Cluster, topic string, partitions, replicationFactor int) error {
	if err := harness.CreateTopic(ctx, c.KafkaAddrs(), topic, partitions, replicationFactor); err != nil {
		return err
	}
	return c.WaitTopics(ctx, map[string]int{topic: partitions}, 2*time.Minute)
}

// profileNodes starts a CPU profile of each node over d, saved as
// <-profile-dir>/<name>-node-<id>.pprof, and returns a function that waits for
// them and logs failures. Without -profile-dir it does nothing.
func profileNodes(ctx context.Context, cfg config, nodes []*harness.Node, d time.Duration, name string) (wait func()) {
	if cfg.profileDir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		path := filepath.Join(cfg.profileDir, fmt.Sprintf("%s-node-%d.pprof", name, n.ID))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.CPUProfile(ctx, d, path); err != nil {
				log.Printf("profile %s: %v", path, err)
			}
		}()
	}
	return wg.Wait
}

func argsNote(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return ", plus " + strings.Join(args, " ")
}

// loadAverage1 is /proc/loadavg's 1-minute load average.
func loadAverage1() string {
	if f := strings.Fields(loadAverage()); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute load averages.
func loadAverage() string { return harness.LoadAverage() }

// verdict says whether a measurement meets its target.
func verdict(ok bool) string {
	if ok {
		return "meets"
	}
	return "**misses**"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// median of a non-empty slice (the mean of the middle two for an even count).
func median(xs []float64) float64 { return harness.Median(xs, func(x float64) float64 { return x }) }
