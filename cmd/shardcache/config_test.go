package main

import (
	"errors"
	"flag"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for parseConfig.
type env map[string]string

func (e env) lookup(k string) (string, bool) {
	v, ok := e[k]
	return v, ok
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := parseConfig(nil, env{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DataDir:              "./data",
		KafkaAddr:            "127.0.0.1:9092",
		AdvertisedKafkaAddr:  "",
		HTTPAddr:             "127.0.0.1:9644",
		NodeID:               1,
		DefaultPartitions:    1,
		DefaultCleanupPolicy: "compact",
		AutoCreateTopics:     true,
		MaxRequestBytes:      100 << 20,
		MaxDecompressedBytes: 16 << 20,
		MaxInflightBytes:     256 << 20,
		MaxConnections:       10000,
		ConnectionsMaxIdle:   10 * time.Minute,
		RequestReadTimeout:   30 * time.Second,
		WriteTimeout:         30 * time.Second,
		RaftGroups:           4,
		CompactionInterval:   10 * time.Second,
		ShutdownTimeout:      10 * time.Second,
		LogLevel:             slog.LevelInfo,
		LogFormat:            "text",

		GroupMinSessionTimeout:     6 * time.Second,
		GroupMaxSessionTimeout:     30 * time.Minute,
		GroupInitialRebalanceDelay: 3 * time.Second,
		GroupMaxSize:               math.MaxInt32,
		OffsetsRetention:           168 * time.Hour,
		OffsetsTopicPartitions:     50,
		TransactionMaxTimeout:      time.Hour,
		TransactionalIDExpiration:  168 * time.Hour,
		TransactionVerification:    true,

		FetchSessionCacheSlots: 1000,

		ClusterAddr:          "127.0.0.1:9093",
		ReplicationFactor:    3,
		RaftHeartbeatTimeout: time.Second,
		RaftElectionTimeout:  time.Second,
		SnapshotRate:         256 << 20,

		KeyCacheBytes:        128 << 20,
		IdleCompaction:       5 * time.Second,
		ProducerIDExpiration: 24 * time.Hour,

		ListenerProtocolMap:  defaultProtocolMap,
		TLSClientAuth:        "none",
		HTTPOpenProbes:       true,
		SASLHandshakeTimeout: 10 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

// allSet is one non-default value for every flag, and the Config it yields.
var allSet = struct {
	values map[string]string
	want   Config
}{
	values: map[string]string{
		"data-dir":               "/var/lib/sc",
		"raft-log-dir":           "/disk2/sc-raft-log",
		"kafka-addr":             "0.0.0.0:19092",
		"advertised-kafka-addr":  "kafka.example:19092",
		"http-addr":              ":19644",
		"pprof":                  "true",
		"node-id":                "7",
		"default-partitions":     "12",
		"default-cleanup-policy": "delete",
		"auto-create-topics":     "false",
		"max-request-bytes":      "1MiB",
		"max-decompressed-bytes": "2097152",
		"max-inflight-bytes":     "3GiB",
		"max-connections":        "50",
		"connections-max-idle":   "90s",
		"request-read-timeout":   "5s",
		"write-timeout":          "7s",
		"raft-groups":            "8",
		"compaction-interval":    "100ms",
		"shutdown-timeout":       "3s",
		"log-level":              "debug",
		"log-format":             "json",

		"group-min-session-timeout":     "100ms",
		"group-max-session-timeout":     "1m",
		"group-initial-rebalance-delay": "0s",
		"group-max-size":                "3",
		"offsets-retention":             "24h",
		"offsets-topic-partitions":      "4",
		"transaction-max-timeout":       "2h",
		"transactional-id-expiration":   "1h",

		"transaction-partition-verification": "false",

		"fetch-session-cache-slots": "7",

		"cluster-addr":            "0.0.0.0:19093",
		"advertised-cluster-addr": "node7.example:19093",
		"join":                    "a.example:9093, b.example:9093",
		"rack":                    "eu-1a",
		"replication-factor":      "5",
		"cluster-peer-addrs":      "1=127.0.0.1:4001,2=127.0.0.1:4002",
		"raft-heartbeat-timeout":  "250ms",
		"raft-election-timeout":   "500ms",
		"snapshot-rate":           "0",
		"cluster-tls-cert-file":   "/etc/sc/node.crt",
		"cluster-tls-key-file":    "/etc/sc/node.key",
		"cluster-tls-ca-file":     "/etc/sc/cluster-ca.crt",
		"cluster-tls-permissive":  "true",

		"key-cache-bytes":        "4GiB",
		"idle-compaction":        "1m",
		"producer-id-expiration": "15m",

		"listeners":                      "PLAINTEXT://0.0.0.0:19092,SECURE://0.0.0.0:19094",
		"advertised-listeners":           "SECURE://kafka.example:19094",
		"listener-security-protocol-map": "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL",
		"tls-cert-file":                  "/etc/sc/tls.crt",
		"tls-key-file":                   "/etc/sc/tls.key",
		"tls-ca-file":                    "/etc/sc/ca.crt",
		"tls-client-auth":                "requested",
		"http-tls":                       "true",
		"http-tokens-file":               "testdata/http-tokens",
		"http-client-ca-file":            "/etc/sc/http-ca.crt",
		"http-open-probes":               "false",
		"sasl-handshake-timeout":         "3s",
		"sasl-session-lifetime":          "1h",
		"sasl-bootstrap-user":            "admin",
		"super-users":                    "User:admin; User:CN=ops",
		"allow-everyone-if-no-acl-found": "true",
	},
	want: Config{
		DataDir:              "/var/lib/sc",
		RaftLogDir:           "/disk2/sc-raft-log",
		KafkaAddr:            "0.0.0.0:19092",
		AdvertisedKafkaAddr:  "kafka.example:19092",
		HTTPAddr:             ":19644",
		Pprof:                true,
		NodeID:               7,
		DefaultPartitions:    12,
		DefaultCleanupPolicy: "delete",
		AutoCreateTopics:     false,
		MaxRequestBytes:      1 << 20,
		MaxDecompressedBytes: 2 << 20,
		MaxInflightBytes:     3 << 30,
		MaxConnections:       50,
		ConnectionsMaxIdle:   90 * time.Second,
		RequestReadTimeout:   5 * time.Second,
		WriteTimeout:         7 * time.Second,
		RaftGroups:           8,
		CompactionInterval:   100 * time.Millisecond,
		ShutdownTimeout:      3 * time.Second,
		LogLevel:             slog.LevelDebug,
		LogFormat:            "json",

		GroupMinSessionTimeout:     100 * time.Millisecond,
		GroupMaxSessionTimeout:     time.Minute,
		GroupInitialRebalanceDelay: 0,
		GroupMaxSize:               3,
		OffsetsRetention:           24 * time.Hour,
		OffsetsTopicPartitions:     4,
		TransactionMaxTimeout:      2 * time.Hour,
		TransactionalIDExpiration:  time.Hour,
		TransactionVerification:    false,

		FetchSessionCacheSlots: 7,

		ClusterAddr:           "0.0.0.0:19093",
		AdvertisedClusterAddr: "node7.example:19093",
		Join:                  []string{"a.example:9093", "b.example:9093"},
		Rack:                  "eu-1a",
		ReplicationFactor:     5,
		PeerAddrs:             map[int32]string{1: "127.0.0.1:4001", 2: "127.0.0.1:4002"},
		RaftHeartbeatTimeout:  250 * time.Millisecond,
		RaftElectionTimeout:   500 * time.Millisecond,
		SnapshotRate:          0,
		ClusterTLSCertFile:    "/etc/sc/node.crt",
		ClusterTLSKeyFile:     "/etc/sc/node.key",
		ClusterTLSCAFile:      "/etc/sc/cluster-ca.crt",
		ClusterTLSPermissive:  true,

		KeyCacheBytes:        4 << 30,
		IdleCompaction:       time.Minute,
		ProducerIDExpiration: 15 * time.Minute,

		Listeners:            "PLAINTEXT://0.0.0.0:19092,SECURE://0.0.0.0:19094",
		AdvertisedListeners:  "SECURE://kafka.example:19094",
		ListenerProtocolMap:  "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL",
		TLSCertFile:          "/etc/sc/tls.crt",
		TLSKeyFile:           "/etc/sc/tls.key",
		TLSCAFile:            "/etc/sc/ca.crt",
		TLSClientAuth:        "requested",
		HTTPTLS:              true,
		HTTPTokensFile:       "testdata/http-tokens",
		HTTPClientCAFile:     "/etc/sc/http-ca.crt",
		HTTPOpenProbes:       false,
		SASLHandshakeTimeout: 3 * time.Second,
		SASLSessionLifetime:  time.Hour,
		SASLBootstrapUser:    "admin",

		SuperUsers:                "User:admin; User:CN=ops",
		AllowEveryoneIfNoACLFound: func() *bool { b := true; return &b }(),
	},
}

func TestParseConfigEveryFlagIsCovered(t *testing.T) {
	c := defaultConfig()
	newFlagSet(&c).VisitAll(func(f *flag.Flag) {
		if _, ok := allSet.values[f.Name]; !ok {
			t.Errorf("flag --%s has no value in allSet", f.Name)
		}
	})
	if len(allSet.values) != reflect.TypeOf(Config{}).NumField() {
		t.Errorf("allSet has %d flags, Config has %d fields", len(allSet.values), reflect.TypeOf(Config{}).NumField())
	}
}

func TestParseConfigFlags(t *testing.T) {
	var args []string
	for name, v := range allSet.values {
		args = append(args, "--"+name+"="+v)
	}
	got, err := parseConfig(args, env{bootstrapPasswordEnv: "pw"}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, allSet.want) {
		t.Fatalf("\n got %+v\nwant %+v", got, allSet.want)
	}
}

func TestParseConfigEnv(t *testing.T) {
	e := env{bootstrapPasswordEnv: "pw"}
	for name, v := range allSet.values {
		e[envName(name)] = v
	}
	got, err := parseConfig(nil, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, allSet.want) {
		t.Fatalf("\n got %+v\nwant %+v", got, allSet.want)
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"data-dir":               "SHARDCACHE_DATA_DIR",
		"advertised-kafka-addr":  "SHARDCACHE_ADVERTISED_KAFKA_ADDR",
		"max-decompressed-bytes": "SHARDCACHE_MAX_DECOMPRESSED_BYTES",
		"node-id":                "SHARDCACHE_NODE_ID",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestParseConfigFlagBeatsEnv(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   env
		check func(Config) bool
	}{
		{"node-id", []string{"--node-id", "3"}, env{"SHARDCACHE_NODE_ID": "9"},
			func(c Config) bool { return c.NodeID == 3 }},
		{"bool flag false beats env true", []string{"--auto-create-topics=false"}, env{"SHARDCACHE_AUTO_CREATE_TOPICS": "true"},
			func(c Config) bool { return !c.AutoCreateTopics }},
		{"flag equal to the default still wins", []string{"--data-dir", "./data"}, env{"SHARDCACHE_DATA_DIR": "/elsewhere"},
			func(c Config) bool { return c.DataDir == "./data" }},
		{"invalid env ignored when the flag is given", []string{"--log-format", "json"}, env{"SHARDCACHE_LOG_FORMAT": "xml"},
			func(c Config) bool { return c.LogFormat == "json" }},
		{"other env still applies", []string{"--node-id", "3"}, env{"SHARDCACHE_RAFT_GROUPS": "2"},
			func(c Config) bool { return c.NodeID == 3 && c.RaftGroups == 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, tt.env.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("got %+v", c)
			}
		})
	}
}

// invalidValues lists, per flag, values that must be refused.
var invalidValues = []struct {
	flag   string
	values []string
}{
	{"data-dir", []string{""}},
	// The default data dir is ./data: its store, inside it, the dir itself,
	// a dir that holds the store, and raft/ (snapshot metadata) or a group's
	// folder in it.
	{"raft-log-dir", []string{"data/store", "./data/store/raft", "data", "./data/", ".", "data/raft", "data/raft/group-1"}},
	{"kafka-addr", []string{"localhost", "127.0.0.1:http", "127.0.0.1:70000", ""}},
	{"advertised-kafka-addr", []string{"nohost", ":9092", "h:0", "h:x"}},
	{"http-addr", []string{"9644", "127.0.0.1:-1"}},
	{"node-id", []string{"x", "-1", "1.5", "3000000000"}},
	{"default-partitions", []string{"0", "-2", "many"}},
	{"default-cleanup-policy", []string{"compact,delete", "Compact", ""}},
	{"auto-create-topics", []string{"maybe"}},
	{"pprof", []string{"yes please"}},
	{"max-request-bytes", []string{"0", "100", "2GiB", "-5", "lots", "1.5MiB"}},
	{"max-decompressed-bytes", []string{"0", "4GiB", "x"}},
	{"max-inflight-bytes", []string{"0", "100MiB", "2TiB", "-1", "x"}}, // 100MiB: below twice --max-request-bytes
	{"max-connections", []string{"0", "-1", "many"}},
	{"connections-max-idle", []string{"0s", "-1m", "10"}},
	{"request-read-timeout", []string{"0s", "-1s", "x"}},
	{"write-timeout", []string{"0", "-30s", "soon"}},
	{"raft-groups", []string{"0", "-1", "2000", "four"}},
	{"compaction-interval", []string{"0s", "-1s", "10"}},
	{"shutdown-timeout", []string{"0", "soon"}},
	{"log-level", []string{"loud"}},
	{"log-format", []string{"xml", "JSON"}},
	{"group-min-session-timeout", []string{"0s", "-1s", "soon", "31m"}},
	{"group-max-session-timeout", []string{"1s", "1000h", "x"}},
	{"group-initial-rebalance-delay", []string{"-1ms", "1000h", "3"}},
	{"group-max-size", []string{"0", "-1", "big"}},
	{"offsets-retention", []string{"0s", "500us", "-1h", "7d"}},
	{"offsets-topic-partitions", []string{"0", "1001", "fifty"}},
	{"fetch-session-cache-slots", []string{"-1", "100001", "many"}},
	{"cluster-addr", []string{"9093", "h:x", ""}},
	{"advertised-cluster-addr", []string{":9093", "h:0", "nohost"}},
	{"join", []string{"a.example", "a:0", "a:1,b"}},
	{"rack", []string{"bad\nrack", strings.Repeat("r", 256)}},
	{"replication-factor", []string{"0", "8", "three"}},
	{"cluster-peer-addrs", []string{"x=h:1", "1=h", "2", "-1=h:1"}},
	{"raft-heartbeat-timeout", []string{"1ms", "2m", "soon"}},
	{"raft-election-timeout", []string{"100ms", "2m", "x"}},
	{"snapshot-rate", []string{"1KiB", "-1", "fast"}},
	{"cluster-tls-cert-file", []string{"/etc/sc/node.crt"}}, // without key and CA
	{"cluster-tls-key-file", []string{"/etc/sc/node.key"}},
	{"cluster-tls-ca-file", []string{"/etc/sc/cluster-ca.crt"}},
	{"cluster-tls-permissive", []string{"true", "maybe"}}, // without the files
	{"key-cache-bytes", []string{"-1", "1025GiB", "big"}},
	{"idle-compaction", []string{"-1s", "25h", "soon"}},
	{"producer-id-expiration", []string{"0s", "-1h", "600h", "1d"}},
	{"transaction-max-timeout", []string{"0s", "-1h", "600h", "1"}},
	{"transactional-id-expiration", []string{"0s", "-1h", "600h", "7d"}},
	{"transaction-partition-verification", []string{"maybe"}},
	{"listeners", []string{"PLAINTEXT:9092", "FOO://127.0.0.1:9092", "SSL://127.0.0.1:9094", "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
		"PLAINTEXT://nohost", "://127.0.0.1:1", "PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:1"}},
	{"advertised-listeners", []string{"PLAINTEXT://kafka.example:9092"}}, // without --listeners
	{"listener-security-protocol-map", []string{"PLAINTEXT:TLS", "PLAINTEXT", "PLAINTEXT:PLAINTEXT,PLAINTEXT:SSL"}},
	{"tls-cert-file", []string{"/etc/sc/tls.crt"}}, // without --tls-key-file
	{"tls-key-file", []string{"/etc/sc/tls.key"}},
	{"tls-ca-file", []string{"/etc/sc/ca.crt"}},                                      // without a certificate
	{"tls-client-auth", []string{"optional", "required"}},                            // required without --tls-ca-file
	{"http-tls", []string{"true", "maybe"}},                                          // without certificate files
	{"http-tokens-file", []string{"testdata/missing", "testdata", "config_test.go"}}, // missing, not a file, not a tokens file
	{"http-client-ca-file", []string{"/etc/sc/http-ca.crt"}},                         // without --http-tls
	{"http-open-probes", []string{"false", "maybe"}},                                 // closed without HTTP authentication
	{"sasl-handshake-timeout", []string{"0s", "10ms", "11m", "x"}},
	{"sasl-session-lifetime", []string{"500ms", "-1s", "x"}},
	{"sasl-bootstrap-user", []string{"admin"}}, // without the password
	{"super-users", []string{"admin", "User:", ":x", "User:a;bob"}},
	{"allow-everyone-if-no-acl-found", []string{"maybe", "auto"}},
}

// TestAllowEveryoneDefault: open while no listener authenticates clients,
// closed once one does, and the flag wins either way.
func TestAllowEveryoneDefault(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{"no flags", nil, true},
		{"plaintext and ssl without client auth", []string{"--listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
			"--tls-cert-file=c", "--tls-key-file=k"}, true},
		{"sasl listener", []string{"--listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"}, false},
		{"ssl with client auth", []string{"--listeners=SSL://127.0.0.1:0", "--tls-cert-file=c", "--tls-key-file=k",
			"--tls-ca-file=ca", "--tls-client-auth=required"}, false},
		{"sasl listener, flag on", []string{"--listeners=SASL_PLAINTEXT://127.0.0.1:0", "--allow-everyone-if-no-acl-found"}, true},
		{"no security, flag off", []string{"--allow-everyone-if-no-acl-found=false"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, env{}.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.allowEveryone(); got != tt.want {
				t.Fatalf("allowEveryone = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseConfigInvalid(t *testing.T) {
	c := defaultConfig()
	covered := map[string]bool{}
	for _, iv := range invalidValues {
		covered[iv.flag] = true
		for _, v := range iv.values {
			t.Run(iv.flag+"="+v+"/flag", func(t *testing.T) {
				_, err := parseConfig([]string{"--" + iv.flag + "=" + v}, env{}.lookup)
				checkNamesFlag(t, err, iv.flag)
			})
			t.Run(iv.flag+"="+v+"/env", func(t *testing.T) {
				_, err := parseConfig(nil, env{envName(iv.flag): v}.lookup)
				checkNamesFlag(t, err, iv.flag)
			})
		}
	}
	newFlagSet(&c).VisitAll(func(f *flag.Flag) {
		if !covered[f.Name] {
			t.Errorf("flag --%s has no invalid-value case", f.Name)
		}
	})
}

func checkNamesFlag(t *testing.T, err error, flagName string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	if !errors.Is(err, errUsage) {
		t.Errorf("error %q does not wrap errUsage", err)
	}
	if !strings.Contains(err.Error(), "--"+flagName) {
		t.Errorf("error %q does not name --%s", err, flagName)
	}
}

func TestParseConfigUsageErrors(t *testing.T) {
	if _, err := parseConfig([]string{"--help"}, env{}.lookup); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: err = %v, want flag.ErrHelp", err)
	}
	if _, err := parseConfig([]string{"--no-such-flag"}, env{}.lookup); err == nil || !strings.Contains(err.Error(), "--no-such-flag") {
		t.Errorf("unknown flag: err = %v", err)
	}
	if _, err := parseConfig([]string{"serve"}, env{}.lookup); err == nil || !strings.Contains(err.Error(), `"serve"`) {
		t.Errorf("positional argument: err = %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int32
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"64MiB", 64 << 20, true},
		{"64mib", 64 << 20, true},
		{"512KiB", 512 << 10, true},
		{"1GiB", 1 << 30, true},
		{"2047MiB", 2047 << 20, true},
		{"100B", 100, true},
		{" 8 MiB ", 8 << 20, true},
		{"2GiB", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"1e6", 0, false},
		{"10MB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	// String and Set round-trip, so --help shows values that parse back.
	for _, n := range []int32{100 << 20, 64 << 20, 512 << 10, 1 << 30, 1000} {
		v := bytesValue(n)
		var back bytesValue
		if err := back.Set(v.String()); err != nil || back != v {
			t.Errorf("round trip of %d via %q = %d, %v", n, v.String(), back, err)
		}
	}
}

// A Raft log dir beside the store, inside the data dir or elsewhere is fine;
// names that only start like the store's are not inside it.
func TestRaftLogDirAccepted(t *testing.T) {
	for _, dir := range []string{"", "data/raft-log", "data/raft/log", "data/storex", "data-raft", "/var/lib/sc-raft"} {
		if err := checkRaftLogDir("./data", dir); err != nil {
			t.Errorf("--raft-log-dir %q with --data-dir ./data: %v", dir, err)
		}
	}
}
