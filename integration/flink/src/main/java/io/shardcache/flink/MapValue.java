package io.shardcache.flink;

import java.util.Locale;
import org.apache.flink.api.common.functions.MapFunction;

/** The pipeline's transformation: upper-cases a value and tags it; tombstones pass through. */
public class MapValue implements MapFunction<Update, Update> {
    private static final long serialVersionUID = 1L;

    /** The mapped form of a live value; tests use it to compute the expected output. */
    public static String apply(String value) {
        return value == null ? null : "mapped:" + value.toUpperCase(Locale.ROOT);
    }

    @Override
    public Update map(Update u) {
        return new Update(u.key, apply(u.value));
    }
}
