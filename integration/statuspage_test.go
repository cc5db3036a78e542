package integration

// The status page in headless Chromium: integration/statuspage/check.mjs
// (playwright-core over Debian's /usr/bin/chromium, installed by
// integration/statuspage/deps.sh) loads http://<http-addr>/ of a broker holding
// data, waits for two renders of /v1/status, and reports the numbers shown; this
// test compares them with the Kafka admin API (kadm) and with what it produced.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// shownPage is what check.mjs prints.
type shownPage struct {
	Topics map[string]struct {
		LiveKeys      int64 `json:"live_keys"`
		Tombstones    int64 `json:"tombstones"`
		LiveBytes     int64 `json:"live_bytes"`
		HighWatermark int64 `json:"high_watermark"`
		Partitions    map[string]struct {
			LiveKeys       int64 `json:"live_keys"`
			Tombstones     int64 `json:"tombstones"`
			LiveBytes      int64 `json:"live_bytes"`
			HighWatermark  int64 `json:"high_watermark"`
			LogStartOffset int64 `json:"log_start_offset"`
		} `json:"partitions"`
	} `json:"topics"`
	Groups map[string]struct {
		Members     int              `json:"members"`
		LiveBacklog int64            `json:"live_backlog"`
		Lag         int64            `json:"lag"`
		Partitions  map[string]int64 `json:"partitions"`
	} `json:"groups"`
	Raft []struct {
		RaftGroupID  int    `json:"raft_group_id"`
		Term         uint64 `json:"term"`
		AppliedIndex uint64 `json:"applied_index"`
	} `json:"raft_groups"`
	Cluster struct {
		Nodes []struct {
			ID    int32  `json:"id"`
			State string `json:"state"`
			Self  bool   `json:"self"`
		} `json:"nodes"`
		RaftGroups []struct {
			RaftGroupID int     `json:"raft_group_id"`
			Replicas    []int32 `json:"replicas"`
			Leader      int32   `json:"leader"`
			Term        uint64  `json:"term"`
		} `json:"raft_groups"`
	} `json:"cluster"`
	Summary struct {
		Topics   int   `json:"topics"`
		LiveKeys int64 `json:"live_keys"`
	} `json:"summary"`
	NodeReady bool     `json:"node_ready"`
	Errors    []string `json:"errors"`
}

