package integration

// HTTP API authentication through the real binary: bearer tokens from
// --http-tokens-file (reloaded), client certificates with
// --http-client-ca-file over --http-tls, the probes open or closed by
// --http-open-probes, hostile Authorization headers, and bad files at start.
// Authorization (403) is tested against a denying authorizer in
// internal/httpapi until the ACL authorizer is wired in.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/shardcache/shardcache/internal/testcerts"
)

// tokensLine is a --http-tokens-file line for token.
func tokensLine(token, principal string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:]) + " " + principal + "\n"
}

// writeTokensFile writes lines to path through a rename, as an operator's
// tooling would, so the broker never reads half a file.
func writeTokensFile(t testing.TB, path string, lines ...string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// authAnswer is one HTTP answer read whole.
type authAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a authAnswer) code(t testing.TB) string {
	t.Helper()
	var e struct{ Error, Code string }
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {error, code} JSON: %v", a.body, err)
	}
	return e.Code
}

// authDo sends a request to url with the Authorization header auth ("" for none).
func authDo(t testing.TB, client *http.Client, method, url, auth string) authAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return authAnswer{status: resp.StatusCode, header: resp.Header, body: body}
}

// randomToken is a fresh token: 32 random bytes in hex.
func randomToken(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// seedKey creates a compacted topic holding key k = v.
func seedKey(t *testing.T, b *testBroker) string {
	t.Helper()
	topic := topicName(t)
	createTopic(t, b.Admin(t), topic, 1, map[string]string{"cleanup.policy": "compact"})
	produceSync(t, b.Client(t), kv(topic, "k", strp("v")))
	return topic
}

func TestHTTPAuthTokens(t *testing.T) {
	requireLocalBroker(t)
	alice, bob := randomToken(t), randomToken(t)
	path := filepath.Join(t.TempDir(), "http-tokens")
	writeTokensFile(t, path, "# test tokens\n", tokensLine(alice, "User:alice"))
	b := startBroker(t, "--http-tokens-file="+path)
	topic := seedKey(t, b)
	client := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + b.HTTPAddr
	lookup := base + "/v1/topics/" + topic + "/keys/k"

	if a := authDo(t, client, "GET", lookup, ""); a.status != 401 || a.code(t) != "unauthenticated" ||
		!strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer ") {
		t.Fatalf("no token: %d %q %q", a.status, a.header.Get("WWW-Authenticate"), a.body)
	}
	if a := authDo(t, client, "GET", lookup, "Bearer "+bob); a.status != 401 || a.code(t) != "unauthenticated" ||
		!strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("unknown token: %d %q %q", a.status, a.header.Get("WWW-Authenticate"), a.body)
	}
	if a := authDo(t, client, "GET", lookup, "Bearer "+alice); a.status != 200 || string(a.body) != "v" {
		t.Fatalf("alice's token: %d %q", a.status, a.body)
	}
	if a := authDo(t, client, "GET", base+"/v1/cluster", "Bearer "+alice); a.status != 200 {
		t.Fatalf("/v1/cluster with alice's token: %d %q", a.status, a.body)
	}
	if a := authDo(t, client, "GET", base+"/v1/cluster", ""); a.status != 401 {
		t.Fatalf("/v1/cluster without a token: %d %q", a.status, a.body)
	}
	if a := authDo(t, client, "DELETE", base+"/v1/cluster/nodes/99", "Bearer "+bob); a.status != 401 {
		t.Fatalf("node removal with an unknown token: %d %q", a.status, a.body)
	}
	if a := authDo(t, client, "DELETE", base+"/v1/cluster/nodes/99", "Bearer "+alice); a.status != 404 || a.code(t) != "unknown_node" {
		t.Fatalf("node removal with alice's token: %d %q", a.status, a.body)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if a := authDo(t, client, "GET", base+p, ""); a.status != 200 {
			t.Fatalf("%s without a token (open by default): %d %q", p, a.status, a.body)
		}
	}

	t.Run("hostile", func(t *testing.T) {
		// Garbage tokens of every printable shape, and tokens at and past
		// the size limit: each is a 401.
		for i := 0; i < 200; i++ {
			raw := make([]byte, 1+i*23%700)
			if _, err := rand.Read(raw); err != nil {
				t.Fatal(err)
			}
			tok := strings.Map(func(r rune) rune {
				if r < 0x21 || r == 0x7f {
					return 'x'
				}
				return r
			}, string(raw))
			if a := authDo(t, client, "GET", lookup, "Bearer "+tok); a.status != 401 {
				t.Fatalf("garbage token %q: %d %q", tok, a.status, a.body)
			}
		}
		for _, n := range []int{4096, 4097, 512 << 10} {
			if a := authDo(t, client, "GET", lookup, "Bearer "+strings.Repeat("A", n)); a.status != 401 {
				t.Fatalf("token of %d bytes: %d %q", n, a.status, a.body)
			}
		}
		// A header past Go's 1 MiB header limit is refused before any handler.
		if a := authDo(t, client, "GET", lookup, "Bearer "+strings.Repeat("A", 2<<20)); a.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("2 MiB Authorization header: %d %q", a.status, a.body)
		}
		// Control bytes no client library would send, on a raw connection.
		for _, hdr := range []string{"Bearer \x00\x01\x02", "Bearer " + alice + "\x7f", "\xff\xfe Bearer"} {
			status := rawRequest(t, b.HTTPAddr, "GET /v1/topics/"+topic+"/keys/k HTTP/1.1\r\nHost: x\r\nAuthorization: "+hdr+"\r\nConnection: close\r\n\r\n")
			if status != 400 && status != 401 {
				t.Fatalf("Authorization %q: status %d, want 400 or 401", hdr, status)
			}
		}
		if a := authDo(t, client, "GET", lookup, "Bearer "+alice); a.status != 200 {
			t.Fatalf("alice after the hostile requests: %d %q", a.status, a.body)
		}
		m := authDo(t, client, "GET", base+"/metrics", "")
		if !strings.Contains(string(m.body), `shardcache_http_auth_failures_total{reason="malformed"}`) ||
			!strings.Contains(string(m.body), `shardcache_http_auth_failures_total{reason="invalid"}`) {
			t.Fatalf("/metrics has no auth failure counters")
		}
	})

	t.Run("reload", func(t *testing.T) {
		// Rotate: bob in, alice out. The broker checks the file at most
		// once a second, on a request.
		writeTokensFile(t, path, tokensLine(bob, "User:bob"))
		waitFor(t, 30*time.Second, 100*time.Millisecond, "the new tokens file in force", func() error {
			if a := authDo(t, client, "GET", lookup, "Bearer "+bob); a.status != 200 {
				return fmt.Errorf("bob: %d %s", a.status, a.body)
			}
			return nil
		})
		if a := authDo(t, client, "GET", lookup, "Bearer "+alice); a.status != 401 {
			t.Fatalf("alice after her token was removed: %d %q", a.status, a.body)
		}
		// A file that does not parse keeps bob's token (requests go on
		// until the broker has read it: its error counter rises).
		failed := func() string {
			m := authDo(t, client, "GET", base+"/metrics", "")
			for _, line := range strings.Split(string(m.body), "\n") {
				if strings.HasPrefix(line, `shardcache_http_tokens_file_loads_total{result="error"} `) {
					return line
				}
			}
			t.Fatalf("/metrics has no shardcache_http_tokens_file_loads_total{result=\"error\"}")
			return ""
		}
		before := failed()
		writeTokensFile(t, path, bob+" User:bob\n")
		waitFor(t, 30*time.Second, 100*time.Millisecond, "the bad tokens file read", func() error {
			if a := authDo(t, client, "GET", lookup, "Bearer "+bob); a.status != 200 {
				t.Fatalf("bob after a bad rewrite: %d %q", a.status, a.body)
			}
			if now := failed(); now == before {
				return fmt.Errorf("still %s", now)
			}
			return nil
		})
		if a := authDo(t, client, "GET", lookup, "Bearer "+bob); a.status != 200 {
			t.Fatalf("bob after a bad rewrite: %d %q", a.status, a.body)
		}
		if a := authDo(t, client, "GET", lookup, "Bearer "+bob[:10]); a.status != 401 {
			t.Fatalf("a prefix of bob's token: %d %q", a.status, a.body)
		}
	})
}

