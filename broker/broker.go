package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// Config configures a Broker. Only cmd/ fills it from flags.
type Config struct {
	// AdvertisedAddr is the host:port clients are told to connect to (Metadata).
	AdvertisedAddr string
	// MaxRequestBytes caps one request frame (Kafka's socket.request.max.bytes).
	MaxRequestBytes int32
	// MaxDecompressedBytes caps one record batch after decompression; a larger
	// batch is refused (a decompression bomb is an error, not an OOM).
	MaxDecompressedBytes int32
	// MaxInflightBytes is the memory budget of requests in flight, shared by
	// every connection (budget.go): frames being read and served with their
	// decoded form, record batches being decompressed, decoded and written,
	// fetch responses being built and responses waiting to be written. When
	// it is full, connections stop being read (TCP pushes back on clients).
	// Reading requests may use the larger of MaxRequestBytes and a quarter
	// of it; the rest is kept for work on requests already read, and a
	// single batch or response may use at most that rest. It must be at least
	// twice MaxRequestBytes. 0 means DefaultMaxInflightBytes.
	MaxInflightBytes int64
	// MaxConnections caps open client connections; connections beyond it are
	// closed as they are accepted. 0 means DefaultMaxConnections.
	MaxConnections int
	// ConnectionsMaxIdle closes a connection that has had no request in
	// flight and sent nothing for this long (Kafka's connections.max.idle.ms).
	// 0 means DefaultConnectionsMaxIdle.
	ConnectionsMaxIdle time.Duration
	// RequestReadTimeout closes a connection whose request has not arrived in
	// full this long after its first bytes (a client trickling a frame holds
	// the memory it has sent). 0 means DefaultRequestReadTimeout.
	RequestReadTimeout time.Duration
	// WriteTimeout closes a connection whose client has not taken a response
	// this long after it was ready, releasing the response's memory. 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// AutoCreateTopics creates unknown topics on Metadata (when the request allows
	// it) and on Produce, with DefaultPartitions partitions.
	AutoCreateTopics  bool
	DefaultPartitions int32
	// TopicDefaults are the broker-level topic config defaults, the same map
	// given to raftfsm as BrokerTopicDefaults (for example cleanup.policy).
	// DescribeConfigs uses it to report STATIC_BROKER_CONFIG sources and the
	// broker's log.cleanup.policy; nil means the built-in defaults.
	TopicDefaults map[string]string
	// Node is the Raft layer (writes, topics); Store is read directly for fetches.
	Node  *raftfsm.Node
	Store *shardstore.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the broker's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Groups configures the consumer group coordinator; the zero value means
	// DefaultGroupConfig().
	Groups GroupConfig
	// Transactions configures the transaction coordinator; the zero value
	// means DefaultTxnConfig().
	Transactions TxnConfig
	// Now is the transaction coordinator's clock (timeouts, id expiry); nil
	// means time.Now.
	Now func() time.Time
	// FetchSessionCacheSlots caps the open fetch sessions (KIP-227; Kafka's
	// max.incremental.fetch.session.cache.slots), 0 to
	// MaxFetchSessionCacheSlots; 0 disables sessions (clients then send full
	// fetches).
	FetchSessionCacheSlots int
	// LogDir is the node's data directory, the one log dir DescribeLogDirs
	// reports ("" reports it as "data").
	LogDir string
	// AuthenticationTimeout bounds a new connection's TLS handshake and, on
	// SASL listeners, its SASL authentication (security.go). 0 means
	// DefaultAuthenticationTimeout.
	AuthenticationTimeout time.Duration
	// SASLSessionLifetime is how long a SASL authentication holds before the
	// client must authenticate again (KIP-368, Kafka's
	// connections.max.reauth.ms); 0 means for the connection's life.
	SASLSessionLifetime time.Duration
	// SuperUsers are principals ("User:admin") allowed everything whatever
	// the ACLs say (Kafka's super.users).
	SuperUsers []string
	// AllowEveryoneIfNoACLFound allows any principal on a resource no ACL
	// binding applies to (Kafka's allow.everyone.if.no.acl.found); false
	// refuses it to all but SuperUsers. DefaultConfig sets it, so a broker
	// without ACLs stays open; cmd/shardcache clears it by default once a
	// listener authenticates clients (authorizer.go).
	AllowEveryoneIfNoACLFound bool

	// hooks lets this package's tests stall the coordinator's I/O.
	hooks *coordinatorHooks
}

