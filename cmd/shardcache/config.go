package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/compaction"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// envPrefix starts the environment variable of every flag: --data-dir is
// SHARDCACHE_DATA_DIR.
const envPrefix = "SHARDCACHE_"

// Byte size units accepted by the byte-valued flags.
const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// Config is everything the binary reads from flags and environment variables.
type Config struct {
	// DataDir holds the Pebble store (store/) and Raft metadata (raft/).
	DataDir string
	// RaftLogDir is the Raft log store's directory (the Pebble DB every
	// write is synced to: Raft logs and the node's identity). Empty means
	// raft/log inside DataDir.
	RaftLogDir string
	// KafkaAddr is the host:port the Kafka listener binds; port 0 picks a free port.
	KafkaAddr string
	// AdvertisedKafkaAddr is the host:port Metadata responses tell clients to use.
	// Empty means the bound Kafka address (with the host name in place of an
	// unspecified host such as 0.0.0.0).
	AdvertisedKafkaAddr string
	// HTTPAddr is the host:port of the HTTP server (metrics, health, readiness).
	HTTPAddr string
	// Pprof serves net/http/pprof's profiles under /debug/pprof/ on the HTTP
	// port.
	Pprof bool
	// NodeID is this node's id, also its Kafka broker id.
	NodeID int32
	// DefaultPartitions is the partition count of auto-created topics.
	DefaultPartitions int32
	// DefaultCleanupPolicy is the cleanup.policy of topics that do not set one:
	// "compact" or "delete".
	DefaultCleanupPolicy string
	// AutoCreateTopics creates unknown topics on Metadata and Produce.
	AutoCreateTopics bool
	// MaxRequestBytes caps one Kafka request frame.
	MaxRequestBytes int32
	// MaxDecompressedBytes caps one record batch after decompression.
	MaxDecompressedBytes int32
	// MaxInflightBytes is the memory budget of requests in flight
	// (broker.Config.MaxInflightBytes).
	MaxInflightBytes int64
	// MaxConnections caps open Kafka client connections.
	MaxConnections int
	// FetchSessionCacheSlots caps open fetch sessions
	// (broker.Config.FetchSessionCacheSlots; 0 disables them).
	FetchSessionCacheSlots int
	// ConnectionsMaxIdle closes Kafka connections idle for this long.
	ConnectionsMaxIdle time.Duration
	// RequestReadTimeout closes a connection whose request takes longer to arrive.
	RequestReadTimeout time.Duration
	// WriteTimeout closes a connection whose client leaves a response unread this long.
	WriteTimeout time.Duration
	// RaftGroups is the number of Raft groups that carry partitions.
	RaftGroups int
	// CompactionInterval is how often the compaction loop runs its policies.
	CompactionInterval time.Duration
	// ShutdownTimeout bounds the drain of in-flight Kafka and HTTP requests.
	ShutdownTimeout time.Duration
	// LogLevel is the lowest level logged.
	LogLevel slog.Level
	// LogFormat is "text" or "json".
	LogFormat string
	// GroupMinSessionTimeout and GroupMaxSessionTimeout bound consumer group
	// members' session timeouts (Kafka's group.min/max.session.timeout.ms).
	GroupMinSessionTimeout time.Duration
	GroupMaxSessionTimeout time.Duration
	// GroupInitialRebalanceDelay is how long the first rebalance of an empty
	// group waits for more members (group.initial.rebalance.delay.ms); 0 none.
	GroupInitialRebalanceDelay time.Duration
	// GroupMaxSize is the most members a consumer group may have.
	GroupMaxSize int32
	// OffsetsRetention is how long committed offsets of a group without
	// members are kept (offsets.retention.minutes).
	OffsetsRetention time.Duration
	// OffsetsTopicPartitions is the partition count of __consumer_offsets when
	// it is created.
	OffsetsTopicPartitions int32
	// TransactionMaxTimeout is the largest transaction timeout a producer may
	// ask for (Kafka's transaction.max.timeout.ms); TransactionalIDExpiration
	// forgets a transactional id idle for that long
	// (transactional.id.expiration.ms).
	TransactionMaxTimeout     time.Duration
	TransactionalIDExpiration time.Duration
	// TransactionVerification refuses a transactional batch for a
	// partition not added to the producer's ongoing transaction (Kafka's
	// transaction.partition.verification.enable).
	TransactionVerification bool

	// ClusterAddr is the host:port the node-to-node listener binds (Raft and
	// control RPCs of every group share it); port 0 picks a free port.
	ClusterAddr string
	// AdvertisedClusterAddr is the host:port other nodes dial; empty means the
	// bound cluster address (unspecified host replaced as for Kafka).
	AdvertisedClusterAddr string
	// Join lists cluster addresses of existing nodes to join (empty data dir
	// only; a node with state rejoins what it knows).
	Join []string
	// Rack is this node's rack, for follower fetch (KIP-392); "" for none.
	Rack string
	// ReplicationFactor is how many nodes carry each data group, capped by the
	// number of nodes; used when the cluster is bootstrapped.
	ReplicationFactor int
	// PeerAddrs overrides the address this node dials for a node id.
	PeerAddrs map[int32]string
	// RaftHeartbeatTimeout and RaftElectionTimeout are hashicorp/raft's
	// timeouts; a leader that stops answering is replaced after about one to
	// two election timeouts.
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	// ClusterTLSCertFile, ClusterTLSKeyFile and ClusterTLSCAFile are the PEM
	// files of TLS with mutual authentication on the node-to-node port: this
	// node's certificate (server and client usage) and key, and the CA that
	// every node's certificate chains to. All three or none; reloaded when
	// they change.
	ClusterTLSCertFile, ClusterTLSKeyFile, ClusterTLSCAFile string
	// ClusterTLSPermissive, with the cluster TLS files, also accepts plain
	// node-to-node connections and dials plain nodes in plain TCP: for the
	// rolling restarts that turn node-to-node TLS on or off.
	ClusterTLSPermissive bool
	// SnapshotRate caps how fast this node streams a Raft group's snapshot to
	// a replica that needs one, bytes per second; 0 is unlimited.
	SnapshotRate int32

	// KeyCacheBytes bounds the memory of the store's key cache; 0 disables it.
	KeyCacheBytes int64
	// IdleCompaction is how long the store goes without a write before it
	// compacts its shards' L0 away; 0 never does.
	IdleCompaction time.Duration
	// ProducerIDExpiration is how long an idempotent producer's state is kept
	// after its last batch (Kafka's producer.id.expiration.ms).
	ProducerIDExpiration time.Duration

	// Listeners are the Kafka listeners, "NAME://host:port,..." (Kafka's
	// listeners); empty means one PLAINTEXT listener at KafkaAddr.
	Listeners string
	// AdvertisedListeners are their advertised addresses, same shape; a
	// listener not named advertises its bound address.
	AdvertisedListeners string
	// ListenerProtocolMap maps listener names to security protocols
	// (listener.security.protocol.map).
	ListenerProtocolMap string
	// TLSCertFile, TLSKeyFile and TLSCAFile are the PEM files of SSL and
	// SASL_SSL listeners and of the HTTP server with HTTPTLS; reloaded when
	// they change.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// TLSClientAuth is none, requested or required (ssl.client.auth).
	TLSClientAuth string
	// HTTPTLS serves the HTTP port over TLS.
	HTTPTLS bool
	// HTTPTokensFile holds the SHA-256 hashes of the HTTP API's bearer tokens
	// and their principals (httpapi/auth_tokens.go); reloaded when it
	// changes. Setting it turns HTTP authentication on.
	HTTPTokensFile string
	// HTTPClientCAFile holds the CA certificates HTTP client certificates
	// must chain to (asked for, not required); a verified certificate is the
	// principal User:<CN>. Needs HTTPTLS; turns HTTP authentication on.
	HTTPClientCAFile string
	// HTTPOpenProbes keeps /metrics, /healthz and /readyz open to anyone
	// when HTTP authentication is on.
	HTTPOpenProbes bool
	// SASLHandshakeTimeout bounds a new connection's TLS handshake and SASL
	// authentication.
	SASLHandshakeTimeout time.Duration
	// SASLSessionLifetime is connections.max.reauth.ms (KIP-368); 0 is off.
	SASLSessionLifetime time.Duration
	// SASLBootstrapUser gets SCRAM credentials on first start, with the
	// password from SHARDCACHE_SASL_BOOTSTRAP_PASSWORD (read by start, and
	// checked to be set by parseConfig; never a flag or a Config field, so
	// it is in no process list or log).
	SASLBootstrapUser string
	// SuperUsers are principals allowed everything, "User:a;User:b"
	// (Kafka's super.users).
	SuperUsers string
	// AllowEveryoneIfNoACLFound is allow.everyone.if.no.acl.found; nil
	// means true unless a listener authenticates clients (allowEveryone).
	AllowEveryoneIfNoACLFound *bool
}

