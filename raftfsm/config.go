package raftfsm

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// Config configures a Node. Only cmd/ fills it from flags.
type Config struct {
	// NodeID is this node's id (the Kafka broker id).
	NodeID int32
	// Dir holds Raft's snapshots: tiny logical markers, group snapshots
	// received from a leader, and the scratch tables of their ingest (so it
	// should be on the store's device, where Pebble links them).
	Dir string
	// Store is the node's shard store; its Pebble DB also holds the Raft logs.
	Store *shardstore.Store
	// DataGroups is the number of Raft groups in the pool that carries partitions.
	// Cluster metadata has a group of its own beside them. Only the node that
	// bootstraps a cluster uses it: the cluster keeps the number it chose.
	DataGroups int
	// ReplicationFactor is how many nodes carry each data group (capped by the
	// number of nodes). Like DataGroups, chosen once at bootstrap.
	ReplicationFactor int

	// Listener is the node-to-node listener (every Raft group and the control
	// RPCs share it); nil runs a one-node cluster on an in-memory transport.
	Listener net.Listener
	// ClusterAddr is the address other nodes dial to reach Listener
	// (--advertised-cluster-addr). Required with Listener.
	ClusterAddr string
	// ClusterTLS, when set, runs every node-to-node connection over TLS with
	// mutual authentication (transport_tls.go); nil is plain TCP. Needs a
	// Listener.
	ClusterTLS ClusterTLS
	// ClusterTLSPermissive, with ClusterTLS, also talks to plain nodes, for
	// the rolling restarts that turn TLS on or off (MuxConfig.TLSPermissive).
	ClusterTLSPermissive bool
	// KafkaAddr and HTTPAddr are this node's advertised Kafka and HTTP
	// addresses, registered in cluster metadata for Metadata responses and
	// for redirects.
	KafkaAddr string
	HTTPAddr  string
	// KafkaListeners are this node's advertised Kafka listeners as
	// "NAME://host:port,..." when there are several (NodeInfo.Listeners);
	// "" when KafkaAddr is the only one.
	KafkaListeners string
	// Rack is this node's rack (KIP-392 follower fetch); "" for none.
	Rack string
	// Join lists cluster addresses of existing nodes. A node with no state
	// joins their cluster; a node with state ignores it (but refuses to start
	// when they belong to another cluster). Empty on a node without state
	// bootstraps a new cluster.
	Join []string
	// PeerAddrs overrides the address this node dials to reach a node id, for
	// networks where the registered address is not reachable as such (NAT, or
	// the fault-injection proxies of the tests).
	PeerAddrs map[int32]string
	// BrokerTopicDefaults are broker-level topic config defaults (for example
	// cleanup.policy from --default-cleanup-policy), applied under each topic's
	// overrides.
	BrokerTopicDefaults map[string]string
	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and CommitTimeout are
	// passed to hashicorp/raft. CommitTimeout is how often a leader sends an
	// idle follower an empty AppendEntries to tell it the commit index (a
	// heartbeat does not carry it): under load every append carries it, so it
	// only bounds how soon a follower applies (and serves, and sees in
	// metadata) the last entries of a burst. Those sends are the largest share
	// of an idle node's CPU (docs/ARCHITECTURE.md, "Transport and forwarding").
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many log entries trigger a (logical) snapshot.
	SnapshotThreshold uint64
	// SnapshotRateBytes limits how fast this node streams a group snapshot to
	// a follower that lags behind the leader's log, in bytes per second on
	// average; 0 means unlimited.
	SnapshotRateBytes int64
	// MaxApplyBatchBytes is where the FSM cuts a batch of Raft entries into
	// several store commits: once a Pebble batch holds this many bytes, it is
	// committed with the index of its last entry. 0 means
	// DefaultMaxApplyBatchBytes; at most MaxApplyBatchBytesLimit, well below
	// Pebble's 4 GiB batch limit.
	MaxApplyBatchBytes int
	// MaxPendingProposalBytes bounds the data-group proposals this node has
	// handed to Raft and not seen applied, in bytes: each is charged its
	// encoded size plus 4 KiB (pending.go). A proposal waits for room until
	// its context ends. 0 means DefaultMaxPendingProposalBytes; at least
	// MinPendingProposalBytes.
	MaxPendingProposalBytes int64

	// trailingLogs overrides how many entries a snapshot leaves in the log
	// (tests only: a short log makes lagging replicas need a snapshot).
	trailingLogs uint64
	// Now is the clock stamped on proposed commands; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives Raft metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// DefaultMaxApplyBatchBytes is Config.MaxApplyBatchBytes's default: large
// enough that ordinary Raft batches commit once, small enough that 512 entries
// of 64 MiB of records each never make one Pebble batch.
const DefaultMaxApplyBatchBytes = 64 << 20

// MaxApplyBatchBytesLimit bounds Config.MaxApplyBatchBytes.
const MaxApplyBatchBytesLimit = 1 << 30

// DefaultMaxPendingProposalBytes is Config.MaxPendingProposalBytes's default:
// 64 one-MiB produce batches, or 16,384 small ones, in flight per node.
const DefaultMaxPendingProposalBytes = 64 << 20

// MinPendingProposalBytes bounds Config.MaxPendingProposalBytes from below:
// room for a few proposals.
const MinPendingProposalBytes = 64 << 10

// Bounds of Config fields, checked by Validate. cmd/shardcache checks its
// flags against the same constants, so a flag value it accepts is one Validate
// accepts.
const (
	// MinNodeID is the smallest NodeID (a Kafka broker id).
	MinNodeID = 0
	// MinDataGroups and MaxDataGroups bound DataGroups.
	MinDataGroups = 1
	MaxDataGroups = 1024
	// MinReplicationFactor and MaxReplicationFactor bound ReplicationFactor.
	MinReplicationFactor = 1
	MaxReplicationFactor = 7
	// MaxPartitions is the most partitions one topic may have.
	MaxPartitions = maxPartitions
	// MinRaftTimeout and MaxRaftTimeout bound HeartbeatTimeout and
	// ElectionTimeout (which must also be at least HeartbeatTimeout).
	MinRaftTimeout = 10 * time.Millisecond
	MaxRaftTimeout = time.Minute
	// MinLeaderLeaseTimeout bounds LeaderLeaseTimeout from below; it must
	// also be at most HeartbeatTimeout.
	MinLeaderLeaseTimeout = 5 * time.Millisecond
	// MinSnapshotRateBytes is the smallest SnapshotRateBytes other than 0
	// (unlimited): a slower stream would outlast any snapshot.
	MinSnapshotRateBytes = 1 << 20
)

const (
	maxDataGroups        = MaxDataGroups
	maxReplicationFactor = MaxReplicationFactor
)

// DefaultConfig returns a single-node configuration: node 1, four data groups,
// timeouts short enough that a lone node leads every group within about a
// second of Open. Dir and Store must still be set.
func DefaultConfig() Config {
	return Config{
		NodeID:             1,
		DataGroups:         4,
		ReplicationFactor:  3,
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		CommitTimeout:      200 * time.Millisecond,
		SnapshotThreshold:  2048,
		MaxApplyBatchBytes: DefaultMaxApplyBatchBytes,

		MaxPendingProposalBytes: DefaultMaxPendingProposalBytes,
	}
}

// Validate checks the configuration, naming the first bad field.
func (c Config) Validate() error {
	switch {
	case c.NodeID < MinNodeID:
		return fmt.Errorf("raftfsm: NodeID %d must be >= %d", c.NodeID, MinNodeID)
	case c.Dir == "":
		return errors.New("raftfsm: Dir is required")
	case c.Store == nil:
		return errors.New("raftfsm: Store is required")
	case c.DataGroups < MinDataGroups || c.DataGroups > MaxDataGroups:
		return fmt.Errorf("raftfsm: DataGroups %d must be between %d and %d", c.DataGroups, MinDataGroups, MaxDataGroups)
	case c.ReplicationFactor < MinReplicationFactor || c.ReplicationFactor > MaxReplicationFactor:
		return fmt.Errorf("raftfsm: ReplicationFactor %d must be between %d and %d", c.ReplicationFactor, MinReplicationFactor, MaxReplicationFactor)
	case c.Listener != nil && c.ClusterAddr == "":
		return errors.New("raftfsm: ClusterAddr is required with a Listener")
	case c.Listener == nil && len(c.Join) > 0:
		return errors.New("raftfsm: Join needs a Listener")
	case c.Listener == nil && c.ClusterTLS != nil:
		return errors.New("raftfsm: ClusterTLS needs a Listener")
	case c.ClusterTLSPermissive && c.ClusterTLS == nil:
		return errors.New("raftfsm: ClusterTLSPermissive needs ClusterTLS")
	case c.HeartbeatTimeout < MinRaftTimeout || c.HeartbeatTimeout > MaxRaftTimeout:
		return fmt.Errorf("raftfsm: HeartbeatTimeout %s must be between %s and %s", c.HeartbeatTimeout, MinRaftTimeout, MaxRaftTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout || c.ElectionTimeout > MaxRaftTimeout:
		return fmt.Errorf("raftfsm: ElectionTimeout %s must be between HeartbeatTimeout %s and %s", c.ElectionTimeout, c.HeartbeatTimeout, MaxRaftTimeout)
	case c.LeaderLeaseTimeout < MinLeaderLeaseTimeout || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("raftfsm: LeaderLeaseTimeout %s must be between %s and HeartbeatTimeout %s", c.LeaderLeaseTimeout, MinLeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout < time.Millisecond:
		return fmt.Errorf("raftfsm: CommitTimeout %s must be at least 1ms", c.CommitTimeout)
	case c.SnapshotThreshold < 1:
		return errors.New("raftfsm: SnapshotThreshold must be at least 1")
	case c.SnapshotRateBytes != 0 && c.SnapshotRateBytes < MinSnapshotRateBytes:
		return fmt.Errorf("raftfsm: SnapshotRateBytes %d must be 0 (unlimited) or at least %d", c.SnapshotRateBytes, MinSnapshotRateBytes)
	case c.MaxApplyBatchBytes < 0 || c.MaxApplyBatchBytes > MaxApplyBatchBytesLimit:
		return fmt.Errorf("raftfsm: MaxApplyBatchBytes %d must be between 0 (default) and %d", c.MaxApplyBatchBytes, MaxApplyBatchBytesLimit)
	case c.MaxPendingProposalBytes != 0 && c.MaxPendingProposalBytes < MinPendingProposalBytes:
		return fmt.Errorf("raftfsm: MaxPendingProposalBytes %d must be 0 (default) or at least %d", c.MaxPendingProposalBytes, MinPendingProposalBytes)
	}
	if err := topicconfig.ValidateAll(c.BrokerTopicDefaults); err != nil {
		return fmt.Errorf("raftfsm: BrokerTopicDefaults: %w", err)
	}
	return nil
}
