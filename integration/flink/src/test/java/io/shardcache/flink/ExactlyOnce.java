package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.function.BiFunction;
import java.util.stream.Collectors;
import org.apache.flink.connector.kafka.sink.KafkaSinkBuilder;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.JobClient;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One exactly-once run and its checks, shared by the test classes of both Flink
 * versions. A bounded job reads keyed updates from an uncompacted input and writes the
 * mapped values, tagged with the writing attempt ({@link TagAttempt}), through an
 * EXACTLY_ONCE KafkaSink into a compacted output. One subtask fails after a checkpoint
 * completed and before it committed that checkpoint's transaction ({@link
 * FailBeforeCommit}); its restore must commit that transaction from a new producer (a
 * bare EndTxn) and abort the ones the failed attempt left open. The input starts with
 * {@link #SOLO_KEYS} keys written once, so the pre-committed transaction holds final
 * values: had the restore not committed it, they would be missing from the output. A
 * subtask then fails again in the middle of a transaction, which is aborted: no
 * read_committed reader may see what it held.
 *
 * <p>A read_committed consumer follows the output while the job runs, and a second one
 * reads it whole after the job ends. Every input value is unique, so a value seen twice
 * means a record of an aborted attempt became visible or a transaction was committed
 * twice. The final value of every key must equal the input's, mapped; no transaction may
 * stay open (the read_committed end offsets reach the high watermarks).
 */
final class ExactlyOnce {
    static final int SOLO_KEYS = 400;
    static final int UPDATES = 20_000;
    static final int KEYS = 2_000;
    static final int PARTITIONS = 4;
    /** Bounds the job and each read; the test classes' @Timeout is larger. */
    static final Duration JOB_TIMEOUT = Duration.ofSeconds(150);

    private ExactlyOnce() {}

    /**
     * Runs the job with an EXACTLY_ONCE sink that {@code configure} may adjust (given the
     * builder and the output topic), and checks the output. {@code what} names topics,
     * transactional ids and the job.
     */
    static void run(Kafka kafka, String what,
            BiFunction<KafkaSinkBuilder<Update>, String, KafkaSinkBuilder<Update>> configure) throws Exception {
        String input = Kafka.topicName(what + "-in");
        String output = Kafka.topicName(what + "-out");
        String prefix = "eo-" + what + "-" + UUID.randomUUID().toString().substring(0, 8);
        // The input keeps every update (a compacted input would hold only each key's
        // latest by the time the job reads it, too few for the failures to land); the
        // output is compacted.
        kafka.createTopic(input, PARTITIONS, Map.of("cleanup.policy", "delete"));
        kafka.createCompacted(output, PARTITIONS);
        List<Update> ups = new ArrayList<>();
        for (int i = 0; i < SOLO_KEYS; i++) {
            ups.add(new Update("solo-" + i, what + "-solo-" + i));
        }
        ups.addAll(CachePipelineTest.updates(what, UPDATES, KEYS));
        kafka.write(input, ups);

        FailBeforeCommit.reset();
        JobClient job = Jobs.startExactlyOncePipeline(
                Jobs.source(kafka.bootstrap, input, null, OffsetsInitializer.earliest(), OffsetsInitializer.latest(), 0),
                configure.apply(Jobs.exactlyOnceSink(kafka.bootstrap, output, prefix), output).build(),
                "exactly-once-" + what);

        List<ConsumerRecord<byte[], byte[]>> followed = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = committedConsumer(kafka.bootstrap)) {
            List<TopicPartition> tps = partitions(c, output);
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + JOB_TIMEOUT.toNanos();
            var result = job.getJobExecutionResult();
            while (!result.isDone()) {
                assertTrue(System.nanoTime() < deadline, "job " + what + " did not end within " + JOB_TIMEOUT);
                c.poll(Duration.ofMillis(200)).forEach(followed::add);
            }
            result.get(); // throws if the job failed for good
            // Every transaction is committed or aborted once the job is over: the
            // read_committed end (the last stable offset) reaches the high watermark.
            // Both are read afresh each round: as in Kafka, EndTxn returns once the
            // decision is durable and the markers land just after, so the high
            // watermark can still move by one marker after the job has ended.
            Map<TopicPartition, Long> lso = c.endOffsets(tps, Kafka.TIMEOUT);
            Map<TopicPartition, Long> hw = highWatermarks(kafka.bootstrap, tps);
            while (!lso.equals(hw)) {
                assertTrue(System.nanoTime() < deadline,
                        "transactions left open in " + output + ": last stable offsets " + lso + ", high watermarks " + hw);
                Thread.sleep(100); // polling a condition with a deadline
                lso = c.endOffsets(tps, Kafka.TIMEOUT);
                hw = highWatermarks(kafka.bootstrap, tps);
            }
            readTo(c, lso, followed, deadline, output);
        }
        assertTrue(FailBeforeCommit.hasFailed(), "the job never hit its injected failure: " + FailBeforeCommit.describe());
        assertTrue(FailBeforeCommit.checkpointCompletedBeforeFailure(),
                "the failing subtask gave up waiting for its checkpoint to complete");
        assertTrue(FailBeforeCommit.hasFailedAgain(),
                "the job never hit its second injected failure: " + FailBeforeCommit.describe());
        // The values written into the transaction that the second failure left open.
        Set<String> abortedValues = new HashSet<>();
        for (Update u : FailBeforeCommit.aborted()) {
            if (u.value != null) {
                abortedValues.add(MapValue.apply(u.value) + FailBeforeCommit.abortedTag());
            }
        }
        assertTrue(!abortedValues.isEmpty(), "the second failure left no update in an open transaction");

        Map<String, String> want = Kafka.latest(ups);
        // Updates in the transaction that only the restore committed, whose value is final.
        List<Update> finalPreCommitted = FailBeforeCommit.preCommitted().stream()
                .filter(u -> Objects.equals(want.get(u.key), u.value))
                .collect(Collectors.toList());
        assertTrue(!finalPreCommitted.isEmpty(), "no final value among the updates pre-committed before the failure: "
                + FailBeforeCommit.preCommitted().size() + " updates");
        List<ConsumerRecord<byte[], byte[]>> after = readCommitted(kafka.bootstrap, output);
        for (List<ConsumerRecord<byte[], byte[]>> records : List.of(followed, after)) {
            for (ConsumerRecord<byte[], byte[]> r : records) {
                String v = r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8);
                assertTrue(v == null || !abortedValues.contains(v), String.format(
                        "%s-%d@%d: %s was written in the transaction that the second failure aborted",
                        output, r.partition(), r.offset(), v));
            }
        }
        Map<String, String> latest = Kafka.live(Kafka.latest(untagged(after)));
        for (Update u : finalPreCommitted) {
            assertEquals(MapValue.apply(u.value), latest.get(u.key), "key " + u.key
                    + " of the transaction pre-committed before the failure and committed by the restore");
        }
        check("followed while the job ran", followed, want, output);
        check("read after the job ended", after, want, output);
    }

    /**
     * Checks records read by a read_committed consumer from the start of output: no value
     * twice, at least one value written after the restart, and the final value of each key
     * equal to {@code want} mapped (tombstones where the input ends in one).
     */
    static void check(String how, List<ConsumerRecord<byte[], byte[]>> records, Map<String, String> want,
            String output) {
        Map<String, Long> seenAt = new HashMap<>();
        Map<String, String> latest = new HashMap<>();
        int restarted = 0;
        for (ConsumerRecord<byte[], byte[]> r : records) {
            String key = new String(r.key(), StandardCharsets.UTF_8);
            String value = r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8);
            if (value != null) {
                String untagged = TagAttempt.untag(value);
                Long before = seenAt.put(untagged, r.offset());
                if (before != null) {
                    fail(String.format("%s (%s): value %s of key %s seen twice, at offsets %d and %d of partition %d:"
                            + " a record of an aborted attempt, or a transaction committed twice",
                            output, how, untagged, key, before, r.offset(), r.partition()));
                }
                if (TagAttempt.attempt(value) > 0) {
                    restarted++;
                }
                latest.put(key, untagged);
            } else {
                latest.put(key, null);
            }
        }
        assertTrue(restarted > 0, output + " (" + how + "): no record written after the restart");
        assertEquals(Kafka.liveMapped(want), Kafka.live(latest), "final live values of " + output + " (" + how + ")");
        want.forEach((k, v) -> {
            if (v == null && latest.containsKey(k)) {
                assertEquals(null, latest.get(k), "key " + k + " of " + output + " ends in a tombstone (" + how + ")");
            }
        });
    }

    /** Records as updates, values without their attempt tag. */
    static List<Update> untagged(List<ConsumerRecord<byte[], byte[]>> records) {
        List<Update> out = new ArrayList<>(records.size());
        for (ConsumerRecord<byte[], byte[]> r : records) {
            String v = r.value() == null ? null : TagAttempt.untag(new String(r.value(), StandardCharsets.UTF_8));
            out.add(new Update(new String(r.key(), StandardCharsets.UTF_8), v));
        }
        return out;
    }

    /** Every record of topic up to its last stable offsets, read by a new read_committed consumer. */
    static List<ConsumerRecord<byte[], byte[]>> readCommitted(String bootstrap, String topic) throws Exception {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = committedConsumer(bootstrap)) {
            List<TopicPartition> tps = partitions(c, topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            readTo(c, c.endOffsets(tps, Kafka.TIMEOUT), out, System.nanoTime() + Kafka.TIMEOUT.toNanos(), topic);
        }
        return out;
    }

    private static void readTo(KafkaConsumer<byte[], byte[]> c, Map<TopicPartition, Long> ends,
            List<ConsumerRecord<byte[], byte[]>> out, long deadline, String topic) {
        while (!reached(c, ends)) {
            assertTrue(System.nanoTime() < deadline, "reading " + topic + ": positions did not reach " + ends);
            c.poll(Duration.ofMillis(200)).forEach(out::add);
        }
    }

    private static boolean reached(KafkaConsumer<byte[], byte[]> c, Map<TopicPartition, Long> ends) {
        for (var e : ends.entrySet()) {
            if (c.position(e.getKey(), Kafka.TIMEOUT) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    private static Map<TopicPartition, Long> highWatermarks(String bootstrap, List<TopicPartition> tps) {
        Properties p = consumerProps(bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            return c.endOffsets(tps, Kafka.TIMEOUT);
        }
    }

    private static List<TopicPartition> partitions(KafkaConsumer<byte[], byte[]> c, String topic) {
        return c.partitionsFor(topic, Kafka.TIMEOUT).stream()
                .map(p -> new TopicPartition(topic, p.partition()))
                .collect(Collectors.toList());
    }

    private static KafkaConsumer<byte[], byte[]> committedConsumer(String bootstrap) {
        Properties p = consumerProps(bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        return new KafkaConsumer<>(p);
    }

    private static Properties consumerProps(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }
}
