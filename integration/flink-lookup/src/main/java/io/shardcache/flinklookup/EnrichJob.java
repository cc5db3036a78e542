package io.shardcache.flinklookup;

import java.util.List;
import java.util.concurrent.TimeUnit;

import org.apache.flink.streaming.api.datastream.AsyncDataStream;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * Enriches a stream of keys with their live values in a shardcache topic, through
 * the HTTP lookup API, with up to {@link #CAPACITY} lookups in flight per subtask.
 */
public final class EnrichJob {
    /** In-flight lookups per subtask. */
    public static final int CAPACITY = 64;
    /** Timeout of one lookup, retries excluded. */
    public static final long TIMEOUT_MS = 30_000;

    private EnrichJob() {}

    /** Adds the enrichment to keys: one Enriched per key, in no particular order. */
    public static DataStream<Enriched> enrich(DataStream<String> keys, String httpAddr, String topic) {
        return AsyncDataStream.unorderedWait(keys, new KeyLookup(httpAddr, topic), TIMEOUT_MS, TimeUnit.MILLISECONDS, CAPACITY)
                .name("shardcache-lookup");
    }

    /** Usage: EnrichJob HTTP_ADDR TOPIC KEY... prints each key's enrichment. */
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: EnrichJob HTTP_ADDR TOPIC KEY...");
            System.exit(2);
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        DataStream<String> keys = env.fromData(List.of(args).subList(2, args.length));
        enrich(keys, args[0], args[1]).print();
        env.execute("shardcache-enrich");
    }
}
