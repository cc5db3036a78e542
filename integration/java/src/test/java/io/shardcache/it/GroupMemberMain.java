package io.shardcache.it;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * A group member in a JVM of its own, so {@link GroupTest} can kill it the hard way
 * (Process.destroyForcibly: no LeaveGroup, no more heartbeats). Arguments: bootstrap, group,
 * topic, session timeout ms. Prints "assigned N" after every assignment and polls until it
 * is killed or its parent's stdin closes.
 */
public final class GroupMemberMain {
  private GroupMemberMain() {}

  public static void main(String[] args) throws Exception {
    Properties p = GroupTest.memberProps(args[0], args[1], Integer.parseInt(args[3]));
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
      c.subscribe(List.of(args[2]), new ConsumerRebalanceListener() {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> parts) {}

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> parts) {
          System.out.println("assigned " + c.assignment().size());
          System.out.flush();
        }
      });
      // Bounded: the parent kills this process; stdin closing (parent gone) also ends it.
      long end = System.nanoTime() + Duration.ofMinutes(5).toNanos();
      while (System.nanoTime() < end && System.in.available() >= 0) {
        c.poll(Duration.ofMillis(200));
      }
    }
  }
}
