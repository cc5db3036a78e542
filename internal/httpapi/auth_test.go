package httpapi

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/testcerts"
	"github.com/shardcache/shardcache/raftfsm"
)

// tokenLine is a tokens file line for token.
func tokenLine(token, principal string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:]) + " " + principal + "\n"
}

func writeTokens(t testing.TB, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ruleAuthorizer allows what its rules list: "principal op res name", with
// op and res as kmsg names them (READ TOPIC users). It records the hosts it
// was asked about.
type ruleAuthorizer struct {
	rules map[string]bool
	mu    sync.Mutex
	hosts map[string]bool
}

func newRuleAuthorizer(rules ...string) *ruleAuthorizer {
	a := &ruleAuthorizer{rules: map[string]bool{}, hosts: map[string]bool{}}
	for _, r := range rules {
		a.rules[r] = true
	}
	return a
}

func (a *ruleAuthorizer) Authorize(principal, host string, op kmsg.ACLOperation, res kmsg.ACLResourceType, name string) bool {
	a.mu.Lock()
	a.hosts[host] = true
	a.mu.Unlock()
	return a.rules[fmt.Sprintf("%s %s %s %s", principal, op, res, name)]
}

func TestParseTokens(t *testing.T) {
	good := tokenLine("t1", "User:alice")
	hash := strings.Fields(good)[0]
	tests := []struct {
		name    string
		file    string
		want    []string // principals, in order
		wantErr string
	}{
		{name: "empty", file: "", want: nil},
		{name: "comments and blanks", file: "# tokens\n\n  \n" + good + "  # indented comment\n", want: []string{"User:alice"}},
		{name: "crlf and upper-case hex", file: strings.ToUpper(hash[:7]) + "x" + "\r\n", wantErr: "line 1"},
		{name: "upper-case hex", file: "sha256:" + strings.ToUpper(hash[7:]) + " User:bob\r\n", want: []string{"User:bob"}},
		{name: "two principals", file: good + tokenLine("t2", "User:bob") + tokenLine("t3", "User:alice"), want: []string{"User:alice", "User:bob", "User:alice"}},
		{name: "a token, not a hash", file: "secret-token User:alice\n", wantErr: "tokens themselves are not accepted"},
		{name: "short hash", file: "sha256:abcd User:alice\n", wantErr: "64 hex digits"},
		{name: "not hex", file: "sha256:" + strings.Repeat("zz", 32) + " User:alice\n", wantErr: "not hex"},
		{name: "group principal", file: hash + " Group:ops\n", wantErr: `"User:<name>"`},
		{name: "empty name", file: hash + " User:\n", wantErr: `"User:<name>"`},
		{name: "no principal", file: hash + "\n", wantErr: "got 1 fields"},
		{name: "three fields", file: hash + " User:a User:b\n", wantErr: "got 3 fields"},
		{name: "control character", file: hash + " User:a\x01b\n", wantErr: "control character"},
		{name: "long name", file: hash + " User:" + strings.Repeat("n", 256) + "\n", wantErr: "over the limit"},
		{name: "duplicate", file: good + "#\n" + tokenLine("t1", "User:bob"), wantErr: "line 3: the same token hash is on line 1"},
		{name: "not UTF-8", file: good + "\xff\n", wantErr: "not UTF-8"},
		{name: "too big", file: strings.Repeat("#", MaxTokensFileBytes+1), wantErr: "over the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTokens([]byte(tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), hash[7:]) {
					t.Fatalf("error %q repeats a hash", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ps []string
			for _, e := range got {
				ps = append(ps, e.principal)
			}
			if strings.Join(ps, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("principals %q, want %q", ps, tc.want)
			}
		})
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("#\n"))
	f.Add([]byte(tokenLine("t", "User:a")))
	f.Add([]byte(tokenLine("t", "User:a") + tokenLine("u", "User:b") + "garbage"))
	f.Add([]byte("sha256:" + strings.Repeat("f", 64) + " User:" + strings.Repeat("x", 255)))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseTokens(data)
		if err != nil {
			return
		}
		// What parses is printable and parses back to the same entries.
		var sb strings.Builder
		for _, e := range entries {
			if !strings.HasPrefix(e.principal, "User:") || strings.ContainsAny(e.principal, " \t\r\n") {
				t.Fatalf("principal %q", e.principal)
			}
			sb.WriteString("sha256:" + hex.EncodeToString(e.hash[:]) + " " + e.principal + "\n")
		}
		again, err := parseTokens([]byte(sb.String()))
		if err != nil || len(again) != len(entries) {
			t.Fatalf("round trip: %v, %d entries, want %d", err, len(again), len(entries))
		}
		for i := range again {
			if again[i] != entries[i] {
				t.Fatalf("entry %d: %+v, want %+v", i, again[i], entries[i])
			}
		}
	})
}

func TestTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, tokenLine("old", "User:alice"))
	var mu sync.Mutex
	var reloadErrs []error
	tf, err := LoadTokenFile(path, func(err error) { mu.Lock(); reloadErrs = append(reloadErrs, err); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	check := func(token, want string) {
		t.Helper()
		p, ok := tf.Principal(token)
		if (want != "") != ok || p != want {
			t.Fatalf("Principal(%q) = %q, %v; want %q", token, p, ok, want)
		}
	}
	check("old", "User:alice")
	check("new", "")
	check("", "")
	check(strings.Repeat("x", MaxTokenBytes+1), "")

	// A changed file is read on the first request after TokenReloadInterval
	// (nextCheck moved back instead of waiting).
	writeTokens(t, path, "# rotated\n", tokenLine("new", "User:alice"), tokenLine("bob", "User:bob"))
	tf.nextCheck.Store(0)
	check("new", "User:alice")
	check("bob", "User:bob")
	check("old", "")
	reported := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(reloadErrs)
	}

	// A file that no longer parses keeps the last good tokens and is
	// reported once, however often it is checked.
	writeTokens(t, path, "plain-token User:mallory\n")
	for i := 0; i < 3; i++ {
		tf.nextCheck.Store(0)
		check("new", "User:alice")
		check("plain-token", "")
	}
	if n := reported(); n != 1 {
		t.Fatalf("%d reload errors reported, want 1", n)
	}
	if err := tf.Reload(); err == nil || strings.Contains(err.Error(), "plain-token") {
		t.Fatalf("Reload of a bad file: %v, want an error that does not repeat the token", err)
	}
	if got := tf.failed.Load(); got != 2 {
		t.Fatalf("%d failed loads counted, want 2 (one check, one Reload)", got)
	}
	// A removed file too, reported once more.
	os.Remove(path)
	tf.nextCheck.Store(0)
	check("bob", "User:bob")
	if n := reported(); n != 2 {
		t.Fatalf("%d reload errors reported, want 2", n)
	}
	// Back: the same tokens as before the bad rewrite are read again.
	writeTokens(t, path, "# rotated\n", tokenLine("new", "User:alice"), tokenLine("bob", "User:bob"))
	tf.nextCheck.Store(0)
	check("bob", "User:bob")
	if got := tf.loaded.Load(); got != 3 {
		t.Fatalf("%d good loads counted, want 3", got)
	}

	if _, err := LoadTokenFile(filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Fatal("LoadTokenFile of a missing file succeeded")
	}
	if _, err := LoadTokenFile(t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadTokenFile of a directory: %v", err)
	}
}

// authFixture is a lookup backend with authentication on: tokens for alice
// (reads topic users, describes the cluster), bob (nothing) and admin
// (alters the cluster).
type authFixture struct {
	b    *testBackend
	auth *ruleAuthorizer
}

func newAuthFixture(t *testing.T, opts ...func(*Config)) *authFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, tokenLine("alice-token", "User:alice"), tokenLine("bob-token", "User:bob"), tokenLine("admin-token", "User:admin"))
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{auth: newRuleAuthorizer(
		"User:alice READ TOPIC users", "User:alice DESCRIBE CLUSTER kafka-cluster",
		"User:admin ALTER CLUSTER kafka-cluster", "User:carol READ TOPIC users")}
	f.b = newTestBackend(t, append([]func(*Config){func(c *Config) {
		c.Tokens, c.Authorizer = tf, f.auth
	}}, opts...)...)
	f.b.createTopic(t, "users", 1, nil)
	f.b.createTopic(t, "secret", 1, nil)
	f.b.produce(t, "users", 0, rec("k", "v", 1))
	f.b.produce(t, "secret", 0, rec("k", "s", 1))
	return f
}

