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


class _Lines:
    """A logging handler that keeps librdkafka's log lines."""

    def __init__(self):
        import logging
        self.lines = []
        self.logger = logging.getLogger(f"rdkafka-{id(self)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        handler = logging.Handler()
        handler.emit = lambda record: self.lines.append(record.getMessage())
        self.logger.addHandler(handler)


def static_consumer(bootstrap, group, instance, lines=None):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": instance,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    if lines is None:
        return Consumer(conf)
    conf["debug"] = "cgrp"
    return Consumer(conf, logger=lines.logger)


def test_restarted_static_leader_is_not_leader_of_zero_members(bootstrap, topic_name):
    """Issue 9: librdkafka joins with JoinGroup v5. A static member that
    restarts (same group.instance.id, no member id, the group Stable) must get
    Kafka's answer: the leader id as it was (its old member id) and no member
    list, so it syncs as a follower and gets its old assignment back. It used
    to be told it leads the group under its new id, with zero members."""
    setup_topic(bootstrap, topic_name)
    group = f"{topic_name}-static"

    first = static_consumer(bootstrap, group, "instance-1")
    first.subscribe([topic_name])
    poll_until(first, PARTITIONS * PER_PARTITION, {})
    first.close()  # a static member does not leave: the group stays Stable

    lines = _Lines()
    restarted = static_consumer(bootstrap, group, "instance-1", lines)
    restarted.subscribe([topic_name])
    deadline = Deadline()
    while len(restarted.assignment()) < PARTITIONS and not deadline.expired():
        restarted.poll(0.2)
    assigned = sorted(tp.partition for tp in restarted.assignment())
    restarted.close()
    joins = [line for line in lines.lines if "JoinGroup response:" in line]
    assert joins, "no JoinGroup response in librdkafka's log"
    assert not any("elected leader" in line for line in lines.lines), \
        "the restarted static member was made leader: " + "; ".join(joins)
    assert "(me)" not in joins[-1], joins[-1]
    assert assigned == list(range(PARTITIONS)), \
        f"the restarted static member must get its assignment back, got {assigned}"
