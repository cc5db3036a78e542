package broker

// FindCoordinator: v0-4
//
// Behavior:
//   - Needs DESCRIBE on the group or transactional id (authorizer.go), else
//     GROUP_AUTHORIZATION_FAILED or TRANSACTIONAL_ID_AUTHORIZATION_FAILED
//     (per key in v4).
//   - Key type GROUP (0): the coordinator of a group is the leader of the
//     __consumer_offsets partition its id hashes to; any node names it. The
//     first request creates __consumer_offsets when it does not exist yet
//     (unless the broker created it at startup), as Kafka does. Answers
//     COORDINATOR_NOT_AVAILABLE (retriable) while the topic cannot be created
//     or its partition has no known leader. A leader still loading the
//     partition names itself, as Kafka does (coordinatorHint).
//   - Key type TRANSACTION (1): the leader of the __transaction_state
//     partition the transactional id hashes to, the same way (the topic is
//     created on first use, 50 partitions; txn_coordinator.go). Any other key
//     type: INVALID_REQUEST.
//   - v4 (KIP-699) answers every key of CoordinatorKeys separately.
//
// Version notes: v0 has only a group key; v1 CoordinatorType, ThrottleMillis
// and ErrorMessage; v3+ flexible; v4 batched keys (no top-level fields).

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/raftfsm"
)

func init() { register(kmsg.FindCoordinator.Int16(), 0, 4, (*Broker).handleFindCoordinator) }

// Coordinator key types.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

func (b *Broker) handleFindCoordinator(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			var ep endpoint
			ep, c.ErrorCode, c.ErrorMessage = b.findCoordinator(ctx, rc, req.CoordinatorType, key)
			c.NodeID, c.Host, c.Port = -1, "", -1
			if c.ErrorCode == 0 {
				c.NodeID, c.Host, c.Port = ep.id, ep.host, ep.port
			}
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp, nil
	}
	var ep endpoint
	ep, resp.ErrorCode, resp.ErrorMessage = b.findCoordinator(ctx, rc, req.CoordinatorType, req.CoordinatorKey)
	resp.NodeID, resp.Host, resp.Port = -1, "", -1
	if resp.ErrorCode == 0 {
		resp.NodeID, resp.Host, resp.Port = ep.id, ep.host, ep.port
	}
	return resp, nil
}

// findCoordinator answers one key: the coordinator's endpoint and code 0, or
// an error code.
func (b *Broker) findCoordinator(ctx context.Context, rc *requestContext, typ int8, key string) (endpoint, int16, *string) {
	var (
		ti  raftfsm.TopicInfo
		p   int32
		err error
		lis = rc.listener
	)
	switch typ {
	case coordinatorGroup:
		if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, key) {
			return endpoint{}, kerr.GroupAuthorizationFailed.Code, nil
		}
		if len(key) > maxGroupIDBytes {
			return endpoint{}, kerr.InvalidGroupID.Code, nil
		}
		ti, p, err = b.groups.route(ctx, key)
	case coordinatorTransaction:
		if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, key) {
			return endpoint{}, kerr.TransactionalIDAuthorizationFailed.Code, nil
		}
		if key == "" || len(key) > maxTxnIDBytes {
			msg := "transactional id must be 1 to 32767 bytes"
			return endpoint{}, kerr.InvalidRequest.Code, &msg
		}
		ti, p, err = b.txns.route(ctx, key)
	default:
		msg := "unknown coordinator key type"
		return endpoint{}, kerr.InvalidRequest.Code, &msg
	}
	if err == nil {
		self, _ := b.endpointOf(lis, b.node.NodeID())
		return self, 0, nil
	}
	if len(ti.Partitions) > 0 {
		if ep, ok := b.coordinatorHint(lis, ti.Partitions[p].Group, err); ok {
			return ep, 0, nil
		}
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		b.codeFor(err, "find coordinator", logKeyGroup, key)
	}
	// No leader known: the client retries FindCoordinator.
	return endpoint{}, kerr.CoordinatorNotAvailable.Code, nil
}

// coordinatorHint names the coordinator of a key whose partition is in Raft
// group g when this node cannot serve it (route's error err), as Kafka names
// the partition's leader whatever its load state:
//   - this node leads g but is loading the partition, or the leader table
//     has not taken in its report yet: itself; the client's request there
//     answers COORDINATOR_LOAD_IN_PROGRESS, which clients retry;
//   - another node leads g: the leader table's leader, else (the table names
//     this node, which no longer leads, until the new leader's report is
//     applied here) the leader this node's Raft heard from; a stale name
//     answers NOT_COORDINATOR, which clients retry too.
//
// COORDINATOR_NOT_AVAILABLE remains for no known leader. franz-go fails
// every buffered record of a transaction when the FindCoordinator behind an
// AddPartitionsToTxn answers it (TestTxnClusterCoordinatorKillNine, twice in
// make test: the new leader's table still named the old one).
func (b *Broker) coordinatorHint(lis *listener, g uint32, err error) (endpoint, bool) {
	self := b.node.NodeID()
	switch {
	case errors.Is(err, errCoordinatorLoad) && (b.node.IsLeader(g) || b.node.LeadsLoading(g)):
		return b.endpointOf(lis, self)
	case errors.Is(err, errNotCoordinator):
		if leader, _, ok := b.node.GroupLeader(g); ok && leader != self {
			return b.endpointOf(lis, leader)
		}
		if leader, ok := b.node.RaftLeader(g); ok && leader != self {
			return b.endpointOf(lis, leader)
		}
	}
	return endpoint{}, false
}
