package io.shardcache.flinklookup;

import java.util.Objects;

/** One input key with what the lookup API answered for it (a Flink POJO). */
public class Enriched {
    public String key;
    /** "found", "key_not_found" or "key_deleted". */
    public String status;
    public String value;
    public int partition = -1;
    public long offset = -1;

    public Enriched() {}

    static Enriched found(String key, String value, int partition, long offset) {
        Enriched e = new Enriched();
        e.key = key;
        e.status = "found";
        e.value = value;
        e.partition = partition;
        e.offset = offset;
        return e;
    }

    static Enriched missing(String key, String status) {
        Enriched e = new Enriched();
        e.key = key;
        e.status = status;
        return e;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Enriched)) {
            return false;
        }
        Enriched e = (Enriched) o;
        return Objects.equals(key, e.key) && Objects.equals(status, e.status) && Objects.equals(value, e.value)
                && partition == e.partition && offset == e.offset;
    }

    @Override
    public int hashCode() {
        return Objects.hash(key, status, value, partition, offset);
    }

    @Override
    public String toString() {
        return key + "=" + status + (value == null ? "" : ":" + value + "@" + partition + "/" + offset);
    }
}
