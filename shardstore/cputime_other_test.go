//go:build !unix

package shardstore

import (
	"testing"
	"time"
)

// processCPU is not measured here: benchmarks report 0 CPU per byte.
func processCPU(testing.TB) time.Duration { return 0 }
