package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// produceRun is one produce run on one cluster size.
type produceRun struct {
	nodes int
	rep   int
	res   harness.ProduceResult
}

// runProduce starts one node and three nodes side by side and alternates
// produce runs between them, each into a new topic deleted after it.
func runProduce(ctx context.Context, cfg config) error {
	one, err := startCluster(ctx, cfg, 1)
	if err != nil {
		return err
	}
	defer one.Close()
	three, err := startCluster(ctx, cfg, 3)
	if err != nil {
		return err
	}
	defer three.Close()

	var runs []produceRun
	for rep := 1; rep <= cfg.repeat; rep++ {
		order := []*harness.Cluster{one, three}
		if rep%2 == 0 {
			order = []*harness.Cluster{three, one}
		}
		for _, c := range order {
			res, err := produceOnce(ctx, cfg, c, rep)
			if err != nil {
				return err
			}
			runs = append(runs, produceRun{nodes: len(c.Nodes), rep: rep, res: res})
		}
	}
	printProduce(cfg, runs)
	return nil
}

// produceOnce runs the workload once on c, in a new topic with replication
// factor len(c.Nodes).
func produceOnce(ctx context.Context, cfg config, c *harness.Cluster, rep int) (harness.ProduceResult, error) {
	nodes := len(c.Nodes)
	if _, err := c.WaitSettled(ctx, 60*time.Second, 100*time.Millisecond, true); err != nil {
		return harness.ProduceResult{}, fmt.Errorf("%d node(s) before run %d: %w", nodes, rep, err)
	}
	topic := fmt.Sprintf("bench-produce-%d-%dn", rep, nodes)
	seeds := c.KafkaAddrs()
	if err := createTopic(ctx, c, topic, cfg.produceParts, nodes); err != nil {
		return harness.ProduceResult{}, err
	}
	log.Printf("produce run %d on %d node(s): %d records", rep, nodes, 2*cfg.keys)
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
	if err != nil {
		return res, fmt.Errorf("produce run %d on %d node(s): %w", rep, nodes, err)
	}
	if err := harness.DeleteTopic(ctx, seeds, topic); err != nil {
		log.Printf("after produce run %d on %d node(s): %v", rep, nodes, err)
	}
	return res, nil
}

func printProduce(cfg config, runs []produceRun) {
	fmt.Printf("Workload: %d distinct keys each written twice (%d records), key %d B, value %d B, %d partitions, franz-go acks=all, idempotent, linger %v, %d records buffered; 3 nodes with replication factor 3. Runs alternate between the two.\n\n",
		cfg.keys, 2*cfg.keys, cfg.keyBytes, cfg.valueBytes, cfg.produceParts, cfg.linger, cfg.maxBuffered)
	fmt.Println("| run | nodes | records acked | seconds | records/s | MB/s | p50 | p99 | failed |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	rate := map[int][]float64{}
	mb := map[int][]float64{}
	for _, r := range runs {
		fmt.Printf("| %d | %d | %d | %.2f | %.0f | %.1f | %.1f ms | %.1f ms | %d |\n",
			r.rep, r.nodes, r.res.Records, r.res.Elapsed.Seconds(), r.res.RecordsPerSec(), r.res.MBPerSec(),
			float64(r.res.P50)/1e6, float64(r.res.P99)/1e6, r.res.Failed)
		rate[r.nodes] = append(rate[r.nodes], r.res.RecordsPerSec())
		mb[r.nodes] = append(mb[r.nodes], r.res.MBPerSec())
	}
	fmt.Println()
	r1, r3 := median(rate[1]), median(rate[3])
	m1, m3 := median(mb[1]), median(mb[3])
	fmt.Println("| median of runs | 1 node | 3 nodes, RF 3 | 3 nodes / 1 node | target | verdict |")
	fmt.Println("|---|---:|---:|---:|---:|---|")
	fmt.Printf("| records/s | %.0f | %.0f | %.0f%% | >= 60%% | %s |\n", r1, r3, 100*r3/r1, verdict(r3 >= 0.6*r1))
	fmt.Printf("| MB/s | %.1f | %.1f | %.0f%% | >= 60%% | %s |\n", m1, m3, 100*m3/m1, verdict(m3 >= 0.6*m1))
	for _, r := range runs {
		if r.res.Failed > 0 {
			fmt.Printf("\nrun %d on %d node(s): %d records not acknowledged (first error: %v)\n", r.rep, r.nodes, r.res.Failed, r.res.FirstErr)
		}
	}
}