// defaultConfig is the configuration of shardcache started with no flags: a
// one-node cluster with data in ./data.
func defaultConfig() Config {
	return Config{
		DataDir:              "./data",
		KafkaAddr:            "127.0.0.1:9092",
		HTTPAddr:             "127.0.0.1:9644",
		HTTPOpenProbes:       true,
		NodeID:               1,
		DefaultPartitions:    1,
		DefaultCleanupPolicy: "compact",
		AutoCreateTopics:     true,
		MaxRequestBytes:      broker.DefaultMaxRequestBytes,
		MaxDecompressedBytes: broker.DefaultMaxDecompressedBytes,
		MaxInflightBytes:     broker.DefaultMaxInflightBytes,
		MaxConnections:       broker.DefaultMaxConnections,
		ConnectionsMaxIdle:   broker.DefaultConnectionsMaxIdle,
		RequestReadTimeout:   broker.DefaultRequestReadTimeout,
		WriteTimeout:         broker.DefaultWriteTimeout,
		RaftGroups:           4,
		CompactionInterval:   10 * time.Second,
		ShutdownTimeout:      10 * time.Second,
		LogLevel:             slog.LevelInfo,
		LogFormat:            "text",

		GroupMinSessionTimeout:     6 * time.Second,
		GroupMaxSessionTimeout:     30 * time.Minute,
		GroupInitialRebalanceDelay: 3 * time.Second,
		GroupMaxSize:               math.MaxInt32,
		OffsetsRetention:           7 * 24 * time.Hour,
		OffsetsTopicPartitions:     50,
		TransactionMaxTimeout:      broker.DefaultTxnConfig().MaxTimeout,
		TransactionalIDExpiration:  broker.DefaultTxnConfig().IDExpiration,
		TransactionVerification:    broker.DefaultTxnConfig().VerifyPartitions,

		FetchSessionCacheSlots: broker.DefaultFetchSessionCacheSlots,

		ClusterAddr:          "127.0.0.1:9093",
		ReplicationFactor:    3,
		RaftHeartbeatTimeout: time.Second,
		RaftElectionTimeout:  time.Second,
		SnapshotRate:         256 * mib,

		KeyCacheBytes:        shardstore.DefaultKeyCacheBytes,
		IdleCompaction:       shardstore.DefaultIdleCompaction,
		ProducerIDExpiration: compaction.DefaultProducerIDExpiration,

		ListenerProtocolMap:  defaultProtocolMap,
		TLSClientAuth:        "none",
		SASLHandshakeTimeout: broker.DefaultAuthenticationTimeout,
	}
}

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet binds every flag to a field of c, which holds the defaults.
func newFlagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("shardcache", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the shard store and Raft metadata")
	fs.StringVar(&c.RaftLogDir, "raft-log-dir", c.RaftLogDir, "directory of the Raft log store, which every write is synced to (default: raft/log in --data-dir); a disk of its own keeps its syncs apart from the shard store's flushes")
	fs.StringVar(&c.KafkaAddr, "kafka-addr", c.KafkaAddr, "host:port the Kafka listener binds (port 0 picks one)")
	fs.StringVar(&c.AdvertisedKafkaAddr, "advertised-kafka-addr", c.AdvertisedKafkaAddr, "host:port clients are told to connect to (default: the bound Kafka address)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "host:port of the HTTP server: /metrics, /healthz, /readyz")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve Go runtime profiles (net/http/pprof) under /debug/pprof/ on the HTTP port")
	fs.Var((*int32Value)(&c.NodeID), "node-id", "this node's id, also its Kafka broker id")
	fs.Var((*int32Value)(&c.DefaultPartitions), "default-partitions", "partition count of auto-created topics")
	fs.Var(&choiceValue{p: &c.DefaultCleanupPolicy, choices: []string{"compact", "delete"}}, "default-cleanup-policy", "cleanup.policy of topics that do not set one: compact or delete")
	fs.BoolVar(&c.AutoCreateTopics, "auto-create-topics", c.AutoCreateTopics, "create unknown topics on Metadata and Produce")
	fs.Var((*bytesValue)(&c.MaxRequestBytes), "max-request-bytes", "largest Kafka request frame (bytes; KiB, MiB, GiB suffixes allowed)")
	fs.Var((*bytesValue)(&c.MaxDecompressedBytes), "max-decompressed-bytes", "largest record batch after decompression (bytes; KiB, MiB, GiB suffixes allowed)")
	fs.Var((*bytes64Value)(&c.MaxInflightBytes), "max-inflight-bytes", "memory budget of requests in flight: frames, decoded batches, responses (bytes; KiB, MiB, GiB suffixes allowed)")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "most open Kafka client connections; more are closed as they are accepted")
	fs.IntVar(&c.FetchSessionCacheSlots, "fetch-session-cache-slots", c.FetchSessionCacheSlots, "most open fetch sessions (KIP-227); 0 disables them")
	fs.DurationVar(&c.ConnectionsMaxIdle, "connections-max-idle", c.ConnectionsMaxIdle, "close a Kafka connection with no request in flight that has sent nothing for this long")
	fs.DurationVar(&c.RequestReadTimeout, "request-read-timeout", c.RequestReadTimeout, "close a Kafka connection whose request takes longer than this to arrive")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "close a Kafka connection whose client leaves a response unread this long")
	fs.IntVar(&c.RaftGroups, "raft-groups", c.RaftGroups, "number of Raft groups that carry partitions")
	fs.DurationVar(&c.CompactionInterval, "compaction-interval", c.CompactionInterval, "how often tombstone expiry and retention run")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long shutdown waits for in-flight requests")
	fs.Var((*levelValue)(&c.LogLevel), "log-level", "lowest level logged: debug, info, warn or error")
	fs.Var(&choiceValue{p: &c.LogFormat, choices: []string{"text", "json"}}, "log-format", "log line format: text or json")
	fs.DurationVar(&c.GroupMinSessionTimeout, "group-min-session-timeout", c.GroupMinSessionTimeout, "smallest session timeout a consumer group member may ask for")
	fs.DurationVar(&c.GroupMaxSessionTimeout, "group-max-session-timeout", c.GroupMaxSessionTimeout, "largest session timeout a consumer group member may ask for")
	fs.DurationVar(&c.GroupInitialRebalanceDelay, "group-initial-rebalance-delay", c.GroupInitialRebalanceDelay, "how long the first rebalance of an empty group waits for more members (0: none)")
	fs.Var((*int32Value)(&c.GroupMaxSize), "group-max-size", "most members one consumer group may have")
	fs.DurationVar(&c.OffsetsRetention, "offsets-retention", c.OffsetsRetention, "how long committed offsets of a group without members are kept")
	fs.Var((*int32Value)(&c.OffsetsTopicPartitions), "offsets-topic-partitions", "partitions of __consumer_offsets when it is created (1 to 1000)")
	fs.DurationVar(&c.TransactionMaxTimeout, "transaction-max-timeout", c.TransactionMaxTimeout, "largest transaction timeout a producer may ask for (transaction.max.timeout.ms)")
	fs.DurationVar(&c.TransactionalIDExpiration, "transactional-id-expiration", c.TransactionalIDExpiration, "how long a transactional id without transactions is remembered (transactional.id.expiration.ms)")
	fs.BoolVar(&c.TransactionVerification, "transaction-partition-verification", c.TransactionVerification, "refuse a transactional batch for a partition not added to the producer's transaction (transaction.partition.verification.enable)")
	fs.StringVar(&c.ClusterAddr, "cluster-addr", c.ClusterAddr, "host:port the node-to-node listener binds (port 0 picks one)")
	fs.StringVar(&c.AdvertisedClusterAddr, "advertised-cluster-addr", c.AdvertisedClusterAddr, "host:port other nodes dial (default: the bound cluster address)")
	fs.Var((*listValue)(&c.Join), "join", "cluster addresses of existing nodes, comma-separated: an empty data dir joins their cluster")
	fs.StringVar(&c.Rack, "rack", c.Rack, "this node's rack, for follower fetch (client.rack)")
	fs.IntVar(&c.ReplicationFactor, "replication-factor", c.ReplicationFactor, "replicas per data group (capped by the number of nodes), chosen when the cluster is bootstrapped")
	fs.Var((*peerAddrsValue)(&c.PeerAddrs), "cluster-peer-addrs", "id=host:port,... addresses this node dials for other nodes instead of their advertised ones (NAT, test proxies)")
	fs.StringVar(&c.ClusterTLSCertFile, "cluster-tls-cert-file", c.ClusterTLSCertFile, "PEM certificate chain of this node on the node-to-node port (TLS with mutual authentication; server and client usage); reloaded when it changes")
	fs.StringVar(&c.ClusterTLSKeyFile, "cluster-tls-key-file", c.ClusterTLSKeyFile, "PEM private key of --cluster-tls-cert-file")
	fs.BoolVar(&c.ClusterTLSPermissive, "cluster-tls-permissive", c.ClusterTLSPermissive, "with --cluster-tls-*: also talk to nodes without TLS, unauthenticated (only while turning node-to-node TLS on or off with rolling restarts)")
	fs.StringVar(&c.ClusterTLSCAFile, "cluster-tls-ca-file", c.ClusterTLSCAFile, "PEM CA certificates every node's certificate must chain to, both ways")
	fs.DurationVar(&c.RaftHeartbeatTimeout, "raft-heartbeat-timeout", c.RaftHeartbeatTimeout, "Raft heartbeat timeout: a follower that hears nothing for this long calls an election")
	fs.DurationVar(&c.RaftElectionTimeout, "raft-election-timeout", c.RaftElectionTimeout, "Raft election timeout")
	fs.Var((*bytesValue)(&c.SnapshotRate), "snapshot-rate", "how fast a snapshot is streamed to a replica that needs one, bytes per second (KiB, MiB, GiB suffixes; 0: unlimited)")
	fs.DurationVar(&c.IdleCompaction, "idle-compaction", c.IdleCompaction, "after this long without a write, compact the shards' newest tables into the levels below when those hold at most four times as much, so the data dir comes down to the live records (0: never)")
	fs.DurationVar(&c.ProducerIDExpiration, "producer-id-expiration", c.ProducerIDExpiration, "how long an idempotent producer's state is kept after its last batch (producer.id.expiration.ms)")
	fs.Var((*bytes64Value)(&c.KeyCacheBytes), "key-cache-bytes", "memory of the in-memory key cache in front of the key index, all shards together (KiB, MiB, GiB suffixes; 0: no cache); the key filters of shards with more keys take up to half of it again")
	fs.StringVar(&c.Listeners, "listeners", c.Listeners, "Kafka listeners, NAME://host:port,... (default: one PLAINTEXT listener at --kafka-addr)")
	fs.StringVar(&c.AdvertisedListeners, "advertised-listeners", c.AdvertisedListeners, "advertised addresses of --listeners, NAME://host:port,... (default: the bound addresses)")
	fs.StringVar(&c.ListenerProtocolMap, "listener-security-protocol-map", c.ListenerProtocolMap, "NAME:PROTOCOL,... security protocol of each listener: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "PEM certificate chain of SSL and SASL_SSL listeners (and of HTTP with --http-tls); reloaded when it changes")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "PEM private key of --tls-cert-file")
	fs.StringVar(&c.TLSCAFile, "tls-ca-file", c.TLSCAFile, "PEM CA certificates that client certificates must chain to")
	fs.Var(&choiceValue{p: &c.TLSClientAuth, choices: []string{"none", "requested", "required"}}, "tls-client-auth", "client certificates: none, requested or required (principal User:<CN>)")
	fs.BoolVar(&c.HTTPTLS, "http-tls", c.HTTPTLS, "serve the HTTP port over TLS with --tls-cert-file")
	fs.StringVar(&c.HTTPTokensFile, "http-tokens-file", c.HTTPTokensFile, "file of sha256:<hex> User:<name> lines: the HTTP API's bearer tokens (hashed) and their principals; turns HTTP authentication on; reloaded when it changes")
	fs.StringVar(&c.HTTPClientCAFile, "http-client-ca-file", c.HTTPClientCAFile, "PEM CA certificates HTTP client certificates must chain to (principal User:<CN>); needs --http-tls; turns HTTP authentication on")
	fs.BoolVar(&c.HTTPOpenProbes, "http-open-probes", c.HTTPOpenProbes, "with HTTP authentication on, /metrics, /healthz and /readyz answer without credentials (false: they need a principal too)")
	fs.DurationVar(&c.SASLHandshakeTimeout, "sasl-handshake-timeout", c.SASLHandshakeTimeout, "close a new connection that has not finished its TLS handshake and SASL authentication in this time")
	fs.DurationVar(&c.SASLSessionLifetime, "sasl-session-lifetime", c.SASLSessionLifetime, "SASL sessions last this long before clients must re-authenticate (KIP-368; 0: for the connection's life)")
	fs.StringVar(&c.SASLBootstrapUser, "sasl-bootstrap-user", c.SASLBootstrapUser, "user given SCRAM credentials on first start, password from "+bootstrapPasswordEnv+"; a super user")
	fs.StringVar(&c.SuperUsers, "super-users", c.SuperUsers, "principals allowed everything whatever the ACLs say, \"User:a;User:b\" (super.users)")
	fs.Var(optBoolValue{&c.AllowEveryoneIfNoACLFound}, "allow-everyone-if-no-acl-found",
		"allow any client on a resource no ACL names (default: true while no listener authenticates clients, false once one is SASL_PLAINTEXT, SASL_SSL, or SSL with --tls-client-auth)")
	return fs
}

