package raftfsm

// In-sync replicas (ISR), as Metadata reports them and follower fetch picks
// from. Kafka drops a follower from the ISR once it has not caught up with the
// leader for replica.lag.time.max.ms (30 s), and takes it back once it has.
// Here a data group's ISR is its leader plus the voters that were caught up
// (raft's applied index within promoteLag entries of the leader's commit
// index) at some status poll within the last isrLagTime. Every node polls
// every other active node's status (the status RPC the membership loop uses
// to promote non-voters) every isrPollInterval, so every node can answer for
// every group, including the groups it does not carry; answers from
// different nodes may differ by a poll. Raft's quorum, not the ISR, decides
// what is acknowledged: the ISR is what clients and operators are shown.

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// isrLagTime is how long a voter stays in the ISR without being seen
	// caught up with its leader: Kafka's replica.lag.time.max.ms, shorter
	// than its 30 s default so a dead replica leaves the ISR soon after the
	// election that replaces it (about 2 s with the default timeouts).
	isrLagTime = 10 * time.Second
	// isrPollInterval is how often a node asks the others for their status.
	isrPollInterval = time.Second
)

// isrTracker remembers, per data group and node, when the node was last seen
// caught up with the group's leader. Safe for concurrent use.
type isrTracker struct {
	mu sync.Mutex
	// since is when tracking started: until isrLagTime after it, a voter not
	// yet seen counts as caught up, so a node that just started does not
	// report an empty ISR.
	since    time.Time
	caughtUp map[uint32]map[int32]time.Time
}

func (t *isrTracker) start(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.since = now
	t.caughtUp = map[uint32]map[int32]time.Time{}
}

// observe records one poll: statuses holds each answering node's group
// statuses (this node's own included). For each data group, the status of
// the leader in the highest term gives the commit index the others are
// compared with.
func (t *isrTracker) observe(now time.Time, statuses map[int32][]GroupStatus) {
	type lead struct {
		term, commit uint64
	}
	leaders := map[uint32]lead{}
	for _, sts := range statuses {
		for _, s := range sts {
			if s.Group == metaGroup || s.State != raft.Leader.String() {
				continue
			}
			if l, ok := leaders[s.Group]; !ok || s.Term > l.term {
				leaders[s.Group] = lead{term: s.Term, commit: s.CommitIndex}
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for node, sts := range statuses {
		for _, s := range sts {
			l, ok := leaders[s.Group]
			if !ok || s.AppliedIndex+promoteLag < l.commit {
				continue
			}
			if t.caughtUp[s.Group] == nil {
				t.caughtUp[s.Group] = map[int32]time.Time{}
			}
			t.caughtUp[s.Group][node] = now
		}
	}
}

// inSync reports whether node was seen caught up in group g within
// isrLagTime of now.
func (t *isrTracker) inSync(g uint32, node int32, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := t.caughtUp[g][node]
	if last.Before(t.since) {
		last = t.since
	}
	return now.Sub(last) < isrLagTime
}

// runISR polls the other nodes' status every isrPollInterval until the node
// closes.
func (n *Node) runISR() {
	defer n.wg.Done()
	tick := time.NewTicker(isrPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-tick.C:
		}
		n.pollStatuses(n.closeCtx)
	}
}

// pollStatuses asks every other active node for its group statuses, at once
// and each bounded by statusTimeout, and records who is caught up. A node
// that does not answer is simply not seen.
func (n *Node) pollStatuses(ctx context.Context) {
	self := n.cfg.NodeID
	statuses := map[int32][]GroupStatus{self: n.GroupStatuses()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range n.metadata().activeNodes() {
		if id == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			resp, err := n.call(cctx, n.dialAddr(id), &rpcRequest{Op: opStatus})
			if err != nil || resp.err() != nil {
				return
			}
			mu.Lock()
			statuses[id] = resp.Status
			mu.Unlock()
		}()
	}
	wg.Wait()
	n.isr.observe(n.cfg.Now(), statuses)
}
