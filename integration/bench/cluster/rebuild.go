package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

// rebuildRun is one wipe and rebuild of the node.
type rebuildRun struct {
	name      string
	logs      []groupLog // the data groups' logs before the wipe
	groups    []uint32   // the Raft groups the node carried
	liveKeys  int64      // live keys and bytes on the node before the wipe
	liveBytes int64
	ready     time.Duration // start to /readyz 200
	caughtUp  time.Duration // start to every group caught up
	// cpu is the CPU time (utime+stime) each node used from the start to
	// caught up: the rebuilt node's new process, the others' over that time.
	cpu        map[int32]time.Duration
	snapshots  int64 // snapshots the node installed
	afterKeys  int64 // live keys and bytes on the rebuilt node
	afterBytes int64
	haveAfter  bool
	// notSupported is the log line that says the node cannot restore a
	// snapshot; the run could not be measured.
	notSupported string
	load1        string // the 1-minute load average at the wipe
}

// cpuPerMB is the CPU time the rebuilt node and the other nodes together
// spent per MB of live data (ms/MB); unlike the rate it hardly depends on how
// much of the machine other work took.
func (r rebuildRun) cpuPerMB(rebuilt int32) (node, senders float64) {
	mb := float64(r.liveBytes) / 1e6
	if mb == 0 {
		return 0, 0
	}
	for id, d := range r.cpu {
		if id == rebuilt {
			node += d.Seconds() * 1e3 / mb
		} else {
			senders += d.Seconds() * 1e3 / mb
		}
	}
	return node, senders
}

// rebuildSetup is one cluster the rebuild phase runs on: -binary's, and with
// -baseline-binary one of that binary beside it.
type rebuildSetup struct {
	label  string // "" alone, else "new" or "baseline"
	cfg    config // with this cluster's binary
	c      *harness.Cluster
	load   harness.ProduceResult
	filled int
	runs   []rebuildRun
}

// runRebuild loads the keys, then rebuilds the node twice: first with the
// Raft logs as the load left them, then, with -rebuild-fill, after filling
// every data group's log past the snapshot threshold and letting the nodes
// snapshot it, so the node must be sent snapshots; then -rebuild-repeat - 1
// times more from snapshots. With -baseline-binary a cluster of each binary
// runs at once, and the repeated rebuilds alternate between them, the order
// swapping every time, so both see the same machine.
func runRebuild(ctx context.Context, cfg config) error {
	setups := []*rebuildSetup{{cfg: cfg}}
	if cfg.baselineBinary != "" {
		base := cfg
		base.binary = cfg.baselineBinary
		setups = []*rebuildSetup{{label: "new", cfg: cfg}, {label: "baseline", cfg: base}}
	}
	defer func() {
		for _, s := range setups {
			if s.c != nil {
				s.c.Close()
			}
		}
	}()
	defer func() { printRebuild(cfg, setups) }()
	for _, s := range setups {
		if err := s.prepare(ctx); err != nil {
			return fmt.Errorf("%s: %w", cmp.Or(s.label, "cluster"), err)
		}
	}
	if !cfg.rebuildFill {
		return nil
	}
	for i := 2; i <= cfg.rebuildRepeat; i++ {
		order := setups
		if i%2 == 1 && len(setups) == 2 {
			order = []*rebuildSetup{setups[1], setups[0]}
		}
		for _, s := range order {
			if err := s.again(ctx, i); err != nil {
				return fmt.Errorf("%s: %w", cmp.Or(s.label, "cluster"), err)
			}
		}
	}
	return nil
}

