"""confluent-kafka (librdkafka) against shardcache: compressed produce, full reads of a
compacted topic, offsets_for_times over a compacted gap."""

import time

import pytest

from waits import TIMEOUT_S, Deadline

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def create_topic(bootstrap, topic, partitions, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1,
                  config=config or {"cleanup.policy": "compact"})],
        request_timeout=TIMEOUT_S)
    futures[topic].result(timeout=TIMEOUT_S)


class Deliveries:
    """Collects delivery reports: (partition, offset) per key and any errors."""

    def __init__(self):
        self.offsets = []
        self.errors = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append((msg.key(), err))
        else:
            self.offsets.append((msg.partition(), msg.offset()))


def new_producer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # implies acks=all
        "linger.ms": 5,
        "message.timeout.ms": int(TIMEOUT_S * 1000),
    }
    conf.update(extra)
    return Producer(conf)


def flush(producer):
    left = producer.flush(TIMEOUT_S)
    assert left == 0, f"{left} messages still undelivered after {TIMEOUT_S}s"


def new_consumer(bootstrap, topic):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-reader",  # required by the client; no group is joined (assign)
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })


def read_all(consumer, topic, partitions):
    """Assigns every partition from the beginning and polls until each reports end of
    partition; fails after TIMEOUT_S."""
    consumer.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                     for p in range(partitions)])
    pending = set(range(partitions))
    records = []
    deadline = Deadline()
    while pending:
        assert not deadline.expired(), (
            f"no end of partition for {sorted(pending)} within {TIMEOUT_S}s; "
            f"{len(records)} records read")
        msg = consumer.poll(min(0.5, deadline.remaining()))
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            pytest.fail(f"consume error: {err}")
        records.append(msg)
    return records


# The consumer's fetches come back compressed with the producer's codec, as
# from Kafka: librdkafka reads the broker's gzip, snappy, lz4 and zstd batches.
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_full_read_latest_per_key(bootstrap, topic_name, codec):
    partitions, keys, rounds = 2, 100, 3
    create_topic(bootstrap, topic_name, partitions)

    report = Deliveries()
    producer = new_producer(bootstrap, **{"compression.type": codec})
    for r in range(rounds):
        for k in range(keys):
            producer.produce(topic_name, key=f"k{k}", value=f"v{k}-{r}-" + "x" * 64,
                             on_delivery=report)
        flush(producer)  # one flush per round: rounds land in separate batches
    assert report.errors == []
    assert len(report.offsets) == keys * rounds

    consumer = new_consumer(bootstrap, topic_name)
    try:
        records = read_all(consumer, topic_name, partitions)
        hwm = sum(consumer.get_watermark_offsets(TopicPartition(topic_name, p),
                                                 timeout=TIMEOUT_S)[1]
                  for p in range(partitions))
    finally:
        consumer.close()

    assert hwm == keys * rounds, "high watermarks count every write"
    latest = {}
    for m in records:
        key = m.key().decode()
        assert key not in latest, f"key {key} read twice (offset {m.offset()})"
        latest[key] = m.value().decode()
    assert len(records) == keys, "exactly one record per live key"
    assert latest == {f"k{k}": f"v{k}-{rounds - 1}-" + "x" * 64 for k in range(keys)}


def test_offsets_for_times_over_compacted_gap(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, 1)
    base = int(time.time() * 1000) - 60_000

    report = Deliveries()
    producer = new_producer(bootstrap)
    # k0..k4 at offsets 0..4 with timestamps base, base+1s, ..., base+4s.
    for i in range(5):
        producer.produce(topic_name, key=f"k{i}", value=f"v{i}", partition=0,
                         timestamp=base + i * 1000, on_delivery=report)
        flush(producer)
    # Rewriting k0 supersedes offset 0; the new record is offset 5 at base+5s.
    producer.produce(topic_name, key="k0", value="v0-new", partition=0,
                     timestamp=base + 5000, on_delivery=report)
    flush(producer)
    assert report.errors == []
    assert report.offsets == [(0, o) for o in range(6)]

    consumer = new_consumer(bootstrap, topic_name)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0),
                                                   timeout=TIMEOUT_S)
        assert (low, high) == (0, 6), "log start stays put under compaction"
        cases = [
            (base - 10_000, 1),  # offset 0 was compacted away
            (base, 1),
            (base + 1500, 2),
            (base + 4500, 5),
            (base + 5000, 5),
            (base + 6000, -1),  # nothing at or after: end (-1)
        ]
        for ts, want in cases:
            got = consumer.offsets_for_times([TopicPartition(topic_name, 0, ts)],
                                             timeout=TIMEOUT_S)
            assert got[0].error is None, got[0].error
            assert got[0].offset == want, f"offsets_for_times(base{ts - base:+d})"
    finally:
        consumer.close()
