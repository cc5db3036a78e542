package integration

// ACLs against the binary: created on one node of a three-node cluster they
// are described and enforced by every node, and by a node restarted from its
// disk; Kafka's own kafka-acls tool adds, lists and removes literal and
// prefixed ACLs.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describeACLsOn lists every ACL binding node id knows, as
// "PERMISSION PRINCIPAL HOST OPERATION TYPE PATTERN NAME", sorted.
func describeACLsOn(ctx context.Context, t *testing.T, c *testCluster, id int32) ([]string, error) {
	t.Helper()
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	kresp, err := c.requestNode(ctx, id, req)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.DescribeACLsResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			out = append(out, fmt.Sprintf("%s %s %s %s %s %s %s", a.PermissionType, a.Principal, a.Host, a.Operation, r.ResourceType, r.ResourcePatternType, r.ResourceName))
		}
	}
	slices.Sort(out)
	return out, nil
}

// produceCode produces one record to partition 0 of topic on node id only
// and returns the partition's error code.
func produceCode(ctx context.Context, c *testCluster, id int32, topic string) (int16, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := c.requestNode(ctx, id, req)
	if err != nil {
		return 0, err
	}
	return kresp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode, nil
}

// TestACLCluster creates ACLs through a node that may not lead the metadata
// group and finds them on every node, enforced there, and on a node
// restarted from its data directory; a deletion on a third node is seen
// everywhere with the bindings it removed.
func TestACLCluster(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.nodeClient(2))
	topic := topicName(t)
	createTopic(t, kadm.NewClient(c.Client(t)), topic, 1, nil)

	res, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").Topics(topic).Operations(kadm.OpWrite))
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err = adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:*").Groups("app-").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternPrefixed))
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ALLOW User:* * READ GROUP PREFIXED app-", "ALLOW User:alice * WRITE TOPIC LITERAL " + topic}
	every := func(what string) {
		t.Helper()
		for _, id := range c.IDs() {
			// The node describes the bindings, and the ACL on the topic
			// closes it to User:ANONYMOUS there (authorization comes
			// before leadership). A restarted node's first request may
			// meet the old connection's EOF: retried until the deadline.
			var got []string
			var code int16
			for deadline := time.Now().Add(30 * time.Second); ; {
				got, err = describeACLsOn(ctx, t, c, id)
				if err == nil {
					code, err = produceCode(ctx, c, id, topic)
				}
				if err == nil && slices.Equal(got, want) && code == kerr.TopicAuthorizationFailed.Code {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: node %d describes %q and answers anonymous produce with %d (%v); want %q and TOPIC_AUTHORIZATION_FAILED",
						what, id, got, code, err, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	every("after create")

	c.Stop(3)
	c.Start(3)
	every("after node 3 restarted")

	del, err := kadm.NewClient(c.nodeClient(3)).DeleteACLs(ctx, kadm.NewACLs().Allow().AllowHosts().Groups("app-").Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternMatch))
	if err != nil {
		t.Fatal(err)
	}
	// MATCH on group "app-" finds the prefixed binding.
	if len(del) != 1 || len(del[0].Deleted) != 1 || del[0].Deleted[0].Name != "app-" || del[0].Deleted[0].Pattern != kadm.ACLPatternPrefixed {
		t.Fatalf("delete answered %+v", del)
	}
	want = want[1:]
	every("after delete")
}

// TestACLKafkaTools runs Kafka's kafka-acls (AclCommand) against the binary:
// --add, --list and --remove of literal and prefixed ACLs, with the output
// a user reads.
func TestACLKafkaTools(t *testing.T) {
	b := startBroker(t)
	k := requireKafkaTools(t, b)
	topic := topicName(t)

	out := k.ok(t, "", "kafka-acls", k.with("--add", "--allow-principal", "User:alice", "--operation", "Read",
		"--operation", "Write", "--topic", topic)...)
	mustContain(t, "--add literal", out, "Adding ACLs for resource `ResourcePattern(resourceType=TOPIC, name="+topic+", patternType=LITERAL)`",
		"(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)",
		"(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)")
	out = k.ok(t, "", "kafka-acls", k.with("--add", "--deny-principal", "User:bob", "--deny-host", "10.1.2.3",
		"--operation", "All", "--group", "team-", "--resource-pattern-type", "prefixed")...)
	mustContain(t, "--add prefixed", out, "ResourcePattern(resourceType=GROUP, name=team-, patternType=PREFIXED)",
		"(principal=User:bob, host=10.1.2.3, operation=ALL, permissionType=DENY)")

	out = k.ok(t, "", "kafka-acls", k.with("--list")...)
	mustContain(t, "--list", out, "Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name="+topic+", patternType=LITERAL)`",
		"Current ACLs for resource `ResourcePattern(resourceType=GROUP, name=team-, patternType=PREFIXED)`")
	// --list --topic with the default pattern type (ANY) names only that topic.
	out = k.ok(t, "", "kafka-acls", k.with("--list", "--topic", topic)...)
	if strings.Contains(out, "team-") || !strings.Contains(out, "operation=READ") {
		t.Fatalf("--list --topic %s:\n%s", topic, out)
	}
	// MATCH: the prefixed binding applies to group team-blue.
	out = k.ok(t, "", "kafka-acls", k.with("--list", "--group", "team-blue", "--resource-pattern-type", "match")...)
	mustContain(t, "--list match", out, "name=team-, patternType=PREFIXED")

	// The ACL on the topic is enforced for the anonymous PLAINTEXT client.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := b.Admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	if err := b.Client(t).ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("anonymous produce to %s: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
	}

	k.ok(t, "", "kafka-acls", k.with("--remove", "--force", "--allow-principal", "User:alice", "--operation", "Write", "--topic", topic)...)
	k.ok(t, "", "kafka-acls", k.with("--remove", "--force", "--group", "team-", "--resource-pattern-type", "prefixed")...)
	out = k.ok(t, "", "kafka-acls", k.with("--list")...)
	if strings.Contains(out, "team-") || strings.Contains(out, "operation=WRITE") || !strings.Contains(out, "operation=READ") {
		t.Fatalf("--list after --remove:\n%s", out)
	}
}
