//go:build race

package broker

// raceEnabled: the race detector changes what allocations cost, so tests
// that measure allocated bytes against the broker's estimates skip.
const raceEnabled = true
