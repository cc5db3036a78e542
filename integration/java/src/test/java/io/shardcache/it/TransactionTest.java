package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/** The Java client's transactional producer with read_committed consumers. */
class TransactionTest {

  static KafkaProducer<String, String> txnProducer(String id, int timeoutMs) {
    Map<String, Object> p = new HashMap<>();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, Cluster.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
    p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, timeoutMs);
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, (int) Cluster.TIMEOUT.toMillis());
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, Cluster.TIMEOUT.toMillis());
    return new KafkaProducer<>(p);
  }

  static KafkaConsumer<String, String> committedConsumer(String group) {
    Map<String, Object> p = new HashMap<>();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, Cluster.bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) Cluster.TIMEOUT.toMillis());
    if (group != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    }
    return new KafkaConsumer<>(p);
  }

  /**
   * Waits until no transaction is open in tp (the last stable offset reaches the high
   * watermark): markers are written after commitTransaction returns, as in Kafka.
   */
  static void waitStable(TopicPartition tp, Duration timeout) throws Exception {
    long deadline = System.nanoTime() + timeout.toNanos();
    try (KafkaConsumer<String, String> committed = committedConsumer(null);
        KafkaConsumer<String, String> all = Cluster.consumer()) {
      while (true) {
        long lso = committed.endOffsets(List.of(tp), Cluster.TIMEOUT).get(tp);
        long hwm = all.endOffsets(List.of(tp), Cluster.TIMEOUT).get(tp);
        if (lso == hwm) {
          return;
        }
        if (System.nanoTime() > deadline) {
          fail(tp + ": last stable offset " + lso + " below high watermark " + hwm + " after " + timeout);
        }
        Thread.sleep(100);
      }
    }
  }

  static Map<String, String> readCommitted(TopicPartition tp) {
    Map<String, String> out = new TreeMap<>();
    try (KafkaConsumer<String, String> c = committedConsumer(null)) {
      for (ConsumerRecord<String, String> r : Cluster.readAll(c, List.of(tp))) {
        assertTrue(out.put(r.key(), r.value()) == null, "key " + r.key() + " read twice");
      }
    }
    return out;
  }

  @Test
  void commitAndAbortWithReadCommitted() throws Exception {
    String topic = Cluster.uniqueTopic("java-txn");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, 1, Map.of("cleanup.policy", "compact"));
    }
    try (KafkaProducer<String, String> p = txnProducer("java-txn-" + topic, 60_000)) {
      p.initTransactions();
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, "a", "committed"));
      p.send(new ProducerRecord<>(topic, 0, "b", "committed"));
      p.commitTransaction();
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, "a", "aborted"));
      p.send(new ProducerRecord<>(topic, 0, "c", "aborted"));
      p.flush();
      p.abortTransaction();
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, "d", "committed"));
      p.commitTransaction();
    }
    waitStable(tp, Cluster.TIMEOUT);
    assertEquals(Map.of("a", "committed", "b", "committed", "d", "committed"), readCommitted(tp));
  }

  @Test
  void secondProducerFencesTheFirst() throws Exception {
    String topic = Cluster.uniqueTopic("java-fence");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, 1, Map.of("cleanup.policy", "compact"));
    }
    String id = "java-fence-" + topic;
    try (KafkaProducer<String, String> zombie = txnProducer(id, 60_000)) {
      zombie.initTransactions();
      zombie.beginTransaction();
      zombie.send(new ProducerRecord<>(topic, 0, "k", "zombie"));
      zombie.flush();
      try (KafkaProducer<String, String> fresh = txnProducer(id, 60_000)) {
        fresh.initTransactions(); // fences the zombie and aborts its transaction
        fresh.beginTransaction();
        fresh.send(new ProducerRecord<>(topic, 0, "k", "fresh"));
        fresh.commitTransaction();
      }
      assertThrows(KafkaException.class, zombie::commitTransaction);
    }
    waitStable(tp, Cluster.TIMEOUT);
    assertEquals(Map.of("k", "fresh"), readCommitted(tp));
  }

  @Test
  void consumeTransformProduceWithSendOffsets() throws Exception {
    String in = Cluster.uniqueTopic("java-etl-in");
    String out = Cluster.uniqueTopic("java-etl-out");
    String group = "java-etl-" + in;
    TopicPartition inTp = new TopicPartition(in, 0);
    TopicPartition outTp = new TopicPartition(out, 0);
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, in, 1, Map.of("cleanup.policy", "compact"));
      Cluster.createTopic(admin, out, 1, Map.of("cleanup.policy", "compact"));
    }
    int n = 20;
    try (KafkaProducer<String, String> p = Cluster.producer()) {
      for (int i = 0; i < n; i++) {
        p.send(new ProducerRecord<>(in, 0, "key-" + i, "v" + i));
      }
      p.flush();
    }
    try (KafkaConsumer<String, String> c = committedConsumer(group);
        KafkaProducer<String, String> p = txnProducer("java-etl-" + in, 60_000)) {
      p.initTransactions();
      c.subscribe(List.of(in));
      int done = 0;
      long deadline = System.nanoTime() + Cluster.TIMEOUT.toNanos();
      while (done < n) {
        if (System.nanoTime() > deadline) {
          fail("transformed " + done + " of " + n + " records within " + Cluster.TIMEOUT);
        }
        ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(200));
        if (recs.isEmpty()) {
          continue;
        }
        p.beginTransaction();
        long next = -1;
        for (ConsumerRecord<String, String> r : recs) {
          p.send(new ProducerRecord<>(out, 0, r.key(), r.value().toUpperCase()));
          next = r.offset() + 1;
          done++;
        }
        p.sendOffsetsToTransaction(Map.of(inTp, new OffsetAndMetadata(next)), c.groupMetadata());
        p.commitTransaction();
      }
    }
    waitStable(outTp, Cluster.TIMEOUT);
    Map<String, String> got = readCommitted(outTp);
    assertEquals(n, got.size());
    for (int i = 0; i < n; i++) {
      assertEquals("V" + i, got.get("key-" + i));
    }
    try (Admin admin = Cluster.admin()) {
      Map<TopicPartition, OffsetAndMetadata> committed = null;
      long deadline = System.nanoTime() + Cluster.TIMEOUT.toNanos();
      while (committed == null || committed.get(inTp) == null || committed.get(inTp).offset() != n) {
        if (System.nanoTime() > deadline) {
          fail("group offsets " + committed + ", want " + n);
        }
        committed = admin.listConsumerGroupOffsets(group, new ListConsumerGroupOffsetsOptions().requireStable(true))
            .partitionsToOffsetAndMetadata().get(Cluster.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      }
    }
  }

  @Test
  void producerKilledMidTransactionIsAbortedAfterItsTimeout() throws Exception {
    String topic = Cluster.uniqueTopic("java-timeout");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, 1, Map.of("cleanup.policy", "compact"));
    }
    KafkaProducer<String, String> dying = txnProducer("java-timeout-" + topic, 2_000);
    dying.initTransactions();
    dying.beginTransaction();
    dying.send(new ProducerRecord<>(topic, 0, "lost", "open"));
    dying.flush();
    dying.close(Duration.ZERO); // no EndTxn: the coordinator must end it
    // The coordinator looks for timed-out transactions every 10 s.
    waitStable(tp, Duration.ofSeconds(45));
    try (KafkaProducer<String, String> p = txnProducer("java-timeout-ok-" + topic, 60_000)) {
      p.initTransactions();
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, "kept", "committed"));
      p.commitTransaction();
    }
    waitStable(tp, Cluster.TIMEOUT);
    assertEquals(Map.of("kept", "committed"), readCommitted(tp));
  }
}
