package raftfsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

func TestLogicalSnapshot(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	info, err := c.node.CreateTopic(ctx, "snap", 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.node.Produce(ctx, "snap", 0, shardstore.NoProducer, keyed("s", 3)); err != nil {
			t.Fatal(err)
		}
	}
	g := c.node.groups[info.Partitions[0].Group]
	if err := g.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	applied, _ := c.store.Applied(g.id)
	marker, closer, err := c.store.LogDB().Get(raftGroupPrefix(g.id, raftKindSnap))
	if err != nil {
		t.Fatalf("snapshot marker: %v", err)
	}
	if len(marker) != 13 || binary.BigEndian.Uint64(marker[5:]) != applied {
		t.Fatalf("marker %x, applied %d", marker, applied)
	}
	closer.Close()

	c.restart()
	// Raft did not restore the snapshot (NoSnapshotRestoreOnStart): the state
	// came from Pebble, and entries after the snapshot were skipped or applied.
	g = c.node.groups[info.Partitions[0].Group]
	st, err := c.store.State(info.Partitions[0].Shard)
	if err != nil || st.HighWatermark != 15 {
		t.Fatalf("state after restart: %+v, %v", st, err)
	}
	res, err := c.node.Produce(ctx, "snap", 0, shardstore.NoProducer, keyed("t", 1))
	if err != nil || res.BaseOffset != 15 {
		t.Fatalf("produce after snapshot and restart: %+v, %v", res, err)
	}
	if err := g.fsm.Restore(io.NopCloser(strings.NewReader("x"))); !errors.Is(err, shardstore.ErrBadSnapshot) {
		t.Fatalf("Restore of garbage = %v", err)
	}
}

// raftPeer is one Raft group's replica over its own store, for snapshot tests:
// a raft.Raft with the package's fsm, LogStore and snapshot store over an
// InmemTransport.
type raftPeer struct {
	tb      testing.TB
	id      raft.ServerID
	addr    raft.ServerAddress
	group   uint32
	fs      vfs.FS
	dataDir string // on fs
	snapDir string // on the OS filesystem (raft.FileSnapshotStore)

	store *shardstore.Store
	fsm   *fsm
	logs  *LogStore
	snaps raft.SnapshotStore
	trans *raft.InmemTransport
	raft  *raft.Raft
	meta  atomic.Pointer[metadata]

	// wrapSnaps, when set, wraps the snapshot store given to Raft.
	wrapSnaps func(raft.SnapshotStore) raft.SnapshotStore
}

func newRaftPeer(tb testing.TB, name string, group uint32, fs vfs.FS) *raftPeer {
	tb.Helper()
	dir := tb.TempDir()
	return &raftPeer{tb: tb, id: raft.ServerID(name), addr: raft.ServerAddress(name), group: group, fs: fs,
		dataDir: filepath.Join(dir, "data"), snapDir: filepath.Join(dir, "raft", "group")}
}

func resolveDefaults(o map[string]string) topicconfig.Config {
	c, _ := topicconfig.Resolve(o, nil)
	return c
}

func (p *raftPeer) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = p.id
	rc.HeartbeatTimeout = 50 * time.Millisecond
	rc.ElectionTimeout = 50 * time.Millisecond
	rc.LeaderLeaseTimeout = 25 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.TrailingLogs = 2
	rc.SnapshotThreshold = 1 << 20 // snapshots are taken by the tests
	rc.SnapshotInterval = time.Hour
	rc.BatchApplyCh = true
	rc.NoSnapshotRestoreOnStart = true
	rc.NoLegacyTelemetry = true
	rc.Logger = newHclog(testLogger(p.tb).With(keyGroup, p.group, "peer", p.id), "raft")
	return rc
}

