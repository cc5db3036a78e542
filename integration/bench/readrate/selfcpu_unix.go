//go:build unix

package main

import (
	"syscall"
	"time"
)

// selfCPU is this process's user and system CPU time. getrusage counts in
// microseconds, where /proc's clock ticks (harness.CPUTime) are 10 ms: too
// coarse for a read of 100k records.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
