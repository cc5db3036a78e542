//go:build unix

package shardstore

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user and system) this process has used, for
// benchmarks that report CPU per byte: on a shared machine it varies far less
// than the elapsed time.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
