package harness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Leadership is the Raft leadership of a cluster's running nodes at one look.
type Leadership struct {
	// Leader maps each Raft group to its leader's node id (0 for metadata).
	Leader map[uint32]int32
	// Statuses are the running nodes' /v1/status documents by node id.
	Statuses map[int32]*Status
}

// LedBy returns the data groups (every group but 0) that node id leads, in
// order.
func (l Leadership) LedBy(id int32) []uint32 {
	var out []uint32
	for g, n := range l.Leader {
		if g != 0 && n == id {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// settleLooks is how many looks in a row must find the cluster settled.
const settleLooks = 3

// WaitSettled waits until the running nodes agree on a settled cluster: each
// answers /v1/status and says it is ready; every Raft group any of them
// carries has a leader that each of them carrying it names and that calls
// itself leader; and, with balanced, no node leads more than one data group
// more than another (the preferred leaders have taken over, which the group
// leaders do after leading for 10 s). That must hold for three looks in a
// row, pollEvery apart. It fails after timeout with what was last unsettled.
func (c *Cluster) WaitSettled(ctx context.Context, timeout, pollEvery time.Duration, balanced bool) (Leadership, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var (
		good int
		prev map[uint32]int32
	)
	for {
		l, why := c.look(ctx, balanced)
		switch {
		case why != "":
			good = 0
		case good > 0 && !maps.Equal(prev, l.Leader):
			good, why = 1, "leaders changed between looks"
		default:
			good++
		}
		prev = l.Leader
		if good >= settleLooks {
			return l, nil
		}
		select {
		case <-deadline.C:
			if why == "" {
				why = "leaders still changing"
			}
			return l, fmt.Errorf("cluster not settled within %v: %s", timeout, why)
		case <-ctx.Done():
			return l, ctx.Err()
		case <-tick.C:
		}
	}
}

// Look returns the running nodes' leadership at one look, without checks
// beyond a leader being named: a group whose nodes disagree is reported with
// the leader the most of them name.
func (c *Cluster) Look(ctx context.Context) (Leadership, error) {
	l, why := c.look(ctx, false)
	if l.Statuses == nil {
		return l, fmt.Errorf("%s", why)
	}
	return l, nil
}

// look takes one look at every running node; why is "" when the cluster is
// settled (balanced or not, as asked).
func (c *Cluster) look(ctx context.Context, balanced bool) (l Leadership, why string) {
	l = Leadership{Leader: map[uint32]int32{}, Statuses: map[int32]*Status{}}
	votes := map[uint32]map[int32]int{} // group -> named leader -> nodes naming it
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		s, err := n.Status(ctx)
		if err != nil {
			return Leadership{}, fmt.Sprintf("node %d: %v", n.ID, err)
		}
		l.Statuses[n.ID] = s
		if !s.Node.Ready && why == "" {
			why = fmt.Sprintf("node %d is not ready", n.ID)
		}
		for _, g := range s.Raft {
			id, err := strconv.ParseInt(g.LeaderID, 10, 32)
			if err != nil || g.LeaderID == "" {
				if why == "" {
					why = fmt.Sprintf("node %d knows no leader of raft group %d", n.ID, g.RaftGroupID)
				}
				continue
			}
			if votes[g.RaftGroupID] == nil {
				votes[g.RaftGroupID] = map[int32]int{}
			}
			votes[g.RaftGroupID][int32(id)]++
		}
	}
	for g, named := range votes {
		var best int32
		for id, k := range named {
			if k > named[best] || (k == named[best] && id < best) {
				best = id
			}
		}
		l.Leader[g] = best
		if len(named) > 1 && why == "" {
			why = fmt.Sprintf("nodes disagree on the leader of raft group %d", g)
		}
		if s := l.Statuses[best]; s == nil {
			if why == "" {
				why = fmt.Sprintf("raft group %d is led by node %d, which is not running", g, best)
			}
		} else if gs, ok := s.RaftGroup(g); !ok || gs.State != "Leader" {
			if why == "" {
				why = fmt.Sprintf("node %d is named leader of raft group %d but is not leading it", best, g)
			}
		}
	}
	if balanced && why == "" && len(l.Statuses) > 1 {
		counts := map[int32]int{}
		for id := range l.Statuses {
			counts[id] = len(l.LedBy(id))
		}
		lo, hi := slices.Min(slices.Collect(maps.Values(counts))), slices.Max(slices.Collect(maps.Values(counts)))
		if hi-lo > 1 {
			why = fmt.Sprintf("data group leaderships per node not yet balanced: %v", counts)
		}
	}
	return l, why
}
