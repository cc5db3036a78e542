package raftfsm

import (
	"fmt"
	"math/rand"
	"testing"
)

// checkPlacement checks the invariants every placement must hold.
func checkPlacement(t *testing.T, p map[uint32][]int32, active []int32, groups, rf int) {
	t.Helper()
	want := min(rf, len(active))
	isActive := map[int32]bool{}
	for _, id := range active {
		isActive[id] = true
	}
	load := map[int32]int{}
	lead := map[int32]int{}
	for g := uint32(1); g <= uint32(groups); g++ {
		rs := p[g]
		if len(rs) != want {
			t.Fatalf("group %d has replicas %v, want %d of %v", g, rs, want, active)
		}
		seen := map[int32]bool{}
		for _, id := range rs {
			if !isActive[id] || seen[id] {
				t.Fatalf("group %d: replicas %v (active %v)", g, rs, active)
			}
			seen[id] = true
			load[id]++
		}
		lead[rs[0]]++
	}
	// Leadership is spread as rule 3 promises: no group's preferred leader
	// leads two groups more than another of its replicas.
	for g := uint32(1); g <= uint32(groups); g++ {
		rs := p[g]
		for _, id := range rs[1:] {
			if lead[rs[0]] >= lead[id]+2 {
				t.Fatalf("group %d: preferred leader %d leads %d groups, replica %d leads %d (%v)", g, rs[0], lead[rs[0]], id, lead[id], lead)
			}
		}
	}
	// With every node on every group, leadership is even to within one.
	if want == len(active) {
		lo, hi := groups, 0
		for _, id := range active {
			lo, hi = min(lo, lead[id]), max(hi, lead[id])
		}
		if hi-lo > 1 {
			t.Fatalf("preferred leaders %v over %d groups are not spread", lead, groups)
		}
	}
}

func TestPlacementGrowsWithNodes(t *testing.T) {
	p := map[uint32][]int32{}
	var active []int32
	for id := int32(1); id <= 3; id++ {
		active = append(active, id)
		next := placeGroups(p, active, 4, 3)
		checkPlacement(t, next, active, 4, 3)
		// Nothing that was placed moves: a group keeps its replicas.
		for g, rs := range p {
			for _, id := range rs {
				if !containsNode(next[g], id) {
					t.Fatalf("adding node %d moved group %d off node %d: %v -> %v", active[len(active)-1], g, id, rs, next[g])
				}
			}
		}
		p = next
	}
	// A fourth node joins a full cluster: nothing moves.
	next := placeGroups(p, []int32{1, 2, 3, 4}, 4, 3)
	for g := range p {
		if fmt.Sprint(sortedNodeIDs(next[g])) != fmt.Sprint(sortedNodeIDs(p[g])) {
			t.Fatalf("a fourth node moved group %d: %v -> %v", g, p[g], next[g])
		}
	}
}

func TestPlacementReplacesRemovedNode(t *testing.T) {
	p := placeGroups(nil, []int32{1, 2, 3, 4}, 8, 3)
	checkPlacement(t, p, []int32{1, 2, 3, 4}, 8, 3)
	after := placeGroups(p, []int32{1, 3, 4}, 8, 3)
	checkPlacement(t, after, []int32{1, 3, 4}, 8, 3)
	for g, rs := range p {
		for _, id := range rs {
			if id != 2 && !containsNode(after[g], id) {
				t.Fatalf("removing node 2 moved group %d off node %d: %v -> %v", g, id, rs, after[g])
			}
		}
	}
}

func TestPlacementDeterministicAndBalanced(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		n := 1 + rng.Intn(7)
		var active []int32
		for id := int32(1); len(active) < n; id++ {
			if rng.Intn(3) > 0 {
				active = append(active, id)
			}
		}
		groups, rf := 1+rng.Intn(16), 1+rng.Intn(5)
		a := placeGroups(nil, active, groups, rf)
		b := placeGroups(nil, active, groups, rf)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("placement not deterministic: %v vs %v", a, b)
		}
		checkPlacement(t, a, active, groups, rf)
	}
}

func TestMetaVoterTarget(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 5, 9: 5} {
		if got := metaVoterTarget(n); got != want {
			t.Errorf("metaVoterTarget(%d) = %d, want %d", n, got, want)
		}
	}
}
