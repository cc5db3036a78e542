// Package checker judges the history of a fault test against a Kafka-compatible
// cluster, in the manner of Jepsen's queue workload (jepsen-io/redpanda,
// workload/queue.clj): test goroutines record what they sent and what they
// read, and Check decides afterwards whether any record was lost, reordered,
// duplicated or invented.
//
// Recording. A History is safe for concurrent use; its zero value is ready.
// Producers record a Send per record (BeginSend before the produce call and
// EndSend from its callback, or AddSend once it is done) with an Outcome:
// OK with the acknowledged offset, Fail when the record is known not to have
// been written, Info when the outcome is unknown (a timeout, a lost
// connection). A send begun and never ended counts as Info. Consumers record a
// Poll per record read, in the order they read them, and an Assign whenever
// their position is set by anything but reading (a new assignment, a
// rebalance, a seek, a restart). The final drain after the faults, one
// consumer per replica or one overall, marks its polls Drain, and records an
// Assign with Drain set for each partition it drains. Observers record
// Commit (a consumer group's committed offset) and ListOffsetsLatest (a
// partition's latest offset), and the fault driver records a LeaderChange for
// every change of leader it sees.
//
// Values must be unique per partition (nil, a tombstone, excepted): the
// checker identifies a record by its value.
//
// The workload is assumed to use idempotent producers without transactions,
// so a partition's offsets are dense (transaction markers would show up as
// offset gaps), and to commit group offsets only forward: Kafka accepts a
// commit that goes back, and a workload that issues one would be reported.
//
// Checks on delete-policy (append-only) topics, per partition:
//
//	lost-write            an OK send was never read although a later offset
//	                      was, or a drain of its partition read past its
//	                      offset without it.
//	unseen                an OK send that a drain of its partition did not
//	                      reach, or no drain covered the partition. Every
//	                      drain must read all of each partition it drains.
//	inconsistent-offsets  two values at one offset (acks and polls), or a
//	                      value read somewhere other than its acked offset.
//	duplicate             one value read at two offsets.
//	G1a                   a Fail send was read (an aborted read).
//	unknown-value         a value was read that no send wrote.
//	offset-gap            an offset between two read offsets that no poll
//	                      read and no send was acknowledged at: offsets of an
//	                      idempotent producer's log are dense.
//	poll-skip             a consumer's next read skipped offsets.
//	nonmonotonic-poll     a consumer's next read went back or repeated.
//	nonmonotonic-send     one producer's OK sends to a partition got offsets
//	                      out of send order.
//	nonmonotonic-commit   a group's committed offset went back: an observation
//	                      that began after another ended saw a lower offset.
//	nonmonotonic-list-offsets  the same for ListOffsets(latest).
//	stale-list-offsets    ListOffsets(latest) begun after an OK send's ack
//	                      returned an offset not past the send's.
//
// Compacted topics (Options.Compacted) keep G1a, unknown-value, duplicate,
// inconsistent-offsets and the monotonic checks; poll-skip, offset-gap,
// lost-write and unseen do not apply, as compaction removes records. Instead:
//
//	wrong-final-value  in some drain, a key's last record is not the last OK
//	                   write to it nor an Info write that may have landed
//	                   after it, or lies below the last OK write's offset.
//	                   A nil value (tombstone) and an absent key are the
//	                   same final state.
//
// Run-level checks: no-fault when fewer leader changes were recorded than
// Options.MinLeaderChanges (no fault took effect, so a clean result proves
// nothing), and invalid-history when the recording itself is inconsistent
// (a value sent twice, a send ended twice, a negative offset).
//
// Real-time order: Commit, ListOffsetsLatest and Send carry Start and End
// times. An observation is known to follow another only if it started after
// the other ended, so overlapping observations never conflict. Zero times are
// filled in when the record is added; concurrent observers should set Start
// before issuing their request.
package checker
