package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/integration/bench/harness"
	"github.com/shardcache/shardcache/raftfsm"
)

// rebuildTopic is the topic the rebuild phase loads.
const rebuildTopic = "bench-rebuild"

var (
	// restoreUnsupported matches the log line of a follower whose state
	// machine refuses a leader's snapshot (raftfsm before snapshot restore).
	restoreUnsupported = regexp.MustCompile(`restoring a snapshot.*not supported`)
	// restoreFailed matches raft's log line for any failed snapshot restore.
	restoreFailed = regexp.MustCompile(`msg="failed to restore snapshot"`)
	// snapshotInstalled matches raft's log line for an installed snapshot.
	snapshotInstalled = regexp.MustCompile(`msg="installed remote snapshot"`)
)

// rebuildResult is what the rebuild phase measured.
type rebuildResult struct {
	node       int32
	groups     []uint32
	liveKeys   int64
	liveBytes  int64
	load       harness.ProduceResult
	ready      time.Duration // start to /readyz 200 (status ready)
	caughtUp   time.Duration // start to every group caught up
	snapshots  int64         // snapshots the node installed
	afterKeys  int64         // live keys and bytes on the rebuilt node
	afterBytes int64
	logs       []groupLog // the data groups' logs after the load
	filled     int        // single-record writes added to reach the snapshot threshold
	// notSupported is the log line that says the node cannot restore a
	// snapshot; the measurement could not run.
	notSupported string
}

