package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.JobClient;
import org.apache.kafka.clients.consumer.OffsetResetStrategy;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Job 1 (the cache pipeline), job 2 (failure and recovery) and a restart from committed
 * offsets: a bounded KafkaSource from earliest to the latest offsets at start, with a
 * group id and checkpoints every 500 ms, maps keyed updates into a compacted output topic
 * through an AT_LEAST_ONCE KafkaSink.
 */
class CachePipelineTest {
    static final int UPDATES = 100_000;
    static final int KEYS = 5_000;
    static final int PARTITIONS = 4;

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
     * {@code n} updates over {@code keys} keys (every key written n/keys times); about one
     * in 23 is a tombstone, and values name their update so every overwrite differs.
     */
    static List<Update> updates(String tag, int n, int keys) {
        List<Update> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            String key = "key-" + (i * 7919 % keys);
            out.add(new Update(key, i % 23 == 5 ? null : tag + "-" + i));
        }
        return out;
    }

    /** Checks the output's live keys and values, and that input tombstones came through. */
    static void checkOutput(String output, Map<String, String> want) throws Exception {
        checkOutput(kafka, output, want);
    }

    /** {@link #checkOutput(String, Map)} through the given connection. */
    static void checkOutput(Kafka kafka, String output, Map<String, String> want) throws Exception {
        Map<String, String> got = kafka.readLatest(output);
        assertEquals(Kafka.liveMapped(want), Kafka.live(got), "live keys and values of " + output);
        long tombstones = want.values().stream().filter(v -> v == null).count();
        assertTrue(tombstones > 0, "the input must end some keys with a tombstone");
        want.forEach((k, v) -> {
            if (v == null && got.containsKey(k)) {
                assertEquals(null, got.get(k), "key " + k + " ends in a tombstone");
            }
        });
        long outTombstones = got.values().stream().filter(v -> v == null).count();
        assertEquals(tombstones, outTombstones, "tombstones in " + output + " (live keys equal the input's)");
    }

    @Test
    @Timeout(240)
    void cachePipeline() throws Exception {
        String input = Kafka.topicName("in");
        String output = Kafka.topicName("out");
        String group = Kafka.topicName("group");
        kafka.createCompacted(input, PARTITIONS);
        kafka.createCompacted(output, PARTITIONS);
        List<Update> ups = updates("v", UPDATES, KEYS);
        kafka.write(input, ups);
        Map<TopicPartition, Long> ends = kafka.endOffsets(input);

        Jobs.runCachePipeline(kafka.bootstrap,
                Jobs.source(kafka.bootstrap, input, group, OffsetsInitializer.earliest(), OffsetsInitializer.latest(), 0),
                output, false, "cache-pipeline");

        checkOutput(output, Kafka.latest(ups));
        // The bounded job's commits are positions inside the input. The last one of a
        // subtask can be missing: a source subtask that finishes its splits commits them on
        // its final checkpoint through a new consumer, which the connector's shutdown can
        // close before the commit is sent (about one run in five with both Flink versions;
        // integration/compat/FINDINGS.md). committedOffsetsStart checks deterministically
        // that a group's commits reach the end of every partition.
        Map<TopicPartition, Long> committed = kafka.committed(group);
        committed.forEach((tp, off) -> assertTrue(off > 0 && off <= ends.get(tp),
                "committed offset " + off + " of " + tp + " outside (0, " + ends.get(tp) + "]"));
    }

    @Test
    @Timeout(240)
    void failureAndRecovery() throws Exception {
        String input = Kafka.topicName("in");
        String output = Kafka.topicName("out");
        String group = Kafka.topicName("group");
        kafka.createCompacted(input, PARTITIONS);
        kafka.createCompacted(output, PARTITIONS);
        List<Update> ups = updates("r", UPDATES, KEYS);
        kafka.write(input, ups);

        FailOnceAfterCheckpoint.reset();
        Jobs.runCachePipeline(kafka.bootstrap,
                Jobs.source(kafka.bootstrap, input, group, OffsetsInitializer.earliest(), OffsetsInitializer.latest(), 0),
                output, true, "cache-pipeline-fail-once");

        assertTrue(FailOnceAfterCheckpoint.hasFailed(), "the job never hit its injected failure");
        checkOutput(output, Kafka.latest(ups));
    }

    /**
     * A second job with the same group starts from the committed offsets of the first: it
     * must read only the updates written after the first job, so its output holds exactly
     * their keys.
     */
    @Test
    @Timeout(240)
    void committedOffsetsStart() throws Exception {
        String input = Kafka.topicName("in");
        String first = Kafka.topicName("out1");
        String second = Kafka.topicName("out2");
        String group = Kafka.topicName("group");
        kafka.createCompacted(input, PARTITIONS);
        kafka.createCompacted(first, PARTITIONS);
        kafka.createCompacted(second, PARTITIONS);
        List<Update> before = updates("a", 4_000, 400);
        kafka.write(input, before);
        // The first job is unbounded and is cancelled once its checkpoint commits reach the
        // end of the input. A bounded job would end right after its final checkpoint, and
        // its final asynchronous commit can be dropped by the connector's shutdown (see
        // integration/compat/FINDINGS.md); a running job commits on every checkpoint.
        JobClient firstJob = Jobs.startCachePipeline(kafka.bootstrap,
                Jobs.source(kafka.bootstrap, input, group, OffsetsInitializer.earliest(), null, 0),
                first, "committed-1");
        try {
            kafka.awaitCommitted(group, kafka.endOffsets(input));
        } finally {
            firstJob.cancel().get();
        }
        // Every committed checkpoint flushed the sink first, so the output is complete.
        checkOutput(first, Kafka.latest(before));

        // Keys 1000.. do not overlap the first batch's key-0..key-399.
        List<Update> after = new ArrayList<>();
        for (int i = 0; i < 600; i++) {
            after.add(new Update("key-" + (1000 + i % 200), i % 50 == 7 ? null : "b-" + i));
        }
        kafka.write(input, after);
        Jobs.runCachePipeline(kafka.bootstrap,
                Jobs.source(kafka.bootstrap, input, group,
                        OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST), OffsetsInitializer.latest(), 0),
                second, false, "committed-2");

        // Only the updates written after the first job's commits reached the second job.
        checkOutput(second, Kafka.latest(after));
        // No commit check here: the commit of a bounded job's last checkpoint can race
        // with the job's end (see integration/compat/FINDINGS.md); cachePipeline checks it.
    }
}