// prepare starts the cluster, loads it, rebuilds the node from the logs as
// loaded and, with -rebuild-fill, fills the logs and rebuilds it from
// snapshots.
func (s *rebuildSetup) prepare(ctx context.Context) error {
	cfg := s.cfg
	var err error
	if s.c, err = startCluster(ctx, cfg, 3); err != nil {
		return err
	}
	c := s.c
	if err := createTopic(ctx, c, rebuildTopic, cfg.produceParts, 3); err != nil {
		return err
	}
	log.Printf("rebuild: loading %d keys%s", cfg.keys, s.of())
	s.load, err = harness.Produce(ctx, harness.ProduceConfig{
		Seeds:       c.KafkaAddrs(),
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
	if s.load.Failed > 0 {
		return fmt.Errorf("load: %d records not acknowledged (first error: %v)", s.load.Failed, s.load.FirstErr)
	}

	// Every replica holds everything before the node is taken down.
	loaded, err := waitCaughtUp(ctx, c, nil, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("after the load: %w", err)
	}
	logs, err := waitSnapshots(ctx, c, loaded, 0)
	if err != nil {
		return err
	}
	r, err := rebuildOnce(ctx, cfg, c, s.label, "logs as loaded", logs)
	s.runs = append(s.runs, r)
	if err != nil || !cfg.rebuildFill {
		return err
	}

	if loaded, err = waitCaughtUp(ctx, c, nil, 2*time.Minute); err != nil {
		return fmt.Errorf("after the first rebuild: %w", err)
	}
	if s.filled, err = fillLogs(ctx, c, loaded); err != nil {
		return fmt.Errorf("filling the raft logs: %w", err)
	}
	if loaded, err = waitCaughtUp(ctx, c, nil, 2*time.Minute); err != nil {
		return fmt.Errorf("after filling the raft logs: %w", err)
	}
	// Give the nodes time to snapshot and compact the groups whose log is
	// long enough, so the rebuilt node needs snapshots, not just the log.
	if logs, err = waitSnapshots(ctx, c, loaded, cfg.snapshotWait); err != nil {
		return err
	}
	r, err = rebuildOnce(ctx, cfg, c, s.label, "logs filled and snapshotted", logs)
	s.runs = append(s.runs, r)
	return err
}

// again rebuilds the node from snapshots once more (the i-th time), once
// leadership has settled on the preferred leaders (the rebuilt node takes its
// back after 10 s).
func (s *rebuildSetup) again(ctx context.Context, i int) error {
	c := s.c
	if _, err := c.WaitSettled(ctx, 2*time.Minute, 100*time.Millisecond, true); err != nil {
		return fmt.Errorf("before snapshot rebuild %d: %w", i, err)
	}
	loaded, err := waitCaughtUp(ctx, c, nil, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("before snapshot rebuild %d: %w", i, err)
	}
	logs, err := waitSnapshots(ctx, c, loaded, 0)
	if err != nil {
		return err
	}
	r, err := rebuildOnce(ctx, s.cfg, c, s.label, fmt.Sprintf("snapshots again (%d)", i), logs)
	s.runs = append(s.runs, r)
	return err
}

// of names the cluster in log lines.
func (s *rebuildSetup) of() string {
	if s.label == "" {
		return ""
	}
	return " on the " + s.label + " cluster"
}

// rebuildOnce stops node -rebuild-node, wipes its data dir, starts it again
// with --join at the other nodes, and times it until it has caught up.
func rebuildOnce(ctx context.Context, cfg config, c *harness.Cluster, label, name string, logs []groupLog) (rebuildRun, error) {
	r := rebuildRun{name: name, logs: logs, load1: loadAverage1()}
	victim := c.Node(int32(cfg.rebuildNode))
	st, err := victim.Status(ctx)
	if err != nil {
		return r, err
	}
	r.liveKeys, r.liveBytes = liveData(st)
	for _, g := range st.Raft {
		r.groups = append(r.groups, g.RaftGroupID)
	}
	slices.Sort(r.groups)

	log.Printf("rebuild (%s%s): stopping node %d, wiping %s", cmp.Or(label+" ", ""), name, victim.ID, victim.DataDir)
	if err := victim.Stop(); err != nil {
		return r, err
	}
	if err := victim.Wipe(); err != nil {
		return r, err
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
	defer func() {
		victim.Unwatch(unsupported)
		victim.Unwatch(failedRestore)
		victim.Unwatch(installed)
	}()

	// Profiles (-profile-dir): the senders from before the start, the
	// rebuilt node from when it has logged its addresses.
	var peers []*harness.Node
	for _, n := range c.Nodes {
		if n != victim {
			peers = append(peers, n)
		}
	}
	profName := "rebuild-" + strings.ReplaceAll(strings.TrimSpace(label+" "+name), " ", "-")
	waitPeers := profileNodes(ctx, cfg, peers, cfg.profileWindow, profName)
	defer waitPeers()
	ticks0 := map[int32]int64{}
	for _, n := range peers {
		if t, err := cpuTicks(n.PID()); err == nil {
			ticks0[n.ID] = t
		}
	}
	start := time.Now()
	if err := victim.Launch(ctx); err != nil {
		return r, err
	}
	defer profileNodes(ctx, cfg, []*harness.Node{victim}, cfg.profileWindow, profName)()
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
			return fmt.Errorf("node %d failed to restore a snapshot: %s", victim.ID, failedRestore.First())
		}
		select {
		case <-victim.Exited():
			return fmt.Errorf("node %d exited; last lines:\n%s", victim.ID, victim.Tail(20))
		default:
		}
		return nil
	}, cfg.rebuildTimeout)
	r.caughtUp = time.Since(start)
	r.cpu = map[int32]time.Duration{}
	for _, n := range c.Nodes {
		t1, err := cpuTicks(n.PID())
		if err != nil {
			continue
		}
		r.cpu[n.ID] = time.Duration(t1-ticks0[n.ID]) * time.Second / clockTicks
	}
	r.snapshots = installed.Count()
	if errors.Is(err, errRestoreUnsupported) {
		// What the node claims and holds meanwhile.
		select {
		case d, ok := <-ready:
			if ok {
				r.ready = d
			}
		case <-time.After(5 * time.Second):
		}
		if s, err := victim.Status(ctx); err == nil {
			r.afterKeys, r.afterBytes = liveData(s)
			r.haveAfter = true
		}
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("node %d after %v: %w", victim.ID, r.caughtUp.Round(time.Millisecond), err)
	}
	r.ready = <-ready
	if s := after[victim.ID]; s != nil {
		r.afterKeys, r.afterBytes = liveData(s)
		r.haveAfter = true
	}
	return r, nil
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

// caughtUpPoll is how often waitCaughtUp looks: the time it reports is late
// by at most this plus one round of status requests.
const caughtUpPoll = 20 * time.Millisecond

// waitCaughtUp polls every running node's /v1/status every caughtUpPoll until
// every Raft group is caught up on every node that carries it (caughtUp).
// check, when set, runs first on every poll and ends the wait with its error.
// It returns the statuses of the last poll.
func waitCaughtUp(ctx context.Context, c *harness.Cluster, check func() error, timeout time.Duration) (map[int32]*harness.Status, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(caughtUpPoll)
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

// caughtUp takes one look; why is "" when every replica has caught up: for
// every Raft group, each node that carries it has committed and handed to
// its state machine everything any node has committed (raft's applied index
// reaches the highest commit index), and its state machine has written as far
// as any node's has (the store's applied index). The highest values over the
// nodes are the bar, not the leader's own: a replica that has just won an
// election may not have applied its log yet, and raft's applied index runs
// ahead of the state machine by up to 128 batches on a replica that catches
// up from the log.
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
	for id, s := range statuses {
		if !s.Node.Ready {
			return statuses, fmt.Sprintf("node %d not ready", id)
		}
	}
	type bar struct {
		carriers          int
		leader            bool
		commit, storeDone uint64
	}
	bars := map[uint32]*bar{}
	for _, s := range statuses {
		for _, g := range s.Raft {
			b := bars[g.RaftGroupID]
			if b == nil {
				b = &bar{}
				bars[g.RaftGroupID] = b
			}
			b.carriers++
			b.leader = b.leader || g.State == "Leader"
			b.commit = max(b.commit, g.CommitIndex)
			b.storeDone = max(b.storeDone, g.StoreApplied)
		}
	}
	for g, b := range bars {
		if !b.leader {
			return statuses, fmt.Sprintf("raft group %d has no leader", g)
		}
		for id, s := range statuses {
			gs, ok := s.RaftGroup(g)
			if !ok {
				continue
			}
			if gs.CommitIndex < b.commit || gs.AppliedIndex < b.commit || gs.StoreApplied < b.storeDone {
				return statuses, fmt.Sprintf("node %d raft group %d at commit %d applied %d store %d; highest commit %d store %d",
					id, g, gs.CommitIndex, gs.AppliedIndex, gs.StoreApplied, b.commit, b.storeDone)
			}
		}
		// A rebuilt node carries the groups its peers do (replication
		// factor 3 on three nodes).
		if b.carriers != len(statuses) {
			return statuses, fmt.Sprintf("raft group %d open on %d of %d nodes", g, b.carriers, len(statuses))
		}
	}
	return statuses, ""
}

func printRebuild(cfg config, setups []*rebuildSetup) {
	fmt.Printf("Load: %d keys once each (key %d B, value %d B) into %d partitions, replication factor 3", cfg.keys, cfg.keyBytes, cfg.valueBytes, cfg.produceParts)
	for _, s := range setups {
		fmt.Printf("; %s%d acknowledged in %.1f s (%.0f records/s)", cmp.Or(s.label+" cluster: ", ""), s.load.Records, s.load.Elapsed.Seconds(), s.load.RecordsPerSec())
	}
	fmt.Printf(". Each rebuild: node %d is stopped (SIGTERM), its data dir removed, and it is started again with --node-id %d --join <the other two>; timed from that start until every Raft group it carries has committed and applied as far as its leader, by the /v1/status of both. Rate: the live bytes of every topic on the node before the wipe, over that time.",
		cfg.rebuildNode, cfg.rebuildNode)
	if filled := setups[0].filled; filled > 0 {
		fmt.Printf(" Before the second rebuild, %d single-record writes to %s take every data group's Raft log past the snapshot threshold (%d entries), and the nodes get up to %v to snapshot and compact it, as a cluster that has run for a while would have: the node must be sent snapshots.",
			filled, fillTopic, raftfsm.DefaultConfig().SnapshotThreshold, cfg.snapshotWait)
	}
	fmt.Print("\n\n")
	if len(setups) > 1 {
		fmt.Printf("Binaries: %s (new) and %s (baseline), a cluster of each running at once; the rebuilds from snapshots after the first alternate between them, the order swapping each time.\n\n", setups[0].cfg.binary, setups[1].cfg.binary)
	}
	for _, s := range setups {
		if s.label != "" {
			fmt.Printf("### %s\n\n", s.label)
		}
		printRebuildRuns(cfg, s.c, s.runs)
	}
	if len(setups) > 1 {
		fmt.Println("\nSide by side, rebuilds from snapshots (medians):")
		fmt.Println()
		fmt.Println("| binary | rebuilds | seconds | MB/s | CPU ms/MB, rebuilt node | CPU ms/MB, the two senders | 1-min load averages |")
		fmt.Println("|---|---:|---:|---:|---:|---:|---|")
		for _, s := range setups {
			var times, rates, node, senders []float64
			var loads []string
			for _, r := range snapshotRuns(s.runs) {
				times = append(times, r.caughtUp.Seconds())
				rates = append(rates, float64(r.liveBytes)/1e6/r.caughtUp.Seconds())
				nc, sc := r.cpuPerMB(int32(cfg.rebuildNode))
				node, senders = append(node, nc), append(senders, sc)
				loads = append(loads, r.load1)
			}
			if len(times) == 0 {
				fmt.Printf("| %s | 0 | - | - | - | - | - |\n", s.label)
				continue
			}
			fmt.Printf("| %s | %d | %.2f | %.1f | %.1f | %.1f | %s |\n", s.label, len(times), median(times), median(rates), median(node), median(senders), strings.Join(loads, ", "))
		}
	}
}

// snapshotRuns are the measured rebuilds from snapshots: every run after the
// first that installed one.
func snapshotRuns(runs []rebuildRun) []rebuildRun {
	var out []rebuildRun
	for i, r := range runs {
		if i > 0 && r.notSupported == "" && r.caughtUp > 0 && r.snapshots > 0 {
			out = append(out, r)
		}
	}
	return out
}

// printRebuildRuns prints one cluster's rebuilds as a table.
func printRebuildRuns(cfg config, c *harness.Cluster, runs []rebuildRun) {
	if len(runs) == 0 || c == nil {
		return
	}
	fmt.Print("| | ")
	for i, r := range runs {
		fmt.Printf("rebuild %d: %s | ", i+1, r.name)
	}
	fmt.Println("target |")
	fmt.Print("|---|")
	for range runs {
		fmt.Print("---:|")
	}
	fmt.Println("---:|")
	row := func(label string, cell func(r rebuildRun) string, target string) {
		fmt.Printf("| %s |", label)
		for _, r := range runs {
			fmt.Printf(" %s |", cell(r))
		}
		fmt.Printf(" %s |\n", target)
	}
	measured := func(r rebuildRun) bool { return r.notSupported == "" && r.caughtUp > 0 }
	row("raft log entries per data group before the wipe", func(r rebuildRun) string {
		var parts []string
		for _, l := range r.logs {
			p := fmt.Sprintf("g%d: %d", l.group, l.lastIndex)
			if l.snapshot > 0 {
				p += fmt.Sprintf(" (snapshot at %d)", l.snapshot)
			}
			parts = append(parts, p)
		}
		return joinOr(parts, "-")
	}, "")
	row("live data on the node before the wipe", func(r rebuildRun) string {
		return fmt.Sprintf("%d keys, %.1f MB", r.liveKeys, float64(r.liveBytes)/1e6)
	}, "")
	row("start to /readyz 200", func(r rebuildRun) string {
		if r.ready == 0 {
			return "-"
		}
		return secs(r.ready)
	}, "")
	row("start to caught up", func(r rebuildRun) string {
		if !measured(r) {
			return "not measured"
		}
		return secs(r.caughtUp)
	}, "")
	row("CPU time over it, rebuilt node / others (utime+stime)", func(r rebuildRun) string {
		if !measured(r) {
			return "-"
		}
		var others []string
		for _, n := range c.Nodes {
			if n.ID != int32(cfg.rebuildNode) {
				others = append(others, secs(r.cpu[n.ID]))
			}
		}
		return secs(r.cpu[int32(cfg.rebuildNode)]) + " / " + strings.Join(others, ", ")
	}, "")
	row("CPU per MB of live data, rebuilt node / the others together", func(r rebuildRun) string {
		if !measured(r) {
			return "-"
		}
		node, senders := r.cpuPerMB(int32(cfg.rebuildNode))
		return fmt.Sprintf("%.1f / %.1f ms", node, senders)
	}, "")
	row("1-minute load average at the wipe", func(r rebuildRun) string { return r.load1 }, "")
	row("**rebuild rate**", func(r rebuildRun) string {
		if !measured(r) {
			return "not measured"
		}
		rate := float64(r.liveBytes) / 1e6 / r.caughtUp.Seconds()
		return fmt.Sprintf("%.1f MB/s, %s", rate, verdict(rate >= 100))
	}, ">= 100 MB/s")
	row("snapshots installed by the node", func(r rebuildRun) string {
		if r.notSupported != "" {
			return fmt.Sprintf("%d (restore refused)", r.snapshots)
		}
		return strconv.FormatInt(r.snapshots, 10)
	}, "")
	row("live data on the rebuilt node", func(r rebuildRun) string {
		if !r.haveAfter {
			return "-"
		}
		same := "same"
		if r.afterKeys != r.liveKeys || r.afterBytes != r.liveBytes {
			same = "**differs**"
		}
		return fmt.Sprintf("%d keys, %.1f MB (%s)", r.afterKeys, float64(r.afterBytes)/1e6, same)
	}, "")
	var times, rates []float64
	for _, r := range snapshotRuns(runs) {
		times = append(times, r.caughtUp.Seconds())
		rates = append(rates, float64(r.liveBytes)/1e6/r.caughtUp.Seconds())
	}
	if len(times) > 1 {
		fmt.Printf("\nRebuilds from snapshots: median %.2f s, %.1f MB/s over %d (%s).\n", median(times), median(rates), len(times), verdict(median(rates) >= 100))
	}
	for i, r := range runs {
		if r.notSupported != "" {
			fmt.Printf("\n**Rebuild %d not measured: the rebuilt node cannot restore the snapshots its leaders send** (after %.1f s it logged, first):\n\n    %s\n\nSnapshot restore is being finished on branch `snapshot`; rerun with `-phases rebuild` once it is merged.\n",
				i+1, r.caughtUp.Seconds(), r.notSupported)
		}
	}
}
