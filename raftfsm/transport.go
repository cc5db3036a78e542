package raftfsm

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Internode transport.
//
// A node listens on one TCP address, its cluster address, for every Raft
// group it runs and for control RPCs. The dialer opens each connection with a
// header:
//
//	magic       4 bytes  "SCRN"
//	version     1 byte   1
//	kind        1 byte   1 = raft, 2 = rpc
//	cluster id  1 byte length (at most 64), then the bytes
//	group       uint32, big endian (0 for rpc)
//	sender      int32, big endian: the dialer's node id
//
// The acceptor reads it under a deadline and answers one status byte. 0
// accepts: from then on the connection carries its user's bytes unframed (a
// raft.NetworkTransport, or MuxConfig.HandleRPC). Anything else refuses; a
// 1-byte length and a short reason follow, and the acceptor closes.
//
// Why this shape: one port serves any number of groups, so what an operator
// opens does not change as groups are added or moved. Each group runs a stock
// raft.NetworkTransport over its own StreamLayer, so it keeps pre-vote,
// pipelining, the heartbeat fast path and a separate connection per snapshot,
// and a busy group never queues another group's heartbeats behind its data.
// The cluster id keeps a node from talking Raft to another cluster that reused
// an address. Rejected: a port per group (the ports change with the group
// count); gRPC (it would replace NetworkTransport and its heartbeat fast path);
// a yamux-style multiplexer over one TCP connection (a snapshot or a large
// append stalls every group behind it: head-of-line blocking).
//
// With MuxConfig.TLS set, every connection is TLS with mutual authentication
// before the header is sent (transport_tls.go); the header and everything
// after it travel inside TLS.

const (
	connMagic          = "SCRN"
	connVersion   byte = 1
	connKindRaft  byte = 1
	connKindRPC   byte = 2
	statusOK      byte = 0
	statusRefused byte = 1
	// maxClusterIDLen bounds the cluster id in a header.
	maxClusterIDLen = 64

	defaultHandshakeTimeout = 5 * time.Second
	// maxHandshakes bounds the connections whose header is still being read;
	// beyond it new connections are refused at once, so idle sockets cost at
	// most this many goroutines.
	maxHandshakes = 256
	// layerBacklog is how many connections may wait for a group's transport to
	// accept them. NetworkTransport accepts in a loop, so a full backlog means
	// the group is stuck or nobody serves it.
	layerBacklog = 16
)

// Log attribute keys used only by the transport.
const (
	keyRemoteAddr = "remote_addr"
	keyReason     = "reason"
	keySender     = "sender"
)

// errPeerRefused is wrapped, with the peer's reason, by a dial the peer refused.
var errPeerRefused = errors.New("raftfsm: peer refused connection")

// refusal is a reason the acceptor sends back before closing; its text goes on
// the wire, so keep it short and below 256 bytes.
type refusal string

func (r refusal) Error() string { return string(r) }

const (
	refuseMagic        refusal = "bad magic"
	refuseVersion      refusal = "unsupported version"
	refuseKind         refusal = "unknown connection kind"
	refuseClusterIDLen refusal = "cluster id too long"
	refuseNoClusterID  refusal = "missing cluster id"
	refuseClusterID    refusal = "cluster id mismatch"
	refuseGroup        refusal = "unknown group"
	refuseBusy         refusal = "busy"
	refuseNoRPC        refusal = "rpc not served"
	refuseClosing      refusal = "shutting down"
	// refuseTLSNotEnabled answers a TLS ClientHello on a plain listener, in
	// plain bytes; the TLS dialer reads it back (transport_tls.go).
	refuseTLSNotEnabled refusal = "tls not enabled"
	// refuseTLSRequired answers a plain header on a TLS listener.
	refuseTLSRequired refusal = "tls required"
	// refuseIdentity answers a TLS peer whose certificate does not name the
	// host of the node id its header claims (transport_tls.go).
	refuseIdentity refusal = "certificate does not name sender"
)

// refusedTLSHandshake is the OnRefused reason of a failed TLS handshake:
// no certificate, one the CA did not sign, an expired one.
const refusedTLSHandshake = "tls_handshake"

