package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/shardcache/shardcache/internal/testcerts"
	"github.com/shardcache/shardcache/internal/tlsfiles"
)

// secureBroker is a test broker with a PLAINTEXT listener (tb.Addr) and the
// listeners a test adds with listen.
type secureBroker struct {
	*testBroker
	ca  *testcerts.CA
	tls *tlsfiles.Config
}

func newSecureBroker(t testing.TB, opts ...func(*testBrokerConfig)) *secureBroker {
	t.Helper()
	sb := &secureBroker{testBroker: newTestBroker(t, opts...), ca: testcerts.NewCA(t, "test-ca")}
	files := sb.ca.Write(t, t.TempDir(), "server", sb.ca.Server(t, "broker"))
	var err error
	sb.tls, err = tlsfiles.Load(tlsfiles.Files{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA, ClientAuth: tlsfiles.ClientAuthRequested})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// listen serves a new listener named after its protocol and returns its address.
func (sb *secureBroker) listen(t testing.TB, p SecurityProtocol) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener{Name: string(p), Protocol: p, AdvertisedAddr: ln.Addr().String()}
	if p.TLS() {
		l.TLS = sb.tls.ServerConfig()
	}
	done := make(chan error, 1)
	go func() { done <- sb.Broker.ServeListener(ln, l) }()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func (sb *secureBroker) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: sb.ca.Pool(), ServerName: "127.0.0.1"}
}

// addUser stores user's password for both SCRAM mechanisms through
// AlterUserScramCredentials on the PLAINTEXT listener.
func (sb *secureBroker) addUser(t testing.TB, user, password string, mechs ...kadm.ScramMechanism) {
	t.Helper()
	var ups []kadm.UpsertSCRAM
	for _, m := range mechs {
		ups = append(ups, kadm.UpsertSCRAM{User: user, Mechanism: m, Iterations: 4096, Password: password})
	}
	res, err := sb.admin(t).AlterUserSCRAMs(context.Background(), nil, ups)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
}

func saslMechanism(name, user, password string) sasl.Mechanism {
	switch name {
	case MechanismPlain:
		return plain.Auth{User: user, Pass: password}.AsMechanism()
	case MechanismScramSHA256:
		return kscram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	}
	return kscram.Auth{User: user, Pass: password}.AsSha512Mechanism()
}

// produceConsume produces one record to topic and reads it back.
func produceConsume(t *testing.T, cl *kgo.Client, topic string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		return err
	}
	cl.AddConsumeTopics(topic)
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fs.Err0(); err != nil {
			return err
		}
		if fs.NumRecords() > 0 {
			return nil
		}
	}
}

func TestSASLMechanismsOverListeners(t *testing.T) {
	sb := newSecureBroker(t)
	sb.addUser(t, "alice", "alice-secret", kadm.ScramSha256, kadm.ScramSha512)
	sb.addUser(t, "bob", "bob-secret", kadm.ScramSha512)
	saslSSL := sb.listen(t, ProtocolSASLSSL)
	saslPlain := sb.listen(t, ProtocolSASLPlaintext)

	tests := []struct {
		mech, user, pass string
		addr             string
		tls              bool
		ok               bool
	}{
		{MechanismScramSHA256, "alice", "alice-secret", saslSSL, true, true},
		{MechanismScramSHA512, "alice", "alice-secret", saslSSL, true, true},
		{MechanismPlain, "bob", "bob-secret", saslSSL, true, true},
		{MechanismScramSHA512, "bob", "bob-secret", saslPlain, false, true},
		{MechanismScramSHA256, "alice", "wrong", saslSSL, true, false},
		{MechanismPlain, "alice", "wrong", saslPlain, false, false},
		{MechanismScramSHA256, "bob", "bob-secret", saslPlain, false, false}, // bob has no SHA-256 credential
		{MechanismScramSHA512, "nobody", "x", saslSSL, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.mech+"/"+tt.user+"/"+tt.pass, func(t *testing.T) {
			opts := []kgo.Opt{kgo.SASL(saslMechanism(tt.mech, tt.user, tt.pass))}
			if tt.tls {
				opts = append(opts, kgo.DialTLSConfig(sb.clientTLS()))
			}
			before := testutil.ToFloat64(sb.Broker.metrics.saslAuthentications.WithLabelValues(tt.mech, "failure"))
			cl := newClient(t, tt.addr, opts...)
			if !tt.ok {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
				if !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("wrong credentials: err %v, want SASL_AUTHENTICATION_FAILED", err)
				}
				if after := testutil.ToFloat64(sb.Broker.metrics.saslAuthentications.WithLabelValues(tt.mech, "failure")); after <= before {
					t.Fatalf("failure not counted (%v -> %v)", before, after)
				}
				return
			}
			err := produceConsume(t, cl, "sasl-"+tt.user)
			{
				if err != nil {
					t.Fatalf("produce and consume: %v", err)
				}
				// Metadata named this listener's address, not the PLAINTEXT one.
				md, err := kadm.NewClient(cl).BrokerMetadata(context.Background())
				if err != nil || len(md.Brokers) != 1 || md.Brokers[0].Host+":"+itoa(md.Brokers[0].Port) != tt.addr {
					t.Fatalf("metadata brokers %+v (err %v), want %s", md.Brokers, err, tt.addr)
				}
			}
		})
	}
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }

