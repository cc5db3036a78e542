// Package faultproxy is a TCP proxy for fault tests: one Proxy listens on
// 127.0.0.1 in front of one target address and injects network faults into
// the connections it relays, one direction at a time.
//
// A fault test puts one Proxy on every node-to-node link (P(i→j) dials node
// j's cluster address and is the address node i is told to dial), so a link
// can be cut, cut in one direction only (an asymmetric partition), reset or
// slowed while the brokers keep running.
//
// Directions: Forward carries bytes from the client that dialled the proxy to
// the target; Backward carries the target's replies to the client. Each
// direction has a Mode:
//
//	Pass       bytes are relayed as they arrive.
//	Blackhole  connections stay open, but bytes are read and dropped. Like
//	           toxiproxy's timeout toxic with timeout=0, or a partition: when
//	           the direction goes back to Pass, delivery resumes with the bytes
//	           that arrive from then on; the dropped bytes are never delivered.
//	           A half-close (FIN) that arrives while blackholed is held and
//	           passed on once the direction is healed, as TCP would retransmit
//	           it.
//	Reset      every open connection is torn down at once: the endpoint that
//	           receives in that direction gets a TCP RST (SetLinger(0), then
//	           Close) and the other endpoint a plain close. New connections
//	           are accepted and closed the same way (the target is not
//	           dialled).
//	Delay(d)   every chunk is delivered d after the proxy read it, in order.
//	           At most 4 MiB per direction and connection is queued; past that
//	           the proxy stops reading, so TCP backpressure reaches the sender.
//
// A mode change applies to open connections at once. Queued chunks follow the
// new mode: under a new delay they are due d after they were read (so going
// from Delay back to Pass delivers them at once, still in order), and under
// Blackhole they are dropped when their turn comes.
//
// The target is dialled when a client connects, whatever the modes (except
// Reset). The proxy accepts only loopback targets and listens only on
// loopback.
//
// Concurrency: every method is safe for concurrent use. Close stops the
// listener, closes every connection and returns once every goroutine the
// Proxy started has exited; it is idempotent.
package faultproxy