// label is r as an OnRefused reason: lowercase words joined by '_'.
func (r refusal) label() string { return strings.ReplaceAll(string(r), " ", "_") }

// connHeader is the header a dialer sends.
type connHeader struct {
	kind      byte
	clusterID string
	group     uint32
	sender    int32
}

func (h connHeader) appendTo(b []byte) []byte {
	b = append(b, connMagic...)
	b = append(b, connVersion, h.kind, byte(len(h.clusterID)))
	b = append(b, h.clusterID...)
	b = binary.BigEndian.AppendUint32(b, h.group)
	return binary.BigEndian.AppendUint32(b, uint32(h.sender))
}

// readConnHeader reads exactly one header from r, never more. A malformed
// header gives a refusal; a short read gives r's error.
func readConnHeader(r io.Reader) (connHeader, error) {
	var h connHeader
	var fixed [7]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return h, err
	}
	switch {
	case fixed[0] == tlsRecordHandshake && fixed[1] == 3:
		// A TLS record header (type 22, version 3.x): the dialer speaks TLS.
		return h, refuseTLSNotEnabled
	case string(fixed[:4]) != connMagic:
		return h, refuseMagic
	case fixed[4] != connVersion:
		return h, refuseVersion
	case fixed[5] != connKindRaft && fixed[5] != connKindRPC:
		return h, refuseKind
	case fixed[6] > maxClusterIDLen:
		return h, refuseClusterIDLen
	}
	rest := make([]byte, int(fixed[6])+8)
	if _, err := io.ReadFull(r, rest); err != nil {
		return h, err
	}
	n := int(fixed[6])
	h.kind = fixed[5]
	h.clusterID = string(rest[:n])
	h.group = binary.BigEndian.Uint32(rest[n:])
	h.sender = int32(binary.BigEndian.Uint32(rest[n+4:]))
	return h, nil
}

// MuxConfig configures a Mux.
type MuxConfig struct {
	// NodeID is this node's id, sent as the sender in every header it dials.
	NodeID int32
	// ClusterID returns the cluster this node belongs to, or "" while it is
	// joining and does not know it yet. It is called for every connection, so
	// the id can be learned after the Mux starts. nil means always "".
	ClusterID func() string
	// HandleRPC serves an accepted rpc connection in a goroutine the Mux owns.
	// It owns conn and must close it; Mux.Close closes conn to make it return.
	// nil refuses rpc connections.
	HandleRPC func(conn net.Conn, sender int32)
	// Advertised is the cluster address other nodes dial to reach this node.
	// StreamLayer.Addr returns it, and Raft puts it in its RPCs. Empty means
	// the listener's address.
	Advertised string
	// Logger receives refusals and accept errors; nil means slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds the TLS handshake, reading a header and
	// answering it; 0 means 5s.
	HandshakeTimeout time.Duration
	// TLS, when set, carries every connection the Mux accepts or dials over
	// TLS with mutual authentication (transport_tls.go); nil is plain TCP.
	TLS ClusterTLS
	// TLSPermissive, with TLS, also accepts plain connections and dials a
	// peer again in plain TCP when it answers "tls not enabled": a cluster
	// turns TLS on or off with two rolling restarts (transport_tls.go).
	TLSPermissive bool
	// OnRefused is called once for every connection refused, with a short
	// reason from a fixed set ("tls_handshake", "cluster_id_mismatch",
	// "busy", ...), for a metric. nil ignores refusals.
	OnRefused func(reason string)
	// PeerHosts, with TLS, returns the hosts a node's certificate may name:
	// those of the cluster addresses this node knows it by. known is false
	// for a node id it does not know (a node joining). A Raft connection
	// whose header names a known sender is refused unless the peer's
	// certificate names one of them (transport_tls.go); an rpc connection
	// is checked by HandleRPC, which sees the request. nil checks nothing.
	PeerHosts func(node int32) (hosts []string, known bool)
}

