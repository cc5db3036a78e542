package broker

// ListGroups: v0-4
//
// Behavior:
//   - Lists every group this node coordinates that is not Dead, with its
//     protocol type ("consumer" for Kafka consumers, "" for groups that only
//     hold memberless commits) and, v4+, its state.
//   - v4 StatesFilter (KIP-518) keeps groups whose state matches one of the
//     given names, case-insensitively; an empty filter keeps all.
//   - Before anything uses groups the offsets topic may not exist yet: the
//     list is then empty, not an error.
//
// Not implemented: v5 TypesFilter (KIP-848 group types).
//
// Version notes: v1 ThrottleMillis; v3+ flexible; v4 StatesFilter and
// GroupState.

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.ListGroups.Int16(), 0, 4, (*Broker).handleListGroups) }

func (b *Broker) handleListGroups(ctx context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	resp.Groups = []kmsg.ListGroupsResponseGroup{}
	keep := func(state string) bool {
		if req.Version < 4 || len(req.StatesFilter) == 0 {
			return true
		}
		return slices.ContainsFunc(req.StatesFilter, func(s string) bool { return strings.EqualFold(s, state) })
	}
	b.groups.loadAll(ctx)
	for _, g := range b.groups.snapshot() {
		g.mu.Lock()
		state, ptype, name := g.state, g.protocolType, g.name
		g.mu.Unlock()
		if state == stateDead || !keep(state.String()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = name
		lg.ProtocolType = ptype
		lg.GroupState = state.String()
		resp.Groups = append(resp.Groups, lg)
	}
	slices.SortFunc(resp.Groups, func(a, b kmsg.ListGroupsResponseGroup) int { return strings.Compare(a.Group, b.Group) })
	return resp, nil
}

// loadAll makes sure every offsets partition this node leads is loaded in
// its current term, so listings after a leadership change are complete.
func (c *coordinator) loadAll(ctx context.Context) {
	ti, ok := c.b.node.Topic(offsetsTopic)
	if !ok {
		return
	}
	for _, p := range ti.Partitions {
		_, _ = c.ensureLoaded(ctx, ti, p.Partition)
	}
}
