package broker

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkListenerThroughput produces and then fetches 1 KiB records over
// PLAINTEXT, SSL and SASL_SSL listeners of one broker in the same run, so
// the figures compare (README, Benchmarks).
//
//	go test -run '^$' -bench BenchmarkListenerThroughput -benchtime 20000x ./broker
func BenchmarkListenerThroughput(b *testing.B) {
	sb := newSecureBroker(b, func(c *testBrokerConfig) { c.Logger = slog.New(slog.DiscardHandler) })
	sb.addUser(b, "bench", "pw", kadm.ScramSha256, kadm.ScramSha512)
	value := make([]byte, 1024)
	for _, p := range []SecurityProtocol{ProtocolPlaintext, ProtocolSSL, ProtocolSASLSSL} {
		addr := sb.Addr
		opts := []kgo.Opt{kgo.ProducerLinger(5 * time.Millisecond)}
		if p != ProtocolPlaintext {
			addr = sb.listen(b, p)
			opts = append(opts, kgo.DialTLSConfig(sb.clientTLS()))
		}
		if p.SASL() {
			opts = append(opts, kgo.SASL(saslMechanism(MechanismScramSHA256, "bench", "pw")))
		}
		topic := "bench-" + string(p)
		cl := newClient(b, addr, opts...)
		ctx := context.Background()
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
			b.Fatal(err)
		}
		b.Run("produce/"+string(p), func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			for i := 0; b.Loop(); i++ {
				// Distinct keys: shardcache keeps the latest record per key.
				cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(b.N, "-", i)), Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
		b.Run("fetch/"+string(p), func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			cons := newClient(b, addr, append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
			n := 0
			pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			for n < b.N {
				fs := cons.PollFetches(pctx)
				if err := fs.Err0(); err != nil {
					b.Fatalf("after %d of %d records: %v", n, b.N, err)
				}
				n += fs.NumRecords()
				if fs.NumRecords() == 0 {
					b.Fatal("no records: produce fewer than fetch")
				}
			}
		})
	}
}

// BenchmarkConnectionSetup is the time from dial to a first answered
// request: PLAINTEXT, TLS, and SASL_SSL with SCRAM-SHA-256 and -512 (4096
// iterations, the client's PBKDF2 included).
func BenchmarkConnectionSetup(b *testing.B) {
	sb := newSecureBroker(b, func(c *testBrokerConfig) { c.Logger = slog.New(slog.DiscardHandler) })
	sb.addUser(b, "bench", "pw", kadm.ScramSha256, kadm.ScramSha512)
	ssl := sb.listen(b, ProtocolSSL)
	saslSSL := sb.listen(b, ProtocolSASLSSL)
	cases := []struct {
		name string
		addr string
		opts []kgo.Opt
	}{
		{"PLAINTEXT", sb.Addr, nil},
		{"SSL", ssl, []kgo.Opt{kgo.DialTLSConfig(sb.clientTLS())}},
		{"SASL_SSL/SCRAM-SHA-256", saslSSL, []kgo.Opt{kgo.DialTLSConfig(sb.clientTLS()), kgo.SASL(saslMechanism(MechanismScramSHA256, "bench", "pw"))}},
		{"SASL_SSL/SCRAM-SHA-512", saslSSL, []kgo.Opt{kgo.DialTLSConfig(sb.clientTLS()), kgo.SASL(saslMechanism(MechanismScramSHA512, "bench", "pw"))}},
		{"SASL_SSL/PLAIN", saslSSL, []kgo.Opt{kgo.DialTLSConfig(sb.clientTLS()), kgo.SASL(saslMechanism(MechanismPlain, "bench", "pw"))}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.addr)}, c.opts...)...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := cl.Request(context.Background(), kmsg.NewPtrApiVersionsRequest()); err != nil {
					b.Fatal(err)
				}
				cl.Close()
			}
		})
	}
}
