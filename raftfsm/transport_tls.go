package raftfsm

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
)

// TLS on the node-to-node port.
//
// With MuxConfig.TLS set, the Mux runs a TLS handshake on every connection
// before the header of transport.go: the listener requires a client
// certificate and verifies it against the cluster CA, the dialer verifies the
// listener's certificate against the same CA and the host it dialed. Every
// node therefore needs a certificate that serves both ends (extended key
// usages serverAuth and clientAuth, or none) and names the host other nodes
// dial it at. Raft's transports, the control RPCs, joins and snapshot streams
// all come through Mux.dial and Mux.handshake, so all of them are covered.
//
// A certificate from the cluster CA makes its holder a cluster node, and a
// header names the node id it speaks for; the certificate ties the two
// together by host. A node's certificate names the host it is dialed at (the
// dialer checks that), so a Raft connection whose header names a node id this
// node knows is refused ("certificate does not name sender") unless the
// peer's certificate names the host of that node's cluster address, the
// registered one or its Config.PeerAddrs override (MuxConfig.PeerHosts). The
// rpc connections are checked the same way by Node.serveRPC once it has read
// the request, because a registration is checked against the address it
// registers instead (a node that moves host re-registers from its new one).
// A header naming a node id no node has registered yet is a node joining, and
// is not checked; nor are nodes that share a host told apart.
//
// Plain and TLS nodes do not talk, unless the TLS node is permissive
// (MuxConfig.TLSPermissive): it accepts a connection that does not start with
// a TLS record as plain, and dials plain a peer that refuses TLS with "tls not
// enabled". That is for the rolling restarts that turn TLS on (all nodes
// permissive, then all strict) or off (the reverse), and it gives up the
// authentication of plain peers while it lasts. Otherwise each side answers
// the other in bytes the other understands, so both log a clear reason
// instead of a bare reset:
//
//   - a TLS listener that reads a plain header instead of a ClientHello
//     answers the refusal "tls required" in plain bytes;
//   - a plain listener that reads a TLS record header answers "tls not
//     enabled", and the TLS dialer, whose TLS layer fails on that answer,
//     reads the refusal from the plain connection under it.

// ClusterTLS supplies the TLS configurations of the node-to-node port; its
// methods are called for every connection, so certificates may change between
// calls (tlsfiles.Config reloads its PEM files). Implementations must be safe
// for concurrent use.
type ClusterTLS interface {
	// ServerConfig is the listener's configuration. It must require and
	// verify client certificates; the Mux also refuses a connection whose
	// peer presented no verified chain.
	ServerConfig() *tls.Config
	// ClientConfig is a dial's configuration for serverName (the host part
	// of the dialed address): this node's certificate, and the CA that
	// verifies the listener.
	ClientConfig(serverName string) *tls.Config
}

// acceptSecurity returns what an accepted connection's header and bytes
// travel on: conn itself without TLS, a TLS connection after a successful
// handshake, or, when permissive, conn again for a peer that did not start
// with a TLS record. false means the connection was refused and closed.
func (m *Mux) acceptSecurity(conn net.Conn) (net.Conn, bool) {
	if m.cfg.TLS == nil {
		return conn, true
	}
	if !m.cfg.TLSPermissive {
		return m.acceptTLS(conn)
	}
	pc := &peekedConn{Conn: conn, r: bufio.NewReaderSize(conn, 16)}
	first, err := pc.r.Peek(1)
	if err != nil {
		m.log.Debug("cluster handshake failed", keyRemoteAddr, conn.RemoteAddr().String(), keyError, err)
		_ = conn.Close()
		return nil, false
	}
	if first[0] != tlsRecordHandshake {
		return pc, true
	}
	return m.acceptTLS(pc)
}

// peekedConn reads through r, which has peeked at the connection's first
// bytes.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite half-closes the connection under c, for refuse.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// tlsRecordHandshake is the content type of a TLS handshake record, the
// first byte a TLS client sends.
const tlsRecordHandshake = 22

