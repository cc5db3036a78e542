package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Assumptions;

/**
 * Shared helpers: where the broker is, client factories and a bounded read-to-end loop.
 *
 * <p>The broker address comes from the system property or environment variable
 * SHARDCACHE_BOOTSTRAP; without it every test is skipped (integration/clients_test.go always
 * sets it).
 */
final class Cluster {
  /** Upper bound for any single wait on the broker. */
  static final Duration TIMEOUT = Duration.ofSeconds(30);

  private Cluster() {}

  /** Returns the bootstrap address, skipping the calling test when none is configured. */
  static String bootstrap() {
    String addr = System.getProperty("SHARDCACHE_BOOTSTRAP");
    if (addr == null || addr.isBlank()) {
      addr = System.getenv("SHARDCACHE_BOOTSTRAP");
    }
    Assumptions.assumeTrue(
        addr != null && !addr.isBlank(), "SHARDCACHE_BOOTSTRAP is not set; no broker to test");
    return addr;
  }

  /** Returns a topic name no other test (or earlier run on the same broker) uses. */
  static String uniqueTopic(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static Admin admin() {
    return admin(Map.of());
  }

  /** An Admin client with more properties (security settings, for one). */
  static Admin admin(Map<String, Object> extra) {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
    p.putAll(extra);
    return Admin.create(p);
  }

  /** A producer with the client's defaults (idempotent, acks=all) and String serdes. */
  static KafkaProducer<String, String> producer() {
    return producer(Map.of());
  }

  /** {@link #producer()} with more properties. */
  static KafkaProducer<String, String> producer(Map<String, Object> extra) {
    Map<String, Object> p = new HashMap<>();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, TIMEOUT.toMillis());
    p.putAll(extra);
    return new KafkaProducer<>(p);
  }

  /** A group-less consumer (for assign) with String serdes. */
  static KafkaConsumer<String, String> consumer() {
    return consumer(Map.of());
  }

  /** {@link #consumer()} with more properties (a group.id, security settings). */
  static KafkaConsumer<String, String> consumer(Map<String, Object> extra) {
    Map<String, Object> p = new HashMap<>();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
    p.putAll(extra);
    return new KafkaConsumer<>(p);
  }

  /** Creates a topic with the given partitions, replication factor 1 and configs. */
  static void createTopic(Admin admin, String topic, int partitions, Map<String, String> configs)
      throws Exception {
    NewTopic nt = new NewTopic(topic, partitions, (short) 1).configs(configs);
    admin.createTopics(List.of(nt)).all().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
  }

  /**
   * Assigns the partitions, seeks to the beginning and polls until the position of every
   * partition reaches its end offset (high watermark), failing after {@link #TIMEOUT}.
   */
  static List<ConsumerRecord<String, String>> readAll(
      KafkaConsumer<String, String> consumer, List<TopicPartition> tps) {
    consumer.assign(tps);
    consumer.seekToBeginning(tps);
    Map<TopicPartition, Long> end = consumer.endOffsets(tps, TIMEOUT);
    List<ConsumerRecord<String, String>> out = new ArrayList<>();
    long deadline = System.nanoTime() + TIMEOUT.toNanos();
    while (!atEnd(consumer, tps, end)) {
      if (System.nanoTime() > deadline) {
        Map<TopicPartition, Long> pos = new HashMap<>();
        for (TopicPartition tp : tps) {
          pos.put(tp, consumer.position(tp));
        }
        fail("consumer did not reach the end offsets " + end + " within " + TIMEOUT
            + "; positions " + pos + ", " + out.size() + " records read");
      }
      for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
        out.add(r);
      }
    }
    for (TopicPartition tp : tps) {
      assertTrue(end.get(tp) >= 0, "end offset of " + tp);
    }
    return out;
  }

  private static boolean atEnd(
      KafkaConsumer<String, String> consumer, List<TopicPartition> tps,
      Map<TopicPartition, Long> end) {
    for (TopicPartition tp : tps) {
      if (consumer.position(tp, TIMEOUT) < end.get(tp)) {
        return false;
      }
    }
    return true;
  }
}
