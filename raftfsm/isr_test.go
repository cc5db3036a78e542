package raftfsm

import (
	"testing"
	"time"
)

func TestISRTracker(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	leader := func(g uint32, term, commit uint64) GroupStatus {
		return GroupStatus{Group: g, State: "Leader", Term: term, CommitIndex: commit, AppliedIndex: commit}
	}
	follower := func(g uint32, applied uint64) GroupStatus {
		return GroupStatus{Group: g, State: "Follower", AppliedIndex: applied}
	}
	type poll struct {
		at       time.Duration // after t0
		statuses map[int32][]GroupStatus
	}
	for _, tc := range []struct {
		name  string
		polls []poll
		at    time.Duration
		want  map[int32]bool // group 1
	}{
		{
			name: "not seen yet: in sync during the grace after start",
			at:   isrLagTime - time.Millisecond,
			want: map[int32]bool{1: true, 2: true},
		},
		{
			name: "not seen after the grace: out",
			at:   isrLagTime,
			want: map[int32]bool{1: false, 2: false},
		},
		{
			name: "caught up within promoteLag stays in",
			polls: []poll{{at: 20 * time.Second, statuses: map[int32][]GroupStatus{
				1: {leader(1, 3, 1000)},
				2: {follower(1, 1000-promoteLag)},
				3: {follower(1, 1000-promoteLag-1)},
			}}},
			at:   20*time.Second + isrLagTime - time.Millisecond,
			want: map[int32]bool{1: true, 2: true, 3: false},
		},
		{
			name: "a replica not seen for isrLagTime leaves",
			polls: []poll{
				{at: 11 * time.Second, statuses: map[int32][]GroupStatus{1: {leader(1, 3, 10)}, 2: {follower(1, 10)}}},
				{at: 15 * time.Second, statuses: map[int32][]GroupStatus{1: {leader(1, 3, 20)}}},
			},
			at:   11*time.Second + isrLagTime,
			want: map[int32]bool{1: true, 2: false},
		},
		{
			name: "the leader in the highest term sets the bar",
			polls: []poll{{at: 11 * time.Second, statuses: map[int32][]GroupStatus{
				1: {leader(1, 3, 10)},     // deposed, not yet told
				2: {leader(1, 4, 5000)},   // the current leader
				3: {follower(1, 5000-10)}, // caught up with node 2
			}}},
			at:   12 * time.Second,
			want: map[int32]bool{1: false, 2: true, 3: true},
		},
		{
			name: "no leader seen: nobody is recorded",
			polls: []poll{{at: 11 * time.Second, statuses: map[int32][]GroupStatus{
				2: {follower(1, 10)},
				3: {follower(1, 10), leader(2, 1, 10)},
			}}},
			at:   12 * time.Second,
			want: map[int32]bool{2: false, 3: false},
		},
		{
			name: "the metadata group does not count",
			polls: []poll{{at: 11 * time.Second, statuses: map[int32][]GroupStatus{
				1: {leader(metaGroup, 1, 10)},
				2: {follower(1, 10)},
			}}},
			at:   12 * time.Second,
			want: map[int32]bool{2: false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr isrTracker
			tr.start(t0)
			for _, p := range tc.polls {
				tr.observe(t0.Add(p.at), p.statuses)
			}
			for node, want := range tc.want {
				if got := tr.inSync(1, node, t0.Add(tc.at)); got != want {
					t.Errorf("node %d: in sync %v, want %v", node, got, want)
				}
			}
		})
	}
}
