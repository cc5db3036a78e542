package broker

// ListGroups: v0-5
//
// Behavior:
//   - Authorization (authorizer.go): DESCRIBE on the cluster lists every
//     group; otherwise only the groups the principal may DESCRIBE.
//   - Lists every group this node coordinates that is not Dead, with its
//     protocol type ("consumer" for Kafka consumers, "" for groups that only
//     hold memberless commits) and, v4+, its state.
//   - v4 StatesFilter (KIP-518) keeps groups whose state matches one of the
//     given names, case-insensitively; an empty filter keeps all.
//   - v5 GroupType (KIP-848) is "classic" for every group: the coordinator
//     runs the classic protocol only (JoinGroup/SyncGroup). A TypesFilter
//     keeps the groups whose type it names, case-insensitively, so a filter
//     without "classic" lists nothing; an empty filter keeps all.
//   - Before anything uses groups the offsets topic may not exist yet: the
//     list is then empty, not an error.
//
// Version notes: v1 ThrottleMillis; v3+ flexible; v4 StatesFilter and
// GroupState; v5 TypesFilter and GroupType.

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
)

func init() { register(kmsg.ListGroups.Int16(), 0, 5, (*Broker).handleListGroups) }

// groupTypeClassic is the KIP-848 type of every group this coordinator runs.
const groupTypeClassic = "classic"

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
	if req.Version >= 5 && len(req.TypesFilter) > 0 &&
		!slices.ContainsFunc(req.TypesFilter, func(s string) bool { return strings.EqualFold(s, groupTypeClassic) }) {
		return resp, nil
	}
	clusterDescribe := b.permits(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, acl.ClusterName)
	b.groups.loader.loadLed(ctx) // complete after a leadership change
	for _, g := range b.groups.snapshot() {
		g.mu.Lock()
		state, ptype, name := g.state, g.protocolType, g.name
		g.mu.Unlock()
		if state == stateDead || !keep(state.String()) {
			continue
		}
		if !clusterDescribe && !b.permits(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, name) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = name
		lg.ProtocolType = ptype
		lg.GroupState = state.String()
		if req.Version >= 5 {
			lg.GroupType = groupTypeClassic
		}
		resp.Groups = append(resp.Groups, lg)
	}
	slices.SortFunc(resp.Groups, func(a, b kmsg.ListGroupsResponseGroup) int { return strings.Compare(a.Group, b.Group) })
	return resp, nil
}
