package raftfsm

import (
	"fmt"

	"github.com/shardcache/shardcache/shardstore"
)

// backfillShardGroups records the Raft group of shards created before the store
// kept one (shardstore's group registry, s g <group> <shard>). A group snapshot
// lists its shards from that registry, and a receiver clears the local shards
// registered in the group, so a shard without a recorded group would be
// neither sent nor cleared. shardGroup is the placement in cluster metadata
// (metadata.shardGroups); shards the store lacks are skipped, and a recorded
// group that differs from metadata is an error.
//
// The node calls it once at Open, after loading metadata and before opening
// the groups (so before any FSM applies and before a snapshot is sent or
// received); later runs find nothing to record.
func backfillShardGroups(store *shardstore.Store, shardGroup map[shardstore.ShardID]uint32) error {
	if _, err := store.SetShardGroups(shardGroup); err != nil {
		return fmt.Errorf("raftfsm: record shard groups: %w", err)
	}
	return nil
}