// saslConn dials addr and speaks Kafka by hand.
type saslConn struct {
	t  *testing.T
	nc net.Conn
	id int32
}

func dialSASL(t *testing.T, addr string) *saslConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &saslConn{t: t, nc: nc}
}

// send writes one request frame with body.
func (rc *saslConn) send(req kmsg.Request) {
	rc.t.Helper()
	if err := rc.trySend(req); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *saslConn) trySend(req kmsg.Request) error {
	rc.id++
	frame := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	frame = binary.BigEndian.AppendUint16(frame, uint16(req.GetVersion()))
	frame = binary.BigEndian.AppendUint32(frame, uint32(rc.id))
	frame = append(frame, 0xff, 0xff) // null client id
	if req.IsFlexible() {
		frame = append(frame, 0)
	}
	frame = req.AppendTo(frame)
	_, err := rc.nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...))
	return err
}

// read reads one response into resp; io.EOF when the broker closed.
func (rc *saslConn) read(resp kmsg.Response) error {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(rc.nc, size[:]); err != nil {
		return err
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(rc.nc, b); err != nil {
		return err
	}
	b = b[4:]
	if resp.IsFlexible() && resp.Key() != kmsg.ApiVersions.Int16() {
		b = b[1:]
	}
	return resp.ReadFrom(b)
}

// closed reports whether the broker closed the connection (waits for it).
func (rc *saslConn) closed() bool {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var b [1]byte
	for {
		_, err := rc.nc.Read(b[:])
		if err != nil {
			return !isDeadline(err)
		}
	}
}

func TestSASLRefusesRequestsBeforeAuthentication(t *testing.T) {
	sb := newSecureBroker(t)
	addr := sb.listen(t, ProtocolSASLPlaintext)

	// ApiVersions is served, and lists the SASL APIs.
	rc := dialSASL(t, addr)
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	rc.send(av)
	avr := kmsg.NewPtrApiVersionsResponse()
	avr.Version = 3
	if err := rc.read(avr); err != nil || avr.ErrorCode != 0 {
		t.Fatalf("ApiVersions: %v %d", err, avr.ErrorCode)
	}
	// Metadata before authentication closes the connection.
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 4
	rc.send(md)
	if !rc.closed() {
		t.Fatal("metadata before authentication was not refused")
	}

	// An unknown mechanism is refused with the list, then closed.
	rc = dialSASL(t, addr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "GSSAPI"
	rc.send(hs)
	hsr := kmsg.NewPtrSASLHandshakeResponse()
	hsr.Version = 1
	if err := rc.read(hsr); err != nil || hsr.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(hsr.SupportedMechanisms) != 3 {
		t.Fatalf("GSSAPI handshake: %v %+v", err, hsr)
	}
	if !rc.closed() {
		t.Fatal("connection open after a refused handshake")
	}

	// SaslAuthenticate without a handshake.
	rc = dialSASL(t, addr)
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version = 2
	rc.send(au)
	aur := kmsg.NewPtrSASLAuthenticateResponse()
	aur.Version = 2
	if err := rc.read(aur); err != nil || aur.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("authenticate without handshake: %v %+v", err, aur)
	}

	// A frame over the unauthenticated limit closes the connection unread.
	rc = dialSASL(t, addr)
	if _, err := rc.nc.Write(binary.BigEndian.AppendUint32(nil, MaxUnauthenticatedRequestBytes+1)); err != nil {
		t.Fatal(err)
	}
	if !rc.closed() {
		t.Fatal("oversized unauthenticated frame accepted")
	}

	// The PLAINTEXT listener answers SASL requests with ILLEGAL_SASL_STATE.
	rc = dialSASL(t, sb.Addr)
	hs.Mechanism = MechanismPlain
	rc.send(hs)
	if err := rc.read(hsr); err != nil || hsr.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("handshake on PLAINTEXT: %v %+v", err, hsr)
	}
}

