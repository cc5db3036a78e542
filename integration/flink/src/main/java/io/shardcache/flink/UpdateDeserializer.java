package io.shardcache.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Turns a Kafka record into an {@link Update}: UTF-8 key and value, a null value (a
 * tombstone on a compacted topic) into a null value. A record without a key cannot be an
 * update of a keyed table and fails the job with a message naming its position.
 */
public class UpdateDeserializer implements KafkaRecordDeserializationSchema<Update> {
    private static final long serialVersionUID = 1L;

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Update> out) {
        if (record.key() == null) {
            throw new IllegalArgumentException(String.format(
                    "record %s-%d@%d has no key", record.topic(), record.partition(), record.offset()));
        }
        String key = new String(record.key(), StandardCharsets.UTF_8);
        String value = record.value() == null ? null : new String(record.value(), StandardCharsets.UTF_8);
        out.collect(new Update(key, value));
    }

    @Override
    public TypeInformation<Update> getProducedType() {
        return TypeInformation.of(Update.class);
    }
}
