// Command security measures what client security costs on one shardcache
// process: produce and fetch throughput, and connection setup time, over
// PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL listeners of the same broker in
// the same run (SASL with SCRAM-SHA-256 and -512), and prints medians as a
// markdown table.
//
// Every round measures each protocol once, the order rotating from one round
// to the next, so the protocols share the machine's noise; the tables give
// the median over rounds. Beside records/s and MB/s they give the CPU time
// (utime+stime) the broker and the load generator spent per record, which a
// shared machine disturbs far less.
//
// Phases of a round, per protocol:
//
//  1. produce: -records records with distinct keys (16 bytes) and
//     -value-bytes values into a new delete-policy topic of -partitions
//     partitions, acks=all, idempotent, linger 5 ms, one franz-go client
//     (harness.Produce).
//  2. fetch: a new consumer reads that topic from the start to its end.
//  3. connect: -connects times, sequentially, a new client dials, runs the
//     TLS handshake and SASL authentication where the listener has them, and
//     gets an ApiVersions answer; the median of the round is kept.
//
// Usage:
//
//	go run ./integration/bench/security [flags]     (make bench-security BENCH_ARGS=...)
//
// Flags:
//
//	-binary       shardcache binary (default ./bin/shardcache, else built from ./cmd/shardcache)
//	-rounds       rounds (default 5)
//	-records      records per produce run (default 100,000)
//	-value-bytes  value size (default 1,024)
//	-partitions   partitions of each topic (default 4)
//	-connects     connections per connect measurement (default 50)
//	-broker-args  extra flags for the broker, space separated
//
// The defaults take about two minutes on two cores.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

const (
	benchUser     = "bench"
	benchPassword = "bench-secret"
)

type config struct {
	binary     string
	rounds     int
	records    int
	valueBytes int
	partitions int
	connects   int
	brokerArgs []string
}

// variant is one way to connect: a listener and, for SASL, a mechanism.
type variant struct {
	name     string
	listener string // the --listeners name
	tls      bool
	mech     sasl.Mechanism // nil without SASL
	addr     string
}

// sample is one round's measurements of a variant.
type sample struct {
	produceRecs, produceMB, fetchRecs, fetchMB float64
	produceCPU, fetchCPU                       time.Duration // broker + load generator, per record
	produceBrokerCPU, fetchBrokerCPU           time.Duration // broker only, per record
	connect                                    time.Duration
}

func main() {
	var cfg config
	var brokerArgs string
	flag.StringVar(&cfg.binary, "binary", "", "shardcache binary (default <module root>/bin/shardcache, else go build)")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds; each measures every protocol once")
	flag.IntVar(&cfg.records, "records", 100_000, "records per produce run")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 1024, "value size in bytes")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of each topic")
	flag.IntVar(&cfg.connects, "connects", 50, "connections per connect measurement")
	flag.StringVar(&brokerArgs, "broker-args", "", "extra flags for the broker, space separated")
	flag.Parse()
	cfg.brokerArgs = strings.Fields(brokerArgs)
	if cfg.rounds < 1 || cfg.records < 1 || cfg.valueBytes < 0 || cfg.partitions < 1 || cfg.connects < 1 {
		log.Print("-rounds, -records, -partitions and -connects must be positive, -value-bytes not negative")
		os.Exit(2)
	}
	harness.Main(func(ctx context.Context) error { return run(ctx, cfg) })
}

// freeAddrs picks n free loopback ports.
func freeAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		out = append(out, ln.Addr().String())
		defer ln.Close()
	}
	return out, nil
}

