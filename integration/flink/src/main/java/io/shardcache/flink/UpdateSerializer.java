package io.shardcache.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * Writes an {@link Update} to one topic, keyed, so the default partitioner places every
 * key in one partition; a tombstone is written as a null value.
 */
public class UpdateSerializer implements KafkaRecordSerializationSchema<Update> {
    private static final long serialVersionUID = 1L;

    private final String topic;

    public UpdateSerializer(String topic) {
        this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(Update u, KafkaSinkContext context, Long timestamp) {
        byte[] value = u.value == null ? null : u.value.getBytes(StandardCharsets.UTF_8);
        return new ProducerRecord<>(topic, u.key.getBytes(StandardCharsets.UTF_8), value);
    }
}
