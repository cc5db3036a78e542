// Package tlsfiles serves TLS from PEM files that may change while the
// server runs: the certificate, its key and the CA that checks client
// certificates are read at start and read again when a file's modification
// time or size changes, checked at most once per ReloadInterval on a new
// handshake. A set of files that does not load (a certificate rewritten
// before its key, say) keeps the last good set in use and is reported
// through OnError; the next check tries again.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ClientAuth is whether client certificates are asked for.
type ClientAuth string

// Client authentication modes (Kafka's ssl.client.auth).
const (
	ClientAuthNone      ClientAuth = "none"
	ClientAuthRequested ClientAuth = "requested"
	ClientAuthRequired  ClientAuth = "required"
)

// ReloadInterval is the least time between two checks of the files.
const ReloadInterval = time.Second

// Files names the PEM files.
type Files struct {
	// CertFile holds the certificate chain, leaf first; KeyFile its key.
	CertFile, KeyFile string
	// CAFile holds the CA certificates that client certificates must chain
	// to; required unless ClientAuth is none.
	CAFile string
	// ClientAuth is none, requested (verified when sent) or required.
	ClientAuth ClientAuth
	// OnError is told about a reload that failed; nil ignores it.
	OnError func(error)
}

// Config serves TLS from Files.
type Config struct {
	f Files

	mu        sync.Mutex
	lastCheck time.Time
	stamps    [3]stamp
	cur       *tls.Config
}

type stamp struct {
	mod  time.Time
	size int64
}

// Load reads the files once and returns a Config, or why they do not load.
func Load(f Files) (*Config, error) {
	switch f.ClientAuth {
	case "":
		f.ClientAuth = ClientAuthNone
	case ClientAuthNone, ClientAuthRequested, ClientAuthRequired:
	default:
		return nil, fmt.Errorf("tls: client auth %q is not none, requested or required", f.ClientAuth)
	}
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are required")
	}
	if f.ClientAuth != ClientAuthNone && f.CAFile == "" {
		return nil, fmt.Errorf("tls: client auth %s needs a CA file", f.ClientAuth)
	}
	c := &Config{f: f}
	stamps, cfg, err := c.load()
	if err != nil {
		return nil, err
	}
	c.stamps, c.cur, c.lastCheck = stamps, cfg, time.Now()
	return c, nil
}

func (c *Config) stampFiles() ([3]stamp, error) {
	var out [3]stamp
	for i, name := range []string{c.f.CertFile, c.f.KeyFile, c.f.CAFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("tls: %w", err)
		}
		out[i] = stamp{fi.ModTime(), fi.Size()}
	}
	return out, nil
}

func (c *Config) load() ([3]stamp, *tls.Config, error) {
	stamps, err := c.stampFiles()
	if err != nil {
		return stamps, nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.f.CertFile, c.f.KeyFile)
	if err != nil {
		return stamps, nil, fmt.Errorf("tls: certificate %s, key %s: %w", c.f.CertFile, c.f.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if c.f.CAFile != "" {
		pem, err := os.ReadFile(c.f.CAFile)
		if err != nil {
			return stamps, nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return stamps, nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", c.f.CAFile)
		}
		cfg.ClientCAs = pool
	}
	switch c.f.ClientAuth {
	case ClientAuthRequested:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequired:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return stamps, cfg, nil
}

// current returns the tls.Config in force, reloading the files first when
// they changed and the last check is ReloadInterval old.
func (c *Config) current() *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.lastCheck) < ReloadInterval {
		return c.cur
	}
	c.lastCheck = time.Now()
	stamps, err := c.stampFiles()
	if err == nil && stamps == c.stamps {
		return c.cur
	}
	if err == nil {
		var cfg *tls.Config
		stamps, cfg, err = c.load()
		if err == nil {
			c.stamps, c.cur = stamps, cfg
			return c.cur
		}
	}
	if c.f.OnError != nil {
		c.f.OnError(err)
	}
	return c.cur
}

// Reload checks the files now, whatever ReloadInterval says, and reports
// whether they loaded (tests, a SIGHUP).
func (c *Config) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamps, cfg, err := c.load()
	if err != nil {
		return err
	}
	c.stamps, c.cur, c.lastCheck = stamps, cfg, time.Now()
	return nil
}

// ServerConfig returns a tls.Config for a server: each handshake takes the
// files' current contents.
func (c *Config) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.current(), nil
		},
	}
}

// ClientConfig returns a tls.Config for dialing serverName with the files'
// current contents: the certificate as the client certificate, and the CA
// file as the roots that verify the server (the node-to-node port, where each
// node is both ends). Without a CA file the system roots verify the server.
func (c *Config) ClientConfig(serverName string) *tls.Config {
	cur := c.current()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: cur.Certificates,
		RootCAs:      cur.ClientCAs,
		ServerName:   serverName,
	}
}

// Principal is Kafka's principal for a verified client certificate,
// "User:" and its subject's common name; "" when there is none.
func Principal(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	cn := strings.TrimSpace(cs.PeerCertificates[0].Subject.CommonName)
	if cn == "" {
		return ""
	}
	return "User:" + cn
}
