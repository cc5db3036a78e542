//go:build unix

package integration

// The JVM clients over SASL_SSL with SCRAM, against the binary with a SASL_SSL
// listener and a bootstrap admin (startSASLSSLBroker): the JUnit tests tagged
// "sasl" of the Java client suite (integration/java SaslTest) and of the Flink
// suite (integration/flink SaslTest). They read the listener's address from
// SHARDCACHE_BOOTSTRAP, the CA's PEM file from SHARDCACHE_SSL_CA_FILE and the
// bootstrap admin from SHARDCACHE_SASL_ADMIN and SHARDCACHE_SASL_ADMIN_PASSWORD;
// the PLAINTEXT suites (TestJavaClient, TestFlink) exclude the tag.

import (
	"path/filepath"
	"testing"
	"time"
)

const (
	// saslJavaSuiteTimeout bounds the Java SaslTest run: compile, JVM start and seven
	// tests that each wait at most 30 s on the broker (twice for the denied topics).
	saslJavaSuiteTimeout = 4 * time.Minute
	// minSASLJavaTests is SaslTest's count: produce and consume and a wrong
	// password for each of the two mechanisms, a mechanism without a credential,
	// an unknown user, and the topics ACLs deny.
	minSASLJavaTests = 7
)

// runSASLSuite runs the JUnit tests tagged "sasl" of the Maven project in
// integration/<project> (mvnArgs before the goal: a profile) against b's SASL_SSL
// listener.
func runSASLSuite(t *testing.T, b *saslSSLBroker, project string, timeout time.Duration, minTests int, mvnArgs ...string) {
	t.Helper()
	buildDir := filepath.Join(t.TempDir(), "target")
	args := append([]string{"-q", "-B", "-o", "-Dstyle.color=never"}, mvnArgs...)
	runExternalSuite(t, externalSuite{
		Dir:       filepath.Join(mustModuleRoot(t), "integration", project),
		Command:   "mvn",
		Args:      append(args, "-Dshardcache.build.dir="+buildDir, "-Dgroups=sasl", "test"),
		Bootstrap: b.Secure,
		Env: []string{"SHARDCACHE_SSL_CA_FILE=" + b.Files.CA,
			"SHARDCACHE_SASL_ADMIN=" + saslAdminUser, "SHARDCACHE_SASL_ADMIN_PASSWORD=" + saslAdminPassword},
		Timeout:  timeout,
		Reports:  filepath.Join(buildDir, "surefire-reports", "TEST-*.xml"),
		MinTests: minTests,
	})
}

// TestSASLSSLJavaClient: the Apache Kafka Java client (kafka-clients 4.x) over
// SASL_SSL with SCRAM-SHA-256 and SCRAM-SHA-512: users made with the Admin
// client, allowed by ACLs made with createAcls, produce and consume; a wrong
// password, a mechanism without a credential and an unknown user get
// SaslAuthenticationException; topics an ACL denies get
// TopicAuthorizationException on produce and on consume.
func TestSASLSSLJavaClient(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	b := startSASLSSLBroker(t)
	runSASLSuite(t, b, "java", saslJavaSuiteTimeout, minSASLJavaTests)
}

// saslFlinkProfileTimeout bounds one profile's run of the Flink SaslTest:
// compile, JVM start and one job whose waits have 60 s deadlines.
const saslFlinkProfileTimeout = 4 * time.Minute

// TestSASLSSLFlink: the cache pipeline (KafkaSource, KafkaSink) over SASL_SSL
// with SCRAM-SHA-256 and a PEM truststore, once per Flink version, against one
// broker; its output is checked record by record.
func TestSASLSSLFlink(t *testing.T) {
	requireTool(t, "mvn")
	requireTool(t, "java")
	b := startSASLSSLBroker(t)
	for _, profile := range []string{"flink-2.2", "flink-1.20"} {
		t.Run(profile, func(t *testing.T) {
			runSASLSuite(t, b, "flink", saslFlinkProfileTimeout, 1, "-P", profile)
		})
	}
}
