package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Java client over SASL_SSL with SCRAM-SHA-256 and SCRAM-SHA-512. Run by
 * integration/security_clients_test.go (TestSASLSSLJavaClient) with SHARDCACHE_BOOTSTRAP set to
 * the broker's SASL_SSL listener, SHARDCACHE_SSL_CA_FILE to the PEM file of the CA that signed
 * its certificate, and SHARDCACHE_SASL_ADMIN / SHARDCACHE_SASL_ADMIN_PASSWORD to its bootstrap
 * admin (system properties of the same names win). The PLAINTEXT suite (TestJavaClient)
 * excludes the "sasl" tag.
 *
 * <p>The admin (a super user) creates one user per mechanism through
 * AlterUserScramCredentials (the Java client salts the password; the broker stores what it is
 * sent) and, with createAcls, lets both do everything on the topics named "java-sasl-..." and
 * read the groups named so: the broker allows nothing without an ACL once a listener
 * authenticates. Each user produces with the default idempotent producer and reads its
 * records back in a consumer group; a wrong password, and a mechanism the user has no
 * credential for, are refused with SaslAuthenticationException on the producer, the consumer
 * and the Admin client; topics the ACLs deny get TopicAuthorizationException on produce and
 * on consume while an allowed topic works.
 */
@Tag("sasl")
class SaslTest {
  static final String PASSWORD = "java-secret";
  static final int RECORDS = 50;
  static final int PARTITIONS = 2;
  /** The prefix of the topics and groups the users may use. */
  static final String PREFIX = "java-sasl-";
  private static final long MS = Cluster.TIMEOUT.toMillis();

  /** A setting from the system property or, without one, the environment variable. */
  static String setting(String name) {
    String v = System.getProperty(name, System.getenv(name));
    assertTrue(v != null && !v.isBlank(),
        name + " is not set: run through integration/security_clients_test.go");
    return v.trim();
  }

  /** The user this test creates for a mechanism: java-scram-sha-256 and java-scram-sha-512. */
  static String userFor(String mechanism) {
    return "java-" + mechanism.toLowerCase();
  }

  /**
   * Client properties for SASL_SSL with a SCRAM mechanism: the CA as a PEM truststore
   * (KIP-651) and the JAAS line of Kafka's ScramLoginModule.
   */
  static Map<String, Object> security(String mechanism, String user, String password) {
    Map<String, Object> p = new HashMap<>();
    p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
    p.put(SaslConfigs.SASL_MECHANISM, mechanism);
    p.put(SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.scram.ScramLoginModule required"
        + " username=\"" + user + "\" password=\"" + password + "\";");
    p.put(SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PEM");
    p.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, setting("SHARDCACHE_SSL_CA_FILE"));
    return p;
  }

  /** The bootstrap admin's properties (it has both SCRAM mechanisms; SCRAM-SHA-512 is used). */
  static Map<String, Object> admin() {
    return security("SCRAM-SHA-512", setting("SHARDCACHE_SASL_ADMIN"),
        setting("SHARDCACHE_SASL_ADMIN_PASSWORD"));
  }

