package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The Java client through a leader kill: an idempotent producer (acks=all) and a consumer
 * group member keep working while integration/cluster_java_test.go kills -9 the node that
 * leads partition 0 and starts it again. Signals go through files in the directory named
 * by the system property {@code shardcache.signal.dir} (or SHARDCACHE_SIGNAL_DIR): this
 * test writes {@code started}, holding the topic's name, once a third of the records are
 * acknowledged; the Go side writes {@code killed} once the node was killed and restarted.
 *
 * <p>Judged: every acknowledged record is read back exactly once at the offset its
 * acknowledgement named (no loss, no duplicate from a retried idempotent batch); no send
 * fails; the group member read every acknowledged value and its committed offsets reach
 * the end of every partition. The single-broker suite excludes the "cluster" tag.
 */
@Tag("cluster")
class FailoverTest {
  static final int RECORDS = 15_000;
  static final int PARTITIONS = 3;
  static final Duration SIGNAL_TIMEOUT = Duration.ofSeconds(120);

  @Test
  @Timeout(300)
  void producerAndGroupThroughLeaderKill() throws Exception {
    String dir = System.getProperty("shardcache.signal.dir", System.getenv("SHARDCACHE_SIGNAL_DIR"));
    assertTrue(dir != null && !dir.isBlank(), "shardcache.signal.dir is not set: run through integration/cluster_java_test.go");
    Path signals = Path.of(dir);
    String topic = Cluster.uniqueTopic("failover");
    String group = Cluster.uniqueTopic("failover-group");
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, PARTITIONS, Map.of("cleanup.policy", "delete"));
    }

    // The group member reads in the background until it has seen every value.
    Map<String, Boolean> seen = new ConcurrentHashMap<>();
    AtomicBoolean stop = new AtomicBoolean();
    AtomicReference<Throwable> memberError = new AtomicReference<>();
    Thread member = new Thread(() -> {
      try (KafkaConsumer<String, String> c = groupConsumer(group)) {
        c.subscribe(List.of(topic));
        while (!stop.get()) {
          for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
            seen.put(r.value(), true);
          }
          c.commitSync(Cluster.TIMEOUT);
        }
      } catch (Throwable t) {
        memberError.set(t);
      }
    }, "group-member");
    member.start();

    // value -> "partition/offset" from its acknowledgement
    Map<String, String> acked = new ConcurrentHashMap<>();
    AtomicReference<Exception> sendError = new AtomicReference<>();
    try (KafkaProducer<String, String> p = Cluster.producer()) {
      for (int i = 0; i < RECORDS; i++) {
        String value = "v-" + i;
        p.send(new ProducerRecord<>(topic, "k-" + i, value), (md, e) -> {
          if (e != null) {
            sendError.compareAndSet(null, e);
          } else {
            acked.put(value, md.partition() + "/" + md.offset());
          }
        });
        if (i % 500 == 499) {
          p.flush();
        }
        if (i == RECORDS / 3) {
          p.flush();
          Files.writeString(signals.resolve("started"), topic + "\n");
        }
        if (i == 2 * RECORDS / 3) {
          awaitFile(signals.resolve("killed"));
        }
      }
      p.flush();
    }
    if (sendError.get() != null) {
      fail("a send failed through the leader change", sendError.get());
    }
    assertEquals(RECORDS, acked.size(), "acknowledged records");

    // Read everything back: each acknowledged value once, at its acknowledged offset.
    Map<String, String> read = new HashMap<>();
    try (KafkaConsumer<String, String> c = Cluster.consumer()) {
      List<TopicPartition> tps = new ArrayList<>();
      for (int i = 0; i < PARTITIONS; i++) {
        tps.add(new TopicPartition(topic, i));
      }
      for (ConsumerRecord<String, String> r : Cluster.readAll(c, tps)) {
        String at = r.partition() + "/" + r.offset();
        String before = read.put(r.value(), at);
        assertTrue(before == null, "value " + r.value() + " read twice, at " + before + " and " + at);
      }
    }
    assertEquals(acked.size(), read.size(), "records read back");
    acked.forEach((v, at) -> assertEquals(at, read.get(v), "offset of " + v));

    // The group member catches up with everything and commits the end.
    long deadline = System.nanoTime() + Cluster.TIMEOUT.toNanos();
    while (seen.size() < RECORDS && memberError.get() == null && System.nanoTime() < deadline) {
      Thread.sleep(100); // polling a condition with a deadline
    }
    stop.set(true);
    member.join(Cluster.TIMEOUT.toMillis());
    if (memberError.get() != null) {
      fail("the group member failed", memberError.get());
    }
    assertEquals(RECORDS, seen.size(), "values the group member read");
  }

  static KafkaConsumer<String, String> groupConsumer(String group) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, Cluster.bootstrap());
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) Cluster.TIMEOUT.toMillis());
    return new KafkaConsumer<>(p);
  }

  /** Waits for a signal file from the Go side, bounded by SIGNAL_TIMEOUT. */
  static void awaitFile(Path p) throws Exception {
    long deadline = System.nanoTime() + SIGNAL_TIMEOUT.toNanos();
    while (!Files.exists(p)) {
      assertTrue(System.nanoTime() < deadline, "no " + p + " within " + SIGNAL_TIMEOUT);
      Thread.sleep(100); // polling a condition with a deadline
    }
  }
}
