package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shardcache/shardcache/shardstore"
)

// BenchmarkLookupHandler measures one raw lookup through the handler (no
// network): topic resolution, a point read in each of 4 shards, the response.
func BenchmarkLookupHandler(b *testing.B) {
	tb := newTestBackend(b)
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
