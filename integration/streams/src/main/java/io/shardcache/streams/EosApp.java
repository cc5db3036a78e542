package io.shardcache.streams;

import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams app run with {@code processing.guarantee=exactly_once_v2}: it counts and
 * totals orders per customer.
 *
 * <pre>
 * orders (key order id, value "customer,amount")
 *   -> map to (customer, amount)                 rekeyed: Streams writes a repartition topic
 *   -> groupByKey -> aggregate into a KTable      the "order-counts" store, whose changelog
 *                                                 is a compacted topic
 *   -> toStream -> output (key customer, value "orders=N total=T")
 * </pre>
 *
 * <p>Unlike {@link App}, the aggregate is not idempotent: an order processed twice counts
 * twice. Only exactly-once processing keeps the counts exact through a crash, and with the
 * store cache off every order adds one output record, so a read_committed reader sees each
 * customer's counts go 1, 2, 3, ... with no repeat and no gap.
 *
 * <p>Usage: {@code EosApp APPLICATION_ID STATE_DIR ORDERS OUTPUT DELAY_MS}, with the broker
 * address in SHARDCACHE_BOOTSTRAP. DELAY_MS slows the processing of each order, so that a
 * test can kill the JVM while a batch of orders is half processed. It runs as {@link App#run}
 * does: until SIGTERM (or SIGKILL), exiting 1 if Streams fails.
 */
public final class EosApp {
  private EosApp() {}

  public static void main(String[] args) throws InterruptedException {
    String bootstrap = App.bootstrap(args, 5, "EosApp APPLICATION_ID STATE_DIR ORDERS OUTPUT DELAY_MS");
    long delayMs;
    try {
      delayMs = Long.parseLong(args[4]);
    } catch (NumberFormatException e) {
      delayMs = -1;
    }
    if (delayMs < 0) {
      System.err.println("EosApp: DELAY_MS " + args[4] + " is not a non-negative integer");
      System.exit(2);
    }
    Properties props = App.config(args[0], bootstrap, args[1], StreamsConfig.EXACTLY_ONCE_V2);
    // Every update goes out and a transaction commits every 200 ms (App.config). A killed
    // instance's open transaction is aborted by its successor, which has the same process id
    // (kept in the state dir) and so the same transactional id, once the group has dropped
    // the killed member (the 6 s session timeout) and the successor initializes its
    // producer (InitProducerId fences and aborts it); the 30 s transaction timeout is
    // longer, so the fencing comes first. When the state dir is gone, the successor's
    // transactional id is new and the broker aborts the transaction at its timeout.
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 50);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
    props.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 30000);

    App.run(new KafkaStreams(topology(args[2], args[3], delayMs), props));
  }

  static Topology topology(String orders, String output, long delayMs) {
    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(orders, Consumed.with(Serdes.String(), Serdes.String()))
        .map(
            (orderId, order) -> {
              String[] f = order.split(",", 2);
              return KeyValue.pair(f[0], f[1]);
            })
        .groupByKey()
        .aggregate(
            () -> "orders=0 total=0",
            (customer, amount, agg) -> {
              pause(delayMs);
              return add(agg, Long.parseLong(amount));
            },
            Materialized.as("order-counts"))
        .toStream()
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  private static void pause(long ms) {
    if (ms == 0) {
      return;
    }
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Adds one order of amount to "orders=N total=T". */
  static String add(String agg, long amount) {
    String[] f = agg.split(" ", 2);
    long n = Long.parseLong(f[0].substring("orders=".length()));
    long total = Long.parseLong(f[1].substring("total=".length()));
    return "orders=" + (n + 1) + " total=" + (total + amount);
  }
}