// rawRequest writes req on a new connection and returns the response's
// status code, or 0 when the server closed without one.
func rawRequest(t testing.TB, addr, req string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHTTPAuthProbesClosed(t *testing.T) {
	requireLocalBroker(t)
	token := randomToken(t)
	path := filepath.Join(t.TempDir(), "http-tokens")
	writeTokensFile(t, path, tokensLine(token, "User:monitor"))
	client := &http.Client{Timeout: 5 * time.Second}
	probe := func(addr string) (*http.Response, error) {
		req, err := http.NewRequest("GET", "http://"+addr+"/readyz", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return client.Do(req)
	}
	b := startBrokerProbe(t, probe, "--http-tokens-file="+path, "--http-open-probes=false")
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if a := authDo(t, client, "GET", "http://"+b.HTTPAddr+p, ""); a.status != 401 || a.code(t) != "unauthenticated" {
			t.Fatalf("%s without a token: %d %q", p, a.status, a.body)
		}
		if a := authDo(t, client, "GET", "http://"+b.HTTPAddr+p, "Bearer "+token); a.status != 200 {
			t.Fatalf("%s with a token: %d %q", p, a.status, a.body)
		}
	}
}

func TestHTTPAuthClientCertificate(t *testing.T) {
	requireLocalBroker(t)
	dir := t.TempDir()
	serverCA := testcerts.NewCA(t, "server-ca")
	files := serverCA.Write(t, dir, "server", serverCA.Server(t, "broker"))
	clientCA := testcerts.NewCA(t, "http-client-ca")
	clientCAFile := filepath.Join(dir, "http-client-ca.crt")
	if err := os.WriteFile(clientCAFile, clientCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	token := randomToken(t)
	tokens := filepath.Join(dir, "http-tokens")
	writeTokensFile(t, tokens, tokensLine(token, "User:svc"))

	client := func(cert *testcerts.Pair) *http.Client {
		c := &tls.Config{RootCAs: serverCA.Pool()}
		if cert != nil {
			c.Certificates = []tls.Certificate{cert.TLS(t)}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 30 * time.Second}
	}
	carol := clientCA.Client(t, "carol")
	withCert := client(&carol)
	probe := func(addr string) (*http.Response, error) { return withCert.Get("https://" + addr + "/readyz") }
	b := startBrokerProbe(t, probe, "--tls-cert-file="+files.Cert, "--tls-key-file="+files.Key, "--http-tls",
		"--http-client-ca-file="+clientCAFile, "--http-tokens-file="+tokens)
	topic := seedKey(t, b)
	lookup := "https://" + b.HTTPAddr + "/v1/topics/" + topic + "/keys/k"

	if a := authDo(t, withCert, "GET", lookup, ""); a.status != 200 || string(a.body) != "v" {
		t.Fatalf("carol's certificate: %d %q", a.status, a.body)
	}
	if a := authDo(t, client(nil), "GET", lookup, ""); a.status != 401 || a.code(t) != "unauthenticated" {
		t.Fatalf("no certificate, no token: %d %q", a.status, a.body)
	}
	if a := authDo(t, client(nil), "GET", lookup, "Bearer "+token); a.status != 200 {
		t.Fatalf("a token over HTTPS without a certificate: %d %q", a.status, a.body)
	}
	if a := authDo(t, withCert, "GET", "https://"+b.HTTPAddr+"/v1/cluster", ""); a.status != 200 {
		t.Fatalf("/v1/cluster with carol's certificate: %d %q", a.status, a.body)
	}
	// The server's own CA is not the HTTP client CA: its client certificate
	// names no principal.
	other := serverCA.Client(t, "mallory")
	if resp, err := client(&other).Get(lookup); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("a certificate of another CA: %d", resp.StatusCode)
		}
	}
	// Plain HTTP on the TLS port is refused.
	if a := authDo(t, &http.Client{Timeout: 10 * time.Second}, "GET", "http://"+b.HTTPAddr+"/v1/topics/"+topic+"/keys/k", ""); a.status != 400 {
		t.Fatalf("plain HTTP on the HTTPS port: %d %q", a.status, a.body)
	}
}

