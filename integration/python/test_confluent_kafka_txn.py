"""confluent-kafka (librdkafka) transactional producer against shardcache: commit
and abort read back exactly by a read_committed consumer, and zombie fencing."""

import pytest

from waits import TIMEOUT_S, Deadline

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1,
                  config={"cleanup.policy": "compact"})],
        request_timeout=TIMEOUT_S)
    futures[topic].result(timeout=TIMEOUT_S)


def txn_producer(bootstrap, txn_id):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
        "message.timeout.ms": int(TIMEOUT_S * 1000),
    })
    p.init_transactions(TIMEOUT_S)
    return p


def in_transaction(producer, topic, pairs, commit):
    """Produces key=value pairs to partition 0 in one transaction and commits or
    aborts it."""
    producer.begin_transaction()
    for key, value in pairs:
        producer.produce(topic, key=key, value=value, partition=0)
    if commit:
        producer.commit_transaction(TIMEOUT_S)
    else:
        producer.abort_transaction(TIMEOUT_S)


def read_to_end(bootstrap, topic, isolation):
    """Reads partition 0 from the beginning until end of partition (the last stable
    offset under read_committed) and returns (offset, key, value) of each record."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-{isolation}",  # required; no group is joined (assign)
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    })
    try:
        c.assign([TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        out = []
        deadline = Deadline()
        while True:
            assert not deadline.expired(), f"no end of partition within {TIMEOUT_S}s; read {out}"
            msg = c.poll(min(0.5, deadline.remaining()))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return out
                pytest.fail(f"consume error: {err}")
            out.append((msg.offset(), msg.key().decode(), msg.value().decode()))
    finally:
        c.close()


def test_transactional_commit_and_abort(bootstrap, topic_name):
    create_topic(bootstrap, topic_name)
    p = txn_producer(bootstrap, f"{topic_name}-tx")
    in_transaction(p, topic_name, [(f"k{i}", "first") for i in range(5)], commit=True)
    in_transaction(p, topic_name, [(f"k{i}", "aborted") for i in range(5)] + [("x", "aborted")],
                   commit=False)
    in_transaction(p, topic_name, [("k1", "second"), ("k5", "second")], commit=True)
    p.flush(TIMEOUT_S)

    want = {"k0": "first", "k1": "second", "k2": "first", "k3": "first", "k4": "first",
            "k5": "second"}
    for isolation in ("read_committed", "read_uncommitted"):
        got = read_to_end(bootstrap, topic_name, isolation)
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(offsets), f"{isolation}: offsets not increasing: {got}"
        # Each key once (compacted), with its last committed value, and nothing
        # of the aborted transaction.
        assert sorted(k for _, k, _ in got) == sorted(want), f"{isolation}: {got}"
        assert {k: v for _, k, v in got} == want, f"{isolation}: {got}"


def test_transactional_zombie_fenced(bootstrap, topic_name):
    create_topic(bootstrap, topic_name)
    txn_id = f"{topic_name}-tx"
    zombie = txn_producer(bootstrap, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic_name, key="k", value="zombie", partition=0)
    zombie.flush(TIMEOUT_S)
    fresh = txn_producer(bootstrap, txn_id)  # fences the zombie, aborts its transaction
    in_transaction(fresh, topic_name, [("k", "fresh")], commit=True)
    with pytest.raises(KafkaException) as exc:
        zombie.produce(topic_name, key="k", value="late", partition=0)
        zombie.commit_transaction(TIMEOUT_S)
    assert exc.value.args[0].fatal() or exc.value.args[0].txn_requires_abort(), exc.value
    got = read_to_end(bootstrap, topic_name, "read_committed")
    assert [(k, v) for _, k, v in got] == [("k", "fresh")], got
