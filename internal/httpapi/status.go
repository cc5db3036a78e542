package httpapi

// The status page and its data.
//
//	GET /            the status page (status/index.html, embedded)
//	GET /static/...  its CSS and JS (embedded; no CDN, no build step)
//	GET /v1/status   the JSON the page polls every few seconds
//
// /v1/status reads only in-memory state: topic metadata, each shard's counters
// (shardstore.State), each Raft group's indexes (raftfsm.GroupStatuses), the
// consumer groups the coordinator knows (Backend.Groups) and the broker's
// produce/fetch counters from the shared Prometheus registry. Rates are the
// counters' change since the previous sample at least rateWindow old, so every
// client polling the page sees the same rates.

import (
	"embed"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/shardcache/shardcache/broker"
)

//go:embed status
var statusFiles embed.FS

// rateWindow is the least time between two samples of the traffic counters.
const rateWindow = time.Second

// Counters of the broker's traffic that the page shows as rates.
var rateCounters = [...]string{
	"shardcache_broker_produce_records_total",
	"shardcache_broker_produce_bytes_total",
	"shardcache_broker_fetch_records_total",
	"shardcache_broker_fetch_bytes_total",
}

// statusResponse is the /v1/status document.
type statusResponse struct {
	// TimeMs is when the document was built (ms since the epoch).
	TimeMs int64      `json:"time_ms"`
	Node   nodeStatus `json:"node"`
	// Raft lists the node's Raft groups: 0 is cluster metadata.
	Raft   []raftStatus  `json:"raft_groups"`
	Topics []topicStatus `json:"topics"`
	Groups []groupStatus `json:"groups"`
	Rates  rates         `json:"rates"`
}

type nodeStatus struct {
	ID            int32   `json:"id"`
	ClusterID     string  `json:"cluster_id"`
	Ready         bool    `json:"ready"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

type raftStatus struct {
	RaftGroupID  uint32 `json:"raft_group_id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// StoreApplied is the last command the state machine has written
	// (raftfsm.GroupStatus.StoreApplied); applied_index can be ahead of it.
	StoreApplied uint64 `json:"store_applied_index"`
	Ready        bool   `json:"ready"`
	// Partitions counts the partitions the group carries (0 for metadata).
	Partitions int `json:"partitions"`
}

type topicStatus struct {
	Name          string            `json:"name"`
	CleanupPolicy string            `json:"cleanup_policy"`
	Partitions    []partitionStatus `json:"partitions"`
	// Totals over the partitions.
	LiveKeys      int64 `json:"live_keys"`
	LiveRecords   int64 `json:"live_records"`
	LiveBytes     int64 `json:"live_bytes"`
	Tombstones    int64 `json:"tombstones"`
	HighWatermark int64 `json:"high_watermark"` // sum of the partitions'
}

type partitionStatus struct {
	Partition      int32  `json:"partition"`
	Shard          uint64 `json:"shard"`
	RaftGroupID    uint32 `json:"raft_group_id"`
	Leader         bool   `json:"leader"`
	HighWatermark  int64  `json:"high_watermark"`
	LogStartOffset int64  `json:"log_start_offset"`
	LiveKeys       int64  `json:"live_keys"`
	LiveRecords    int64  `json:"live_records"`
	LiveBytes      int64  `json:"live_bytes"`
	Tombstones     int64  `json:"tombstones"`
	// Error is set when the shard's counters could not be read (for example a
	// partition created in metadata and not yet applied on this node).
	Error string `json:"error,omitempty"`
}

type groupStatus struct {
	Group        string            `json:"group"`
	State        string            `json:"state"`
	ProtocolType string            `json:"protocol_type"`
	Protocol     string            `json:"protocol"`
	Generation   int32             `json:"generation"`
	Members      []memberStatus    `json:"members"`
	Partitions   []groupPartStatus `json:"partitions"`
	// Totals over the partitions.
	Lag         int64 `json:"lag"`
	LiveBacklog int64 `json:"live_backlog"`
}

