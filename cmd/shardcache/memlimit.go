package main

import "runtime/debug"

// memoryLimitHeadroom is how far the Go runtime's soft memory limit is set
// above --max-inflight-bytes: room for what the node holds besides requests
// in flight (Raft, the group coordinator, the key cache, goroutines) and for
// garbage not yet collected. Measured with TestHostileLoad: with it the
// broker's heap stays within budget plus headroom where the default GOGC
// alone lets garbage double it.
const memoryLimitHeadroom = 128 << 20

// setMemoryLimit sets the Go runtime's soft memory limit to the memory
// budget plus memoryLimitHeadroom, unless the GOMEMLIMIT environment
// variable sets one (the runtime has applied it already). It returns the
// limit it set, or 0. The limit paces the garbage collector only: a node
// whose live heap needs more keeps running, collecting more often.
func setMemoryLimit(cfg Config, lookupEnv func(string) (string, bool)) int64 {
	if _, ok := lookupEnv("GOMEMLIMIT"); ok {
		return 0
	}
	limit := cfg.MaxInflightBytes + memoryLimitHeadroom
	debug.SetMemoryLimit(limit)
	return limit
}
