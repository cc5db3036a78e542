'use strict';
// kafkajs against shardcache (run by integration/kafkajs_test.go, which starts a broker
// and passes its address in SHARDCACHE_BOOTSTRAP):
//   - keyed records (with tombstones) produced to a compacted topic, read back through
//     admin offsets: high watermarks and offsets by timestamp;
//   - a consumer group that reads the whole topic once and sees every key's latest
//     value, then commits offsets up to the high watermarks.
// Every wait polls a condition against a deadline.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Kafka, logLevel } = require('kafkajs');

const bootstrap = process.env.SHARDCACHE_BOOTSTRAP;
// The v2 default partitioner is what we want; silence its notice.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const TIMEOUT_MS = 60_000;

function client() {
  if (!bootstrap) {
    throw new Error('SHARDCACHE_BOOTSTRAP is not set: run through integration/kafkajs_test.go');
  }
  return new Kafka({
    clientId: 'shardcache-kafkajs-it',
    brokers: bootstrap.split(','),
    logLevel: logLevel.WARN,
    retry: { retries: 8 },
  });
}

function topicName(what) {
  return `kafkajs-${what}-${crypto.randomBytes(4).toString('hex')}`;
}

// updates returns `rounds` overwrites of `keys` keys; every 7th key's last write is a
// tombstone. want maps key -> latest value (null for a tombstone).
function updates(keys, rounds) {
  const msgs = [];
  const want = new Map();
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < keys; k++) {
      const key = `key-${k}`;
      const value = r === rounds - 1 && k % 7 === 3 ? null : `round-${r}-${key}`;
      msgs.push({ key, value });
      want.set(key, value);
    }
  }
  return { msgs, want };
}

async function produce(kafka, topic, msgs, extra = {}) {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    for (let i = 0; i < msgs.length; i += 500) {
      await producer.send({
        topic,
        acks: -1,
        messages: msgs.slice(i, i + 500).map((m) => ({ ...m, ...extra })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

async function createCompacted(admin, topic, partitions) {
  const created = await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1,
      configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
  });
  assert.equal(created, true, `topic ${topic} was not created`);
}

async function highWatermarks(admin, topic) {
  const offs = await admin.fetchTopicOffsets(topic);
  return new Map(offs.map((o) => [o.partition, Number(o.high)]));
}

test('produce keyed records and read admin offsets', async () => {
  const kafka = client();
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topic = topicName('admin');
    await createCompacted(admin, topic, 3);
    // The first batch overwrites every key three times (so compaction leaves gaps), an
    // hour in the past; the second batch writes new keys now.
    const { msgs: first } = updates(200, 3);
    const second = [];
    for (let i = 0; i < 150; i++) {
      second.push({ key: `fresh-${i}`, value: `fresh-${i}` });
    }
    const old = Date.now() - 3_600_000;
    await produce(kafka, topic, first, { timestamp: String(old) });
    const before = await highWatermarks(admin, topic);
    await produce(kafka, topic, second);
    const after = await highWatermarks(admin, topic);

    assert.equal(after.size, 3, 'partitions of the topic');
    let total = 0;
    for (const [p, high] of after) {
      assert.ok(high >= before.get(p), `partition ${p}: high watermark went back`);
      total += high;
    }
    assert.equal(total, first.length + second.length, 'high watermarks add up to the records produced');

    // Offsets by timestamp: half an hour ago falls between the two batches, so each
    // partition answers the first offset of the second batch (its high watermark before
    // it).
    const byTs = await admin.fetchTopicOffsetsByTimestamp(topic, Date.now() - 1_800_000);
    assert.equal(byTs.length, 3);
    for (const o of byTs) {
      assert.equal(Number(o.offset), before.get(o.partition), `offset by timestamp of partition ${o.partition}`);
    }
  } finally {
    await admin.disconnect();
  }
});

test('a consumer group reads a compacted topic once and sees the latest values', async () => {
  const kafka = client();
  const admin = kafka.admin();
  await admin.connect();
  const topic = topicName('group');
  const groupId = topicName('group-id');
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 500 });
  try {
    await createCompacted(admin, topic, 3);
    const { msgs, want } = updates(500, 4);
    await produce(kafka, topic, msgs);
    const highs = await highWatermarks(admin, topic);

    const got = new Map();
    const positions = new Map(); // partition -> next offset to read
    let records = 0;
    let done;
    const caughtUp = new Promise((resolve) => { done = resolve; });
    const reached = () => [...highs].every(([p, h]) => (positions.get(p) ?? 0) >= h);

    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        records++;
        got.set(message.key.toString(), message.value === null ? null : message.value.toString());
        positions.set(partition, Number(message.offset) + 1);
        if (reached()) {
          done();
        }
      },
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(
        `the group did not reach the high watermarks ${JSON.stringify([...highs])} within ${TIMEOUT_MS} ms; ` +
        `positions ${JSON.stringify([...positions])}, ${records} records`)), TIMEOUT_MS);
    });
    try {
      await Promise.race([caughtUp, timeout]);
    } finally {
      clearTimeout(timer);
    }

    // Latest values: every live key with its last value; a key whose last write was a
    // tombstone is either absent or a tombstone.
    for (const [k, v] of want) {
      if (v === null) {
        assert.ok(!got.has(k) || got.get(k) === null, `key ${k} ends in a tombstone, got ${got.get(k)}`);
      } else {
        assert.equal(got.get(k), v, `latest value of ${k}`);
      }
    }
    for (const [k, v] of got) {
      if (v !== null) {
        assert.ok(want.has(k), `unexpected key ${k}`);
      }
    }
    // Compaction: the group read each live key at most once.
    assert.ok(records <= want.size, `read ${records} records for ${want.size} keys (${msgs.length} writes)`);

    // Commits reach the high watermarks (kafkajs commits after each batch).
    const deadline = Date.now() + TIMEOUT_MS;
    let committed;
    for (;;) {
      const offs = await admin.fetchOffsets({ groupId, topics: [topic] });
      committed = new Map(offs[0].partitions.map((p) => [p.partition, Number(p.offset)]));
      if ([...highs].every(([p, h]) => committed.get(p) === h)) {
        break;
      }
      assert.ok(Date.now() < deadline,
        `committed ${JSON.stringify([...committed])}, want ${JSON.stringify([...highs])}`);
      await new Promise((r) => setTimeout(r, 100)); // poll interval of the commit check
    }
  } finally {
    await consumer.disconnect();
    await admin.disconnect();
  }
});