func run(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "shardcache-bench-security-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files := harness.ServerTLSFiles(dir)
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}

	addrs, err := freeAddrs(4)
	if err != nil {
		return err
	}
	names := []string{"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
	var listeners []string
	for i, n := range names {
		listeners = append(listeners, n+"://"+addrs[i])
	}
	os.Setenv("SHARDCACHE_SASL_BOOTSTRAP_PASSWORD", benchPassword)
	args := append([]string{
		"--listeners=" + strings.Join(listeners, ","),
		"--tls-cert-file=" + files.Cert,
		"--tls-key-file=" + files.Key,
		"--sasl-bootstrap-user=" + benchUser,
		"--default-cleanup-policy=delete",
	}, cfg.brokerArgs...)
	b, err := harness.StartBroker(ctx, cfg.binary, args...)
	if err != nil {
		return err
	}
	defer b.Stop()

	auth := scram.Auth{User: benchUser, Pass: benchPassword}
	variants := []variant{
		{name: "PLAINTEXT", listener: "PLAINTEXT", addr: addrs[0]},
		{name: "SSL", listener: "SSL", tls: true, addr: addrs[1]},
		{name: "SASL_PLAINTEXT SCRAM-SHA-256", listener: "SASL_PLAINTEXT", mech: auth.AsSha256Mechanism(), addr: addrs[2]},
		{name: "SASL_SSL SCRAM-SHA-256", listener: "SASL_SSL", tls: true, mech: auth.AsSha256Mechanism(), addr: addrs[3]},
		{name: "SASL_SSL SCRAM-SHA-512", listener: "SASL_SSL", tls: true, mech: auth.AsSha512Mechanism(), addr: addrs[3]},
	}
	opts := func(v variant) []kgo.Opt {
		o := []kgo.Opt{kgo.SeedBrokers(v.addr)}
		if v.tls {
			o = append(o, kgo.DialTLSConfig(tlsCfg.Clone()))
		}
		if v.mech != nil {
			o = append(o, kgo.SASL(v.mech))
		}
		return o
	}

	fmt.Printf("# shardcache client security benchmark\n\n")
	fmt.Printf("- started %s on %s/%s, %d CPUs (GOMAXPROCS %d); load average %s\n", time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), harness.LoadAverage())
	fmt.Printf("- one broker on loopback, listeners %s; %d rounds, order rotating; %d records of %d-byte values per produce run, %d partitions; %d connections per connect measurement\n\n",
		strings.Join(names, ", "), cfg.rounds, cfg.records, cfg.valueBytes, cfg.partitions, cfg.connects)

	samples := make([][]sample, len(variants))
	for round := range cfg.rounds {
		k := round % len(variants)
		order := append(slices.Clone(variants[k:]), variants[:k]...)
		for _, v := range order {
			i := slices.IndexFunc(variants, func(w variant) bool { return w.name == v.name })
			s, err := measure(ctx, cfg, b, v, opts(v), round)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, v.name, err)
			}
			log.Printf("round %d %-28s produce %8.0f rec/s  fetch %8.0f rec/s  connect %v", round+1, v.name, s.produceRecs, s.fetchRecs, s.connect.Round(10*time.Microsecond))
			samples[i] = append(samples[i], s)
		}
	}
	fmt.Printf("load average at the end: %s\n\n", harness.LoadAverage())
	fmt.Println("| protocol | produce records/s | produce MB/s | µs CPU per produced record (broker / total) | fetch records/s | fetch MB/s | µs CPU per fetched record (broker / total) | connection setup |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, v := range variants {
		ss := samples[i]
		med := func(f func(sample) float64) float64 { return harness.Median(ss, f) }
		us := func(f func(sample) time.Duration) float64 {
			return med(func(s sample) float64 { return float64(f(s).Nanoseconds()) / 1e3 })
		}
		fmt.Printf("| %s | %.0f | %.1f | %.1f / %.1f | %.0f | %.1f | %.1f / %.1f | %.2f ms |\n", v.name,
			med(func(s sample) float64 { return s.produceRecs }), med(func(s sample) float64 { return s.produceMB }),
			us(func(s sample) time.Duration { return s.produceBrokerCPU }), us(func(s sample) time.Duration { return s.produceCPU }),
			med(func(s sample) float64 { return s.fetchRecs }), med(func(s sample) float64 { return s.fetchMB }),
			us(func(s sample) time.Duration { return s.fetchBrokerCPU }), us(func(s sample) time.Duration { return s.fetchCPU }),
			us(func(s sample) time.Duration { return s.connect })/1e3)
	}
	return nil
}

