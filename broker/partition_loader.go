package broker

// The partition loader: the one rule both coordinators (group_coordinator.go,
// txn_coordinator.go) follow for the partitions of their compacted state
// topic (__consumer_offsets, __transaction_state), as Kafka's
// CoordinatorRuntime does for both:
//
//   - a key (group id, transactional id) belongs to the partition it hashes
//     to (partitionFor), and this node coordinates it while it leads that
//     partition's Raft group; elsewhere NOT_COORDINATOR;
//   - a partition is served only once the leader table names this node as
//     its leader (the epoch there is the coordinator epoch, which
//     transaction markers carry) and its state has been read from the shard
//     in that epoch; until then COORDINATOR_LOAD_IN_PROGRESS;
//   - a partition is loaded once per epoch, under its own load lock (a
//     semaphore of one, so waiting honours a request's context), holding no
//     coordinator lock: requests for other partitions go on meanwhile;
//   - it is loaded eagerly: watch loads every partition this node comes to
//     lead on each metadata change (a new leader's report to the leader table
//     is one), as Kafka loads a partition on election, and unloads every
//     partition it stopped leading, so a deposed coordinator stops serving
//     and keeps no stale state.
//
// The coordinator supplies what loading and unloading mean for its state.

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// partitionLoader keeps the load state of one coordinator's partitions.
type partitionLoader struct {
	node  *raftfsm.Node
	log   *slog.Logger
	topic *internalTopic
	stop  <-chan struct{} // the coordinator's; closed by its close

	// load reads partition pi of the topic and installs its state as loaded
	// in epoch; it runs under the partition's load lock. An error answers
	// COORDINATOR_LOAD_IN_PROGRESS.
	load func(pi raftfsm.PartitionInfo, epoch int32) error
	// unload drops partition p's state once this node no longer leads it;
	// it runs under the partition's load lock.
	unload func(p int32)

	mu sync.Mutex
	// loaded maps a partition to the epoch it was loaded in.
	loaded map[int32]int32
	// loading maps a partition to its load lock.
	loading map[int32]chan struct{}
}

func newPartitionLoader(node *raftfsm.Node, log *slog.Logger, topic *internalTopic, stop <-chan struct{},
	load func(raftfsm.PartitionInfo, int32) error, unload func(int32)) *partitionLoader {
	return &partitionLoader{
		node: node, log: log, topic: topic, stop: stop, load: load, unload: unload,
		loaded:  map[int32]int32{},
		loading: map[int32]chan struct{}{},
	}
}

// info returns the topic, creating it when create is set (internalTopic.info).
func (l *partitionLoader) info(ctx context.Context, create bool) (raftfsm.TopicInfo, error) {
	return l.topic.info(ctx, l.node, l.log, create)
}

// route finds the partition of key, creating the topic on first use, and
// makes sure this node coordinates it and has loaded it. Errors:
// NOT_COORDINATOR (another node leads the partition, or closing),
// COORDINATOR_NOT_AVAILABLE (no topic and it cannot be created now),
// COORDINATOR_LOAD_IN_PROGRESS.
func (l *partitionLoader) route(ctx context.Context, key string) (raftfsm.TopicInfo, int32, error) {
	select {
	case <-l.stop:
		return raftfsm.TopicInfo{}, 0, errNotCoordinator
	default:
	}
	if !l.node.Ready() {
		return raftfsm.TopicInfo{}, 0, errCoordinatorLoad
	}
	ti, err := l.info(ctx, true)
	if err != nil {
		if errors.Is(err, raftfsm.ErrNotReady) || errors.Is(err, raftfsm.ErrNotLeader) {
			return ti, 0, errCoordinatorNA
		}
		return ti, 0, err
	}
	p := partitionFor(key, len(ti.Partitions))
	if _, err := l.ensure(ctx, ti, p); err != nil {
		return ti, p, err
	}
	return ti, p, nil
}

// lock takes partition p's load lock; the error is the answer when ctx
// ends (COORDINATOR_LOAD_IN_PROGRESS) or the coordinator closes
// (NOT_COORDINATOR) first.
func (l *partitionLoader) lock(ctx context.Context, p int32) (unlock func(), err error) {
	l.mu.Lock()
	ch := l.loading[p]
	if ch == nil {
		ch = make(chan struct{}, 1)
		l.loading[p] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, errCoordinatorLoad
	case <-l.stop:
		return nil, errNotCoordinator
	}
}

// loadedIn reports whether partition p is loaded in epoch.
func (l *partitionLoader) loadedIn(p, epoch int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.loaded[p]
	return ok && e == epoch
}