// openStore opens the store and the FSM over it, then the snapshot store
// (which may restore a stored snapshot).
func (p *raftPeer) openStore() {
	p.tb.Helper()
	store, err := shardstore.Open(p.dataDir, shardstore.Options{FS: p.fs, Logger: testLogger(p.tb), CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		p.tb.Fatal(err)
	}
	p.store = store
	m, _ := newMetrics(nil, &pendingBudget{})
	if p.fsm, err = newFSM(p.group, store, &processor{resolve: resolveDefaults}, testLogger(p.tb), m); err != nil {
		p.tb.Fatal(err)
	}
	if p.group == metaGroup {
		md, err := loadMetadata(store.DB(), resolveDefaults)
		if err != nil {
			p.tb.Fatal(err)
		}
		p.meta.Store(md)
		p.fsm.getMeta, p.fsm.setMeta = p.meta.Load, p.meta.Store
		p.fsm.reload = func() error {
			md, err := loadMetadata(store.DB(), resolveDefaults)
			if err == nil {
				p.meta.Store(md)
			}
			return err
		}
	}
	if p.logs, err = NewLogStore(store.LogDB(), p.group); err != nil {
		p.tb.Fatal(err)
	}
	if p.snaps, err = openSnapshotStore(p.snapDir, p.fsm, 0, p.raftConfig().Logger); err != nil {
		p.tb.Fatal(err)
	}
}

// start opens the store if needed and starts Raft, bootstrapping a one-voter
// group when bootstrap is set.
func (p *raftPeer) start(bootstrap bool) {
	p.tb.Helper()
	if p.store == nil {
		p.openStore()
	}
	snaps := p.snaps
	if p.wrapSnaps != nil {
		snaps = p.wrapSnaps(snaps)
	}
	_, p.trans = raft.NewInmemTransport(p.addr)
	rc := p.raftConfig()
	if bootstrap {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: p.id, Address: p.addr}}}
		if err := raft.BootstrapCluster(rc, p.logs, p.logs, snaps, p.trans, boot); err != nil {
			p.tb.Fatal(err)
		}
	}
	r, err := raft.NewRaft(rc, p.fsm, p.logs, p.logs, snaps, p.trans)
	if err != nil {
		p.tb.Fatal(err)
	}
	p.raft = r
	p.tb.Cleanup(p.stop)
}

// stop shuts Raft down and closes the store; safe to call twice.
func (p *raftPeer) stop() {
	if p.raft != nil {
		if err := p.raft.Shutdown().Error(); err != nil {
			p.tb.Errorf("raft shutdown: %v", err)
		}
		p.trans.Close()
		p.raft = nil
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			p.tb.Errorf("store close: %v", err)
		}
		p.store = nil
	}
}

func connect(a, b *raftPeer) {
	a.trans.Connect(b.addr, b.trans)
	b.trans.Connect(a.addr, a.trans)
}

func (p *raftPeer) waitLeader() {
	p.tb.Helper()
	waitFor(p.tb, string(p.id)+" to lead", 10*time.Second, func() bool { return p.raft.State() == raft.Leader })
}

// apply proposes c and fails on any error, Raft's or the FSM's. A lost
// leadership (a peer was away long enough) is waited out and retried: the
// tests compare replicas, and a retried entry lands on every one of them.
func (p *raftPeer) apply(c *Command) any {
	p.tb.Helper()
	for attempt := 0; ; attempt++ {
		p.waitLeader()
		f := p.raft.Apply(EncodeCommand(nil, c), 5*time.Second)
		err := f.Error()
		if (errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader)) && attempt < 20 {
			continue
		}
		if err != nil {
			p.tb.Fatalf("apply %s: %v", c.Type, err)
		}
		if err, ok := f.Response().(error); ok {
			p.tb.Fatalf("apply %s: %v", c.Type, err)
		}
		return f.Response()
	}
}

func (p *raftPeer) applied() uint64 {
	p.tb.Helper()
	a, err := p.store.Applied(p.group)
	if err != nil {
		p.tb.Fatal(err)
	}
	return a
}

