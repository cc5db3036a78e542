package main

// Authentication of the HTTP API from the flags: --http-tokens-file,
// --http-client-ca-file and --http-open-probes (internal/httpapi/auth.go).

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/httpapi"
	"github.com/shardcache/shardcache/internal/tlsfiles"
)

// validateHTTPAuth checks the HTTP authentication flags and that the tokens
// file loads (start reads it again; the CA file is read by start only, and a
// bad one also exits 2).
func (c Config) validateHTTPAuth() error {
	if c.HTTPTokensFile != "" {
		if _, err := httpapi.LoadTokenFile(c.HTTPTokensFile, nil); err != nil {
			return fmt.Errorf("flag --http-tokens-file: %v", err)
		}
	}
	if c.HTTPClientCAFile != "" && !c.HTTPTLS {
		return fmt.Errorf("flag --http-client-ca-file: needs --http-tls (client certificates come with TLS)")
	}
	if !c.HTTPOpenProbes && c.HTTPTokensFile == "" && c.HTTPClientCAFile == "" {
		return fmt.Errorf("flag --http-open-probes: false needs HTTP authentication (--http-tokens-file or --http-client-ca-file)")
	}
	return nil
}

// httpAuth is what the HTTP server needs for authentication.
type httpAuth struct {
	tokens *httpapi.TokenFile
	// tls serves the HTTP port (nil without --http-tls).
	tls *tls.Config
	// clientCerts: the HTTP listener asks for client certificates.
	clientCerts bool
	// peerTLS is how /v1/cluster asks the other nodes' HTTPS ports (nil
	// without --http-tls).
	peerTLS *tls.Config
}

// loadHTTPAuth reads the tokens file and the HTTP client CA. shared is the
// Kafka listeners' TLS files (nil when none), which serve HTTP unless an
// HTTP client CA is set. A file that does not load is a configuration error
// (exit 2).
func (s *server) loadHTTPAuth(shared *tlsfiles.Config) (httpAuth, error) {
	var a httpAuth
	log := s.log
	if s.cfg.HTTPTokensFile != "" {
		var err error
		a.tokens, err = httpapi.LoadTokenFile(s.cfg.HTTPTokensFile, func(err error) {
			log.Warn("http tokens file did not reload, keeping the last good tokens", logError, err)
		})
		if err != nil {
			return a, fmt.Errorf("%w: flag --http-tokens-file: %v", errUsage, err)
		}
	}
	if !s.cfg.HTTPTLS {
		return a, nil
	}
	var err error
	if a.peerTLS, err = peerTLS(s.cfg.TLSCAFile); err != nil {
		return a, err
	}
	if s.cfg.HTTPClientCAFile == "" {
		a.tls = shared.ServerConfig()
		return a, nil
	}
	own, err := tlsfiles.Load(tlsfiles.Files{
		CertFile:   s.cfg.TLSCertFile,
		KeyFile:    s.cfg.TLSKeyFile,
		CAFile:     s.cfg.HTTPClientCAFile,
		ClientAuth: tlsfiles.ClientAuthRequested, // a bearer token may come instead
		OnError:    func(err error) { log.Warn("http tls files did not reload, keeping the last good ones", logError, err) },
	})
	if err != nil {
		return a, fmt.Errorf("%w: flag --http-client-ca-file: %v", errUsage, err)
	}
	a.tls, a.clientCerts = own.ServerConfig(), true
	return a, nil
}

// peerTLS is the client configuration for the other nodes' HTTPS ports:
// their certificates are checked against the system's roots and caFile
// (--tls-ca-file), read once.
func peerTLS(caFile string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("flag --tls-ca-file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("flag --tls-ca-file: %s holds no PEM certificate", caFile)
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// authorize is the HTTP API's authorizer: the broker's ACL decision, the
// same one the Kafka APIs use (Broker.Authorize). The broker is built after
// the HTTP server starts, so it is read through s.authz; until it exists the
// answer is no (fail closed). The data endpoints answer 503 until then anyway.
func (s *server) authorize(principal, host string, op kmsg.ACLOperation, res kmsg.ACLResourceType, name string) bool {
	b := s.authz.Load()
	return b != nil && b.Authorize(principal, host, op, res, name)
}
