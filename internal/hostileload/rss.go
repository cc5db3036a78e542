package hostileload

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcMemory reads a process's resident set size now (VmRSS) and its peak
// since it started (VmHWM) from /proc/<pid>/status, in bytes. Linux only.
func ProcMemory(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != "VmRSS" && name != "VmHWM" {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %v", name, value, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, peak, sc.Err()
}

// Sampler samples a process's VmRSS until its context ends.
type Sampler struct {
	mu      sync.Mutex
	peak    int64
	samples int
	err     error
	done    chan struct{}
}

// SampleRSS starts sampling pid's VmRSS every interval until ctx ends.
func SampleRSS(ctx context.Context, pid int, interval time.Duration) *Sampler {
	s := &Sampler{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			rss, _, err := ProcMemory(pid)
			s.mu.Lock()
			if err != nil {
				s.err = err
			} else {
				s.samples++
				s.peak = max(s.peak, rss)
			}
			s.mu.Unlock()
			if err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Result waits for the sampler to stop (its context must have ended) and
// returns the highest VmRSS seen and how many samples were taken.
func (s *Sampler) Result() (peak int64, samples int, err error) {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples, s.err
}

// MiB formats bytes as MiB with one decimal.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
