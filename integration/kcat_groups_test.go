package integration

// kcat's balanced consumer (-G, librdkafka's group protocol) against
// shardcache: two consumers of one group split a topic's partitions and
// together read every record.

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// lockedBuffer is a bytes.Buffer safe for a process writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestKcatGroupConsumersSplitPartitions(t *testing.T) {
	bin := requireTool(t, "kcat")
	b := startBroker(t, groupBrokerArgs...)
	adm := b.Admin(t)
	topic := topicName(t)
	const partitions = 4
	createTopic(t, adm, topic, partitions, nil)
	prod := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for i := 0; i < 5; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("p%d-k%d", p, i)), Value: []byte("v")})
		}
	}
	produceSync(t, prod, recs...)

	group := "kcat-" + topic
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var outs []*lockedBuffer
	for i := 0; i < 2; i++ {
		out, errs := &lockedBuffer{}, &lockedBuffer{}
		cmd := exec.CommandContext(ctx, bin, "-b", b.KafkaAddr, "-G", group, "-q", "-u",
			"-X", "auto.offset.reset=earliest", "-X", "heartbeat.interval.ms=500",
			"-X", "session.timeout.ms=10000", "-f", "%k\n", topic)
		cmd.Stdout, cmd.Stderr = out, errs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Logf("kcat -G %d stdout:\n%s\nstderr:\n%s", i, out.String(), errs.String())
		})
	}

	waitFor(t, 60*time.Second, 200*time.Millisecond, "two kcat members split the partitions", func() error {
		gs, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		g := gs[group]
		if g.State != "Stable" || len(g.Members) != 2 {
			return fmt.Errorf("group %s with %d members", g.State, len(g.Members))
		}
		owner := map[int32]string{}
		for _, m := range g.Members {
			ca, ok := m.Assigned.AsConsumer()
			if !ok {
				return fmt.Errorf("assignment of %s does not decode", m.MemberID)
			}
			n := 0
			for _, at := range ca.Topics {
				for _, p := range at.Partitions {
					if o, dup := owner[p]; dup {
						return fmt.Errorf("partition %d owned by %s and %s", p, o, m.MemberID)
					}
					owner[p] = m.MemberID
					n++
				}
			}
			if n == 0 {
				return fmt.Errorf("member %s has no partition", m.MemberID)
			}
		}
		if len(owner) != partitions {
			return fmt.Errorf("%d of %d partitions assigned", len(owner), partitions)
		}
		return nil
	})
	waitFor(t, 60*time.Second, 200*time.Millisecond, "every record read by one of them", func() error {
		got := map[string]bool{}
		for _, o := range outs {
			for _, k := range strings.Fields(o.String()) {
				got[k] = true
			}
		}
		for _, r := range recs {
			if !got[string(r.Key)] {
				return fmt.Errorf("key %s not read yet (%d of %d)", r.Key, len(got), len(recs))
			}
		}
		return nil
	})
}
