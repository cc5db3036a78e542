package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// produceRun is one produce run on one cluster size.
type produceRun struct {
	binary string // "" with no -baseline-binary
	nodes  int
	rep    int
	res    harness.ProduceResult
	// nodeCPU is each node's CPU time (utime+stime) over the run, in node
	// id order; genCPU the load generator's (this process's); leads how
	// many data groups each node led when the run started.
	nodeCPU []time.Duration
	genCPU  time.Duration
	leads   []int
}

// cpuPerRecord is CPU time per acknowledged record: each node's, the load
// generator's and their sum. Unlike records/s it does not depend on how much
// of the machine other work took, so runs on a busy machine compare.
func (r produceRun) cpuPerRecord() (nodes []time.Duration, gen, total time.Duration) {
	if r.res.Records == 0 {
		return nil, 0, 0
	}
	per := func(d time.Duration) time.Duration { return d / time.Duration(r.res.Records) }
	for _, d := range r.nodeCPU {
		nodes = append(nodes, per(d))
		total += d
	}
	total += r.genCPU
	return nodes, per(r.genCPU), per(total)
}

// produceSetup is one cluster the produce phase runs on.
type produceSetup struct {
	binary string // "" with no -baseline-binary
	c      *harness.Cluster
}

// runProduce starts one node and three nodes side by side and alternates
// produce runs between them, each into a new topic deleted after it. With
// -baseline-binary it also starts one node and three of that binary, and each
// repetition runs all four, the order rotating from one repetition to the
// next, so both binaries see the same machine.
func runProduce(ctx context.Context, cfg config) error {
	binaries := []string{""}
	if cfg.baselineBinary != "" {
		binaries = []string{cfg.binary, cfg.baselineBinary}
	}
	var setups []produceSetup
	for _, bin := range binaries {
		bc := cfg
		if bin != "" {
			bc.binary = bin
		}
		for _, nodes := range []int{1, 3} {
			c, err := startCluster(ctx, bc, nodes)
			if err != nil {
				return err
			}
			defer c.Close()
			setups = append(setups, produceSetup{binary: bin, c: c})
		}
	}

	var runs []produceRun
	for rep := 1; rep <= cfg.repeat; rep++ {
		order := setups
		if len(setups) == 2 {
			if rep%2 == 0 {
				order = []produceSetup{setups[1], setups[0]}
			}
		} else {
			k := (rep - 1) % len(setups)
			order = append(slices.Clone(setups[k:]), setups[:k]...)
		}
		for _, st := range order {
			tag := ""
			switch {
			case len(binaries) == 1:
			case st.binary == binaries[0]:
				tag = "new-"
			default:
				tag = "baseline-"
			}
			run, err := produceOnce(ctx, cfg, st.c, tag, rep)
			if err != nil {
				return err
			}
			run.binary = st.binary
			runs = append(runs, run)
		}
	}
	printProduce(cfg, binaries, runs)
	return nil
}

