package raftfsm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// waitUntil polls cond until it holds or 10s pass.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newMux returns a Mux on 127.0.0.1:0 that is not serving yet.
func newMux(tb testing.TB, cfg MuxConfig) *Mux {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(tb)
	}
	return NewMux(ln, cfg)
}

// serveMux runs m.Serve; at cleanup it closes m and checks that Serve returned nil.
func serveMux(tb testing.TB, m *Mux) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- m.Serve() }()
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("Mux.Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Error("Serve did not return after Close")
		}
	})
}

func startMux(tb testing.TB, cfg MuxConfig) *Mux {
	tb.Helper()
	m := newMux(tb, cfg)
	serveMux(tb, m)
	return m
}

func fixedClusterID(id string) func() string { return func() string { return id } }

// rawDial sends header bytes as a dialer would and returns what the dialer's
// handshake returns; the connection is closed.
func rawDial(tb testing.TB, addr string, header []byte) error {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return dialHandshake(conn, header)
}

// acceptOne accepts one connection on l in a goroutine and closes it; the
// returned channel gives Accept's error.
func acceptOne(l *StreamLayer) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			err = c.Close()
		}
		done <- err
	}()
	return done
}

func refusedWith(err error, reason string) bool {
	return errors.Is(err, errPeerRefused) && err.Error() == "raftfsm: peer refused connection: "+reason
}

// transportFSM records applied commands.
type transportFSM struct {
	mu   sync.Mutex
	data []string
}

func (f *transportFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = append(f.data, string(l.Data))
	return nil
}

func (f *transportFSM) has(cmd string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.data, cmd)
}