// TestHTTPAuthBadFiles: a tokens file, an HTTP client CA or a TLS file that
// does not load stops the binary at start with exit status 2 and a message
// naming the flag.
func TestHTTPAuthBadFiles(t *testing.T) {
	requireLocalBroker(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain-tokens")
	writeTokensFile(t, plain, "# a token where its hash belongs\nsecret-token User:alice\n")
	dup := filepath.Join(dir, "dup-tokens")
	writeTokensFile(t, dup, tokensLine("t", "User:a"), tokensLine("t", "User:b"))
	ca := testcerts.NewCA(t, "ca")
	files := ca.Write(t, dir, "server", ca.Server(t, "broker"))
	notPEM := filepath.Join(dir, "not-a-ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string // in the error output
	}{
		{"missing tokens file", []string{"--http-tokens-file=" + filepath.Join(dir, "nope")}, []string{"--http-tokens-file", "no such file"}},
		{"a token, not a hash", []string{"--http-tokens-file=" + plain}, []string{"--http-tokens-file", "line 2", "not accepted"}},
		{"duplicate hash", []string{"--http-tokens-file=" + dup}, []string{"--http-tokens-file", "line 2"}},
		{"client CA without TLS", []string{"--http-client-ca-file=" + files.CA}, []string{"--http-client-ca-file", "--http-tls"}},
		{"client CA not PEM", []string{"--tls-cert-file=" + files.Cert, "--tls-key-file=" + files.Key, "--http-tls", "--http-client-ca-file=" + notPEM},
			[]string{"--http-client-ca-file", "no PEM certificate"}},
		{"closed probes without auth", []string{"--http-open-probes=false"}, []string{"--http-open-probes"}},
		// The listeners' and the cluster port's TLS files are checked the same way.
		{"TLS key not PEM", []string{"--tls-cert-file=" + files.Cert, "--tls-key-file=" + notPEM}, []string{"--tls-* files"}},
		{"cluster TLS CA not PEM", []string{"--cluster-tls-cert-file=" + files.Cert, "--cluster-tls-key-file=" + files.Key,
			"--cluster-tls-ca-file=" + notPEM}, []string{"--cluster-tls-* files"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"--data-dir=" + t.TempDir(), "--kafka-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--cluster-addr=127.0.0.1:0"}, tc.args...)
			out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2; output:\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("output does not say %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "secret-token") {
				t.Fatalf("output repeats a token:\n%s", out)
			}
		})
	}
}

