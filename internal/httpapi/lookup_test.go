package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

// lookupFixture writes the data every lookup test reads and returns the
// offsets the answers must name.
type lookupFixture struct {
	b                       *testBackend
	aliceOffset, dupOffset  int64
	tieOffset, binOffset    int64
	slashOffset, rawOffset  int64
	bobTombOffset           int64
	binKey, slashKey, rawV  string
	aliceHeaders            []shardstore.Header
	aliceTS, dupTS, slashTS int64
}

func newLookupFixture(t *testing.T) *lookupFixture {
	t.Helper()
	f := &lookupFixture{b: newTestBackend(t), binKey: "\x00\xff/k", slashKey: "a/b c+d?e&f", rawV: "\xff\xfe\x00raw"}
	b := f.b
	b.createTopic(t, "users", 3, nil)
	b.createTopic(t, "logs", 1, map[string]string{"cleanup.policy": "delete"})
	f.aliceHeaders = []shardstore.Header{{Key: "h1", Value: []byte("v 1&=")}, {Key: "h2", Value: nil}, {Key: "bin", Value: []byte{0xff}}}
	f.aliceTS, f.dupTS, f.slashTS = 2000, 5000, 1234

	// Partition 0: alice overwritten (the second record is live), a binary key,
	// a value that is not UTF-8, and "tie" at a low offset.
	b.produce(t, "users", 0, rec("alice", "a1", 1000))
	f.aliceOffset = b.produce(t, "users", 0, rec("alice", "a2", f.aliceTS, f.aliceHeaders...))
	f.binOffset = b.produce(t, "users", 0, rec(f.binKey, "bin-value", 1))
	f.rawOffset = b.produce(t, "users", 0, rec("raw", f.rawV, 1))
	b.produce(t, "users", 0, rec("tie", "low offset", 7000))
	// Partition 1: bob tombstoned, "dup" old, a key with URL metacharacters.
	b.produce(t, "users", 1, rec("bob", "b1", 1000))
	f.bobTombOffset = b.produce(t, "users", 1, rec("bob", tombstone, 3000))
	b.produce(t, "users", 1, rec("dup", "old", 1000))
	f.slashOffset = b.produce(t, "users", 1, rec(f.slashKey, "slash", f.slashTS))
	// Partition 2: "dup" newer than in partition 1, "tie" with the same
	// timestamp as partition 0's but a higher offset.
	for i := 0; i < 8; i++ {
		b.produce(t, "users", 2, rec(fmt.Sprintf("pad%d", i), "x", 1))
	}
	f.dupOffset = b.produce(t, "users", 2, rec("dup", "new", f.dupTS))
	f.tieOffset = b.produce(t, "users", 2, rec("tie", "high offset", 7000))
	b.produce(t, "logs", 0, rec("k", "v", 1))
	return f
}

type httpResult struct {
	resp *http.Response
	body []byte
}

func (r httpResult) errorCode(t *testing.T) string {
	t.Helper()
	if ct := r.resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json (body %q)", ct, r.body)
	}
	var e apiErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if e.Error == "" {
		t.Errorf("error body %q has no message", r.body)
	}
	return e.Code
}

func call(t *testing.T, b *testBackend, method, path, contentType, body string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, b.Srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := b.Srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp: resp, body: data}
}

func keyPath(topic, key string) string {
	return "/v1/topics/" + url.PathEscape(topic) + "/keys/" + url.PathEscape(key)
}

