package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

// BenchmarkLookupHandler measures one raw lookup through the handler (no
// network): topic resolution, a point read in each of 4 shards, the response;
// with auth=token, a bearer token checked and the topic authorized first.
func BenchmarkLookupHandler(b *testing.B) {
	b.Run("auth=off", func(b *testing.B) { benchLookup(b, false) })
	b.Run("auth=token", func(b *testing.B) { benchLookup(b, true) })
}

func benchLookup(b *testing.B, auth bool) {
	var opts []func(*Config)
	if auth {
		path := filepath.Join(b.TempDir(), "tokens")
		writeTokens(b, path, tokenLine("bench-token", "User:bench"))
		tf, err := LoadTokenFile(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, func(c *Config) { c.Tokens, c.Authorizer = tf, newRuleAuthorizer("User:bench READ TOPIC bench") })
	}
	tb := newTestBackend(b, opts...)
	tb.createTopic(b, "bench", 4, nil)
	const keys = 10000
	value := make([]byte, 100)
	for p := int32(0); p < 4; p++ {
		var recs []shardstore.Record
		for i := int(p); i < keys; i += 4 {
			recs = append(recs, shardstore.Record{Key: []byte(fmt.Sprintf("key-%09d", i)), Value: value, Timestamp: 1})
		}
		tb.produce(b, "bench", p, recs...)
	}
	h := tb.Srv.Config.Handler
	reqs := make([]*http.Request, 256)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", fmt.Sprintf("/v1/topics/bench/keys/key-%09d", i*37%keys), nil)
		if auth {
			reqs[i].Header.Set("Authorization", "Bearer bench-token")
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