// errUsage wraps every configuration error; main exits 2 on it.
var errUsage = errors.New("invalid configuration")

// parseConfig builds the configuration from command-line arguments (without the
// program name) and environment variables read through lookupEnv. A flag given on
// the command line wins over its environment variable. It returns flag.ErrHelp
// for -h and --help, and errors wrapping errUsage that name the bad flag.
func parseConfig(args []string, lookupEnv func(string) (string, bool)) (Config, error) {
	c := defaultConfig()
	fs := newFlagSet(&c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		// The flag package writes "-name"; say "--name" like the rest.
		msg := strings.NewReplacer("flag -", "flag --", "for -", "for --", "defined: -", "defined: --").Replace(err.Error())
		return Config{}, fmt.Errorf("%w: %s", errUsage, msg)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if envErr != nil || onCommandLine[f.Name] {
			return
		}
		v, ok := lookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("%w: invalid value %q for flag --%s from %s: %v", errUsage, v, f.Name, envName(f.Name), err)
		}
	})
	if envErr != nil {
		return Config{}, envErr
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if pw, _ := lookupEnv(bootstrapPasswordEnv); c.SASLBootstrapUser != "" && pw == "" {
		return Config{}, fmt.Errorf("%w: flag --sasl-bootstrap-user: needs the password in %s", errUsage, bootstrapPasswordEnv)
	}
	return c, nil
}

