package faultproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitTimeout bounds every wait for a condition; reaching it fails the test.
// It is a guard against hangs, never a performance expectation.
const waitTimeout = 20 * time.Second

// target is a loopback server whose accepted connections the test drives.
type target struct {
	ln    net.Listener
	conns chan *net.TCPConn
}

func newTarget(t testing.TB) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{ln: ln, conns: make(chan *net.TCPConn, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.conns <- c.(*net.TCPConn)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		close(tg.conns)
		for c := range tg.conns {
			_ = c.Close()
		}
	})
	return tg
}

// accept returns the next connection the target accepted.
func (tg *target) accept(t testing.TB) *net.TCPConn {
	t.Helper()
	select {
	case c := <-tg.conns:
		t.Cleanup(func() { _ = c.Close() })
		return c
	case <-time.After(waitTimeout):
		t.Fatal("target accepted no connection")
		return nil
	}
}

func newProxy(t testing.TB, tg *target) *Proxy {
	t.Helper()
	p, err := New(tg.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t testing.TB, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// pair dials p and returns the client's end and the target's end.
func pair(t testing.TB, p *Proxy, tg *target) (client, server *net.TCPConn) {
	t.Helper()
	client = dial(t, p)
	return client, tg.accept(t)
}

// ends returns the sending and the receiving end of dir.
func ends(dir Direction, client, server *net.TCPConn) (from, to *net.TCPConn) {
	if dir == Forward {
		return client, server
	}
	return server, client
}

func write(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// readErr reads until an error and returns it.
func readErr(t testing.TB, c net.Conn) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy reports a clean EOF as nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", waitTimeout)
	}
	return err
}

// dialRead dials p and reads until an error. A connection the proxy resets at
// once can fail the dial itself; that error is returned as the read's.
func dialRead(t testing.TB, p *Proxy) error {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return err
	}
	defer c.Close()
	return readErr(t, c)
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// echo copies everything server reads back to it, then half-closes it.
func echo(t testing.TB, server *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(server, server)
		_ = server.CloseWrite()
	}()
	t.Cleanup(func() {
		_ = server.Close()
		wg.Wait()
	})
}

func TestPassEchoes(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg)
	client, server := pair(t, p, tg)
	echo(t, server)

	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(rand.IntN(256))
	}
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(want)
		if err == nil {
			err = client.CloseWrite()
		}
		errc <- err
	}()
	_ = client.SetReadDeadline(time.Now().Add(waitTimeout))
	got, err := io.ReadAll(client) // ends at the echoed half-close
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo returned %d bytes, not the %d sent", len(got), len(want))
	}

	waitFor(t, "the link to close after both half-closes", func() bool { return p.Stats().Active == 0 })
	st := p.Stats()
	n := int64(len(want))
	if st.Forward.PassedBytes != n || st.Backward.PassedBytes != n {
		t.Errorf("passed forward %d, backward %d; want %d each", st.Forward.PassedBytes, st.Backward.PassedBytes, n)
	}
	if st.Forward.DroppedBytes != 0 || st.Backward.DroppedBytes != 0 || st.Forward.QueuedBytes != 0 {
		t.Errorf("stats %+v: nothing should be dropped or queued", st)
	}
	if st.Accepted != 1 {
		t.Errorf("accepted %d, want 1", st.Accepted)
	}
}

func TestBlackholeOneDirection(t *testing.T) {
	for _, dir := range []Direction{Forward, Backward} {
		t.Run(dir.String(), func(t *testing.T) {
			tg := newTarget(t)
			p := newProxy(t, tg)
			client, server := pair(t, p, tg)
			from, to := ends(dir, client, server)
			otherFrom, otherTo := to, from

			p.SetMode(dir, Blackhole)
			dropped := []byte("never delivered")
			write(t, from, dropped)
			waitFor(t, "the proxy to drop the blackholed bytes", func() bool {
				return p.Stats().Dir(dir).DroppedBytes == int64(len(dropped))
			})

			// The other direction still delivers.
			write(t, otherFrom, []byte("other way"))
			if got := readFull(t, otherTo, len("other way")); string(got) != "other way" {
				t.Fatalf("other direction delivered %q", got)
			}

			// Healed: new bytes arrive, the dropped ones never do.
			p.SetMode(dir, Pass)
			write(t, from, []byte("after"))
			if got := readFull(t, to, len("after")); string(got) != "after" {
				t.Fatalf("after healing, received %q, want %q", got, "after")
			}
			if st := p.Stats(); st.Active != 1 || st.Resets != 0 {
				t.Fatalf("stats %+v: the connection should have stayed open", st)
			}
		})
	}
}

func TestBlackholeHoldsHalfClose(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg)
	client, server := pair(t, p, tg)

	p.SetMode(Forward, Blackhole)
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// Nothing, not even the EOF, crosses a blackhole. A short deadline is
	// enough here: this can only pass spuriously, never fail spuriously.
	_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := server.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a blackhole: n=%d err=%v, want a timeout", n, err)
	}

	p.SetMode(Forward, Pass)
	if err := readErr(t, server); !errors.Is(err, io.EOF) {
		t.Fatalf("after healing, target read %v, want EOF", err)
	}
	// The backward direction still works on the half-closed connection.
	write(t, server, []byte("reply"))
	if got := readFull(t, client, 5); string(got) != "reply" {
		t.Fatalf("client received %q", got)
	}
}