// acceptTLS runs the server side of the TLS handshake on raw under the
// deadline already set on it. On failure it logs, counts and closes the
// connection and returns false.
func (m *Mux) acceptTLS(raw net.Conn) (net.Conn, bool) {
	tc := tls.Server(raw, m.cfg.TLS.ServerConfig())
	err := tc.Handshake()
	if err == nil && len(tc.ConnectionState().VerifiedChains) == 0 {
		err = errors.New("no verified client certificate")
	}
	if err == nil {
		return tc, true
	}
	remote := raw.RemoteAddr().String()
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh) && rh.Conn != nil && string(rh.RecordHeader[:4]) == connMagic:
		// A plain node: tell it why, in plain bytes.
		m.log.Warn("refused cluster connection", keyRemoteAddr, remote, keyReason, string(refuseTLSRequired))
		m.cfg.OnRefused(refuseTLSRequired.label())
		refuse(rh.Conn, refuseTLSRequired)
		return nil, false
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || m.ctx.Err() != nil:
		// Closed before a byte (a port probe, a dialer giving up), or by
		// Mux.Close.
		m.log.Debug("cluster handshake failed", keyRemoteAddr, remote, keyError, err)
	default:
		// The error names what failed (no certificate, unknown authority,
		// expired) and never holds key material.
		m.log.Warn("refused cluster connection", keyRemoteAddr, remote, keyReason, "tls handshake failed", keyError, err)
		m.cfg.OnRefused(refusedTLSHandshake)
	}
	_ = raw.Close()
	return nil, false
}

// namesSender reports whether c may speak for sender: c is not TLS (plain,
// or a permissive node's plain peer), sender is a node id this node does not
// know, or the peer's certificate names one of sender's hosts.
func (m *Mux) namesSender(c net.Conn, sender int32) bool {
	if _, isTLS := c.(*tls.Conn); !isTLS || m.cfg.PeerHosts == nil {
		return true
	}
	hosts, known := m.cfg.PeerHosts(sender)
	return !known || certNamesHost(c, hosts...)
}

// certNamesHost reports whether c is not a TLS connection, or its peer's
// certificate is valid for one of hosts (a DNS name or an IP address, as
// x509.Certificate.VerifyHostname reads them).
func certNamesHost(c net.Conn, hosts ...string) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return true
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return false
	}
	for _, h := range hosts {
		if h != "" && certs[0].VerifyHostname(h) == nil {
			return true
		}
	}
	return false
}

// addrHost is the host part of a host:port cluster address, or addr itself
// when it has no port.
func addrHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// clientTLS wraps a dialed connection to addr in TLS; the handshake runs in
// dialHandshake, under the dial's deadline.
func (m *Mux) clientTLS(raw net.Conn, addr string) net.Conn {
	return tls.Client(&recordingConn{Conn: raw, on: true}, m.cfg.TLS.ClientConfig(addrHost(addr)))
}

// maxRefusalBytes is the longest refusal on the wire: status, length, text.
const maxRefusalBytes = 2 + 255

// recordingConn keeps the first bytes a TLS client reads, until
// stopRecording: TLS reads ahead of the record header it complains about, so
// a plain refusal can only be recovered from a copy.
type recordingConn struct {
	net.Conn
	on  bool // read and written only by the handshaking goroutine
	buf []byte
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.on && len(c.buf) < maxRefusalBytes {
		c.buf = append(c.buf, b[:min(n, maxRefusalBytes-len(c.buf))]...)
	}
	return n, err
}

// stopRecording ends the copy once the handshake succeeded.
func stopRecording(conn net.Conn) {
	if rc, ok := conn.(*recordingConn); ok {
		rc.on, rc.buf = false, nil
	}
}

// dialTLSError explains a failed client handshake on conn (the connection
// under TLS). When the peer answered a plain refusal (a node without TLS), TLS
// fails on its first bytes as a record header, and the reason is taken from
// what conn recorded, reading what has not arrived yet.
func dialTLSError(err error, conn net.Conn) error {
	var rh tls.RecordHeaderError
	rc, ok := conn.(*recordingConn)
	if !errors.As(err, &rh) || !ok || rh.RecordHeader[0] != statusRefused || len(rc.buf) < 2 || rc.buf[0] != statusRefused {
		return err // crypto/tls errors start with "tls:"
	}
	want := 2 + int(rc.buf[1])
	if len(rc.buf) < want {
		rest := make([]byte, want-len(rc.buf))
		if _, rerr := io.ReadFull(rc.Conn, rest); rerr != nil {
			return err // crypto/tls errors start with "tls:"
		}
		rc.buf = append(rc.buf, rest...)
	}
	return fmt.Errorf("%w: %w", errPeerRefused, refusal(rc.buf[2:want]))
}
