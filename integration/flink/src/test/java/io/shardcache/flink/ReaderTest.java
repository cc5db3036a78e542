package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.CloseableIterator;
import org.apache.kafka.clients.admin.NewPartitions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Readers that collect what a KafkaSource emits back into the test: job 3 (a slow reader
 * on a compacted topic, plus partition discovery), and the latest and timestamp offset
 * initializers.
 */
class ReaderTest {
    static Kafka kafka;

    @BeforeAll
    static void connect() {
        kafka = Kafka.connect();
    }

    @AfterAll
    static void close() {
        if (kafka != null) {
            kafka.close();
        }
    }

    /**
     * Job 3: the writer overwrites every key 20 times before an unbounded reader starts from
     * earliest; the reader must catch up (see every key's final value) after reading no more
     * records than there are live keys. Then the topic grows a partition, and partition
     * discovery must bring the new partition's records to the running reader.
     */
    @Test
    @Timeout(180)
    void slowReaderAndPartitionDiscovery() throws Exception {
        final int keys = 1_000;
        final int rounds = 20;
        String topic = Kafka.topicName("slow");
        kafka.createCompacted(topic, 2);
        List<Update> ups = new ArrayList<>(keys * rounds);
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < keys; k++) {
                ups.add(new Update("key-" + k, "round-" + r + "-key-" + k));
            }
        }
        kafka.write(topic, ups);
        Map<String, String> want = Kafka.latest(ups);

        StreamExecutionEnvironment env = Jobs.environment(0);
        var source = Jobs.source(kafka.bootstrap, topic, null, OffsetsInitializer.earliest(), null, 300);
        try (CloseableIterator<Update> it = Jobs.read(env, source, "slow-reader").executeAndCollect("slow-reader")) {
            Map<String, String> seen = new HashMap<>();
            int read = 0;
            while (!seen.equals(want)) {
                assertTrue(it.hasNext(), "the reader's stream ended");
                Update u = it.next();
                read++;
                seen.put(u.key, u.value);
                assertTrue(read <= want.size(), "the reader read " + read + " records before catching up; "
                        + "only " + want.size() + " keys are live (" + ups.size() + " writes)");
            }

            // Partition discovery: a third partition, written directly.
            kafka.admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3)))
                    .all().get(Kafka.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            Set<String> fresh = new HashSet<>();
            for (int i = 0; i < 50; i++) {
                Update u = new Update("new-" + i, "p2-" + i);
                kafka.writeAt(topic, 2, null, u);
                fresh.add(u.key);
            }
            while (!fresh.isEmpty()) {
                assertTrue(it.hasNext(), "the reader's stream ended");
                Update u = it.next();
                if (u.key.startsWith("new-")) {
                    fresh.remove(u.key);
                } else {
                    throw new AssertionError("unexpected record after catching up: " + u);
                }
            }
        }
    }

    /**
     * An unbounded source that starts at the latest offsets reads nothing written before
     * the job started: a writer keeps adding "new" records (a bounded number) until the
     * reader has seen one, and the first record read must be one of them.
     */
    @Test
    @Timeout(180)
    void latestOffsets() throws Exception {
        String topic = Kafka.topicName("latest");
        kafka.createCompacted(topic, 1);
        List<Update> old = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            old.add(new Update("old-" + i, "old"));
        }
        kafka.write(topic, old);

        StreamExecutionEnvironment env = Jobs.environment(0);
        var source = Jobs.source(kafka.bootstrap, topic, null, OffsetsInitializer.latest(), null, 0);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicInteger written = new AtomicInteger();
        try (CloseableIterator<Update> it = Jobs.read(env, source, "latest-reader").executeAndCollect("latest-reader")) {
            CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> {
                try {
                    for (int i = 0; i < 1_200 && !stop.get(); i++) {
                        kafka.writeAt(topic, null, null, new Update("new-" + i, "new"));
                        written.incrementAndGet();
                        Thread.sleep(50); // pacing of the writer, not a wait on the reader
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            try {
                assertTrue(it.hasNext(), "the reader's stream ended");
                Update first = it.next();
                assertEquals("new", first.value, "first record read from latest: " + first);
            } finally {
                stop.set(true);
                writer.get(Kafka.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            }
        }
        assertTrue(written.get() > 0);
    }

    /**
     * A bounded source starting at a timestamp reads exactly the records stamped at or
     * after it: one batch stamped two hours ago, one an hour ago, start at 90 minutes ago.
     */
    @Test
    @Timeout(180)
    void timestampOffsets() throws Exception {
        String topic = Kafka.topicName("ts");
        kafka.createCompacted(topic, 2);
        long now = System.currentTimeMillis();
        long older = now - 2 * 3_600_000L;
        long newer = now - 3_600_000L;
        Set<String> wantKeys = new HashSet<>();
        for (int i = 0; i < 100; i++) {
            kafka.writeAt(topic, i % 2, older, new Update("old-" + i, "old"));
        }
        for (int i = 0; i < 100; i++) {
            kafka.writeAt(topic, i % 2, newer, new Update("new-" + i, "new"));
            wantKeys.add("new-" + i);
        }

        StreamExecutionEnvironment env = Jobs.environment(0);
        var source = Jobs.source(kafka.bootstrap, topic, null,
                OffsetsInitializer.timestamp(now - 90 * 60_000L), OffsetsInitializer.latest(), 0);
        Set<String> got = new HashSet<>();
        int read = 0;
        try (CloseableIterator<Update> it = Jobs.read(env, source, "ts-reader").executeAndCollect("ts-reader")) {
            while (it.hasNext()) {
                Update u = it.next();
                read++;
                got.add(u.key);
            }
        }
        assertEquals(wantKeys, got, "keys read from the timestamp on");
        assertEquals(wantKeys.size(), read, "records read from the timestamp on");
    }
}
