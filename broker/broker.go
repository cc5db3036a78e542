package broker

// CONTRACT STUB (Config and the Broker fields are agreed; the broker-core
// implementer fills in New, Serve, Close and may add unexported fields).

import (
	"context"
	"log/slog"
	"net"

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
	// AutoCreateTopics creates unknown topics on Metadata (when the request allows
	// it) and on Produce, with DefaultPartitions partitions.
	AutoCreateTopics  bool
	DefaultPartitions int32
	// Node is the Raft layer (writes, topics); Store is read directly for fetches.
	Node  *raftfsm.Node
	Store *shardstore.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the broker's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Broker serves the Kafka protocol.
type Broker struct {
	cfg     Config
	node    *raftfsm.Node
	store   *shardstore.Store
	log     *slog.Logger
	metrics *metrics
}

// New builds a broker; it does not listen yet.
func New(cfg Config) (*Broker, error) { panic("unimplemented") }

// Serve accepts connections on ln until Close. It returns nil after Close.
func (b *Broker) Serve(ln net.Listener) error { panic("unimplemented") }

// Close stops accepting connections, waits for in-flight requests until ctx ends,
// then closes every connection. Idempotent.
func (b *Broker) Close(ctx context.Context) error { panic("unimplemented") }