// cpu returns the broker's and this process's CPU time so far.
func cpu(b *harness.Broker) (broker, gen time.Duration, err error) {
	if broker, err = harness.CPUTime(b.PID()); err != nil {
		return 0, 0, err
	}
	gen, err = harness.CPUTime(os.Getpid())
	return broker, gen, err
}

// measure runs one round's produce, fetch and connect measurements of v.
func measure(ctx context.Context, cfg config, b *harness.Broker, v variant, opts []kgo.Opt, round int) (sample, error) {
	var s sample
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return s, err
	}
	defer admin.Close()
	topic := fmt.Sprintf("bench-security-%s-%d", strings.NewReplacer(" ", "-").Replace(v.name), round)
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, int32(cfg.partitions), -1, nil, topic); err != nil {
		return s, fmt.Errorf("create topic: %w", err)
	}
	defer adm.DeleteTopics(context.WithoutCancel(ctx), topic)

	b0, g0, err := cpu(b)
	if err != nil {
		return s, err
	}
	res, err := harness.Produce(ctx, harness.ProduceConfig{
		Seeds: []string{v.addr}, Topic: topic, Records: cfg.records, Keys: cfg.records,
		KeyBytes: 16, ValueBytes: cfg.valueBytes, Linger: 5 * time.Millisecond, MaxBuffered: 10_000,
		Duration: 5 * time.Minute, ClientOpts: opts[1:],
	})
	if err != nil {
		return s, err
	}
	if res.Failed > 0 {
		return s, fmt.Errorf("produce: %d records failed: %v", res.Failed, res.FirstErr)
	}
	b1, g1, err := cpu(b)
	if err != nil {
		return s, err
	}
	n := time.Duration(res.Records)
	s.produceRecs, s.produceMB = res.RecordsPerSec(), res.MBPerSec()
	s.produceBrokerCPU, s.produceCPU = (b1-b0)/n, (b1-b0+g1-g0)/n

	records, bytes, elapsed, err := fetchAll(ctx, opts, topic, res.Records)
	if err != nil {
		return s, err
	}
	b2, g2, err := cpu(b)
	if err != nil {
		return s, err
	}
	s.fetchRecs, s.fetchMB = float64(records)/elapsed.Seconds(), float64(bytes)/1e6/elapsed.Seconds()
	s.fetchBrokerCPU, s.fetchCPU = (b2-b1)/time.Duration(records), (b2-b1+g2-g1)/time.Duration(records)

	var times []time.Duration
	for range cfg.connects {
		began := time.Now()
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return s, err
		}
		_, err = cl.Request(ctx, kmsg.NewPtrApiVersionsRequest())
		times = append(times, time.Since(began))
		cl.Close()
		if err != nil {
			return s, fmt.Errorf("connect: %w", err)
		}
	}
	slices.Sort(times)
	s.connect = harness.Quantile(times, 0.5)
	return s, nil
}

// fetchAll reads topic from the start until want records arrived.
func fetchAll(ctx context.Context, opts []kgo.Opt, topic string, want int64) (records, bytes int64, elapsed time.Duration, err error) {
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return 0, 0, 0, err
	}
	defer cl.Close()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	began := time.Now()
	for records < want {
		fs := cl.PollFetches(fctx)
		if fctx.Err() != nil {
			return records, bytes, 0, fmt.Errorf("fetch: %d of %d records: %w", records, want, fctx.Err())
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return records, bytes, 0, fmt.Errorf("fetch: %w", ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			records++
			bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	return records, bytes, time.Since(began), nil
}
