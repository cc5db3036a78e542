package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/internal/httpapi"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// Folders under --data-dir.
const (
	storeDirName   = "store" // the state Pebble DB (no WAL): shards, cluster metadata, applied indexes
	raftDirName    = "raft"  // Raft snapshot metadata (group-N) and the Raft log DB
	raftLogDirName = "log"   // in raftDirName: the Raft log Pebble DB (WAL, synced): Raft logs, node identity
)

// run starts a node, serves until ctx ends or a listener fails, then shuts the
// node down in order. A ctx that ends during startup is a clean stop, not an error.
// log is the root logger, without a node_id attribute.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := start(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("startup interrupted", logError, err)
			return nil
		}
		return err
	}
	err = s.wait(ctx)
	return errors.Join(err, s.shutdown())
}

// server is one running node. Fields are set in start order; shutdown closes
// whatever is set, in the reverse of the order clients depend on.
type server struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	// stopping turns /readyz to 503 as soon as shutdown begins.
	stopping atomic.Bool
	// ready is set once the node's groups are ready; /readyz reads it.
	ready atomic.Pointer[raftfsm.Node]
	// backend is set with ready; the HTTP data endpoints read it.
	backend atomic.Pointer[httpapi.Backend]
	// authz is the broker once it exists; the HTTP API authorizes through it.
	authz atomic.Pointer[broker.Broker]

	httpLn   net.Listener
	httpSrv  *http.Server
	httpDone chan error

	store     *shardstore.Store
	node      *raftfsm.Node
	clusterLn net.Listener // owned by node once raftfsm.Open succeeds

	// kafkaLns are the Kafka listeners (security.go), each served by the
	// broker once the node is ready; advertised is the first one's address.
	kafkaLns   []*kafkaListener
	advertised string
	broker     *broker.Broker
	brokerDone chan error
	serving    int // listeners whose Serve runs (each sends to brokerDone)

	compactionStop context.CancelFunc
	compactionDone chan error
}

