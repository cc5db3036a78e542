package broker

// Listeners, TLS and SASL authentication of client connections.
//
// Every connection comes through a named listener with a security protocol
// (Kafka's listeners and listener.security.protocol.map): PLAINTEXT, SSL,
// SASL_PLAINTEXT or SASL_SSL. On SSL and SASL_SSL the TLS handshake runs in
// the connection's goroutine before any request is read, bounded by
// Config.AuthenticationTimeout. On SASL_PLAINTEXT and SASL_SSL the
// connection must authenticate (SaslHandshake, then SaslAuthenticate,
// KIP-152) within that timeout; until it has, only ApiVersions and the two
// SASL APIs are served, frames are capped at MaxUnauthenticatedRequestBytes
// (Kafka's sasl.server.max.receive.size), and any other request closes the
// connection, as Kafka does.
//
// Each connection has a principal, the identity a later authorizer (ACLs)
// checks: "User:<name>" after SASL, "User:<CN>" for a verified client
// certificate on SSL, else "User:ANONYMOUS".
//
// Re-authentication (KIP-368): with Config.SASLSessionLifetime set, a
// successful SaslAuthenticate (v1+) answers the session's lifetime; a
// connection whose session has expired may send only ApiVersions,
// SaslHandshake and SaslAuthenticate (to authenticate again, as the same
// principal with the same mechanism), and is closed on anything else.

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/internal/tlsfiles"
)

// SecurityProtocol is a listener's security protocol, named as Kafka names it.
type SecurityProtocol string

// Security protocols.
const (
	ProtocolPlaintext     SecurityProtocol = "PLAINTEXT"
	ProtocolSSL           SecurityProtocol = "SSL"
	ProtocolSASLPlaintext SecurityProtocol = "SASL_PLAINTEXT"
	ProtocolSASLSSL       SecurityProtocol = "SASL_SSL"
)

// ParseSecurityProtocol checks a protocol name.
func ParseSecurityProtocol(s string) (SecurityProtocol, bool) {
	switch p := SecurityProtocol(s); p {
	case ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL:
		return p, true
	}
	return "", false
}

// TLS reports whether the protocol runs over TLS.
func (p SecurityProtocol) TLS() bool { return p == ProtocolSSL || p == ProtocolSASLSSL }

// SASL reports whether the protocol requires SASL authentication.
func (p SecurityProtocol) SASL() bool { return p == ProtocolSASLPlaintext || p == ProtocolSASLSSL }

// SASL mechanism names.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// SASLMechanisms are the mechanisms served, in the order SaslHandshake lists
// them.
var SASLMechanisms = []string{MechanismScramSHA512, MechanismScramSHA256, MechanismPlain}

// Defaults and bounds of the security settings.
const (
	// DefaultAuthenticationTimeout bounds the TLS handshake and the SASL
	// exchange of a new connection.
	DefaultAuthenticationTimeout = 10 * time.Second
	// MinAuthenticationTimeout and MaxAuthenticationTimeout bound it.
	MinAuthenticationTimeout = 100 * time.Millisecond
	MaxAuthenticationTimeout = 10 * time.Minute
	// MinSASLSessionLifetime bounds SASLSessionLifetime from below (0 turns
	// re-authentication off): clients re-authenticate at 85-95% of it.
	MinSASLSessionLifetime = time.Second
	// MaxUnauthenticatedRequestBytes caps a frame before authentication
	// (Kafka's sasl.server.max.receive.size, 512 KiB).
	MaxUnauthenticatedRequestBytes = 512 << 10
)

// Principals.
const (
	principalAnonymous = "User:ANONYMOUS"
	principalPrefix    = "User:"
)

// Listener is one named Kafka listener a Broker serves (ServeListener).
type Listener struct {
	// Name is the listener's name (Kafka's listener name), the key under
	// which Metadata finds every node's endpoint for a client that came
	// through it.
	Name string
	// Protocol is its security protocol.
	Protocol SecurityProtocol
	// AdvertisedAddr is the host:port clients are told to use for it.
	AdvertisedAddr string
	// TLS serves SSL and SASL_SSL; required for them, ignored otherwise.
	TLS *tls.Config
}

// listener is a Listener with its advertised address split for Metadata.
type listener struct {
	Listener
	host string
	port int32
}