func TestResetOpenConnections(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Proxy)
		// clientRST and serverRST say which end receives a RST; the other
		// sees EOF.
		clientRST, serverRST bool
	}{
		{"backward", func(p *Proxy) { p.SetMode(Backward, Reset) }, true, false},
		{"forward", func(p *Proxy) { p.SetMode(Forward, Reset) }, false, true},
		{"both", func(p *Proxy) { p.Set(Reset) }, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTarget(t)
			p := newProxy(t, tg)
			client, server := pair(t, p, tg)
			echo(t, server)
			write(t, client, []byte("ping"))
			readFull(t, client, 4)

			tt.set(p)
			err := readErr(t, client)
			if tt.clientRST && !isReset(err) {
				t.Errorf("client read %v, want a connection reset", err)
			}
			if !tt.clientRST && !errors.Is(err, io.EOF) {
				t.Errorf("client read %v, want EOF", err)
			}
			if st := p.Stats(); st.Resets != 1 || st.Active != 0 {
				t.Errorf("stats %+v, want 1 reset and no active link", st)
			}
		})
	}

	t.Run("target sees the reset", func(t *testing.T) {
		tg := newTarget(t)
		p := newProxy(t, tg)
		client, server := pair(t, p, tg)
		p.SetMode(Forward, Reset)
		if err := readErr(t, server); !isReset(err) {
			t.Errorf("target read %v, want a connection reset", err)
		}
		if err := readErr(t, client); !errors.Is(err, io.EOF) {
			t.Errorf("client read %v, want EOF", err)
		}
	})
}

func TestResetNewConnections(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg)

	p.SetMode(Backward, Reset)
	for i := range 3 {
		if err := dialRead(t, p); !isReset(err) {
			t.Fatalf("connection %d: read %v, want a connection reset", i, err)
		}
	}
	p.SetMode(Backward, Pass)
	p.SetMode(Forward, Reset)
	if err := dialRead(t, p); !errors.Is(err, io.EOF) {
		t.Fatalf("forward reset: read %v, want EOF", err)
	}
	if st := p.Stats(); st.Resets != 4 {
		t.Fatalf("resets %d, want 4", st.Resets)
	}

	// Healed: the next connection reaches the target. The refused ones never
	// did, so it is the first one the target accepts.
	p.Set(Pass)
	client, server := pair(t, p, tg)
	echo(t, server)
	write(t, client, []byte("hello"))
	if got := readFull(t, client, 5); string(got) != "hello" {
		t.Fatalf("echo %q", got)
	}
}

func TestDialFailureResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens at addr now

	p, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := dialRead(t, p); !isReset(err) {
		t.Fatalf("read %v, want a connection reset", err)
	}
}

func TestDelay(t *testing.T) {
	const d = 100 * time.Millisecond
	const messages = 50
	for _, dir := range []Direction{Forward, Backward} {
		t.Run(dir.String(), func(t *testing.T) {
			tg := newTarget(t)
			p := newProxy(t, tg)
			client, server := pair(t, p, tg)
			from, to := ends(dir, client, server)
			p.SetMode(dir, Delay(d))

			sent := make([]time.Time, messages)
			for i := range messages {
				sent[i] = time.Now()
				write(t, from, binary.BigEndian.AppendUint64(nil, uint64(i)))
			}
			for i := range messages {
				b := readFull(t, to, 8)
				got := time.Now()
				if seq := binary.BigEndian.Uint64(b); seq != uint64(i) {
					t.Fatalf("message %d arrived as number %d: order not kept", i, seq)
				}
				if waited := got.Sub(sent[i]); waited < d {
					t.Fatalf("message %d delivered %v after it was sent, before the %v delay", i, waited, d)
				}
			}
		})
	}
}

// pattern is a byte stream whose every offset can be checked.
func pattern(off int64) byte { return byte(off*7 + off>>8) }

func TestDelayBackpressureAndRelease(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg)
	client, server := pair(t, p, tg)
	p.SetMode(Forward, Delay(time.Hour))

	// Write until a write blocks for a second: with nothing delivered, the
	// queue fills, the proxy stops reading and the socket buffers fill. A
	// loaded machine can only make the write block sooner, never fail the
	// test.
	const limit = 256 << 20
	buf := make([]byte, 1<<20)
	var written int64
	for written < limit {
		for i := range buf {
			buf[i] = pattern(written + int64(i))
		}
		_ = client.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := client.Write(buf)
		written += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if written >= limit {
		t.Fatalf("wrote %d bytes into a link that delivers nothing: no backpressure", written)
	}
	if q := p.Stats().Forward.QueuedBytes; q <= 0 || q > maxQueuedBytes {
		t.Fatalf("queued %d bytes, want 1..%d", q, maxQueuedBytes)
	}

	// Back to Pass: the queued bytes and the rest come out in order.
	p.SetMode(Forward, Pass)
	_ = client.SetWriteDeadline(time.Time{})
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(waitTimeout))
	var got int64
	rb := make([]byte, 64<<10)
	for {
		n, err := server.Read(rb)
		for i := range n {
			if rb[i] != pattern(got+int64(i)) {
				t.Fatalf("byte %d is wrong: order or content not kept", got+int64(i))
			}
		}
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	if got != written {
		t.Fatalf("target received %d bytes, client wrote %d", got, written)
	}
	if st := p.Stats().Forward; st.QueuedBytes != 0 || st.DroppedBytes != 0 || st.PassedBytes != written {
		t.Fatalf("forward stats %+v after delivering %d bytes", st, written)
	}
}

