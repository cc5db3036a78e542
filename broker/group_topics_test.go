package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/internal/nodetest"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// committedOf reads a group's committed offsets with kadm, as topic/partition
// -> offset.
func committedOf(t testing.TB, adm *kadm.Client, group string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var resps kadm.OffsetResponses
	for {
		var err error
		resps, err = adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resps.Error()
		}
		if err == nil {
			break
		}
		// A coordinator moving in an election answers a retriable error
		// (COORDINATOR_NOT_AVAILABLE from FindCoordinator while its
		// partition has no leader, as Kafka's does); a client asks again.
		if !kerr.IsRetriable(err) || ctx.Err() != nil {
			t.Fatalf("fetch offsets of %s: %v", group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := map[string]int64{}
	resps.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.At
		}
	})
	return out
}

// commitAll commits offsets for a group with kadm (memberless, as Flink does).
func commitAll(t testing.TB, adm *kadm.Client, group string, offsets map[string]map[int32]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var os kadm.Offsets
	for topic, ps := range offsets {
		for p, at := range ps {
			os.Add(kadm.Offset{Topic: topic, Partition: p, At: at, LeaderEpoch: -1})
		}
	}
	for {
		err := adm.CommitAllOffsets(ctx, group, os)
		if err == nil {
			return
		}
		// As in committedOf: a coordinator moving in an election (a young
		// cluster's groups move to their preferred leaders) answers a
		// retriable error, and a client commits again.
		if !kerr.IsRetriable(err) || ctx.Err() != nil {
			t.Fatalf("commit %s: %v", group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// offsetRecordGone reports whether the offset record of group/topic/partition
// is absent or a tombstone in __consumer_offsets on this node.
func offsetRecordGone(t testing.TB, gb *groupBroker, group, topic string, partition int32) error {
	t.Helper()
	ti, ok := gb.Node.Topic(offsetsTopic)
	if !ok {
		return fmt.Errorf("no %s", offsetsTopic)
	}
	p := partitionFor(group, len(ti.Partitions))
	r, ok, err := gb.Store.Lookup(ti.Partitions[p].Shard, offsetKey(group, topic, partition))
	switch {
	case err != nil:
		return err
	case ok && r.Value != nil:
		return fmt.Errorf("offset record of %s %s/%d still live", group, topic, partition)
	}
	return nil
}

// TestDeleteTopicsDropsCommittedOffsets is the regression test for committed
// offsets outliving their topic: offset 1000 committed on orders/0, orders
// deleted and re-created, and OffsetFetch still answered 1000, so a Java or
// Flink group skipped the new topic's first 1000 records. Kafka drops the
// offsets of deleted partitions; so does the coordinator, through Raft.
func TestDeleteTopicsDropsCommittedOffsets(t *testing.T) {
	gb := newGroupBroker(t)
	cl := gb.client(t)
	adm := kadm.NewClient(cl)
	ctx := adminCtx(t)
	createTopics(t, cl, 2, "orders", "payments")
	commitAll(t, adm, "billing", map[string]map[int32]int64{"orders": {0: 1000, 1: 5}, "payments": {0: 7}})
	commitAll(t, adm, "audit", map[string]map[int32]int64{"orders": {1: 42}})

	// Deleted and re-created at once: the coordinator may never see the
	// name missing, only its id changed.
	if r, err := adm.DeleteTopics(ctx, "orders"); err != nil || r.Error() != nil {
		t.Fatalf("delete: %v %v", err, r.Error())
	}
	createTopics(t, cl, 2, "orders")

	if got := committedOf(t, adm, "billing"); len(got) != 1 || got["payments/0"] != 7 {
		t.Fatalf("billing after orders was re-created: %v, want only payments/0=7", got)
	}
	if got := committedOf(t, adm, "audit"); len(got) != 0 {
		t.Fatalf("audit after orders was re-created: %v, want nothing", got)
	}
	// Removed through Raft, not only hidden.
	waitUntil(t, 10*time.Second, "offset records of the deleted topic removed", func() error {
		for _, k := range []struct {
			group string
			p     int32
		}{{"billing", 0}, {"billing", 1}, {"audit", 1}} {
			if err := offsetRecordGone(t, gb, k.group, "orders", k.p); err != nil {
				return err
			}
		}
		return nil
	})

	// The new topic's commits work and stay.
	commitAll(t, adm, "billing", map[string]map[int32]int64{"orders": {0: 3}})
	gb.Restart()
	adm = kadm.NewClient(gb.client(t))
	if got := committedOf(t, adm, "billing"); len(got) != 2 || got["orders/0"] != 3 || got["payments/0"] != 7 {
		t.Fatalf("billing after restart: %v, want orders/0=3 payments/0=7", got)
	}

	// A topic deleted for good: its offsets go too.
	if r, err := adm.DeleteTopics(ctx, "payments"); err != nil || r.Error() != nil {
		t.Fatalf("delete: %v %v", err, r.Error())
	}
	if got := committedOf(t, adm, "billing"); len(got) != 1 || got["orders/0"] != 3 {
		t.Fatalf("billing after payments was deleted: %v, want orders/0=3", got)
	}
	waitUntil(t, 10*time.Second, "offset record of payments removed", func() error {
		return offsetRecordGone(t, gb, "billing", "payments", 0)
	})
}

// clusterBroker is one node of an in-process cluster: a raftfsm node joined
// over loopback TCP and a broker over it.
type clusterBroker struct {
	Addr   string
	Node   *raftfsm.Node
	Store  *shardstore.Store
	Broker *Broker
}

// newBrokerCluster starts size nodes (node 1 bootstraps, the others join it),
// each with a broker, all stopped when the test ends.
func newBrokerCluster(t testing.TB, size int, groups GroupConfig) []*clusterBroker {
	t.Helper()
	var out []*clusterBroker
	var join []string
	for id := 1; id <= size; id++ {
		clusterLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		kafkaLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		logger := nodetest.Logger(t, slog.LevelWarn)
		defaults := map[string]string{topicconfig.CleanupPolicy: "compact"}
		store, node := nodetest.Open(t, nodetest.WithLogger(logger), nodetest.TopicDefaults(defaults),
			nodetest.NodeConfig(func(c *raftfsm.Config) {
				c.NodeID = int32(id)
				c.Listener = clusterLn
				c.ClusterAddr = clusterLn.Addr().String()
				c.KafkaAddr = kafkaLn.Addr().String()
				c.Join = join
				// Several nodes share two cores: timeouts as the raftfsm
				// cluster tests use.
				c.HeartbeatTimeout = 300 * time.Millisecond
				c.ElectionTimeout = 300 * time.Millisecond
				c.LeaderLeaseTimeout = 150 * time.Millisecond
			}))
		if id == 1 {
			join = []string{clusterLn.Addr().String()}
		}
		bcfg := DefaultConfig()
		bcfg.TopicDefaults = defaults
		bcfg.Node, bcfg.Store, bcfg.Logger = node, store, logger
		bcfg.Groups = groups
		b, addr, _, stop := serveBrokerOn(t, bcfg, kafkaLn)
		t.Cleanup(stop)
		out = append(out, &clusterBroker{Addr: addr, Node: node, Store: store, Broker: b})
	}
	return out
}

// newClusterClient returns a franz-go client seeded with every node; the
// caller closes it.
func newClusterClient(t testing.TB, nodes []*clusterBroker) *kgo.Client {
	t.Helper()
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, n.Addr)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestDeleteTopicsDropsCommittedOffsetsOnEveryCoordinator: in a three-node
// cluster whose two data groups are led by different nodes, the groups of
// each coordinator lose their offsets of a deleted and re-created topic. The
// topic is deleted through whichever node the client picks; each coordinator
// sees it gone in its own copy of the metadata. On the way, config changes
// made through every node at once (followers forward them) are all kept.
func TestDeleteTopicsDropsCommittedOffsetsOnEveryCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes and a leadership hand-off take about 15 s")
	}
	nodes := newBrokerCluster(t, 3, testGroupConfig())
	cl := newClusterClient(t, nodes)
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	// A topic created through one node reaches the others' metadata a moment
	// later; commits and fetches go to the coordinator, wherever it is.
	sameEverywhere := func(topic string) {
		t.Helper()
		waitUntil(t, 10*time.Second, topic+" on every node", func() error {
			id, ok := nodes[0].Node.TopicID(topic)
			for _, n := range nodes[1:] {
				if other, ok2 := n.Node.TopicID(topic); !ok || !ok2 || other != id {
					return fmt.Errorf("node %d differs", n.Node.NodeID())
				}
			}
			return nil
		})
	}
	createTopics(t, cl, 2, "orders")
	sameEverywhere("orders")

	// Config changes through every node (the followers forward them to the
	// metadata leader) at once: all of them are kept.
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := topicconfig.Op{Type: topicconfig.OpSet, Name: []string{"segment.ms", "flush.ms", "retention.ms"}[i], Value: fmt.Sprint(1000 + i)}
			if err := n.Node.AlterTopicConfig(adminCtx(t), "orders", []topicconfig.Op{op}, false); err != nil {
				t.Errorf("alter through node %d: %v", n.Node.NodeID(), err)
			}
		}()
	}
	wg.Wait()
	waitUntil(t, 10*time.Second, "config changes on every node", func() error {
		for _, n := range nodes {
			ti, _ := n.Node.Topic("orders")
			if len(ti.Overrides) != 3 {
				return fmt.Errorf("node %d: overrides %v", n.Node.NodeID(), ti.Overrides)
			}
		}
		return nil
	})

	// The offsets topic, then leadership spread: each data group hands over
	// to its preferred leader after 10 s.
	commitAll(t, adm, "warmup", map[string]map[int32]int64{"orders": {0: 1}})
	sameEverywhere(offsetsTopic)
	leaders := func() map[uint32]int32 {
		out := map[uint32]int32{}
		for _, g := range []uint32{1, 2} {
			if l, _, ok := nodes[0].Node.GroupLeader(g); ok {
				out[g] = l
			}
		}
		return out
	}
	waitUntil(t, 45*time.Second, "data groups led by different nodes", func() error {
		if l := leaders(); len(l) != 2 || l[1] == l[2] {
			return fmt.Errorf("leaders %v", l)
		}
		return nil
	})

	// One consumer group coordinated through each data group.
	ti, _ := nodes[0].Node.Topic(offsetsTopic)
	byGroup := map[uint32]string{}
	for i := 0; len(byGroup) < 2; i++ {
		name := fmt.Sprintf("app-%d", i)
		g := ti.Partitions[partitionFor(name, len(ti.Partitions))].Group
		if _, ok := byGroup[g]; !ok {
			byGroup[g] = name
		}
	}
	for _, name := range byGroup {
		commitAll(t, adm, name, map[string]map[int32]int64{"orders": {0: 1000, 1: 2000}})
	}

	ctx := adminCtx(t)
	if r, err := adm.DeleteTopics(ctx, "orders"); err != nil || r.Error() != nil {
		t.Fatalf("delete: %v %v", err, r.Error())
	}
	createTopics(t, cl, 2, "orders")
	sameEverywhere("orders")
	for g, name := range byGroup {
		if got := committedOf(t, adm, name); len(got) != 0 {
			t.Fatalf("%s (data group %d) after orders was re-created: %v", name, g, got)
		}
		p := partitionFor(name, len(ti.Partitions))
		shard := ti.Partitions[p].Shard
		waitUntil(t, 20*time.Second, name+": offset records removed on every replica", func() error {
			for _, n := range nodes {
				for part := range int32(2) {
					r, ok, err := n.Store.Lookup(shard, offsetKey(name, "orders", part))
					if err != nil {
						return err
					}
					if ok && r.Value != nil {
						return fmt.Errorf("node %d still has %s orders/%d", n.Node.NodeID(), name, part)
					}
				}
			}
			return nil
		})
	}
}

