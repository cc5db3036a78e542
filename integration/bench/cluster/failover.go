package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// failoverTopic is the topic the failover phase writes to.
const failoverTopic = "bench-failover"

// writeEvery is how often the failover producer writes to each partition,
// which bounds the resolution of the measurement.
const writeEvery = 10 * time.Millisecond

// probe watches one partition's acknowledgements: once armed at a time, it
// records when the first record produced at or after that time is
// acknowledged.
type probe struct {
	mu        sync.Mutex
	since     time.Time // zero when not armed
	recovered time.Time
	done      chan struct{}
	acked     int64
	failed    int64
	firstErr  error
}

func (p *probe) arm(since time.Time) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.since, p.recovered, p.done = since, time.Time{}, make(chan struct{})
	return p.done
}

func (p *probe) ack(produced, at time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failed++
		if p.firstErr == nil {
			p.firstErr = err
		}
		return
	}
	p.acked++
	if !p.since.IsZero() && !produced.Before(p.since) && p.recovered.IsZero() {
		p.recovered = at
		close(p.done)
	}
}

func (p *probe) recoveredAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recovered
}

// writer is one producer client writing to every partition of the failover
// topic, one record per partition every writeEvery, with a probe per
// partition.
type writer struct {
	name   string // how the client is configured, for the tables
	close  func() // after its goroutines ended
	probes []*probe
}

// startWriter creates a client and its per-partition goroutines, which run
// until ctx ends; wg waits for them.
func startWriter(ctx context.Context, wg *sync.WaitGroup, name string, opts []kgo.Opt, partitions, valueBytes int) (*writer, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	w := &writer{name: name, close: cl.Close, probes: make([]*probe, partitions)}
	value := make([]byte, valueBytes)
	for i := range w.probes {
		p := &probe{}
		w.probes[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(writeEvery)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				produced := time.Now()
				// Unique keys: the topic is compacted (the broker's default).
				key := []byte(fmt.Sprintf("p%d-%09d", i, seq))
				cl.Produce(ctx, &kgo.Record{Partition: int32(i), Key: key, Value: value}, func(_ *kgo.Record, err error) {
					if ctx.Err() == nil {
						p.ack(produced, time.Now(), err)
					}
				})
			}
		}()
	}
	return w, nil
}

// failoverRound is one leader kill.
type failoverRound struct {
	victim int32
	led    []int32 // partitions the victim led
	// recovered, per writer: partition -> kill to its first acked write;
	// absent when not within the timeout.
	recovered []map[int32]time.Duration
	elected   map[uint32]time.Duration // Raft group -> kill to a survivor leading it in a higher term
	named     map[int32]time.Duration  // partition -> kill to a survivor's Metadata naming a live leader
	groups    []uint32                 // the Raft groups of led
	restart   time.Duration
	settleErr error
}

// runFailover measures -binary; with -baseline-binary it first measures that
// binary the same way on a cluster of its own, then -binary, each with its own
// tables, so both are seen in one run on the same machine.
func runFailover(ctx context.Context, cfg config) error {
	if cfg.baselineBinary == "" {
		return runFailoverOn(ctx, cfg)
	}
	var errs []error
	for i, bin := range []string{cfg.baselineBinary, cfg.binary} {
		bc := cfg
		bc.binary = bin
		if cfg.clientLog != "" {
			bc.clientLog += []string{".baseline", ".binary"}[i]
		}
		fmt.Printf("### %s\n\n", bin)
		if err := runFailoverOn(ctx, bc); err != nil {
			fmt.Printf("\n**failed:** %v\n\n", err)
			errs = append(errs, fmt.Errorf("%s: %w", bin, err))
		}
	}
	return errors.Join(errs...)
}

