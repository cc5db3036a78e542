package broker

// Who serves what in a cluster. A partition's leader is its Raft group's
// leader; the handlers ask here whether this node may answer for a partition
// and, when it may not, whom to name instead (Metadata, Produce v10+
// CurrentLeader and NodeEndpoints, FindCoordinator).

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// role is this node's part in a partition's Raft group.
type role int

const (
	// roleNone: this node carries no replica of the group.
	roleNone role = iota
	// roleFollower: a replica that does not lead (or leads without having
	// applied its whole log yet, see roleLeaderLoading).
	roleFollower
	// roleLeaderLoading: leads, but the Barrier of this term has not applied
	// yet, so its high watermark may lag what was acknowledged.
	roleLeaderLoading
	// roleLeader: leads and has applied its whole log.
	roleLeader
)

// partitionRole returns this node's role in Raft group g.
func (b *Broker) partitionRole(g uint32) role {
	switch {
	case b.node.IsLeader(g):
		return roleLeader
	case !b.node.Carries(g):
		return roleNone
	}
	if b.node.LeadsLoading(g) {
		return roleLeaderLoading
	}
	return roleFollower
}

// endpoint is a broker as Kafka responses name it.
type endpoint struct {
	id   int32
	host string
	port int32
	rack *string
}

// endpointOf returns how a client that came through listener lis (nil: the
// PLAINTEXT listener) reaches node id: this node's own advertised address on
// lis, else the address the node registered for a listener of that name, or
// its Kafka address when it registered no listeners. ok is false for an
// unknown node or one without that listener (Kafka leaves such a node out).
func (b *Broker) endpointOf(lis *listener, id int32) (endpoint, bool) {
	if lis == nil {
		lis = b.plaintext
	}
	ni, known := b.node.NodeInfo(id)
	if id == b.node.NodeID() {
		ep := endpoint{id: id, host: lis.host, port: lis.port}
		if known && ni.Rack != "" {
			ep.rack = &ni.Rack
		}
		return ep, true
	}
	if !known || ni.Removed {
		return endpoint{}, false
	}
	addr := ni.KafkaAddr
	if ni.Listeners != "" {
		var ok bool
		if addr, ok = listenerAddr(ni.Listeners, lis.Name); !ok {
			return endpoint{}, false
		}
	}
	host, portStr, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		return endpoint{}, false
	}
	ep := endpoint{id: id, host: host, port: int32(port)}
	if ni.Rack != "" {
		ep.rack = &ni.Rack
	}
	return ep, true
}

// liveEndpoints lists every registered node that was not removed, this node
// included even before it has registered.
func (b *Broker) liveEndpoints(lis *listener) []endpoint {
	var out []endpoint
	self := false
	for _, ni := range b.node.Nodes() {
		if ep, ok := b.endpointOf(lis, ni.ID); ok {
			out = append(out, ep)
			self = self || ni.ID == b.node.NodeID()
		}
	}
	if !self {
		ep, _ := b.endpointOf(lis, b.node.NodeID())
		out = append(out, ep)
	}
	return out
}

// verifyLeaders confirms at once, for every group in groups, that this node
// still leads it (raftfsm.Node.VerifyLeader: a Barrier committed in its term,
// immediate where it is the only voter) and returns the groups it confirmed.
// Handlers whose answer must never go back, whichever node gave the last
// one, call it after their role check and before they read the store
// (docs/ARCHITECTURE.md, "Reads that never go back").
func (b *Broker) verifyLeaders(ctx context.Context, groups []uint32) map[uint32]bool {
	var (
		mu        sync.Mutex
		confirmed = make(map[uint32]bool, len(groups))
		wg        sync.WaitGroup
	)
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.node.VerifyLeader(ctx, g) == nil {
				mu.Lock()
				confirmed[g] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return confirmed
}

// notLeaderError is NOT_LEADER_OR_FOLLOWER for a partition this node cannot
// serve; LEADER_NOT_AVAILABLE when no leader is known at all.
func (b *Broker) notLeaderError(g uint32) error {
	if _, _, ok := b.node.GroupLeader(g); !ok {
		return kerr.LeaderNotAvailable
	}
	return kerr.NotLeaderForPartition
}

// liveGroupLeader is GroupLeader, except that a group this node sees has lost
// its leader (raftfsm.Node.LeaderLost) has none: a hint never names a dead
// node, as Metadata does not.
func (b *Broker) liveGroupLeader(g uint32) (leader, epoch int32, ok bool) {
	leader, epoch, ok = b.node.GroupLeader(g)
	if !ok || b.node.LeaderLost(g) {
		return -1, -1, false
	}
	return leader, epoch, true
}

// produceLeaderHint fills a produce partition's CurrentLeader (v10+, KIP-951)
// and adds the leader to the response's NodeEndpoints, so the client can
// retry there without a metadata round trip. While the group has no live
// leader CurrentLeader stays -1, as Kafka leaves it for an unknown leader.
func (b *Broker) produceLeaderHint(lis *listener, resp *kmsg.ProduceResponse, sp *kmsg.ProduceResponseTopicPartition, g uint32) {
	if resp.Version < 10 {
		return
	}
	leader, epoch, ok := b.liveGroupLeader(g)
	if !ok || leader == b.node.NodeID() {
		return
	}
	ep, ok := b.endpointOf(lis, leader)
	if !ok {
		return
	}
	sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = leader, epoch
	for _, br := range resp.Brokers {
		if br.NodeID == leader {
			return
		}
	}
	br := kmsg.NewProduceResponseBroker()
	br.NodeID, br.Host, br.Port, br.Rack = ep.id, ep.host, ep.port, ep.rack
	resp.Brokers = append(resp.Brokers, br)
}

// fetchLeaderHint fills a fetch partition's CurrentLeader (v12+).
func (b *Broker) fetchLeaderHint(version int16, sp *kmsg.FetchResponseTopicPartition, g uint32) {
	if version < 12 {
		return
	}
	if leader, epoch, ok := b.liveGroupLeader(g); ok {
		sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = leader, epoch
	}
}

// preferredReadReplica picks, for a consumer in rack, an in-sync replica of
// group g in that rack other than this leader (KIP-392); -1 when this node is
// in the consumer's rack or no replica is.
func (b *Broker) preferredReadReplica(g uint32, rack string) int32 {
	if rack == "" {
		return -1
	}
	if self, ok := b.node.NodeInfo(b.node.NodeID()); ok && self.Rack == rack {
		return -1
	}
	for _, id := range b.node.InSync(g) {
		if id == b.node.NodeID() {
			continue
		}
		if ni, ok := b.node.NodeInfo(id); ok && !ni.Removed && ni.Rack == rack {
			return id
		}
	}
	return -1
}

// listenerAddr finds name's address in a "NAME://host:port,..." list.
func listenerAddr(list, name string) (string, bool) {
	for _, item := range strings.Split(list, ",") {
		n, addr, ok := strings.Cut(strings.TrimSpace(item), "://")
		if ok && n == name {
			return addr, true
		}
	}
	return "", false
}
