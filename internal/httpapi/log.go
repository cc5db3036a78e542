package httpapi

// Log attribute keys used by this package.
const (
	keyTopic     = "topic"
	keyPartition = "partition"
	keyPeer      = "peer_node_id"
	keyError     = "error"
	keyPrincipal = "principal"
	keyRemote    = "remote"
	keyURLPath   = "path"
	keyReason    = "reason"
)