// Validate checks ranges and formats, naming the flag of the first bad value.
func (c Config) Validate() error {
	bad := func(flagName, format string, args ...any) error {
		return fmt.Errorf("flag --%s: %s", flagName, fmt.Sprintf(format, args...))
	}
	if c.DataDir == "" {
		return bad("data-dir", "must not be empty")
	}
	if err := checkRaftLogDir(c.DataDir, c.RaftLogDir); err != nil {
		return bad("raft-log-dir", "%v", err)
	}
	if err := checkHostPort(c.KafkaAddr, true); err != nil {
		return bad("kafka-addr", "%v", err)
	}
	if c.AdvertisedKafkaAddr != "" {
		if err := checkHostPort(c.AdvertisedKafkaAddr, false); err != nil {
			return bad("advertised-kafka-addr", "%v", err)
		}
		if host, _, _ := net.SplitHostPort(c.AdvertisedKafkaAddr); host == "" {
			return bad("advertised-kafka-addr", "needs a host that clients can reach")
		}
	}
	if err := checkHostPort(c.HTTPAddr, true); err != nil {
		return bad("http-addr", "%v", err)
	}
	if c.NodeID < raftfsm.MinNodeID {
		return bad("node-id", "must be >= %d, got %d", raftfsm.MinNodeID, c.NodeID)
	}
	if c.DefaultPartitions < broker.MinDefaultPartitions || c.DefaultPartitions > raftfsm.MaxPartitions {
		return bad("default-partitions", "must be between %d and %d, got %d", broker.MinDefaultPartitions, raftfsm.MaxPartitions, c.DefaultPartitions)
	}
	if c.DefaultCleanupPolicy != "compact" && c.DefaultCleanupPolicy != "delete" {
		return bad("default-cleanup-policy", "must be compact or delete, got %q", c.DefaultCleanupPolicy)
	}
	if c.MaxRequestBytes < broker.MinMaxRequestBytes {
		return bad("max-request-bytes", "must be at least %s, got %d", formatBytes(broker.MinMaxRequestBytes), c.MaxRequestBytes)
	}
	if c.MaxDecompressedBytes < broker.MinMaxDecompressedBytes {
		return bad("max-decompressed-bytes", "must be at least %s, got %d", formatBytes(broker.MinMaxDecompressedBytes), c.MaxDecompressedBytes)
	}
	if c.MaxInflightBytes < 2*int64(c.MaxRequestBytes) {
		return bad("max-inflight-bytes", "must be at least twice --max-request-bytes (%d), got %d", 2*int64(c.MaxRequestBytes), c.MaxInflightBytes)
	}
	if c.MaxConnections < 1 {
		return bad("max-connections", "must be >= 1, got %d", c.MaxConnections)
	}
	if c.FetchSessionCacheSlots < 0 || c.FetchSessionCacheSlots > broker.MaxFetchSessionCacheSlots {
		return bad("fetch-session-cache-slots", "must be 0 to %d, got %d", broker.MaxFetchSessionCacheSlots, c.FetchSessionCacheSlots)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connections-max-idle", c.ConnectionsMaxIdle}, {"request-read-timeout", c.RequestReadTimeout}, {"write-timeout", c.WriteTimeout}} {
		if d.v < time.Millisecond {
			return bad(d.name, "must be at least 1ms, got %s", d.v)
		}
	}
	if c.RaftGroups < raftfsm.MinDataGroups || c.RaftGroups > raftfsm.MaxDataGroups {
		return bad("raft-groups", "must be between %d and %d, got %d", raftfsm.MinDataGroups, raftfsm.MaxDataGroups, c.RaftGroups)
	}
	if c.CompactionInterval < compaction.MinInterval {
		return bad("compaction-interval", "must be at least %s, got %s", compaction.MinInterval, c.CompactionInterval)
	}
	if c.ShutdownTimeout <= 0 {
		return bad("shutdown-timeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return bad("log-format", "must be text or json, got %q", c.LogFormat)
	}
	if c.GroupMinSessionTimeout < broker.MinGroupSessionTimeout || c.GroupMinSessionTimeout > broker.MaxGroupSessionTimeout {
		return bad("group-min-session-timeout", "must be between %s and %s, got %s", broker.MinGroupSessionTimeout, broker.MaxGroupSessionTimeout, c.GroupMinSessionTimeout)
	}
	if c.GroupMaxSessionTimeout < c.GroupMinSessionTimeout || c.GroupMaxSessionTimeout > broker.MaxGroupSessionTimeout {
		return bad("group-max-session-timeout", "must be between --group-min-session-timeout (%s) and %s, got %s",
			c.GroupMinSessionTimeout, broker.MaxGroupSessionTimeout, c.GroupMaxSessionTimeout)
	}
	if c.GroupInitialRebalanceDelay < 0 || c.GroupInitialRebalanceDelay > broker.MaxGroupInitialRebalanceDelay {
		return bad("group-initial-rebalance-delay", "must be between 0 and %s, got %s", broker.MaxGroupInitialRebalanceDelay, c.GroupInitialRebalanceDelay)
	}
	if c.GroupMaxSize < broker.MinGroupMaxSize {
		return bad("group-max-size", "must be >= %d, got %d", broker.MinGroupMaxSize, c.GroupMaxSize)
	}
	if c.OffsetsRetention < broker.MinOffsetsRetention {
		return bad("offsets-retention", "must be at least %s, got %s", broker.MinOffsetsRetention, c.OffsetsRetention)
	}
	if c.OffsetsTopicPartitions < broker.MinOffsetsTopicPartitions || c.OffsetsTopicPartitions > broker.MaxOffsetsTopicPartitions {
		return bad("offsets-topic-partitions", "must be between %d and %d, got %d", broker.MinOffsetsTopicPartitions, broker.MaxOffsetsTopicPartitions, c.OffsetsTopicPartitions)
	}
	if c.TransactionMaxTimeout < broker.MinTxnMaxTimeout || c.TransactionMaxTimeout > broker.MaxTxnMaxTimeout {
		return bad("transaction-max-timeout", "must be between %s and %s, got %s", broker.MinTxnMaxTimeout, broker.MaxTxnMaxTimeout, c.TransactionMaxTimeout)
	}
	if c.TransactionalIDExpiration < broker.MinTxnIDExpiration || c.TransactionalIDExpiration > broker.MaxTxnIDExpiration {
		return bad("transactional-id-expiration", "must be between %s and %s, got %s", broker.MinTxnIDExpiration, broker.MaxTxnIDExpiration, c.TransactionalIDExpiration)
	}
	if err := checkHostPort(c.ClusterAddr, true); err != nil {
		return bad("cluster-addr", "%v", err)
	}
	if c.AdvertisedClusterAddr != "" {
		if err := checkHostPort(c.AdvertisedClusterAddr, false); err != nil {
			return bad("advertised-cluster-addr", "%v", err)
		}
		if host, _, _ := net.SplitHostPort(c.AdvertisedClusterAddr); host == "" {
			return bad("advertised-cluster-addr", "needs a host that other nodes can reach")
		}
	}
	for _, j := range c.Join {
		if err := checkHostPort(j, false); err != nil {
			return bad("join", "%v", err)
		}
	}
	if len(c.Rack) > 255 || strings.ContainsFunc(c.Rack, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("rack", "must be at most 255 printable characters")
	}
	if c.ReplicationFactor < raftfsm.MinReplicationFactor || c.ReplicationFactor > raftfsm.MaxReplicationFactor {
		return bad("replication-factor", "must be between %d and %d, got %d", raftfsm.MinReplicationFactor, raftfsm.MaxReplicationFactor, c.ReplicationFactor)
	}
	for id, a := range c.PeerAddrs {
		if err := checkHostPort(a, false); err != nil {
			return bad("cluster-peer-addrs", "node %d: %v", id, err)
		}
	}
	if c.SnapshotRate != 0 && c.SnapshotRate < raftfsm.MinSnapshotRateBytes {
		return bad("snapshot-rate", "must be 0 (unlimited) or at least %s, got %d", formatBytes(raftfsm.MinSnapshotRateBytes), c.SnapshotRate)
	}
	if c.RaftHeartbeatTimeout < raftfsm.MinRaftTimeout || c.RaftHeartbeatTimeout > raftfsm.MaxRaftTimeout {
		return bad("raft-heartbeat-timeout", "must be between %s and %s, got %s", raftfsm.MinRaftTimeout, raftfsm.MaxRaftTimeout, c.RaftHeartbeatTimeout)
	}
	if c.RaftElectionTimeout < c.RaftHeartbeatTimeout || c.RaftElectionTimeout > raftfsm.MaxRaftTimeout {
		return bad("raft-election-timeout", "must be between --raft-heartbeat-timeout (%s) and %s, got %s", c.RaftHeartbeatTimeout, raftfsm.MaxRaftTimeout, c.RaftElectionTimeout)
	}
	if c.KeyCacheBytes < 0 || c.KeyCacheBytes > shardstore.MaxKeyCacheBytes {
		return bad("key-cache-bytes", "must be between 0 (no cache) and %s, got %d", formatBytes(shardstore.MaxKeyCacheBytes), c.KeyCacheBytes)
	}
	if c.IdleCompaction < 0 || c.IdleCompaction > shardstore.MaxIdleCompaction {
		return bad("idle-compaction", "must be between 0s (never) and %s, got %s", shardstore.MaxIdleCompaction, c.IdleCompaction)
	}
	if c.ProducerIDExpiration < compaction.MinProducerIDExpiration || c.ProducerIDExpiration > compaction.MaxProducerIDExpiration {
		return bad("producer-id-expiration", "must be between %s and %s, got %s", compaction.MinProducerIDExpiration, compaction.MaxProducerIDExpiration, c.ProducerIDExpiration)
	}
	return c.validateSecurity()
}

// checkHostPort accepts host:port with a numeric port (0 only when zeroOK). An
// empty host means every interface.
func checkHostPort(addr string, zeroOK bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if n == 0 && !zeroOK {
		return fmt.Errorf("port must not be 0")
	}
	return nil
}

// usage writes the flag list with each flag's environment variable and default.
func usage(w io.Writer) {
	c := defaultConfig()
	fs := newFlagSet(&c)
	fmt.Fprintf(w, "Usage: shardcache [flags]\n\nshardcache is a Kafka-protocol broker whose partitions are key-compacted shards.\nEvery flag can also be set by the environment variable shown; a flag wins.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s\n      %s\n      env %s, default %s\n", f.Name, f.Usage, envName(f.Name), def)
	})
}