// authCall sends a request with the given Authorization header values.
func authCall(t *testing.T, client *http.Client, method, url, body string, auth ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp: resp, body: data}
}

func TestAuthTokens(t *testing.T) {
	f := newAuthFixture(t)
	const (
		alice = "Bearer alice-token"
		bob   = "Bearer bob-token"
		admin = "Bearer admin-token"
	)
	batch := `{"keys":["k"]}`
	tests := []struct {
		name, method, path, body string
		auth                     []string
		status                   int
		code                     string
		challenge                string // WWW-Authenticate of a 401
	}{
		{name: "healthz open", method: "GET", path: "/healthz", status: 200},
		{name: "metrics open", method: "GET", path: "/metrics", status: 200},
		{name: "readyz open", method: "GET", path: "/readyz", status: 200},
		{name: "no credentials", method: "GET", path: "/v1/topics/users/keys/k", status: 401, code: codeUnauthenticated, challenge: `Bearer realm="shardcache"`},
		{name: "unknown token", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"Bearer nope"}, status: 401, code: codeUnauthenticated, challenge: `Bearer realm="shardcache", error="invalid_token"`},
		{name: "basic scheme", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"Basic YWxpY2U6eA=="}, status: 401, code: codeUnauthenticated, challenge: `Bearer realm="shardcache", error="invalid_request"`},
		{name: "no token", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"Bearer"}, status: 401, code: codeUnauthenticated, challenge: `Bearer realm="shardcache", error="invalid_request"`},
		{name: "two headers", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{alice, alice}, status: 401, code: codeUnauthenticated, challenge: `Bearer realm="shardcache", error="invalid_request"`},
		{name: "token with a space", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"Bearer alice-token x"}, status: 401, code: codeUnauthenticated},
		{name: "oversized token", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"Bearer " + strings.Repeat("a", MaxTokenBytes+1)}, status: 401, code: codeUnauthenticated},
		{name: "garbage token", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"Bearer \u00e9\u2028\xff\xfe!@#$%^&*()=="}, status: 401, code: codeUnauthenticated},
		{name: "lookup allowed", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{alice}, status: 200},
		{name: "scheme case-insensitive", method: "GET", path: "/v1/topics/users/keys/k", auth: []string{"bearer alice-token"}, status: 200},
		{name: "lookup denied", method: "GET", path: "/v1/topics/secret/keys/k", auth: []string{alice}, status: 403, code: codeForbidden},
		{name: "unknown topic denied before 404", method: "GET", path: "/v1/topics/nosuch/keys/k", auth: []string{alice}, status: 403, code: codeForbidden},
		{name: "batchGet allowed", method: "POST", path: "/v1/topics/users/keys:batchGet", body: batch, auth: []string{alice}, status: 200},
		{name: "batchGet denied", method: "POST", path: "/v1/topics/secret/keys:batchGet", body: batch, auth: []string{alice}, status: 403, code: codeForbidden},
		{name: "batchGet without credentials", method: "POST", path: "/v1/topics/users/keys:batchGet", body: batch, status: 401, code: codeUnauthenticated},
		{name: "cluster allowed", method: "GET", path: "/v1/cluster", auth: []string{alice}, status: 200},
		{name: "cluster denied", method: "GET", path: "/v1/cluster", auth: []string{bob}, status: 403, code: codeForbidden},
		{name: "cluster local denied", method: "GET", path: "/v1/cluster/local", auth: []string{bob}, status: 403, code: codeForbidden},
		{name: "status allowed", method: "GET", path: "/v1/status", auth: []string{alice}, status: 200},
		{name: "status denied", method: "GET", path: "/v1/status", auth: []string{bob}, status: 403, code: codeForbidden},
		{name: "status page allowed", method: "GET", path: "/", auth: []string{alice}, status: 200},
		{name: "status page without credentials", method: "GET", path: "/", status: 401, code: codeUnauthenticated},
		{name: "static needs a principal", method: "GET", path: "/static/app.js", status: 401, code: codeUnauthenticated},
		{name: "remove node needs ALTER", method: "DELETE", path: "/v1/cluster/nodes/9", auth: []string{alice}, status: 403, code: codeForbidden},
		{name: "remove node allowed", method: "DELETE", path: "/v1/cluster/nodes/9", auth: []string{admin}, status: 404, code: codeUnknownNode},
		{name: "wrong method after auth", method: "PUT", path: "/v1/cluster", auth: []string{alice}, status: 405},
		{name: "wrong method without auth", method: "PUT", path: "/v1/cluster", status: 401, code: codeUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := authCall(t, f.b.Srv.Client(), tc.method, f.b.Srv.URL+tc.path, tc.body, tc.auth...)
			if r.resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", r.resp.StatusCode, tc.status, r.body)
			}
			if tc.code != "" {
				if got := r.errorCode(t); got != tc.code {
					t.Fatalf("code %q, want %q", got, tc.code)
				}
			}
			if got := r.resp.Header.Get("WWW-Authenticate"); tc.challenge != "" && got != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
			} else if tc.status == 401 && got == "" {
				t.Fatal("a 401 without WWW-Authenticate")
			}
			if strings.Contains(string(r.body), "alice-token") || strings.Contains(string(r.body), "bob-token") {
				t.Fatalf("body %q repeats a token", r.body)
			}
		})
	}
	if !f.auth.hosts["127.0.0.1"] || len(f.auth.hosts) != 1 {
		t.Fatalf("authorizer asked about hosts %v, want 127.0.0.1", f.auth.hosts)
	}
	for reason, min := range map[string]float64{authMissing: 5, authInvalid: 2, authMalformed: 5, authDenied: 7} {
		if got := authFailures(t, f.b, reason); got < min {
			t.Errorf("auth failures %s = %v, want at least %v", reason, got, min)
		}
	}
}

