package broker

// Attribute keys for the broker's structured logs (docs/ARCHITECTURE.md: one place for them).
// Messages are lowercase constant phrases; the data goes in these attributes.
const (
	logKeyShard          = "shard"
	logKeyNodeID         = "node_id"
	logKeyTerm           = "term"
	logKeyAPIKey         = "api_key"
	logKeyAPIVersion     = "api_version"
	logKeyTopic          = "topic"
	logKeyPartition      = "partition"
	logKeyRemote         = "remote"
	logKeyClientID       = "client_id"
	logKeyCorrelationID  = "correlation_id"
	logKeySize           = "size"
	logKeyError          = "err"
	logKeyStack          = "stack"
	logKeyAddr           = "addr"
	logKeyMaxConnections = "max_connections"
	logKeyRefused        = "refused"
	logKeyReason         = "reason"
	logKeyTimeout        = "timeout"
	logKeyListener       = "listener"
	logKeyMechanism      = "mechanism"
	logKeyUser           = "user"
	logKeyPrincipal      = "principal"
)
