package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/compaction"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// flagBound is one flag's range, taken from the constants of the package that
// uses the value. lo and hi are its ends, which the flag and the package must
// both accept; below and above are just outside, which both must refuse ("":
// the range is open on that side, or stops at what the flag's type can hold).
// doc is how the README's configuration table writes the range.
type flagBound struct {
	flag                 string
	lo, hi, below, above string
	doc                  string
	pkg                  func(Config) error // nil: only cmd uses the value
	// relAbove is the flag an error names when hi is another flag's value.
	relAbove string
}

// ms writes d as Go does, without zero minutes or seconds: 1m, not 1m0s.
func ms(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func flagBounds() []flagBound {
	const maxInt32 = "2147483647"
	return []flagBound{
		{flag: "node-id", lo: fmt.Sprint(raftfsm.MinNodeID), hi: maxInt32, below: fmt.Sprint(raftfsm.MinNodeID - 1),
			doc: fmt.Sprintf(">= %d", raftfsm.MinNodeID), pkg: checkRaft},
		{flag: "default-partitions", lo: fmt.Sprint(broker.MinDefaultPartitions), hi: fmt.Sprint(raftfsm.MaxPartitions),
			below: fmt.Sprint(broker.MinDefaultPartitions - 1), above: fmt.Sprint(raftfsm.MaxPartitions + 1),
			doc: fmt.Sprintf("%d to %d", broker.MinDefaultPartitions, raftfsm.MaxPartitions), pkg: checkBroker},
		// hi: at most half of --max-inflight-bytes (256MiB by default), which
		// must hold twice the largest request.
		{flag: "max-request-bytes", lo: formatBytes(broker.MinMaxRequestBytes), hi: "128MiB", below: fmt.Sprint(broker.MinMaxRequestBytes - 1),
			doc: fmt.Sprintf("%s to 2GiB-1", formatBytes(broker.MinMaxRequestBytes)), pkg: checkBroker},
		{flag: "max-decompressed-bytes", lo: formatBytes(broker.MinMaxDecompressedBytes), hi: maxInt32, below: fmt.Sprint(broker.MinMaxDecompressedBytes - 1),
			doc: fmt.Sprintf("%s to 2GiB-1", formatBytes(broker.MinMaxDecompressedBytes)), pkg: checkBroker},
		{flag: "raft-groups", lo: fmt.Sprint(raftfsm.MinDataGroups), hi: fmt.Sprint(raftfsm.MaxDataGroups),
			below: fmt.Sprint(raftfsm.MinDataGroups - 1), above: fmt.Sprint(raftfsm.MaxDataGroups + 1),
			doc: fmt.Sprintf("%d to %d", raftfsm.MinDataGroups, raftfsm.MaxDataGroups), pkg: checkRaft},
		{flag: "compaction-interval", lo: ms(compaction.MinInterval), below: ms(compaction.MinInterval - time.Microsecond),
			doc: "at least " + ms(compaction.MinInterval), pkg: checkCompaction},
		{flag: "shutdown-timeout", lo: "1ns", below: "0s", doc: "positive"},
		{flag: "group-min-session-timeout", lo: ms(broker.MinGroupSessionTimeout), hi: "30m",
			below: ms(broker.MinGroupSessionTimeout - time.Microsecond), above: "30m0.001s", relAbove: "group-max-session-timeout",
			doc: "at least " + ms(broker.MinGroupSessionTimeout), pkg: checkBroker},
		{flag: "group-max-session-timeout", lo: "6s", hi: ms(broker.MaxGroupSessionTimeout),
			below: "5.999s", above: ms(broker.MaxGroupSessionTimeout + time.Millisecond),
			doc: "at most " + ms(broker.MaxGroupSessionTimeout), pkg: checkBroker},
		{flag: "group-initial-rebalance-delay", lo: "0s", hi: ms(broker.MaxGroupInitialRebalanceDelay),
			below: "-1ms", above: ms(broker.MaxGroupInitialRebalanceDelay + time.Millisecond),
			doc: "0s to " + ms(broker.MaxGroupInitialRebalanceDelay), pkg: checkBroker},
		{flag: "fetch-session-cache-slots", lo: "0", hi: fmt.Sprint(broker.MaxFetchSessionCacheSlots), below: "-1",
			above: fmt.Sprint(broker.MaxFetchSessionCacheSlots + 1), doc: fmt.Sprintf("0 to %d", broker.MaxFetchSessionCacheSlots), pkg: checkBroker},
		{flag: "group-max-size", lo: fmt.Sprint(broker.MinGroupMaxSize), hi: maxInt32, below: fmt.Sprint(broker.MinGroupMaxSize - 1),
			doc: fmt.Sprintf(">= %d", broker.MinGroupMaxSize), pkg: checkBroker},
		{flag: "offsets-retention", lo: ms(broker.MinOffsetsRetention), below: ms(broker.MinOffsetsRetention - time.Microsecond),
			doc: "at least " + ms(broker.MinOffsetsRetention), pkg: checkBroker},
		{flag: "offsets-topic-partitions", lo: fmt.Sprint(broker.MinOffsetsTopicPartitions), hi: fmt.Sprint(broker.MaxOffsetsTopicPartitions),
			below: fmt.Sprint(broker.MinOffsetsTopicPartitions - 1), above: fmt.Sprint(broker.MaxOffsetsTopicPartitions + 1),
			doc: fmt.Sprintf("%d to %d", broker.MinOffsetsTopicPartitions, broker.MaxOffsetsTopicPartitions), pkg: checkBroker},
		{flag: "transaction-max-timeout", lo: ms(broker.MinTxnMaxTimeout), hi: ms(broker.MaxTxnMaxTimeout),
			below: ms(broker.MinTxnMaxTimeout - time.Microsecond), above: ms(broker.MaxTxnMaxTimeout + time.Millisecond),
			doc: fmt.Sprintf("%s to %s", ms(broker.MinTxnMaxTimeout), ms(broker.MaxTxnMaxTimeout)), pkg: checkBroker},
		{flag: "transactional-id-expiration", lo: ms(broker.MinTxnIDExpiration), hi: ms(broker.MaxTxnIDExpiration),
			below: ms(broker.MinTxnIDExpiration - time.Microsecond), above: ms(broker.MaxTxnIDExpiration + time.Millisecond),
			doc: fmt.Sprintf("%s to %s", ms(broker.MinTxnIDExpiration), ms(broker.MaxTxnIDExpiration)), pkg: checkBroker},
		{flag: "replication-factor", lo: fmt.Sprint(raftfsm.MinReplicationFactor), hi: fmt.Sprint(raftfsm.MaxReplicationFactor),
			below: fmt.Sprint(raftfsm.MinReplicationFactor - 1), above: fmt.Sprint(raftfsm.MaxReplicationFactor + 1),
			doc: fmt.Sprintf("%d to %d", raftfsm.MinReplicationFactor, raftfsm.MaxReplicationFactor), pkg: checkRaft},
		{flag: "raft-heartbeat-timeout", lo: ms(raftfsm.MinRaftTimeout), hi: "1s",
			below: ms(raftfsm.MinRaftTimeout - time.Millisecond), above: "1.001s", relAbove: "raft-election-timeout",
			doc: fmt.Sprintf("%s to %s", ms(raftfsm.MinRaftTimeout), ms(raftfsm.MaxRaftTimeout)), pkg: checkRaft},
		{flag: "raft-election-timeout", lo: "1s", hi: ms(raftfsm.MaxRaftTimeout),
			below: "999ms", above: ms(raftfsm.MaxRaftTimeout + time.Millisecond),
			doc: "at most " + ms(raftfsm.MaxRaftTimeout), pkg: checkRaft},
		{flag: "snapshot-rate", lo: formatBytes(raftfsm.MinSnapshotRateBytes), hi: maxInt32, below: fmt.Sprint(raftfsm.MinSnapshotRateBytes - 1),
			doc: "at least " + formatBytes(raftfsm.MinSnapshotRateBytes), pkg: checkRaft},
		{flag: "key-cache-bytes", lo: "0", hi: formatBytes(shardstore.MaxKeyCacheBytes), below: "-1", above: fmt.Sprint(shardstore.MaxKeyCacheBytes + 1),
			doc: "at most " + formatBytes(shardstore.MaxKeyCacheBytes), pkg: checkStore},
		{flag: "idle-compaction", lo: "0s", hi: ms(shardstore.MaxIdleCompaction), below: "-1ms", above: ms(shardstore.MaxIdleCompaction + time.Millisecond),
			doc: "0s to " + ms(shardstore.MaxIdleCompaction), pkg: checkStore},
		{flag: "sasl-handshake-timeout", lo: ms(broker.MinAuthenticationTimeout), hi: ms(broker.MaxAuthenticationTimeout),
			below: ms(broker.MinAuthenticationTimeout - time.Millisecond), above: ms(broker.MaxAuthenticationTimeout + time.Millisecond),
			doc: fmt.Sprintf("%s to %s", ms(broker.MinAuthenticationTimeout), ms(broker.MaxAuthenticationTimeout)), pkg: checkBroker},
		{flag: "producer-id-expiration", lo: ms(compaction.MinProducerIDExpiration), hi: ms(compaction.MaxProducerIDExpiration),
			below: ms(compaction.MinProducerIDExpiration - time.Microsecond), above: ms(compaction.MaxProducerIDExpiration + time.Millisecond),
			doc: fmt.Sprintf("%s to %s", ms(compaction.MinProducerIDExpiration), ms(compaction.MaxProducerIDExpiration)), pkg: checkCompaction},
	}
}

// unboundedFlags take strings, addresses, choices or booleans: checked for
// their form by TestParseConfigInvalid, with no range to share with a package.
var unboundedFlags = []string{
	"data-dir", "raft-log-dir", "kafka-addr", "advertised-kafka-addr", "http-addr", "pprof", "default-cleanup-policy", "auto-create-topics",
	"log-level", "log-format", "cluster-addr", "advertised-cluster-addr", "join", "rack", "cluster-peer-addrs",
	"transaction-partition-verification",
	// The memory budget and connection limits (ranges checked by
	// TestParseConfigInvalid): their bounds are still written both in
	// broker.Config.Validate and in cmd, not yet as shared constants.
	"max-inflight-bytes", "max-connections", "connections-max-idle", "request-read-timeout", "write-timeout",
	// Security: forms checked by TestParseConfigInvalid; the session
	// lifetime is 0 or at least broker.MinSASLSessionLifetime.
	"listeners", "advertised-listeners", "listener-security-protocol-map", "tls-cert-file", "tls-key-file", "tls-ca-file",
	"tls-client-auth", "http-tls", "sasl-session-lifetime", "sasl-bootstrap-user", "super-users", "allow-everyone-if-no-acl-found",
	"cluster-tls-cert-file", "cluster-tls-key-file", "cluster-tls-ca-file", "cluster-tls-permissive",
	"http-tokens-file", "http-client-ca-file", "http-open-probes",
}

// checkRaft, checkBroker, checkCompaction and checkStore validate what
// run.go hands each package for c, with what only exists at run time filled in.
func checkRaft(c Config) error {
	rc := raftConfig(c)
	rc.Store = &shardstore.Store{}
	return rc.Validate()
}

func checkBroker(c Config) error {
	bc := brokerConfig(c)
	bc.AdvertisedAddr = "kafka.example:9092"
	bc.Node, bc.Store = &raftfsm.Node{}, &shardstore.Store{}
	return bc.Validate()
}

func checkCompaction(c Config) error {
	cc := compactionConfig(c)
	cc.Node, cc.Store = &raftfsm.Node{}, &shardstore.Store{}
	_, err := compaction.New(cc)
	return err
}

func checkStore(c Config) error {
	opts := storeOptions(c)
	opts.FS = vfs.NewMem()
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := shardstore.Open("db", opts)
	if err == nil {
		err = s.Close()
	}
	return err
}

// TestFlagBounds: every flag with a range has it from one place, the package
// that uses the value. At each end the flag and the package accept the value;
// just outside, the flag refuses it naming itself (exit 2) and so does the
// package. The README's configuration table writes the same range.
func TestFlagBounds(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		if name, ok := strings.CutPrefix(line, "| `--"); ok {
			if i := strings.Index(name, "`"); i > 0 {
				rows[name[:i]] = line
			}
		}
	}
	bounds := flagBounds()
	known := map[string]bool{}
	for _, f := range unboundedFlags {
		known[f] = true
	}
	for _, b := range bounds {
		known[b.flag] = true
		t.Run(b.flag, func(t *testing.T) {
			if !strings.Contains(rows[b.flag], b.doc) {
				t.Errorf("README row of --%s does not say %q:\n%s", b.flag, b.doc, rows[b.flag])
			}
			for _, v := range []string{b.lo, b.hi} {
				if v == "" {
					continue
				}
				c, err := parseConfig([]string{"--" + b.flag + "=" + v}, env{}.lookup)
				if err != nil {
					t.Errorf("--%s=%s refused: %v", b.flag, v, err)
					continue
				}
				if b.pkg != nil {
					if err := b.pkg(c); err != nil {
						t.Errorf("--%s=%s accepted, but the package refuses it: %v", b.flag, v, err)
					}
				}
			}
			for _, out := range []struct{ v, names string }{{b.below, ""}, {b.above, b.relAbove}} {
				if out.v == "" {
					continue
				}
				_, err := parseConfig([]string{"--" + b.flag + "=" + out.v}, env{}.lookup)
				names := b.flag
				if out.names != "" {
					names = out.names
				}
				checkNamesFlag(t, err, names)
				if b.pkg == nil {
					continue
				}
				// The package sees the value as the flag would have set it.
				c := defaultConfig()
				fs := newFlagSet(&c)
				if err := fs.Set(b.flag, out.v); err != nil {
					continue // the flag's type cannot hold it
				}
				if err := b.pkg(c); err == nil {
					t.Errorf("--%s=%s: refused by the flag, accepted by the package", b.flag, out.v)
				}
			}
		})
	}
	c := defaultConfig()
	newFlagSet(&c).VisitAll(func(f *flag.Flag) {
		if !known[f.Name] {
			t.Errorf("flag --%s is in neither flagBounds nor unboundedFlags", f.Name)
		}
		if rows[f.Name] == "" {
			t.Errorf("flag --%s has no row in the README's configuration table", f.Name)
		}
	})
	// The defaults are valid for every package.
	for _, check := range []func(Config) error{checkRaft, checkBroker, checkCompaction, checkStore} {
		if err := check(defaultConfig()); err != nil {
			t.Errorf("defaults refused: %v", err)
		}
	}
}
