package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// nodeSample is one node's resource use over a sampling window.
type nodeSample struct {
	cpuPercent float64 // of one core
	rssBytes   int64
	threads    int
	err        error
}

// nodeRestart is one node's restart.
type nodeRestart struct {
	stop, start time.Duration // SIGTERM to exit; start to /readyz 200
	err         error
}

func runPartitions(ctx context.Context, cfg config) error {
	c, err := startCluster(ctx, cfg, 3)
	if err != nil {
		return err
	}
	defer c.Close()
	seeds := c.KafkaAddrs()

	if err := sleep(ctx, cfg.idle); err != nil {
		return err
	}
	log.Printf("partitions: sampling CPU over %v before creating topics", cfg.cpuWindow)
	before := sampleNodes(ctx, c, cfg.cpuWindow)
	profileNodes(ctx, cfg, c.Nodes, cfg.cpuWindow, "idle-no-topics")()

	var topics []string
	created := time.Now()
	for left, i := cfg.partitions, 0; left > 0; i++ {
		n := min(left, cfg.topicPartitions)
		topic := fmt.Sprintf("bench-partitions-%d", i)
		if err := harness.CreateTopic(ctx, seeds, topic, n, 3); err != nil {
			return err
		}
		topics = append(topics, topic)
		left -= n
	}
	createTime := time.Since(created)
	log.Printf("partitions: %d partitions in %d topics created in %v", cfg.partitions, len(topics), createTime.Round(time.Millisecond))
	// Every node has applied every partition before the idle wait.
	want := map[string]int{}
	for i, t := range topics {
		want[t] = min(cfg.topicPartitions, cfg.partitions-i*cfg.topicPartitions)
	}
	if err := c.WaitTopics(ctx, want, 5*time.Minute); err != nil {
		return err
	}
	applied := time.Since(created)
	if _, err := c.WaitSettled(ctx, 2*time.Minute, time.Second, true); err != nil {
		log.Printf("partitions: %v; sampling anyway", err)
	}

	if err := sleep(ctx, cfg.idle); err != nil {
		return err
	}
	log.Printf("partitions: sampling CPU over %v", cfg.cpuWindow)
	after := sampleNodes(ctx, c, cfg.cpuWindow)
	profileNodes(ctx, cfg, c.Nodes, cfg.cpuWindow, fmt.Sprintf("idle-%d-partitions", cfg.partitions))()

	restarts := make([]nodeRestart, len(c.Nodes))
	for i, n := range c.Nodes {
		if _, err := c.WaitSettled(ctx, 2*time.Minute, time.Second, true); err != nil {
			log.Printf("partitions: before restarting node %d: %v; restarting anyway", n.ID, err)
		}
		log.Printf("partitions: restarting node %d", n.ID)
		restarts[i] = restartNode(ctx, n)
		if restarts[i].err != nil && !n.Running() {
			printPartitions(cfg, c, topics, createTime, applied, before, after, restarts)
			return fmt.Errorf("restart node %d: %w", n.ID, restarts[i].err)
		}
	}
	printPartitions(cfg, c, topics, createTime, applied, before, after, restarts)
	return nil
}

// restartNode stops n with SIGTERM and starts it again, timing both halves.
func restartNode(ctx context.Context, n *harness.Node) nodeRestart {
	var r nodeRestart
	t := time.Now()
	if err := n.Stop(); err != nil {
		r.err = err // timed anyway: Stop killed it or it exited uncleanly
	}
	r.stop = time.Since(t)
	t = time.Now()
	if err := n.Start(ctx); err != nil {
		r.err = err
		return r
	}
	r.start = time.Since(t)
	return r
}

// sampleNodes samples every running node's CPU time over window, in
// parallel, and reads its RSS and thread count at the end. Nothing else
// talks to the nodes meanwhile.
func sampleNodes(ctx context.Context, c *harness.Cluster, window time.Duration) []nodeSample {
	out := make([]nodeSample, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		pid := n.PID()
		if pid == 0 {
			out[i].err = fmt.Errorf("node %d is not running", n.ID)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = sampleProcess(ctx, pid, window)
		}()
	}
	wg.Wait()
	return out
}