type memberStatus struct {
	MemberID   string           `json:"member_id"`
	InstanceID string           `json:"instance_id"`
	ClientID   string           `json:"client_id"`
	ClientHost string           `json:"client_host"`
	Assigned   []topicPartition `json:"assigned"`
}

type topicPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

type groupPartStatus struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
	LiveBacklog   int64  `json:"live_backlog"`
	Owner         string `json:"owner"`
}

// rates are per-second rates of the broker's traffic counters, with the totals.
type rates struct {
	ProduceRecordsPerSec float64 `json:"produce_records_per_sec"`
	ProduceBytesPerSec   float64 `json:"produce_bytes_per_sec"`
	FetchRecordsPerSec   float64 `json:"fetch_records_per_sec"`
	FetchBytesPerSec     float64 `json:"fetch_bytes_per_sec"`
	ProduceRecordsTotal  float64 `json:"produce_records_total"`
	ProduceBytesTotal    float64 `json:"produce_bytes_total"`
	FetchRecordsTotal    float64 `json:"fetch_records_total"`
	FetchBytesTotal      float64 `json:"fetch_bytes_total"`
	// WindowSeconds is the interval the rates were measured over (0 before
	// the second sample).
	WindowSeconds float64 `json:"window_seconds"`
}

// rateSampler keeps the last sample of the traffic counters.
type rateSampler struct {
	mu    sync.Mutex
	at    time.Time
	last  [len(rateCounters)]float64
	rates [len(rateCounters)]float64
	win   float64
}

// sample folds totals taken at now into the rates and returns them.
func (s *rateSampler) sample(now time.Time, totals [len(rateCounters)]float64) rates {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.at.IsZero():
		s.at, s.last = now, totals
	case now.Sub(s.at) >= rateWindow:
		dt := now.Sub(s.at).Seconds()
		for i := range totals {
			d := totals[i] - s.last[i]
			if d < 0 { // counters reset (not expected within a process)
				d = 0
			}
			s.rates[i] = d / dt
		}
		s.win = dt
		s.at, s.last = now, totals
	}
	return rates{
		ProduceRecordsPerSec: s.rates[0], ProduceBytesPerSec: s.rates[1],
		FetchRecordsPerSec: s.rates[2], FetchBytesPerSec: s.rates[3],
		ProduceRecordsTotal: totals[0], ProduceBytesTotal: totals[1],
		FetchRecordsTotal: totals[2], FetchBytesTotal: totals[3],
		WindowSeconds: s.win,
	}
}

// counterTotals sums each rate counter over its labels.
func (h *Handler) counterTotals() [len(rateCounters)]float64 {
	var out [len(rateCounters)]float64
	mfs, err := h.cfg.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		h.log.Warn("gathering metrics for the status page failed", keyError, err)
		return out
	}
	for _, mf := range mfs {
		for i, name := range rateCounters {
			if mf.GetName() == name {
				out[i] = sumCounter(mf)
			}
		}
	}
	return out
}

func sumCounter(mf *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range mf.GetMetric() {
		if c := m.GetCounter(); c != nil {
			sum += c.GetValue()
		}
	}
	return sum
}

// status serves GET /v1/status.
func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	b, aerr := h.backendOpen()
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, h.buildStatus(b))
}

// backendOpen is backend without the readiness check: the status page shows
// a node that is still starting.
func (h *Handler) backendOpen() (*Backend, *apiError) {
	var b *Backend
	if h.cfg.Backend != nil {
		b = h.cfg.Backend()
	}
	if b == nil || b.Node == nil || b.Store == nil {
		return nil, errorf(http.StatusServiceUnavailable, codeNotReady, "the node is starting: storage is not open yet")
	}
	return b, nil
}