// TestSASLHostileInput: random SASL frames, handshakes that never finish and
// a TLS handshake flood each end in a closed connection while an
// authenticated client keeps working.
func TestSASLHostileInput(t *testing.T) {
	sb := newSecureBroker(t, func(c *testBrokerConfig) { c.MaxConnections = 64 })
	sb.Broker.cfg.AuthenticationTimeout = 300 * time.Millisecond
	sb.addUser(t, "alice", "pw", kadm.ScramSha256)
	saslPlain := sb.listen(t, ProtocolSASLPlaintext)
	saslSSL := sb.listen(t, ProtocolSASLSSL)
	good := newClient(t, saslPlain, kgo.SASL(saslMechanism(MechanismScramSHA256, "alice", "pw")))
	if err := produceConsume(t, good, "hostile"); err != nil {
		t.Fatal(err)
	}

	for i := range 20 {
		rc := dialSASL(t, saslPlain)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version = 1
		hs.Mechanism = SASLMechanisms[i%len(SASLMechanisms)]
		rc.send(hs)
		hsr := kmsg.NewPtrSASLHandshakeResponse()
		hsr.Version = 1
		if err := rc.read(hsr); err != nil || hsr.ErrorCode != 0 {
			t.Fatalf("handshake: %v %+v", err, hsr)
		}
		junk := make([]byte, 1+i*37)
		rand.Read(junk)
		au := kmsg.NewPtrSASLAuthenticateRequest()
		au.Version, au.SASLAuthBytes = 2, junk
		rc.send(au)
		aur := kmsg.NewPtrSASLAuthenticateResponse()
		aur.Version = 2
		if err := rc.read(aur); err != nil || aur.ErrorCode != kerr.SaslAuthenticationFailed.Code {
			t.Fatalf("random SASL bytes: %v %+v", err, aur)
		}
		if !rc.closed() {
			t.Fatal("connection open after random SASL bytes")
		}
	}

	// Connections that never authenticate, or never finish TLS, are closed
	// by the authentication timeout.
	var idle []*saslConn
	for range 10 {
		idle = append(idle, dialSASL(t, saslPlain), dialSASL(t, saslSSL))
	}
	half := dialSASL(t, saslSSL)
	half.nc.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40}) // a ClientHello that never arrives
	idle = append(idle, half)
	for _, rc := range idle {
		if !rc.closed() {
			t.Fatal("unauthenticated connection not closed")
		}
	}
	if err := produceConsume(t, good, "hostile"); err != nil {
		t.Fatalf("authenticated client after the flood: %v", err)
	}
	if n := testutil.ToFloat64(sb.Broker.metrics.connectionsClosed.WithLabelValues("authentication_timeout")); n < 10 {
		t.Fatalf("authentication timeouts counted: %v", n)
	}
}

