package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardcache/shardcache/internal/metricstest"
	"github.com/shardcache/shardcache/internal/nodetest"
)

// testLogger sends log lines to t.Log so only failing tests print them.
func testLogger(t testing.TB) *slog.Logger { return nodetest.Logger(t, slog.LevelDebug) }

// newTestServer starts the handler over a fresh shared registry; ready is the
// injected readiness.
func newTestServer(t testing.TB, ready *atomic.Bool) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := NewRegistry()
	h := New(Config{Gatherer: reg, Registerer: reg, Ready: ready.Load, Logger: testLogger(t)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, reg
}

func do(t testing.TB, srv *httptest.Server, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	srv, _ := newTestServer(t, &ready)

	tests := []struct {
		name      string
		ready     bool
		method    string
		path      string
		wantCode  int
		wantBody  string // exact body for text responses
		wantError string // substring of the JSON error, when the response is an error
		wantAllow string
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok\n"},
		{name: "healthz while not ready", ready: false, method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok\n"},
		{name: "healthz head", method: "HEAD", path: "/healthz", wantCode: 200, wantBody: ""},
		{name: "readyz not ready", ready: false, method: "GET", path: "/readyz", wantCode: 503, wantError: "not ready"},
		{name: "readyz ready", ready: true, method: "GET", path: "/readyz", wantCode: 200, wantBody: "ready\n"},
		{name: "healthz post", method: "POST", path: "/healthz", wantCode: 405, wantError: "POST not allowed", wantAllow: "GET, HEAD"},
		{name: "readyz delete", method: "DELETE", path: "/readyz", wantCode: 405, wantError: "DELETE not allowed", wantAllow: "GET, HEAD"},
		{name: "metrics put", method: "PUT", path: "/metrics", wantCode: 405, wantError: "PUT not allowed", wantAllow: "GET, HEAD"},
		{name: "unknown path", method: "GET", path: "/nope", wantCode: 404, wantError: "no such endpoint: /nope"},
		{name: "near the status page", method: "GET", path: "/index.html", wantCode: 404, wantError: "no such endpoint: /index.html"},
		{name: "trailing slash", method: "GET", path: "/healthz/", wantCode: 404, wantError: "no such endpoint"},
		{name: "unknown path post", method: "POST", path: "/v0/whatever", wantCode: 404, wantError: "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			resp, body := do(t, srv, tt.method, tt.path)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantCode, body)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if tt.wantError == "" {
				if body != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("error body %q is not JSON: %v", body, err)
			}
			if !strings.Contains(e.Error, tt.wantError) {
				t.Errorf("error = %q, want it to contain %q", e.Error, tt.wantError)
			}
		})
	}
}

func TestReadyzFollowsReadyFunc(t *testing.T) {
	var ready atomic.Bool
	srv, _ := newTestServer(t, &ready)
	for i, want := range []int{503, 200, 503, 200} {
		ready.Store(want == 200)
		if resp, body := do(t, srv, "GET", "/readyz"); resp.StatusCode != want {
			t.Fatalf("step %d: status = %d, want %d (body %q)", i, resp.StatusCode, want, body)
		}
	}
}

func TestReadyzNilReadyIsNotReady(t *testing.T) {
	srv := httptest.NewServer(New(Config{Logger: testLogger(t)}))
	t.Cleanup(srv.Close)
	if resp, _ := do(t, srv, "GET", "/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", resp.StatusCode)
	}
	// With no gatherer /metrics still answers, with the handler's own metrics absent.
	if resp, _ := do(t, srv, "GET", "/metrics"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics status = %d, want 200", resp.StatusCode)
	}
}

func TestMetricsExposesSharedRegistry(t *testing.T) {
	var ready atomic.Bool
	srv, reg := newTestServer(t, &ready)

	// A component's collector, registered on the shared registry after the
	// handler was built, shows up on /metrics.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "shardcache_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)

	do(t, srv, "GET", "/healthz")
	do(t, srv, "GET", "/nope")
	resp, body := do(t, srv, "GET", "/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want the text exposition format", ct)
	}
	for _, want := range []string{
		"shardcache_test_things_total 3",
		"go_goroutines ",
		"process_cpu_seconds_total ",
		`shardcache_http_requests_total{code="200",handler="healthz"} 1`,
		`shardcache_http_requests_total{code="404",handler="notfound"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, tokenLine("t", "User:a"))
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(reg, tf)
	m.requests.WithLabelValues("healthz", "200").Inc()
	if mfs := metricstest.Lint(t, reg); len(mfs) == 0 {
		t.Fatal("no metrics gathered")
	}
}

// TestPprof: /debug/pprof/ is served only with Config.Pprof.
func TestPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", on), func(t *testing.T) {
			srv := httptest.NewServer(New(Config{Logger: testLogger(t), Pprof: on}))
			t.Cleanup(srv.Close)
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
				resp, body := do(t, srv, http.MethodGet, path)
				if resp.StatusCode != want {
					t.Errorf("GET %s = %d, want %d: %.200s", path, resp.StatusCode, want, body)
				}
			}
			if on {
				resp, _ := do(t, srv, http.MethodDelete, "/debug/pprof/")
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("DELETE /debug/pprof/ = %d, want 405", resp.StatusCode)
				}
			}
		})
	}
}
