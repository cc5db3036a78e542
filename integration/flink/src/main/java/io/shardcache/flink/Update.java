package io.shardcache.flink;

import java.util.Objects;

/**
 * One keyed update read from or written to Kafka. A null value is a tombstone. Public
 * fields and the no-argument constructor make it a Flink POJO, whose serializer keeps
 * null fields (a Tuple2 would not).
 */
public class Update {
    public String key;
    public String value;

    public Update() {}

    public Update(String key, String value) {
        this.key = key;
        this.value = value;
    }

    public boolean isTombstone() {
        return value == null;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Update u && Objects.equals(key, u.key) && Objects.equals(value, u.value);
    }

    @Override
    public int hashCode() {
        return Objects.hash(key, value);
    }

    @Override
    public String toString() {
        return key + "=" + (value == null ? "<tombstone>" : value);
    }
}
