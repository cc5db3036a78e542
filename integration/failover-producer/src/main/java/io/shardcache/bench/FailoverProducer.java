package io.shardcache.bench;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Properties;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java side of the cluster benchmark's failover phase: one record to every partition
 * of a topic every few milliseconds, through a producer with the client's default
 * configuration (acks=all and idempotence are its defaults), and one line on stdout per
 * acknowledgement or failure:
 *
 * <pre>
 *   ack PARTITION PRODUCED_NS ACKED_NS
 *   err PARTITION PRODUCED_NS ACKED_NS MESSAGE
 * </pre>
 *
 * Times are nanoseconds since the Unix epoch (the wall clock the Go side compares them
 * with). It runs until stdin closes. Usage: FailoverProducer BOOTSTRAP TOPIC PARTITIONS
 * EVERY_MS VALUE_BYTES. Argument errors exit 2 with a message on stderr.
 */
public final class FailoverProducer {
  private FailoverProducer() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 5) {
      usage("want 5 arguments, got " + args.length);
    }
    String bootstrap = args[0];
    String topic = args[1];
    int partitions = positive(args[2], "PARTITIONS");
    int everyMs = positive(args[3], "EVERY_MS");
    int valueBytes = positive(args[4], "VALUE_BYTES", true);

    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.CLIENT_ID_CONFIG, "shardcache-bench-failover-java");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

    // One writer for stdout: callbacks run on the producer's I/O thread.
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    byte[] value = new byte[valueBytes];
    // A daemon thread, so an error on the main thread ends the process.
    ScheduledExecutorService tick = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "failover-producer-tick");
      t.setDaemon(true);
      return t;
    });
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
      long[] seq = {0};
      tick.scheduleAtFixedRate(() -> {
        long n = seq[0]++;
        for (int p = 0; p < partitions; p++) {
          int partition = p;
          // Unique keys: the broker's default cleanup policy is compact.
          byte[] key = String.format("j%d-%09d", p, n).getBytes(StandardCharsets.UTF_8);
          long produced = nowNanos();
          producer.send(new ProducerRecord<>(topic, partition, key, value), (md, err) -> {
            long acked = nowNanos();
            if (err == null) {
              out.println("ack " + partition + " " + produced + " " + acked);
            } else {
              String msg = (err.getClass().getSimpleName() + ": " + err.getMessage()).replace('\n', ' ');
              out.println("err " + partition + " " + produced + " " + acked + " " + msg);
            }
          });
        }
      }, 0, everyMs, TimeUnit.MILLISECONDS);
      // Run until the benchmark closes stdin (or exits).
      while (System.in.read() >= 0) {
        // discard
      }
      tick.shutdownNow();
      tick.awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static long nowNanos() {
    Instant t = Instant.now();
    return t.getEpochSecond() * 1_000_000_000L + t.getNano();
  }

  private static int positive(String s, String name) {
    return positive(s, name, false);
  }

  private static int positive(String s, String name, boolean zeroOK) {
    int v;
    try {
      v = Integer.parseInt(s);
    } catch (NumberFormatException e) {
      usage(name + " is not a number: " + s);
      return 0;
    }
    if (v < 0 || (v == 0 && !zeroOK)) {
      usage(name + " must be " + (zeroOK ? "at least 0" : "positive") + ": " + s);
    }
    return v;
  }

  private static void usage(String why) {
    System.err.println("FailoverProducer: " + why);
    System.err.println("usage: FailoverProducer BOOTSTRAP TOPIC PARTITIONS EVERY_MS VALUE_BYTES");
    System.exit(2);
  }
}