// produceOnce runs the workload once on c, in a new topic with replication
// factor len(c.Nodes), and measures the CPU time every node and the load
// generator spent on it. With -profile-dir it also takes a CPU profile of
// every node during the run.
func produceOnce(ctx context.Context, cfg config, c *harness.Cluster, tag string, rep int) (produceRun, error) {
	nodes := len(c.Nodes)
	run := produceRun{nodes: nodes, rep: rep}
	lead, err := c.WaitSettled(ctx, 60*time.Second, 100*time.Millisecond, true)
	if err != nil {
		return run, fmt.Errorf("%d node(s) before run %d: %w", nodes, rep, err)
	}
	for _, n := range c.Nodes {
		run.leads = append(run.leads, len(lead.LedBy(n.ID)))
	}
	topic := fmt.Sprintf("bench-produce-%s%d-%dn", tag, rep, nodes)
	seeds := c.KafkaAddrs()
	if err := createTopic(ctx, c, topic, cfg.produceParts, nodes); err != nil {
		return run, err
	}
	log.Printf("produce run %d on %d node(s): %d records", rep, nodes, 2*cfg.keys)
	before, err := clusterCPU(c)
	if err != nil {
		return run, err
	}
	genBefore, err := cpuTicks(os.Getpid())
	if err != nil {
		return run, err
	}
	profiles := startProfiles(ctx, cfg, c, tag, rep)
	res, err := harness.Produce(ctx, harness.ProduceConfig{
		Seeds:       seeds,
		Topic:       topic,
		Records:     2 * cfg.keys,
		Keys:        cfg.keys,
		KeyBytes:    cfg.keyBytes,
		ValueBytes:  cfg.valueBytes,
		Linger:      cfg.linger,
		MaxBuffered: cfg.maxBuffered,
		Duration:    cfg.produceTimeout,
	})
	run.res = res
	genAfter, gerr := cpuTicks(os.Getpid())
	after, cerr := clusterCPU(c)
	profiles.wait()
	if err != nil {
		return run, fmt.Errorf("produce run %d on %d node(s): %w", rep, nodes, err)
	}
	if err := errors.Join(gerr, cerr); err != nil {
		return run, err
	}
	run.genCPU = ticksDuration(genAfter - genBefore)
	for i := range after {
		run.nodeCPU = append(run.nodeCPU, ticksDuration(after[i]-before[i]))
	}
	if err := harness.DeleteTopic(ctx, seeds, topic); err != nil {
		log.Printf("after produce run %d on %d node(s): %v", rep, nodes, err)
	}
	return run, nil
}

// clusterCPU returns every node's utime+stime in clock ticks, in id order.
func clusterCPU(c *harness.Cluster) ([]int64, error) {
	out := make([]int64, len(c.Nodes))
	for i, n := range c.Nodes {
		pid := n.PID()
		if pid == 0 {
			return nil, fmt.Errorf("node %d is not running", n.ID)
		}
		t, err := cpuTicks(pid)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

func ticksDuration(ticks int64) time.Duration {
	return time.Duration(ticks) * time.Second / clockTicks
}

// profileSet is the CPU profiles being taken during one run.
type profileSet struct{ wg sync.WaitGroup }

func (p *profileSet) wait() { p.wg.Wait() }

// startProfiles starts fetching a -profile-window CPU profile from every
// node's /debug/pprof/profile (the nodes run with --pprof), after
// -profile-delay so the producer is at full rate, and writes each to
// -profile-dir/produce-<tag><nodes>n-run<rep>-node<id>.pprof (tag: "new-" or
// "baseline-" with -baseline-binary). Failures are logged:
// a profile is a by-product of the run, not its result.
func startProfiles(ctx context.Context, cfg config, c *harness.Cluster, tag string, rep int) *profileSet {
	p := &profileSet{}
	if cfg.profileDir == "" {
		return p
	}
	for _, n := range c.Nodes {
		name := filepath.Join(cfg.profileDir, fmt.Sprintf("produce-%s%dn-run%d-node%d.pprof", tag, len(c.Nodes), rep, n.ID))
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.HTTPAddr, int(cfg.profileWindow.Seconds()))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := sleep(ctx, cfg.profileDelay); err != nil {
				return
			}
			if err := fetchTo(ctx, url, name); err != nil {
				log.Printf("cpu profile of node %d: %v", n.ID, err)
				return
			}
			log.Printf("cpu profile of node %d in %s", n.ID, name)
		}()
	}
	return p
}

