package raftfsm

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shardcache/shardcache/internal/testcerts"
	"github.com/shardcache/shardcache/internal/tlsfiles"
)

// refusalCounter records MuxConfig.OnRefused reasons.
type refusalCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusalCounter) add(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *refusalCounter) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// nodeTLS writes a node certificate from ca to dir and loads it as the
// node-to-node port does: client certificates required.
func nodeTLS(tb testing.TB, ca *testcerts.CA, dir, name string) (*tlsfiles.Config, testcerts.Files) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	files := ca.Write(tb, dir, name, ca.Node(tb, name))
	cfg, err := tlsfiles.Load(tlsfiles.Files{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA, ClientAuth: tlsfiles.ClientAuthRequired})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg, files
}

// echoRPC answers one line with "pong\n".
func echoRPC(conn net.Conn, _ int32) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		_, _ = io.WriteString(conn, "pong\n")
	}
}

// pingRPC dials an rpc connection from m to addr and exchanges one line.
func pingRPC(tb testing.TB, m *Mux, addr string) error {
	tb.Helper()
	conn, err := m.DialRPC(testCtx(tb), addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err == nil && reply != "pong\n" {
		tb.Fatalf("reply %q, want pong", reply)
	}
	return err
}

func TestTransportTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "cluster-ca")
	serverTLS, serverFiles := nodeTLS(t, ca, filepath.Join(dir, "server"), "server")
	var refused refusalCounter
	server := startMux(t, MuxConfig{NodeID: 1, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC, TLS: serverTLS, OnRefused: refused.add})
	addr := server.Addr().String()
	layer, err := server.Layer(7)
	if err != nil {
		t.Fatal(err)
	}
	goodTLS, _ := nodeTLS(t, ca, filepath.Join(dir, "good"), "good")
	good := startMux(t, MuxConfig{NodeID: 2, ClusterID: fixedClusterID("c1"), TLS: goodTLS})

	t.Run("rpc and raft connections over mTLS", func(t *testing.T) {
		if err := pingRPC(t, good, addr); err != nil {
			t.Fatalf("rpc over tls: %v", err)
		}
		out, err := good.Layer(7)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := layer.Accept()
			if err != nil {
				t.Errorf("Accept: %v", err)
			}
			accepted <- c
		}()
		conn, err := out.Dial(raft.ServerAddress(addr), 5*time.Second)
		if err != nil {
			t.Fatalf("raft dial over tls: %v", err)
		}
		defer conn.Close()
		in := <-accepted
		if in == nil {
			t.FailNow()
		}
		defer in.Close()
		tc, ok := in.(*layerConn).Conn.(*tls.Conn)
		if !ok {
			t.Fatalf("accepted %T, want a TLS connection", in.(*layerConn).Conn)
		}
		if got := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "good" {
			t.Fatalf("peer certificate CN %q, want good", got)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_ = in.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(in, make([]byte, 1)); err != nil {
			t.Fatalf("read on the accepted connection: %v", err)
		}
	})

	t.Run("certificate from another CA refused", func(t *testing.T) {
		other := testcerts.NewCA(t, "other-ca")
		otherDir := filepath.Join(dir, "other")
		if err := os.MkdirAll(otherDir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Its own certificate is from the other CA; it trusts the cluster CA,
		// so only the listener's check can refuse it.
		f := other.Write(t, otherDir, "other", other.Node(t, "other"))
		ca.Write(t, otherDir, "unused", ca.Node(t, "unused")) // ca.crt is the cluster CA now
		cfg, err := tlsfiles.Load(tlsfiles.Files{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA, ClientAuth: tlsfiles.ClientAuthRequired})
		if err != nil {
			t.Fatal(err)
		}
		m := startMux(t, MuxConfig{NodeID: 3, ClusterID: fixedClusterID("c1"), TLS: cfg})
		before := refused.get(refusedTLSHandshake)
		if err := pingRPC(t, m, addr); err == nil || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("rpc with a certificate from another CA: %v, want a TLS error", err)
		}
		waitUntil(t, "the refusal to be counted", func() bool { return refused.get(refusedTLSHandshake) > before })
	})

	t.Run("no client certificate refused", func(t *testing.T) {
		before := refused.get(refusedTLSHandshake)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err == nil {
			// TLS 1.3: the client's handshake ends before the server checks;
			// the refusal arrives on the first read.
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			err = dialHandshake(conn, connHeader{kind: connKindRPC, clusterID: "c1", sender: 9}.appendTo(nil))
			conn.Close()
		}
		if err == nil {
			t.Fatal("a connection without a client certificate was accepted")
		}
		waitUntil(t, "the refusal to be counted", func() bool { return refused.get(refusedTLSHandshake) > before })
	})

	t.Run("plain TCP dialer refused", func(t *testing.T) {
		err := rawDial(t, addr, connHeader{kind: connKindRPC, clusterID: "c1", sender: 9}.appendTo(nil))
		if !refusedWith(err, "tls required") {
			t.Fatalf("plain dial to a TLS node: %v, want refused: tls required", err)
		}
		if n := refused.get(refuseTLSRequired.label()); n != 1 {
			t.Fatalf("tls_required refusals %d, want 1", n)
		}
		plain := startMux(t, MuxConfig{NodeID: 4, ClusterID: fixedClusterID("c1")})
		if err := pingRPC(t, plain, addr); !refusedWith(err, "tls required") {
			t.Fatalf("plain mux to a TLS node: %v, want refused: tls required", err)
		}
	})

	t.Run("TLS dialer to a plain node refused", func(t *testing.T) {
		var plainRefused refusalCounter
		plain := startMux(t, MuxConfig{NodeID: 5, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC, OnRefused: plainRefused.add})
		if err := pingRPC(t, good, plain.Addr().String()); !refusedWith(err, "tls not enabled") {
			t.Fatalf("TLS mux to a plain node: %v, want refused: tls not enabled", err)
		}
		if n := plainRefused.get(refuseTLSNotEnabled.label()); n != 1 {
			t.Fatalf("tls_not_enabled refusals %d, want 1", n)
		}
	})

	t.Run("listener certificate from another CA refused by the dialer", func(t *testing.T) {
		other := testcerts.NewCA(t, "rogue-ca")
		rogueTLS, _ := nodeTLS(t, other, filepath.Join(dir, "rogue"), "rogue")
		rogue := startMux(t, MuxConfig{NodeID: 6, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC, TLS: rogueTLS})
		err := pingRPC(t, good, rogue.Addr().String())
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("dial to a listener with a certificate from another CA: %v, want a certificate error", err)
		}
	})

	t.Run("reloaded certificates and CA", func(t *testing.T) {
		// Rotate the listener and one dialer to a new CA: they talk, and a
		// dialer still on the old CA is refused.
		next := testcerts.NewCA(t, "next-ca")
		next.Write(t, filepath.Dir(serverFiles.Cert), "server", next.Node(t, "server"))
		if err := serverTLS.Reload(); err != nil {
			t.Fatal(err)
		}
		rotatedTLS, _ := nodeTLS(t, next, filepath.Join(dir, "rotated"), "rotated")
		rotated := startMux(t, MuxConfig{NodeID: 7, ClusterID: fixedClusterID("c1"), TLS: rotatedTLS})
		if err := pingRPC(t, rotated, addr); err != nil {
			t.Fatalf("rpc after both rotated: %v", err)
		}
		if err := pingRPC(t, good, addr); err == nil {
			t.Fatal("a node on the old CA still connects after the listener rotated")
		}
	})
}

