package integration

// The binary with a SASL_SSL listener beside PLAINTEXT, certificates made at run
// time and a bootstrap admin (a super user): franz-go manages SCRAM users and
// ACLs over SASL_SSL, kcat (librdkafka) and confluent-kafka produce and consume
// as one of them on the topic the ACLs allow and get TOPIC_AUTHORIZATION_FAILED
// on one they do not, a wrong password is refused, and Kafka's kafka-configs.sh
// adds, lists and deletes a user. The Java client and Flink run over SASL_SSL in
// security_clients_test.go.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/shardcache/shardcache/internal/testcerts"
)

// The bootstrap admin of startSASLSSLBroker, given SCRAM-SHA-256 and -512
// credentials when the broker starts.
const (
	saslAdminUser     = "admin"
	saslAdminPassword = "admin-secret"
)

// saslSSLBroker is the binary with a SASL_SSL listener beside PLAINTEXT, its
// certificate signed by a CA made at run time, and a bootstrap admin.
type saslSSLBroker struct {
	*testBroker
	// Secure is the SASL_SSL listener's address (a fixed port, so it is the
	// same address the broker advertises on that listener).
	Secure string
	// Files are the PEM files: the server's certificate and key, and Files.CA,
	// the CA certificate that clients trust.
	Files testcerts.Files
	ca    *testcerts.CA
}

// startSASLSSLBroker starts a broker with a PLAINTEXT and a SASL_SSL listener
// and the bootstrap admin, a super user, plus args. With a SASL listener
// nothing is allowed without an ACL (--allow-everyone-if-no-acl-found is off by
// default): grant users what their test does (grantPrefixes).
func startSASLSSLBroker(t *testing.T, args ...string) *saslSSLBroker {
	t.Helper()
	requireLocalBroker(t)
	ca := testcerts.NewCA(t, "shardcache-test-ca")
	files := ca.Write(t, t.TempDir(), "server", ca.Server(t, "broker"))
	t.Setenv("SHARDCACHE_SASL_BOOTSTRAP_PASSWORD", saslAdminPassword)
	secure := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := startBroker(t, append([]string{"--listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://" + secure,
		"--tls-cert-file=" + files.Cert, "--tls-key-file=" + files.Key, "--sasl-bootstrap-user=" + saslAdminUser, "--super-users=User:" + saslAdminUser}, args...)...)
	return &saslSSLBroker{testBroker: b, Secure: secure, Files: files, ca: ca}
}

// SecureClient returns a franz-go client of the SASL_SSL listener that
// authenticates with mech, closed when the test ends.
func (s *saslSSLBroker) SecureClient(t testing.TB, mech sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	tlsCfg := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1"}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.Secure), kgo.DialTLSConfig(tlsCfg), kgo.SASL(mech),
		kgo.WithLogger(kgo.BasicLogger(&testLogWriter{t: t}, kgo.LogLevelWarn, nil))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// SecureAdmin is a kadm client of the SASL_SSL listener as the bootstrap admin.
func (s *saslSSLBroker) SecureAdmin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(s.SecureClient(t, scram.Auth{User: saslAdminUser, Pass: saslAdminPassword}.AsSha512Mechanism()))
}

// grantPrefixes lets user do everything on the topics whose names start with
// topicPrefix and read (join, commit in) the groups that start with
// groupPrefix, through the super user's CreateAcls.
func grantPrefixes(t testing.TB, adm *kadm.Client, user, topicPrefix, groupPrefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:" + user).Topics(topicPrefix).Operations(kadm.OpAll),
		kadm.NewACLs().Allow("User:" + user).Groups(groupPrefix).Operations(kadm.OpRead),
	} {
		res, err := adm.CreateACLs(ctx, b.ResourcePatternType(kadm.ACLPatternPrefixed))
		if err != nil {
			t.Fatalf("create ACLs for %s: %v", user, err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("create ACL %s %s on %s: %v (%s)", r.Principal, r.Operation, r.Name, r.Err, r.ErrMessage)
			}
		}
	}
}