// Defaults used by DefaultConfig.
const (
	// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default (100 MiB).
	DefaultMaxRequestBytes = 100 << 20
	// DefaultMaxDecompressedBytes bounds one decompressed record batch (16
	// MiB, 16 times Kafka's default max.message.bytes); cmd/shardcache's
	// --max-decompressed-bytes defaults to it. Decoding and writing a batch
	// that size takes about 150 MiB (batch_memory.go), which the default
	// memory budget's work share holds.
	DefaultMaxDecompressedBytes = 16 << 20
	// DefaultMaxInflightBytes is the memory budget of requests in flight (256 MiB).
	DefaultMaxInflightBytes = 256 << 20
	// DefaultMaxConnections caps open client connections.
	DefaultMaxConnections = 10000
	// DefaultConnectionsMaxIdle is Kafka's connections.max.idle.ms default (10 minutes).
	DefaultConnectionsMaxIdle = 10 * time.Minute
	// DefaultRequestReadTimeout bounds how long one request may take to
	// arrive; clients give up on a request after 30 s by default
	// (request.timeout.ms), transfer included.
	DefaultRequestReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds how long a client may leave a response unread.
	DefaultWriteTimeout = 30 * time.Second
)

// Bounds of Config fields, checked by Validate. cmd/shardcache checks its flags
// against the same constants.
const (
	// MinMaxRequestBytes bounds MaxRequestBytes from below: a request header
	// alone takes 10 bytes, and anything below a few KiB would refuse
	// ordinary metadata requests.
	MinMaxRequestBytes = 4 << 10
	// MinMaxDecompressedBytes bounds MaxDecompressedBytes from below.
	MinMaxDecompressedBytes = 4 << 10
	// MinDefaultPartitions and raftfsm.MaxPartitions bound DefaultPartitions.
	MinDefaultPartitions = 1
	// MaxFetchSessionCacheSlots bounds FetchSessionCacheSlots: each session
	// holds about 100 bytes per partition, and a slot is taken only by a
	// client that fetches.
	MaxFetchSessionCacheSlots = 100000
)

// DefaultConfig returns the configuration of a one-node broker on
// 127.0.0.1:9092 that auto-creates topics with one partition. Node and Store
// must still be set.
func DefaultConfig() Config {
	return Config{
		AdvertisedAddr:       "127.0.0.1:9092",
		MaxRequestBytes:      DefaultMaxRequestBytes,
		MaxDecompressedBytes: DefaultMaxDecompressedBytes,
		MaxInflightBytes:     DefaultMaxInflightBytes,
		MaxConnections:       DefaultMaxConnections,
		ConnectionsMaxIdle:   DefaultConnectionsMaxIdle,
		RequestReadTimeout:   DefaultRequestReadTimeout,
		WriteTimeout:         DefaultWriteTimeout,
		AutoCreateTopics:     true,
		DefaultPartitions:    1,
		Groups:               DefaultGroupConfig(),
		Transactions:         DefaultTxnConfig(),

		AllowEveryoneIfNoACLFound: true,

		FetchSessionCacheSlots: DefaultFetchSessionCacheSlots,
	}
}