// ensure loads partition p of ti if this node leads it and has not loaded
// it in the current epoch, and returns that epoch.
func (l *partitionLoader) ensure(ctx context.Context, ti raftfsm.TopicInfo, p int32) (int32, error) {
	pi := ti.Partitions[p]
	if !l.node.IsLeader(pi.Group) {
		return 0, errNotCoordinator
	}
	// Until this node's report as the group's leader is in the leader table,
	// the table names the previous leader and its epoch, which this node must
	// not carry: wait for it (the report changes the metadata, and watch
	// loads then).
	leader, epoch, ok := l.node.GroupLeader(pi.Group)
	if !ok || leader != l.node.NodeID() {
		return 0, errCoordinatorLoad
	}
	if l.loadedIn(p, epoch) {
		return epoch, nil
	}
	unlock, err := l.lock(ctx, p)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if l.loadedIn(p, epoch) {
		return epoch, nil // loaded while we waited
	}
	if err := l.load(pi, epoch); err != nil {
		// A shard not created here yet (the topic is new) is no failure.
		if !errors.Is(err, shardstore.ErrUnknownShard) {
			l.log.Error("load coordinator partition failed", logKeyTopic, l.topic.name,
				logKeyPartition, p, logKeyError, err)
		}
		return 0, errCoordinatorLoad
	}
	l.mu.Lock()
	l.loaded[p] = epoch
	l.mu.Unlock()
	return epoch, nil
}

// loadLed loads every partition this node leads and has not loaded in the
// current epoch, and unloads every loaded partition it no longer leads.
func (l *partitionLoader) loadLed(ctx context.Context) {
	ti, ok := l.node.Topic(l.topic.name)
	if !ok {
		return
	}
	for _, pi := range ti.Partitions {
		if !l.node.IsLeader(pi.Group) {
			l.unloadLost(ctx, pi)
			continue
		}
		if _, err := l.ensure(ctx, ti, pi.Partition); err != nil && ctx.Err() == nil {
			l.log.Debug("coordinator partition not loaded", logKeyTopic, l.topic.name,
				logKeyPartition, pi.Partition, logKeyError, err)
		}
	}
}

// unloadLost drops partition pi's state if it is loaded and this node no
// longer leads it.
func (l *partitionLoader) unloadLost(ctx context.Context, pi raftfsm.PartitionInfo) {
	l.mu.Lock()
	_, ok := l.loaded[pi.Partition]
	l.mu.Unlock()
	if !ok {
		return
	}
	unlock, err := l.lock(ctx, pi.Partition)
	if err != nil {
		return
	}
	defer unlock()
	if l.node.IsLeader(pi.Group) {
		return // leads it again: ensure reloads it in the new epoch
	}
	l.mu.Lock()
	_, ok = l.loaded[pi.Partition]
	delete(l.loaded, pi.Partition)
	l.mu.Unlock()
	if !ok {
		return
	}
	l.unload(pi.Partition)
	l.log.Info("coordinator partition unloaded", logKeyTopic, l.topic.name, logKeyPartition, pi.Partition)
}

// watch runs loadLed now and after every metadata change until ctx ends;
// the caller runs it on a goroutine of its own, so a slow read never holds
// up the coordinator's deadlines.
func (l *partitionLoader) watch(ctx context.Context) {
	for {
		changed := l.node.MetadataChanged()
		l.loadLed(ctx)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// coordinatorLife is what both coordinators share of their lifetime: a
// context and a stop channel that end with close, and every goroutine they
// start, which close waits for. The coordinators embed it.
type coordinatorLife struct {
	stop   chan struct{} // closed by shutdown
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	// wg counts every goroutine started by goFunc, which refuses new ones
	// once spawnClosed is set, so shutdown can wait for all of them.
	wg          sync.WaitGroup
	spawnMu     sync.Mutex
	spawnClosed bool
}

func (l *coordinatorLife) init() {
	l.stop = make(chan struct{})
	l.ctx, l.cancel = context.WithCancel(context.Background())
}

// goFunc runs f on a goroutine that shutdown waits for; false (and f not
// run) once shutdown has begun.
func (l *coordinatorLife) goFunc(f func()) bool {
	l.spawnMu.Lock()
	defer l.spawnMu.Unlock()
	if l.spawnClosed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
	return true
}

// shutdown refuses new goroutines, closes stop, cancels ctx (ending the
// writes under way), waits for every goroutine and then runs after (may be
// nil); only the first call does anything.
func (l *coordinatorLife) shutdown(after func()) {
	l.once.Do(func() {
		l.spawnMu.Lock()
		l.spawnClosed = true
		l.spawnMu.Unlock()
		close(l.stop)
		l.cancel()
		l.wg.Wait()
		if after != nil {
			after()
		}
	})
}