// TestDeleteTopicsDropsOffsetsStoredWithoutTopicID: offsets written before
// offset records carried a topic id (value version 1) apply to the topic of
// their name until it is deleted or re-created; then they go too.
func TestDeleteTopicsDropsOffsetsStoredWithoutTopicID(t *testing.T) {
	gb := newGroupBroker(t, func(c *GroupConfig) { c.CreateOffsetsTopic = true })
	cl := gb.client(t)
	createTopics(t, cl, 1, "orders")
	waitUntil(t, 10*time.Second, "offsets topic created", func() error {
		if _, ok := gb.Node.Topic(offsetsTopic); !ok {
			return fmt.Errorf("no %s", offsetsTopic)
		}
		return nil
	})
	ti, _ := gb.Node.Topic(offsetsTopic)
	p := partitionFor("legacy", len(ti.Partitions))
	o := committedOffset{Offset: 1000, LeaderEpoch: -1, CommitMs: time.Now().UnixMilli(), ExpireMs: -1}
	v1 := append(kbin.AppendInt16(nil, offsetValueV1), o.encode()[2:len(o.encode())-16]...)
	ctx := adminCtx(t)
	if _, err := gb.Node.Produce(ctx, offsetsTopic, p, shardstore.NoProducer,
		[]shardstore.Record{{Key: offsetKey("legacy", "orders", 0), Value: v1, Timestamp: o.CommitMs}}); err != nil {
		t.Fatal(err)
	}
	gb.Restart() // the coordinator loads the version 1 record
	adm := kadm.NewClient(gb.client(t))
	if got := committedOf(t, adm, "legacy"); got["orders/0"] != 1000 {
		t.Fatalf("version 1 offset not served: %v", got)
	}
	if r, err := adm.DeleteTopics(ctx, "orders"); err != nil || r.Error() != nil {
		t.Fatalf("delete: %v %v", err, r.Error())
	}
	createTopics(t, gb.client(t), 1, "orders")
	waitUntil(t, 10*time.Second, "version 1 offset dropped", func() error {
		if got := committedOf(t, adm, "legacy"); len(got) != 0 {
			return fmt.Errorf("still committed: %v", got)
		}
		return offsetRecordGone(t, gb, "legacy", "orders", 0)
	})
}
