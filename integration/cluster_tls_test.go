//go:build unix

package integration

// Node-to-node TLS with mutual authentication (--cluster-tls-*) through the
// binary: a cluster that forms, replicates and fails over over mTLS, peers
// without a valid certificate refused, and TLS turned on for a cluster that
// ran plain.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shardcache/shardcache/internal/testcerts"
)

// clusterTLSArgs writes a node certificate from ca into dir and returns the
// flags that use it. Every node of a test cluster shares it: it names
// 127.0.0.1, which is what nodes dial (through the link proxies).
func clusterTLSArgs(t *testing.T, ca *testcerts.CA, dir string) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := ca.Write(t, dir, "node", ca.Node(t, "node"))
	return []string{"--cluster-tls-cert-file=" + f.Cert, "--cluster-tls-key-file=" + f.Key, "--cluster-tls-ca-file=" + f.CA}
}

// produceRange produces values from..to-1 (keys and values "v<i>") to
// topic and fails the test on any error.
func produceRange(t *testing.T, cl *kgo.Client, topic string, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		v := []byte(fmt.Sprintf("v%d", i))
		recs = append(recs, &kgo.Record{Topic: topic, Key: v, Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce v%d..v%d: %v", from, to-1, err)
	}
}

// seedTopic creates a delete-policy topic, produces v0..v<n-1> to it and
// waits until every node has them; it returns the client it used.
func seedTopic(t *testing.T, c *testCluster, topic string, partitions int32, n int) *kgo.Client {
	t.Helper()
	cl := c.Client(t)
	createClusterTopic(t, cl, topic, partitions, map[string]string{"cleanup.policy": "delete"})
	c.WaitLeaders(topic)
	produceRange(t, cl, topic, 0, n)
	c.WaitReplicated(topic)
	return cl
}

// readValues reads topic from the start until want records arrived and
// fails on a duplicate or a missing value v0..v<want-1>.
func readValues(t *testing.T, c *testCluster, topic string, want int) {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), clusterWaitTimeout)
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(seen), want, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if seen[string(r.Value)] {
				t.Errorf("duplicate %s at %s/%d@%d", r.Value, r.Topic, r.Partition, r.Offset)
			}
			seen[string(r.Value)] = true
		})
	}
	for i := range want {
		if !seen[fmt.Sprintf("v%d", i)] {
			t.Errorf("v%d was acknowledged and is missing", i)
		}
	}
}

// refusedConns reads node id's shardcache_cluster_connections_refused_total
// for reason (0 when the series does not exist yet).
func refusedConns(t *testing.T, c *testCluster, id int32, reason string) float64 {
	t.Helper()
	v, _ := scrapeSample(t, c.Node(id).HTTPAddr, `shardcache_cluster_connections_refused_total{reason="`+reason+`"}`)
	return v
}

// outsiderCmd is a node 9 with an empty data dir that joins through node
// seed's cluster address directly, with extra flags (a later flag overrides an
// earlier one); its output goes to the test log and to the returned buffer.
func outsiderCmd(t *testing.T, c *testCluster, name string, seed int32, extra ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	args := append([]string{
		"--node-id=9",
		"--data-dir=" + filepath.Join(t.TempDir(), name),
		"--kafka-addr=127.0.0.1:0",
		"--http-addr=127.0.0.1:0",
		"--cluster-addr=127.0.0.1:0",
		"--join=" + c.Node(seed).ClusterAddr,
	}, extra...)
	cmd := exec.Command(binPath, args...)
	setChildAttrs(cmd)
	out := newLineLog(t, name+": ")
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out, &buf), io.MultiWriter(out, &buf)
	t.Cleanup(out.flush)
	return cmd, &buf
}

