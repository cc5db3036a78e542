package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// metric is one row of the table for one workload: how to read it from a
// sample, how to print it, and which direction is better.
type metric struct {
	name   string
	value  func(sample) float64
	format func(float64) string
	better string
}

var metrics = []metric{
	{"produce, records/s", func(s sample) float64 { return float64(s.produced) / s.produceSecs }, thousands, "higher is better"},
	{"produce request p50", func(s sample) float64 { return s.p50.Seconds() }, millis, "lower is better"},
	{"produce request p99", func(s sample) float64 { return s.p99.Seconds() }, millis, "lower is better"},
	{"full read: records", func(s sample) float64 { return float64(s.readRecords) }, thousands, "fewer is better (same live keys)"},
	{"full read: seconds", func(s sample) float64 { return s.readSecs }, secs, "lower is better"},
	{"read rate, records/s", func(s sample) float64 { return float64(s.readRecords) / s.readSecs }, thousands, "higher is better"},
	{"data dir growth", func(s sample) float64 { return float64(s.dataDirBytes) }, mib, "lower is better"},
	{"data dir growth, idle", func(s sample) float64 { return float64(s.dataDirIdleBytes) }, mib, "lower is better"},
	{"RSS after the read", func(s sample) float64 { return float64(s.rssBytes) }, mib, "lower is better"},
	{"broker CPU per record produced", func(s sample) float64 { return perRecord(s.produceCPU, s.produced) }, micros, "lower is better"},
	{"broker CPU for the full read", func(s sample) float64 { return s.readCPU.Seconds() }, millis, "lower is better"},
}

// perRecord is d divided over n records, in seconds.
func perRecord(d time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return d.Seconds() / float64(n)
}

func printReport(cfg config, ws []workload, results map[string][]runResult, loadBefore string, took time.Duration) {
	fmt.Printf("# shardcache beside Apache Kafka %s\n\n", cfg.kafkaVersion)
	fmt.Printf("- one KRaft node (Kafka defaults, -Xmx1G -Xms1G G1 as kafka-server-start.sh) and one shardcache node (defaults), loopback, one at a time\n")
	fmt.Printf("- %d rounds interleaved (Kafka, shardcache, then shardcache, Kafka, ...); each figure is the median of the rounds\n", cfg.rounds)
	fmt.Printf("- producer (same on both): franz-go, acks=all, idempotent, linger %v, buffer bounded at %s records, 16 B keys; topics cleanup.policy=compact\n",
		cfg.client.linger, commas(cfg.client.maxBuffered))
	fmt.Printf("- produce p50/p99: round trip of each Produce request (write to response), not time in the client's buffer\n")
	fmt.Printf("- ratio: shardcache / Kafka; the last column says which direction is better\n")
	fmt.Printf("- load average before: %s; after: %s; took %v\n\n", loadBefore, loadAverage(), took.Round(time.Second))
	fmt.Println("| workload | measure | shardcache | Kafka | ratio | better |")
	fmt.Println("|---|---|---:|---:|---:|---|")
	for i, w := range ws {
		for _, m := range metrics {
			sc := harness.Median(results["shardcache"], func(r runResult) float64 { return m.value(r.samples[i]) })
			k := harness.Median(results["Kafka"], func(r runResult) float64 { return m.value(r.samples[i]) })
			fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", w.Name, m.name, m.format(sc), m.format(k), ratio(sc, k), m.better)
		}
	}
	sc := harness.Median(results["shardcache"], func(r runResult) float64 { return r.restart.Seconds() })
	k := harness.Median(results["Kafka"], func(r runResult) float64 { return r.restart.Seconds() })
	fmt.Printf("| %s | restart to serving (SIGTERM, start, first Metadata + fetch) | %s | %s | %s | lower is better |\n",
		restartAfter(ws), secs(sc), secs(k), ratio(sc, k))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func thousands(v float64) string { return commas(int(v + 0.5)) }
func millis(v float64) string    { return fmt.Sprintf("%.1f ms", v*1000) }
func secs(v float64) string      { return fmt.Sprintf("%.2f s", v) }
func mib(v float64) string       { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func micros(v float64) string    { return fmt.Sprintf("%.2f µs", v*1e6) }

// count names a workload size: 100k and 1M for round ones, else with commas.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0 && n < 1_000_000:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return commas(n)
}

// commas prints n with thousands separators: 1,000,000.
func commas(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// restartAfter names the load the restart measurement follows (see runOne).
func restartAfter(ws []workload) string {
	for i, w := range ws {
		if w.Versions == 10 {
			if i == 0 {
				return "after " + w.Name
			}
			return "after the loads up to " + w.Name
		}
	}
	return "after all of the above"
}