// authFailures reads shardcache_http_auth_failures_total{reason} from the
// backend's registry.
func authFailures(t *testing.T, b *testBackend, reason string) float64 {
	t.Helper()
	mfs, err := b.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shardcache_http_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no shardcache_http_auth_failures_total{reason=%q}", reason)
	return 0
}

func TestAuthProbesClosed(t *testing.T) {
	f := newAuthFixture(t, func(c *Config) { c.ProbesNeedAuth = true })
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := authCall(t, f.b.Srv.Client(), "GET", f.b.Srv.URL+path, ""); r.resp.StatusCode != 401 || r.errorCode(t) != codeUnauthenticated {
			t.Fatalf("%s without credentials: %d %q", path, r.resp.StatusCode, r.body)
		}
		// Any principal will do: bob may do nothing else.
		if r := authCall(t, f.b.Srv.Client(), "GET", f.b.Srv.URL+path, "", "Bearer bob-token"); r.resp.StatusCode != 200 {
			t.Fatalf("%s with a token: %d %q", path, r.resp.StatusCode, r.body)
		}
	}
}

func TestAuthClientCertificates(t *testing.T) {
	ca := testcerts.NewCA(t, "http-ca")
	other := testcerts.NewCA(t, "other-ca")
	for _, tokens := range []bool{false, true} {
		t.Run(fmt.Sprintf("tokens=%v", tokens), func(t *testing.T) {
			auth := newRuleAuthorizer("User:carol READ TOPIC users")
			b := newTestBackend(t)
			b.createTopic(t, "users", 1, nil)
			b.produce(t, "users", 0, rec("k", "v", 1))
			cfg := Config{Backend: func() *Backend { return &Backend{Node: b.Node, Store: b.Store} }, Logger: testLogger(t), ClientCerts: true, Authorizer: auth}
			if tokens {
				path := filepath.Join(t.TempDir(), "tokens")
				writeTokens(t, path, tokenLine("carol-token", "User:dave"))
				tf, err := LoadTokenFile(path, nil)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Tokens = tf
			}
			srv := httptest.NewUnstartedServer(New(cfg))
			srv.TLS = &tls.Config{ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven,
				Certificates: []tls.Certificate{ca.Server(t, "server").TLS(t)}}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			client := func(cert *testcerts.Pair) *http.Client {
				c := &tls.Config{RootCAs: ca.Pool()}
				if cert != nil {
					c.Certificates = []tls.Certificate{cert.TLS(t)}
				}
				return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 30 * time.Second}
			}
			carol, mallory := ca.Client(t, "carol"), ca.Client(t, "mallory")
			url := srv.URL + "/v1/topics/users/keys/k"
			if r := authCall(t, client(&carol), "GET", url, ""); r.resp.StatusCode != 200 || string(r.body) != "v" {
				t.Fatalf("carol's certificate: %d %q", r.resp.StatusCode, r.body)
			}
			if r := authCall(t, client(&mallory), "GET", url, ""); r.resp.StatusCode != 403 {
				t.Fatalf("mallory's certificate: %d %q", r.resp.StatusCode, r.body)
			}
			if r := authCall(t, client(nil), "GET", url, ""); r.resp.StatusCode != 401 {
				t.Fatalf("no certificate: %d %q", r.resp.StatusCode, r.body)
			}
			// A certificate from another CA names no principal (Go's client
			// does not even send it: its issuer is not one the server asks for).
			foreign := other.Client(t, "carol")
			if resp, err := client(&foreign).Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 401 {
					t.Fatalf("a certificate of another CA: %d", resp.StatusCode)
				}
			}
			// With a tokens file, a token presented is what counts, even
			// next to a valid certificate; without one the header is ignored.
			r := authCall(t, client(&carol), "GET", url, "", "Bearer carol-token")
			if want := map[bool]int{false: 200, true: 403}[tokens]; r.resp.StatusCode != want {
				t.Fatalf("carol's certificate and dave's token: %d %q, want %d", r.resp.StatusCode, r.body, want)
			}
			r = authCall(t, client(&carol), "GET", url, "", "Bearer wrong")
			if want := map[bool]int{false: 200, true: 401}[tokens]; r.resp.StatusCode != want {
				t.Fatalf("carol's certificate and a wrong token: %d %q, want %d", r.resp.StatusCode, r.body, want)
			}
		})
	}
}

