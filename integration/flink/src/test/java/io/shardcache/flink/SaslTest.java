package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The cache pipeline over SASL_SSL: KafkaSource and KafkaSink with security.protocol=SASL_SSL,
 * SCRAM-SHA-256 and the test CA as a PEM truststore. Run by integration/security_clients_test.go
 * (TestSASLSSLFlink) with SHARDCACHE_BOOTSTRAP set to the broker's SASL_SSL listener,
 * SHARDCACHE_SSL_CA_FILE to the CA's PEM file and SHARDCACHE_SASL_ADMIN /
 * SHARDCACHE_SASL_ADMIN_PASSWORD to its bootstrap admin; the PLAINTEXT run (TestFlink) excludes
 * the "sasl" tag.
 *
 * <p>The admin (a super user) makes a user for the job and lets it, through ACLs, do
 * everything on the topics named "flink-sasl-..." and read the groups named so; everything
 * else (topics, input, the job's source, sink and offset commits, reading the output) runs as
 * that user. Judged exactly: with no
 * failure the AT_LEAST_ONCE sink writes every update once, so the output holds, key by key,
 * the input's values mapped through {@link MapValue} in input order, tombstones included
 * (both topics have cleanup.policy=delete, so compaction keeps every record to judge).
 */
@Tag("sasl")
class SaslTest {
    static final int UPDATES = 10_000;
    static final int KEYS = 500;
    static final int PARTITIONS = 2;
    static final String USER = "flink-job";
    static final String PASSWORD = "flink-secret";
    /** The prefix of the topics and groups the job's user may use (Kafka.topicName's "flink-"). */
    static final String PREFIX = "flink-sasl-";
    private static final long MS = Kafka.TIMEOUT.toMillis();

    /** A setting from the system property or, without one, the environment variable. */
    static String setting(String name) {
        String v = System.getProperty(name, System.getenv(name));
        if (v == null || v.isBlank()) {
            throw new IllegalStateException(name + " is not set: run these tests through integration/security_clients_test.go");
        }
        return v.trim();
    }

    /** Kafka client properties for SASL_SSL with SCRAM: the ones a Flink job sets on its source and sink. */
    static Properties security(String mechanism, String user, String password) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, setting("SHARDCACHE_BOOTSTRAP"));
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        p.put(SaslConfigs.SASL_MECHANISM, mechanism);
        p.put(SaslConfigs.SASL_JAAS_CONFIG, "org.apache.kafka.common.security.scram.ScramLoginModule required"
                + " username=\"" + user + "\" password=\"" + password + "\";");
        p.put(SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PEM");
        p.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, setting("SHARDCACHE_SSL_CA_FILE"));
        return p;
    }

    @Test
    @Timeout(240)
    void cachePipelineOverSaslSsl() throws Exception {
        Properties adminSec = security("SCRAM-SHA-512", setting("SHARDCACHE_SASL_ADMIN"), setting("SHARDCACHE_SASL_ADMIN_PASSWORD"));
        try (Admin admin = Admin.create(adminSec)) {
            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(USER,
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), PASSWORD)))
                    .all().get(MS, TimeUnit.MILLISECONDS);
            AccessControlEntry all = new AccessControlEntry("User:" + USER, "*", AclOperation.ALL, AclPermissionType.ALLOW);
            AccessControlEntry read = new AccessControlEntry("User:" + USER, "*", AclOperation.READ, AclPermissionType.ALLOW);
            admin.createAcls(List.of(
                    new AclBinding(new ResourcePattern(ResourceType.TOPIC, PREFIX, PatternType.PREFIXED), all),
                    new AclBinding(new ResourcePattern(ResourceType.GROUP, PREFIX, PatternType.PREFIXED), read)))
                    .all().get(MS, TimeUnit.MILLISECONDS);
        }
        Properties sec = security("SCRAM-SHA-256", USER, PASSWORD);
        String input = Kafka.topicName("sasl-in");
        String output = Kafka.topicName("sasl-out");
        String group = Kafka.topicName("sasl-group");
        try (Admin admin = Admin.create(sec)) {
            admin.createTopics(List.of(
                    new NewTopic(input, PARTITIONS, (short) 1).configs(Map.of("cleanup.policy", "delete")),
                    new NewTopic(output, PARTITIONS, (short) 1).configs(Map.of("cleanup.policy", "delete"))))
                    .all().get(MS, TimeUnit.MILLISECONDS);
        }
        List<Update> updates = CachePipelineTest.updates("s", UPDATES, KEYS);
        write(sec, input, updates);

        KafkaSource<Update> source = KafkaSource.<Update>builder()
                .setProperties(sec)
                .setTopics(input)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setDeserializer(new UpdateDeserializer())
                .setProperty("partition.discovery.interval.ms", "-1")
                .build();
        Properties sinkProps = new Properties();
        sinkProps.putAll(sec);
        sinkProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        KafkaSink<Update> sink = KafkaSink.<Update>builder()
                .setBootstrapServers(sec.getProperty(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG))
                .setKafkaProducerConfig(sinkProps)
                .setRecordSerializer(new UpdateSerializer(output))
                .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                .build();
        StreamExecutionEnvironment env = Jobs.environment(0);
        Jobs.read(env, source, "input").map(new MapValue()).name("map-value").sinkTo(sink).name("output");
        env.execute("cache-pipeline-sasl-ssl");

        Map<String, List<String>> want = new HashMap<>();
        for (Update u : updates) {
            want.computeIfAbsent(u.key, k -> new ArrayList<>()).add(MapValue.apply(u.value));
        }
        assertTrue(want.values().stream().anyMatch(vs -> vs.contains(null)), "the input has tombstones");
        Map<String, List<String>> got = new HashMap<>();
        int records = 0;
        for (ConsumerRecord<byte[], byte[]> r : readAll(sec, output)) {
            String v = r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8);
            got.computeIfAbsent(new String(r.key(), StandardCharsets.UTF_8), k -> new ArrayList<>()).add(v);
            records++;
        }
        assertEquals(UPDATES, records, "records in " + output + " (one per update, no failure happened)");
        assertEquals(want, got, "values of every key of " + output + ", in input order");
    }

    /** Writes the updates keyed (null value: tombstone) and waits for every acknowledgement. */
    static void write(Properties sec, String topic, List<Update> updates) throws Exception {
        Properties p = new Properties();
        p.putAll(sec);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            List<Future<?>> acks = new ArrayList<>(updates.size());
            for (Update u : updates) {
                byte[] v = u.value == null ? null : u.value.getBytes(StandardCharsets.UTF_8);
                acks.add(producer.send(new ProducerRecord<>(topic, u.key.getBytes(StandardCharsets.UTF_8), v)));
            }
            producer.flush();
            for (Future<?> f : acks) {
                f.get(MS, TimeUnit.MILLISECONDS);
            }
        }
    }

    /** Every record of topic up to the end offsets taken first, in offset order per partition. */
    static List<ConsumerRecord<byte[], byte[]>> readAll(Properties sec, String topic) {
        Properties p = new Properties();
        p.putAll(sec);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            Map<TopicPartition, Long> ends = c.endOffsets(tps, Kafka.TIMEOUT);
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + Kafka.TIMEOUT.toNanos();
            for (TopicPartition tp : tps) {
                while (c.position(tp, Kafka.TIMEOUT) < ends.get(tp)) {
                    assertTrue(System.nanoTime() < deadline,
                            "reading " + topic + ": positions did not reach " + ends + " within " + Kafka.TIMEOUT);
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                        out.add(r);
                    }
                }
            }
        }
        return out;
    }
}