// artifactDir is $SHARDCACHE_TEST_ARTIFACTS (created) or a test temp dir.
func artifactDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SHARDCACHE_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func TestStatusPage(t *testing.T) {
	requireTool(t, "node")
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("/usr/bin/chromium: %v: run integration/statuspage/deps.sh (make test does)", err)
	}
	if _, err := os.Stat("statuspage/node_modules/playwright-core"); err != nil {
		t.Fatalf("playwright-core is not installed: run integration/statuspage/deps.sh (make test does): %v", err)
	}
	b := startBroker(t)
	if b.HTTPAddr == "" {
		t.Skip("no HTTP address for the cluster (set SHARDCACHE_TEST_HTTP)")
	}
	adm := b.Admin(t)
	users := topicName(t)
	events := topicName(t) + "-log"
	createTopic(t, adm, users, 3, nil)
	createTopic(t, adm, events, 1, map[string]string{"cleanup.policy": "delete"})

	// users: 300 keys written twice over 3 partitions (the second write replaces
	// the first), then 30 tombstones. events: 50 keyless records.
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	wantKeys := map[int32]int64{}
	wantTombs := map[int32]int64{}
	for round := 0; round < 2; round++ {
		for i := 0; i < 300; i++ {
			p := int32(i % 3)
			recs = append(recs, &kgo.Record{Topic: users, Partition: p, Key: []byte("user-" + strconv.Itoa(i)), Value: []byte(fmt.Sprintf("profile %d/%d", i, round))})
			if round == 0 {
				wantKeys[p]++
			}
		}
	}
	for i := 0; i < 300; i += 10 {
		p := int32(i % 3)
		recs = append(recs, &kgo.Record{Topic: users, Partition: p, Key: []byte("user-" + strconv.Itoa(i))})
		wantKeys[p]--
		wantTombs[p]++
	}
	for i := 0; i < 50; i++ {
		recs = append(recs, &kgo.Record{Topic: events, Value: []byte("event " + strconv.Itoa(i))})
	}
	produceSync(t, cl, recs...)

	// A consumer group with committed offsets, when the broker has groups.
	const group = "statuspage-group"
	groupsOn := commitGroupOffsets(t, adm, group, users, map[int32]int64{0: 50, 1: 0})

	ends := endOffsets(t, adm, users)
	starts := startOffsets(t, adm, users)
	eventsEnd := endOffsets(t, adm, events)

	shot := filepath.Join(artifactDir(t), "statuspage.png")
	page := runStatusCheck(t, b.HTTPAddr, shot, "")
	if len(page.Errors) > 0 {
		t.Errorf("page errors: %v", page.Errors)
	}
	if !page.NodeReady {
		t.Errorf("page does not show the node ready")
	}

	// Numbers shown against the admin API and what was produced.
	u, ok := page.Topics[users]
	if !ok {
		t.Fatalf("page shows no topic %s: %+v", users, page.Topics)
	}
	var sumKeys, sumHW int64
	for p := int32(0); p < 3; p++ {
		ps, ok := u.Partitions[strconv.Itoa(int(p))]
		if !ok {
			t.Fatalf("page shows no partition %d of %s", p, users)
		}
		if ps.HighWatermark != ends[p] || ps.LogStartOffset != starts[p] {
			t.Errorf("partition %d: shown high watermark %d / log start %d, admin API says %d / %d", p, ps.HighWatermark, ps.LogStartOffset, ends[p], starts[p])
		}
		if ps.LiveKeys != wantKeys[p] || ps.Tombstones != wantTombs[p] {
			t.Errorf("partition %d: shown %d live keys, %d tombstones; want %d, %d", p, ps.LiveKeys, ps.Tombstones, wantKeys[p], wantTombs[p])
		}
		if ps.LiveBytes <= 0 {
			t.Errorf("partition %d: shown live bytes %d", p, ps.LiveBytes)
		}
		sumKeys += ps.LiveKeys
		sumHW += ps.HighWatermark
	}
	if u.LiveKeys != 270 || u.LiveKeys != sumKeys || u.HighWatermark != sumHW || u.Tombstones != 30 {
		t.Errorf("topic row: %d live keys, %d tombstones, high watermark %d; want 270, 30, %d", u.LiveKeys, u.Tombstones, u.HighWatermark, sumHW)
	}
	if ev := page.Topics[events]; ev.HighWatermark != eventsEnd[0] || ev.HighWatermark != 50 {
		t.Errorf("%s: shown high watermark %d, admin API says %d (50 written)", events, ev.HighWatermark, eventsEnd[0])
	}
	if page.Summary.Topics != len(page.Topics) || page.Summary.Topics < 2 {
		t.Errorf("summary shows %d topics, table %d", page.Summary.Topics, len(page.Topics))
	}

	// Raft rows against /v1/status read afterwards: same terms, applied indexes
	// never ahead of the node's.
	st := getStatusJSON(t, b.HTTPAddr)
	if len(page.Raft) != len(st.Raft) || len(page.Raft) < 2 {
		t.Fatalf("page shows %d raft groups, /v1/status %d", len(page.Raft), len(st.Raft))
	}
	for i, g := range page.Raft {
		if g.RaftGroupID != st.Raft[i].RaftGroupID || g.Term != st.Raft[i].Term || g.Term == 0 || g.AppliedIndex == 0 || g.AppliedIndex > st.Raft[i].AppliedIndex {
			t.Errorf("raft row %d shown %+v, /v1/status %+v", i, g, st.Raft[i])
		}
	}

	// The cluster section (/v1/cluster): one node, alive, carrying and leading
	// every Raft group /v1/status lists.
	if cl := page.Cluster; len(externalSeeds) == 0 {
		if len(cl.Nodes) != 1 || cl.Nodes[0].State != "alive" || !cl.Nodes[0].Self {
			t.Errorf("cluster section shows nodes %+v, want one alive node", cl.Nodes)
		} else if len(cl.RaftGroups) != len(st.Raft) {
			t.Errorf("cluster section shows %d raft groups, /v1/status %d", len(cl.RaftGroups), len(st.Raft))
		} else {
			self := cl.Nodes[0].ID
			for i, g := range cl.RaftGroups {
				if g.RaftGroupID != st.Raft[i].RaftGroupID || len(g.Replicas) != 1 || g.Replicas[0] != self || g.Leader != self || g.Term == 0 {
					t.Errorf("cluster section raft group row %d: %+v", i, g)
				}
			}
		}
	} else if len(cl.Nodes) == 0 || len(cl.RaftGroups) == 0 {
		t.Errorf("cluster section is empty: %+v", cl)
	}

	t.Run("groups rendered from a fixture", func(t *testing.T) {
		checkGroupsFixture(t, b.HTTPAddr)
	})
	if !groupsOn {
		t.Logf("consumer groups: OffsetCommit not supported by this broker yet; live group numbers not checked")
		return
	}
	g, ok := page.Groups[group]
	if !ok {
		t.Fatalf("page shows no group %s (groups shown: %v)", group, page.Groups)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		t.Fatalf("kadm lag: %v", err)
	}
	var wantLag int64
	for _, l := range lags[group].Lag.Sorted() {
		if l.Topic == users && l.Commit.At >= 0 {
			wantLag += l.Lag
		}
	}
	if g.Lag != wantLag || g.Members != 0 {
		t.Errorf("group %s: shown lag %d, %d members; kadm says lag %d, no members", group, g.Lag, g.Members, wantLag)
	}
	for _, p := range []int32{0, 1} {
		backlog, ok := g.Partitions[fmt.Sprintf("%s/%d", users, p)]
		if !ok || backlog <= 0 || backlog > ends[p] {
			t.Errorf("group %s partition %d: shown backlog %d (present %v), high watermark %d", group, p, backlog, ok, ends[p])
		}
	}
}

