package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.Test;

/** AdminClient calls that tools and Flink's KafkaSource make against the broker. */
class AdminTest {

  private static final long MS = Cluster.TIMEOUT.toMillis();

  /**
   * createTopics with configs, then describeTopics shows every partition with a leader and
   * describeConfigs returns the configs set at creation as topic overrides.
   */
  @Test
  void createDescribeTopicAndConfigs() throws Exception {
    String topic = Cluster.uniqueTopic("java-admin");
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, 3, Map.of(
          "cleanup.policy", "compact",
          "delete.retention.ms", "5000",
          "max.message.bytes", "2000000"));

      TopicDescription desc =
          admin.describeTopics(List.of(topic)).allTopicNames().get(MS, TimeUnit.MILLISECONDS)
              .get(topic);
      assertNotNull(desc, "description of " + topic);
      assertEquals(topic, desc.name());
      assertFalse(desc.isInternal());
      assertEquals(3, desc.partitions().size(), "partitions: " + desc.partitions());
      for (int p = 0; p < 3; p++) {
        TopicPartitionInfo info = desc.partitions().get(p);
        assertEquals(p, info.partition());
        Node leader = info.leader();
        assertNotNull(leader, "leader of partition " + p);
        assertTrue(leader.id() >= 0, "leader id of partition " + p + ": " + leader);
        assertTrue(info.replicas().contains(leader), "leader among replicas: " + info);
        assertTrue(info.isr().contains(leader), "leader in ISR: " + info);
      }

      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config cfg = admin.describeConfigs(List.of(res)).all().get(MS, TimeUnit.MILLISECONDS)
          .get(res);
      assertNotNull(cfg, "configs of " + topic);
      assertOverride(cfg, "cleanup.policy", "compact");
      assertOverride(cfg, "delete.retention.ms", "5000");
      assertOverride(cfg, "max.message.bytes", "2000000");
      ConfigEntry unset = cfg.get("min.compaction.lag.ms");
      assertNotNull(unset, "describeConfigs lists configs left at their default: " + cfg);
      assertNotNull(unset.value(), "default value of min.compaction.lag.ms");
      assertTrue(unset.isDefault() || unset.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
          "min.compaction.lag.ms was not set on the topic: " + unset);
    }
  }

  private static void assertOverride(Config cfg, String name, String want) {
    ConfigEntry e = cfg.get(name);
    assertNotNull(e, name + " in " + cfg);
    assertEquals(want, e.value(), name);
    assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, e.source(), name + " source");
    assertFalse(e.isDefault(), name + " is a topic override");
  }

  /**
   * listOffsets earliest, latest and forTimestamp over a log with a compacted gap: offset 0
   * is superseded by a later write of the same key, yet the log start stays 0 and a lookup by
   * timestamp answers the first live offset whose timestamp is at or after the target.
   */
  @Test
  void listOffsetsEarliestLatestAndForTimestamp() throws Exception {
    String topic = Cluster.uniqueTopic("java-listoffsets");
    TopicPartition tp = new TopicPartition(topic, 0);
    long base = System.currentTimeMillis() - 60_000;
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, 1, Map.of("cleanup.policy", "compact"));
      try (KafkaProducer<String, String> producer = Cluster.producer()) {
        // k0..k4 at offsets 0..4 with timestamps base, base+1s, ..., base+4s.
        for (int i = 0; i < 5; i++) {
          RecordMetadata md = producer.send(
              new ProducerRecord<>(topic, 0, base + i * 1000L, "k" + i, "v" + i))
              .get(MS, TimeUnit.MILLISECONDS);
          assertEquals(i, md.offset(), "offset of k" + i);
        }
        // Rewriting k0 supersedes offset 0: the new record is offset 5 at base+5s.
        RecordMetadata md = producer.send(
            new ProducerRecord<>(topic, 0, base + 5000L, "k0", "v0-new"))
            .get(MS, TimeUnit.MILLISECONDS);
        assertEquals(5, md.offset(), "offset of rewritten k0");
      }

      assertEquals(0, offset(admin, tp, OffsetSpec.earliest()).offset(),
          "earliest (log start stays put under compaction)");
      assertEquals(6, offset(admin, tp, OffsetSpec.latest()).offset(), "latest");

      record Case(long ts, long wantOffset, long wantTs) {}
      List<Case> cases = List.of(
          new Case(base - 10_000, 1, base + 1000), // offset 0 is compacted away
          new Case(base, 1, base + 1000),
          new Case(base + 1000, 1, base + 1000),
          new Case(base + 1500, 2, base + 2000),
          new Case(base + 4500, 5, base + 5000),
          new Case(base + 5000, 5, base + 5000),
          new Case(base + 6000, -1, -1)); // nothing at or after: -1
      for (Case c : cases) {
        ListOffsetsResultInfo info = offset(admin, tp, OffsetSpec.forTimestamp(c.ts()));
        String what = "forTimestamp(base" + (c.ts() - base >= 0 ? "+" : "") + (c.ts() - base) + ")";
        assertEquals(c.wantOffset(), info.offset(), what + " offset");
        assertEquals(c.wantTs(), info.timestamp(), what + " timestamp");
      }
    }
  }

  private static ListOffsetsResultInfo offset(Admin admin, TopicPartition tp, OffsetSpec spec)
      throws Exception {
    return admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get(MS, TimeUnit.MILLISECONDS);
  }
}
