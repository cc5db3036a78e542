"""kafka-python offsets_for_times on a compacted log with gaps.

Every key is written once with an increasing timestamp, then the even keys are overwritten
later and one key is deleted with a tombstone: the first versions of those keys leave the
log, so the partition has holes. offsets_for_times must answer, for each timestamp, the
first offset still in the log whose record has that timestamp or a later one (and its
timestamp), and None past the last record.
"""

import time

import pytest

from waits import TIMEOUT_S, Deadline

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

KEYS = 60
STEP_MS = 1000


def _read_partition(bootstrap, tp):
    """Returns (records, high watermark) of tp read from the beginning with assign()."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             request_timeout_ms=int(TIMEOUT_S * 1000) + 5000)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records = []
        deadline = Deadline()
        while consumer.position(tp) < end:
            assert not deadline.expired(), \
                f"position {consumer.position(tp)} did not reach the high watermark {end}"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records, end
    finally:
        consumer.close()


def _offsets_for_times(bootstrap, tp, timestamps):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False,
                             request_timeout_ms=int(TIMEOUT_S * 1000) + 5000)
    try:
        return [consumer.offsets_for_times({tp: ts})[tp] for ts in timestamps]
    finally:
        consumer.close()


def test_offsets_for_times_on_gappy_compacted_log(bootstrap, topic_name):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_S * 1000))
    try:
        admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1,
                                      topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()

    base = int(time.time() * 1000) - 3_600_000  # an hour ago: clear of the broker's clock
    later = base + 100 * STEP_MS
    writes = []  # (key, value, timestamp) in send order
    writes += [(f"k{i}", f"a{i}", base + i * STEP_MS) for i in range(KEYS)]
    writes += [(f"k{i}", f"b{i}", later + j * STEP_MS) for j, i in enumerate(range(0, KEYS, 2))]
    writes.append(("k1", None, later + (KEYS // 2) * STEP_MS))  # tombstone

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=10_000)
    try:
        futures = [producer.send(topic_name, key=k.encode(),
                                 value=None if v is None else v.encode(),
                                 partition=0, timestamp_ms=ts)
                   for k, v, ts in writes]
        producer.flush(timeout=TIMEOUT_S)
        offsets = [f.get(timeout=TIMEOUT_S).offset for f in futures]
    finally:
        producer.close(timeout=TIMEOUT_S)
    assert offsets == list(range(len(writes))), "dense offsets in send order"

    tp = TopicPartition(topic_name, 0)
    records, end = _read_partition(bootstrap, tp)
    assert end == len(writes)
    # Overwritten and deleted keys left holes: only the latest version of each key is
    # read, the tombstone included.
    latest = {}
    for off, (k, _, _) in enumerate(writes):
        latest[k] = off
    assert [r.offset for r in records] == sorted(latest.values()), "the log keeps each key's latest version"
    assert records[-1].value is None, "the tombstone is still in the log"
    for r in records:
        assert r.timestamp == writes[r.offset][2], f"timestamp of offset {r.offset}"

    def expected(ts):
        for r in records:
            if r.timestamp >= ts:
                return r.offset, r.timestamp
        return None

    queries = [
        base - 1,                          # before everything: the first live offset (k0-k2 are gone)
        base,                              # k0's own timestamp; its record was overwritten
        base + 10 * STEP_MS,               # a hole (k10 was overwritten)
        base + 11 * STEP_MS,               # a live record (k11)
        base + 11 * STEP_MS + 1,           # between two records
        base + (KEYS - 1) * STEP_MS + 500, # after the first round: the first overwrite
        later + 5 * STEP_MS,               # inside the overwrites
        later + (KEYS // 2) * STEP_MS,     # the tombstone's timestamp
        later + (KEYS // 2 + 1) * STEP_MS, # past the last record
    ]
    answers = _offsets_for_times(bootstrap, tp, queries)
    for ts, got in zip(queries, answers):
        want = expected(ts)
        if want is None:
            assert got is None, f"offsets_for_times({ts}) = {got}, want None (past the last record)"
            continue
        assert got is not None, f"offsets_for_times({ts}) = None, want offset {want[0]}"
        assert (got.offset, got.timestamp) == want, f"offsets_for_times({ts})"
    # The interesting cases really were exercised: a hole, the tombstone and the end.
    assert expected(base)[0] == 3  # k0 and k2 were overwritten, k1 deleted
    assert expected(base + 10 * STEP_MS)[0] == 11
    assert expected(later + (KEYS // 2) * STEP_MS)[0] == len(writes) - 1
    assert expected(later + (KEYS // 2 + 1) * STEP_MS) is None
