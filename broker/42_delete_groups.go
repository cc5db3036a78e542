package broker

// DeleteGroups: v0-2
//
// Behavior:
//   - Needs DELETE on each group (authorizer.go), else that group answers
//     GROUP_AUTHORIZATION_FAILED.
//   - Deletes groups without members: tombstones for every committed offset
//     and for the group's metadata record go to __consumer_offsets in one Raft
//     entry, then the group is forgotten. It is Dead while they are written
//     (a JoinGroup or commit meanwhile answers COORDINATOR_NOT_AVAILABLE and
//     retries) and Empty again if the write fails. No lock is held across the
//     write (group_writes.go).
//   - Per group: GROUP_ID_NOT_FOUND (unknown), NON_EMPTY_GROUP (it has
//     members), INVALID_GROUP_ID (id too long), NOT_COORDINATOR /
//     COORDINATOR_LOAD_IN_PROGRESS. The empty id names a group like any other
//     (Kafka keeps it for backwards compatibility; memberless commits can
//     create it).
//
// Version notes: v1 is v0 (throttle behavior); v2+ flexible.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/shardstore"
)

func init() { register(kmsg.DeleteGroups.Int16(), 0, 2, (*Broker).handleDeleteGroups) }

func (b *Broker) handleDeleteGroups(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		g := kmsg.NewDeleteGroupsResponseGroup()
		g.Group = id
		if b.allowed(rc, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup, id) {
			g.ErrorCode = b.groups.deleteGroup(ctx, id)
		} else {
			g.ErrorCode = kerr.GroupAuthorizationFailed.Code
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

func (c *coordinator) deleteGroup(ctx context.Context, id string) int16 {
	if len(id) > maxGroupIDBytes { // "" is a group like any other here, as in Kafka
		return kerr.InvalidGroupID.Code
	}
	_, p, err := c.route(ctx, id)
	if err != nil {
		return c.b.codeFor(err, "delete groups", logKeyGroup, id)
	}
	g := c.lookup(id, p, false)
	if g == nil {
		return kerr.GroupIDNotFound.Code
	}
	if err := g.acquire(ctx); err != nil {
		return c.writeErrorCode(err, "delete groups", id)
	}
	defer g.release()
	g.mu.Lock()
	switch {
	case g.state == stateDead:
		g.mu.Unlock()
		return kerr.GroupIDNotFound.Code
	case g.state != stateEmpty:
		g.mu.Unlock()
		return kerr.NonEmptyGroup.Code
	}
	recs := []shardstore.Record{{Key: groupKey(id)}}
	for tp := range g.offsets {
		recs = append(recs, shardstore.Record{Key: offsetKey(id, tp.topic, tp.partition)})
	}
	// Dead at once, so nothing joins or commits while the tombstones are
	// written; undone if the write fails.
	emptySince := g.stateTime
	g.transition(stateDead, time.Now())
	g.mu.Unlock()

	if err := c.write(ctx, g, recs); err != nil {
		g.mu.Lock()
		if g.state == stateDead {
			g.transition(stateEmpty, emptySince)
		}
		g.mu.Unlock()
		return c.writeErrorCode(err, "delete groups", id)
	}
	g.mu.Lock()
	clear(g.offsets)
	g.mu.Unlock()
	c.forget(g)
	c.log.Info("group deleted", logKeyGroup, id)
	return 0
}
