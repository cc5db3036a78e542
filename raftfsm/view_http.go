package raftfsm

// Read-only accessors for the HTTP cluster view (internal/httpapi's
// GET /v1/cluster). Like view.go they read memory only.

// DataGroupCount is the number of data Raft groups (1..DataGroupCount) the
// cluster chose at bootstrap, as this node's metadata knows it; 0 before the
// cluster is initialized (or while this node is still joining).
func (n *Node) DataGroupCount() int { return n.metadata().settings.dataGroups }
