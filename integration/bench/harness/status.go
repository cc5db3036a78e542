package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Status is the part of a node's GET /v1/status document the benchmarks
// read.
type Status struct {
	Node struct {
		ID        int32  `json:"id"`
		ClusterID string `json:"cluster_id"`
		Ready     bool   `json:"ready"`
	} `json:"node"`
	// Raft lists the Raft groups open on the node: 0 is cluster metadata.
	Raft   []RaftGroupStatus `json:"raft_groups"`
	Topics []TopicStatus     `json:"topics"`
}

// RaftGroupStatus is one Raft group as a node sees it.
type RaftGroupStatus struct {
	RaftGroupID uint32 `json:"raft_group_id"`
	// State is "Leader", "Follower", "Candidate" or "Shutdown".
	State string `json:"state"`
	// LeaderID is the leader's node id in decimal, "" when unknown.
	LeaderID    string `json:"leader_id"`
	Term        uint64 `json:"term"`
	LastIndex   uint64 `json:"last_index"`
	CommitIndex uint64 `json:"commit_index"`
	// AppliedIndex is the last log entry Raft has handed to the node's state
	// machine (no-op and configuration entries included); the state machine
	// may still be writing it.
	AppliedIndex uint64 `json:"applied_index"`
	// StoreApplied is the last command the state machine has written.
	StoreApplied uint64 `json:"store_applied_index"`
	Partitions   int    `json:"partitions"`
}

// TopicStatus is one topic's totals over its partitions, from the node's own
// copy of each partition it carries.
type TopicStatus struct {
	Name          string            `json:"name"`
	Partitions    []PartitionStatus `json:"partitions"`
	LiveKeys      int64             `json:"live_keys"`
	LiveRecords   int64             `json:"live_records"`
	LiveBytes     int64             `json:"live_bytes"`
	HighWatermark int64             `json:"high_watermark"`
}

// PartitionStatus is one partition of a topic on a node.
type PartitionStatus struct {
	Partition   int32  `json:"partition"`
	RaftGroupID uint32 `json:"raft_group_id"`
	// Leader: this node leads the partition's Raft group.
	Leader        bool  `json:"leader"`
	HighWatermark int64 `json:"high_watermark"`
	LiveKeys      int64 `json:"live_keys"`
	LiveBytes     int64 `json:"live_bytes"`
	// Error is set when the node could not read the partition's counters
	// (for example, created in metadata but not yet applied here).
	Error string `json:"error,omitempty"`
}

// RaftGroup returns the node's view of Raft group id, or false when the
// group is not open on the node.
func (s *Status) RaftGroup(id uint32) (RaftGroupStatus, bool) {
	for _, g := range s.Raft {
		if g.RaftGroupID == id {
			return g, true
		}
	}
	return RaftGroupStatus{}, false
}

// Topic returns the named topic's totals, or false.
func (s *Status) Topic(name string) (TopicStatus, bool) {
	for _, t := range s.Topics {
		if t.Name == name {
			return t, true
		}
	}
	return TopicStatus{}, false
}

// statusClient is shared by every status poll. With 10,000 partitions a
// status document runs to megabytes and a busy node takes seconds to build it.
var statusClient = &http.Client{Timeout: 20 * time.Second}

// GetStatus fetches and decodes GET /v1/status from the HTTP address.
func GetStatus(ctx context.Context, httpAddr string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET /v1/status on %s: %s: %s", httpAddr, resp.Status, b)
	}
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("GET /v1/status on %s: %w", httpAddr, err)
	}
	return &s, nil
}