  @BeforeAll
  static void createUsers() throws Exception {
    try (Admin admin = Cluster.admin(admin())) {
      admin.alterUserScramCredentials(List.of(
          new UserScramCredentialUpsertion(userFor("SCRAM-SHA-256"),
              new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), PASSWORD),
          new UserScramCredentialUpsertion(userFor("SCRAM-SHA-512"),
              new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), PASSWORD)))
          .all().get(MS, TimeUnit.MILLISECONDS);
      Map<String, UserScramCredentialsDescription> users = admin.describeUserScramCredentials(
          List.of(userFor("SCRAM-SHA-256"), userFor("SCRAM-SHA-512"))).all().get(MS, TimeUnit.MILLISECONDS);
      assertEquals(List.of(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)),
          users.get(userFor("SCRAM-SHA-256")).credentialInfos(), "credentials of " + userFor("SCRAM-SHA-256"));
      assertEquals(List.of(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)),
          users.get(userFor("SCRAM-SHA-512")).credentialInfos(), "credentials of " + userFor("SCRAM-SHA-512"));
      List<AclBinding> acls = new ArrayList<>();
      for (String m : List.of("SCRAM-SHA-256", "SCRAM-SHA-512")) {
        acls.add(acl(ResourceType.TOPIC, PREFIX, PatternType.PREFIXED, userFor(m), AclOperation.ALL, AclPermissionType.ALLOW));
        acls.add(acl(ResourceType.GROUP, PREFIX, PatternType.PREFIXED, userFor(m), AclOperation.READ, AclPermissionType.ALLOW));
      }
      admin.createAcls(acls).all().get(MS, TimeUnit.MILLISECONDS);
    }
  }

  /** One ACL binding for User:user from any host. */
  static AclBinding acl(ResourceType type, String name, PatternType pattern, String user,
      AclOperation op, AclPermissionType permission) {
    return new AclBinding(new ResourcePattern(type, name, pattern),
        new AccessControlEntry("User:" + user, "*", op, permission));
  }

  /**
   * The user of the mechanism creates a topic, produces RECORDS keyed records with the
   * default producer (idempotent, acks=all: InitProducerId over SASL_SSL too), and a
   * consumer group member reads exactly them back and commits.
   */
  @ParameterizedTest
  @ValueSource(strings = {"SCRAM-SHA-256", "SCRAM-SHA-512"})
  void produceAndConsume(String mechanism) throws Exception {
    Map<String, Object> sec = security(mechanism, userFor(mechanism), PASSWORD);
    String topic = Cluster.uniqueTopic(PREFIX + "data");
    try (Admin admin = Cluster.admin(sec)) {
      Cluster.createTopic(admin, topic, PARTITIONS, Map.of("cleanup.policy", "delete"));
    }
    Map<String, String> sent = new TreeMap<>();
    try (KafkaProducer<String, String> producer = Cluster.producer(sec)) {
      List<Future<RecordMetadata>> acks = new ArrayList<>();
      for (int i = 0; i < RECORDS; i++) {
        sent.put("k" + i, "v" + i);
        acks.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
      }
      producer.flush();
      for (Future<RecordMetadata> f : acks) {
        assertTrue(f.get(MS, TimeUnit.MILLISECONDS).hasOffset(), "acks=all metadata has an offset");
      }
    }

    Map<String, Object> cp = new HashMap<>(sec);
    cp.put(ConsumerConfig.GROUP_ID_CONFIG, Cluster.uniqueTopic(PREFIX + "group"));
    cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    Map<String, String> got = new TreeMap<>();
    try (KafkaConsumer<String, String> consumer = Cluster.consumer(cp)) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + Cluster.TIMEOUT.toNanos();
      while (got.size() < RECORDS) {
        if (System.nanoTime() > deadline) {
          fail("the group member read " + got.size() + " of " + RECORDS + " records within " + Cluster.TIMEOUT);
        }
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          assertEquals(null, got.put(r.key(), r.value()), "key " + r.key() + " read twice");
        }
      }
      consumer.commitSync(Cluster.TIMEOUT);
      List<TopicPartition> tps = new ArrayList<>();
      for (int p = 0; p < PARTITIONS; p++) {
        tps.add(new TopicPartition(topic, p));
      }
      Map<TopicPartition, Long> end = consumer.endOffsets(tps, Cluster.TIMEOUT);
      Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(Set.copyOf(tps), Cluster.TIMEOUT);
      for (TopicPartition tp : tps) {
        long at = committed.get(tp) == null ? 0 : committed.get(tp).offset();
        assertEquals(end.get(tp), at, "committed offset of " + tp);
      }
    }
    assertEquals(sent, got, "records read back by " + userFor(mechanism));
  }

  /** A wrong password is refused on the producer, the consumer and the Admin client. */
  @ParameterizedTest
  @ValueSource(strings = {"SCRAM-SHA-256", "SCRAM-SHA-512"})
  void wrongPasswordIsRefused(String mechanism) {
    assertRefused(security(mechanism, userFor(mechanism), "not-" + PASSWORD));
  }

  /** A user is refused on a mechanism it has no credential for (java-scram-sha-256 on SHA-512). */
  @Test
  void mechanismWithoutCredentialIsRefused() {
    assertRefused(security("SCRAM-SHA-512", userFor("SCRAM-SHA-256"), PASSWORD));
  }

  /** Unknown users are refused the same way. */
  @Test
  void unknownUserIsRefused() {
    assertRefused(security("SCRAM-SHA-256", "java-nobody", PASSWORD));
  }

  /**
   * Beside the topics it may use, the user is denied two: one with DENY ALL (Metadata
   * already refuses it) and one with DENY WRITE and DENY READ but DESCRIBE still allowed, so
   * that Produce and Fetch themselves refuse. Both get TopicAuthorizationException from the
   * producer and from the consumer; the allowed topic, created in the same way, works. The
   * admin's DescribeAcls lists the bindings it made.
   */
  @Test
  void deniedTopicsGetTopicAuthorizationException() throws Exception {
    String user = userFor("SCRAM-SHA-256");
    String allowed = Cluster.uniqueTopic(PREFIX + "acl-allowed");
    String denied = Cluster.uniqueTopic(PREFIX + "acl-denied");
    String noWriteRead = Cluster.uniqueTopic(PREFIX + "acl-no-write-read");
    List<AclBinding> denies = List.of(
        acl(ResourceType.TOPIC, denied, PatternType.LITERAL, user, AclOperation.ALL, AclPermissionType.DENY),
        acl(ResourceType.TOPIC, noWriteRead, PatternType.LITERAL, user, AclOperation.WRITE, AclPermissionType.DENY),
        acl(ResourceType.TOPIC, noWriteRead, PatternType.LITERAL, user, AclOperation.READ, AclPermissionType.DENY));
    try (Admin admin = Cluster.admin(admin())) {
      for (String t : List.of(allowed, denied, noWriteRead)) {
        Cluster.createTopic(admin, t, 1, Map.of("cleanup.policy", "delete"));
      }
      admin.createAcls(denies).all().get(MS, TimeUnit.MILLISECONDS);
      AclBindingFilter mine = new AclBindingFilter(ResourcePatternFilter.ANY,
          new AccessControlEntryFilter("User:" + user, null, AclOperation.ANY, AclPermissionType.DENY));
      assertEquals(Set.copyOf(denies), Set.copyOf(admin.describeAcls(mine).values().get(MS, TimeUnit.MILLISECONDS)),
          "DENY bindings of User:" + user);
    }

    Map<String, Object> sec = security("SCRAM-SHA-256", user, PASSWORD);
    try (KafkaProducer<String, String> producer = Cluster.producer(sec)) {
      producer.send(new ProducerRecord<>(allowed, "k", "v")).get(MS, TimeUnit.MILLISECONDS);
      for (String t : List.of(denied, noWriteRead)) {
        assertThrowsCause(TopicAuthorizationException.class, "produce to " + t,
            () -> producer.send(new ProducerRecord<>(t, "k", "v")).get(MS, TimeUnit.MILLISECONDS));
      }
    }
    try (KafkaConsumer<String, String> consumer = Cluster.consumer(sec)) {
      List<ConsumerRecord<String, String>> got = Cluster.readAll(consumer, List.of(new TopicPartition(allowed, 0)));
      assertEquals(1, got.size(), "records read from " + allowed);
      assertEquals("v", got.get(0).value());
    }
    for (String t : List.of(denied, noWriteRead)) {
      try (KafkaConsumer<String, String> consumer = Cluster.consumer(sec)) {
        consumer.assign(List.of(new TopicPartition(t, 0)));
        assertThrowsCause(TopicAuthorizationException.class, "consume from " + t, () -> {
          long deadline = System.nanoTime() + Cluster.TIMEOUT.toNanos();
          while (System.nanoTime() < deadline) {
            consumer.poll(Duration.ofMillis(200));
          }
        });
      }
    }
  }

  static void assertRefused(Map<String, Object> sec) {
    String topic = Cluster.uniqueTopic("java-sasl-refused");
    assertSaslRefused("producer", () -> {
      try (KafkaProducer<String, String> producer = Cluster.producer(sec)) {
        producer.send(new ProducerRecord<>(topic, "k", "v")).get(MS, TimeUnit.MILLISECONDS);
      }
    });
    assertSaslRefused("consumer", () -> {
      try (KafkaConsumer<String, String> consumer = Cluster.consumer(sec)) {
        consumer.assign(List.of(new TopicPartition(topic, 0)));
        consumer.poll(Cluster.TIMEOUT);
      }
    });
    assertSaslRefused("admin", () -> {
      try (Admin admin = Cluster.admin(sec)) {
        admin.listTopics().names().get(MS, TimeUnit.MILLISECONDS);
      }
    });
  }

  static void assertSaslRefused(String what, Executable call) {
    assertThrowsCause(SaslAuthenticationException.class, what, call);
  }

  /** Runs call and fails unless it throws with a want among the causes of what it throws. */
  static void assertThrowsCause(Class<? extends Throwable> want, String what, Executable call) {
    Throwable thrown = null;
    try {
      call.execute();
    } catch (Throwable t) {
      thrown = t;
    }
    for (Throwable t = thrown; t != null; t = t.getCause()) {
      if (want.isInstance(t)) {
        return;
      }
    }
    throw new AssertionError(what + ": want " + want.getSimpleName() + ", got " + thrown, thrown);
  }
}
