package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/broker"
)

func TestStatusJSON(t *testing.T) {
	b := newTestBackend(t)
	b.createTopic(t, "users", 2, nil)
	b.createTopic(t, "logs", 1, map[string]string{"cleanup.policy": "delete"})
	b.produce(t, "users", 0, rec("a", "1", 1), rec("b", "22", 1))
	b.produce(t, "users", 0, rec("a", "333", 2)) // replaces a
	b.produce(t, "users", 1, rec("c", "x", 1))
	b.produce(t, "users", 1, rec("c", tombstone, 2))
	b.produce(t, "logs", 0, rec("", "v", 1), rec("", "v", 1))
	b.groups = []broker.GroupSummary{
		{Group: "zeta", State: "Empty", Partitions: []broker.GroupPartition{{Topic: "users", Partition: 0, Committed: 1, HighWatermark: 3, Lag: 2, LiveBacklog: 2}}},
		{Group: "alpha", State: "Stable", ProtocolType: "consumer", Protocol: "range", Generation: 3,
			Members: []broker.MemberSummary{{MemberID: "m1", ClientID: "c1", ClientHost: "/127.0.0.1", Assigned: []broker.TopicPartition{{Topic: "users", Partition: 0}, {Topic: "users", Partition: 1}}}},
			Partitions: []broker.GroupPartition{
				{Topic: "users", Partition: 0, Committed: -1, HighWatermark: 3, Lag: 3, LiveBacklog: 2, Owner: "m1"},
				{Topic: "users", Partition: 1, Committed: 2, HighWatermark: 2, Lag: 0, LiveBacklog: 0, Owner: "m1"},
			}},
	}

	// A produce counter with labels, as the broker registers it.
	produced := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shardcache_broker_produce_records_total", Help: "x"}, []string{"topic"})
	b.Reg.MustRegister(produced)
	produced.WithLabelValues("users").Add(10)
	produced.WithLabelValues("logs").Add(5)

	get := func() statusResponse {
		t.Helper()
		r := call(t, b, "GET", "/v1/status", "", "")
		if r.resp.StatusCode != 200 {
			t.Fatalf("status %d body %q", r.resp.StatusCode, r.body)
		}
		var st statusResponse
		if err := json.Unmarshal(r.body, &st); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		return st
	}
	st := get()
	if !st.Node.Ready || st.Node.ID != 1 || st.Node.ClusterID == "" {
		t.Errorf("node = %+v", st.Node)
	}
	if len(st.Topics) != 2 || st.Topics[0].Name != "logs" || st.Topics[1].Name != "users" {
		t.Fatalf("topics = %+v", st.Topics)
	}
	users := st.Topics[1]
	wantParts := []struct{ hw, keys, records, tombs int64 }{{3, 2, 2, 0}, {2, 0, 1, 1}}
	for i, w := range wantParts {
		p := users.Partitions[i]
		if p.Partition != int32(i) || p.HighWatermark != w.hw || p.LiveKeys != w.keys || p.LiveRecords != w.records || p.Tombstones != w.tombs || p.LiveBytes <= 0 || !p.Leader || p.Error != "" {
			t.Errorf("users/%d = %+v, want %+v", i, p, w)
		}
	}
	if users.LiveKeys != 2 || users.HighWatermark != 5 || users.Tombstones != 1 || users.CleanupPolicy != "compact" {
		t.Errorf("users totals = %+v", users)
	}
	if logs := st.Topics[0]; logs.CleanupPolicy != "delete" || logs.LiveRecords != 2 || logs.HighWatermark != 2 {
		t.Errorf("logs = %+v", logs)
	}
	// Raft: the metadata group and two data groups, all led here.
	if len(st.Raft) != 3 {
		t.Fatalf("raft = %+v", st.Raft)
	}
	parts := 0
	for i, g := range st.Raft {
		if g.RaftGroupID != uint32(i) || g.State != "Leader" || !g.Ready || g.Term == 0 || g.AppliedIndex == 0 || g.CommitIndex < g.AppliedIndex || g.LastIndex < g.CommitIndex {
			t.Errorf("raft group %d = %+v", i, g)
		}
		parts += g.Partitions
	}
	if parts != 3 || st.Raft[0].Partitions != 0 {
		t.Errorf("partitions per group: %+v", st.Raft)
	}
	// Groups come sorted, with totals.
	if len(st.Groups) != 2 || st.Groups[0].Group != "alpha" || st.Groups[1].Group != "zeta" {
		t.Fatalf("groups = %+v", st.Groups)
	}
	alpha := st.Groups[0]
	if alpha.LiveBacklog != 2 || alpha.Lag != 3 || len(alpha.Members) != 1 || len(alpha.Members[0].Assigned) != 2 || alpha.Partitions[0].Owner != "m1" || alpha.Generation != 3 {
		t.Errorf("alpha = %+v", alpha)
	}
	if len(st.Groups[1].Members) != 0 || st.Groups[1].Members == nil {
		t.Errorf("zeta members must be an empty list: %+v", st.Groups[1])
	}
	if st.Rates.ProduceRecordsTotal != 15 {
		t.Errorf("produce total = %v, want 15", st.Rates.ProduceRecordsTotal)
	}
}