// clockTicks is USER_HZ, the unit of cpuTicks.
const clockTicks = harness.ClockTicks

func sampleProcess(ctx context.Context, pid int, window time.Duration) nodeSample {
	t0, err := cpuTicks(pid)
	if err != nil {
		return nodeSample{err: err}
	}
	start := time.Now()
	if err := sleep(ctx, window); err != nil {
		return nodeSample{err: err}
	}
	t1, err := cpuTicks(pid)
	if err != nil {
		return nodeSample{err: err}
	}
	elapsed := time.Since(start)
	s := nodeSample{cpuPercent: 100 * float64(t1-t0) / clockTicks / elapsed.Seconds()}
	s.rssBytes, s.threads, s.err = procStatus(pid)
	return s
}

// cpuTicks returns utime+stime of a process in clock ticks.
var cpuTicks = harness.CPUTicks

// procStatus reads VmRSS (bytes) and Threads from /proc/<pid>/status.
func procStatus(pid int) (rss int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch {
		case k == "VmRSS" && len(f) == 2 && f[1] == "kB":
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			rss = kb << 10
		case k == "Threads" && len(f) == 1:
			threads, _ = strconv.Atoi(f[0])
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, threads, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func printPartitions(cfg config, c *harness.Cluster, topics []string, create, applied time.Duration, before, after []nodeSample, restarts []nodeRestart) {
	fmt.Printf("%d partitions in %d topics of up to %d, replication factor 3 (plus the 50 partitions of __consumer_offsets), on 3 nodes. Created in %.1f s; on every node after %.1f s. CPU: utime+stime from /proc/<pid>/stat over %v, after %v idle; RSS (VmRSS) at the end of the window. Baseline: the same sample before the topics were created. Restart: SIGTERM, wait for exit, start with the same data dir and addresses, poll /readyz every 20 ms; one node at a time, the cluster settled in between.\n\n",
		cfg.partitions, len(topics), cfg.topicPartitions, create.Seconds(), applied.Seconds(), cfg.cpuWindow, cfg.idle)
	cpu := func(s nodeSample) string {
		if s.err != nil {
			return "error"
		}
		return fmt.Sprintf("%.2f%%", s.cpuPercent)
	}
	rss := func(s nodeSample) string {
		if s.err != nil {
			return "error"
		}
		return fmt.Sprintf("%.0f MiB", float64(s.rssBytes)/(1<<20))
	}
	fmt.Printf("| node | idle CPU, no topics | idle CPU, %d partitions | target | verdict | RSS, no topics | RSS, %d partitions | threads |\n", cfg.partitions, cfg.partitions)
	fmt.Println("|---:|---:|---:|---:|---|---:|---:|---:|")
	for i, n := range c.Nodes {
		b, a := before[i], after[i]
		fmt.Printf("| %d | %s | %s | < 5%% of a core | %s | %s | %s | %d |\n",
			n.ID, cpu(b), cpu(a), verdict(a.err == nil && a.cpuPercent < 5), rss(b), rss(a), a.threads)
	}
	fmt.Println()
	fmt.Println("| node | stop (SIGTERM to exit) | start to /readyz 200 | restart (SIGTERM to /readyz 200) | target | verdict |")
	fmt.Println("|---:|---:|---:|---:|---:|---|")
	for i, n := range c.Nodes {
		r := restarts[i]
		if r.start == 0 {
			fmt.Printf("| %d | %s | failed | failed | < 10 s | **misses** |\n", n.ID, secs(r.stop))
			continue
		}
		total := r.stop + r.start
		fmt.Printf("| %d | %s | %s | %s | < 10 s | %s |\n", n.ID, secs(r.stop), secs(r.start), secs(total), verdict(r.err == nil && total < 10*time.Second))
	}
	for i, n := range c.Nodes {
		for _, e := range []error{before[i].err, after[i].err, restarts[i].err} {
			if e != nil {
				fmt.Printf("\nnode %d: %v\n", n.ID, e)
			}
		}
	}
}