// start opens every component and starts serving. The HTTP server starts first
// so that /healthz and /readyz answer while Raft replays its logs; the Kafka
// port is bound early (a busy port fails at once) but served only once every
// Raft group is ready. ctx bounds the startup only. On error everything already
// started is shut down.
func start(ctx context.Context, cfg Config, base *slog.Logger) (_ *server, err error) {
	log := base.With(logNodeID, cfg.NodeID)
	s := &server{cfg: cfg, log: log, reg: httpapi.NewRegistry()}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.shutdown())
		}
	}()
	startedAt := time.Now()
	log.Info("starting", logDataDir, cfg.DataDir)

	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, storeDirName), filepath.Join(cfg.DataDir, raftDirName)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}

	tlsCfg, err := s.loadTLS()
	if err != nil {
		return nil, err
	}
	clusterTLS, err := s.loadClusterTLS()
	if err != nil {
		return nil, err
	}

	httpAuth, err := s.loadHTTPAuth(tlsCfg)
	if err != nil {
		return nil, err
	}

	// HTTP: metrics and probes.
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	if httpAuth.tls != nil {
		s.httpLn = tls.NewListener(s.httpLn, httpAuth.tls)
	}
	s.httpSrv = &http.Server{
		Handler: httpapi.New(httpapi.Config{
			Gatherer:       s.reg,
			Registerer:     s.reg,
			Ready:          s.isReady,
			Backend:        s.backend.Load,
			Logger:         log.With(logComponent, "http"),
			Pprof:          cfg.Pprof,
			Tokens:         httpAuth.tokens,
			ClientCerts:    httpAuth.clientCerts,
			Authorizer:     httpapi.AuthorizerFunc(s.authorize),
			ProbesNeedAuth: !cfg.HTTPOpenProbes,
			PeerTLS:        httpAuth.peerTLS,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.With(logComponent, "http").Handler(), slog.LevelWarn),
	}
	s.httpDone = make(chan error, 1)
	go func() { s.httpDone <- s.httpSrv.Serve(s.httpLn) }()
	log.Info("http listening", logAddr, s.httpLn.Addr().String())

	// Storage, then Raft over it.
	sopts := storeOptions(cfg)
	sopts.Logger = log.With(logComponent, "shardstore")
	sopts.Registerer = s.reg
	sopts.LogDir = cfg.RaftLogDir
	if sopts.LogDir == "" {
		sopts.LogDir = filepath.Join(cfg.DataDir, raftDirName, raftLogDirName)
	}
	// A store with a cluster's data but no Raft log DB is refused before one
	// is created (a lost Raft log, or another --raft-log-dir).
	sopts.NewLogDir = raftfsm.CheckNewLogDB
	if s.store, err = shardstore.Open(filepath.Join(cfg.DataDir, storeDirName), sopts); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Kafka and node-to-node listeners: bind now, so a busy port fails before
	// the wait for Raft and the addresses can be registered with the cluster.
	specs, err := cfg.listenerSpecs()
	if err != nil {
		return nil, err
	}
	for _, spec := range specs {
		kl := &kafkaListener{spec: spec}
		if kl.ln, err = net.Listen("tcp", spec.addr); err != nil {
			return nil, fmt.Errorf("kafka listener %s: %w", spec.name, err)
		}
		s.kafkaLns = append(s.kafkaLns, kl)
		kl.l = broker.Listener{Name: spec.name, Protocol: spec.protocol, AdvertisedAddr: advertisedAddr(spec.advertised, kl.ln.Addr())}
		if spec.protocol.TLS() {
			kl.l.TLS = tlsCfg.ServerConfig()
		}
	}
	s.advertised = s.kafkaLns[0].l.AdvertisedAddr
	if s.clusterLn, err = net.Listen("tcp", cfg.ClusterAddr); err != nil {
		return nil, fmt.Errorf("cluster listener: %w", err)
	}
	clusterAddr := advertisedAddr(cfg.AdvertisedClusterAddr, s.clusterLn.Addr())
	log.Info("cluster listening", logAddr, s.clusterLn.Addr().String(), "advertised", clusterAddr)

	rc := raftConfig(cfg)
	rc.Store = s.store
	rc.Logger = base.With(logComponent, "raft") // raftfsm adds node_id itself
	rc.Registerer = s.reg
	rc.Listener = s.clusterLn
	rc.ClusterAddr = clusterAddr
	if clusterTLS != nil { // not a typed nil in the interface
		rc.ClusterTLS = clusterTLS
		rc.ClusterTLSPermissive = cfg.ClusterTLSPermissive
		log.Info("cluster tls on", "cert_file", cfg.ClusterTLSCertFile, "ca_file", cfg.ClusterTLSCAFile, "permissive", cfg.ClusterTLSPermissive)
	}
	rc.KafkaAddr = s.advertised
	rc.KafkaListeners = listenersValue(cfg, s.kafkaLns)
	rc.HTTPAddr = advertisedAddr("", s.httpLn.Addr())
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("raft config: %w", err)
	}
	if s.node, err = raftfsm.Open(rc); err != nil {
		return nil, fmt.Errorf("open raft (Raft log store in %s): %w", sopts.LogDir, err)
	}
	s.clusterLn = nil // the node's mux owns and closes it
	bc := brokerConfig(cfg)
	bc.AdvertisedAddr = s.advertised
	bc.Node, bc.Store = s.node, s.store
	bc.Logger = log.With(logComponent, "broker")
	bc.Registerer = s.reg
	if s.broker, err = broker.New(bc); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}

	if err := s.node.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("wait for raft groups: %w", err)
	}
	s.ready.Store(s.node)
	s.authz.Store(s.broker)
	s.backend.Store(&httpapi.Backend{Node: s.node, Store: s.store, Groups: s.broker.Groups})

	if err := s.startCompaction(); err != nil {
		return nil, err
	}

	if err := s.bootstrapUser(ctx); err != nil {
		return nil, err
	}

	s.brokerDone = make(chan error, len(s.kafkaLns))
	for _, kl := range s.kafkaLns {
		go func() { s.brokerDone <- s.broker.ServeListener(kl.ln, kl.l) }()
		s.serving++
		log.Info("kafka listening", logAddr, kl.ln.Addr().String(), "advertised", kl.l.AdvertisedAddr,
			"listener", kl.spec.name, "protocol", kl.spec.protocol)
	}
	log.Info("started", logElapsed, time.Since(startedAt).Round(time.Millisecond))
	return s, nil
}