// Validate checks the configuration, naming the first bad field.
func (c Config) Validate() error {
	host, port, err := net.SplitHostPort(c.AdvertisedAddr)
	if err != nil || host == "" {
		return fmt.Errorf("broker: AdvertisedAddr %q is not host:port", c.AdvertisedAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("broker: AdvertisedAddr %q has a bad port", c.AdvertisedAddr)
	}
	if c.MaxRequestBytes < MinMaxRequestBytes {
		return fmt.Errorf("broker: MaxRequestBytes %d is below %d", c.MaxRequestBytes, MinMaxRequestBytes)
	}
	if c.MaxDecompressedBytes < MinMaxDecompressedBytes {
		return fmt.Errorf("broker: MaxDecompressedBytes %d is below %d", c.MaxDecompressedBytes, MinMaxDecompressedBytes)
	}
	c = c.withDefaults()
	if c.MaxInflightBytes < 2*int64(c.MaxRequestBytes) {
		return fmt.Errorf("broker: MaxInflightBytes %d is below twice MaxRequestBytes (%d): the largest request must fit with room to serve it",
			c.MaxInflightBytes, c.MaxRequestBytes)
	}
	if c.FetchSessionCacheSlots < 0 || c.FetchSessionCacheSlots > MaxFetchSessionCacheSlots {
		return fmt.Errorf("broker: FetchSessionCacheSlots %d is not 0 to %d", c.FetchSessionCacheSlots, MaxFetchSessionCacheSlots)
	}
	if c.MaxConnections < 1 {
		return fmt.Errorf("broker: MaxConnections %d is below 1", c.MaxConnections)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ConnectionsMaxIdle", c.ConnectionsMaxIdle}, {"RequestReadTimeout", c.RequestReadTimeout}, {"WriteTimeout", c.WriteTimeout}} {
		if d.v < time.Millisecond {
			return fmt.Errorf("broker: %s %s is below 1ms", d.name, d.v)
		}
	}
	if c.AuthenticationTimeout < MinAuthenticationTimeout || c.AuthenticationTimeout > MaxAuthenticationTimeout {
		return fmt.Errorf("broker: AuthenticationTimeout %s is not between %s and %s", c.AuthenticationTimeout, MinAuthenticationTimeout, MaxAuthenticationTimeout)
	}
	if c.SASLSessionLifetime != 0 && c.SASLSessionLifetime < MinSASLSessionLifetime {
		return fmt.Errorf("broker: SASLSessionLifetime %s is below %s (0 turns re-authentication off)", c.SASLSessionLifetime, MinSASLSessionLifetime)
	}
	if c.DefaultPartitions < MinDefaultPartitions || c.DefaultPartitions > raftfsm.MaxPartitions {
		return fmt.Errorf("broker: DefaultPartitions %d is not between %d and %d", c.DefaultPartitions, MinDefaultPartitions, raftfsm.MaxPartitions)
	}
	for _, p := range c.SuperUsers {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return fmt.Errorf("broker: super user %q is not TYPE:NAME", p)
		}
	}
	if c.Node == nil {
		return errors.New("broker: Node is nil")
	}
	if c.Store == nil {
		return errors.New("broker: Store is nil")
	}
	if c.Groups != (GroupConfig{}) {
		if err := c.Groups.Validate(); err != nil {
			return err
		}
	}
	if c.Transactions != (TxnConfig{}) {
		if err := c.Transactions.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// withDefaults fills the zero values that mean a default.
func (c Config) withDefaults() Config {
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.ConnectionsMaxIdle == 0 {
		c.ConnectionsMaxIdle = DefaultConnectionsMaxIdle
	}
	if c.RequestReadTimeout == 0 {
		c.RequestReadTimeout = DefaultRequestReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.AuthenticationTimeout == 0 {
		c.AuthenticationTimeout = DefaultAuthenticationTimeout
	}
	return c
}

// readLimit is how much of the memory budget reading requests may use: the
// larger of MaxRequestBytes and a quarter of it (budget.go).
func (c Config) readLimit() int64 {
	return max(c.MaxInflightBytes/4, int64(c.MaxRequestBytes))
}

// Broker serves the Kafka protocol.
//
// Lifecycle: New, then Serve on one or more listeners (each call blocks), then
// Close, which makes every Serve return nil. Goroutines: Serve's caller owns
// the accept loop; the broker owns one goroutine per connection (conn.serve)
// and that connection's reader, and Close waits for all of them.
type Broker struct {
	cfg     Config
	node    *raftfsm.Node
	store   *shardstore.Store
	log     *slog.Logger
	metrics *metrics
	budget  *budget

	// plaintext is the listener Serve serves: PLAINTEXT at AdvertisedAddr.
	plaintext *listener

	// baseCtx is the parent of every request's context; cancelBase ends it
	// when Close's drain deadline passes.
	baseCtx    context.Context
	cancelBase context.CancelFunc

	mu        sync.Mutex
	closed    bool
	closing   chan struct{} // closed when Close starts
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	connWG    sync.WaitGroup // one per conn.serve goroutine

	// refusedSinceLog counts connections refused at the cap since the last
	// Warn about it; lastRefusedLog is when that was (both under mu).
	refusedSinceLog int
	lastRefusedLog  time.Time

	fetchSessions *fetchSessions // KIP-227 session cache (fetch_sessions.go)

	closeOnce sync.Once
	closeDone chan struct{} // closed when Close has finished

	// groups is the consumer group coordinator (its loop goroutine is
	// stopped by Close); groupMetrics its collectors.
	groups       *coordinator
	groupMetrics *groupMetrics
	// txns is the transaction coordinator (stopped by Close).
	txns *txnCoordinator
	// authz decides requests against the ACLs (authorizer.go).
	authz *authorizer
}

// New builds a broker; it does not listen yet.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	plaintext, err := newListener(Listener{Name: string(ProtocolPlaintext), Protocol: ProtocolPlaintext, AdvertisedAddr: cfg.AdvertisedAddr})
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:        cfg,
		node:       cfg.Node,
		store:      cfg.Store,
		log:        log,
		metrics:    newMetrics(cfg.Registerer),
		plaintext:  plaintext,
		baseCtx:    ctx,
		cancelBase: cancel,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*conn]struct{}{},
		closing:    make(chan struct{}),
		closeDone:  make(chan struct{}),
	}
	if cfg.Groups == (GroupConfig{}) {
		cfg.Groups = DefaultGroupConfig()
		b.cfg.Groups = cfg.Groups
	}
	b.budget = newBudget(cfg.MaxInflightBytes, cfg.readLimit())
	b.budget.onChange = func(used int64) { b.metrics.inflightBytes.Set(float64(used)) }
	b.budget.onWait = func(c budgetClass) { b.metrics.budgetWaits.WithLabelValues(c.String()).Inc() }
	b.metrics.inflightLimit.Set(float64(cfg.MaxInflightBytes))
	b.groupMetrics = newGroupMetrics(b, cfg.Registerer)
	b.groups = newCoordinator(b, cfg.Groups)
	b.fetchSessions = newFetchSessions(cfg.FetchSessionCacheSlots, nil)
	b.fetchSessions.onChange = func(n int) { b.metrics.fetchSessions.Set(float64(n)) }
	if cfg.Transactions == (TxnConfig{}) {
		cfg.Transactions = DefaultTxnConfig()
		b.cfg.Transactions = cfg.Transactions
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	b.txns = newTxnCoordinator(b, cfg.Transactions, now)
	cfg.Node.SetBrokerRPC(b.serveNodeRPC)
	b.authz = newAuthorizer(cfg.SuperUsers, cfg.AllowEveryoneIfNoACLFound, cfg.Node.ACLs)
	return b, nil
}

// Serve accepts connections on ln as the PLAINTEXT listener at
// AdvertisedAddr until Close. It returns nil after Close, or the accept error
// that stopped it; either way ln is closed.
func (b *Broker) Serve(ln net.Listener) error {
	return b.serve(ln, b.plaintext)
}

// ServeListener is Serve for a named listener with its security protocol
// (security.go). A bad Listener is an error and ln is closed.
func (b *Broker) ServeListener(ln net.Listener, l Listener) error {
	lis, err := newListener(l)
	if err != nil {
		ln.Close()
		return err
	}
	return b.serve(ln, lis)
}

func (b *Broker) serve(ln net.Listener, lis *listener) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		ln.Close()
		return nil
	}
	b.listeners[ln] = struct{}{}
	b.mu.Unlock()
	b.log.Info("kafka listener started", logKeyAddr, ln.Addr().String(), logKeyListener, lis.Name, "protocol", lis.Protocol)

	defer func() {
		b.mu.Lock()
		delete(b.listeners, ln)
		b.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			b.mu.Lock()
			closed := b.closed
			b.mu.Unlock()
			if closed {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("broker: accept: %w", err)
			}
			// Transient (for example out of file descriptors): back off as
			// net/http does rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.log.Warn("accept failed", logKeyError, err)
			select {
			case <-time.After(backoff):
			case <-b.closing:
			}
			continue
		}
		backoff = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c := newConn(b, nc, lis)
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			nc.Close()
			return nil
		}
		if len(b.conns) >= b.cfg.MaxConnections {
			b.refuseConnection(nc)
			b.mu.Unlock()
			continue
		}
		b.conns[c] = struct{}{}
		b.connWG.Add(1)
		b.mu.Unlock()
		b.metrics.connections.Inc()
		b.metrics.connectionsOpen.Inc()
		go func() {
			defer b.connWG.Done()
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				b.metrics.connections.Dec()
			}()
			c.serve()
		}()
	}
}

