package broker

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The status page and the HTTP API show consumer groups through Groups, built
// from the coordinator's groups and the shards' counters.

// GroupSummary describes one consumer group as the coordinator knows it.
type GroupSummary struct {
	Group        string
	State        string // Empty, PreparingRebalance, CompletingRebalance, Stable, Dead
	ProtocolType string // "consumer" for Kafka consumers
	Protocol     string // the chosen assignor, e.g. "range"
	Generation   int32
	Members      []MemberSummary
	// Partitions lists every partition the group has a committed offset for or
	// that a member is assigned, in topic then partition order.
	Partitions []GroupPartition
}

// MemberSummary is one member of a group.
type MemberSummary struct {
	MemberID   string
	InstanceID string // static membership (group.instance.id), "" if none
	ClientID   string
	ClientHost string
	// Assigned lists the partitions the member's assignment names, decoded
	// from the consumer protocol when the group uses it.
	Assigned []TopicPartition
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// GroupPartition is a group's position in one partition.
type GroupPartition struct {
	Topic     string
	Partition int32
	// Committed is the committed offset, -1 if none.
	Committed     int64
	HighWatermark int64
	// Lag is HighWatermark - Committed (HighWatermark - LogStartOffset without a commit).
	Lag int64
	// LiveBacklog counts the live records at or after the committed offset: what
	// the group still has to read, bounded by the shard's live keys. It is as
	// of the last background refresh (at most
	// GroupConfig.BacklogRefreshInterval old, and never above Lag); until a
	// refresh has seen the partition, the fewer of Lag and the shard's live
	// records.
	LiveBacklog int64
	// Owner is the member id assigned the partition, "" if none.
	Owner string
}

// Groups lists every group the coordinator knows, by name. Safe for
// concurrent use; the result is the caller's. It reads memory only: shard
// counters and the live backlog cached by the last refresh, which it starts
// in the background when the figures are older than
// GroupConfig.BacklogRefreshInterval (group_backlog.go).
func (b *Broker) Groups() []GroupSummary {
	gs := b.groups.snapshot()
	view := b.newBacklogView()
	out := make([]GroupSummary, 0, len(gs))
	for _, g := range gs {
		if s, ok := b.summarize(g, view); ok {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b GroupSummary) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// summarize describes one group; false for a Dead group.
func (b *Broker) summarize(g *group, view *backlogView) (GroupSummary, bool) {
	g.mu.Lock()
	if g.state == stateDead {
		g.mu.Unlock()
		return GroupSummary{}, false
	}
	s := GroupSummary{
		Group:        g.name,
		State:        g.state.String(),
		ProtocolType: g.protocolType,
		Generation:   g.generation,
	}
	if g.protocol != nil {
		s.Protocol = *g.protocol
	}
	owners := map[topicPartition]string{}
	for _, m := range g.sortedMembers() {
		ms := MemberSummary{MemberID: m.id, InstanceID: m.instance(), ClientID: m.clientID, ClientHost: m.clientHost}
		if g.protocolType == "consumer" && g.state == stateStable {
			for _, tp := range decodeAssignment(m.assignment) {
				ms.Assigned = append(ms.Assigned, TopicPartition{Topic: tp.topic, Partition: tp.partition})
				owners[tp] = m.id
			}
		}
		s.Members = append(s.Members, ms)
	}
	live := b.liveOffsets()
	committed := make(map[topicPartition]int64, len(g.offsets))
	for tp, o := range g.offsets {
		if live(tp.topic, o) {
			committed[tp] = o.Offset
		}
	}
	g.mu.Unlock()

	tps := make([]topicPartition, 0, len(committed)+len(owners))
	for tp := range committed {
		tps = append(tps, tp)
	}
	for tp := range owners {
		if _, ok := committed[tp]; !ok {
			tps = append(tps, tp)
		}
	}
	slices.SortFunc(tps, compareTopicPartition)
	for _, tp := range tps {
		gp := GroupPartition{Topic: tp.topic, Partition: tp.partition, Committed: -1, HighWatermark: -1, Owner: owners[tp]}
		if off, ok := committed[tp]; ok {
			gp.Committed = off
		}
		if bl, ok := view.backlog(g.name, tp, gp.Committed); ok {
			gp.HighWatermark, gp.Lag, gp.LiveBacklog = bl.hwm, bl.lag, bl.live
		}
		s.Partitions = append(s.Partitions, gp)
	}
	return s, true
}

func compareTopicPartition(a, b topicPartition) int {
	if c := strings.Compare(a.topic, b.topic); c != 0 {
		return c
	}
	return int(a.partition) - int(b.partition)
}

// decodeAssignment returns the partitions of a consumer protocol assignment
// (nil when it does not decode).
func decodeAssignment(b []byte) []topicPartition {
	if len(b) == 0 {
		return nil
	}
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(b); err != nil {
		return nil
	}
	var out []topicPartition
	for _, t := range a.Topics {
		for _, p := range t.Partitions {
			out = append(out, topicPartition{t.Topic, p})
		}
	}
	return out
}
