package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.JobClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The cache pipeline (job 1) running on a three-node cluster while every node is restarted
 * in turn. integration/cluster_flink_test.go drives it: it starts the cluster, runs only
 * this test (tag "cluster"; the single-broker suite excludes the tag) and restarts the
 * nodes one by one between two signal files in the directory named by the system
 * property {@code shardcache.signal.dir} (or SHARDCACHE_SIGNAL_DIR):
 *
 * <ol>
 *   <li>this test writes {@code started} once the job runs and half the input is written;
 *   <li>the Go side restarts node 1, 2, 3 (SIGTERM, start, ready) while this test writes
 *       the other half, then writes {@code restarted};
 *   <li>this test waits for the job's checkpoint commits to reach the end of the input,
 *       cancels it and checks the output holds exactly the latest value of every key.
 * </ol>
 *
 * <p>The job may restart (its Kafka clients can fail a checkpoint during a leader change);
 * AT_LEAST_ONCE into a compacted topic still leaves exactly the latest values.
 */
@Tag("cluster")
class RollingRestartTest {
    static final int UPDATES = 60_000;
    static final int KEYS = 3_000;
    static final int PARTITIONS = 4;
    static final Duration SIGNAL_TIMEOUT = Duration.ofSeconds(240);

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

    @Test
    @Timeout(420)
    void cachePipelineThroughRollingRestart() throws Exception {
        String dir = System.getProperty("shardcache.signal.dir", System.getenv("SHARDCACHE_SIGNAL_DIR"));
        assertTrue(dir != null && !dir.isBlank(), "shardcache.signal.dir is not set: run through integration/cluster_flink_test.go");
        Path signals = Path.of(dir);

        String input = Kafka.topicName("in");
        String output = Kafka.topicName("out");
        String group = Kafka.topicName("group");
        kafka.createCompacted(input, PARTITIONS);
        kafka.createCompacted(output, PARTITIONS);
        List<Update> ups = CachePipelineTest.updates("rr", UPDATES, KEYS);
        kafka.write(input, ups.subList(0, UPDATES / 2));

        JobClient job = Jobs.startCachePipelineWithRestarts(kafka.bootstrap,
                Jobs.source(kafka.bootstrap, input, group, OffsetsInitializer.earliest(), null, 0),
                output, 20, "rolling-restart");
        try {
            Files.writeString(signals.resolve("started"), "started\n");
            kafka.write(input, ups.subList(UPDATES / 2, UPDATES));
            awaitFile(signals.resolve("restarted"));
            kafka.awaitCommitted(group, kafka.endOffsets(input));
        } finally {
            job.cancel().get();
        }
        CachePipelineTest.checkOutput(kafka, output, Kafka.latest(ups));
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
