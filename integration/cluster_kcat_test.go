//go:build unix

package integration

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestClusterKcatListsBrokers: kcat -L against one node of a 3-node cluster
// lists all three brokers at their Kafka addresses, and every partition of a
// new topic with a leader, three replicas and three in-sync replicas.
func TestClusterKcatListsBrokers(t *testing.T) {
	requireTool(t, "kcat")
	c := startCluster(t, 3)
	topic := topicName(t)
	createClusterTopic(t, c.Client(t), topic, 3, nil)
	c.WaitReplicated(topic)

	for _, id := range c.IDs() {
		out := runKcat(t, "", "-b", c.Node(id).KafkaAddr, "-L", "-t", topic)
		if !strings.Contains(out, " 3 brokers:") {
			t.Errorf("kcat -L via node %d: want \" 3 brokers:\" in the output", id)
		}
		for _, nd := range c.nodes {
			want := fmt.Sprintf("broker %d at %s", nd.ID, nd.KafkaAddr)
			if !strings.Contains(out, want) {
				t.Errorf("kcat -L via node %d: want %q in the output", id, want)
			}
		}
		// "partition 0, leader 2, replicas: 2,3,1, isrs: 1,2,3"
		re := regexp.MustCompile(`partition (\d+), leader (\d+), replicas: ([\d,]+), isrs: ([\d,]+)`)
		ms := re.FindAllStringSubmatch(out, -1)
		if len(ms) != 3 {
			t.Fatalf("kcat -L via node %d: want 3 partitions of %s, found %d", id, topic, len(ms))
		}
		for _, m := range ms {
			replicas, isr := strings.Split(m[3], ","), strings.Split(m[4], ",")
			slices.Sort(replicas)
			slices.Sort(isr)
			if !slices.Equal(replicas, []string{"1", "2", "3"}) || !slices.Equal(isr, []string{"1", "2", "3"}) {
				t.Errorf("kcat -L via node %d: partition %s: replicas %s, isrs %s; want 1,2,3 for both", id, m[1], m[3], m[4])
			}
			if !slices.Contains(replicas, m[2]) {
				t.Errorf("kcat -L via node %d: partition %s: leader %s is not a replica", id, m[1], m[2])
			}
		}
	}
}
