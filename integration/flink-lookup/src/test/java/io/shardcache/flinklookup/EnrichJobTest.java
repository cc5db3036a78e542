package io.shardcache.flinklookup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.CloseableIterator;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * Writes keys with the Java producer (overwrites and tombstones included), then runs
 * the async lookup job on a local MiniCluster and checks every enrichment against
 * what the producer was acknowledged.
 */
class EnrichJobTest {
    private static final int KEYS = 300;

    static String setting(String name) {
        String v = System.getProperty(name, System.getenv(name));
        assertNotNull(v, name + " is not set (system property or environment)");
        return v;
    }

    @Test
    void enrichesStreamFromLookupApi() throws Exception {
        String bootstrap = setting("SHARDCACHE_BOOTSTRAP");
        String http = setting("SHARDCACHE_HTTP");
        String topic = "flink-lookup-" + UUID.randomUUID();

        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get(60, TimeUnit.SECONDS);
        }

        // key -> expected enrichment. Every key is written twice (the second value
        // wins); every tenth is then deleted; keys with spaces and slashes test
        // the path encoding.
        Map<String, Enriched> want = new HashMap<>();
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            List<String> keys = new ArrayList<>();
            for (int i = 0; i < KEYS; i++) {
                keys.add(i % 7 == 0 ? "user/" + i + " ä" : "user-" + i);
            }
            for (String k : keys) {
                producer.send(new ProducerRecord<>(topic, k, "first " + k));
            }
            producer.flush();
            List<java.util.concurrent.Future<RecordMetadata>> acks = new ArrayList<>();
            for (String k : keys) {
                acks.add(producer.send(new ProducerRecord<>(topic, k, "profile of " + k)));
            }
            for (int i = 0; i < keys.size(); i++) {
                RecordMetadata md = acks.get(i).get(60, TimeUnit.SECONDS);
                want.put(keys.get(i), Enriched.found(keys.get(i), "profile of " + keys.get(i), md.partition(), md.offset()));
            }
            for (int i = 0; i < KEYS; i += 10) {
                producer.send(new ProducerRecord<>(topic, keys.get(i), null)).get(60, TimeUnit.SECONDS);
                want.put(keys.get(i), Enriched.missing(keys.get(i), "key_deleted"));
            }
        }
        for (int i = 0; i < 20; i++) {
            want.put("never-written-" + i, Enriched.missing("never-written-" + i, "key_not_found"));
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(2);
        DataStream<String> keys = env.fromData(new ArrayList<>(want.keySet()));
        Map<String, Enriched> got = new HashMap<>();
        try (CloseableIterator<Enriched> it = EnrichJob.enrich(keys, http, topic).executeAndCollect("shardcache-enrich-test")) {
            while (it.hasNext()) {
                Enriched e = it.next();
                assertTrue(got.put(e.key, e) == null, "key enriched twice: " + e.key);
            }
        }
        assertEquals(want.size(), got.size(), "one enrichment per input key");
        for (Map.Entry<String, Enriched> e : want.entrySet()) {
            assertEquals(e.getValue(), got.get(e.getKey()), "enrichment of " + e.getKey());
        }
    }

    @Test
    void encodesPathSegments() {
        KeyLookup l = new KeyLookup("127.0.0.1:1", "t");
        assertEquals("http://127.0.0.1:1/v1/topics/t/keys/a%2Fb%20c%2Bd%3F", l.uri("a/b c+d?").toString());
    }
}
