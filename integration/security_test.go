package integration

// The binary with a SASL_SSL listener beside PLAINTEXT, certificates made at run
// time and a bootstrap admin (a super user): franz-go manages SCRAM users and
// ACLs over SASL_SSL, kcat (librdkafka) and confluent-kafka produce and consume
// as one of them on the topic the ACLs allow and get TOPIC_AUTHORIZATION_FAILED
// on one they do not, and a wrong password is refused.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/shardcache/shardcache/internal/testcerts"
)

func TestSASLSSLClients(t *testing.T) {
	requireLocalBroker(t)
	ca := testcerts.NewCA(t, "shardcache-test-ca")
	files := ca.Write(t, t.TempDir(), "server", ca.Server(t, "broker"))
	t.Setenv("SHARDCACHE_SASL_BOOTSTRAP_PASSWORD", "admin-secret")
	secure := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := startBroker(t, "--listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://"+secure,
		"--tls-cert-file="+files.Cert, "--tls-key-file="+files.Key, "--sasl-bootstrap-user=admin")

	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	admin, err := kgo.NewClient(kgo.SeedBrokers(secure), kgo.DialTLSConfig(tlsCfg),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "alice", Mechanism: kadm.ScramSha256, Iterations: 8192, Password: "alice-secret"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("create alice: %v %v", err, res.Error())
	}
	topic := topicName(t)
	createTopic(t, adm, topic, 1, nil)
	denied := topic + "-denied"
	createTopic(t, adm, denied, 1, nil)
	// A SASL listener turns --allow-everyone-if-no-acl-found off by default:
	// alice gets only what these ACLs give her.
	acls, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").Topics(topic).Groups("py-sasl").
		Operations(kadm.OpRead, kadm.OpWrite, kadm.OpDescribe))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range acls {
		if r.Err != nil {
			t.Fatalf("create acl: %v %s", r.Err, r.ErrMessage)
		}
	}

	// A wrong password, through franz-go.
	bad, err := kgo.NewClient(kgo.SeedBrokers(secure), kgo.DialTLSConfig(tlsCfg),
		kgo.SASL(scram.Auth{User: "alice", Pass: "nope"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Request(ctx, kmsg.NewPtrMetadataRequest()); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
	// The PLAINTEXT listener still serves, as User:ANONYMOUS, who may
	// describe no topic.
	if listed, err := b.Admin(t).ListTopics(ctx); err != nil || len(listed) != 0 {
		t.Fatalf("anonymous lists %v (%v), want no topics", listed.Names(), err)
	}

	caFile := files.CA
	kcatArgs := func(user, pass string) []string {
		return []string{"-b", secure, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-256",
			"-X", "sasl.username=" + user, "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + caFile}
	}
	t.Run("kcat", func(t *testing.T) {
		requireTool(t, "kcat")
		runKcat(t, "k1:v1\nk2:v2\n", append(kcatArgs("alice", "alice-secret"), "-P", "-K:", "-t", topic)...)
		out := runKcat(t, "", append(kcatArgs("alice", "alice-secret"), "-C", "-e", "-q", "-o", "beginning", "-t", topic, "-f", `%k=%s\n`)...)
		if got := strings.Fields(out); strings.Join(got, " ") != "k1=v1 k2=v2" {
			t.Fatalf("kcat read %q", got)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), kcatTimeout)
		defer ccancel()
		cmd := exec.CommandContext(cctx, requireTool(t, "kcat"), append(kcatArgs("alice", "wrong"), "-L", "-m", "5")...)
		out2, err := cmd.CombinedOutput()
		t.Logf("kcat with a wrong password: %s", out2)
		if err == nil || !strings.Contains(string(out2), "uthentication") {
			t.Fatalf("kcat with a wrong password: err %v", err)
		}
		// A topic alice has no ACL on.
		cmd = exec.CommandContext(cctx, requireTool(t, "kcat"), append(kcatArgs("alice", "alice-secret"), "-P", "-t", denied)...)
		cmd.Stdin = strings.NewReader("x\n")
		out3, err := cmd.CombinedOutput()
		t.Logf("kcat on a denied topic: %s", out3)
		if err == nil || !strings.Contains(strings.ToLower(string(out3)), "topic authorization failed") {
			t.Fatalf("kcat on a denied topic: err %v, want Topic authorization failed", err)
		}
	})

	t.Run("confluent-kafka", func(t *testing.T) {
		py := requireTool(t, "python3")
		script := `
import sys
from confluent_kafka import Producer, Consumer
conf = {"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "alice", "sasl.password": sys.argv[3], "ssl.ca.location": sys.argv[4]}
p = Producer(conf)
errs = []
p.produce(sys.argv[5], key=b"py", value=b"v", on_delivery=lambda err, msg: errs.append(err))
p.flush(20)
if not errs or errs[0] is None or errs[0].name() != "TOPIC_AUTHORIZATION_FAILED":
    sys.exit("produce to the denied topic: %r, want TOPIC_AUTHORIZATION_FAILED" % errs)
print("denied")
p.produce(sys.argv[2], key=b"py", value=b"v")
left = p.flush(20)
if left:
    sys.exit("produce not delivered")
c = Consumer(dict(conf, **{"group.id": "py-sasl", "auto.offset.reset": "earliest"}))
c.subscribe([sys.argv[2]])
for _ in range(60):
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        sys.exit(str(m.error()))
    if m.key() == b"py":
        print("ok")
        break
c.close()
`
		cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer ccancel()
		out, err := exec.CommandContext(cctx, py, "-c", script, secure, topic, "alice-secret", caFile, denied).CombinedOutput()
		t.Logf("confluent-kafka: %s", out)
		if err != nil {
			if strings.Contains(string(out), "No module named") {
				t.Skip("confluent_kafka is not installed (integration/python/requirements.txt)")
			}
			t.Fatalf("confluent-kafka over SASL_SSL: %v", err)
		}
		if !strings.Contains(string(out), "denied") || !strings.Contains(string(out), "ok") {
			t.Fatal("confluent-kafka was not denied the denied topic, or did not read its record back")
		}
	})
}
