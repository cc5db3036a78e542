package io.shardcache.flink;

import java.time.Duration;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.sink.KafkaSinkBuilder;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.KafkaSourceBuilder;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * Builders for the Flink jobs run against shardcache. They use only APIs that Flink 1.20
 * and 2.2 (and their Kafka connectors 3.4 and 5.0) share, so one source tree builds under
 * both Maven profiles.
 */
public final class Jobs {
    /** Checkpoint interval of every job. */
    public static final long CHECKPOINT_INTERVAL_MS = 500;
    /** Parallelism of every job (the machine has two cores). */
    public static final int PARALLELISM = 2;

    private Jobs() {}

    /**
     * A local environment: checkpoints every {@link #CHECKPOINT_INTERVAL_MS}, the REST
     * endpoint on a free loopback port, and either no restarts or {@code restarts}
     * fixed-delay restarts.
     */
    public static StreamExecutionEnvironment environment(int restarts) {
        Configuration conf = new Configuration();
        conf.set(RestOptions.BIND_ADDRESS, "127.0.0.1");
        conf.set(RestOptions.BIND_PORT, "0");
        if (restarts > 0) {
            conf.set(RestartStrategyOptions.RESTART_STRATEGY, "fixed-delay");
            conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_ATTEMPTS, restarts);
            conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_DELAY, Duration.ofMillis(200));
        } else {
            conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(PARALLELISM);
        env.enableCheckpointing(CHECKPOINT_INTERVAL_MS);
        return env;
    }

    /**
     * A source of {@link Update}s from topic, starting at {@code start}; bounded at the
     * offsets {@code stop} gives when the job starts, or unbounded when {@code stop} is null.
     * A non-null {@code groupId} makes the source commit its offsets on checkpoints.
     * {@code discoveryMs} > 0 turns on partition discovery at that interval (only
     * unbounded sources discover).
     */
    public static KafkaSource<Update> source(String bootstrap, String topic, String groupId,
            OffsetsInitializer start, OffsetsInitializer stop, long discoveryMs) {
        KafkaSourceBuilder<Update> b = KafkaSource.<Update>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(topic)
                .setStartingOffsets(start)
                .setDeserializer(new UpdateDeserializer())
                .setProperty("client.id.prefix", "shardcache-it-" + topic)
                .setProperty("partition.discovery.interval.ms", discoveryMs > 0 ? Long.toString(discoveryMs) : "-1");
        if (groupId != null) {
            b.setGroupId(groupId);
            b.setProperty("commit.offsets.on.checkpoint", "true");
        }
        if (stop != null) {
            b.setBounded(stop);
        }
        return b.build();
    }

    /** An AT_LEAST_ONCE sink of {@link Update}s into topic (idempotent producer). */
    public static KafkaSink<Update> sink(String bootstrap, String topic) {
        return KafkaSink.<Update>builder()
                .setBootstrapServers(bootstrap)
                .setRecordSerializer(new UpdateSerializer(topic))
                .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                .setProperty("enable.idempotence", "true")
                .build();
    }

    /**
     * An EXACTLY_ONCE sink builder of {@link Update}s into topic: transactional ids start
     * with {@code transactionalIdPrefix}, and the connector's own transaction.timeout.ms
     * (1 h) is kept. Callers may set more (the naming strategy on connector 5.x) and build.
     */
    public static KafkaSinkBuilder<Update> exactlyOnceSink(String bootstrap, String topic,
            String transactionalIdPrefix) {
        return KafkaSink.<Update>builder()
                .setBootstrapServers(bootstrap)
                .setRecordSerializer(new UpdateSerializer(topic))
                .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .setTransactionalIdPrefix(transactionalIdPrefix);
    }

    /**
     * Starts the exactly-once pipeline without waiting for it: read the source, fail one
     * subtask after a checkpoint completed and before it committed that checkpoint's
     * transaction ({@link FailBeforeCommit}, up to three restarts), map every value with
     * {@link MapValue}, tag it with the writer's attempt ({@link TagAttempt}) and write it
     * through {@code sink}.
     */
    public static JobClient startExactlyOncePipeline(KafkaSource<Update> source, KafkaSink<Update> sink,
            String jobName) throws Exception {
        StreamExecutionEnvironment env = environment(3);
        read(env, source, "input")
                .map(new FailBeforeCommit()).name("fail-before-commit")
                .map(new MapValue()).name("map-value")
                .map(new TagAttempt()).name("tag-attempt")
                .sinkTo(sink).name("output");
        return env.executeAsync(jobName);
    }

    /** Reads source into a stream of updates without watermarks. */
    public static DataStream<Update> read(StreamExecutionEnvironment env, KafkaSource<Update> source, String name) {
        return env.fromSource(source, WatermarkStrategy.noWatermarks(), name);
    }

    /**
     * The cache pipeline: read the bounded source, map every value with {@link MapValue}
     * (tombstones stay tombstones), optionally fail once after the first checkpoint, and
     * write to the output topic through an AT_LEAST_ONCE sink. Returns when the job ends.
     */
    public static void runCachePipeline(String bootstrap, KafkaSource<Update> source, String output,
            boolean failOnce, String jobName) throws Exception {
        cachePipeline(bootstrap, source, output, failOnce).execute(jobName);
    }

    /**
     * Starts the cache pipeline without waiting for it; the caller cancels it through the
     * returned client (for an unbounded source, which never ends by itself).
     */
    public static JobClient startCachePipeline(String bootstrap, KafkaSource<Update> source, String output,
            String jobName) throws Exception {
        return cachePipeline(bootstrap, source, output, false).executeAsync(jobName);
    }

    /**
     * Starts the cache pipeline with up to {@code restarts} fixed-delay restarts, for runs
     * where the brokers themselves restart under the job (a rolling restart of a cluster).
     */
    public static JobClient startCachePipelineWithRestarts(String bootstrap, KafkaSource<Update> source,
            String output, int restarts, String jobName) throws Exception {
        StreamExecutionEnvironment env = environment(restarts);
        read(env, source, "input").map(new MapValue()).name("map-value").sinkTo(sink(bootstrap, output)).name("output");
        return env.executeAsync(jobName);
    }

    private static StreamExecutionEnvironment cachePipeline(String bootstrap, KafkaSource<Update> source,
            String output, boolean failOnce) {
        StreamExecutionEnvironment env = environment(failOnce ? 3 : 0);
        DataStream<Update> in = read(env, source, "input");
        if (failOnce) {
            in = in.map(new FailOnceAfterCheckpoint()).name("fail-once");
        }
        in.map(new MapValue()).name("map-value").sinkTo(sink(bootstrap, output)).name("output");
        return env;
    }
}