// TestAuthClusterForwardsCallerToken: GET /v1/cluster asks the other node
// with the caller's own token, which the other node checks; without a
// token the other node refuses, and a denied caller is refused before any
// node is asked. Over HTTPS (PeerTLS) as over HTTP.
func TestAuthClusterForwardsCallerToken(t *testing.T) {
	for _, https := range []bool{false, true} {
		t.Run(fmt.Sprintf("https=%v", https), func(t *testing.T) { testClusterForwarding(t, https) })
	}
}

func testClusterForwarding(t *testing.T, https bool) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, tokenLine("alice-token", "User:alice"), tokenLine("bob-token", "User:bob"))
	auth := newRuleAuthorizer("User:alice DESCRIBE CLUSTER kafka-cluster")
	ca := testcerts.NewCA(t, "ca")
	opt := nodeOption{cfg: func(c *Config) {
		tf, err := LoadTokenFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Tokens, c.Authorizer = tf, auth
		if https {
			c.PeerTLS = &tls.Config{RootCAs: ca.Pool()}
		}
	}}
	client, scheme := testClient, "http://"
	if https {
		opt.serverTLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "node").TLS(t)}}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}, Timeout: 30 * time.Second}
		scheme = "https://"
	}
	n1 := newHTTPNode(t, 1, nil, opt)
	n2 := newHTTPNode(t, 2, []string{n1.addr}, opt)
	n1.waitReady(t)
	n2.waitReady(t)
	get := func(addr, path, auth string) httpResult {
		return authCall(t, client, "GET", scheme+addr+path, "", auth)
	}
	if r := get(n2.httpAddr, "/v1/cluster/local", "Bearer bob-token"); r.resp.StatusCode != 403 {
		t.Fatalf("bob on node 2's /v1/cluster/local: %d %q", r.resp.StatusCode, r.body)
	}
	if r := get(n1.httpAddr, "/v1/cluster", "Bearer bob-token"); r.resp.StatusCode != 403 {
		t.Fatalf("bob on /v1/cluster: %d %q", r.resp.StatusCode, r.body)
	}
	waitFor(t, "node 2 alive in node 1's /v1/cluster", 30*time.Second, func() (bool, string) {
		r := get(n1.httpAddr, "/v1/cluster", "Bearer alice-token")
		if r.resp.StatusCode != 200 {
			return false, fmt.Sprintf("%d %s", r.resp.StatusCode, r.body)
		}
		var c clusterResponse
		if err := json.Unmarshal(r.body, &c); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			if n.ID == 2 {
				return n.State == nodeAlive && n.Error == "", fmt.Sprintf("%+v", n)
			}
		}
		return false, "node 2 not listed"
	})
	// The peer request a caller without a token would make is refused: what
	// node 1 reports when the token is not forwarded.
	var peerTLS *tls.Config
	if https {
		peerTLS = &tls.Config{RootCAs: ca.Pool()}
	}
	pa := (&Handler{cfg: Config{PeerTLS: peerTLS}, peers: newPeerClient(peerTLS)}).askPeer(t.Context(), raftfsm.NodeInfo{ID: 2, HTTPAddr: n2.httpAddr}, "")
	if pa.alive || !strings.Contains(pa.err, "HTTP 401") {
		t.Fatalf("asking node 2 without credentials: %+v", pa)
	}
}

