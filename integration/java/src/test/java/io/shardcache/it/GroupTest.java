package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;

/**
 * Consumer groups with the Java client's classic protocol: three subscribe() members split a
 * topic; one is killed (its JVM destroyed: no LeaveGroup, no heartbeats) and the two survivors
 * take its partitions once its session times out, and read what is written to them.
 */
class GroupTest {
  private static final long MS = Cluster.TIMEOUT.toMillis();
  /** The broker's default group.min.session.timeout.ms. */
  private static final int SESSION_MS = 6000;
  private static final int PARTITIONS = 6;

  static Properties memberProps(String bootstrap, String group, int sessionMs) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, sessionMs);
    p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
    p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, 200);
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) MS);
    return p;
  }

  /** One in-process member: its own thread owns its KafkaConsumer. */
  private static final class Member implements AutoCloseable {
    final AtomicReference<Set<TopicPartition>> assignment = new AtomicReference<>(Set.of());
    final Set<String> keys = ConcurrentHashMap.newKeySet();
    final AtomicBoolean stop = new AtomicBoolean();
    final AtomicReference<Throwable> error = new AtomicReference<>();
    final Thread thread;

    Member(String group, String topic) {
      CountDownLatch started = new CountDownLatch(1);
      thread = new Thread(() -> {
        try (KafkaConsumer<String, String> c =
            new KafkaConsumer<>(memberProps(Cluster.bootstrap(), group, SESSION_MS))) {
          c.subscribe(List.of(topic));
          started.countDown();
          long end = System.nanoTime() + Duration.ofMinutes(3).toNanos();
          while (!stop.get() && System.nanoTime() < end) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
              keys.add(r.key());
            }
            assignment.set(Set.copyOf(c.assignment()));
          }
        } catch (Throwable t) {
          error.set(t);
        }
      });
      thread.start();
      try {
        started.await(MS, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    @Override
    public void close() throws Exception {
      stop.set(true);
      thread.join(MS);
    }
  }

  private static void waitUntil(String what, BooleanSupplier cond) throws InterruptedException {
    long deadline = System.nanoTime() + Cluster.TIMEOUT.toNanos();
    while (!cond.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        fail(what + ": not reached within " + Cluster.TIMEOUT);
      }
      Thread.sleep(100);
    }
  }

  private static ConsumerGroupDescription describe(Admin admin, String group) {
    try {
      return admin.describeConsumerGroups(List.of(group)).all().get(MS, TimeUnit.MILLISECONDS)
          .get(group);
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }

  /** Partition -> number of members assigned it; empty unless every member decoded. */
  private static Map<Integer, Integer> owners(ConsumerGroupDescription d) {
    Map<Integer, Integer> out = new HashMap<>();
    for (MemberDescription m : d.members()) {
      for (TopicPartition tp : m.assignment().topicPartitions()) {
        out.merge(tp.partition(), 1, Integer::sum);
      }
    }
    return out;
  }

  private static boolean splitAmong(ConsumerGroupDescription d, int members) {
    Map<Integer, Integer> o = owners(d);
    return d.members().size() == members && o.size() == PARTITIONS
        && o.values().stream().allMatch(n -> n == 1)
        && d.members().stream().allMatch(m -> !m.assignment().topicPartitions().isEmpty());
  }

  @Test
  void killedMemberPartitionsMoveToSurvivors() throws Exception {
    String topic = Cluster.uniqueTopic("java-group");
    String group = "g-" + topic;
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, PARTITIONS, Map.of());

      String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
      Process child = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
          "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
          GroupMemberMain.class.getName(), Cluster.bootstrap(), group, topic,
          Integer.toString(SESSION_MS))
          .redirectErrorStream(true).start();
      List<String> childOut = new ArrayList<>();
      Thread reader = new Thread(() -> {
        try (BufferedReader r = new BufferedReader(
            new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
          for (String line; (line = r.readLine()) != null; ) {
            synchronized (childOut) {
              childOut.add(line);
            }
          }
        } catch (Exception ignored) {
          // the process was killed
        }
      });
      reader.start();
      try (Member a = new Member(group, topic); Member b = new Member(group, topic)) {
        waitUntil("three members split the " + PARTITIONS + " partitions",
            () -> splitAmong(describe(admin, group), 3));

        child.destroyForcibly();
        assertTrue(child.waitFor(MS, TimeUnit.MILLISECONDS), "child JVM killed");
        long killedAt = System.nanoTime();

        waitUntil("the two survivors own every partition", () -> {
          Set<TopicPartition> all = new HashSet<>(a.assignment.get());
          all.addAll(b.assignment.get());
          return all.size() == PARTITIONS && splitAmong(describe(admin, group), 2);
        });
        long tookMs = (System.nanoTime() - killedAt) / 1_000_000;
        System.out.println("survivors took over " + tookMs + " ms after the kill (session "
            + SESSION_MS + " ms)");

        // What is written now, to every partition, reaches the survivors.
        Set<String> want = new HashSet<>();
        try (KafkaProducer<String, String> producer = Cluster.producer()) {
          for (int p = 0; p < PARTITIONS; p++) {
            String key = "after-kill-" + p;
            want.add(key);
            producer.send(new ProducerRecord<>(topic, p, key, "v")).get(MS, TimeUnit.MILLISECONDS);
          }
        }
        waitUntil("survivors read the records written after the kill", () -> {
          Set<String> got = new HashSet<>(a.keys);
          got.addAll(b.keys);
          return got.containsAll(want);
        });
        assertEquals(null, a.error.get(), "member a");
        assertEquals(null, b.error.get(), "member b");
      } finally {
        child.destroyForcibly();
        reader.join(MS);
        synchronized (childOut) {
          System.out.println("child member output: " + childOut);
        }
      }
    }
  }
}