// snapshotAndTrim takes a snapshot and checks that the log no longer starts at
// 1, so a new follower can only catch up through InstallSnapshot.
func (p *raftPeer) snapshotAndTrim() {
	p.tb.Helper()
	if err := p.raft.Snapshot().Error(); err != nil {
		p.tb.Fatalf("snapshot: %v", err)
	}
	if first, _ := p.logs.FirstIndex(); first <= 1 {
		p.tb.Fatalf("log not trimmed: first index %d", first)
	}
}

// rawDump lists the keys and values of [start, end).
func rawDump(tb testing.TB, s *shardstore.Store, start, end []byte) []string {
	tb.Helper()
	it, err := s.DB().NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, fmt.Sprintf("%q=%x", it.Key(), it.Value()))
	}
	return out
}

// groupView is what readers can see of a group on one replica.
func groupView(tb testing.TB, s *shardstore.Store, group uint32) string {
	tb.Helper()
	var b strings.Builder
	applied, _ := s.Applied(group)
	fmt.Fprintf(&b, "applied %d\n", applied)
	for _, id := range s.GroupShards(group) {
		st, err := s.State(id)
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&b, "shard %d %+v\n", id, st)
		for _, r := range readAll(tb, s, id) {
			fmt.Fprintf(&b, "  %d %q=%q\n", r.Offset, r.Key, r.Value)
			if r.Key != nil {
				lr, ok, err := s.Lookup(id, r.Key)
				if err != nil {
					tb.Fatal(err)
				}
				fmt.Fprintf(&b, "    lookup %v %d %q\n", ok, lr.Offset, lr.Value)
			}
		}
	}
	if group == metaGroup {
		for _, kv := range rawDump(tb, s, []byte{prefixMeta}, []byte{prefixMeta + 1}) {
			fmt.Fprintln(&b, kv)
		}
	}
	return b.String()
}

func produce(shard shardstore.ShardID, prefix string, n int) *Command {
	return &Command{Type: CmdProduce, Shard: shard, Options: shardstore.AppendOptions{Policy: shardstore.PolicyCompact}, Producer: shardstore.NoProducer, Records: keyed(prefix, n)}
}

// snapshotCase is one group whose snapshot a new replica must install.
type snapshotCase struct {
	name  string
	group uint32
	// fill writes the leader's state; more writes one more entry.
	fill func(p *raftPeer)
	more func(p *raftPeer, i int)
}

var snapshotCases = []snapshotCase{
	{
		name:  "DataGroup",
		group: 1,
		fill: func(p *raftPeer) {
			p.apply(&Command{Type: CmdCreateShards, Shards: []shardstore.ShardID{10, 11, 12}})
			for i := range 20 {
				p.apply(produce(shardstore.ShardID(10+i%2), fmt.Sprintf("round%d", i%3), 5))
			}
			p.apply(&Command{Type: CmdProduce, Shard: 10, Options: shardstore.AppendOptions{Policy: shardstore.PolicyCompact},
				Producer: shardstore.NoProducer, Records: []shardstore.Record{{Key: []byte("round0-key-1")}}})
			p.apply(&Command{Type: CmdDeleteShards, Shards: []shardstore.ShardID{12}})
		},
		more: func(p *raftPeer, i int) { p.apply(produce(11, fmt.Sprintf("more%d", i), 2)) },
	},
	{
		name:  "MetadataGroup",
		group: metaGroup,
		fill: func(p *raftPeer) {
			p.apply(&Command{Type: CmdSetClusterID, ClusterID: "cluster-a"})
			for i := range 10 {
				p.apply(&Command{Type: CmdCreateTopic, Topic: topicMeta{Name: fmt.Sprintf("t%d", i), ID: newTopicID(),
					Partitions: []PartitionInfo{{Partition: 0, Shard: shardstore.ShardID(1 + i), Group: 1}}}})
			}
			p.apply(&Command{Type: CmdDeleteTopic, Topic: topicMeta{Name: "t3"}})
		},
		more: func(p *raftPeer, i int) {
			p.apply(&Command{Type: CmdAllocateProducerIDs, Count: 1000})
		},
	},
}