// Mux serves one cluster listener: it reads each connection's header and hands
// the connection to its Raft group's StreamLayer or to MuxConfig.HandleRPC. Its
// methods are safe for concurrent use.
type Mux struct {
	ln        net.Listener
	cfg       MuxConfig
	advertise net.Addr
	log       *slog.Logger
	slots     chan struct{} // one token per running handshake
	ctx       context.Context
	cancel    context.CancelFunc // called by Close

	mu     sync.Mutex
	closed bool
	layers map[uint32]*StreamLayer
	conns  map[net.Conn]struct{} // in a handshake or held by HandleRPC
	wg     sync.WaitGroup        // Serve, handshakes, RPC handlers
}

// NewMux returns a Mux on ln; call Serve to start accepting. The Mux owns ln.
func NewMux(ln net.Listener, cfg MuxConfig) *Mux {
	if cfg.ClusterID == nil {
		cfg.ClusterID = func() string { return "" }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.OnRefused == nil {
		cfg.OnRefused = func(string) {}
	}
	m := &Mux{
		ln:        ln,
		cfg:       cfg,
		advertise: ln.Addr(),
		log:       cfg.Logger,
		slots:     make(chan struct{}, maxHandshakes),
		layers:    make(map[uint32]*StreamLayer),
		conns:     make(map[net.Conn]struct{}),
	}
	if cfg.Advertised != "" {
		m.advertise = advertisedAddr(cfg.Advertised)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// advertisedAddr is a cluster address as configured, for StreamLayer.Addr.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// Addr returns the listener's address (not the advertised one).
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Serve accepts connections until Close, then returns nil. It backs off and
// retries on temporary accept errors and returns any other error. Each
// handshake runs in its own goroutine, so a slow peer never stalls the loop.
// Call it once.
func (m *Mux) Serve() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()

	var delay time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil {
				return nil
			}
			var te interface{ Temporary() bool }
			if !errors.As(err, &te) || !te.Temporary() {
				return fmt.Errorf("raftfsm: cluster listener: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("cluster accept failed, retrying", keyError, err)
			t := time.NewTimer(delay)
			select {
			case <-m.ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		delay = 0
		select {
		case m.slots <- struct{}{}:
		default:
			// No drain here, unlike refuse: the loop must not wait. The dialer
			// may see a reset instead of the reason.
			m.log.Warn("refused cluster connection", keyRemoteAddr, conn.RemoteAddr().String(), keyReason, "too many handshakes")
			m.cfg.OnRefused(refuseBusy.label())
			if m.cfg.TLS == nil { // a TLS dialer could not read a plain answer
				_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = conn.Write(append([]byte{statusRefused, byte(len(refuseBusy))}, refuseBusy...))
			}
			_ = conn.Close()
			continue
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			_ = conn.Close()
			<-m.slots
			return nil
		}
		m.conns[conn] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go m.handshake(conn)
	}
}

// handshake runs TLS when configured, reads and checks the header, then hands
// the connection on or refuses it. conn is the accepted TCP connection, the
// one m.conns tracks.
func (m *Mux) handshake(conn net.Conn) {
	defer m.wg.Done()
	slot := true
	release := func() {
		if slot {
			slot = false
			<-m.slots
		}
	}
	defer release()
	defer m.untrack(conn)

	_ = conn.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	c, ok := m.acceptSecurity(conn) // what the header and the user's bytes travel on
	if !ok {
		return
	}
	h, err := readConnHeader(c)
	decoded := err == nil
	if decoded {
		err = m.check(h)
	}
	if err == nil && h.kind == connKindRaft && !m.namesSender(c, h.sender) {
		err = refuseIdentity
	}
	if err == nil && h.kind == connKindRaft {
		err = m.handOff(h.group, conn, senderConn{c, h.sender}) // the layer answers when its transport accepts
		if err == nil {
			return
		}
	}
	var r refusal
	if errors.As(err, &r) {
		attrs := []any{keyRemoteAddr, conn.RemoteAddr().String(), keyReason, string(r)}
		if decoded {
			attrs = append(attrs, keySender, h.sender, keyGroup, h.group)
		}
		m.log.Warn("refused cluster connection", attrs...)
		m.cfg.OnRefused(r.label())
		refuse(c, r)
		return
	}
	if err != nil {
		m.log.Debug("cluster handshake failed", keyRemoteAddr, conn.RemoteAddr().String(), keyError, err)
		_ = c.Close()
		return
	}
	if _, err := c.Write([]byte{statusOK}); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	release()
	m.cfg.HandleRPC(c, h.sender)
}

// check applies the cluster id rules to a well-formed header.
func (m *Mux) check(h connHeader) error {
	local := m.cfg.ClusterID()
	switch h.kind {
	case connKindRaft:
		if local == "" || h.clusterID == "" {
			return refuseNoClusterID
		}
		if h.clusterID != local {
			return refuseClusterID
		}
	case connKindRPC:
		// A joining node does not know the cluster id yet, and neither does a
		// node waiting to join.
		if local != "" && h.clusterID != "" && h.clusterID != local {
			return refuseClusterID
		}
		if m.cfg.HandleRPC == nil {
			return refuseNoRPC
		}
	}
	return nil
}

// handOff queues c for group's layer without blocking; the layer now owns it.
// raw is the TCP connection under c (c itself without TLS), which the Mux
// stops tracking.
func (m *Mux) handOff(group uint32, raw net.Conn, c senderConn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.layers[group]
	switch {
	case m.closed:
		return refuseClosing
	case l == nil:
		return refuseGroup
	}
	select {
	case l.queue <- c:
		delete(m.conns, raw)
		return nil
	default:
		return refuseBusy
	}
}

func (m *Mux) untrack(conn net.Conn) {
	m.mu.Lock()
	delete(m.conns, conn)
	m.mu.Unlock()
}

// refuse answers r and closes conn. It half-closes first and drains what the
// dialer still sends until the dialer closes or the handshake deadline passes:
// closing with unread input would send a reset that can destroy the reason
// before the dialer reads it.
func refuse(conn net.Conn, r refusal) {
	defer conn.Close()
	if _, err := conn.Write(append([]byte{statusRefused, byte(len(r))}, r...)); err != nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 4<<10))
	}
}

// Close stops Serve, closes the listener, every StreamLayer and every
// connection in a handshake or held by HandleRPC, and waits for the Mux's
// goroutines. Shut the groups' Raft instances down first, or their transports
// log accept errors until they are. It must not be called from HandleRPC.
// Close is idempotent.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	layers := slices.Collect(maps.Values(m.layers))
	conns := slices.Collect(maps.Keys(m.conns))
	m.mu.Unlock()

	m.cancel()
	err := m.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	for _, l := range layers {
		_ = l.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	m.wg.Wait()
	return err
}

// Layer registers group and returns its StreamLayer. It fails if the group
// already has a layer or the Mux is closed. Closing the layer unregisters it.
func (m *Mux) Layer(group uint32) (*StreamLayer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if m.layers[group] != nil {
		return nil, fmt.Errorf("raftfsm: raft group %d already has a stream layer", group)
	}
	l := &StreamLayer{mux: m, group: group, queue: make(chan senderConn, layerBacklog), conns: make(map[*layerConn]struct{}), peerClosed: map[int32]time.Time{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	m.layers[group] = l
	return l, nil
}

// DialRPC dials addr with an rpc header and waits for the peer's answer, until
// ctx is done or, if ctx has no deadline, for the handshake timeout. The caller
// owns the returned connection.
func (m *Mux) DialRPC(ctx context.Context, addr string) (net.Conn, error) {
	if m.ctx.Err() != nil {
		return nil, ErrClosed
	}
	return m.dial(ctx, addr, connHeader{kind: connKindRPC, clusterID: m.cfg.ClusterID(), sender: m.cfg.NodeID})
}

// dial connects to addr, sends h and waits for the status. A refusal gives an
// error wrapping errPeerRefused that names the peer's reason.
func (m *Mux) dial(ctx context.Context, addr string, h connHeader) (net.Conn, error) {
	if len(h.clusterID) > maxClusterIDLen {
		return nil, fmt.Errorf("raftfsm: cluster id longer than %d bytes", maxClusterIDLen)
	}
	conn, err := m.dialOnce(ctx, addr, h, m.cfg.TLS != nil)
	if err != nil && m.cfg.TLS != nil && m.cfg.TLSPermissive && errors.Is(err, refuseTLSNotEnabled) {
		return m.dialOnce(ctx, addr, h, false) // a node that is not on TLS yet
	}
	return conn, err
}

// dialOnce is one connection attempt of dial, over TLS or plain TCP.
func (m *Mux) dialOnce(ctx context.Context, addr string, h connHeader, useTLS bool) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if useTLS {
		conn = m.clientTLS(conn, addr)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(m.cfg.HandshakeTimeout)
	}
	_ = conn.SetDeadline(deadline)
	// Cancelling ctx interrupts the handshake by moving the deadline to the past.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err = dialHandshake(conn, h.appendTo(nil))
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		if errors.Is(err, errPeerRefused) {
			return nil, err
		}
		return nil, fmt.Errorf("raftfsm: cluster handshake with %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// dialHandshake runs TLS on a TLS connection, sends a header and reads the
// acceptor's answer.
func dialHandshake(conn net.Conn, header []byte) error {
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return dialTLSError(err, tc.NetConn())
		}
		stopRecording(tc.NetConn())
	}
	if _, err := conn.Write(header); err != nil {
		return err
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:1]); err != nil {
		return err
	}
	if b[0] == statusOK {
		return nil
	}
	reason := fmt.Sprintf("status %d", b[0])
	if _, err := io.ReadFull(conn, b[1:]); err == nil {
		text := make([]byte, b[1])
		if _, err := io.ReadFull(conn, text); err == nil {
			reason = string(text)
		}
	}
	return fmt.Errorf("%w: %s", errPeerRefused, reason)
}

// StreamLayer implements raft.StreamLayer for one Raft group over its Mux.
// Accept returns the group's connections, Dial opens one to the same group on
// another node, Addr is the node's advertised cluster address, and Close
// unregisters only this group and closes every connection it accepted or
// dialed. Its methods are safe for concurrent use.
type StreamLayer struct {
	mux    *Mux
	group  uint32
	queue  chan senderConn // handed off by the Mux, not yet accepted
	ctx    context.Context
	cancel context.CancelFunc // called by Close

	mu     sync.Mutex
	closed bool
	conns  map[*layerConn]struct{}
	// peerClosed: per sending node, when the last connection it dialed here
	// was closed by its end (leaderloss.go).
	peerClosed map[int32]time.Time
}

// senderConn is an accepted connection and the node its header names.
type senderConn struct {
	net.Conn
	sender int32
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// Accept waits for the next connection to this group, answers its dialer's
// handshake and returns it. After Close it returns net.ErrClosed.
func (l *StreamLayer) Accept() (net.Conn, error) {
	for {
		select {
		case <-l.ctx.Done():
			return nil, net.ErrClosed
		case conn := <-l.queue:
			// Answered here rather than at hand-off, so a connection its dialer
			// sees accepted is one this group's transport holds. The handshake
			// deadline still applies: a connection queued too long fails here.
			if _, err := conn.Write([]byte{statusOK}); err != nil {
				l.mux.log.Debug("cluster handshake failed", keyRemoteAddr, conn.RemoteAddr().String(), keyGroup, l.group, keyError, err)
				_ = conn.Close()
				continue
			}
			_ = conn.SetDeadline(time.Time{})
			return l.track(conn.Conn, conn.sender)
		}
	}
}

// staleAddrPrefix starts the address Node.ServerAddr gives a stale server;
// Dial refuses it.
const staleAddrPrefix = "stale-incarnation/"

// errStaleServer: Raft dialed a server whose node registered a new incarnation.
var errStaleServer = errors.New("raftfsm: not dialing a removed incarnation of a node")

// Dial connects to this group on the node at address, waiting at most timeout
// (0: the handshake timeout) for the connection and the peer's answer.
func (l *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if strings.HasPrefix(string(address), staleAddrPrefix) {
		return nil, fmt.Errorf("%w: %s", errStaleServer, strings.TrimPrefix(string(address), staleAddrPrefix))
	}
	ctx := l.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, err := l.mux.dial(ctx, string(address), connHeader{
		kind: connKindRaft, clusterID: l.mux.cfg.ClusterID(), group: l.group, sender: l.mux.cfg.NodeID,
	})
	if err != nil {
		return nil, err
	}
	return l.track(conn, -1)
}

// Addr returns the node's advertised cluster address.
func (l *StreamLayer) Addr() net.Addr { return l.mux.advertise }

// Close unregisters the group from the Mux, so new connections to it are
// refused, and closes its queued, accepted and dialed connections. Other
// groups are not affected. Close is idempotent.
func (l *StreamLayer) Close() error {
	l.mux.mu.Lock()
	if l.mux.layers[l.group] == l {
		delete(l.mux.layers, l.group)
	}
	l.mux.mu.Unlock()
	// No hand-off reaches the queue from here on.

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()

	l.cancel()
	for c := range conns {
		_ = c.Conn.Close()
	}
	for {
		select {
		case conn := <-l.queue:
			_ = conn.Close()
		default:
			return nil
		}
	}
}

// track wraps conn so Close can find it; it closes conn if the layer is closed.
// sender is the node that dialed an accepted conn, -1 for a dialed one.
func (l *StreamLayer) track(conn net.Conn, sender int32) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	c := &layerConn{Conn: conn, layer: l, sender: sender}
	l.conns[c] = struct{}{}
	return c, nil
}

// layerConn is a connection of a StreamLayer; closing it forgets it.
type layerConn struct {
	net.Conn
	layer  *StreamLayer
	sender int32 // the dialing node of an accepted connection, else -1
}

// Read reports a connection closed on this node as io.EOF: hashicorp/raft logs
// any other read error at Error level, and closing a group's layer, which
// closes its connections under raft's readers, is routine. An accepted
// connection that its dialer's end closed or reset is recorded against the
// dialer: a leader killed with SIGKILL shows here at once, seconds before its
// followers' heartbeat timeout (leaderloss.go).
func (c *layerConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, net.ErrClosed) {
		return n, io.EOF
	}
	var ne net.Error
	if err != nil && c.sender >= 0 && !(errors.As(err, &ne) && ne.Timeout()) {
		c.layer.mu.Lock()
		c.layer.peerClosed[c.sender] = time.Now()
		c.layer.mu.Unlock()
	}
	return n, err
}

