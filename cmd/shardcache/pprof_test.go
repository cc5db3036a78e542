package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPprofFlag: --pprof mounts the profiles on the HTTP port beside the
// usual endpoints; without it /debug/pprof/ is not served.
func TestPprofFlag(t *testing.T) {
	requireComponents(t)
	for _, tc := range []struct {
		name  string
		pprof bool
		want  int
	}{
		{"off by default", false, 404},
		{"on with --pprof", true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cfg := testConfig(t.TempDir())
			cfg.Pprof = tc.pprof
			s, err := start(ctx, cfg, testLogger(t))
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			t.Cleanup(func() {
				if err := s.shutdown(); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			})
			base := "http://" + s.httpLn.Addr().String()
			code, body := httpGet(t, base+"/debug/pprof/")
			if code != tc.want {
				t.Fatalf("/debug/pprof/ = %d, want %d", code, tc.want)
			}
			if tc.pprof && !strings.Contains(body, "goroutine") {
				t.Errorf("/debug/pprof/ index lists no goroutine profile:\n%.300s", body)
			}
			if tc.pprof {
				if code, _ := httpGet(t, base+"/debug/pprof/goroutine?debug=1"); code != 200 {
					t.Errorf("/debug/pprof/goroutine = %d, want 200", code)
				}
			}
			if code, _ := httpGet(t, base+"/readyz"); code != 200 {
				t.Errorf("/readyz = %d beside the profiles, want 200", code)
			}
		})
	}
}
