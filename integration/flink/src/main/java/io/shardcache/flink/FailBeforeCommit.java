package io.shardcache.flink;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
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
 * Passes updates through and injects two failures into a job whose EXACTLY_ONCE sink is
 * chained behind it.
 *
 * <ol>
 *   <li>In attempt 0, the first subtask to snapshot a checkpoint after passing on at least
 *       one update since its previous snapshot becomes the failing one; those updates are
 *       in the transaction pre-committed at that checkpoint ({@link #preCommitted()}). On
 *       its next update it waits until another subtask is notified that the checkpoint
 *       completed (so it is complete), then throws: its own notification is queued behind
 *       the blocked update and never runs, so its sink never commits that transaction
 *       and the restore must (Flink's recovery resumes the transaction by producer id and
 *       epoch in a new producer and sends a bare EndTxn).
 *   <li>After that, the first subtask (any attempt) to pass on {@link
 *       #SECOND_FAILURE_AFTER} more updates throws in the middle of a transaction: the
 *       updates it passed on since its last snapshot are in a transaction that is aborted
 *       ({@link #aborted()}, written with the tag {@link #abortedTag()}), so no
 *       read_committed reader may see them as that attempt wrote them.
 * </ol>
 *
 * <p>Until the second failure every update is held for {@link
 * FailOnceAfterCheckpoint#HOLD_NANOS}, so the input cannot drain first. The flags are static
 * (a local MiniCluster runs the job in the test's JVM); {@link #reset()} arms them for one
 * job.
 */
public class FailBeforeCommit extends RichMapFunction<Update, Update>
        implements CheckpointedFunction, CheckpointListener {
    private static final long serialVersionUID = 1L;

    /** How long the failing subtask waits for the checkpoint to complete elsewhere. */
    static final long WAIT_NANOS = TimeUnit.SECONDS.toNanos(60);
    /** How many updates a subtask passes on after the first failure before the second. */
    static final int SECOND_FAILURE_AFTER = 200;

    private static final AtomicInteger failingSubtask = new AtomicInteger(-1);
    private static final AtomicLong failAfterCheckpoint = new AtomicLong(-1);
    private static final AtomicLong completedElsewhere = new AtomicLong(-1);
    private static final AtomicBoolean failed = new AtomicBoolean();
    private static final AtomicBoolean sawCompletion = new AtomicBoolean();
    private static final AtomicBoolean failedAgain = new AtomicBoolean();
    private static volatile List<Update> preCommitted = List.of();
    private static volatile List<Update> aborted = List.of();
    private static volatile String abortedTag = "";
    /** Updates passed on by "subtask#attempt", for failure messages. */
    private static final Map<String, AtomicInteger> counts = new ConcurrentHashMap<>();

    /** Updates this instance passed on since its last snapshot. */
    private transient List<Update> sinceSnapshot;
    /** Updates this instance passed on since it saw the first failure. */
    private transient int sinceFailure;

    /** Arms the failures for the next job. */
    public static void reset() {
        failingSubtask.set(-1);
        failAfterCheckpoint.set(-1);
        completedElsewhere.set(-1);
        failed.set(false);
        sawCompletion.set(false);
        failedAgain.set(false);
        preCommitted = List.of();
        aborted = List.of();
        abortedTag = "";
        counts.clear();
    }

    /** Whether the first failure was thrown since the last {@link #reset()}. */
    public static boolean hasFailed() {
        return failed.get();
    }

    /** Whether the second failure (in the middle of a transaction) was thrown. */
    public static boolean hasFailedAgain() {
        return failedAgain.get();
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

    /** The updates of the transaction that the second failure left open. */
    public static List<Update> aborted() {
        return aborted;
    }

    /** The {@link TagAttempt} suffix ("@n") of the attempt that wrote {@link #aborted()}. */
    public static String abortedTag() {
        return abortedTag;
    }

    /** Updates passed on per "subtask#attempt" and the failing subtask, for messages. */
    public static String describe() {
        return "updates passed on " + new TreeMap<>(counts) + ", failing subtask " + failingSubtask.get()
                + " after checkpoint " + failAfterCheckpoint.get();
    }

    private int subtask() {
        return getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
    }

    private int attempt() {
        return getRuntimeContext().getTaskInfo().getAttemptNumber();
    }

    @Override
    public void initializeState(FunctionInitializationContext context) {
        sinceSnapshot = new ArrayList<>();
    }

    @Override
    public Update map(Update u) {
        counts.computeIfAbsent(subtask() + "#" + attempt(), k -> new AtomicInteger()).incrementAndGet();
        if (failedAgain.get()) {
            return u;
        }
        if (failed.get()) {
            if (++sinceFailure > SECOND_FAILURE_AFTER && failedAgain.compareAndSet(false, true)) {
                aborted = List.copyOf(sinceSnapshot);
                abortedTag = "@" + attempt();
                throw new IllegalStateException("injected failure in the middle of a transaction");
            }
        } else if (attempt() == 0 && failingSubtask.get() == subtask()) {
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
        sinceSnapshot.add(u);
        return u;
    }

    @Override
    public void snapshotState(FunctionSnapshotContext context) {
        if (attempt() == 0 && !failed.get() && !sinceSnapshot.isEmpty()
                && failingSubtask.compareAndSet(-1, subtask())) {
            preCommitted = List.copyOf(sinceSnapshot);
            failAfterCheckpoint.set(context.getCheckpointId());
        }
        sinceSnapshot.clear();
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) {
        if (failingSubtask.get() != subtask()) {
            completedElsewhere.accumulateAndGet(checkpointId, Math::max);
        }
    }
}