// TestTransportTLSPermissive: a permissive node talks to plain and TLS nodes
// both ways, still refuses a certificate from another CA, and a strict node
// never falls back to plain.
func TestTransportTLSPermissive(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "cluster-ca")
	permTLS, _ := nodeTLS(t, ca, filepath.Join(dir, "permissive"), "permissive")
	strictTLS, _ := nodeTLS(t, ca, filepath.Join(dir, "strict"), "strict")
	rogueTLS, _ := nodeTLS(t, testcerts.NewCA(t, "other-ca"), filepath.Join(dir, "rogue"), "rogue")
	var refused refusalCounter
	perm := startMux(t, MuxConfig{NodeID: 1, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC, TLS: permTLS, TLSPermissive: true, OnRefused: refused.add})
	strict := startMux(t, MuxConfig{NodeID: 2, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC, TLS: strictTLS})
	plain := startMux(t, MuxConfig{NodeID: 3, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC})
	rogue := startMux(t, MuxConfig{NodeID: 4, ClusterID: fixedClusterID("c1"), TLS: rogueTLS})

	for _, tt := range []struct {
		name     string
		from, to *Mux
	}{
		{"plain to permissive", plain, perm},
		{"permissive to plain, falling back", perm, plain},
		{"permissive to strict", perm, strict},
		{"strict to permissive", strict, perm},
	} {
		if err := pingRPC(t, tt.from, tt.to.Addr().String()); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if err := pingRPC(t, strict, plain.Addr().String()); !refusedWith(err, "tls not enabled") {
		t.Errorf("strict to plain: %v, want refused: tls not enabled", err)
	}
	if err := pingRPC(t, rogue, perm.Addr().String()); err == nil {
		t.Error("a certificate from another CA was accepted by a permissive node")
	}
	waitUntil(t, "the refusal to be counted", func() bool { return refused.get(refusedTLSHandshake) > 0 })
}