func TestRateSampler(t *testing.T) {
	var s rateSampler
	t0 := time.Unix(1000, 0)
	tot := func(v float64) [len(rateCounters)]float64 { return [len(rateCounters)]float64{v, v * 10, v * 2, 0} }
	steps := []struct {
		at        time.Duration
		total     float64
		wantRate  float64
		wantWinds float64
	}{
		{0, 100, 0, 0},                         // first sample: no rate yet
		{500 * time.Millisecond, 150, 0, 0},    // too soon: keeps the old rate
		{2 * time.Second, 300, 100, 2},         // (300-100)/2
		{2500 * time.Millisecond, 999, 100, 2}, // too soon again
		{4 * time.Second, 300, 0, 2},           // no change
		{5 * time.Second, 0, 0, 1},             // reset: never negative
		{7 * time.Second, 1000, 500, 2},        // (1000-0)/2
	}
	for i, st := range steps {
		r := s.sample(t0.Add(st.at), tot(st.total))
		if r.ProduceRecordsPerSec != st.wantRate || r.ProduceBytesPerSec != st.wantRate*10 || r.FetchRecordsPerSec != st.wantRate*2 || r.WindowSeconds != st.wantWinds {
			t.Errorf("step %d: rates %+v, want %v over %v s", i, r, st.wantRate, st.wantWinds)
		}
		if r.ProduceRecordsTotal != st.total {
			t.Errorf("step %d: total %v", i, r.ProduceRecordsTotal)
		}
	}
}

func TestStatusPageAssets(t *testing.T) {
	b := newTestBackend(t)
	tests := []struct {
		path, wantType, wantSub string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/static/app.js"`},
		{"/static/app.js", "text/javascript; charset=utf-8", `fetch("/v1/status"`},
		{"/static/app.js", "text/javascript; charset=utf-8", `fetch("/v1/cluster"`},
		{"/", "text/html; charset=utf-8", `id="cluster-raft-body"`},
		{"/static/style.css", "text/css; charset=utf-8", ".bar"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := call(t, b, "GET", tt.path, "", "")
			if r.resp.StatusCode != 200 {
				t.Fatalf("status %d", r.resp.StatusCode)
			}
			if ct := r.resp.Header.Get("Content-Type"); ct != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantType)
			}
			if !strings.Contains(string(r.body), tt.wantSub) {
				t.Errorf("body lacks %q", tt.wantSub)
			}
			// No external resources: the page works offline.
			if strings.Contains(string(r.body), "http://") && tt.path != "/static/app.js" || strings.Contains(string(r.body), "https://") {
				t.Errorf("%s references an external URL", tt.path)
			}
		})
	}
	if r := call(t, b, "GET", "/static/nope.js", "", ""); r.resp.StatusCode != 404 {
		t.Errorf("missing asset: status %d", r.resp.StatusCode)
	}
	if r := call(t, b, "POST", "/", "", ""); r.resp.StatusCode != 405 {
		t.Errorf("POST /: status %d", r.resp.StatusCode)
	}
}