// int32Value is a flag.Value for an int32.
type int32Value int32

func (v *int32Value) String() string { return strconv.FormatInt(int64(*v), 10) }

func (v *int32Value) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return fmt.Errorf("want an integer from %d to %d", math.MinInt32, math.MaxInt32)
	}
	*v = int32Value(n)
	return nil
}

// bytesValue is a flag.Value for a byte count up to 2 GiB - 1, written as a
// plain number or with a KiB, MiB or GiB suffix ("64MiB").
type bytesValue int32

func (v *bytesValue) String() string { return formatBytes(int64(*v)) }

// formatBytes writes n with the largest suffix that divides it.
func formatBytes(n int64) string {
	switch {
	case n != 0 && n%gib == 0:
		return strconv.FormatInt(n/gib, 10) + "GiB"
	case n != 0 && n%mib == 0:
		return strconv.FormatInt(n/mib, 10) + "MiB"
	case n != 0 && n%kib == 0:
		return strconv.FormatInt(n/kib, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

func (v *bytesValue) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*v = bytesValue(n)
	return nil
}

// bytes64Value is a flag.Value for a byte count up to 1 TiB, written like a
// bytesValue.
type bytes64Value int64

func (v *bytes64Value) String() string { return formatBytes(int64(*v)) }

func (v *bytes64Value) Set(s string) error {
	n, err := parseByteCount(s, 1<<40)
	if err != nil {
		return err
	}
	*v = bytes64Value(n)
	return nil
}

// parseBytes parses a byte count such as "1048576", "512KiB" or "64MiB".
func parseBytes(s string) (int32, error) {
	n, err := parseByteCount(s, math.MaxInt32)
	return int32(n), err
}

// parseByteCount parses a byte count of at most limit bytes.
func parseByteCount(s string, limit int64) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", kib}, {"MiB", mib}, {"GiB", gib}, {"B", 1}} {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = t[:len(t)-len(u.suffix)], u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a byte count such as 1048576 or 64MiB")
	}
	if n > limit/mult {
		if limit == math.MaxInt32 {
			return 0, fmt.Errorf("must be below 2GiB")
		}
		return 0, fmt.Errorf("must be at most %s", (*bytes64Value)(&limit))
	}
	return n * mult, nil
}