// fetchTo writes the body of a GET of url to the file name.
func fetchTo(ctx context.Context, url, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func printProduce(cfg config, binaries []string, runs []produceRun) {
	fmt.Printf("Workload: %d distinct keys each written twice (%d records), key %d B, value %d B, %d partitions, franz-go acks=all, idempotent, linger %v, %d records buffered; 3 nodes with replication factor 3. Runs alternate between the clusters.\n\n",
		cfg.keys, 2*cfg.keys, cfg.keyBytes, cfg.valueBytes, cfg.produceParts, cfg.linger, cfg.maxBuffered)
	if len(binaries) > 1 {
		fmt.Printf("Binaries: %s (new) and %s (baseline).\n\n", binaries[0], binaries[1])
	}
	label := func(bin string) string {
		switch {
		case len(binaries) == 1:
			return ""
		case bin == binaries[0]:
			return "new "
		}
		return "baseline "
	}
	fmt.Println("| run | nodes | records acked | seconds | records/s | MB/s | p50 | p99 | failed |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	type key struct {
		bin   string
		nodes int
	}
	rate := map[key][]float64{}
	mb := map[key][]float64{}
	cpu := map[key][]float64{}
	for _, r := range runs {
		fmt.Printf("| %d | %s%d | %d | %.2f | %.0f | %.1f | %.1f ms | %.1f ms | %d |\n",
			r.rep, label(r.binary), r.nodes, r.res.Records, r.res.Elapsed.Seconds(), r.res.RecordsPerSec(), r.res.MBPerSec(),
			float64(r.res.P50)/1e6, float64(r.res.P99)/1e6, r.res.Failed)
		k := key{r.binary, r.nodes}
		rate[k] = append(rate[k], r.res.RecordsPerSec())
		mb[k] = append(mb[k], r.res.MBPerSec())
	}
	fmt.Println()
	fmt.Println("CPU time per acknowledged record (utime+stime from /proc/<pid>/stat over the run; \"leads\" is how many data groups the node led):")
	fmt.Println()
	fmt.Println("| run | nodes | node 1 | node 2 | node 3 | load generator | total |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|")
	for _, r := range runs {
		nodes, gen, total := r.cpuPerRecord()
		cells := make([]string, 3)
		for i := range cells {
			if i < len(nodes) {
				cells[i] = fmt.Sprintf("%.2f µs (leads %d)", us(nodes[i]), r.leads[i])
			}
		}
		fmt.Printf("| %d | %s%d | %s | %.2f µs | %.2f µs |\n", r.rep, label(r.binary), r.nodes, strings.Join(cells, " | "), us(gen), us(total))
		k := key{r.binary, r.nodes}
		cpu[k] = append(cpu[k], us(total))
	}
	for _, bin := range binaries {
		fmt.Println()
		if len(binaries) > 1 {
			fmt.Printf("%s(%s):\n\n", label(bin), bin)
		}
		one, three := key{bin, 1}, key{bin, 3}
		r1, r3 := median(rate[one]), median(rate[three])
		m1, m3 := median(mb[one]), median(mb[three])
		c1, c3 := median(cpu[one]), median(cpu[three])
		fmt.Println("| median of runs | 1 node | 3 nodes, RF 3 | 3 nodes / 1 node | target | verdict |")
		fmt.Println("|---|---:|---:|---:|---:|---|")
		fmt.Printf("| records/s | %.0f | %.0f | %.0f%% | >= 60%% | %s |\n", r1, r3, 100*r3/r1, verdict(r3 >= 0.6*r1))
		fmt.Printf("| MB/s | %.1f | %.1f | %.0f%% | >= 60%% | %s |\n", m1, m3, 100*m3/m1, verdict(m3 >= 0.6*m1))
		fmt.Printf("| CPU per record, all processes | %.2f µs | %.2f µs | %.0f%% (1 node / 3 nodes) | | |\n", c1, c3, 100*c1/c3)
	}
	for _, r := range runs {
		if r.res.Failed > 0 {
			fmt.Printf("\nrun %d on %s%d node(s): %d records not acknowledged (first error: %v)\n", r.rep, label(r.binary), r.nodes, r.res.Failed, r.res.FirstErr)
		}
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