// runStatusCheck runs check.mjs against the broker's page and returns what it
// read; fixture, when set, is served as /v1/status instead of the broker's.
func runStatusCheck(t testing.TB, httpAddr, shot, fixture string) shownPage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "check.mjs", "http://"+httpAddr+"/", shot)
	cmd.Dir = "statuspage"
	cmd.WaitDelay = 10 * time.Second
	if fixture != "" {
		cmd.Env = append(os.Environ(), "STATUS_FIXTURE="+fixture)
	}
	var stderr outputBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("status page screenshot: %s", shot)
	if err != nil {
		t.Fatalf("check.mjs: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var page shownPage
	if err := json.Unmarshal(out, &page); err != nil {
		t.Fatalf("check.mjs output %q: %v", out, err)
	}
	return page
}

// checkGroupsFixture renders the broker's own /v1/status with two consumer
// groups added, and checks the group numbers the page shows.
func checkGroupsFixture(t *testing.T, httpAddr string) {
	resp, err := http.Get("http://" + httpAddr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	groups := []map[string]any{
		{"group": "billing", "state": "Stable", "protocol_type": "consumer", "protocol": "range", "generation": 4, "lag": 1500, "live_backlog": 1200,
			"members": []map[string]any{
				{"member_id": "m-1", "client_id": "billing-1", "client_host": "/10.0.0.7", "assigned": []map[string]any{{"topic": "orders", "partition": 0}, {"topic": "orders", "partition": 1}}},
				{"member_id": "m-2", "client_id": "billing-2", "client_host": "/10.0.0.8", "assigned": []map[string]any{{"topic": "orders", "partition": 2}}},
			},
			"partitions": []map[string]any{
				{"topic": "orders", "partition": 0, "committed": 100, "high_watermark": 1100, "lag": 1000, "live_backlog": 900, "owner": "m-1"},
				{"topic": "orders", "partition": 1, "committed": 500, "high_watermark": 1000, "lag": 500, "live_backlog": 300, "owner": "m-1"},
				{"topic": "orders", "partition": 2, "committed": 700, "high_watermark": 700, "lag": 0, "live_backlog": 0, "owner": "m-2"},
			}},
		{"group": "flink-enricher", "state": "Empty", "generation": 0, "lag": 7, "live_backlog": 5, "members": []map[string]any{},
			"partitions": []map[string]any{{"topic": "users", "partition": 0, "committed": 3, "high_watermark": 10, "lag": 7, "live_backlog": 5, "owner": ""}}},
	}
	doc["groups"] = groups
	fixture := filepath.Join(t.TempDir(), "status.json")
	data, _ := json.Marshal(doc)
	if err := os.WriteFile(fixture, data, 0o644); err != nil {
		t.Fatal(err)
	}
	page := runStatusCheck(t, httpAddr, filepath.Join(artifactDir(t), "statuspage-groups.png"), fixture)
	if len(page.Errors) > 0 {
		t.Errorf("page errors: %v", page.Errors)
	}
	billing, flink := page.Groups["billing"], page.Groups["flink-enricher"]
	if len(page.Groups) != 2 || billing.Members != 2 || billing.LiveBacklog != 1200 || billing.Lag != 1500 ||
		billing.Partitions["orders/0"] != 900 || billing.Partitions["orders/1"] != 300 || len(billing.Partitions) != 3 ||
		flink.Members != 0 || flink.LiveBacklog != 5 || flink.Partitions["users/0"] != 5 {
		t.Errorf("groups shown: %+v", page.Groups)
	}
}

// commitGroupOffsets commits offsets for a memberless group (as Flink does) and
// reports false, committing nothing, when the broker does not advertise
// OffsetCommit (consumer groups not implemented yet).
func commitGroupOffsets(t testing.TB, adm *kadm.Client, group, topic string, offsets map[int32]int64) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatalf("api versions: %v", err)
	}
	supported := false
	vs.Each(func(v kadm.BrokerApiVersions) {
		v.EachKeySorted(func(key, _, _ int16) {
			if key == 8 { // OffsetCommit
				supported = true
			}
		})
	})
	if !supported {
		return false
	}
	var os kadm.Offsets
	for p, o := range offsets {
		os.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	resp, err := adm.CommitOffsets(ctx, group, os)
	if err != nil {
		t.Fatalf("commit offsets for %s: %v", group, err)
	}
	if err := resp.Error(); err != nil {
		t.Fatalf("commit offsets for %s: %v", group, err)
	}
	return true
}

// statusDoc is the part of /v1/status the test reads.
type statusDoc struct {
	Raft []struct {
		RaftGroupID  int    `json:"raft_group_id"`
		Term         uint64 `json:"term"`
		AppliedIndex uint64 `json:"applied_index"`
	} `json:"raft_groups"`
}

func getStatusJSON(t testing.TB, httpAddr string) statusDoc {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/status: %d %v", resp.StatusCode, err)
	}
	return st
}

// outputBuffer collects a child's stderr.
type outputBuffer struct{ b []byte }

func (o *outputBuffer) Write(p []byte) (int, error) { o.b = append(o.b, p...); return len(p), nil }
func (o *outputBuffer) String() string              { return string(o.b) }
