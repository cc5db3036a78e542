"""confluent-kafka (librdkafka) consumer groups against shardcache: a subscribed
consumer reads part of a topic and commits; a new consumer of the same group
resumes right after the commit, and the committed offsets and their metadata
are visible through committed()."""

import pytest

from waits import TIMEOUT_S, Deadline

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS = 2
PER_PARTITION = 10


def setup_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
        request_timeout=TIMEOUT_S)
    futures[topic].result(timeout=TIMEOUT_S)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.produce(topic, key=f"p{p}-{i}", value=b"v", partition=p)
    assert producer.flush(TIMEOUT_S) == 0


def group_consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    })


def poll_until(consumer, want, seen):
    """Polls until `want` records were read into `seen` (key -> offset)."""
    deadline = Deadline()
    while len(seen) < want and not deadline.expired():
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        seen[msg.key().decode()] = (msg.partition(), msg.offset())
    assert len(seen) >= want, f"read {len(seen)} of {want} records in {TIMEOUT_S}s"


def test_group_commit_then_new_consumer_resumes(bootstrap, topic_name):
    setup_topic(bootstrap, topic_name)
    group = f"{topic_name}-group"

    first = group_consumer(bootstrap, group)
    first.subscribe([topic_name])
    seen = {}
    poll_until(first, PARTITIONS * PER_PARTITION, seen)
    # Commit offset 4 in every partition (records 0-3 done), with metadata.
    first.commit(offsets=[TopicPartition(topic_name, p, 4, metadata=f"m{p}")
                          for p in range(PARTITIONS)], asynchronous=False)
    committed = first.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)],
                                timeout=TIMEOUT_S)
    assert [(tp.partition, tp.offset, tp.metadata) for tp in committed] == \
        [(p, 4, f"m{p}") for p in range(PARTITIONS)]
    first.close()  # LeaveGroup

    second = group_consumer(bootstrap, group)
    second.subscribe([topic_name])
    resumed = {}
    poll_until(second, PARTITIONS * (PER_PARTITION - 4), resumed)
    second.close()
    got = sorted(resumed.values())
    want = sorted((p, o) for p in range(PARTITIONS) for o in range(4, PER_PARTITION))
    assert got == want, "the new consumer must start at the committed offsets"
