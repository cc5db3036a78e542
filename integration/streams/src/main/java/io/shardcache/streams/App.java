package io.shardcache.streams;

import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * A Kafka Streams app that totals orders per customer and labels each total with the
 * customer's region.
 *
 * <pre>
 * orders (key order id, value "customer,amount")
 *   -> map to (customer, "orderId=amount")           rekeyed: Streams writes a repartition topic
 *   -> groupByKey -> aggregate into a KTable          the "orders-by-customer" store, whose
 *                                                     changelog is a compacted topic
 *   -> toStream -> join GlobalKTable regions          customers (key customer, value region),
 *                                                     a compacted topic read whole
 *   -> output (key customer, value "region=R orders=N total=T")
 *
 * the same grouped stream
 *   -> windowedBy 7 days -> aggregate                the "orders-per-window" window store,
 *                                                     whose changelog is compact,delete
 *   -> windowed output (key "customer@windowStartMs", value "orders=N total=T")
 * </pre>
 *
 * <p>Processing is at least once, so after a crash or a broker restart some orders may be
 * processed twice. The aggregate is the set of a customer's orders (order id to amount),
 * so a replayed order changes nothing and the totals stay exact.
 *
 * <p>Usage: {@code App APPLICATION_ID STATE_DIR ORDERS CUSTOMERS OUTPUT WINDOWED}, with the broker
 * address in SHARDCACHE_BOOTSTRAP. It runs until SIGTERM, then closes (committing, and
 * leaving the consumer group so a restarted instance takes over at once), and exits 1 if
 * Streams fails.
 */
public final class App {
  private App() {}

  public static void main(String[] args) throws InterruptedException {
    String bootstrap = bootstrap(args, 6, "App APPLICATION_ID STATE_DIR ORDERS CUSTOMERS OUTPUT WINDOWED");
    Properties props = config(args[0], bootstrap, args[1], StreamsConfig.AT_LEAST_ONCE);
    run(new KafkaStreams(topology(args[2], args[3], args[4], args[5]), props));
  }

  /**
   * Returns the broker address in SHARDCACHE_BOOTSTRAP; if it is unset or args are not n,
   * prints usage (the app's name and arguments) and exits 2.
   */
  static String bootstrap(String[] args, int n, String usage) {
    String bootstrap = System.getenv("SHARDCACHE_BOOTSTRAP");
    if (args.length != n || bootstrap == null || bootstrap.isEmpty()) {
      System.err.println("usage: SHARDCACHE_BOOTSTRAP=host:port " + usage);
      System.exit(2);
    }
    return bootstrap;
  }

  /**
   * The settings of both apps: the application id, broker, state dir, processing guarantee
   * and String serdes, and, small and quick for a test, every update going out (no store
   * cache) with commits and repartition purges every 200 ms.
   */
  static Properties config(String applicationId, String bootstrap, String stateDir, String guarantee) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
    props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
    props.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 200);
    return props;
  }

  /**
   * Starts streams and runs it until SIGTERM, then closes it (committing, and leaving the
   * consumer group so a restarted instance takes over at once); exits 1 if Streams fails.
   */
  static void run(KafkaStreams streams) throws InterruptedException {
    CountDownLatch stopped = new CountDownLatch(1);
    boolean[] failed = {false};
    streams.setStateListener(
        (now, before) -> {
          System.err.println("streams state " + before + " -> " + now);
          if (now == KafkaStreams.State.ERROR) {
            failed[0] = true;
            stopped.countDown();
          }
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(
                      CloseOptions.groupMembershipOperation(
                              CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                          .withTimeout(Duration.ofSeconds(30)));
                  System.err.println("streams closed");
                  stopped.countDown();
                }));
    streams.start();
    stopped.await();
    if (failed[0]) {
      streams.close(Duration.ofSeconds(10));
      System.exit(1);
    }
  }

  static Topology topology(String orders, String customers, String output, String windowed) {
    StreamsBuilder builder = new StreamsBuilder();
    GlobalKTable<String, String> regions =
        builder.globalTable(customers, Materialized.as("regions"));
    KGroupedStream<String, String> byCustomer =
        builder.stream(orders, Consumed.with(Serdes.String(), Serdes.String()))
            .map(
                (orderId, order) -> {
                  String[] f = order.split(",", 2);
                  return KeyValue.pair(f[0], orderId + "=" + f[1]);
                })
            .groupByKey();
    byCustomer
        .aggregate(() -> "", (customer, order, set) -> add(set, order), Materialized.as("orders-by-customer"))
        .toStream()
        .join(regions, (customer, set) -> customer, (set, region) -> "region=" + region + " " + sum(set))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    // The same per window of WINDOW: a window store, whose changelog Streams creates
    // with cleanup.policy=compact,delete and a retention.ms.
    byCustomer
        .windowedBy(TimeWindows.ofSizeWithNoGrace(WINDOW))
        .aggregate(() -> "", (customer, order, set) -> add(set, order), Materialized.as("orders-per-window"))
        .toStream((w, set) -> w.key() + "@" + w.window().start())
        .mapValues(App::sum)
        .to(windowed, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  /** The window size: long, so that a test's orders, stamped with one time, share a window. */
  static final Duration WINDOW = Duration.ofDays(7);

  /** Adds "orderId=amount" to a set encoded as "id=amount;id=amount", sorted by id. */
  static String add(String set, String order) {
    Map<String, String> m = parse(set);
    String[] kv = order.split("=", 2);
    m.put(kv[0], kv[1]);
    StringBuilder sb = new StringBuilder();
    for (Map.Entry<String, String> e : m.entrySet()) {
      if (sb.length() > 0) {
        sb.append(';');
      }
      sb.append(e.getKey()).append('=').append(e.getValue());
    }
    return sb.toString();
  }

  /** Describes a set of orders as "orders=N total=T". */
  static String sum(String set) {
    Map<String, String> m = parse(set);
    long total = 0;
    for (String amount : m.values()) {
      total += Long.parseLong(amount);
    }
    return "orders=" + m.size() + " total=" + total;
  }

  private static Map<String, String> parse(String set) {
    Map<String, String> m = new TreeMap<>();
    if (set == null || set.isEmpty()) {
      return m;
    }
    for (String e : set.split(";")) {
      String[] kv = e.split("=", 2);
      m.put(kv[0], kv[1]);
    }
    return m;
  }
}
