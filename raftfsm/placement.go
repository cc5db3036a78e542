package raftfsm

import "sort"

// Placement decides which nodes carry each data group. It is a pure function of
// the registered nodes, the pool size and the replication factor, computed inside
// the metadata FSM whenever a node is registered or removed, so every replica
// derives the same placement at the same log position (a delta applied in the
// FSM, never a map computed by a handler).
//
// Rules, in order:
//  1. A group keeps every current replica that is still active, in its order:
//     placement never moves data that need not move.
//  2. A group with fewer than rf replicas takes the active node that carries the
//     fewest replicas (ties: the lowest id after rotating by the group id, so
//     equal nodes share the load).
//  3. The first replica is the preferred leader. While some group's preferred
//     leader leads at least two groups more than one of that group's other
//     replicas, that replica moves to the front. This spreads leadership evenly
//     without moving data.
//
// Adding a node to a full cluster (every group already at rf) moves nothing;
// replacing a removed node fills its places. Moving replicas onto a new node
// for balance is not done (see DESIGN.md).

// placeGroups returns the placement of groups 1..groups over the active nodes
// (sorted ascending, no duplicates), starting from current. current is not
// modified.
func placeGroups(current map[uint32][]int32, active []int32, groups, rf int) map[uint32][]int32 {
	out := make(map[uint32][]int32, groups)
	if len(active) == 0 || groups <= 0 {
		return out
	}
	rf = min(max(rf, 1), len(active))
	isActive := make(map[int32]bool, len(active))
	for _, id := range active {
		isActive[id] = true
	}
	load := make(map[int32]int, len(active))
	// Rule 1.
	for g := uint32(1); g <= uint32(groups); g++ {
		var keep []int32
		for _, id := range current[g] {
			if isActive[id] && !containsNode(keep, id) && len(keep) < rf {
				keep = append(keep, id)
				load[id]++
			}
		}
		out[g] = keep
	}
	// Rule 2.
	for g := uint32(1); g <= uint32(groups); g++ {
		for len(out[g]) < rf {
			best := int32(-1)
			for i := range active {
				id := active[(i+int(g))%len(active)]
				if containsNode(out[g], id) {
					continue
				}
				if best < 0 || load[id] < load[best] {
					best = id
				}
			}
			out[g] = append(out[g], best)
			load[best]++
		}
	}
	// Rule 3. Each move lowers the sum of squared leader counts, so the loop
	// ends; the bound is a guard.
	lead := map[int32]int{}
	for g := uint32(1); g <= uint32(groups); g++ {
		lead[out[g][0]]++
	}
	for moved, rounds := true, 0; moved && rounds < groups*len(active); rounds++ {
		moved = false
		for g := uint32(1); g <= uint32(groups); g++ {
			rs := out[g]
			first := rs[0]
			for i := 1; i < len(rs); i++ {
				if lead[first] >= lead[rs[i]]+2 {
					lead[first]--
					lead[rs[i]]++
					rs[0], rs[i] = rs[i], rs[0]
					moved = true
					break
				}
			}
		}
	}
	return out
}

// metaVoterTarget is how many voters the metadata group should have with n
// active nodes: 3, or 5 from 5 nodes on, and never more than n.
func metaVoterTarget(n int) int {
	switch {
	case n >= 5:
		return 5
	case n >= 3:
		return 3
	}
	return n
}

func containsNode(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// sortedNodeIDs returns ids sorted ascending.
func sortedNodeIDs(ids []int32) []int32 {
	out := append([]int32(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