// TestClusterTLSJoinFromSnapshot: two nodes with node-to-node TLS, the second
// joining after the first trimmed its logs, so the join, Raft and the
// snapshot streams all run over mutually authenticated TLS (a plain peer is
// refused, so nothing can have gone around it).
func TestClusterTLSJoinFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "cluster-ca")
	var mu sync.Mutex
	var addrs []string
	testJoinFromSnapshot(t, func(c *Config) {
		mu.Lock()
		defer mu.Unlock()
		addrs = append(addrs, c.ClusterAddr)
		name := fmt.Sprintf("node-%d", len(addrs))
		c.ClusterTLS, _ = nodeTLS(t, ca, filepath.Join(dir, name), name)
	})
	// The nodes still run: a plain dialer is refused by both.
	for _, addr := range addrs {
		if err := rawDial(t, addr, connHeader{kind: connKindRPC, sender: 9}.appendTo(nil)); !refusedWith(err, "tls required") {
			t.Errorf("plain dial to %s: %v, want refused: tls required", addr, err)
		}
	}
}

// TestTransportTLSSenderIdentity: a Raft connection whose header names a node
// id the listener knows is accepted only from a certificate that names one of
// that node's hosts. The test certificates name localhost, 127.0.0.1 and ::1.
func TestTransportTLSSenderIdentity(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "cluster-ca")
	serverTLS, _ := nodeTLS(t, ca, filepath.Join(dir, "server"), "server")
	known := map[int32][]string{
		2: {"127.0.0.1"},              // named by the dialer's certificate
		3: {"127.0.0.9"},              // not named
		4: {"127.0.0.9", "localhost"}, // one of two named
	}
	var refused refusalCounter
	server := startMux(t, MuxConfig{
		NodeID: 1, ClusterID: fixedClusterID("c1"), HandleRPC: echoRPC, TLS: serverTLS, OnRefused: refused.add,
		PeerHosts: func(id int32) ([]string, bool) { h, ok := known[id]; return h, ok },
	})
	addr := server.Addr().String()
	layer, err := server.Layer(7)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	clientTLS, _ := nodeTLS(t, ca, filepath.Join(dir, "client"), "client")
	raftDial := func(sender int32) error {
		m := startMux(t, MuxConfig{NodeID: sender, ClusterID: fixedClusterID("c1"), TLS: clientTLS})
		out, err := m.Layer(7)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		conn, err := out.Dial(raft.ServerAddress(addr), 5*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}
	for _, c := range []struct {
		sender int32
		ok     bool
	}{{2, true}, {3, false}, {4, true}, {5, true}} { // 5: unknown, a node joining
		err := raftDial(c.sender)
		switch {
		case c.ok && err != nil:
			t.Errorf("raft dial as node %d (hosts %v): %v, want accepted", c.sender, known[c.sender], err)
		case !c.ok && !refusedWith(err, string(refuseIdentity)):
			t.Errorf("raft dial as node %d (hosts %v): %v, want refused: %s", c.sender, known[c.sender], err, refuseIdentity)
		}
	}
	if n := refused.get(refuseIdentity.label()); n != 1 {
		t.Errorf("%s refusals %d, want 1", refuseIdentity.label(), n)
	}
	// rpc connections are left to HandleRPC, which sees the request
	// (Node.checkSender, TestClusterTLSRegisterIdentity).
	m := startMux(t, MuxConfig{NodeID: 3, ClusterID: fixedClusterID("c1"), TLS: clientTLS})
	if err := pingRPC(t, m, addr); err != nil {
		t.Errorf("rpc as node 3: %v, want it handed to HandleRPC", err)
	}
}