// TestHTTPAuthACLs: the HTTP API decides with the broker's ACLs, the same
// authorizer the Kafka APIs use. With --allow-everyone-if-no-acl-found=false
// a token's principal gets only what ACLs give it: a lookup needs READ on
// the topic, /v1/cluster DESCRIBE on the cluster, a node removal ALTER on
// it; a DENY beats an ALLOW. The test's Kafka clients are PLAINTEXT
// (User:ANONYMOUS), made a super user to seed the key and manage the ACLs.
func TestHTTPAuthACLs(t *testing.T) {
	requireLocalBroker(t)
	alice, bob := randomToken(t), randomToken(t)
	path := filepath.Join(t.TempDir(), "http-tokens")
	writeTokensFile(t, path, tokensLine(alice, "User:alice"), tokensLine(bob, "User:bob"))
	b := startBroker(t, "--http-tokens-file="+path, "--allow-everyone-if-no-acl-found=false", "--super-users=User:ANONYMOUS")
	topic := seedKey(t, b)
	adm := b.Admin(t)
	client := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + b.HTTPAddr
	lookup := base + "/v1/topics/" + topic + "/keys/k"
	grant := func(acls *kadm.ACLBuilder) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := adm.CreateACLs(ctx, acls)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("create ACL: %v %s", r.Err, r.ErrMessage)
			}
		}
	}
	expect := func(method, url, token string, status int) {
		t.Helper()
		a := authDo(t, client, method, url, "Bearer "+token)
		if a.status != status {
			t.Fatalf("%s %s: %d %q, want %d", method, url, a.status, a.body, status)
		}
		if status == 403 && a.code(t) != "forbidden" {
			t.Fatalf("%s %s: code %q, want forbidden", method, url, a.code(t))
		}
	}

	// No ACL names alice yet: everything is refused.
	expect("GET", lookup, alice, 403)
	expect("GET", base+"/v1/cluster", alice, 403)
	expect("DELETE", base+"/v1/cluster/nodes/99", alice, 403)

	grant(kadm.NewACLs().Allow("User:alice").Topics(topic).Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral))
	grant(kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpDescribe))
	if a := authDo(t, client, "GET", lookup, "Bearer "+alice); a.status != 200 || string(a.body) != "v" {
		t.Fatalf("alice's lookup after READ was granted: %d %q", a.status, a.body)
	}
	expect("GET", base+"/v1/cluster", alice, 200)
	// DESCRIBE on the cluster is not ALTER; bob has nothing.
	expect("DELETE", base+"/v1/cluster/nodes/99", alice, 403)
	expect("GET", lookup, bob, 403)

	grant(kadm.NewACLs().Deny("User:alice").Topics(topic).Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral))
	expect("GET", lookup, alice, 403)
}