// TestAuthPprof: the profiles need ALTER on the cluster.
func TestAuthPprof(t *testing.T) {
	f := newAuthFixture(t, func(c *Config) { c.Pprof = true })
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer alice-token", 403}, {"Bearer admin-token", 200}} {
		var auth []string
		if tc.auth != "" {
			auth = append(auth, tc.auth)
		}
		if r := authCall(t, f.b.Srv.Client(), "GET", f.b.Srv.URL+"/debug/pprof/cmdline", "", auth...); r.resp.StatusCode != tc.status {
			t.Fatalf("pprof with %q: %d %q, want %d", tc.auth, r.resp.StatusCode, r.body, tc.status)
		}
	}
}

// BenchmarkTokenPrincipal is the cost of checking one bearer token against
// a tokens file of n entries: a SHA-256 and a map lookup.
func BenchmarkTokenPrincipal(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprint("entries=", n), func(b *testing.B) {
			lines := make([]string, n)
			for i := range lines {
				lines[i] = tokenLine(fmt.Sprint("token-", i), fmt.Sprint("User:u", i))
			}
			path := filepath.Join(b.TempDir(), "tokens")
			writeTokens(b, path, lines...)
			tf, err := LoadTokenFile(path, nil)
			if err != nil {
				b.Fatal(err)
			}
			want := fmt.Sprint("token-", n-1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok := tf.Principal(want); !ok {
					b.Fatal("token not found")
				}
			}
		})
	}
}

// FuzzAuthenticate: whatever the Authorization header holds, a principal
// comes out only for the one token in the file.
func FuzzAuthenticate(f *testing.F) {
	path := filepath.Join(f.TempDir(), "tokens")
	writeTokens(f, path, tokenLine("good-token", "User:alice"))
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := New(Config{Tokens: tf})
	for _, s := range []string{"", "Bearer good-token", "bearer  good-token", "Bearer", "Bearer ", "Basic Zm9v", "Bearer good-token ", "Bearer good-tokeN", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, hdr string) {
		r := httptest.NewRequest("GET", "/v1/cluster", nil)
		r.Header["Authorization"] = []string{hdr}
		p, viaToken, reason := h.authenticate(r)
		scheme, tok, _ := strings.Cut(hdr, " ")
		valid := strings.EqualFold(scheme, "Bearer") && strings.TrimLeft(tok, " ") == "good-token"
		switch {
		case valid && (p != "User:alice" || !viaToken):
			t.Fatalf("%q: principal %q via token %v, want User:alice", hdr, p, viaToken)
		case !valid && (p != "" || reason == ""):
			t.Fatalf("%q: principal %q, reason %q; want none", hdr, p, reason)
		}
	})
}

// TestTokenFileConcurrent: requests read tokens while the file is rewritten
// and checked (run with -race); the token kept in every version always
// works.
func TestTokenFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, tokenLine("kept", "User:k"))
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				tf.nextCheck.Store(0)
				if p, ok := tf.Principal("kept"); !ok || p != "User:k" {
					errs <- fmt.Sprintf("kept: %q %v", p, ok)
					return
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		writeTokens(t, path+".tmp", tokenLine("kept", "User:k"), tokenLine(fmt.Sprint("extra-", i), "User:x"))
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