// peerClosedAt returns when a connection that node dialed to group was last
// closed by node's end; zero when never, or without such a layer.
func (m *Mux) peerClosedAt(group uint32, node int32) time.Time {
	m.mu.Lock()
	l := m.layers[group]
	m.mu.Unlock()
	if l == nil {
		return time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peerClosed[node]
}

func (c *layerConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.conns, c)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}

// newGroupTransport returns a Raft transport for one group over layer.
func newGroupTransport(layer *StreamLayer, provider raft.ServerAddressProvider, logger hclog.Logger) *raft.NetworkTransport {
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: provider,
		Logger:                logger,
		Stream:                layer,
		// Idle connections kept per peer. Heartbeats and appends to a peer run
		// concurrently (a working pipeline holds its own connection outside
		// the pool), and a vote or TimeoutNow may overlap them: three covers
		// that. Snapshots never use the pool. More would only hold idle
		// sockets, multiplied by every group.
		MaxPool: 3,
		// One RPC in flight per follower: pipelining off. With the default of
		// two, hashicorp/raft sizes the pipeline's channels at zero, and a
		// follower's Success=false can leave the leader's replication loop
		// parked on one more send while the response reader waits on a channel
		// nobody reads: that follower then gets heartbeats but never another
		// entry, so no election repairs it (seen once here as a hung
		// TestClusterFailover; the same analysis is in grafana/pyroscope#5518).
		// Replication is 2-5% of a node's CPU on the produce path
		// (integration/bench/profiles/README.md), and on a LAN the library's
		// own measurements favour little or no pipelining (hashicorp/raft#541).
		MaxRPCsInFlight: 1,
		// I/O deadline of each RPC and of Dial; InstallSnapshot scales it by
		// size. It must outlast a follower's slowest synced append on a busy
		// disk, and still abandon a dead peer's connection in bounded time.
		// Elections do not wait on it: they run on Raft's own timeouts.
		Timeout: 10 * time.Second,
	})
	// InstallSnapshot waits Timeout per TimeoutScale bytes of the request:
	// between nodes a request is a stream ref whose padding bytes are the
	// time the follower may take to pull and ingest the stream (snapshot.go),
	// so one byte counts Timeout.
	t.TimeoutScale = 1
	return t
}