// isReady is /readyz: every Raft group ready, and no shutdown under way.
func (s *server) isReady() bool {
	n := s.ready.Load()
	return n != nil && !s.stopping.Load() && n.Ready()
}

// wait blocks until ctx ends or a listener or the compaction loop fails.
func (s *server) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.brokerDone:
		s.serving--
		return fmt.Errorf("kafka listener stopped: %w", err)
	case err := <-s.httpDone:
		s.httpDone = nil
		return fmt.Errorf("http server stopped: %w", err)
	case err := <-s.compactionDone:
		s.compactionDone = nil
		return fmt.Errorf("compaction loop stopped: %w", err)
	case <-s.node.Failed():
		return fmt.Errorf("raft node failed: %w", s.node.Err())
	}
}

// shutdown stops the node in docs/ARCHITECTURE.md's order: stop accepting Kafka connections
// and drain in-flight requests (bounded by --shutdown-timeout), stop compaction,
// shut Raft down (handing off leadership), close Pebble, stop HTTP last. Each
// step runs even when an earlier one failed; the errors are joined.
func (s *server) shutdown() error {
	s.stopping.Store(true)
	began := time.Now()
	s.log.Info("shutting down")
	var errs []error
	step := func(name string, err error) {
		if err != nil {
			s.log.Warn("shutdown step failed", logComponent, name, logError, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}

	// Leaderships go first, while the Kafka port still answers: clients that
	// send to this node get NOT_LEADER_OR_FOLLOWER and move to the new leaders
	// at once, instead of finding the port closed while this node still leads
	// (Kafka's controlled shutdown does the same). Handing off after the
	// drain, the order docs/ARCHITECTURE.md once gave, stalls a cluster's
	// partitions for the drain's length.
	if s.node != nil {
		s.node.HandOffLeadership()
	}
	if s.broker != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		step("broker", s.broker.Close(ctx))
		cancel()
		for ; s.serving > 0; s.serving-- {
			step("broker serve", <-s.brokerDone)
		}
	}
	for _, kl := range s.kafkaLns {
		// broker.Close closed it if Serve ran; before that nobody else owns it.
		if err := kl.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			step("kafka listener", err)
		}
	}
	if s.compactionStop != nil {
		s.compactionStop()
		if s.compactionDone != nil {
			if err := <-s.compactionDone; !errors.Is(err, context.Canceled) {
				step("compaction", err)
			}
		}
	}
	if s.node != nil {
		step("raft", s.node.Close())
	}
	if s.clusterLn != nil {
		s.clusterLn.Close()
	}
	if s.store != nil {
		step("store", s.store.Close())
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		step("http", s.httpSrv.Shutdown(ctx))
		cancel()
		if s.httpDone != nil {
			if err := <-s.httpDone; !errors.Is(err, http.ErrServerClosed) {
				step("http serve", err)
			}
		}
	}
	s.log.Info("shutdown complete", logElapsed, time.Since(began).Round(time.Millisecond))
	return errors.Join(errs...)
}