func TestLookupRaw(t *testing.T) {
	f := newLookupFixture(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name          string
		path          string
		wantStatus    int
		wantCode      string // error code, for errors
		wantBody      string
		wantPartition int32
		wantOffset    int64
		wantTimestamp int64
		wantHeaders   string
	}{
		{name: "overwritten key answers the live value", path: keyPath("users", "alice"), wantStatus: 200, wantBody: "a2",
			wantPartition: 0, wantOffset: f.aliceOffset, wantTimestamp: f.aliceTS, wantHeaders: "h1=v+1%26%3D&h2&bin=%FF"},
		{name: "newest of two shards by timestamp", path: keyPath("users", "dup"), wantStatus: 200, wantBody: "new", wantPartition: 2, wantOffset: f.dupOffset, wantTimestamp: f.dupTS},
		{name: "older shard when partition is given", path: keyPath("users", "dup") + "?partition=1", wantStatus: 200, wantBody: "old", wantPartition: 1, wantOffset: -1, wantTimestamp: 1000},
		{name: "same timestamp: highest offset wins", path: keyPath("users", "tie"), wantStatus: 200, wantBody: "high offset", wantPartition: 2, wantOffset: f.tieOffset, wantTimestamp: 7000},
		{name: "URL-encoded key with slash and metacharacters", path: keyPath("users", f.slashKey), wantStatus: 200, wantBody: "slash", wantPartition: 1, wantOffset: f.slashOffset, wantTimestamp: f.slashTS},
		{name: "binary key by key_base64, padded", path: "/v1/topics/users/keys/_?key_base64=" + url.QueryEscape(b64(f.binKey)), wantStatus: 200, wantBody: "bin-value", wantPartition: 0, wantOffset: f.binOffset, wantTimestamp: 1},
		{name: "binary key by URL-safe base64 unpadded", path: "/v1/topics/users/keys/ignored?key_base64=" + base64.RawURLEncoding.EncodeToString([]byte(f.binKey)), wantStatus: 200, wantBody: "bin-value", wantPartition: 0, wantOffset: f.binOffset, wantTimestamp: 1},
		{name: "binary key percent-encoded in the path", path: "/v1/topics/users/keys/%00%FF%2Fk", wantStatus: 200, wantBody: "bin-value", wantPartition: 0, wantOffset: f.binOffset, wantTimestamp: 1},
		{name: "binary value", path: keyPath("users", "raw"), wantStatus: 200, wantBody: f.rawV, wantPartition: 0, wantOffset: f.rawOffset, wantTimestamp: 1},
		{name: "leader consistency on a leader", path: keyPath("users", "alice") + "?consistency=leader", wantStatus: 200, wantBody: "a2", wantPartition: 0, wantOffset: f.aliceOffset, wantTimestamp: f.aliceTS, wantHeaders: "h1=v+1%26%3D&h2&bin=%FF"},
		{name: "explicit local consistency and raw format", path: keyPath("users", "alice") + "?consistency=local&format=raw", wantStatus: 200, wantBody: "a2", wantPartition: 0, wantOffset: f.aliceOffset, wantTimestamp: f.aliceTS, wantHeaders: "h1=v+1%26%3D&h2&bin=%FF"},

		{name: "absent key", path: keyPath("users", "nobody"), wantStatus: 404, wantCode: codeKeyNotFound},
		{name: "key in another partition than asked", path: keyPath("users", "alice") + "?partition=1", wantStatus: 404, wantCode: codeKeyNotFound},
		{name: "tombstoned key", path: keyPath("users", "bob"), wantStatus: 404, wantCode: codeKeyDeleted},
		{name: "unknown topic", path: keyPath("nosuch", "alice"), wantStatus: 404, wantCode: codeUnknownTopic},
		{name: "delete-policy topic", path: keyPath("logs", "k"), wantStatus: 400, wantCode: codeNotCompacted},
		{name: "partition not a number", path: keyPath("users", "alice") + "?partition=x", wantStatus: 400, wantCode: codeBadPartition},
		{name: "negative partition", path: keyPath("users", "alice") + "?partition=-1", wantStatus: 400, wantCode: codeBadPartition},
		{name: "partition out of range", path: keyPath("users", "alice") + "?partition=3", wantStatus: 400, wantCode: codeBadPartition},
		{name: "partition overflowing int32", path: keyPath("users", "alice") + "?partition=99999999999", wantStatus: 400, wantCode: codeBadPartition},
		{name: "bad base64", path: "/v1/topics/users/keys/_?key_base64=%21%21%21", wantStatus: 400, wantCode: codeBadBase64},
		{name: "unknown format", path: keyPath("users", "alice") + "?format=xml", wantStatus: 400, wantCode: codeBadParameter},
		{name: "unknown encoding", path: keyPath("users", "alice") + "?format=json&encoding=latin1", wantStatus: 400, wantCode: codeBadParameter},
		{name: "unknown consistency", path: keyPath("users", "alice") + "?consistency=strong", wantStatus: 400, wantCode: codeBadParameter},
		{name: "unknown parameter", path: keyPath("users", "alice") + "?partiton=0", wantStatus: 400, wantCode: codeBadParameter},
		{name: "malformed escape in query", path: keyPath("users", "alice") + "?format=%zz", wantStatus: 400, wantCode: codeBadParameter},
		{name: "key too large", path: keyPath("users", strings.Repeat("k", MaxKeyBytes+1)), wantStatus: 413, wantCode: codeKeyTooLarge},
		{name: "binary key too large", path: "/v1/topics/users/keys/_?key_base64=" + base64.RawURLEncoding.EncodeToString(make([]byte, MaxKeyBytes+1)), wantStatus: 413, wantCode: codeKeyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, f.b, "GET", tt.path, "", "")
			if r.resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", r.resp.StatusCode, tt.wantStatus, r.body)
			}
			if tt.wantCode != "" {
				if got := r.errorCode(t); got != tt.wantCode {
					t.Errorf("code = %q, want %q (body %q)", got, tt.wantCode, r.body)
				}
				return
			}
			if string(r.body) != tt.wantBody {
				t.Errorf("body = %q, want %q", r.body, tt.wantBody)
			}
			h := r.resp.Header
			if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := h.Get(hdrPartition); got != strconv.Itoa(int(tt.wantPartition)) {
				t.Errorf("%s = %q, want %d", hdrPartition, got, tt.wantPartition)
			}
			if tt.wantOffset >= 0 && h.Get(hdrOffset) != strconv.FormatInt(tt.wantOffset, 10) {
				t.Errorf("%s = %q, want %d", hdrOffset, h.Get(hdrOffset), tt.wantOffset)
			}
			if got := h.Get(hdrTimestamp); got != strconv.FormatInt(tt.wantTimestamp, 10) {
				t.Errorf("%s = %q, want %d", hdrTimestamp, got, tt.wantTimestamp)
			}
			if got := h.Get(hdrHeaders); got != tt.wantHeaders {
				t.Errorf("%s = %q, want %q", hdrHeaders, got, tt.wantHeaders)
			}
			if got := h.Get(hdrTopic); got != "users" {
				t.Errorf("%s = %q", hdrTopic, got)
			}
		})
	}

	t.Run("HEAD answers headers only", func(t *testing.T) {
		r := call(t, f.b, "HEAD", keyPath("users", "alice"), "", "")
		if r.resp.StatusCode != 200 || len(r.body) != 0 || r.resp.Header.Get(hdrOffset) != strconv.FormatInt(f.aliceOffset, 10) {
			t.Fatalf("HEAD: status %d, body %q, headers %v", r.resp.StatusCode, r.body, r.resp.Header)
		}
	})
	t.Run("POST to a key is 405", func(t *testing.T) {
		r := call(t, f.b, "POST", keyPath("users", "alice"), "", "")
		if r.resp.StatusCode != 405 || r.resp.Header.Get("Allow") != "GET, HEAD" {
			t.Fatalf("status %d Allow %q", r.resp.StatusCode, r.resp.Header.Get("Allow"))
		}
	})
}