// refuseLogInterval is the least time between two Warn lines about refused
// connections.
const refuseLogInterval = 10 * time.Second

// refuseConnection closes a connection accepted beyond MaxConnections, with a
// Warn at most every refuseLogInterval that says how many were refused.
// Called with b.mu held. The count and the Warn come before the close, so a
// client that sees its connection closed also sees it counted.
func (b *Broker) refuseConnection(nc net.Conn) {
	b.metrics.connectionsRefused.Inc()
	b.refusedSinceLog++
	if now := time.Now(); now.Sub(b.lastRefusedLog) >= refuseLogInterval {
		b.log.Warn("connection limit reached, closing new connections", logKeyMaxConnections, b.cfg.MaxConnections,
			logKeyRefused, b.refusedSinceLog, logKeyRemote, nc.RemoteAddr().String())
		b.refusedSinceLog, b.lastRefusedLog = 0, now
	}
	nc.Close()
}

// Close stops accepting connections, waits for in-flight requests until ctx ends,
// then closes every connection and waits for every connection goroutine.
// It returns ctx.Err() when the drain was cut short. Idempotent: later calls
// wait for the first one to finish and return nil.
func (b *Broker) Close(ctx context.Context) error {
	var err error
	b.closeOnce.Do(func() {
		defer close(b.closeDone)
		b.mu.Lock()
		b.closed = true
		close(b.closing)
		for ln := range b.listeners {
			ln.Close()
		}
		for c := range b.conns {
			c.stopReading()
		}
		b.mu.Unlock()

		drained := make(chan struct{})
		go func() {
			b.connWG.Wait()
			close(drained)
		}()
		select {
		case <-drained:
		case <-ctx.Done():
			err = ctx.Err()
			b.cancelBase()
			b.mu.Lock()
			for c := range b.conns {
				c.nc.Close()
			}
			b.mu.Unlock()
			<-drained
		}
		b.cancelBase()
		b.groups.close()
		b.txns.close()
		b.log.Info("kafka listener stopped")
	})
	<-b.closeDone
	return err
}
