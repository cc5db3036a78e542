package io.shardcache.flink;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * EXACTLY_ONCE KafkaSink into a compacted topic with the connector's defaults (1 h
 * transaction timeout; on connector 3.4 the only naming, on 5.0 INCREMENTING with PROBING
 * aborts): a job that fails after a checkpoint and restarts, checked by read_committed
 * consumers ({@link ExactlyOnce}). Runs under both Flink profiles.
 */
class ExactlyOnceTest {
    @Test
    @Timeout(240)
    void failAndRestoreWithDefaults() throws Exception {
        try (Kafka kafka = Kafka.connect()) {
            ExactlyOnce.run(kafka, "eo", (b, topic) -> b);
        }
    }
}