func TestLookupJSON(t *testing.T) {
	f := newLookupFixture(t)
	tests := []struct {
		name string
		path string
		want recordJSON
	}{
		{name: "base64 by default", path: keyPath("users", "alice") + "?format=json", want: recordJSON{
			Topic: "users", Partition: 0, Offset: f.aliceOffset, Timestamp: f.aliceTS,
			Key: "YWxpY2U=", KeyEncoding: "base64", Value: "YTI=", ValueEncoding: "base64",
			Headers: []headerJSON{{Key: "h1", Value: strp("diAxJj0="), ValueEncoding: "base64"}, {Key: "h2"}, {Key: "bin", Value: strp("/w=="), ValueEncoding: "base64"}},
		}},
		{name: "utf8 where valid, base64 where not", path: keyPath("users", "alice") + "?format=json&encoding=utf8", want: recordJSON{
			Topic: "users", Partition: 0, Offset: f.aliceOffset, Timestamp: f.aliceTS,
			Key: "alice", KeyEncoding: "utf8", Value: "a2", ValueEncoding: "utf8",
			Headers: []headerJSON{{Key: "h1", Value: strp("v 1&="), ValueEncoding: "utf8"}, {Key: "h2"}, {Key: "bin", Value: strp("/w=="), ValueEncoding: "base64"}},
		}},
		{name: "binary value stays base64 under utf8", path: keyPath("users", "raw") + "?format=json&encoding=utf8", want: recordJSON{
			Topic: "users", Partition: 0, Offset: f.rawOffset, Timestamp: 1,
			Key: "raw", KeyEncoding: "utf8", Value: base64.StdEncoding.EncodeToString([]byte(f.rawV)), ValueEncoding: "base64", Headers: []headerJSON{},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, f.b, "GET", tt.path, "", "")
			if r.resp.StatusCode != 200 {
				t.Fatalf("status %d body %q", r.resp.StatusCode, r.body)
			}
			if ct := r.resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got recordJSON
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("body %q: %v", r.body, err)
			}
			wantJSON, _ := json.Marshal(tt.want)
			gotJSON, _ := json.Marshal(got)
			if string(wantJSON) != string(gotJSON) {
				t.Errorf("got  %s\nwant %s", gotJSON, wantJSON)
			}
		})
	}
	t.Run("tombstone in JSON format is 404", func(t *testing.T) {
		r := call(t, f.b, "GET", keyPath("users", "bob")+"?format=json", "", "")
		if r.resp.StatusCode != 404 || r.errorCode(t) != codeKeyDeleted {
			t.Fatalf("status %d body %q", r.resp.StatusCode, r.body)
		}
	})
}