// staleFollowerState gives a new replica's store leftovers the group snapshot
// must replace or remove, and keys it must leave alone.
func staleFollowerState(tb testing.TB, s *shardstore.Store, group uint32) {
	tb.Helper()
	b := s.NewBatch()
	defer b.Close()
	for _, c := range []struct {
		id    shardstore.ShardID
		group uint32
	}{{12, 1}, {99, 1}, {50, 2}} {
		if err := b.CreateShard(c.id, c.group); err != nil {
			tb.Fatal(err)
		}
		if _, err := b.Append(c.id, shardstore.AppendOptions{Policy: shardstore.PolicyCompact}, shardstore.NoProducer, keyed("stale", 3)); err != nil {
			tb.Fatal(err)
		}
	}
	b.SetApplied(2, 7)
	raw := b.Raw()
	for k, v := range map[string]string{"m" + "t" + "stale-topic": "\x01junk", "i/node": "identity"} {
		if err := raw.Set([]byte(k), []byte(v), nil); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// TestInstallSnapshot: a one-voter group with a trimmed log adds a second
// voter with an empty log; it can only catch up through InstallSnapshot, which
// streams the leader's group from Pebble, and ends up with the same contents,
// then keeps applying entries.
func TestInstallSnapshot(t *testing.T) {
	for _, tc := range snapshotCases {
		t.Run(tc.name, func(t *testing.T) {
			leader := newRaftPeer(t, "a", tc.group, vfs.NewMem())
			leader.start(true)
			leader.waitLeader()
			tc.fill(leader)
			leader.snapshotAndTrim()
			for i := range 3 { // after the snapshot: the stream holds them, the follower skips them
				tc.more(leader, i)
			}

			follower := newRaftPeer(t, "b", tc.group, vfs.NewMem())
			follower.openStore()
			staleFollowerState(t, follower.store, tc.group)
			follower.start(false)
			connect(leader, follower)
			if err := leader.raft.AddVoter(follower.id, follower.addr, 0, 10*time.Second).Error(); err != nil {
				t.Fatalf("AddVoter: %v", err)
			}
			for i := 3; i < 6; i++ {
				tc.more(leader, i)
			}
			want := groupView(t, leader.store, tc.group)
			waitFor(t, "the follower to apply", 10*time.Second, func() bool { return follower.applied() == leader.applied() })
			if got := groupView(t, follower.store, tc.group); got != want {
				t.Fatalf("follower:\n%s\nleader:\n%s", got, want)
			}
			if follower.fsm.skipped.Load() < 3 {
				t.Errorf("follower skipped %d entries the snapshot held, want >= 3", follower.fsm.skipped.Load())
			}
			// The stream was ingested as it arrived: only a marker is stored,
			// and Raft's restore opened that marker, not a fresh export.
			if metas, err := follower.snaps.List(); err != nil || len(metas) == 0 || metas[0].Size != snapshotMarkerLen {
				t.Errorf("follower's stored snapshots %+v (%v), want a marker", metas, err)
			}
			if id := follower.snaps.(*snapshotStore).received.Load(); id != nil {
				t.Errorf("received snapshot %s was never opened for its restore", *id)
			}
			if got := rawDump(t, follower.store, []byte("i"), []byte("j")); len(got) != 1 {
				t.Errorf("node-local keys after install: %v", got)
			}
			if _, err := follower.store.State(50); err != nil {
				t.Errorf("shard of another group: %v", err)
			}
			if tc.group == metaGroup {
				lm, fm := leader.meta.Load(), follower.meta.Load()
				if fm.clusterID != lm.clusterID || len(fm.topics) != len(lm.topics) || fm.nextProducerID != lm.nextProducerID {
					t.Errorf("follower metadata %+v, leader %+v", fm, lm)
				}
			} else {
				if got, want := follower.store.Shards(), []shardstore.ShardID{10, 11, 50}; !slices.Equal(got, want) {
					t.Errorf("follower shards %v, want %v", got, want)
				}
			}
		})
	}
}

// crashingSnaps clones the follower's filesystem as a crash would leave it
// when Raft first writes a received snapshot into its sink: nothing of the
// stream is ingested yet.
type crashingSnaps struct {
	raft.SnapshotStore
	fs    *vfs.MemFS
	once  sync.Once
	clone atomic.Pointer[vfs.MemFS]
}

func (c *crashingSnaps) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := c.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	return &crashingSink{SnapshotSink: sink, c: c}, err
}

type crashingSink struct {
	raft.SnapshotSink
	c *crashingSnaps
}

func (k *crashingSink) Write(p []byte) (int, error) {
	k.c.once.Do(func() { k.c.clone.Store(k.c.fs.CrashClone(vfs.CrashCloneCfg{})) })
	return k.SnapshotSink.Write(p)
}

// TestInstallSnapshotCrash: a replica that crashes while it receives a
// snapshot (before the ingest), after the ingest but before the snapshot is
// stored, or after the install, comes back with the old state or the
// snapshot's (never with Raft past an index the store lacks) and catches up.
// A stream stored but not ingested (as a version that ingested only in
// Restore could leave it) is ingested when the store opens.
func TestInstallSnapshotCrash(t *testing.T) {
	for _, crash := range []string{"BeforeIngest", "IngestedNotStored", "AfterInstall", "StoredStream"} {
		t.Run(crash, func(t *testing.T) {
			leader := newRaftPeer(t, "a", 1, vfs.NewMem())
			leader.start(true)
			leader.waitLeader()
			snapshotCases[0].fill(leader)
			leader.snapshotAndTrim()
			snapApplied := leader.applied()

			fs := vfs.NewCrashableMem()
			follower := newRaftPeer(t, "b", 1, fs)
			var clone *vfs.MemFS
			hook := &crashingSnaps{fs: fs}
			switch crash {
			case "BeforeIngest":
				follower.wrapSnaps = func(s raft.SnapshotStore) raft.SnapshotStore { hook.SnapshotStore = s; return hook }
			case "IngestedNotStored":
				follower.openStore()
				var once sync.Once
				follower.snaps.(*snapshotStore).testHookIngested = func() {
					once.Do(func() { clone = fs.CrashClone(vfs.CrashCloneCfg{}) })
				}
			case "StoredStream":
				storeStream(t, leader, follower)
			}
			if crash != "StoredStream" {
				follower.start(false)
				connect(leader, follower)
				if err := leader.raft.AddVoter(follower.id, follower.addr, 0, 10*time.Second).Error(); err != nil {
					t.Fatalf("AddVoter: %v", err)
				}
				waitFor(t, "the follower to apply", 10*time.Second, func() bool { return follower.applied() == leader.applied() })
			}
			switch crash {
			case "BeforeIngest", "IngestedNotStored":
				if crash == "BeforeIngest" {
					clone = hook.clone.Load()
				}
				follower.stop()
				// The snapshot directory is on the OS filesystem, which
				// the clone does not cover: at those crash points the
				// snapshot was not stored yet.
				if err := os.RemoveAll(filepath.Join(follower.snapDir, "snapshots")); err != nil {
					t.Fatal(err)
				}
			case "AfterInstall":
				clone = fs.CrashClone(vfs.CrashCloneCfg{})
				follower.stop()
			case "StoredStream":
				clone = fs.CrashClone(vfs.CrashCloneCfg{})
			}

			// Restart on what the crash left.
			restarted := newRaftPeer(t, "b", 1, clone)
			restarted.dataDir, restarted.snapDir = follower.dataDir, follower.snapDir
			store, err := shardstore.Open(restarted.dataDir, shardstore.Options{FS: clone, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			before, _ := store.Applied(1)
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			switch {
			case (crash == "BeforeIngest" || crash == "StoredStream") && before >= snapApplied:
				t.Fatalf("the crash left applied %d, the snapshot holds %d: no window to test", before, snapApplied)
			case (crash == "IngestedNotStored" || crash == "AfterInstall") && before < snapApplied:
				t.Fatalf("the ingest was not durable: applied %d after a crash, snapshot %d", before, snapApplied)
			}
			restarted.openStore() // restores a stored stream when the store lacks it
			if got := restarted.applied(); crash == "StoredStream" && got < snapApplied {
				t.Fatalf("after reopening, applied %d < stored snapshot %d", got, snapApplied)
			}
			restarted.start(false)
			connect(leader, restarted)
			// With b a stopped voter, a lost its quorum of two and stepped
			// down; the election after b's restart may go to either, and
			// the test drives a: hand leadership back to it.
			waitFor(t, "a leader", 10*time.Second, func() bool {
				return leader.raft.State() == raft.Leader || restarted.raft.State() == raft.Leader
			})
			if restarted.raft.State() == raft.Leader {
				if err := restarted.raft.LeadershipTransferToServer(leader.id, leader.addr).Error(); err != nil {
					t.Fatalf("leadership transfer back to a: %v", err)
				}
				leader.waitLeader()
			}
			if crash == "StoredStream" {
				if err := leader.raft.AddVoter(restarted.id, restarted.addr, 0, 10*time.Second).Error(); err != nil {
					t.Fatalf("AddVoter: %v", err)
				}
			}
			for i := range 3 {
				snapshotCases[0].more(leader, i)
			}
			waitFor(t, "the restarted follower to apply", 10*time.Second, func() bool { return restarted.applied() == leader.applied() })
			if got, want := groupView(t, restarted.store, 1), groupView(t, leader.store, 1); got != want {
				t.Fatalf("restarted follower:\n%s\nleader:\n%s", got, want)
			}
		})
	}
}

// storeStream stores the leader's group snapshot as a received stream in the
// follower's snapshot store, as Raft did before receiveSink ingested streams
// (it stored the file, then Restore ingested it), and leaves the follower's
// store without it.
func storeStream(t *testing.T, leader, follower *raftPeer) {
	t.Helper()
	e, err := leader.store.Export(1, shardstore.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	files, err := raft.NewFileSnapshotStoreWithLogger(follower.snapDir, snapshotsRetain, follower.raftConfig().Logger)
	if err != nil {
		t.Fatal(err)
	}
	last := leader.raft.LastIndex()
	cf := leader.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("x")
	sink, err := files.Create(raft.SnapshotVersionMax, last, leader.raft.CurrentTerm(), cf.Configuration(), last, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(sink, e); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	// An empty store on the follower's filesystem.
	store, err := shardstore.Open(follower.dataDir, shardstore.Options{FS: follower.fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestore covers fsm.Restore's answers to what it may be given.
func TestRestore(t *testing.T) {
	src := newRaftPeer(t, "src", 1, vfs.NewMem())
	src.start(true)
	src.waitLeader()
	snapshotCases[0].fill(src)
	exp, err := src.store.Export(1, shardstore.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := io.ReadAll(exp)
	exp.Close()
	if err != nil {
		t.Fatal(err)
	}
	marker := func(group uint32, applied uint64) []byte {
		b := binary.BigEndian.AppendUint32([]byte{snapshotMarkerVersion}, group)
		return binary.BigEndian.AppendUint64(b, applied)
	}
	tests := []struct {
		name    string
		applied uint64 // the receiver's applied index before
		input   []byte
		wantErr error // nil: success
		after   uint64
	}{
		{name: "Stream", applied: 3, input: stream, after: src.applied()},
		{name: "StreamAlreadyHeld", applied: src.applied() + 5, input: stream, after: src.applied() + 5},
		{name: "Truncated", applied: 3, input: stream[:len(stream)/2], wantErr: shardstore.ErrBadSnapshot, after: 3},
		{name: "MarkerHeld", applied: 9, input: marker(1, 9), after: 9},
		{name: "MarkerAhead", applied: 9, input: marker(1, 10), wantErr: errMarkerNotHere, after: 9},
		{name: "MarkerOtherGroup", applied: 9, input: marker(2, 1), wantErr: errMarkerNotHere, after: 9},
		{name: "Empty", applied: 9, input: nil, wantErr: shardstore.ErrBadSnapshot, after: 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newRaftPeer(t, "dst", 1, vfs.NewMem())
			p.openStore()
			t.Cleanup(p.stop)
			b := p.store.NewBatch()
			b.SetApplied(1, tc.applied)
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			p.fsm.applied = tc.applied
			err := p.fsm.Restore(io.NopCloser(bytes.NewReader(tc.input)))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Restore = %v, want %v", err, tc.wantErr)
			}
			if p.fsm.applied != tc.after || p.applied() != tc.after {
				t.Fatalf("applied: fsm %d, store %d, want %d", p.fsm.applied, p.applied(), tc.after)
			}
			if p.fsm.stopped.Load() {
				t.Fatal("Restore stopped the FSM")
			}
		})
	}
}

// TestSnapshotRefusedAfterFailure: a stopped FSM must not let Raft snapshot
// (and trim) past the entries its failed commit lost.
func TestSnapshotRefusedAfterFailure(t *testing.T) {
	p := newRaftPeer(t, "a", 1, vfs.NewMem())
	p.openStore()
	t.Cleanup(p.stop)
	p.fsm.failed = errors.New("disk gone")
	if _, err := p.fsm.Snapshot(); err == nil {
		t.Fatal("Snapshot of a stopped FSM succeeded")
	}
}

// TestOpenRefusesStoreBehindSnapshot: a stored marker above the store's applied
// index (the store lost what Raft will take as applied) fails the open.
func TestOpenRefusesStoreBehindSnapshot(t *testing.T) {
	p := newRaftPeer(t, "a", 1, vfs.NewMem())
	p.openStore()
	t.Cleanup(p.stop)
	_, trans := raft.NewInmemTransport("a")
	sink, err := p.snaps.Create(raft.SnapshotVersionMax, 5, 1, raft.Configuration{}, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&logicalSnapshot{store: p.store, group: 1, applied: 5}).Persist(sink); err != nil {
		t.Fatal(err)
	}
	if _, err := openSnapshotStore(p.snapDir, p.fsm, 0, p.raftConfig().Logger); err == nil || !strings.Contains(err.Error(), "has only 0") {
		t.Fatalf("open with a marker ahead of the store: %v", err)
	}
}

// TestBackfillShardGroups: a shard created before the store kept its group
// gets it from metadata once; a disagreement is an error.
func TestBackfillShardGroups(t *testing.T) {
	p := newRaftPeer(t, "a", 1, vfs.NewMem())
	p.openStore()
	t.Cleanup(p.stop)
	b := p.store.NewBatch()
	for _, id := range []shardstore.ShardID{1, 2} {
		if err := b.CreateShard(id, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	// Shard 2 as an older release left it: no registry entry (s g <group> <shard>).
	reg := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32([]byte("sg"), 1), 2)
	if err := p.store.DB().Delete(reg, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	p.stop()
	p.openStore()
	if _, ok := p.store.ShardGroup(2); ok {
		t.Fatal("shard 2 has a group before the backfill")
	}
	if err := backfillShardGroups(p.store, map[shardstore.ShardID]uint32{1: 1, 2: 1, 3: 2}); err != nil {
		t.Fatalf("backfill: %v", err)
	}
	if got := p.store.GroupShards(1); !slices.Equal(got, []shardstore.ShardID{1, 2}) {
		t.Fatalf("GroupShards(1) after backfill = %v", got)
	}
	if err := backfillShardGroups(p.store, map[shardstore.ShardID]uint32{2: 4}); !errors.Is(err, shardstore.ErrGroupConflict) {
		t.Fatalf("backfill against the registry: %v", err)
	}
}

func TestConfigSnapshotRate(t *testing.T) {
	cfg := testConfig(t.TempDir(), &shardstore.Store{})
	cfg.SnapshotRateBytes = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SnapshotRateBytes") {
		t.Fatalf("Validate = %v", err)
	}
}

// TestOpenAfterBarrier: a snapshot taken right after a barrier (every new
// leader's first entry here) has a Raft index above the FSM's applied index,
// since barriers never reach the FSM. Open must still stream it, sized
// exactly, at the applied index the marker records.
func TestOpenAfterBarrier(t *testing.T) {
	p := newRaftPeer(t, "a", 1, vfs.NewMem())
	p.start(true)
	p.waitLeader()
	snapshotCases[0].fill(p)
	if err := p.raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	p.snapshotAndTrim()
	metas, err := p.snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("List = %v, %v", metas, err)
	}
	meta, rc, err := p.snaps.Open(metas[0].ID)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rc.Close()
	stream, err := io.ReadAll(rc)
	if err != nil || int64(len(stream)) != meta.Size {
		t.Fatalf("read %d bytes of %d: %v", len(stream), meta.Size, err)
	}
	_, applied, err := shardstore.ParseSnapshotPrefix(stream)
	if err != nil || applied != p.applied() || applied >= meta.Index {
		t.Fatalf("stream at applied %d (%v), store %d, snapshot index %d", applied, err, p.applied(), meta.Index)
	}
}

// FuzzSnapshotRef: any bytes decode to a ref or an error, never a panic, and
// a decoded ref encodes back to the bytes it came from.
func FuzzSnapshotRef(f *testing.F) {
	valid := snapshotRef{group: 3, applied: 1 << 40, node: 7, export: 0xdeadbeef}.appendTo(nil)
	f.Add([]byte{})
	f.Add([]byte(snapshotRefMagic))
	f.Add(valid)
	f.Add(append(slices.Clone(valid), 0, 0, 0))
	f.Add(append(slices.Clone(valid[:snapshotRefLen-1]), 0xff))
	bad := slices.Clone(valid)
	bad[4] = 2
	f.Add(bad)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseSnapshotRef(b)
		if err != nil {
			return
		}
		if got := r.appendTo(nil); !bytes.Equal(got, b[:snapshotRefLen]) {
			t.Fatalf("ref %+v encodes to %x, decoded from %x", r, got, b[:snapshotRefLen])
		}
	})
}

func TestSnapshotRefRejects(t *testing.T) {
	valid := snapshotRef{group: 1, applied: 2, node: 3, export: 4}.appendTo(nil)
	v2 := slices.Clone(valid)
	v2[4] = 2
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short":     valid[:snapshotRefLen-1],
		"a stream":  append([]byte("SCGS"), valid[4:]...),
		"version 2": v2,
	} {
		if _, err := parseSnapshotRef(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if r, err := parseSnapshotRef(valid); err != nil || r != (snapshotRef{group: 1, applied: 2, node: 3, export: 4}) {
		t.Errorf("valid ref: %+v, %v", r, err)
	}
	// Deadline padding grows with the estimate and a slow rate, bounded.
	if a, b := refDeadlineBytes(0, 0), refDeadlineBytes(1e9, 0); a < 1 || b <= a {
		t.Errorf("padding %d for nothing, %d for 1 GB", a, b)
	}
	if a, b := refDeadlineBytes(1e9, 0), refDeadlineBytes(1e9, 1e6); b <= a {
		t.Errorf("padding %d unlimited, %d at 1 MB/s", a, b)
	}
	if n := refDeadlineBytes(1<<62, 1); n > 1<<20 {
		t.Errorf("padding %d over the bound", n)
	}
}
