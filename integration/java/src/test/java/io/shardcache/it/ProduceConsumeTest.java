package io.shardcache.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/** The default Java producer and an assigned consumer against a compacted topic. */
class ProduceConsumeTest {

  /**
   * The default producer (idempotent, acks=all, so the broker must answer InitProducerId and
   * track sequences) gets dense offsets from 0 per partition, in send order.
   */
  @Test
  void defaultProducerGetsDenseOffsetsPerPartition() throws Exception {
    String topic = Cluster.uniqueTopic("java-offsets");
    int partitions = 3;
    int records = 60;
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, partitions, Map.of("cleanup.policy", "compact"));
    }
    List<Future<RecordMetadata>> futures = new ArrayList<>();
    try (KafkaProducer<String, String> producer = Cluster.producer()) {
      for (int i = 0; i < records; i++) {
        futures.add(producer.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i)));
      }
      producer.flush();
    }
    Map<Integer, List<Long>> offsets = new TreeMap<>();
    for (Future<RecordMetadata> f : futures) {
      RecordMetadata md = f.get(Cluster.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      assertEquals(topic, md.topic());
      assertTrue(md.hasOffset(), "acks=all metadata carries an offset");
      offsets.computeIfAbsent(md.partition(), p -> new ArrayList<>()).add(md.offset());
    }
    int total = 0;
    for (Map.Entry<Integer, List<Long>> e : offsets.entrySet()) {
      assertTrue(e.getKey() >= 0 && e.getKey() < partitions, "partition " + e.getKey());
      List<Long> got = e.getValue();
      for (int i = 0; i < got.size(); i++) {
        assertEquals(i, got.get(i), "offsets of partition " + e.getKey() + ": " + got);
      }
      total += got.size();
    }
    assertEquals(records, total);
    assertTrue(offsets.size() > 1, "60 distinct keys spread over more than one partition");
  }

  /**
   * After every key is written several times, assign + seekToBeginning reads exactly one
   * record per key, carrying the last value written, and reaches the high watermark.
   */
  @Test
  void fullReadOfCompactedTopicReturnsLatestValuePerKey() throws Exception {
    String topic = Cluster.uniqueTopic("java-compact");
    int partitions = 2;
    int keys = 50;
    int rounds = 4;
    try (Admin admin = Cluster.admin()) {
      Cluster.createTopic(admin, topic, partitions, Map.of("cleanup.policy", "compact"));
    }
    try (KafkaProducer<String, String> producer = Cluster.producer()) {
      List<Future<RecordMetadata>> futures = new ArrayList<>();
      for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < keys; k++) {
          futures.add(producer.send(new ProducerRecord<>(topic, "k" + k, "v" + k + "-" + round)));
        }
        // Flush per round so the rounds land in separate batches, not one collapsed batch.
        producer.flush();
      }
      for (Future<RecordMetadata> f : futures) {
        f.get(Cluster.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      }
    }

    List<TopicPartition> tps = new ArrayList<>();
    for (int p = 0; p < partitions; p++) {
      tps.add(new TopicPartition(topic, p));
    }
    List<ConsumerRecord<String, String>> got;
    Map<TopicPartition, Long> end;
    try (KafkaConsumer<String, String> consumer = Cluster.consumer()) {
      got = Cluster.readAll(consumer, tps);
      end = consumer.endOffsets(tps, Cluster.TIMEOUT);
    }

    long hwmSum = 0;
    for (long e : end.values()) {
      hwmSum += e;
    }
    assertEquals((long) keys * rounds, hwmSum, "high watermarks count every write: " + end);

    Map<String, String> latest = new HashMap<>();
    for (ConsumerRecord<String, String> r : got) {
      assertNotNull(r.key(), "record at " + r.partition() + "/" + r.offset() + " has a key");
      assertNull(latest.put(r.key(), r.value()),
          "key " + r.key() + " read twice (offset " + r.offset() + ")");
    }
    assertEquals(keys, got.size(), "one record per live key");
    for (int k = 0; k < keys; k++) {
      assertEquals("v" + k + "-" + (rounds - 1), latest.get("k" + k), "value of k" + k);
    }
  }

  /**
   * Every codec the Java producer offers: each batch is decompressed by the broker (which reads
   * the keys) and read back, compressed again by the broker with the producer's codec. Values
   * repeat within a batch, and one is 200 KiB, so an lz4 batch spans several 64 KiB lz4 blocks.
   */
  @Test
  void everyCompressionCodecRoundTrips() throws Exception {
    for (String codec : List.of("gzip", "snappy", "lz4", "zstd")) {
      String topic = Cluster.uniqueTopic("java-" + codec);
      try (Admin admin = Cluster.admin()) {
        Cluster.createTopic(admin, topic, 1, Map.of("cleanup.policy", "compact"));
      }
      Map<String, String> want = new HashMap<>();
      try (KafkaProducer<String, String> producer =
          Cluster.producer(Map.of("compression.type", codec, "linger.ms", 20))) {
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        for (int i = 0; i < 600; i++) {
          String key = "k" + (i % 200);
          String value = i == 599 ? "big-".repeat(50 << 10) : "value of " + key + " round " + i / 200;
          want.put(key, value);
          futures.add(producer.send(new ProducerRecord<>(topic, key, value)));
        }
        for (Future<RecordMetadata> f : futures) {
          f.get(Cluster.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        }
      }
      List<ConsumerRecord<String, String>> got;
      try (KafkaConsumer<String, String> consumer = Cluster.consumer()) {
        got = Cluster.readAll(consumer, List.of(new TopicPartition(topic, 0)));
      }
      Map<String, String> latest = new HashMap<>();
      for (ConsumerRecord<String, String> r : got) {
        latest.put(r.key(), r.value());
      }
      assertEquals(200, got.size(), codec + ": one record per live key");
      assertEquals(want, latest, codec + ": the last value of every key");
    }
  }
}