func strp(s string) *string { return &s }

// batchResp mirrors the batchGet answer for decoding.
type batchResp struct {
	Topic   string `json:"topic"`
	Results []struct {
		Found      bool   `json:"found"`
		Deleted    bool   `json:"deleted"`
		RequestKey string `json:"request_key"`
		Partition  int32  `json:"partition"`
		Offset     int64  `json:"offset"`
		Key        string `json:"key"`
		Value      string `json:"value"`
		ValueEnc   string `json:"value_encoding"`
	} `json:"results"`
}

func TestBatchGet(t *testing.T) {
	f := newLookupFixture(t)
	const path = "/v1/topics/users/keys:batchGet"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	t.Run("results in request order", func(t *testing.T) {
		r := call(t, f.b, "POST", path+"?encoding=utf8", "application/json",
			`{"keys": ["dup", "nobody", "alice", "bob", "alice", "`+strings.ReplaceAll(f.slashKey, "&", `\u0026`)+`"]}`)
		if r.resp.StatusCode != 200 {
			t.Fatalf("status %d body %q", r.resp.StatusCode, r.body)
		}
		var got batchResp
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		type res struct {
			found, deleted bool
			key, value     string
			partition      int32
			offset         int64
		}
		want := []res{
			{true, false, "dup", "new", 2, f.dupOffset},
			{false, false, "nobody", "", 0, 0},
			{true, false, "alice", "a2", 0, f.aliceOffset},
			{false, true, "bob", "", 0, 0},
			{true, false, "alice", "a2", 0, f.aliceOffset},
			{true, false, f.slashKey, "slash", 1, f.slashOffset},
		}
		if got.Topic != "users" || len(got.Results) != len(want) {
			t.Fatalf("topic %q, %d results, want %d: %s", got.Topic, len(got.Results), len(want), r.body)
		}
		for i, w := range want {
			g := got.Results[i]
			if g.Found != w.found || g.Deleted != w.deleted || g.RequestKey != w.key || g.Value != w.value || g.Partition != w.partition || g.Offset != w.offset {
				t.Errorf("result %d = %+v, want %+v", i, g, w)
			}
		}
	})
	t.Run("base64 keys and values", func(t *testing.T) {
		r := call(t, f.b, "POST", path, "application/json; charset=utf-8",
			`{"keys": ["`+b64(f.binKey)+`", "`+b64("raw")+`"], "key_encoding": "base64"}`)
		if r.resp.StatusCode != 200 {
			t.Fatalf("status %d body %q", r.resp.StatusCode, r.body)
		}
		var got batchResp
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Results) != 2 || !got.Results[0].Found || got.Results[0].Value != b64("bin-value") || got.Results[0].Key != b64(f.binKey) ||
			!got.Results[1].Found || got.Results[1].Value != b64(f.rawV) || got.Results[1].ValueEnc != "base64" {
			t.Fatalf("results: %s", r.body)
		}
	})
	t.Run("partition restricts the search", func(t *testing.T) {
		r := call(t, f.b, "POST", path+"?partition=1&encoding=utf8", "", `{"keys": ["dup", "alice"]}`)
		var got batchResp
		if err := json.Unmarshal(r.body, &got); err != nil || r.resp.StatusCode != 200 {
			t.Fatalf("status %d body %q: %v", r.resp.StatusCode, r.body, err)
		}
		if len(got.Results) != 2 || got.Results[0].Value != "old" || got.Results[1].Found {
			t.Fatalf("results: %s", r.body)
		}
	})
	t.Run("empty key list", func(t *testing.T) {
		r := call(t, f.b, "POST", path, "", `{"keys": []}`)
		if r.resp.StatusCode != 200 || !strings.Contains(string(r.body), `"results":[]`) {
			t.Fatalf("status %d body %q", r.resp.StatusCode, r.body)
		}
	})

	manyKeys := `{"keys": [` + strings.TrimSuffix(strings.Repeat(`"k",`, MaxBatchKeys+1), ",") + `]}`
	errs := []struct {
		name, path, ctype, body string
		status                  int
		code                    string
	}{
		{"not JSON", path, "", `keys=a`, 400, codeBadJSON},
		{"truncated JSON", path, "", `{"keys": ["a"`, 400, codeBadJSON},
		{"trailing data", path, "", `{"keys": ["a"]} {}`, 400, codeBadJSON},
		{"keys missing", path, "", `{}`, 400, codeBadJSON},
		{"keys not strings", path, "", `{"keys": [1, 2]}`, 400, codeBadJSON},
		{"unknown field", path, "", `{"keys": ["a"], "kyes": 1}`, 400, codeBadJSON},
		{"bad key_encoding", path, "", `{"keys": ["a"], "key_encoding": "hex"}`, 400, codeBadParameter},
		{"bad base64 key", path, "", `{"keys": ["YQ==", "!!"], "key_encoding": "base64"}`, 400, codeBadBase64},
		{"wrong content type", path, "text/plain", `{"keys": ["a"]}`, 415, codeUnsupportedMedia},
		{"too many keys", path, "", manyKeys, 413, codeBatchTooLarge},
		{"key too large", path, "", `{"keys": ["` + strings.Repeat("k", MaxKeyBytes+1) + `"]}`, 413, codeKeyTooLarge},
		{"body too large", path, "", `{"keys": ["` + strings.Repeat("k", MaxBatchBodyBytes) + `"]}`, 413, codeBodyTooLarge},
		{"key_base64 parameter", path + "?key_base64=YQ", "", `{"keys": ["a"]}`, 400, codeBadParameter},
		{"bad partition", path + "?partition=9", "", `{"keys": ["a"]}`, 400, codeBadPartition},
		{"unknown topic", "/v1/topics/nosuch/keys:batchGet", "", `{"keys": ["a"]}`, 404, codeUnknownTopic},
		{"delete-policy topic", "/v1/topics/logs/keys:batchGet", "", `{"keys": ["k"]}`, 400, codeNotCompacted},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, f.b, "POST", tt.path, tt.ctype, tt.body)
			if r.resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (body %.200q)", r.resp.StatusCode, tt.status, r.body)
			}
			if got := r.errorCode(t); got != tt.code {
				t.Errorf("code = %q, want %q", got, tt.code)
			}
		})
	}
	t.Run("GET is 405", func(t *testing.T) {
		r := call(t, f.b, "GET", path, "", "")
		if r.resp.StatusCode != 405 || r.resp.Header.Get("Allow") != "POST" {
			t.Fatalf("status %d Allow %q", r.resp.StatusCode, r.resp.Header.Get("Allow"))
		}
	})
}