func (f *transportFSM) Snapshot() (raft.FSMSnapshot, error) { return transportSnapshot{}, nil }
func (f *transportFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type transportSnapshot struct{}

func (transportSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (transportSnapshot) Release()                             {}

// addrMap is a ServerAddressProvider over a fixed map.
type addrMap map[raft.ServerID]raft.ServerAddress

func (a addrMap) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if addr, ok := a[id]; ok {
		return addr, nil
	}
	return "", fmt.Errorf("unknown server %q", id)
}

// transportPeer is one node's member of one Raft group.
type transportPeer struct {
	raft *raft.Raft
	fsm  *transportFSM
}

func leaderOf(peers []*transportPeer) *transportPeer {
	for _, p := range peers {
		if p != nil && p.raft.State() == raft.Leader {
			return p
		}
	}
	return nil
}

func TestTransportRaftGroups(t *testing.T) {
	const nodes = 3
	muxes := make([]*Mux, nodes)
	servers := make([]raft.Server, nodes)
	provider := addrMap{}
	for i := range muxes {
		muxes[i] = startMux(t, MuxConfig{NodeID: int32(i + 1), ClusterID: fixedClusterID("c1")})
		id := raft.ServerID(strconv.Itoa(i + 1))
		addr := raft.ServerAddress(muxes[i].Addr().String())
		servers[i] = raft.Server{Suffrage: raft.Voter, ID: id, Address: addr}
		provider[id] = addr
	}
	groups := map[uint32][]*transportPeer{1: make([]*transportPeer, nodes), 2: make([]*transportPeer, nodes)}
	for g, peers := range groups {
		for i := range peers {
			layer, err := muxes[i].Layer(g)
			if err != nil {
				t.Fatal(err)
			}
			hl := newHclog(testLogger(t).With(keyGroup, g, keyNodeID, i+1), "raft")
			trans := newGroupTransport(layer, provider, hl)
			conf := raft.DefaultConfig()
			conf.LocalID = servers[i].ID
			conf.HeartbeatTimeout = 200 * time.Millisecond
			conf.ElectionTimeout = 200 * time.Millisecond
			conf.LeaderLeaseTimeout = 100 * time.Millisecond
			conf.CommitTimeout = 10 * time.Millisecond
			conf.Logger = hl
			store := raft.NewInmemStore()
			snaps := raft.NewInmemSnapshotStore()
			if err := raft.BootstrapCluster(conf, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
				t.Fatal(err)
			}
			fsm := &transportFSM{}
			r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
			if err != nil {
				t.Fatal(err)
			}
			// Shutdown closes the transport, which closes the layer.
			t.Cleanup(func() { _ = r.Shutdown().Error() })
			peers[i] = &transportPeer{raft: r, fsm: fsm}
		}
	}

	// apply waits for a leader among peers, applies cmd there and waits until
	// every live peer has applied it.
	apply := func(g uint32, cmd string) {
		t.Helper()
		peers := groups[g]
		var leader *transportPeer
		waitUntil(t, fmt.Sprintf("a leader of group %d", g), func() bool {
			leader = leaderOf(peers)
			return leader != nil
		})
		if err := leader.raft.Apply([]byte(cmd), 10*time.Second).Error(); err != nil {
			t.Fatalf("group %d: Apply(%s): %v", g, cmd, err)
		}
		for i, p := range peers {
			if p != nil {
				waitUntil(t, fmt.Sprintf("node %d to apply %s in group %d", i+1, cmd, g), func() bool { return p.fsm.has(cmd) })
			}
		}
	}
	apply(1, "g1-first")
	apply(2, "g2-first")

	// Shut group 1 down on node 1: the rest of group 1 and all of group 2 go on.
	if err := groups[1][0].raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	groups[1][0] = nil
	err := rawDial(t, muxes[0].Addr().String(), connHeader{kind: connKindRaft, clusterID: "c1", group: 1, sender: 2}.appendTo(nil))
	if !refusedWith(err, "unknown group") {
		t.Fatalf("dial to a closed group: %v, want refused: unknown group", err)
	}
	apply(2, "g2-second")
	apply(1, "g1-second")
}

// TestTransportLayerCloseEndsConns: closing one group's layer ends its
// accepted and dialed connections (as io.EOF to local readers, which raft does
// not log) and leaves another group on the same muxes working.
// testLayer returns m's layer for group g.
func testLayer(t testing.TB, m *Mux, g uint32) *StreamLayer {
	t.Helper()
	l, err := m.Layer(g)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// connectLayers dials from on to to's mux and returns both ends.
func connectLayers(t testing.TB, from, to *StreamLayer) (dialed, accepted net.Conn) {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := to.Accept()
		ch <- result{c, err}
	}()
	dialed, err := from.Dial(raft.ServerAddress(to.mux.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return dialed, r.c
}

func TestTransportLayerCloseEndsConns(t *testing.T) {
	a := startMux(t, MuxConfig{NodeID: 1, ClusterID: fixedClusterID("c1")})
	b := startMux(t, MuxConfig{NodeID: 2, ClusterID: fixedClusterID("c1")})
	layer := func(m *Mux, g uint32) *StreamLayer { return testLayer(t, m, g) }
	connect := func(from, to *StreamLayer) (net.Conn, net.Conn) { return connectLayers(t, from, to) }
	readEOF := func(what string, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("%s: read %d, %v; want io.EOF", what, n, err)
		}
	}
	a1, b1 := layer(a, 1), layer(b, 1)
	a2, b2 := layer(a, 2), layer(b, 2)
	out, in := connect(a1, b1)
	out2, in2 := connect(a2, b2)
	defer out2.Close()
	defer in2.Close()

	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	readEOF("accepted conn of the closed layer", in)
	readEOF("peer of the closed layer's conn", out)
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	readEOF("dialed conn of the closed layer", out)

	if _, err := io.WriteString(out2, "x"); err != nil {
		t.Fatalf("group 2 after group 1 closed: %v", err)
	}
	_ = in2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(in2, make([]byte, 1)); err != nil {
		t.Fatalf("group 2 after group 1 closed: %v", err)
	}
	out3, in3 := connect(a2, b2)
	out3.Close()
	in3.Close()
}

func TestMuxRefusesBadHeaders(t *testing.T) {
	var local atomic.Value
	local.Store("c1")
	m := startMux(t, MuxConfig{NodeID: 1, ClusterID: func() string { return local.Load().(string) }})
	layer, err := m.Layer(7)
	if err != nil {
		t.Fatal(err)
	}
	valid := connHeader{kind: connKindRaft, clusterID: "c1", group: 7, sender: 2}.appendTo(nil)
	with := func(at int, b byte) []byte {
		h := slices.Clone(valid)
		h[at] = b
		return h
	}
	tests := []struct {
		name   string
		local  string
		header []byte
		reason string
	}{
		{"wrong magic", "c1", with(0, 'X'), "bad magic"},
		{"wrong version", "c1", with(4, 2), "unsupported version"},
		{"unknown kind", "c1", with(5, 9), "unknown connection kind"},
		{"cluster id too long", "c1", with(6, maxClusterIDLen+1), "cluster id too long"},
		{"other cluster id", "c1", connHeader{kind: connKindRaft, clusterID: "c2", group: 7, sender: 2}.appendTo(nil), "cluster id mismatch"},
		{"unknown group", "c1", connHeader{kind: connKindRaft, clusterID: "c1", group: 8, sender: 2}.appendTo(nil), "unknown group"},
		{"empty cluster id on raft", "c1", connHeader{kind: connKindRaft, group: 7, sender: 2}.appendTo(nil), "missing cluster id"},
		{"local cluster id unknown", "", valid, "missing cluster id"},
		{"rpc not served", "c1", connHeader{kind: connKindRPC, clusterID: "c1", sender: 2}.appendTo(nil), "rpc not served"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local.Store(tt.local)
			err := rawDial(t, m.Addr().String(), tt.header)
			if !refusedWith(err, tt.reason) {
				t.Fatalf("dial: %v, want refused: %s", err, tt.reason)
			}
		})
	}

	// The mux still serves, and a StreamLayer dials with a header it accepts.
	local.Store("c1")
	dialer := startMux(t, MuxConfig{NodeID: 2, ClusterID: fixedClusterID("c1")})
	out, err := dialer.Layer(7)
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptOne(layer)
	conn, err := out.Dial(raft.ServerAddress(m.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("good dial after refusals: %v", err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("Accept: %v", err)
	}
	conn.Close()
}

func TestMuxRPC(t *testing.T) {
	type call struct {
		sender int32
		line   string
	}
	calls := make(chan call, 1)
	server := startMux(t, MuxConfig{NodeID: 1, ClusterID: fixedClusterID("c1"), HandleRPC: func(conn net.Conn, sender int32) {
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		_, _ = io.WriteString(conn, "pong\n")
		calls <- call{sender, line}
	}})
	addr := server.Addr().String()

	for _, tt := range []struct {
		name      string
		clusterID string
	}{{"joining node without cluster id", ""}, {"same cluster id", "c1"}} {
		t.Run(tt.name, func(t *testing.T) {
			client := startMux(t, MuxConfig{NodeID: 42, ClusterID: fixedClusterID(tt.clusterID)})
			conn, err := client.DialRPC(testCtx(t), addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, "ping\n"); err != nil {
				t.Fatal(err)
			}
			reply, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || reply != "pong\n" {
				t.Fatalf("reply %q, %v", reply, err)
			}
			if c := <-calls; c.sender != 42 || c.line != "ping\n" {
				t.Fatalf("HandleRPC got %+v, want sender 42 and ping", c)
			}
		})
	}

	t.Run("other cluster id", func(t *testing.T) {
		client := startMux(t, MuxConfig{NodeID: 43, ClusterID: fixedClusterID("c2")})
		_, err := client.DialRPC(testCtx(t), addr)
		if !refusedWith(err, "cluster id mismatch") {
			t.Fatalf("DialRPC: %v, want refused: cluster id mismatch", err)
		}
	})

	t.Run("close unblocks a handler", func(t *testing.T) {
		started := make(chan struct{})
		handlerErr := make(chan error, 1)
		m := startMux(t, MuxConfig{NodeID: 1, HandleRPC: func(conn net.Conn, _ int32) {
			defer conn.Close()
			close(started)
			_, err := conn.Read(make([]byte, 1))
			handlerErr <- err
		}})
		conn, err := m.DialRPC(testCtx(t), m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		<-started
		if err := m.Close(); err != nil { // waits for the handler
			t.Fatal(err)
		}
		if err := <-handlerErr; err == nil {
			t.Fatal("handler read succeeded on a closed mux")
		}
	})
}

func TestMuxSlowHandshake(t *testing.T) {
	t.Run("idle peer does not block others", func(t *testing.T) {
		m := startMux(t, MuxConfig{NodeID: 1, HandshakeTimeout: time.Minute, HandleRPC: func(c net.Conn, _ int32) { c.Close() }})
		idle, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		if _, err := idle.Write([]byte("SCR")); err != nil { // a partial header, then silence
			t.Fatal(err)
		}
		conn, err := m.DialRPC(testCtx(t), m.Addr().String())
		if err != nil {
			t.Fatalf("DialRPC behind an idle peer: %v", err)
		}
		conn.Close()
	})
	t.Run("idle peer dropped after the handshake timeout", func(t *testing.T) {
		m := startMux(t, MuxConfig{NodeID: 1, HandshakeTimeout: 100 * time.Millisecond})
		idle, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := idle.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("idle peer read %d, %v; want EOF", n, err)
		}
	})
}

func TestMuxHandshakeLimit(t *testing.T) {
	m := newMux(t, MuxConfig{NodeID: 1, HandshakeTimeout: time.Minute, HandleRPC: func(c net.Conn, _ int32) { c.Close() }})
	m.slots = make(chan struct{}, 1) // before Serve
	serveMux(t, m)
	idle, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitUntil(t, "the idle handshake to take the slot", func() bool { return len(m.slots) == 1 })
	if _, err := m.DialRPC(testCtx(t), m.Addr().String()); !refusedWith(err, "busy") {
		t.Fatalf("DialRPC with no handshake slot: %v, want refused: busy", err)
	}
	idle.Close()
	waitUntil(t, "the slot to free", func() bool { return len(m.slots) == 0 })
	conn, err := m.DialRPC(testCtx(t), m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func TestMuxLayerBacklog(t *testing.T) {
	m := startMux(t, MuxConfig{NodeID: 1, ClusterID: fixedClusterID("c1")})
	layer, err := m.Layer(5) // nobody accepts
	if err != nil {
		t.Fatal(err)
	}
	header := connHeader{kind: connKindRaft, clusterID: "c1", group: 5, sender: 2}.appendTo(nil)
	var queued []net.Conn
	for range layerBacklog {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, c)
	}
	waitUntil(t, "a full backlog", func() bool { return len(layer.queue) == layerBacklog })
	if err := rawDial(t, m.Addr().String(), header); !refusedWith(err, "busy") {
		t.Fatalf("dial to a full backlog: %v, want refused: busy", err)
	}
	// Closing the layer closes what it queued, unanswered.
	if err := layer.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range queued {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("queued conn %d read %d, %v; want EOF", i, n, err)
		}
	}
	if _, err := layer.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	// The group can register again.
	if _, err := m.Layer(5); err != nil {
		t.Fatalf("Layer after the old one closed: %v", err)
	}
}

func TestMuxClose(t *testing.T) {
	m := newMux(t, MuxConfig{NodeID: 1, Advertised: "node-1.cluster.test:7000"})
	done := make(chan error, 1)
	go func() { done <- m.Serve() }()
	layer, err := m.Layer(1)
	if err != nil {
		t.Fatal(err)
	}
	if got := layer.Addr().String(); got != "node-1.cluster.test:7000" {
		t.Fatalf("layer.Addr() = %q, want the advertised address", got)
	}
	if _, err := m.Layer(1); err == nil {
		t.Fatal("Layer registered group 1 twice")
	}
	for i := range 2 {
		if err := m.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	if err := m.Serve(); err != nil {
		t.Fatalf("Serve on a closed mux: %v", err)
	}
	if _, err := layer.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed mux: %v", err)
	}
	if _, err := m.Layer(2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Layer on a closed mux: %v", err)
	}
	if _, err := m.DialRPC(context.Background(), "127.0.0.1:1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("DialRPC on a closed mux: %v", err)
	}
	if err := layer.Close(); err != nil {
		t.Fatalf("layer Close after mux Close: %v", err)
	}
}

func FuzzReadConnHeader(f *testing.F) {
	valid := connHeader{kind: connKindRaft, clusterID: "c1", group: 7, sender: -1}.appendTo(nil)
	f.Add([]byte{})
	f.Add([]byte("SCR"))
	f.Add(valid[:len(valid)-1])
	f.Add(valid)
	f.Add(connHeader{kind: connKindRPC, clusterID: strings.Repeat("x", maxClusterIDLen), group: 1<<32 - 1}.appendTo(nil))
	f.Add(append(slices.Clone(valid), "garbage"...))
	f.Add([]byte{tlsRecordHandshake, 3, 1, 0, 0x80, 1, 0, 0}) // a TLS ClientHello's start
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := readConnHeader(r)
		var ref refusal
		switch {
		case errors.As(err, &ref):
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		case err != nil:
			t.Fatalf("unexpected error %v", err)
		default:
			// A header decodes only from its own encoding, and nothing after it
			// is read.
			enc := h.appendTo(nil)
			if used := len(data) - r.Len(); !bytes.Equal(enc, data[:used]) {
				t.Fatalf("decoded %+v from % x, which encodes as % x", h, data[:used], enc)
			}
		}
	})
}

// TestTransportPeerClosedAt: a connection its dialer closes is recorded
// against the dialer, for its group only (leaderloss.go); one this node
// closes, or a dialed one, is not.
func TestTransportPeerClosedAt(t *testing.T) {
	a := startMux(t, MuxConfig{NodeID: 1, ClusterID: fixedClusterID("c1")})
	b := startMux(t, MuxConfig{NodeID: 2, ClusterID: fixedClusterID("c1")})
	layer := func(m *Mux, g uint32) *StreamLayer { return testLayer(t, m, g) }
	connect := func(from, to *StreamLayer) (net.Conn, net.Conn) { return connectLayers(t, from, to) }
	a1, b1, b2 := layer(a, 1), layer(b, 1), layer(b, 2)
	a2 := layer(a, 2)

	// This node closes an accepted conn: not the peer's doing.
	out, in := connect(a1, b1)
	in.Close()
	_, _ = in.Read(make([]byte, 1))
	if at := b.peerClosedAt(1, 1); !at.IsZero() {
		t.Fatalf("local close recorded against node 1 at %v", at)
	}
	out.Close()

	// The dialer (node 1) closes: the acceptor's reader sees it.
	out, in = connect(a1, b1)
	out2, in2 := connect(a2, b2)
	defer out2.Close()
	defer in2.Close()
	before := time.Now()
	out.Close()
	if n, err := in.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read after the dialer closed: %d, %v", n, err)
	}
	if at := b.peerClosedAt(1, 1); at.Before(before) {
		t.Fatalf("peerClosedAt(group 1, node 1) = %v, want at or after %v", at, before)
	}
	if at := b.peerClosedAt(2, 1); !at.IsZero() {
		t.Fatalf("group 2 recorded a close of group 1's conn at %v", at)
	}
	if at := a.peerClosedAt(1, 2); !at.IsZero() {
		t.Fatalf("the dialer recorded a close at %v", at)
	}
	if at := b.peerClosedAt(9, 1); !at.IsZero() {
		t.Fatalf("an unknown group has a close at %v", at)
	}
}