// TestClusterTLSRegisterIdentity: with node-to-node TLS, a node may register
// only a cluster address whose host its certificate names, and a control rpc
// that claims a registered node's id needs a certificate naming that node's
// host. The test certificates name 127.0.0.1 (and localhost, ::1); the joiner
// listens and registers on 127.0.0.2.
func TestClusterTLSRegisterIdentity(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "cluster-ca")
	withTLS := func(name string) func(*Config) {
		return func(c *Config) { c.ClusterTLS, _ = nodeTLS(t, ca, filepath.Join(dir, name), name) }
	}
	first := newTCPNodeWith(t, 1, nil, withTLS("node-1"))
	ctx := testCtx(t)
	if err := first.node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("registering a host the certificate does not name", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		joiner := &tcpNode{tb: t, id: 2, dir: t.TempDir(), addr: ln.Addr().String(), join: []string{first.addr}, adjust: withTLS("node-2")}
		joiner.start(ln)
		t.Cleanup(joiner.stop)
		err = joiner.node.WaitReady(ctx)
		if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "does not name") {
			t.Fatalf("join from %s: %v, want ErrIdentity: certificate does not name the address", joiner.addr, err)
		}
		if _, ok := first.node.metadata().nodes[2]; ok {
			t.Fatal("node 2 was registered")
		}
	})

	t.Run("an rpc claiming a registered node's id", func(t *testing.T) {
		rogueDir := filepath.Join(dir, "rogue")
		if err := os.MkdirAll(rogueDir, 0o700); err != nil {
			t.Fatal(err)
		}
		f := ca.Write(t, rogueDir, "rogue", ca.NodeAt(t, "rogue", net.IPv4(127, 0, 0, 3)))
		cfg, err := tlsfiles.Load(tlsfiles.Files{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA, ClientAuth: tlsfiles.ClientAuthRequired})
		if err != nil {
			t.Fatal(err)
		}
		call := func(sender int32) rpcResponse {
			m := startMux(t, MuxConfig{NodeID: sender, ClusterID: first.node.ClusterID, TLS: cfg})
			conn, err := m.DialRPC(ctx, first.addr)
			if err != nil {
				t.Fatalf("dial as node %d: %v", sender, err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if err := writeFrame(conn, &rpcRequest{Op: opStatus}); err != nil {
				t.Fatal(err)
			}
			var resp rpcResponse
			if err := readFrame(conn, &resp); err != nil {
				t.Fatalf("status as node %d: %v", sender, err)
			}
			return resp
		}
		if resp := call(1); !errors.Is(resp.err(), ErrIdentity) {
			t.Errorf("status as node 1 from a certificate for 127.0.0.3: %+v, want ErrIdentity", resp)
		}
		if resp := call(9); resp.err() != nil || resp.ClusterID != first.node.ClusterID() {
			t.Errorf("status as node 9 (not registered): %+v, want answered", resp)
		}
	})
}
