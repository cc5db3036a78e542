package integration

// Key lookups through the real binary: records written with franz-go, read back
// from the HTTP lookup API (GET /v1/topics/{topic}/keys/{key} and
// POST .../keys:batchGet), before and after a restart.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// lookupResult is one HTTP answer of the lookup API.
type lookupResult struct {
	status int
	header http.Header
	body   []byte
}

func (r lookupResult) errCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {error, code} JSON: %v", r.body, err)
	}
	return e.Code
}

func lookupHTTP(t testing.TB, httpAddr, method, path, body string) lookupResult {
	t.Helper()
	if httpAddr == "" {
		t.Skip("no HTTP address for the cluster (set SHARDCACHE_TEST_HTTP)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+httpAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return lookupResult{status: resp.StatusCode, header: resp.Header, body: data}
}

func lookupPath(topic string, key []byte, query string) string {
	p := "/v1/topics/" + url.PathEscape(topic) + "/keys/" + url.PathEscape(string(key))
	if query != "" {
		p += "?" + query
	}
	return p
}

func TestLookupAPI(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t)
	other := topicName(t) + "-delete"
	adm := b.Admin(t)
	createTopic(t, adm, topic, 3, nil)
	createTopic(t, adm, other, 1, map[string]string{"cleanup.policy": "delete"})

	// Keyed records through the default partitioner; then the same key "split"
	// written explicitly to two partitions, the newer in partition 2.
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	binKey := []byte{0, 0xff, '/', 'k', '%'}
	t0 := time.Now().Truncate(time.Millisecond)
	recs := []*kgo.Record{
		{Topic: topic, Partition: 0, Key: []byte("alice"), Value: []byte("v1"), Timestamp: t0},
		{Topic: topic, Partition: 0, Key: []byte("alice"), Value: []byte("v2"), Timestamp: t0.Add(time.Millisecond),
			Headers: []kgo.RecordHeader{{Key: "trace id", Value: []byte("a b&c")}, {Key: "k2", Value: []byte("x")}}},
		{Topic: topic, Partition: 1, Key: []byte("bob"), Value: []byte("gone soon"), Timestamp: t0},
		{Topic: topic, Partition: 1, Key: []byte("bob"), Value: nil, Timestamp: t0.Add(time.Millisecond)},
		{Topic: topic, Partition: 1, Key: binKey, Value: []byte{1, 2, 3, 0xff}, Timestamp: t0},
		{Topic: topic, Partition: 1, Key: []byte("split"), Value: []byte("older"), Timestamp: t0},
		{Topic: topic, Partition: 2, Key: []byte("split"), Value: []byte("newer"), Timestamp: t0.Add(time.Second)},
		{Topic: topic, Partition: 2, Key: []byte("utf8 ключ/?#"), Value: []byte("значение"), Timestamp: t0},
		{Topic: other, Key: []byte("k"), Value: []byte("v")},
	}
	for _, r := range recs { // one by one: order within a partition matters
		produceSync(t, cl, r)
	}
	ends := endOffsets(t, adm, topic)

	check := func(t *testing.T) {
		tests := []struct {
			name       string
			path       string
			wantStatus int
			wantCode   string
			wantBody   []byte
			wantPart   int32
			wantOffset int64
			wantHdrs   string
		}{
			{name: "overwritten key", path: lookupPath(topic, []byte("alice"), ""), wantStatus: 200, wantBody: []byte("v2"), wantPart: 0, wantOffset: 1, wantHdrs: "trace+id=a+b%26c&k2=x"},
			{name: "newest of two partitions", path: lookupPath(topic, []byte("split"), ""), wantStatus: 200, wantBody: []byte("newer"), wantPart: 2, wantOffset: 0},
			{name: "asked partition", path: lookupPath(topic, []byte("split"), "partition=1"), wantStatus: 200, wantBody: []byte("older"), wantPart: 1, wantOffset: 3},
			{name: "binary key in the path", path: lookupPath(topic, binKey, ""), wantStatus: 200, wantBody: []byte{1, 2, 3, 0xff}, wantPart: 1, wantOffset: 2},
			{name: "binary key as base64", path: lookupPath(topic, []byte("_"), "key_base64="+base64.RawURLEncoding.EncodeToString(binKey)), wantStatus: 200, wantBody: []byte{1, 2, 3, 0xff}, wantPart: 1, wantOffset: 2},
			{name: "utf8 key with reserved characters", path: lookupPath(topic, []byte("utf8 ключ/?#"), "consistency=leader"), wantStatus: 200, wantBody: []byte("значение"), wantPart: 2, wantOffset: 1},
			{name: "tombstone", path: lookupPath(topic, []byte("bob"), ""), wantStatus: 404, wantCode: "key_deleted"},
			{name: "absent", path: lookupPath(topic, []byte("nobody"), ""), wantStatus: 404, wantCode: "key_not_found"},
			{name: "unknown topic", path: lookupPath("no-such-topic-"+topic, []byte("alice"), ""), wantStatus: 404, wantCode: "unknown_topic"},
			{name: "delete-policy topic", path: lookupPath(other, []byte("k"), ""), wantStatus: 400, wantCode: "not_compacted"},
			{name: "bad partition", path: lookupPath(topic, []byte("alice"), "partition=3"), wantStatus: 400, wantCode: "bad_partition"},
			{name: "bad base64", path: lookupPath(topic, []byte("_"), "key_base64=***"), wantStatus: 400, wantCode: "bad_base64"},
			{name: "bad format", path: lookupPath(topic, []byte("alice"), "format=yaml"), wantStatus: 400, wantCode: "bad_parameter"},
			{name: "key too large", path: lookupPath(topic, bytes.Repeat([]byte("k"), 16<<10+1), ""), wantStatus: 413, wantCode: "key_too_large"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := lookupHTTP(t, b.HTTPAddr, "GET", tt.path, "")
				if r.status != tt.wantStatus {
					t.Fatalf("status %d, want %d (body %q)", r.status, tt.wantStatus, r.body)
				}
				if tt.wantCode != "" {
					if got := r.errCode(t); got != tt.wantCode {
						t.Errorf("code %q, want %q", got, tt.wantCode)
					}
					return
				}
				if !bytes.Equal(r.body, tt.wantBody) {
					t.Errorf("body %q, want %q", r.body, tt.wantBody)
				}
				if got := r.header.Get("Shardcache-Partition"); got != strconv.Itoa(int(tt.wantPart)) {
					t.Errorf("partition %q, want %d", got, tt.wantPart)
				}
				if got := r.header.Get("Shardcache-Offset"); got != strconv.FormatInt(tt.wantOffset, 10) {
					t.Errorf("offset %q, want %d", got, tt.wantOffset)
				}
				if got := r.header.Get("Shardcache-Headers"); got != tt.wantHdrs {
					t.Errorf("headers %q, want %q", got, tt.wantHdrs)
				}
				if ends[tt.wantPart] <= tt.wantOffset {
					t.Errorf("offset %d beyond the high watermark %d", tt.wantOffset, ends[tt.wantPart])
				}
			})
		}

		t.Run("json", func(t *testing.T) {
			r := lookupHTTP(t, b.HTTPAddr, "GET", lookupPath(topic, []byte("alice"), "format=json&encoding=utf8"), "")
			var got struct {
				Topic     string `json:"topic"`
				Partition int32  `json:"partition"`
				Offset    int64  `json:"offset"`
				Timestamp int64  `json:"timestamp"`
				Key       string `json:"key"`
				Value     string `json:"value"`
				Headers   []struct {
					Key   string `json:"key"`
					Value string `json:"value"`
				} `json:"headers"`
			}
			if r.status != 200 {
				t.Fatalf("status %d body %q", r.status, r.body)
			}
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Topic != topic || got.Partition != 0 || got.Offset != 1 || got.Key != "alice" || got.Value != "v2" ||
				got.Timestamp != t0.Add(time.Millisecond).UnixMilli() || len(got.Headers) != 2 || got.Headers[0].Value != "a b&c" {
				t.Errorf("json = %s", r.body)
			}
		})

		t.Run("batchGet", func(t *testing.T) {
			var keys []string
			for _, k := range [][]byte{[]byte("split"), []byte("bob"), []byte("nobody"), binKey, []byte("alice")} {
				keys = append(keys, base64.StdEncoding.EncodeToString(k))
			}
			body, _ := json.Marshal(map[string]any{"keys": keys, "key_encoding": "base64"})
			r := lookupHTTP(t, b.HTTPAddr, "POST", "/v1/topics/"+topic+"/keys:batchGet", string(body))
			if r.status != 200 {
				t.Fatalf("status %d body %q", r.status, r.body)
			}
			var got struct {
				Results []struct {
					Found     bool   `json:"found"`
					Deleted   bool   `json:"deleted"`
					Partition int32  `json:"partition"`
					Value     string `json:"value"`
				} `json:"results"`
			}
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
			want := []string{"found:2:" + b64([]byte("newer")), "deleted", "absent", "found:1:" + b64([]byte{1, 2, 3, 0xff}), "found:0:" + b64([]byte("v2"))}
			if len(got.Results) != len(want) {
				t.Fatalf("results: %s", r.body)
			}
			for i, g := range got.Results {
				s := "absent"
				switch {
				case g.Found:
					s = fmt.Sprintf("found:%d:%s", g.Partition, g.Value)
				case g.Deleted:
					s = "deleted"
				}
				if s != want[i] {
					t.Errorf("result %d = %s, want %s", i, s, want[i])
				}
			}
		})
	}
	t.Run("running", check)
	// The key index is the store's: lookups answer the same after a restart.
	b.Stop(t)
	b.Start(t)
	t.Run("after restart", check)
}
