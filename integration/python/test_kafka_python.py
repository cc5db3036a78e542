"""kafka-python against shardcache: keyed produce and a consume round trip."""

import pytest

from waits import TIMEOUT_S, Deadline

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402


def test_produce_consume_round_trip(bootstrap, topic_name):
    keys, rounds = 40, 2
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_S * 1000))
    try:
        admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1,
                                      topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=10_000)
    try:
        futures = [producer.send(topic_name, key=f"k{k}".encode(), value=f"v{k}-{r}".encode(),
                                 partition=0)
                   for r in range(rounds) for k in range(keys)]
        producer.flush(timeout=TIMEOUT_S)
        offsets = [f.get(timeout=TIMEOUT_S).offset for f in futures]
    finally:
        producer.close(timeout=TIMEOUT_S)
    assert offsets == list(range(keys * rounds)), "dense offsets in send order"

    tp = TopicPartition(topic_name, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             request_timeout_ms=int(TIMEOUT_S * 1000) + 5000)
    records = []
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        assert end == keys * rounds
        deadline = Deadline()
        while consumer.position(tp, timeout_ms=int(TIMEOUT_S * 1000)) < end:
            assert not deadline.expired(), (
                f"position {consumer.position(tp)} did not reach {end} within {TIMEOUT_S}s; "
                f"{len(records)} records read")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()

    got = {}
    for r in records:
        assert r.key not in got, f"key {r.key!r} read twice (offset {r.offset})"
        got[r.key] = r.value
    assert len(records) == keys, "exactly one record per live key"
    assert got == {f"k{k}".encode(): f"v{k}-{rounds - 1}".encode() for k in range(keys)}