func newListener(l Listener) (*listener, error) {
	if l.Name == "" {
		return nil, fmt.Errorf("broker: listener without a name")
	}
	if _, ok := ParseSecurityProtocol(string(l.Protocol)); !ok {
		return nil, fmt.Errorf("broker: listener %s: unknown security protocol %q", l.Name, l.Protocol)
	}
	if l.Protocol.TLS() && l.TLS == nil {
		return nil, fmt.Errorf("broker: listener %s (%s) needs a TLS configuration", l.Name, l.Protocol)
	}
	host, portStr, err := net.SplitHostPort(l.AdvertisedAddr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || host == "" || perr != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("broker: listener %s: advertised address %q is not host:port", l.Name, l.AdvertisedAddr)
	}
	return &listener{Listener: l, host: host, port: int32(port)}, nil
}

// session is a connection's authentication state. The processor goroutine
// owns every field but authenticated, which the reader and the
// authentication timer read.
type session struct {
	// authenticated is set once the connection may send any request: at
	// once on listeners without SASL, after SaslAuthenticate on the others.
	authenticated atomic.Bool
	// principal is the connection's identity (see the file comment).
	principal string
	// mechanism is the one chosen by the last SaslHandshake ("" before).
	mechanism string
	// handshakeVersion is that SaslHandshake's version.
	handshakeVersion int16
	// scram is the SCRAM exchange in progress, if any.
	scram *scram.Server
	// user is the authenticated SASL user ("" before); authMechanism the
	// mechanism it authenticated with.
	user          string
	authMechanism string
	// expires is when the session ends (zero: never).
	expires time.Time
}

// saslAPIs are the requests served before authentication.
func saslAPI(key int16) bool {
	return key == kmsg.ApiVersions.Int16() || key == kmsg.SASLHandshake.Int16() || key == kmsg.SASLAuthenticate.Int16()
}

// errNotAuthenticated closes a connection that sent a request it may not
// send yet.
type errNotAuthenticated struct {
	key     int16
	expired bool
}

func (e errNotAuthenticated) Error() string {
	if e.expired {
		return fmt.Sprintf("%s after the SASL session expired (KIP-368)", kmsg.NameForKey(e.key))
	}
	return fmt.Sprintf("unexpected %s before SASL authentication", kmsg.NameForKey(e.key))
}

// checkAuthenticated decides whether the connection may send a request of
// key now; an error closes it.
func (c *conn) checkAuthenticated(key int16, now time.Time) error {
	if saslAPI(key) || !c.lis.Protocol.SASL() {
		return nil
	}
	if !c.sess.authenticated.Load() {
		return errNotAuthenticated{key: key}
	}
	if !c.sess.expires.IsZero() && now.After(c.sess.expires) {
		return errNotAuthenticated{key: key, expired: true}
	}
	return nil
}

// handshakeTLS runs the TLS handshake within the authentication timeout and
// takes the principal of a verified client certificate.
func (c *conn) handshakeTLS(tc *tls.Conn) error {
	_ = tc.SetDeadline(time.Now().Add(c.b.cfg.AuthenticationTimeout))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		return err
	}
	_ = tc.SetDeadline(time.Time{})
	if p := tlsfiles.Principal(tc.ConnectionState()); p != "" {
		c.sess.principal = p
	}
	return nil
}

// startAuthTimer closes the connection if it has not authenticated within
// the authentication timeout; the returned func stops the timer.
func (c *conn) startAuthTimer() func() bool {
	t := time.AfterFunc(c.b.cfg.AuthenticationTimeout, func() {
		if c.sess.authenticated.Load() {
			return
		}
		c.b.metrics.connectionsClosed.WithLabelValues("authentication_timeout").Inc()
		c.b.log.Warn("connection did not authenticate in time, closing it", logKeyRemote, c.remote,
			logKeyListener, c.lis.Name, logKeyTimeout, c.b.cfg.AuthenticationTimeout)
		c.nc.Close()
	})
	return t.Stop
}

// maxFrameBytes is the largest frame the connection may send now.
func (c *conn) maxFrameBytes() int32 {
	if c.lis.Protocol.SASL() && !c.sess.authenticated.Load() {
		return min(c.b.cfg.MaxRequestBytes, MaxUnauthenticatedRequestBytes)
	}
	return c.b.cfg.MaxRequestBytes
}
