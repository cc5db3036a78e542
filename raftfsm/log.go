package raftfsm

// Log attribute keys used by this package.
const (
	keyGroup   = "raft_group" // "group" alone is a consumer group
	keyIndex   = "index"
	keyTerm    = "term"
	keyTopic   = "topic"
	keyShard   = "shard"
	keyNodeID  = "node_id"
	keyError   = "error"
	keyCount   = "count"
	keyLibrary = "library"
	keyCluster = "cluster_id"
	keyPeer    = "peer_node_id"
)

// Log attribute keys of snapshot installs.
const (
	keyApplied  = "applied"
	keyRemoved  = "removed"
	keyTables   = "tables"
	keyDuration = "duration"
)