// advertisedAddr is the address Metadata gives clients: the flag when set, else
// the bound listener address, with the host name in place of an unspecified host
// (0.0.0.0 or ::), which no client can connect to.
func advertisedAddr(flagValue string, bound net.Addr) string {
	if flagValue != "" {
		return flagValue
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// storeOptions, raftConfig and brokerConfig turn the flags into each
// package's configuration; start adds what exists only once it runs
// (listeners and addresses, the store, loggers, the metrics registry).
// TestFlagBounds checks that every value the flags accept, the packages accept.
func storeOptions(cfg Config) shardstore.Options {
	keyCache := cfg.KeyCacheBytes
	if keyCache == 0 {
		keyCache = -1 // the flag's 0 disables the cache; the option's 0 is the default
	}
	return shardstore.Options{KeyCacheBytes: keyCache, IdleCompaction: cfg.IdleCompaction}
}

func raftConfig(cfg Config) raftfsm.Config {
	rc := raftfsm.DefaultConfig()
	rc.NodeID = cfg.NodeID
	rc.Dir = filepath.Join(cfg.DataDir, raftDirName)
	rc.DataGroups = cfg.RaftGroups
	rc.BrokerTopicDefaults = map[string]string{topicconfig.CleanupPolicy: cfg.DefaultCleanupPolicy}
	rc.ReplicationFactor = cfg.ReplicationFactor
	rc.Rack = cfg.Rack
	rc.Join = cfg.Join
	rc.PeerAddrs = cfg.PeerAddrs
	rc.HeartbeatTimeout = cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = cfg.RaftHeartbeatTimeout / 2
	rc.SnapshotRateBytes = int64(cfg.SnapshotRate)
	return rc
}

func brokerConfig(cfg Config) broker.Config {
	return broker.Config{
		MaxRequestBytes:      cfg.MaxRequestBytes,
		MaxDecompressedBytes: cfg.MaxDecompressedBytes,
		MaxInflightBytes:     cfg.MaxInflightBytes,
		MaxConnections:       cfg.MaxConnections,
		ConnectionsMaxIdle:   cfg.ConnectionsMaxIdle,
		RequestReadTimeout:   cfg.RequestReadTimeout,
		WriteTimeout:         cfg.WriteTimeout,
		AutoCreateTopics:     cfg.AutoCreateTopics,
		DefaultPartitions:    cfg.DefaultPartitions,
		TopicDefaults:        map[string]string{topicconfig.CleanupPolicy: cfg.DefaultCleanupPolicy},
		Groups:               groupConfig(cfg),
		Transactions:         txnConfig(cfg),
		LogDir:               absDir(cfg.DataDir),

		FetchSessionCacheSlots: cfg.FetchSessionCacheSlots,

		AuthenticationTimeout: cfg.SASLHandshakeTimeout,
		SASLSessionLifetime:   cfg.SASLSessionLifetime,

		SuperUsers:                superUsers(cfg),
		AllowEveryoneIfNoACLFound: cfg.allowEveryone(),
	}
}

// txnConfig is the transaction coordinator's configuration from the flags.
func txnConfig(cfg Config) broker.TxnConfig {
	t := broker.DefaultTxnConfig()
	t.MaxTimeout = cfg.TransactionMaxTimeout
	t.IDExpiration = cfg.TransactionalIDExpiration
	t.VerifyPartitions = cfg.TransactionVerification
	return t
}

// absDir is dir made absolute, or dir itself when that fails.
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// groupConfig is the consumer group coordinator's configuration from the
// flags; __consumer_offsets is created as soon as the node is ready.
func groupConfig(cfg Config) broker.GroupConfig {
	g := broker.DefaultGroupConfig()
	g.MinSessionTimeout = cfg.GroupMinSessionTimeout
	g.MaxSessionTimeout = cfg.GroupMaxSessionTimeout
	g.InitialRebalanceDelay = cfg.GroupInitialRebalanceDelay
	g.MaxSize = cfg.GroupMaxSize
	g.OffsetsRetention = cfg.OffsetsRetention
	g.OffsetsTopicPartitions = cfg.OffsetsTopicPartitions
	g.CreateOffsetsTopic = true
	return g
}
