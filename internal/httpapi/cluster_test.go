package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardcache/shardcache/raftfsm"
	"github.com/shardcache/shardcache/shardstore"
)

// keysOf returns the sorted keys of a JSON object.
func keysOf(t testing.TB, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestClusterSingleNode(t *testing.T) {
	b := newTestBackend(t)

	r := call(t, b, "GET", "/v1/cluster", "", "")
	if r.resp.StatusCode != 200 || r.resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/cluster: %d %q %s", r.resp.StatusCode, r.resp.Header.Get("Content-Type"), r.body)
	}
	// The exact field names: Raft groups are never just "group".
	var raw struct {
		Nodes      []json.RawMessage `json:"nodes"`
		RaftGroups []json.RawMessage `json:"raft_groups"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(keysOf(t, r.body), ","), "cluster_id,metadata_leader,node_id,nodes,raft_groups"; got != want {
		t.Errorf("top-level fields %s, want %s", got, want)
	}
	if len(raw.Nodes) != 1 || len(raw.RaftGroups) == 0 {
		t.Fatalf("body %s", r.body)
	}
	if got, want := strings.Join(keysOf(t, raw.Nodes[0]), ","), "cluster_addr,http_addr,id,kafka_addr,rack,ready,state"; got != want {
		t.Errorf("node fields %s, want %s", got, want)
	}
	if got, want := strings.Join(keysOf(t, raw.RaftGroups[0]), ","), "applied_index,commit_index,leader,nonvoters,raft_group_id,replica_lag,replicas,reported_by,term,voters"; got != want {
		t.Errorf("raft group fields %s, want %s", got, want)
	}

	var c clusterResponse
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	if c.ClusterID == "" || c.ClusterID != b.Node.ClusterID() || c.NodeID != 1 || c.MetadataLeader != 1 {
		t.Errorf("cluster %q node %d metadata leader %d", c.ClusterID, c.NodeID, c.MetadataLeader)
	}
	if n := c.Nodes[0]; n.ID != 1 || n.State != nodeAlive || n.Ready == nil || !*n.Ready || n.Error != "" {
		t.Errorf("node = %+v", n)
	}
	// Metadata and the two data groups nodetest opens, all on node 1.
	if len(c.RaftGroups) != 3 {
		t.Fatalf("raft groups = %+v", c.RaftGroups)
	}
	for i, g := range c.RaftGroups {
		if g.RaftGroupID != uint32(i) || !slices.Equal(g.Replicas, []int32{1}) || g.Leader != 1 || g.ReportedBy != 1 ||
			g.Term == 0 || !slices.Equal(g.Voters, []int32{1}) || len(g.Nonvoters) != 0 || g.CommitIndex == 0 || g.AppliedIndex == 0 {
			t.Errorf("raft group %d = %+v", i, g)
		}
		if lag, ok := g.ReplicaLag["1"]; !ok || lag == nil || len(g.ReplicaLag) != 1 || *lag > g.CommitIndex {
			t.Errorf("raft group %d replica_lag = %v", i, g.ReplicaLag)
		}
	}

	// /v1/cluster/local: this node's own Raft groups.
	r = call(t, b, "GET", "/v1/cluster/local", "", "")
	if r.resp.StatusCode != 200 {
		t.Fatalf("GET /v1/cluster/local: %d %s", r.resp.StatusCode, r.body)
	}
	var l localResponse
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatal(err)
	}
	if l.NodeID != 1 || l.ClusterID != c.ClusterID || !l.Ready || len(l.RaftGroups) != 3 {
		t.Fatalf("local = %+v", l)
	}
	for i, g := range l.RaftGroups {
		if g.RaftGroupID != uint32(i) || g.State != "Leader" || g.Leader != 1 || !g.Ready || g.AppliedIndex == 0 || !slices.Equal(g.Voters, []int32{1}) {
			t.Errorf("local raft group %d = %+v", i, g)
		}
	}
	var rawLocal struct {
		RaftGroups []json.RawMessage `json:"raft_groups"`
	}
	if err := json.Unmarshal(r.body, &rawLocal); err != nil || len(rawLocal.RaftGroups) == 0 {
		t.Fatalf("%s: %v", r.body, err)
	}
	if got, want := strings.Join(keysOf(t, rawLocal.RaftGroups[0]), ","), "applied_index,commit_index,last_index,leader,nonvoters,raft_group_id,ready,state,term,voters"; got != want {
		t.Errorf("local raft group fields %s, want %s", got, want)
	}
}

// TestClusterBadRequests: malformed ids, unknown ids, the last node, wrong
// methods and oversized paths answer clear JSON errors.
func TestClusterBadRequests(t *testing.T) {
	b := newTestBackend(t)
	huge := strings.Repeat("9", 64<<10)
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantCode           string // "" for errors of the route table ({"error"} only)
		wantAllow          string
	}{
		{"last node", "DELETE", "/v1/cluster/nodes/1", 400, codeBadRequest, ""},
		{"unknown node", "DELETE", "/v1/cluster/nodes/99", 404, codeUnknownNode, ""},
		{"largest id", "DELETE", "/v1/cluster/nodes/2147483647", 404, codeUnknownNode, ""},
		{"leading zeros", "DELETE", "/v1/cluster/nodes/0099", 404, codeUnknownNode, ""},
		{"not a number", "DELETE", "/v1/cluster/nodes/abc", 400, codeBadRequest, ""},
		{"negative", "DELETE", "/v1/cluster/nodes/-1", 400, codeBadRequest, ""},
		{"plus sign", "DELETE", "/v1/cluster/nodes/+1", 400, codeBadRequest, ""},
		{"over int32", "DELETE", "/v1/cluster/nodes/2147483648", 400, codeBadRequest, ""},
		{"space", "DELETE", "/v1/cluster/nodes/%201", 400, codeBadRequest, ""},
		{"hex", "DELETE", "/v1/cluster/nodes/0x1", 400, codeBadRequest, ""},
		{"huge id", "DELETE", "/v1/cluster/nodes/" + huge, 400, codeBadRequest, ""},
		{"empty id", "DELETE", "/v1/cluster/nodes/", 404, "", ""},
		{"extra segment", "DELETE", "/v1/cluster/nodes/1/x", 404, "", ""},
		{"get a node", "GET", "/v1/cluster/nodes/1", 405, "", "DELETE"},
		{"post a node", "POST", "/v1/cluster/nodes/1", 405, "", "DELETE"},
		{"put a node", "PUT", "/v1/cluster/nodes/abc", 405, "", "DELETE"},
		{"delete the cluster", "DELETE", "/v1/cluster", 405, "", "GET, HEAD"},
		{"post the cluster", "POST", "/v1/cluster", 405, "", "GET, HEAD"},
		{"delete local", "DELETE", "/v1/cluster/local", 405, "", "GET, HEAD"},
		{"trailing slash", "GET", "/v1/cluster/", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, b, tt.method, tt.path, "", "")
			if r.resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %.200q)", r.resp.StatusCode, tt.wantStatus, r.body)
			}
			if got := r.resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if len(r.body) > 512 {
				t.Errorf("error body of %d bytes: the message must not echo the whole request", len(r.body))
			}
			if tt.wantCode == "" {
				var e errorBody
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
					t.Errorf("body %q: %v", r.body, err)
				}
				return
			}
			if code := r.errorCode(t); code != tt.wantCode {
				t.Errorf("code %q, want %q (body %s)", code, tt.wantCode, r.body)
			}
		})
	}
	// The node is still there after the refused removals.
	if ns := b.Node.Nodes(); len(ns) != 1 || ns[0].Removed {
		t.Fatalf("nodes after refused removals: %+v", ns)
	}

	// A path beyond the server's header limit is refused before any handler.
	r := call(t, b, "GET", "/v1/cluster/nodes/"+strings.Repeat("9", 2<<20), "", "")
	if r.resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB path: status %d", r.resp.StatusCode)
	}
}

// TestClusterNotReady: before the node is open the cluster endpoints answer
// 503 not_ready (a malformed id is still 400: it is checked first).
func TestClusterNotReady(t *testing.T) {
	srv := &testBackend{}
	srv.Srv = newServer(t, New(Config{Backend: func() *Backend { return nil }, Logger: testLogger(t)}))
	for _, rq := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/cluster", 503, codeNotReady},
		{"GET", "/v1/cluster/local", 503, codeNotReady},
		{"DELETE", "/v1/cluster/nodes/2", 503, codeNotReady},
		{"DELETE", "/v1/cluster/nodes/x", 400, codeBadRequest},
	} {
		r := call(t, srv, rq.method, rq.path, "", "")
		if r.resp.StatusCode != rq.status || r.errorCode(t) != rq.code {
			t.Errorf("%s %s: status %d body %q", rq.method, rq.path, r.resp.StatusCode, r.body)
		}
	}
}

func TestParseNodeID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int32
		ok   bool
	}{
		{"0", 0, true}, {"7", 7, true}, {"2147483647", 1<<31 - 1, true}, {"007", 7, true},
		{"", 0, false}, {"-1", 0, false}, {"+1", 0, false}, {"1.0", 0, false}, {"1e3", 0, false},
		{"2147483648", 0, false}, {"99999999999", 0, false}, {" 1", 0, false}, {"١", 0, false},
	} {
		got, aerr := parseNodeID(tt.in)
		if (aerr == nil) != tt.ok || got != tt.want {
			t.Errorf("parseNodeID(%q) = %d, %v; want %d, ok %v", tt.in, got, aerr, tt.want, tt.ok)
		}
		if aerr != nil && (aerr.status != 400 || aerr.code != codeBadRequest) {
			t.Errorf("parseNodeID(%q) error %+v", tt.in, aerr)
		}
	}
}

// clusterSettled reports whether c shows the nodes in want alive and every
// data group with replicas of want's size, a leader and that many voters.
func clusterSettled(c clusterResponse, alive []int32, replicas int) (bool, string) {
	var got []int32
	for _, n := range c.Nodes {
		if n.State == nodeAlive {
			got = append(got, n.ID)
		}
	}
	if !slices.Equal(got, alive) {
		return false, fmt.Sprintf("node %d sees alive nodes %v, want %v (%+v)", c.NodeID, got, alive, c.Nodes)
	}
	if len(c.RaftGroups) < 2 {
		return false, fmt.Sprintf("node %d lists %d raft groups", c.NodeID, len(c.RaftGroups))
	}
	for _, g := range c.RaftGroups {
		if g.RaftGroupID == 0 {
			if g.Leader < 0 || len(g.Voters) != 3 {
				return false, fmt.Sprintf("node %d: metadata group %+v", c.NodeID, g)
			}
			continue
		}
		if len(g.Replicas) != replicas || g.Leader < 0 || !slices.Contains(g.Replicas, g.Leader) || len(g.Voters) != replicas || g.Term == 0 {
			return false, fmt.Sprintf("node %d: raft group %+v", c.NodeID, g)
		}
		for _, id := range g.Replicas {
			if g.ReplicaLag[strconv.Itoa(int(id))] == nil {
				return false, fmt.Sprintf("node %d: raft group %d has no lag for replica %d: %v", c.NodeID, g.RaftGroupID, id, g.ReplicaLag)
			}
		}
	}
	return true, ""
}

// leaderOf returns the node that leads raft group g and has applied its log.
func leaderOf(t testing.TB, nodes []*httpNode, g uint32) *httpNode {
	t.Helper()
	var out *httpNode
	waitFor(t, fmt.Sprintf("a ready leader of raft group %d", g), 30*time.Second, func() (bool, string) {
		for _, n := range nodes {
			if n.node != nil && n.node.IsLeader(g) {
				out = n
				return true, ""
			}
		}
		return false, "no node leads it"
	})
	return out
}

// step runs one stage of a test whose stages build on each other, and stops
// the test when it fails.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// TestClusterThreeNodes runs a real cluster over TCP on loopback: the view
// from every node, lookups that need the leader or a replica, a node that
// stops, and its removal through another node.
func TestClusterThreeNodes(t *testing.T) {
	nodes := newHTTPCluster(t, 3)

	step(t, "every node sees three nodes and every raft group", func(t *testing.T) {
		for _, n := range nodes {
			var c clusterResponse
			waitFor(t, fmt.Sprintf("node %d's /v1/cluster to settle", n.id), 60*time.Second, func() (bool, string) {
				c = getCluster(t, n.httpAddr)
				return clusterSettled(c, []int32{1, 2, 3}, 3)
			})
			if c.NodeID != n.id || c.ClusterID != nodes[0].node.ClusterID() || c.MetadataLeader < 1 {
				t.Errorf("node %d answers node %d, cluster %q, metadata leader %d", n.id, c.NodeID, c.ClusterID, c.MetadataLeader)
			}
			if len(c.RaftGroups) != 1+n.node.DataGroupCount() {
				t.Errorf("node %d lists %d raft groups, want %d", n.id, len(c.RaftGroups), 1+n.node.DataGroupCount())
			}
			for _, ni := range c.Nodes {
				if peer := nodes[ni.ID-1]; ni.HTTPAddr != peer.httpAddr || ni.ClusterAddr != peer.addr || ni.Ready == nil || !*ni.Ready {
					t.Errorf("node %d shows %+v", n.id, ni)
				}
			}
			for _, g := range c.RaftGroups {
				if g.ReportedBy != g.Leader {
					t.Errorf("node %d: raft group %d reported by %d, not its leader %d", n.id, g.RaftGroupID, g.ReportedBy, g.Leader)
				}
			}
		}
	})

	// A compacted topic with a key in each partition.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := nodes[0].node.CreateTopic(ctx, "users", 2, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, fmt.Sprintf("the topic on node %d", n.id), 10*time.Second, func() (bool, string) {
			_, ok := n.node.Topic("users")
			return ok, "not there"
		})
	}
	for _, p := range info.Partitions {
		l := leaderOf(t, nodes, p.Group)
		k := fmt.Sprintf("key-%d", p.Partition)
		waitFor(t, "a produce on the leader", 30*time.Second, func() (bool, string) {
			_, err := l.node.Produce(ctx, "users", p.Partition, shardstore.NoProducer, []shardstore.Record{{Key: []byte(k), Value: []byte("v" + k), Timestamp: 1}})
			return err == nil, fmt.Sprint(err)
		})
	}

	step(t, "consistency=leader on a follower answers 421 with the leader", func(t *testing.T) {
		for _, p := range info.Partitions {
			l := leaderOf(t, nodes, p.Group)
			path := fmt.Sprintf("/v1/topics/users/keys/key-%d?partition=%d&consistency=leader", p.Partition, p.Partition)
			if a := send(t, l.httpAddr, "GET", path, ""); a.status != 200 || string(a.body) != fmt.Sprintf("vkey-%d", p.Partition) {
				t.Errorf("leader %d: %d %q", l.id, a.status, a.body)
			}
			for _, n := range nodes {
				if n == l {
					continue
				}
				a := send(t, n.httpAddr, "GET", path, "")
				if a.status != http.StatusMisdirectedRequest {
					t.Fatalf("follower %d: %d %s", n.id, a.status, a.body)
				}
				e := a.errorBody(t)
				if e.Code != codeNotLeader || e.LeaderHTTPAddr != l.httpAddr || a.header.Get("Shardcache-Leader") != l.httpAddr ||
					e.LeaderNodeID == nil || *e.LeaderNodeID != l.id || e.Partition == nil || *e.Partition != p.Partition {
					t.Errorf("follower %d: header %q body %s; leader is node %d at %s", n.id, a.header.Get("Shardcache-Leader"), a.body, l.id, l.httpAddr)
				}
				// batchGet answers the same.
				b := send(t, n.httpAddr, "POST", fmt.Sprintf("/v1/topics/users/keys:batchGet?partition=%d&consistency=leader", p.Partition), `{"keys":["x"]}`)
				if b.status != http.StatusMisdirectedRequest || b.header.Get("Shardcache-Leader") != l.httpAddr {
					t.Errorf("follower %d batchGet: %d %s", n.id, b.status, b.body)
				}
				// consistency=local reads the follower's own replica.
				waitFor(t, "the follower to apply the record", 10*time.Second, func() (bool, string) {
					a := send(t, n.httpAddr, "GET", strings.Replace(path, "consistency=leader", "consistency=local", 1), "")
					return a.status == 200, fmt.Sprintf("%d %s", a.status, a.body)
				})
			}
		}
	})

	// A fourth node joins a full cluster: it follows the metadata group but
	// carries no data group yet.
	spare := newHTTPNode(t, 4, []string{nodes[0].addr})
	spare.waitReady(t)
	nodes = append(nodes, spare)

	step(t, "a node without a replica answers 421 with a leader", func(t *testing.T) {
		waitFor(t, "the topic on node 4", 10*time.Second, func() (bool, string) {
			_, ok := spare.node.Topic("users")
			return ok, "not there"
		})
		for _, q := range []string{"", "?consistency=local", "?partition=1"} {
			a := send(t, spare.httpAddr, "GET", "/v1/topics/users/keys/key-1"+q, "")
			if a.status != http.StatusMisdirectedRequest {
				t.Fatalf("%s: %d %s", q, a.status, a.body)
			}
			e := a.errorBody(t)
			if e.Code != codeNoReplica || e.LeaderHTTPAddr == "" || e.LeaderHTTPAddr == spare.httpAddr || a.header.Get("Shardcache-Leader") != e.LeaderHTTPAddr {
				t.Errorf("%s: header %q body %s", q, a.header.Get("Shardcache-Leader"), a.body)
			}
			// The address it names serves the key.
			if q == "?partition=1" {
				if b := send(t, e.LeaderHTTPAddr, "GET", "/v1/topics/users/keys/key-1"+q+"&consistency=leader", ""); b.status != 200 {
					t.Errorf("the named leader answers %d %s", b.status, b.body)
				}
			}
		}
		waitFor(t, "node 1 to see four nodes", 30*time.Second, func() (bool, string) {
			return clusterSettled(getCluster(t, nodes[0].httpAddr), []int32{1, 2, 3, 4}, 3)
		})
	})

	victim := nodes[1]
	step(t, "a stopped node is unreachable", func(t *testing.T) {
		victim.stop()
		var c clusterResponse
		// Waited for only because a loaded machine may make a live node miss
		// the 500 ms deadline: the dead one is unreachable at once.
		waitFor(t, "node 2 unreachable and the others alive", 30*time.Second, func() (bool, string) {
			c = getCluster(t, nodes[0].httpAddr)
			for _, n := range c.Nodes {
				want := nodeAlive
				if n.ID == victim.id {
					want = nodeUnreachable
				}
				if n.State != want || (want == nodeUnreachable && (n.Error == "" || n.Ready != nil)) {
					return false, fmt.Sprintf("node %+v, want %s", n, want)
				}
			}
			return true, ""
		})
		for _, g := range c.RaftGroups {
			if lag, ok := g.ReplicaLag["2"]; !ok || lag != nil {
				t.Errorf("raft group %d: replica_lag %v, want node 2 present and null", g.RaftGroupID, g.ReplicaLag)
			}
		}
		// The answer is bounded by the peer timeout, not by the dead node.
		start := time.Now()
		getCluster(t, nodes[2].httpAddr)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("/v1/cluster with a node down took %s", d)
		}
	})

	step(t, "remove the stopped node through another node", func(t *testing.T) {
		var a httpAnswer
		waitFor(t, "the removal to be accepted", 30*time.Second, func() (bool, string) {
			a = send(t, nodes[2].httpAddr, "DELETE", "/v1/cluster/nodes/2", "")
			return a.status != http.StatusServiceUnavailable, string(a.body)
		})
		if a.status != 200 {
			t.Fatalf("DELETE: %d %s", a.status, a.body)
		}
		var rr removeNodeResponse
		if err := json.Unmarshal(a.body, &rr); err != nil {
			t.Fatal(err)
		}
		if rr.RemovedNodeID != 2 || len(rr.Nodes) != 4 || rr.Nodes[1].ID != 2 || rr.Nodes[1].State != nodeRemoved {
			t.Errorf("DELETE answered %s", a.body)
		}
		// Node 4 takes node 2's places in every raft group.
		live := []*httpNode{nodes[0], nodes[2], spare}
		waitFor(t, "node 4 to replace node 2 in every raft group", 90*time.Second, func() (bool, string) {
			for _, n := range live {
				c := getCluster(t, n.httpAddr)
				if ok, why := clusterSettled(c, []int32{1, 3, 4}, 3); !ok {
					return false, why
				}
				for _, g := range c.RaftGroups {
					if slices.Contains(g.Replicas, 2) || slices.Contains(g.Voters, 2) || slices.Contains(g.Nonvoters, 2) ||
						(g.RaftGroupID != 0 && !slices.Contains(g.Voters, 4)) {
						return false, fmt.Sprintf("node %d: raft group %+v", n.id, g)
					}
				}
				if c.Nodes[1].State != nodeRemoved {
					return false, fmt.Sprintf("node %d shows node 2 %+v", n.id, c.Nodes[1])
				}
			}
			return true, ""
		})
		// Removing it again changes nothing; an unknown id is 404.
		if a := send(t, nodes[0].httpAddr, "DELETE", "/v1/cluster/nodes/2", ""); a.status != 200 {
			t.Errorf("second DELETE: %d %s", a.status, a.body)
		}
		if a := send(t, nodes[0].httpAddr, "DELETE", "/v1/cluster/nodes/99", ""); a.status != 404 || a.errorBody(t).Code != codeUnknownNode {
			t.Errorf("DELETE of an unknown node: %d %s", a.status, a.body)
		}
	})
}

// TestAskPeer: what a peer's /v1/cluster/local answer makes of its state, and
// that every answer is bounded in time and size.
func TestAskPeer(t *testing.T) {
	good := `{"cluster_id":"c1","node_id":2,"ready":true,"raft_groups":[{"raft_group_id":0,"state":"Follower","leader":1,"term":3,"applied_index":9}]}`
	tests := []struct {
		name      string
		serve     http.HandlerFunc
		wantAlive bool
		wantLocal bool
		wantErr   string // substring; "" for none
	}{
		{"answers as itself", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(good)) }, true, true, ""},
		{"starting", func(w http.ResponseWriter, _ *http.Request) {
			writeAPIError(w, errorf(503, codeNotReady, "the node is starting"))
		}, true, false, "the node is starting"},
		{"another node", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(strings.Replace(good, `"node_id":2`, `"node_id":3`, 1)))
		}, false, false, "answers as node 3"},
		{"another cluster", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(strings.Replace(good, `"c1"`, `"c2"`, 1)))
		}, false, false, `cluster "c2"`},
		{"not json", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>")) }, false, false, "not a shardcache node status"},
		{"server error", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }, false, false, "HTTP 500"},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, false, false, "HTTP 302"},
		{"too large", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"cluster_id":"`))
			chunk := []byte(strings.Repeat("x", 64<<10))
			for i := 0; i < (maxPeerResponseBytes/len(chunk))+2; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, false, false, "answer over"},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, false, false, "no answer within"},
	}
	h := New(Config{Logger: testLogger(t)})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.serve)
			t.Cleanup(srv.Close)
			addr := strings.TrimPrefix(srv.URL, "http://")
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			defer cancel()
			start := time.Now()
			got := h.askPeer(ctx, raftfsm.NodeInfo{ID: 2, HTTPAddr: addr}, "c1")
			if d := time.Since(start); d > peerTimeout+time.Second {
				t.Errorf("took %s", d)
			}
			if got.alive != tt.wantAlive || (got.local != nil) != tt.wantLocal || !strings.Contains(got.err, tt.wantErr) || (tt.wantErr == "" && got.err != "") {
				t.Errorf("got alive %v local %v err %q; want alive %v local %v err ~%q", got.alive, got.local != nil, got.err, tt.wantAlive, tt.wantLocal, tt.wantErr)
			}
		})
	}
	// A refused connection and a node without an HTTP address.
	closed := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	peers := h.askPeers(ctx, 1, "c1", []raftfsm.NodeInfo{{ID: 1}, {ID: 2, HTTPAddr: addr}, {ID: 3}, {ID: 4, Removed: true, HTTPAddr: addr}})
	if p := peers[2]; p == nil || p.alive || !strings.Contains(p.err, "not reachable") {
		t.Errorf("closed port: %+v", p)
	}
	if p := peers[3]; p == nil || p.alive || !strings.Contains(p.err, "no HTTP address") {
		t.Errorf("no address: %+v", p)
	}
	if _, asked := peers[1]; asked {
		t.Error("asked itself")
	}
	if _, asked := peers[4]; asked {
		t.Error("asked a removed node")
	}
}

func FuzzParseNodeID(f *testing.F) {
	for _, s := range []string{"", "0", "1", "2147483647", "2147483648", "-1", "+1", "007", "1x", strings.Repeat("9", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, aerr := parseNodeID(s)
		if aerr != nil {
			if aerr.status != 400 || len(aerr.msg) > 200 {
				t.Fatalf("parseNodeID(%q): %+v", s, aerr)
			}
			return
		}
		if id < 0 || strings.TrimLeft(s, "0") != strings.TrimLeft(strconv.Itoa(int(id)), "0") {
			t.Fatalf("parseNodeID(%q) = %d", s, id)
		}
	})
}