func (h *Handler) buildStatus(b *Backend) *statusResponse {
	now := time.Now()
	st := &statusResponse{
		TimeMs: now.UnixMilli(),
		Node: nodeStatus{
			ID:            b.Node.NodeID(),
			ClusterID:     b.Node.ClusterID(),
			Ready:         b.Node.Ready(),
			UptimeSeconds: now.Sub(h.started).Seconds(),
		},
		Topics: []topicStatus{},
		Groups: []groupStatus{},
	}
	perGroup := map[uint32]int{}
	for _, t := range b.Node.Topics() {
		ts := topicStatus{Name: t.Name, CleanupPolicy: t.Config.PolicyValue(), Partitions: make([]partitionStatus, 0, len(t.Partitions))}
		for _, pi := range t.Partitions {
			perGroup[pi.Group]++
			ps := partitionStatus{Partition: pi.Partition, Shard: uint64(pi.Shard), RaftGroupID: pi.Group, Leader: b.Node.IsLeader(pi.Group)}
			s, err := b.Store.State(pi.Shard)
			if err != nil {
				ps.Error = err.Error()
			} else {
				ps.HighWatermark, ps.LogStartOffset = s.HighWatermark, s.LogStartOffset
				ps.LiveKeys, ps.LiveRecords, ps.LiveBytes, ps.Tombstones = s.LiveKeys, s.LiveRecords, s.LiveBytes, s.Tombstones
			}
			ts.LiveKeys += ps.LiveKeys
			ts.LiveRecords += ps.LiveRecords
			ts.LiveBytes += ps.LiveBytes
			ts.Tombstones += ps.Tombstones
			ts.HighWatermark += ps.HighWatermark
			ts.Partitions = append(ts.Partitions, ps)
		}
		st.Topics = append(st.Topics, ts)
	}
	for _, g := range b.Node.GroupStatuses() {
		leaderID := "" // the leader's node id in decimal (not its Raft server id)
		if g.LeaderNode >= 0 {
			leaderID = strconv.Itoa(int(g.LeaderNode))
		}
		st.Raft = append(st.Raft, raftStatus{
			RaftGroupID: g.Group, State: g.State, Leader: g.Leader, LeaderID: leaderID, Term: g.Term,
			LastIndex: g.LastIndex, CommitIndex: g.CommitIndex, AppliedIndex: g.AppliedIndex,
			StoreApplied: g.StoreApplied, Ready: g.Ready, Partitions: perGroup[g.Group],
		})
	}
	if b.Groups != nil {
		gs := b.Groups()
		sort.Slice(gs, func(i, j int) bool { return gs[i].Group < gs[j].Group })
		for _, g := range gs {
			st.Groups = append(st.Groups, newGroupStatus(g))
		}
	}
	st.Rates = h.rates.sample(now, h.counterTotals())
	return st
}

func newGroupStatus(g broker.GroupSummary) groupStatus {
	gs := groupStatus{
		Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Protocol: g.Protocol, Generation: g.Generation,
		Members:    make([]memberStatus, 0, len(g.Members)),
		Partitions: make([]groupPartStatus, 0, len(g.Partitions)),
	}
	for _, m := range g.Members {
		ms := memberStatus{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assigned: make([]topicPartition, 0, len(m.Assigned))}
		for _, a := range m.Assigned {
			ms.Assigned = append(ms.Assigned, topicPartition{Topic: a.Topic, Partition: a.Partition})
		}
		gs.Members = append(gs.Members, ms)
	}
	for _, p := range g.Partitions {
		gs.Partitions = append(gs.Partitions, groupPartStatus{
			Topic: p.Topic, Partition: p.Partition, Committed: p.Committed, HighWatermark: p.HighWatermark,
			Lag: p.Lag, LiveBacklog: p.LiveBacklog, Owner: p.Owner,
		})
		gs.Lag += p.Lag
		gs.LiveBacklog += p.LiveBacklog
	}
	return gs
}

// statusAssets serves the embedded page files.
func statusAssets() (index []byte, static http.Handler) {
	sub, err := fs.Sub(statusFiles, "status")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	index, err = fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	return index, http.StripPrefix("/static/", http.FileServerFS(sub))
}

// statusPage serves GET / (exactly): the page itself.
func (h *Handler) statusPage(w http.ResponseWriter, _ *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(h.indexHTML)
}