func runRebuild(ctx context.Context, cfg config) error {
	c, err := startCluster(ctx, cfg, 3)
	if err != nil {
		return err
	}
	defer c.Close()
	seeds := c.KafkaAddrs()
	if err := createTopic(ctx, c, rebuildTopic, cfg.produceParts, 3); err != nil {
		return err
	}
	r := rebuildResult{node: int32(cfg.rebuildNode)}
	log.Printf("rebuild: loading %d keys", cfg.keys)
	r.load, err = harness.Produce(ctx, harness.ProduceConfig{
		Seeds:       seeds,
		Topic:       rebuildTopic,
		Records:     cfg.keys,
		Keys:        cfg.keys,
		KeyBytes:    cfg.keyBytes,
		ValueBytes:  cfg.valueBytes,
		Linger:      cfg.linger,
		MaxBuffered: cfg.maxBuffered,
		Duration:    cfg.produceTimeout,
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if r.load.Failed > 0 {
		return fmt.Errorf("load: %d records not acknowledged (first error: %v)", r.load.Failed, r.load.FirstErr)
	}
	// Every replica holds everything before the node is taken down.
	loaded, err := waitCaughtUp(ctx, c, nil, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("after the load: %w", err)
	}
	if cfg.rebuildFill {
		if r.filled, err = fillLogs(ctx, c, loaded); err != nil {
			return fmt.Errorf("filling the raft logs: %w", err)
		}
		if r.filled > 0 {
			if loaded, err = waitCaughtUp(ctx, c, nil, 2*time.Minute); err != nil {
				return fmt.Errorf("after filling the raft logs: %w", err)
			}
		}
	}
	// Give the nodes time to snapshot and compact the groups whose log is
	// long enough, so the rebuilt node needs snapshots, not just the log.
	if r.logs, err = waitSnapshots(ctx, c, loaded, cfg.snapshotWait); err != nil {
		return err
	}

	victim := c.Node(r.node)
	st, err := victim.Status(ctx)
	if err != nil {
		return err
	}
	if _, ok := st.Topic(rebuildTopic); !ok {
		return fmt.Errorf("node %d does not list topic %s", r.node, rebuildTopic)
	}
	r.liveKeys, r.liveBytes = liveData(st)
	for _, g := range st.Raft {
		r.groups = append(r.groups, g.RaftGroupID)
	}
	slices.Sort(r.groups)

	log.Printf("rebuild: stopping node %d, wiping %s", r.node, victim.DataDir)
	if err := victim.Stop(); err != nil {
		return err
	}
	if err := victim.Wipe(); err != nil {
		return err
	}
	// Node 1 bootstrapped without --join; rejoining empty it needs one.
	victim.Join = nil
	for _, n := range c.Nodes {
		if n != victim {
			victim.Join = append(victim.Join, n.ClusterAddr)
		}
	}
	unsupported := victim.Watch(restoreUnsupported)
	failedRestore := victim.Watch(restoreFailed)
	installed := victim.Watch(snapshotInstalled)

	start := time.Now()
	if err := victim.Launch(ctx); err != nil {
		return err
	}
	ready := make(chan time.Duration, 1)
	go func() {
		if victim.WaitReady(ctx, cfg.rebuildTimeout) == nil {
			ready <- time.Since(start)
		}
		close(ready)
	}()
	after, err := waitCaughtUp(ctx, c, func() error {
		if l := unsupported.First(); l != "" {
			r.notSupported = l
			return errRestoreUnsupported
		}
		if failedRestore.Count() > 0 {
			return fmt.Errorf("node %d failed to restore a snapshot: %s", r.node, failedRestore.First())
		}
		if !victim.Running() {
			return fmt.Errorf("node %d is not running", r.node)
		}
		select {
		case <-victim.Exited():
			return fmt.Errorf("node %d exited; last lines:\n%s", r.node, victim.Tail(20))
		default:
		}
		return nil
	}, cfg.rebuildTimeout)
	r.caughtUp = time.Since(start)
	r.snapshots = installed.Count()
	if errors.Is(err, errRestoreUnsupported) {
		printRebuild(cfg, r)
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %d after %v: %w", r.node, r.caughtUp.Round(time.Millisecond), err)
	}
	r.ready = <-ready
	if s := after[r.node]; s != nil {
		r.afterKeys, r.afterBytes = liveData(s)
	}
	printRebuild(cfg, r)
	return nil
}

var errRestoreUnsupported = errors.New("snapshot restore is not supported")

// liveData sums the live keys and bytes of every topic on a node: what a
// rebuilt node has to receive.
func liveData(s *harness.Status) (keys, bytes int64) {
	for _, t := range s.Topics {
		keys += t.LiveKeys
		bytes += t.LiveBytes
	}
	return keys, bytes
}

// fillTopic receives the single-record writes of fillLogs.
const fillTopic = "bench-rebuild-fill"

// fillLogs makes every data group's Raft log reach the snapshot threshold
// (plus a margin), so the nodes snapshot and compact it and a node that
// rejoins empty must be sent snapshots, as it would be after a while in
// production: a load in large batches leaves a few hundred entries per
// group. Each write is one small record produced alone (one Produce request,
// one log entry), into a topic with a partition in each data group. It
// returns the number of writes.
func fillLogs(ctx context.Context, c *harness.Cluster, statuses map[int32]*harness.Status) (int, error) {
	target := raftfsm.DefaultConfig().SnapshotThreshold + 64
	need := map[uint32]int{}
	for _, s := range statuses {
		for _, g := range s.Raft {
			if g.State == "Leader" && g.RaftGroupID != 0 && g.LastIndex < target {
				need[g.RaftGroupID] = int(target - g.LastIndex)
			}
		}
	}
	if len(need) == 0 {
		return 0, nil
	}
	// Partitions go to data groups round-robin by shard id, so as many
	// partitions as data groups (all but group 0) cover every group.
	parts := len(statuses[c.Nodes[0].ID].Raft) - 1
	if err := createTopic(ctx, c, fillTopic, parts, 3); err != nil {
		return 0, err
	}
	st, err := c.Nodes[0].Status(ctx)
	if err != nil {
		return 0, err
	}
	t, _ := st.Topic(fillTopic)
	partOf := map[uint32]int32{}
	for _, p := range t.Partitions {
		if _, ok := partOf[p.RaftGroupID]; !ok {
			partOf[p.RaftGroupID] = p.Partition
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.KafkaAddrs()...),
		kgo.DefaultProduceTopic(fillTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	total := 0
	for _, n := range need {
		total += n
	}
	log.Printf("rebuild: %d single-record writes so every data group's raft log reaches %d entries", total, target)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for g, n := range need {
		p, ok := partOf[g]
		if !ok {
			return 0, fmt.Errorf("no partition of %s in raft group %d", fillTopic, g)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				r := &kgo.Record{Partition: p, Key: []byte(fmt.Sprintf("fill-%d-%d", g, i)), Value: []byte("x")}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return total, firstErr
}

// groupLog is a data group's Raft log after the load.
type groupLog struct {
	group     uint32
	lastIndex uint64
	// snapshot is the lowest, over the nodes, of each node's newest
	// snapshot index (0: some node has none).
	snapshot uint64
}

// waitSnapshots waits, for at most wait, until every node has a snapshot of
// each data group whose log reached raft's snapshot threshold (raftfsm's
// default, 2048 entries); the nodes check every 30 s or so. Groups with
// shorter logs are never snapshotted and a new replica gets their whole log.
// It returns each data group's log length and lowest snapshot index.
func waitSnapshots(ctx context.Context, c *harness.Cluster, statuses map[int32]*harness.Status, wait time.Duration) ([]groupLog, error) {
	threshold := raftfsm.DefaultConfig().SnapshotThreshold
	var logs []groupLog
	for _, s := range statuses {
		for _, g := range s.Raft {
			if g.State == "Leader" && g.RaftGroupID != 0 {
				logs = append(logs, groupLog{group: g.RaftGroupID, lastIndex: g.LastIndex})
			}
		}
	}
	slices.SortFunc(logs, func(a, b groupLog) int { return int(a.group) - int(b.group) })
	deadline := time.Now().Add(wait)
	logged := false
	for {
		missing := 0
		for i := range logs {
			l := &logs[i]
			l.snapshot = 0
			for k, n := range c.Nodes {
				snaps, err := n.RaftSnapshots()
				if err != nil {
					return nil, err
				}
				if k == 0 || snaps[l.group] < l.snapshot {
					l.snapshot = snaps[l.group]
				}
			}
			if l.snapshot == 0 && l.lastIndex >= threshold {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return logs, nil
		}
		if !logged {
			log.Printf("rebuild: waiting up to %v for every node to snapshot %d data group(s) past %d log entries", wait, missing, threshold)
			logged = true
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

// waitCaughtUp polls every running node's /v1/status every 100 ms until, for
// every Raft group, each node carrying it has committed and applied as far
// as the group's leader (raft's applied index in /v1/status counts only
// entries that reach the state machine, so the leader's applied index, not
// its commit index, is the bar for applied). check, when set, runs first on
// every poll and ends the wait with its error. It returns the statuses of
// the last poll.
func waitCaughtUp(ctx context.Context, c *harness.Cluster, check func() error, timeout time.Duration) (map[int32]*harness.Status, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	why := "no poll yet"
	for {
		if check != nil {
			if err := check(); err != nil {
				return nil, err
			}
		}
		var statuses map[int32]*harness.Status
		statuses, why = caughtUp(ctx, c)
		if why == "" {
			return statuses, nil
		}
		select {
		case <-deadline.C:
			return statuses, fmt.Errorf("replicas not caught up within %v: %s", timeout, why)
		case <-ctx.Done():
			return statuses, ctx.Err()
		case <-tick.C:
		}
	}
}

// caughtUp takes one look; why is "" when every replica has caught up.
func caughtUp(ctx context.Context, c *harness.Cluster) (map[int32]*harness.Status, string) {
	statuses := map[int32]*harness.Status{}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		s, err := n.Status(ctx)
		if err != nil {
			return nil, fmt.Sprintf("node %d: %v", n.ID, err)
		}
		statuses[n.ID] = s
	}
	// Each group's leader, as the nodes that lead it say.
	leader := map[uint32]harness.RaftGroupStatus{}
	carriers := map[uint32]int{}
	for _, s := range statuses {
		for _, g := range s.Raft {
			carriers[g.RaftGroupID]++
			if g.State == "Leader" {
				leader[g.RaftGroupID] = g
			}
		}
	}
	for id, s := range statuses {
		if !s.Node.Ready {
			return statuses, fmt.Sprintf("node %d not ready", id)
		}
	}
	for g := range carriers {
		l, ok := leader[g]
		if !ok {
			return statuses, fmt.Sprintf("raft group %d has no leader", g)
		}
		for id, s := range statuses {
			gs, ok := s.RaftGroup(g)
			if !ok {
				continue
			}
			if gs.CommitIndex < l.CommitIndex || gs.AppliedIndex < l.AppliedIndex {
				return statuses, fmt.Sprintf("node %d raft group %d at commit %d applied %d, leader at commit %d applied %d",
					id, g, gs.CommitIndex, gs.AppliedIndex, l.CommitIndex, l.AppliedIndex)
			}
		}
	}
	// A rebuilt node carries the groups its peers do (replication factor 3
	// on three nodes).
	for g, k := range carriers {
		if k != len(statuses) {
			return statuses, fmt.Sprintf("raft group %d open on %d of %d nodes", g, k, len(statuses))
		}
	}
	return statuses, ""
}

func printRebuild(cfg config, r rebuildResult) {
	mb := float64(r.liveBytes) / 1e6
	fmt.Printf("Load: %d keys once each (key %d B, value %d B) into %d partitions, replication factor 3, in %.1f s (%.0f records/s). Node %d is stopped (SIGTERM), its data dir removed and started again with --node-id %d --join <the other two>; timed from that start until every Raft group it carries (%s) has committed and applied as far as its leader, by the /v1/status of both.\n\n",
		cfg.keys, cfg.keyBytes, cfg.valueBytes, cfg.produceParts, r.load.Elapsed.Seconds(), r.load.RecordsPerSec(),
		r.node, r.node, groupList(r.groups))
	if r.filled > 0 {
		fmt.Printf("Then %d single-record writes to %s, so every data group's Raft log passes the snapshot threshold (%d entries) and the nodes snapshot and compact it, as a long-running cluster would; the nodes had up to %v to do so.\n\n",
			r.filled, fillTopic, raftfsm.DefaultConfig().SnapshotThreshold, cfg.snapshotWait)
	}
	fmt.Println("| raft group | log entries before the wipe | snapshot at index (lowest over the nodes) |")
	fmt.Println("|---:|---:|---:|")
	for _, l := range r.logs {
		snap := "none"
		if l.snapshot > 0 {
			snap = strconv.FormatUint(l.snapshot, 10)
		}
		fmt.Printf("| %d | %d | %s |\n", l.group, l.lastIndex, snap)
	}
	fmt.Println()
	if r.notSupported != "" {
		fmt.Printf("**Not measured: the rebuilt node cannot restore the snapshot its leaders send.** It logged:\n\n    %s\n\n", r.notSupported)
		fmt.Printf("(after %.1f s; snapshot restore is being finished on branch `snapshot`; rerun with -phases rebuild once it is merged.)\n", r.caughtUp.Seconds())
		return
	}
	how := "log replay only (no snapshot was installed: the leaders still had the whole log)"
	if r.snapshots > 0 {
		how = fmt.Sprintf("%d snapshot(s) installed, then log", r.snapshots)
	}
	rate := mb / r.caughtUp.Seconds()
	fmt.Println("| measurement | value | target | verdict |")
	fmt.Println("|---|---:|---:|---|")
	fmt.Printf("| live data on the node before the wipe (all topics) | %d keys, %.1f MB | | |\n", r.liveKeys, mb)
	fmt.Printf("| start to /readyz 200 | %s | | |\n", secs(r.ready))
	fmt.Printf("| start to caught up | %s | | |\n", secs(r.caughtUp))
	fmt.Printf("| rebuild rate (live bytes / time to caught up) | %.1f MB/s | >= 100 MB/s | %s |\n", rate, verdict(rate >= 100))
	fmt.Printf("| how it caught up | %s | | |\n", how)
	match := "matches"
	if r.afterKeys != r.liveKeys || r.afterBytes != r.liveBytes {
		match = "**differs**"
	}
	fmt.Printf("| live data on the rebuilt node | %d keys, %.1f MB (%s) | | |\n", r.afterKeys, float64(r.afterBytes)/1e6, match)
}

func groupList(gs []uint32) string {
	s := ""
	for i, g := range gs {
		if i > 0 {
			s += ", "
		}
		s += strconv.FormatUint(uint64(g), 10)
	}
	return s
}