// TestLookupNotReady: before the backend is open, lookups answer 503 not_ready.
func TestLookupNotReady(t *testing.T) {
	for _, be := range []func() *Backend{nil, func() *Backend { return nil }} {
		srv := &testBackend{}
		h := New(Config{Backend: be, Logger: testLogger(t)})
		srv.Srv = newServer(t, h)
		for _, rq := range []struct{ method, path, body string }{
			{"GET", "/v1/topics/t/keys/k", ""},
			{"POST", "/v1/topics/t/keys:batchGet", `{"keys": ["k"]}`},
			{"GET", "/v1/status", ""},
		} {
			r := call(t, srv, rq.method, rq.path, "", rq.body)
			if r.resp.StatusCode != 503 || r.errorCode(t) != codeNotReady {
				t.Errorf("%s %s: status %d body %q", rq.method, rq.path, r.resp.StatusCode, r.body)
			}
		}
	}
}

func TestParseLookupQuery(t *testing.T) {
	tests := []struct {
		raw      string
		allowKey bool
		want     lookupParams
		wantCode string
	}{
		{raw: "", want: lookupParams{partition: -1}},
		{raw: "format=json&encoding=utf8&partition=7&consistency=leader", want: lookupParams{json: true, utf8: true, partition: 7, leader: true}},
		{raw: "&&format=raw&", want: lookupParams{partition: -1}},
		{raw: "key_base64=AAE%3D", allowKey: true, want: lookupParams{partition: -1, key: []byte{0, 1}, hasKey: true}},
		{raw: "key_base64=", allowKey: true, want: lookupParams{partition: -1, key: []byte{}, hasKey: true}},
		{raw: "key_base64=AAE", wantCode: codeBadParameter},
		{raw: "partition=", wantCode: codeBadPartition},
		{raw: "partition=1.5", wantCode: codeBadPartition},
		{raw: "consistency=LEADER", wantCode: codeBadParameter},
		{raw: "format=json&x", wantCode: codeBadParameter},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := parseLookupQuery(tt.raw, tt.allowKey)
			if tt.wantCode != "" {
				if err == nil || err.code != tt.wantCode {
					t.Fatalf("err = %v, want code %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseLookupQuery(f *testing.F) {
	for _, s := range []string{"", "format=json", "key_base64=%%", "partition=-0&consistency=leader&encoding=utf8", "a=b=c&&&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseLookupQuery(raw, true)
		if err == nil && p.partition < -1 {
			t.Fatalf("accepted partition %d", p.partition)
		}
		if err != nil && (err.status != 400 || err.code == "") {
			t.Fatalf("error %+v", err)
		}
	})
}
