package io.shardcache.flink;

import org.apache.flink.api.common.functions.RichMapFunction;

/**
 * Appends {@code @<attempt>} to every live value: the execution attempt of the subtask
 * that wrote it (0 before the first restart). A reader can then tell which run of the
 * job wrote a record, so a record of an aborted attempt is recognisable. Tombstones pass
 * through unchanged.
 */
public class TagAttempt extends RichMapFunction<Update, Update> {
    private static final long serialVersionUID = 1L;

    /** The value without its attempt tag (null stays null). */
    public static String untag(String value) {
        if (value == null) {
            return null;
        }
        int at = value.lastIndexOf('@');
        if (at < 0) {
            throw new IllegalArgumentException("value " + value + " has no attempt tag");
        }
        return value.substring(0, at);
    }

    /** The attempt number in a tagged value. */
    public static int attempt(String value) {
        return Integer.parseInt(value.substring(value.lastIndexOf('@') + 1));
    }

    @Override
    public Update map(Update u) {
        if (u.value == null) {
            return u;
        }
        return new Update(u.key, u.value + "@" + getRuntimeContext().getTaskInfo().getAttemptNumber());
    }
}
