package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Plain kafka-clients helpers for the Flink tests: topics, writing updates, reading a
 * topic back whole, end offsets and committed offsets. Every call is bounded by
 * {@link #TIMEOUT}.
 */
final class Kafka implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(60);

    final String bootstrap;
    final Admin admin;
    private final KafkaProducer<byte[], byte[]> producer;

    private Kafka(String bootstrap) {
        this.bootstrap = bootstrap;
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        this.admin = Admin.create(ap);
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        this.producer = new KafkaProducer<>(pp);
    }

    /** Connects to SHARDCACHE_BOOTSTRAP (system property or environment); fails without it. */
    static Kafka connect() {
        String b = System.getProperty("SHARDCACHE_BOOTSTRAP", System.getenv("SHARDCACHE_BOOTSTRAP"));
        if (b == null || b.isBlank()) {
            throw new IllegalStateException("SHARDCACHE_BOOTSTRAP is not set: run these tests through integration/flink_test.go");
        }
        return new Kafka(b.trim());
    }

    /** A topic name unique to this run. */
    static String topicName(String what) {
        return "flink-" + what + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    void createTopic(String topic, int partitions, Map<String, String> configs) throws Exception {
        NewTopic nt = new NewTopic(topic, partitions, (short) 1).configs(configs);
        admin.createTopics(List.of(nt)).all().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    }

    void createCompacted(String topic, int partitions) throws Exception {
        createTopic(topic, partitions, Map.of("cleanup.policy", "compact"));
    }

    /** Sends every update (null value: tombstone) and waits until all are acknowledged. */
    void write(String topic, List<Update> updates) throws Exception {
        List<java.util.concurrent.Future<?>> acks = new ArrayList<>(updates.size());
        for (Update u : updates) {
            acks.add(producer.send(record(topic, null, null, u)));
        }
        producer.flush();
        for (var f : acks) {
            f.get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        }
    }

    /** Sends one update to an explicit partition and timestamp (either may be null). */
    void writeAt(String topic, Integer partition, Long timestamp, Update u) throws Exception {
        producer.send(record(topic, partition, timestamp, u)).get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    }

    private static ProducerRecord<byte[], byte[]> record(String topic, Integer partition, Long ts, Update u) {
        byte[] v = u.value == null ? null : u.value.getBytes(StandardCharsets.UTF_8);
        return new ProducerRecord<>(topic, partition, ts, u.key.getBytes(StandardCharsets.UTF_8), v);
    }

    /** The high watermark of every partition of topic. */
    Map<TopicPartition, Long> endOffsets(String topic) throws Exception {
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            List<TopicPartition> tps = partitions(c, topic);
            return c.endOffsets(tps, TIMEOUT);
        }
    }

    /**
     * Reads every partition of topic from the beginning up to the high watermarks taken
     * first, and folds the records into key -> latest value (null for a tombstone).
     */
    Map<String, String> readLatest(String topic) throws Exception {
        Map<String, String> out = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : readAll(topic)) {
            out.put(new String(r.key(), StandardCharsets.UTF_8),
                    r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8));
        }
        return out;
    }

    /** Every record of topic up to the high watermarks, in offset order per partition. */
    List<ConsumerRecord<byte[], byte[]>> readAll(String topic) throws Exception {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer()) {
            List<TopicPartition> tps = partitions(c, topic);
            Map<TopicPartition, Long> ends = c.endOffsets(tps, TIMEOUT);
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (!reached(c, ends)) {
                assertTrue(System.nanoTime() < deadline,
                        "reading " + topic + ": positions did not reach " + ends + " within " + TIMEOUT);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    out.add(r);
                }
            }
        }
        return out;
    }

    private static boolean reached(KafkaConsumer<byte[], byte[]> c, Map<TopicPartition, Long> ends) {
        for (var e : ends.entrySet()) {
            if (c.position(e.getKey(), TIMEOUT) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    /** The offsets group has committed, by partition (partitions without a commit absent). */
    Map<TopicPartition, Long> committed(String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> got = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        Map<TopicPartition, Long> out = new HashMap<>();
        got.forEach((tp, om) -> {
            if (om != null) {
                out.put(tp, om.offset());
            }
        });
        return out;
    }

    /** Waits until group's committed offsets equal want; fails with the last seen ones. */
    void awaitCommitted(String group, Map<TopicPartition, Long> want) throws Exception {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        Map<TopicPartition, Long> got = committed(group);
        while (!got.equals(want) && System.nanoTime() < deadline) {
            Thread.sleep(100); // polling a condition with a deadline
            got = committed(group);
        }
        assertEquals(want, got, "committed offsets of group " + group);
    }

    private static List<TopicPartition> partitions(KafkaConsumer<byte[], byte[]> c, String topic) {
        return c.partitionsFor(topic, TIMEOUT).stream()
                .map(p -> new TopicPartition(topic, p.partition()))
                .collect(Collectors.toList());
    }

    private KafkaConsumer<byte[], byte[]> consumer() {
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(cp);
    }

    /** The expected latest state of updates: key -> last value (null for a tombstone). */
    static Map<String, String> latest(Collection<Update> updates) {
        Map<String, String> out = new HashMap<>();
        for (Update u : updates) {
            out.put(u.key, u.value);
        }
        return out;
    }

    /** The live keys of a latest-state map, with values mapped through {@link MapValue}. */
    static Map<String, String> liveMapped(Map<String, String> latest) {
        Map<String, String> out = new HashMap<>();
        latest.forEach((k, v) -> {
            if (v != null) {
                out.put(k, MapValue.apply(v));
            }
        });
        return out;
    }

    /** Drops tombstones. */
    static Map<String, String> live(Map<String, String> latest) {
        Map<String, String> out = new HashMap<>();
        latest.forEach((k, v) -> {
            if (v != null) {
                out.put(k, v);
            }
        });
        return out;
    }

    @Override
    public void close() {
        producer.close(Duration.ofSeconds(10));
        admin.close(Duration.ofSeconds(10));
    }
}