// runFailoverOn runs the failover phase on one three-node cluster of
// cfg.binary.
func runFailoverOn(ctx context.Context, cfg config) error {
	c, err := startCluster(ctx, cfg, 3)
	if err != nil {
		return err
	}
	defer c.Close()
	seeds := c.KafkaAddrs()
	if err := createTopic(ctx, c, failoverTopic, cfg.failoverPartitions, 3); err != nil {
		return err
	}

	base := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(failoverTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var writers []*writer
	defer func() {
		stopWriters()
		wg.Wait()
		for _, w := range writers {
			w.close()
		}
	}()
	defaults := slices.Clip(base)
	if cfg.clientLog != "" {
		f, err := os.Create(cfg.clientLog)
		if err != nil {
			return err
		}
		defer f.Close()
		defaults = append(defaults, kgo.WithLogger(kgo.BasicLogger(f, kgo.LogLevelDebug, func() string {
			return time.Now().UTC().Format("15:04:05.000000 ")
		})))
	}
	w, err := startWriter(wctx, &wg, "kgo defaults (MetadataMinAge 5s)", defaults, cfg.failoverPartitions, cfg.valueBytes)
	if err != nil {
		return err
	}
	writers = append(writers, w)
	if cfg.metadataMinAge > 0 {
		opts := append(slices.Clip(base), kgo.MetadataMinAge(cfg.metadataMinAge))
		w, err := startWriter(wctx, &wg, fmt.Sprintf("MetadataMinAge %v", cfg.metadataMinAge), opts, cfg.failoverPartitions, cfg.valueBytes)
		if err != nil {
			return err
		}
		writers = append(writers, w)
	}
	if cfg.java {
		dir, err := os.MkdirTemp("", "bench-failover-java-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		log.Printf("building the Java producer (%s)", javaProducerDir)
		cp, err := buildJavaProducer(ctx, dir)
		if err != nil {
			return err
		}
		w, err := startJavaWriter(wctx, &wg, cp, seeds, cfg.failoverPartitions, cfg.valueBytes)
		if err != nil {
			return err
		}
		writers = append(writers, w)
	}
	// Every partition takes writes before the first kill.
	warm := time.Now()
	for _, w := range writers {
		for i, p := range w.probes {
			select {
			case <-p.arm(warm):
			case <-time.After(30 * time.Second):
				p.mu.Lock()
				defer p.mu.Unlock()
				return fmt.Errorf("%s: partition %d of %s took no write within 30 s (%d acknowledged, %d failed, first error: %v)", w.name, i, failoverTopic, p.acked, p.failed, p.firstErr)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}

	var rounds []failoverRound
	for round := 0; round < cfg.failovers; round++ {
		r, err := failoverOnce(ctx, cfg, c, writers, round)
		if err != nil {
			printFailover(cfg, rounds, writers)
			return fmt.Errorf("kill %d: %w", round+1, err)
		}
		rounds = append(rounds, r)
	}
	stopWriters()
	wg.Wait()
	printFailover(cfg, rounds, writers)
	return nil
}

// failoverOnce kills the leader of some partition, waits for each partition
// it led to take a write, and restarts it.
func failoverOnce(ctx context.Context, cfg config, c *harness.Cluster, writers []*writer, round int) (failoverRound, error) {
	var r failoverRound
	// Leadership that has not settled may move on its own during the round;
	// carry on and say so.
	if _, err := c.WaitSettled(ctx, 60*time.Second, 100*time.Millisecond, true); err != nil {
		r.settleErr = err
		log.Printf("kill %d: %v; measuring anyway", round+1, err)
	}
	if err := quietBeforeKill(ctx, cfg, writers); err != nil {
		return r, err
	}
	leaders, err := harness.PartitionLeaders(ctx, c.KafkaAddrs(), failoverTopic)
	if err != nil {
		return r, err
	}
	// Rotate the victim over the nodes, skipping one that leads nothing.
	for k := range len(c.Nodes) {
		id := int32((round+k)%len(c.Nodes)) + 1
		for p, l := range leaders {
			if l == id {
				r.led = append(r.led, p)
			}
		}
		if len(r.led) > 0 {
			r.victim = id
			break
		}
	}
	if r.victim == 0 {
		return r, fmt.Errorf("no node leads a partition of %s: %v", failoverTopic, leaders)
	}
	slices.Sort(r.led)
	victim := c.Node(r.victim)

	// The Raft groups of the led partitions and their terms before the kill.
	st, err := victim.Status(ctx)
	if err != nil {
		return r, err
	}
	oldTerm := map[uint32]uint64{}
	if t, ok := st.Topic(failoverTopic); ok {
		for _, ps := range t.Partitions {
			if slices.Contains(r.led, ps.Partition) {
				g, _ := st.RaftGroup(ps.RaftGroupID)
				oldTerm[ps.RaftGroupID] = g.Term
			}
		}
	}
	for g := range oldTerm {
		r.groups = append(r.groups, g)
	}
	slices.Sort(r.groups)

	clients := map[int32]*kgo.Client{}
	for _, n := range c.Nodes {
		if n.ID == r.victim {
			continue
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr))
		if err != nil {
			return r, err
		}
		defer cl.Close()
		if err := cl.Ping(ctx); err != nil {
			return r, fmt.Errorf("node %d: %w", n.ID, err)
		}
		clients[n.ID] = cl
	}

	log.Printf("kill %d: SIGKILL node %d, leader of partitions %v (raft groups %v)", round+1, r.victim, r.led, r.groups)
	ectx, stopElect := context.WithCancel(ctx)
	watched := make(chan leaderWatch, 1)
	killed := time.Now()
	go func() { watched <- watchLeaders(ectx, c, r.victim, oldTerm, r.led, clients) }()
	if err := victim.Kill(); err != nil {
		stopElect()
		<-watched
		return r, err
	}
	gone := time.Now()
	var waits []<-chan struct{}
	for _, w := range writers {
		for _, p := range r.led {
			waits = append(waits, w.probes[p].arm(gone))
		}
	}
	deadline := time.NewTimer(cfg.recoverTimeout)
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline.C:
		case <-ctx.Done():
		}
	}
	deadline.Stop()
	stopElect()
	r.recovered = make([]map[int32]time.Duration, len(writers))
	for i, w := range writers {
		r.recovered[i] = map[int32]time.Duration{}
		for _, p := range r.led {
			if at := w.probes[p].recoveredAt(); !at.IsZero() {
				r.recovered[i][p] = at.Sub(killed)
			}
		}
	}
	w := <-watched
	r.elected = map[uint32]time.Duration{}
	for g, at := range w.elected {
		r.elected[g] = at.Sub(killed)
	}
	r.named = map[int32]time.Duration{}
	for p, at := range w.named {
		r.named[p] = at.Sub(killed)
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}

	start := time.Now()
	if err := victim.Start(ctx); err != nil {
		return r, fmt.Errorf("restart node %d: %w", r.victim, err)
	}
	r.restart = time.Since(start)
	return r, nil
}

// quietBeforeKill waits, once leadership has settled, until every writer has
// had a record acknowledged on every partition (so each client has followed
// the settled leaders, which after a restart move back to their preferred
// node and make the clients refresh metadata), then -failover-quiet more. A
// kill right after such a refresh measures kgo's MetadataMinAge wait from it
// rather than the failover: kgo refreshes at most once per MetadataMinAge.
func quietBeforeKill(ctx context.Context, cfg config, writers []*writer) error {
	if cfg.failoverQuiet == 0 {
		return nil
	}
	now := time.Now()
	for _, w := range writers {
		for i, p := range w.probes {
			select {
			case <-p.arm(now):
			case <-time.After(30 * time.Second):
				return fmt.Errorf("%s: partition %d took no write within 30 s of leadership settling", w.name, i)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	select {
	case <-time.After(cfg.failoverQuiet):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leaderWatch is what watchLeaders saw after a kill: when a survivor first
// led each Raft group in a higher term (/v1/status), and when a survivor's
// Metadata first named a live leader for each partition.
type leaderWatch struct {
	elected map[uint32]time.Time
	named   map[int32]time.Time
}

// watchLeaders polls the surviving nodes every 20 ms, their /v1/status for
// each group in oldTerm and their Metadata for the partitions in led, until
// everything is seen or ctx ends. clients hold one Metadata client per
// survivor, connected before the kill. Each survivor's Metadata is polled by
// its own goroutine: a node answers Metadata once the groups it carries have
// a live leader, and one waiting answer must not hold up the other polls.
func watchLeaders(ctx context.Context, c *harness.Cluster, victim int32, oldTerm map[uint32]uint64, led []int32, clients map[int32]*kgo.Client) leaderWatch {
	w := leaderWatch{elected: map[uint32]time.Time{}, named: map[int32]time.Time{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchNamed(ctx, cl, victim, led, &mu, w.named)
		}()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range c.Nodes {
			if n.ID == victim || !n.Running() {
				continue
			}
			if st, err := n.Status(ctx); err == nil {
				now := time.Now()
				for g, term := range oldTerm {
					if gs, ok := st.RaftGroup(g); ok && gs.State == "Leader" && gs.Term > term {
						if _, done := w.elected[g]; !done {
							w.elected[g] = now
						}
					}
				}
			}
		}
		mu.Lock()
		done := len(w.elected) == len(oldTerm) && len(w.named) == len(led)
		mu.Unlock()
		if done {
			return w
		}
		select {
		case <-ctx.Done():
			return w
		case <-tick.C:
		}
	}
}

// watchNamed polls one survivor's Metadata every 20 ms and records in named,
// under mu, when it first names a live leader for each partition in led.
func watchNamed(ctx context.Context, cl *kgo.Client, victim int32, led []int32, mu *sync.Mutex, named map[int32]time.Time) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(failoverTopic)
		req.Topics = append(req.Topics, rt)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cl.SeedBrokers()[0].Request(rctx, req)
		cancel()
		if err == nil {
			now := time.Now()
			mu.Lock()
			for _, t := range resp.(*kmsg.MetadataResponse).Topics {
				for _, p := range t.Partitions {
					if !slices.Contains(led, p.Partition) || p.ErrorCode != 0 || p.Leader < 0 || p.Leader == victim {
						continue
					}
					if _, done := named[p.Partition]; !done {
						named[p.Partition] = now
					}
				}
			}
			done := len(named) == len(led)
			mu.Unlock()
			if done {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func printFailover(cfg config, rounds []failoverRound, writers []*writer) {
	fmt.Printf("Producers (acks=all, idempotent; franz-go with linger 0, the Java client with all its defaults) each write one record to each of %d partitions (replication factor 3) every %v: ", cfg.failoverPartitions, writeEvery)
	for i, w := range writers {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Printf("%c) %s", 'A'+i, w.name)
	}
	fmt.Printf(". Each kill: SIGKILL of a node Metadata names leader of some partition. Measured from the kill: per partition it led, the first acknowledged record produced after the process was gone (resolution about %v); per Raft group, a survivor leading it in a higher term (/v1/status, polled every 20 ms); per partition, a survivor's Metadata naming a live leader (polled every 20 ms). Then the node is restarted and leadership settles before the next kill; every producer then takes a write on every partition and the kill waits %v more (-failover-quiet), so no kill lands right after a producer refreshed metadata for the settling.\n\n", writeEvery, cfg.failoverQuiet)
	fmt.Print("| kill | node | partitions led (raft groups) | new Raft leader | Metadata names it |")
	for i := range writers {
		fmt.Printf(" first acked write, %c (slowest partition) |", 'A'+i)
	}
	fmt.Println(" restart to ready |")
	fmt.Print("|---:|---:|---|---:|---:|")
	for range writers {
		fmt.Print("---:|")
	}
	fmt.Println("---:|")
	writes := make([][]float64, len(writers))
	missed := make([]int, len(writers))
	var elections, named []float64
	for i, r := range rounds {
		var el, md []string
		for _, g := range r.groups {
			if d, ok := r.elected[g]; ok {
				el = append(el, secs(d))
				elections = append(elections, d.Seconds())
			} else {
				el = append(el, "not seen")
			}
		}
		var slowestNamed time.Duration
		for _, p := range r.led {
			if d, ok := r.named[p]; ok {
				slowestNamed = max(slowestNamed, d)
				named = append(named, d.Seconds())
			} else {
				md = append(md, "not seen")
			}
		}
		if len(md) == 0 {
			md = append(md, secs(slowestNamed))
		}
		note := ""
		if r.settleErr != nil {
			note = " (leadership not settled before the kill)"
		}
		fmt.Printf("| %d | %d%s | %v (%v) | %s | %s |", i+1, r.victim, note, r.led, r.groups, joinOr(el, "-"), md[0])
		for wi := range writers {
			var slowest time.Duration
			cell := ""
			for _, p := range r.led {
				d, ok := r.recovered[wi][p]
				if !ok {
					missed[wi]++
					cell = fmt.Sprintf("> %v", cfg.recoverTimeout)
					continue
				}
				slowest = max(slowest, d)
				writes[wi] = append(writes[wi], d.Seconds())
			}
			if cell == "" {
				cell = secs(slowest)
			}
			fmt.Printf(" %s |", cell)
		}
		fmt.Printf(" %s |\n", secs(r.restart))
	}
	fmt.Println()
	fmt.Println("| from the kill to | samples | median | max | target | verdict |")
	fmt.Println("|---|---:|---:|---:|---:|---|")
	for wi, w := range writers {
		if len(writes[wi]) > 0 {
			// Judged on the value as printed (two decimals).
			mx := math.Round(slices.Max(writes[wi])*100) / 100
			fmt.Printf("| **first acknowledged write**, %c: %s (per partition) | %d | %.2f s | %.2f s | < 5 s | %s |\n",
				'A'+wi, w.name, len(writes[wi]), median(writes[wi]), mx, verdict(mx < 5 && missed[wi] == 0))
		}
		if missed[wi] > 0 {
			fmt.Printf("| %c: no write within %v | %d partitions | | | 0 | **misses** |\n", 'A'+wi, cfg.recoverTimeout, missed[wi])
		}
	}
	if len(elections) > 0 {
		fmt.Printf("| a survivor leads the Raft group (per group) | %d | %.2f s | %.2f s | | |\n", len(elections), median(elections), slices.Max(elections))
	}
	if len(named) > 0 {
		fmt.Printf("| Metadata names a live leader (per partition) | %d | %.2f s | %.2f s | | |\n", len(named), median(named), slices.Max(named))
	}
	fmt.Println()
	for wi, w := range writers {
		var acked, failed int64
		var firstErr error
		for _, p := range w.probes {
			p.mu.Lock()
			acked += p.acked
			failed += p.failed
			if firstErr == nil {
				firstErr = p.firstErr
			}
			p.mu.Unlock()
		}
		fmt.Printf("%c: %d records acknowledged, %d failed", 'A'+wi, acked, failed)
		if firstErr != nil {
			fmt.Printf(" (first error: %v)", firstErr)
		}
		fmt.Println(".")
	}
}

func joinOr(xs []string, empty string) string {
	if len(xs) == 0 {
		return empty
	}
	return strings.Join(xs, ", ")
}
