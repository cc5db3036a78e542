package io.shardcache.flink;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.state.CheckpointListener;

/**
 * Passes updates through, and throws once, on the first update after the first completed
 * checkpoint, so the job restarts from that checkpoint. The flags are static because the
 * job runs on a local MiniCluster in the test's JVM and a restart builds new instances;
 * {@link #reset()} arms it for one job.
 *
 * <p>Until the first checkpoint completes every update is held for {@link #HOLD_NANOS}, so
 * a fast bounded source cannot drain its input before that checkpoint (which would leave
 * no update to fail on); afterwards updates pass at full speed.
 */
public class FailOnceAfterCheckpoint implements MapFunction<Update, Update>, CheckpointListener {
    private static final long serialVersionUID = 1L;

    /** How long each update is held before the first completed checkpoint. */
    public static final long HOLD_NANOS = 200_000;

    private static final AtomicBoolean checkpointCompleted = new AtomicBoolean();
    private static final AtomicBoolean failed = new AtomicBoolean();

    /** Arms the failure for the next job. */
    public static void reset() {
        checkpointCompleted.set(false);
        failed.set(false);
    }

    /** Whether the failure was thrown since the last {@link #reset()}. */
    public static boolean hasFailed() {
        return failed.get();
    }

    @Override
    public Update map(Update u) {
        if (!checkpointCompleted.get()) {
            LockSupport.parkNanos(HOLD_NANOS);
            return u;
        }
        if (failed.compareAndSet(false, true)) {
            throw new IllegalStateException("injected failure after the first completed checkpoint");
        }
        return u;
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) {
        checkpointCompleted.set(true);
    }
}