// choiceValue is a flag.Value for one string out of a fixed set.
type choiceValue struct {
	p       *string
	choices []string
}

func (v *choiceValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(v.choices, ", "))
}

// optBoolValue is a boolean flag.Value that remembers whether it was set.
type optBoolValue struct{ p **bool }

func (v optBoolValue) IsBoolFlag() bool { return true }

func (v optBoolValue) String() string {
	if v.p == nil || *v.p == nil {
		return "auto"
	}
	return strconv.FormatBool(**v.p)
}

func (v optBoolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v.p = &b
	return nil
}

// listValue is a flag.Value for a comma-separated list; empty items are dropped.
type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }

func (v *listValue) Set(s string) error {
	*v = nil
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*v = append(*v, item)
		}
	}
	return nil
}

// peerAddrsValue is a flag.Value for "id=host:port,id=host:port".
type peerAddrsValue map[int32]string

func (v *peerAddrsValue) String() string {
	ids := make([]int, 0, len(*v))
	for id := range *v {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		parts = append(parts, strconv.Itoa(id)+"="+(*v)[int32(id)])
	}
	return strings.Join(parts, ",")
}

func (v *peerAddrsValue) Set(s string) error {
	m := map[int32]string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(item, "=")
		id, err := strconv.ParseInt(strings.TrimSpace(idStr), 10, 32)
		if !ok || err != nil || id < 0 {
			return fmt.Errorf("want id=host:port items, got %q", item)
		}
		m[int32(id)] = strings.TrimSpace(addr)
	}
	*v = m
	return nil
}

