package io.shardcache.flink;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;

/**
 * Passes updates through and makes one subtask fail after a checkpoint has completed but
 * before that subtask hears of it, so its EXACTLY_ONCE sink never commits the transaction
 * it pre-committed for that checkpoint: the restore must commit it (Flink's recovery
 * resumes the transaction by producer id and epoch in a new producer and sends a bare
 * EndTxn). Chained in front of the sink, in attempt 0:
 *
 * <ol>
 *   <li>the first subtask to snapshot a checkpoint after passing on at least one update
 *       becomes the failing one; the updates it passed on so far are in the transaction
 *       pre-committed at that checkpoint ({@link #preCommitted()});
 *   <li>on its next update it waits until another subtask is notified that this
 *       checkpoint completed (so it is complete), then throws. Its own notification is
 *       queued behind the blocked update and never runs.
 * </ol>
 *
 * <p>In attempt 1 the same subtask fails again, mid-transaction, on its
 * {@link #SECOND_FAILURE_AFTER}th update: the updates it passed on since its last
 * snapshot are in a transaction that is aborted ({@link #aborted()}), so no
 * read_committed reader may see them as attempt 1 wrote them.
 *
 * <p>Until the failure every update is held for {@link FailOnceAfterCheckpoint#HOLD_NANOS},
 * so the input cannot drain first. The flags are static (a local MiniCluster runs the job
 * in the test's JVM); {@link #reset()} arms it for one job.
 */
public class FailBeforeCommit extends RichMapFunction<Update, Update>
        implements CheckpointedFunction, CheckpointListener {
    private static final long serialVersionUID = 1L;

    /** How long the failing subtask waits for the checkpoint to complete elsewhere. */
    static final long WAIT_NANOS = TimeUnit.SECONDS.toNanos(60);

    /** The update of attempt 1 on which the failing subtask fails again. */
    static final int SECOND_FAILURE_AFTER = 200;

    private static final AtomicInteger failingSubtask = new AtomicInteger(-1);
    private static final AtomicLong failAfterCheckpoint = new AtomicLong(-1);
    private static final AtomicLong completedElsewhere = new AtomicLong(-1);
    private static final AtomicBoolean failed = new AtomicBoolean();
    private static final AtomicBoolean sawCompletion = new AtomicBoolean();
    private static final AtomicBoolean failedAgain = new AtomicBoolean();
    private static volatile List<Update> preCommitted = List.of();
    private static volatile List<Update> aborted = List.of();

    /**
     * Updates this subtask passed on: in attempt 0 since the start (only the failing
     * one's are kept), in the failing subtask's attempt 1 since its last snapshot.
     */
    private transient List<Update> passed;
    /** Updates the failing subtask passed on in attempt 1. */
    private transient int passedAgain;

    /** Arms the failure for the next job. */
    public static void reset() {
        failingSubtask.set(-1);
        failAfterCheckpoint.set(-1);
        completedElsewhere.set(-1);
        failed.set(false);
        sawCompletion.set(false);
        failedAgain.set(false);
        preCommitted = List.of();
        aborted = List.of();
    }

    /** Whether the second failure (attempt 1, mid-transaction) was thrown. */
    public static boolean hasFailedAgain() {
        return failedAgain.get();
    }

    /** The updates of the transaction that attempt 1 left open when it failed. */
    public static List<Update> aborted() {
        return aborted;
    }

    /** Whether the failure was thrown since the last {@link #reset()}. */
    public static boolean hasFailed() {
        return failed.get();
    }

    /**
     * Whether the failing subtask saw another subtask's notification of its checkpoint
     * before it threw (false only if it gave up waiting after {@link #WAIT_NANOS}).
     */
    public static boolean checkpointCompletedBeforeFailure() {
        return sawCompletion.get();
    }

    /** The updates the failing subtask passed on into the transaction of its checkpoint. */
    public static List<Update> preCommitted() {
        return preCommitted;
    }

    private int subtask() {
        return getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
    }

    private boolean firstAttempt() {
        return getRuntimeContext().getTaskInfo().getAttemptNumber() == 0;
    }

    @Override
    public void initializeState(FunctionInitializationContext context) {
        passed = new ArrayList<>();
    }

    @Override
    public Update map(Update u) {
        if (failedAgain.get()) {
            return u;
        }
        if (failed.get()) {
            if (failingSubtask.get() != subtask() || getRuntimeContext().getTaskInfo().getAttemptNumber() != 1) {
                return u;
            }
            if (++passedAgain == SECOND_FAILURE_AFTER) {
                aborted = List.copyOf(passed);
                failedAgain.set(true);
                throw new IllegalStateException("injected failure in the middle of a transaction of attempt 1");
            }
            LockSupport.parkNanos(FailOnceAfterCheckpoint.HOLD_NANOS);
            passed.add(u);
            return u;
        }
        if (firstAttempt() && failingSubtask.get() == subtask() && failAfterCheckpoint.get() >= 0) {
            long deadline = System.nanoTime() + WAIT_NANOS;
            while (completedElsewhere.get() < failAfterCheckpoint.get() && System.nanoTime() < deadline) {
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
            }
            sawCompletion.set(completedElsewhere.get() >= failAfterCheckpoint.get());
            failed.set(true);
            throw new IllegalStateException("injected failure after checkpoint " + failAfterCheckpoint.get()
                    + " completed and before this subtask committed it");
        }
        LockSupport.parkNanos(FailOnceAfterCheckpoint.HOLD_NANOS);
        if (firstAttempt() && failingSubtask.get() < 0) {
            passed.add(u);
        }
        return u;
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) {
        if (failed.get()) {
            passed.clear(); // attempt 1: what follows is in the next transaction
            return;
        }
        if (firstAttempt() && !passed.isEmpty() && failingSubtask.compareAndSet(-1, subtask())) {
            preCommitted = List.copyOf(passed);
            failAfterCheckpoint.set(context.getCheckpointId());
        }
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) {
        if (failingSubtask.get() != subtask()) {
            completedElsewhere.accumulateAndGet(checkpointId, Math::max);
        }
    }
}