func TestModeChangesOnLiveConnection(t *testing.T) {
	tg := newTarget(t)
	p := newProxy(t, tg)
	client, server := pair(t, p, tg)
	echo(t, server)

	roundTrip := func(t *testing.T, msg string) {
		t.Helper()
		write(t, client, []byte(msg))
		if got := readFull(t, client, len(msg)); string(got) != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	// Each step runs on the same connection, after the previous one.
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"pass", func(t *testing.T) { roundTrip(t, "one") }},
		{"delay both ways", func(t *testing.T) {
			p.Set(Delay(20 * time.Millisecond))
			start := time.Now()
			roundTrip(t, "two")
			if rtt := time.Since(start); rtt < 40*time.Millisecond {
				t.Fatalf("round trip %v, below the two 20ms delays", rtt)
			}
		}},
		{"backward blackhole drops echoes", func(t *testing.T) {
			p.Set(Pass)
			p.SetMode(Backward, Blackhole)
			write(t, client, []byte("lost"))
			waitFor(t, "the echo to be dropped", func() bool { return p.Stats().Backward.DroppedBytes == 4 })
		}},
		{"healed", func(t *testing.T) {
			p.Set(Pass)
			roundTrip(t, "three")
		}},
		{"delayed bytes released by pass", func(t *testing.T) {
			p.SetMode(Forward, Delay(time.Hour))
			write(t, client, []byte("held"))
			waitFor(t, "the bytes to be queued", func() bool { return p.Stats().Forward.QueuedBytes == 4 })
			p.SetMode(Forward, Pass)
			if got := readFull(t, client, 4); string(got) != "held" {
				t.Fatalf("echo %q", got)
			}
		}},
		{"reset", func(t *testing.T) {
			p.SetMode(Backward, Reset)
			if err := readErr(t, client); !isReset(err) {
				t.Fatalf("read %v, want a connection reset", err)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

func TestCloseWithLiveConnections(t *testing.T) {
	tg := newTarget(t)
	before := runtime.NumGoroutine()

	p, err := New(tg.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p.SetMode(Forward, Delay(time.Hour))
	p.SetMode(Backward, Blackhole)
	var clients []*net.TCPConn
	for range 4 {
		c, s := pair(t, p, tg)
		write(t, c, []byte("queued"))
		write(t, s, []byte("dropped"))
		clients = append(clients, c)
	}
	// One client blocked in a write by backpressure.
	blocked := make(chan error, 1)
	go func() {
		big := make([]byte, 64<<20)
		_, err := clients[0].Write(big)
		blocked <- err
	}()
	waitFor(t, "the queue to fill", func() bool { return p.Stats().Forward.QueuedBytes >= maxQueuedBytes/2 })

	var wg sync.WaitGroup
	for range 3 { // concurrent Close calls all return once everything stopped
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	st := p.Stats()
	if st.Active != 0 || st.Forward.QueuedBytes != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	for i, c := range clients {
		if err := readErr(t, c); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("client %d: read %v after Close, want EOF or reset", i, err)
		}
	}
	select {
	case <-blocked:
	case <-time.After(waitTimeout):
		t.Fatal("the blocked writer did not return after Close")
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}

	waitFor(t, "goroutines to settle", func() bool { return runtime.NumGoroutine() <= before })
}

func TestNewChecksTarget(t *testing.T) {
	for _, target := range []string{"10.1.2.3:9092", "example.com:9092", "127.0.0.1", ""} {
		if p, err := New(target); err == nil {
			p.Close()
			t.Errorf("New(%q) succeeded, want an error", target)
		}
	}
	for _, target := range []string{"localhost:9092", "127.0.0.2:9092", "[::1]:9092"} {
		p, err := New(target)
		if err != nil {
			t.Errorf("New(%q): %v", target, err)
			continue
		}
		if host, _, _ := net.SplitHostPort(p.Addr()); host != "127.0.0.1" {
			t.Errorf("listening on %s, want 127.0.0.1", p.Addr())
		}
		p.Close()
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{
		Pass: "pass", Blackhole: "blackhole", Reset: "reset",
		Delay(time.Second): "delay(1s)", Delay(0): "pass", {}: "pass",
	} {
		if got := m.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", m, got, want)
		}
	}
}