// levelValue is a flag.Value for a slog level name.
type levelValue slog.Level

func (v *levelValue) String() string { return strings.ToLower(slog.Level(*v).String()) }

func (v *levelValue) Set(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("want debug, info, warn or error")
	}
	*v = levelValue(l)
	return nil
}

// checkRaftLogDir refuses a Raft log directory that would share files with
// the shard store or the Raft groups' snapshot metadata: the data dir itself,
// the store's directory, a directory inside it or one that contains it, and
// raft/ or a directory inside it other than the default raft/log.
func checkRaftLogDir(dataDir, raftLogDir string) error {
	if raftLogDir == "" {
		return nil
	}
	data, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	logDir, err := filepath.Abs(raftLogDir)
	if err != nil {
		return err
	}
	store, raft := filepath.Join(data, storeDirName), filepath.Join(data, raftDirName)
	switch {
	case logDir == data:
		return fmt.Errorf("%s is the data dir; name a directory of its own", raftLogDir)
	case within(logDir, store) || within(store, logDir):
		return fmt.Errorf("%s overlaps the shard store in %s", raftLogDir, store)
	case within(logDir, raft) && logDir != filepath.Join(raft, raftLogDirName):
		return fmt.Errorf("%s is in %s, beside the Raft groups' snapshot metadata (the default %s is the one place there)",
			raftLogDir, raft, filepath.Join(raft, raftLogDirName))
	}
	return nil
}

// within reports whether path is dir or inside it (both absolute and clean).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