func TestSASLSSLClients(t *testing.T) {
	b := startSASLSSLBroker(t)
	secure := b.Secure
	adm := b.SecureAdmin(t)
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
	bad := b.SecureClient(t, scram.Auth{User: "alice", Pass: "nope"}.AsSha256Mechanism())
	if _, err := bad.Request(ctx, kmsg.NewPtrMetadataRequest()); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
	// The PLAINTEXT listener still serves, as User:ANONYMOUS, who may
	// describe no topic.
	if listed, err := b.Admin(t).ListTopics(ctx); err != nil || len(listed) != 0 {
		t.Fatalf("anonymous lists %v (%v), want no topics", listed.Names(), err)
	}

	caFile := b.Files.CA
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

	t.Run("kafka-configs", func(t *testing.T) { testKafkaConfigsSCRAM(t, b) })

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
	// franz-go as alice, last because it adds a record to the topic the
	// others read exactly: the allowed topic takes a record and reads it
	// back, the denied one answers TOPIC_AUTHORIZATION_FAILED.
	t.Run("franz-go", func(t *testing.T) {
		// Its own deadline: the subtests before it (kafka-configs starts a
		// JVM four times) take most of the test's first 30 s on a busy machine.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		alice := b.SecureClient(t, scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(),
			kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err := alice.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("franz"), Value: []byte("go")}).FirstErr(); err != nil {
			t.Fatalf("franz-go produce to the allowed topic: %v", err)
		}
		for found := false; !found; {
			fs := alice.PollFetches(ctx)
			if fs.Err() != nil {
				t.Fatalf("franz-go consume of the allowed topic: %v", fs.Err())
			}
			fs.EachRecord(func(r *kgo.Record) { found = found || string(r.Key) == "franz" })
		}
		if err := alice.ProduceSync(ctx, &kgo.Record{Topic: denied, Key: []byte("k"), Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("franz-go produce to the denied topic: %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
	})
}

// javaClientProperties writes the Java client's SASL_SSL settings for a SCRAM
// mechanism (the CA as a PEM truststore) to a properties file, as a Kafka tool's
// --command-config takes them, and returns its path.
func (s *saslSSLBroker) javaClientProperties(t testing.TB, mechanism, user, password string) string {
	t.Helper()
	props := fmt.Sprintf(`security.protocol=SASL_SSL
sasl.mechanism=%s
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";
ssl.truststore.type=PEM
ssl.truststore.location=%s
`, mechanism, user, password, s.Files.CA)
	path := filepath.Join(t.TempDir(), user+".properties")
	if err := os.WriteFile(path, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testKafkaConfigsSCRAM: Kafka's kafka-configs.sh, run over SASL_SSL as the
// bootstrap admin, adds a SCRAM-SHA-256 user, lists it, and deletes it again; the
// user authenticates in between and is refused after.
func testKafkaConfigsSCRAM(t *testing.T, b *saslSSLBroker) {
	k := requireKafkaTools(t, b.testBroker)
	k.bootstrap = b.Secure
	admin := b.javaClientProperties(t, "SCRAM-SHA-512", saslAdminUser, saslAdminPassword)
	with := func(args ...string) []string { return k.with(append([]string{"--command-config", admin}, args...)...) }
	const user, password = "carol", "carol-secret"
	out := k.ok(t, "", "kafka-configs", with("--alter", "--add-config", "SCRAM-SHA-256=[iterations=8192,password="+password+"]",
		"--entity-type", "users", "--entity-name", user)...)
	mustContain(t, "add a SCRAM user", out, "Completed updating config for user "+user+".")
	out = k.ok(t, "", "kafka-configs", with("--describe", "--entity-type", "users")...)
	mustContain(t, "describe users", out,
		"SCRAM credential configs for user-principal '"+user+"' are SCRAM-SHA-256=iterations=8192",
		"SCRAM credential configs for user-principal '"+saslAdminUser+"' are ")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mech := scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	if _, err := b.SecureClient(t, mech).Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil {
		t.Fatalf("%s authenticating after kafka-configs --add-config: %v", user, err)
	}

	out = k.ok(t, "", "kafka-configs", with("--alter", "--delete-config", "SCRAM-SHA-256",
		"--entity-type", "users", "--entity-name", user)...)
	mustContain(t, "delete a SCRAM user", out, "Completed updating config for user "+user+".")
	out = k.ok(t, "", "kafka-configs", with("--describe", "--entity-type", "users")...)
	if strings.Contains(out, "'"+user+"'") {
		t.Fatalf("describe users still lists %s after --delete-config:\n%s", user, out)
	}
	if _, err := b.SecureClient(t, mech).Request(ctx, kmsg.NewPtrMetadataRequest()); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("%s after kafka-configs --delete-config: %v, want SASL_AUTHENTICATION_FAILED", user, err)
	}
}
