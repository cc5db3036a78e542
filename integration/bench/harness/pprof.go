package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// CPUProfile fetches a CPU profile of the node over the next d (whole
// seconds, at least one) from /debug/pprof/profile and writes it to path. The
// node must run with --pprof. It blocks for d.
func (n *Node) CPUProfile(ctx context.Context, d time.Duration, path string) error {
	if err := CPUProfile(ctx, n.HTTPAddr, d, path); err != nil {
		return fmt.Errorf("node %d: %w", n.ID, err)
	}
	return nil
}

// CPUProfile fetches a CPU profile of the broker whose HTTP port is httpAddr
// over the next d (whole seconds, at least one) and writes it to path. The
// broker must run with --pprof. It blocks for d.
func CPUProfile(ctx context.Context, httpAddr string, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("cpu profile: %s: %s (is --pprof set?)", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	return f.Close()
}
