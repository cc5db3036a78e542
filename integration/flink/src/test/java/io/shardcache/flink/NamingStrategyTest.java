package io.shardcache.flink;

import static org.junit.jupiter.api.Assertions.assertSame;

import java.nio.charset.StandardCharsets;
import java.util.Locale;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.TransactionNamingStrategy;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The exactly-once run of {@link ExactlyOnce} with each TransactionNamingStrategy of
 * connector 5.0: INCREMENTING (a new transactional id per checkpoint, lingering
 * transactions found by probing InitProducerId) is the default, which {@link
 * ExactlyOnceTest} runs; POOLING (reused ids, lingering transactions found with
 * DescribeProducers and ListTransactions) runs here. The API exists only in connector
 * 5.x, so the flink-1.20 profile leaves this class out of its test compile.
 *
 * <p>POOLING needs the record serializer to name its topics (KafkaDatasetFacetProvider),
 * which the connector's own serialization-schema builder does.
 */
class NamingStrategyTest {
    /** {@link ExactlyOnceTest} covers INCREMENTING on this connector only while it is the default. */
    @Test
    void incrementingIsTheDefault() {
        assertSame(TransactionNamingStrategy.INCREMENTING, TransactionNamingStrategy.DEFAULT,
                "ExactlyOnceTest runs the default naming strategy");
    }

    /** Lingering transactions are listed with DescribeProducers (61) and ListTransactions (66). */
    @Test
    @Timeout(240)
    void pooling() throws Exception {
        run(TransactionNamingStrategy.POOLING);
    }

    private static void run(TransactionNamingStrategy naming) throws Exception {
        try (Kafka kafka = Kafka.connect()) {
            ExactlyOnce.run(kafka, naming.name().toLowerCase(Locale.ROOT), (b, topic) -> b
                    .setRecordSerializer(serializer(topic))
                    .setTransactionNamingStrategy(naming));
        }
    }

    /** Keyed updates into topic (a null value stays a tombstone), naming the topic for POOLING. */
    static KafkaRecordSerializationSchema<Update> serializer(String topic) {
        return KafkaRecordSerializationSchema.<Update>builder()
                .setTopic(topic)
                .setKeySerializationSchema(new KeyBytes())
                .setValueSerializationSchema(new ValueBytes())
                .build();
    }

    /** An update's key in UTF-8 (a class, not a lambda: Flink infers its types). */
    static final class KeyBytes implements SerializationSchema<Update> {
        private static final long serialVersionUID = 1L;

        @Override
        public byte[] serialize(Update u) {
            return u.key.getBytes(StandardCharsets.UTF_8);
        }
    }

    /** An update's value in UTF-8, null for a tombstone. */
    static final class ValueBytes implements SerializationSchema<Update> {
        private static final long serialVersionUID = 1L;

        @Override
        public byte[] serialize(Update u) {
            return u.value == null ? null : u.value.getBytes(StandardCharsets.UTF_8);
        }
    }
}
