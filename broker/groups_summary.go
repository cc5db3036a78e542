package broker

// CONTRACT STUB: GroupSummary is what the status page and the HTTP API show of
// consumer groups. The consumer-group engineer fills in Groups.

// GroupSummary describes one consumer group as the coordinator knows it.
type GroupSummary struct {
	Group        string
	State        string // Empty, PreparingRebalance, CompletingRebalance, Stable, Dead
	ProtocolType string // "consumer" for Kafka consumers
	Protocol     string // the chosen assignor, e.g. "range"
	Generation   int32
	Members      []MemberSummary
	// Partitions lists every partition the group has a committed offset for or
	// that a member is assigned, in topic then partition order.
	Partitions []GroupPartition
}

// MemberSummary is one member of a group.
type MemberSummary struct {
	MemberID   string
	InstanceID string // static membership (group.instance.id), "" if none
	ClientID   string
	ClientHost string
	// Assigned lists the partitions the member's assignment names, decoded
	// from the consumer protocol when the group uses it.
	Assigned []TopicPartition
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// GroupPartition is a group's position in one partition.
type GroupPartition struct {
	Topic     string
	Partition int32
	// Committed is the committed offset, -1 if none.
	Committed     int64
	HighWatermark int64
	// Lag is HighWatermark - Committed (HighWatermark - LogStartOffset without a commit).
	Lag int64
	// LiveBacklog counts the live records at or after the committed offset: what
	// the group still has to read, bounded by the shard's live keys.
	LiveBacklog int64
	// Owner is the member id assigned the partition, "" if none.
	Owner string
}

// Groups lists every group the coordinator knows, by name.
func (b *Broker) Groups() []GroupSummary { return nil }