// startOutsider starts outsiderCmd; it is killed when the test ends.
func startOutsider(t *testing.T, c *testCluster, name string, seed int32, extra ...string) {
	t.Helper()
	cmd, _ := outsiderCmd(t, c, name, seed, extra...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// waitRefused waits until node id has refused a connection for reason.
func waitRefused(t *testing.T, c *testCluster, id int32, reason string) {
	t.Helper()
	c.waitFor(fmt.Sprintf("node %d to refuse a connection (%s)", id, reason), func(context.Context) error {
		if n := refusedConns(t, c, id, reason); n == 0 {
			return fmt.Errorf("no %s refusal yet", reason)
		}
		return nil
	})
}

// TestClusterTLS: three nodes over mTLS form a cluster (joins, Raft, RPCs),
// replicate, and fail over on kill -9 of a leader; a node with a certificate
// from another CA, and a plain node, cannot join, and the cluster counts
// both refusals; a node whose certificate does not name the host it registers
// is refused and exits 2.
func TestClusterTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "cluster-ca")
	c := startCluster(t, 3, withNodeArgs(clusterTLSArgs(t, ca, filepath.Join(t.TempDir(), "tls"))...))
	const topic = "tls-replicated"
	cl := seedTopic(t, c, topic, 3, 100)

	leader := c.Leaders(topic)[0]
	t.Logf("killing node %d, the leader of %s/0", leader, topic)
	c.Kill(leader)
	c.WaitLeaders(topic)
	produceRange(t, cl, topic, 100, 200)
	readValues(t, c, topic, 200)

	survivor := others(c, leader)[0]
	startOutsider(t, c, "wrong-ca", survivor, clusterTLSArgs(t, testcerts.NewCA(t, "other-ca"), filepath.Join(t.TempDir(), "other"))...)
	startOutsider(t, c, "plain", survivor)
	waitRefused(t, c, survivor, "tls_handshake")
	waitRefused(t, c, survivor, "tls_required")

	// A certificate from the cluster CA that does not name the host the
	// joiner registers (it names 127.0.0.1; the joiner listens and
	// registers on 127.0.0.2): refused, and the joiner exits 2 saying why.
	cmd, out := outsiderCmd(t, c, "wrong-host", survivor,
		append(clusterTLSArgs(t, ca, filepath.Join(t.TempDir(), "wrong-host")), "--cluster-addr=127.0.0.2:0")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(out.String(), "which its TLS certificate does not name") {
			t.Fatalf("joiner registering a host its certificate does not name: %v, want exit status 2 and the reason; output:\n%s", err, out.String())
		}
	case <-time.After(clusterWaitTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("joiner registering a host its certificate does not name still runs after %v", clusterWaitTimeout)
	}
	waitRefused(t, c, survivor, "certificate_does_not_name_sender")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	md, err := c.metadata(ctx, survivor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Fatalf("node %d lists %d brokers after refusing two outsiders, want 3", survivor, len(md.Brokers))
	}
}

// TestClusterTLSEnableExisting: a cluster that ran plain is stopped and
// started again with --cluster-tls-* on every node (the supported way to turn
// TLS on; one node at a time cannot work, a TLS node and a plain node refuse
// each other). Its data survives and it takes writes.
func TestClusterTLSEnableExisting(t *testing.T) {
	c := startCluster(t, 3)
	const topic = "tls-enabled-later"
	cl := seedTopic(t, c, topic, 2, 50)

	if hung := c.StopAll(allStopTimeout); len(hung) > 0 {
		t.Fatalf("nodes %v did not stop", hung)
	}
	ca := testcerts.NewCA(t, "cluster-ca")
	c.cfg.args = append(c.cfg.args, clusterTLSArgs(t, ca, filepath.Join(t.TempDir(), "tls"))...)
	began := time.Now()
	c.StartAll()
	c.WaitLeaders(topic)
	t.Logf("restarted with cluster TLS and led in %v", time.Since(began).Round(time.Millisecond))
	produceRange(t, cl, topic, 50, 100)
	c.WaitReplicated(topic)
	readValues(t, c, topic, 100)
}

// TestClusterTLSRollingEnable: TLS turned on for a running cluster without
// stopping it: a rolling restart with --cluster-tls-* and
// --cluster-tls-permissive (each restarted node is ready while the others
// are still plain), then a rolling restart without --cluster-tls-permissive.
// The data survives and the cluster takes writes.
func TestClusterTLSRollingEnable(t *testing.T) {
	c := startCluster(t, 3)
	const topic = "tls-rolling"
	cl := seedTopic(t, c, topic, 2, 50)
	base := slices.Clone(c.cfg.args)
	tlsArgs := clusterTLSArgs(t, testcerts.NewCA(t, "cluster-ca"), filepath.Join(t.TempDir(), "tls"))
	for i, args := range [][]string{append(slices.Clone(tlsArgs), "--cluster-tls-permissive"), tlsArgs} {
		c.cfg.args = append(slices.Clone(base), args...)
		for _, id := range c.IDs() {
			t.Logf("rolling restart %d: node %d with %v", i+1, id, args)
			c.Stop(id)
			c.Start(id)
			c.WaitReady()
			c.WaitLeaders(topic)
		}
	}
	produceRange(t, cl, topic, 50, 100)
	c.WaitReplicated(topic)
	readValues(t, c, topic, 100)
	// Every node is strict now: a plain node cannot join.
	startOutsider(t, c, "plain", 1)
	waitRefused(t, c, 1, "tls_required")
}
