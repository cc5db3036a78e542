package scram

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	kscram "github.com/twmb/franz-go/pkg/sasl/scram"
)

// converse runs franz-go's SCRAM client against a Server and reports the
// server's error, if any.
func converse(t *testing.T, m Mechanism, lookup Lookup, user, pass string) (*Server, error) {
	t.Helper()
	auth := kscram.Auth{User: user, Pass: pass}
	mech := auth.AsSha256Mechanism()
	if m == SHA512 {
		mech = auth.AsSha512Mechanism()
	}
	sess, msg, err := mech.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(m, lookup)
	for !srv.Done() {
		resp, err := srv.Step(msg)
		if err != nil {
			return srv, err
		}
		done, next, err := sess.Challenge(resp)
		if err != nil {
			t.Fatalf("client refused the server's answer: %v", err)
		}
		if done {
			break
		}
		msg = next
	}
	return srv, nil
}

func TestServerAgainstFranzGoClient(t *testing.T) {
	for _, m := range Mechanisms {
		t.Run(m.String(), func(t *testing.T) {
			cred, err := NewCredential(m, "s3cret,=x", MinIterations)
			if err != nil {
				t.Fatal(err)
			}
			lookup := func(u string) (Credential, bool) { return cred, u == "al,i=ce" }
			srv, err := converse(t, m, lookup, "al,i=ce", "s3cret,=x")
			if err != nil || !srv.Done() || srv.User() != "al,i=ce" {
				t.Fatalf("good password: err %v, done %v, user %q", err, srv.Done(), srv.User())
			}
			for _, tc := range []struct{ user, pass string }{{"al,i=ce", "wrong"}, {"bob", "s3cret,=x"}} {
				srv, err := converse(t, m, lookup, tc.user, tc.pass)
				if !errors.Is(err, ErrAuthentication) || srv.Done() {
					t.Fatalf("%s/%s: err %v, done %v", tc.user, tc.pass, err, srv.Done())
				}
			}
			// The wrong mechanism's credential does not verify.
			other := SHA256
			if m == SHA256 {
				other = SHA512
			}
			if _, err := converse(t, other, lookup, "al,i=ce", "s3cret,=x"); !errors.Is(err, ErrAuthentication) {
				t.Fatalf("credential of %s accepted for %s", m, other)
			}
		})
	}
}

func TestVerifyPassword(t *testing.T) {
	for _, m := range Mechanisms {
		c, err := NewCredential(m, "pw", MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if !VerifyPassword(c, "pw") || VerifyPassword(c, "pW") || VerifyPassword(c, "") {
			t.Fatalf("%s: VerifyPassword wrong", m)
		}
	}
}

// TestDeriveRFC7677 checks the key derivation with RFC 7677's example
// (user "user", password "pencil").
func TestDeriveRFC7677(t *testing.T) {
	salt := []byte{0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81}
	sp, err := SaltedPassword(SHA256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Derive(SHA256, salt, sp, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// Replay the RFC's conversation with its server nonce.
	s := &Server{mech: SHA256, lookup: func(string) (Credential, bool) { return c, true }}
	if _, err := s.Step([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")); err != nil {
		t.Fatal(err)
	}
	s.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	s.serverFirst = "r=" + s.nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	final, err := s.Step([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; !bytes.Equal(final, []byte(want)) {
		t.Fatalf("server-final %q, want %q", final, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "n", "n,", "p=tls,,n=a,r=b", "n,,n=a", "n,,r=b,n=a", "n,,n=,r=b", "n,,n=a=2,r=b",
		"n,,m=x,n=a,r=b", "n,x,n=a,r=b", "n,,n=a,r="} {
		if _, err := ParseClientFirst([]byte(in)); !errors.Is(err, ErrAuthentication) {
			t.Errorf("ParseClientFirst(%q) = %v, want an error", in, err)
		}
	}
	for _, in := range []string{"", "c=biws,r=x", "c=biws,r=x,p=!!", "r=x,c=biws,p=AAAA", "c=!,r=x,p=AAAA", "c=biws,p=AAAA"} {
		if _, err := ParseClientFinal([]byte(in)); !errors.Is(err, ErrAuthentication) {
			t.Errorf("ParseClientFinal(%q) = %v, want an error", in, err)
		}
	}
}

func FuzzParseClientFirst(f *testing.F) {
	for _, s := range []string{"", "n,,n=user,r=abc", "y,a=user,n=us=2Cer,r=abc,tokenauth=true", "n,,n=user,r=abc\x00garbage"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cf, err := ParseClientFirst(b)
		if err != nil {
			return
		}
		if cf.User == "" || cf.Nonce == "" || cf.GS2Header+cf.Bare != string(b) {
			t.Fatalf("accepted %q as %+v", b, cf)
		}
	})
}

func FuzzParseClientFinal(f *testing.F) {
	for _, s := range []string{"", "c=biws,r=abc,p=AAAA", "c=biws,r=abc,x=y,p=AAAA", "c=biws,r=abc,p=AAAA,,,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cf, err := ParseClientFinal(b)
		if err != nil {
			return
		}
		if cf.Nonce == "" || len(cf.Proof) == 0 || len(cf.WithoutProof) >= len(b) {
			t.Fatalf("accepted %q as %+v", b, cf)
		}
	})
}

// FuzzServer feeds arbitrary messages to a conversation: it must fail or
// never authenticate without the password.
func FuzzServer(f *testing.F) {
	f.Add([]byte("n,,n=user,r=abc"), []byte("c=biws,r=abc,p=AAAA"))
	f.Add([]byte{}, []byte{0xff})
	cred, err := NewCredential(SHA256, "pencil", MinIterations)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, first, final []byte) {
		s := NewServer(SHA256, func(string) (Credential, bool) { return cred, true })
		if _, err := s.Step(first); err != nil {
			return
		}
		if _, err := s.Step(final); err == nil || s.Done() {
			t.Fatalf("authenticated without the password: %q %q", first, final)
		}
	})
}

// TestDoubledClientNonce: librdkafka 2.0 sends its client nonce twice in the
// final message; Kafka accepts a final nonce that ends with the server's, and
// so does this server (the proof still has to verify).
func TestDoubledClientNonce(t *testing.T) {
	cred, err := NewCredential(SHA256, "pw", MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(SHA256, func(string) (Credential, bool) { return cred, true })
	first := "n=u,r=abc"
	sf, err := s.Step([]byte("n,," + first))
	if err != nil {
		t.Fatal(err)
	}
	attrs := strings.Split(string(sf), ",")
	nonce := "abc" + strings.TrimPrefix(attrs[0], "r=")
	salt, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(attrs[1], "s="))
	without := "c=biws,r=" + nonce
	authMsg := first + "," + string(sf) + "," + without
	sp, _ := SaltedPassword(SHA256, "pw", salt, MinIterations)
	clientKey := mac(SHA256, sp, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	sig := mac(SHA256, stored[:], []byte(authMsg))
	for i := range sig {
		sig[i] ^= clientKey[i]
	}
	if _, err := s.Step([]byte(without + ",p=" + base64.StdEncoding.EncodeToString(sig))); err != nil || !s.Done() {
		t.Fatalf("doubled client nonce refused: %v", err)
	}
}