// TestSASLReauthentication: with a session lifetime the client
// re-authenticates (KIP-368) and keeps working; a connection whose session
// expired is closed at its next request.
func TestSASLReauthentication(t *testing.T) {
	sb := newSecureBroker(t)
	sb.Broker.cfg.SASLSessionLifetime = time.Second
	sb.addUser(t, "alice", "pw", kadm.ScramSha512)
	addr := sb.listen(t, ProtocolSASLPlaintext)
	cl := newClient(t, addr, kgo.SASL(saslMechanism(MechanismScramSHA512, "alice", "pw")))
	if err := produceConsume(t, cl, "reauth"); err != nil {
		t.Fatal(err)
	}
	ok := sb.Broker.metrics.saslAuthentications.WithLabelValues(MechanismScramSHA512, "success")
	first := testutil.ToFloat64(ok)
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(ok) <= first {
		if time.Now().After(deadline) {
			t.Fatal("client did not re-authenticate")
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "reauth", Key: []byte("k")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// By hand: authenticate with PLAIN (v1, which learns the lifetime),
	// then send Metadata after expiry.
	rc := dialSASL(t, addr)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, MechanismPlain
	rc.send(hs)
	hsr := kmsg.NewPtrSASLHandshakeResponse()
	hsr.Version = 1
	if err := rc.read(hsr); err != nil || hsr.ErrorCode != 0 {
		t.Fatalf("handshake: %v %+v", err, hsr)
	}
	sb.addUser(t, "carol", "pw", kadm.ScramSha256)
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 1, []byte("\x00carol\x00pw")
	rc.send(au)
	aur := kmsg.NewPtrSASLAuthenticateResponse()
	aur.Version = 1
	if err := rc.read(aur); err != nil || aur.ErrorCode != 0 || aur.SessionLifetimeMillis != 1000 {
		t.Fatalf("PLAIN: %v %+v", err, aur)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 4
	md.Topics = []kmsg.MetadataRequestTopic{}
	rc.send(md)
	mdr := kmsg.NewPtrMetadataResponse()
	mdr.Version = 4
	if err := rc.read(mdr); err != nil {
		t.Fatalf("metadata within the session: %v", err)
	}
	// The session ends at most its lifetime after the answer above.
	for end := time.Now().Add(sb.Broker.cfg.SASLSessionLifetime); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	rc.send(md)
	if !rc.closed() {
		t.Fatal("request after session expiry answered")
	}
}

func TestScramCredentialAdmin(t *testing.T) {
	sb := newSecureBroker(t)
	adm := sb.admin(t)
	ctx := context.Background()
	res, err := adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "ghost", Mechanism: kadm.ScramSha256}}, []kadm.UpsertSCRAM{
		{User: "alice", Mechanism: kadm.ScramSha256, Iterations: 8192, Password: "a"},
		{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "a"},
		{User: "dup", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "d"},
		{User: "dup", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "e"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{"ghost": kerr.ResourceNotFound, "alice": nil, "dup": kerr.DuplicateResource}
	for _, r := range res {
		if !errors.Is(r.Err, want[r.User]) || (want[r.User] == nil && r.Err != nil) {
			t.Errorf("%s: %v (%s), want %v", r.User, r.Err, r.ErrMessage, want[r.User])
		}
	}
	// What kadm checks before sending, the broker checks too.
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	for _, u := range []struct {
		name  string
		mech  int8
		iters int32
		salt  []byte
		sp    []byte
	}{
		{"few-iterations", 1, 1000, []byte("s"), make([]byte, 32)},
		{"many-iterations", 1, 16385, []byte("s"), make([]byte, 32)},
		{"no-salt", 2, 4096, nil, make([]byte, 64)},
		{"short-salted", 2, 4096, []byte("s"), make([]byte, 32)},
		{"bad-mechanism", 3, 4096, []byte("s"), make([]byte, 32)},
		{"", 1, 4096, []byte("s"), make([]byte, 32)},
	} {
		up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		up.Name, up.Mechanism, up.Iterations, up.Salt, up.SaltedPassword = u.name, u.mech, u.iters, u.salt, u.sp
		req.Upsertions = append(req.Upsertions, up)
	}
	raw, err := req.RequestWith(ctx, sb.client(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range raw.Results {
		want := kerr.UnacceptableCredential.Code
		if r.User == "bad-mechanism" {
			want = kerr.UnsupportedSaslMechanism.Code
		}
		if r.ErrorCode != want || r.ErrorMessage == nil {
			t.Errorf("%q: code %d, want %d", r.User, r.ErrorCode, want)
		}
	}

	desc, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc) != 1 || len(desc["alice"].CredInfos) != 2 || desc["alice"].CredInfos[0].Iterations != 8192 {
		t.Fatalf("describe all: %+v", desc)
	}
	// An empty list, as the Java Admin client sends it, describes every user too.
	all, err := (&kmsg.DescribeUserSCRAMCredentialsRequest{Users: []kmsg.DescribeUserSCRAMCredentialsRequestUser{}}).RequestWith(ctx, sb.client(t))
	if err != nil || len(all.Results) != 1 || all.Results[0].User != "alice" {
		t.Fatalf("describe with an empty user list: %v %+v", err, all)
	}
	desc, err = adm.DescribeUserSCRAMs(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if desc["alice"].Err != nil || !errors.Is(desc["bob"].Err, kerr.ResourceNotFound) {
		t.Fatalf("describe named: %+v", desc)
	}
	res, err = adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "alice", Mechanism: kadm.ScramSha256}}, nil)
	if err != nil || res.Error() != nil {
		t.Fatalf("delete: %v %v", err, res.Error())
	}
	desc, _ = adm.DescribeUserSCRAMs(ctx, "alice")
	if ci := desc["alice"].CredInfos; len(ci) != 1 || ci[0].Mechanism != kadm.ScramSha512 {
		t.Fatalf("after delete: %+v", desc)
	}
}

// TestTLSClientCertificatesAndReload: an SSL listener that requires client
// certificates refuses a client without one, takes the certificate's common
// name as the principal, and serves a rewritten certificate without a
// restart.
func TestTLSClientCertificatesAndReload(t *testing.T) {
	tb := newTestBroker(t)
	ca := testcerts.NewCA(t, "ca")
	dir := t.TempDir()
	files := ca.Write(t, dir, "server", ca.Server(t, "first"))
	cfg, err := tlsfiles.Load(tlsfiles.Files{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA, ClientAuth: tlsfiles.ClientAuthRequired})
	if err != nil {
		t.Fatal(err)
	}
	sb := &secureBroker{testBroker: tb, ca: ca, tls: cfg}
	addr := sb.listen(t, ProtocolSSL)

	client := ca.Client(t, "alice").TLS(t)
	dial := func(certs []tls.Certificate) (*tls.Conn, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: certs})
		if err != nil {
			return nil, err
		}
		// TLS 1.3 reports a refused client certificate at the first read.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rc := &saslConn{t: t, nc: c}
		if err := rc.trySend(kmsg.NewPtrApiVersionsRequest()); err != nil {
			c.Close()
			return nil, err
		}
		if err := rc.read(kmsg.NewPtrApiVersionsResponse()); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	if _, err := dial(nil); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	c, err := dial([]tls.Certificate{client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := tlsfiles.Principal(c.ConnectionState()); got != "User:broker" && got != "User:first" {
		// The client side sees the server's certificate; the broker's
		// principal for this connection is checked below.
		t.Fatalf("server certificate CN %q", got)
	}
	var principal string
	sb.Broker.mu.Lock()
	for cn := range sb.Broker.conns {
		if cn.lis.Protocol == ProtocolSSL {
			principal = cn.sess.principal
		}
	}
	sb.Broker.mu.Unlock()
	if principal != "User:alice" {
		t.Fatalf("principal %q, want User:alice", principal)
	}

	// Rewrite the files: new handshakes get the new certificate.
	ca.Write(t, dir, "server", ca.Server(t, "second"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := dial([]tls.Certificate{client})
		if err != nil {
			t.Fatal(err)
		}
		cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Close()
		if cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded: still %q", cn)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
