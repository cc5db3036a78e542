package broker

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// heldOffsets returns the committed offsets of group name in the memory of
// b's group coordinator, and whether b holds the group at all.
func heldOffsets(b *Broker, name string) (map[topicPartition]committedOffset, bool) {
	c := b.groups
	c.mu.Lock()
	g := c.groups[name]
	c.mu.Unlock()
	if g == nil {
		return nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.offsets), true
}

// TestGroupCoordinatorLoadsOnLeadershipChange: in a three-node cluster, an
// offsets partition whose Raft group hands its leadership to another node
// (the preferred-leader hand-off after 10 s) is loaded by the new leader as
// soon as the leader table names it, with no group request sent meanwhile,
// and dropped by the old one; the offsets read afterwards are the ones
// committed.
func TestGroupCoordinatorLoadsOnLeadershipChange(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes and a leadership hand-off take about 15 s")
	}
	nodes := newBrokerCluster(t, 3, testGroupConfig())
	newAdmin := func() (*kgo.Client, *kadm.Client) {
		cl := newClusterClient(t, nodes)
		return cl, kadm.NewClient(cl)
	}
	cl, adm := newAdmin()
	createTopics(t, cl, 2, "orders")
	waitUntil(t, 10*time.Second, "orders on every node", func() error {
		for i, n := range nodes {
			if _, ok := n.Node.Topic("orders"); !ok {
				return fmt.Errorf("node %d lacks it", i+1)
			}
		}
		return nil
	})

	// One consumer group per offsets partition, committed before the
	// hand-off; holder is the node whose coordinator answered the commit.
	commitAll(t, adm, "warmup", map[string]map[int32]int64{"orders": {0: 1}})
	ti, ok := nodes[0].Node.Topic(offsetsTopic)
	if !ok {
		t.Fatal("no offsets topic after a commit")
	}
	byPartition := map[int32]string{}
	for i := 0; len(byPartition) < len(ti.Partitions); i++ {
		name := fmt.Sprintf("app-%d", i)
		if p := partitionFor(name, len(ti.Partitions)); byPartition[p] == "" {
			byPartition[p] = name
		}
	}
	want := map[string]int64{"orders/0": 1000, "orders/1": 2000}
	holder := map[string]int{}
	for _, name := range byPartition {
		commitAll(t, adm, name, map[string]map[int32]int64{"orders": {0: 1000, 1: 2000}})
		for i, n := range nodes {
			if offs, ok := heldOffsets(n.Broker, name); ok && len(offs) == 2 {
				holder[name] = i
			}
		}
		if _, ok := holder[name]; !ok {
			t.Fatalf("no coordinator holds %s after its commit", name)
		}
	}
	// No group request from here on: only the loader may load.
	cl.Close()

	waitUntil(t, 45*time.Second, "data groups led by different nodes", func() error {
		l1, _, ok1 := nodes[0].Node.GroupLeader(1)
		l2, _, ok2 := nodes[0].Node.GroupLeader(2)
		if !ok1 || !ok2 || l1 == l2 {
			return fmt.Errorf("leaders %d %d", l1, l2)
		}
		return nil
	})
	moved := 0
	for p, name := range byPartition {
		g := ti.Partitions[p].Group
		waitUntil(t, 20*time.Second, name+" held by its partition's leader only", func() error {
			for i, n := range nodes {
				leader, epoch, ok := n.Node.GroupLeader(g)
				leads := ok && leader == n.Node.NodeID() && n.Node.IsLeader(g)
				offs, held := heldOffsets(n.Broker, name)
				switch {
				case leads && !n.Broker.groups.loader.loadedIn(p, epoch):
					return fmt.Errorf("node %d leads partition %d in epoch %d but has not loaded it", i+1, p, epoch)
				case leads && len(offs) != 2:
					return fmt.Errorf("node %d leads partition %d but holds %v", i+1, p, offs)
				case !leads && held:
					return fmt.Errorf("node %d does not lead partition %d but still holds %s", i+1, p, name)
				}
			}
			return nil
		})
		for i, n := range nodes {
			if n.Node.IsLeader(g) && i != holder[name] {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatalf("no offsets partition changed leader (holders %v)", holder)
	}

	cl, adm = newAdmin()
	defer cl.Close()
	for _, name := range byPartition {
		if got := committedOf(t, adm, name); !maps.Equal(got, want) {
			t.Fatalf("%s after the hand-off: %v, want %v", name, got, want)
		}
	}
}
