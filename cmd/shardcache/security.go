package main

// Listeners, TLS and SASL from the flags: --listeners in Kafka's
// NAME://host:port shape with --listener-security-protocol-map and
// --advertised-listeners, the PEM files, and the bootstrap SASL user.

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/shardcache/shardcache/broker"
	"github.com/shardcache/shardcache/internal/scram"
	"github.com/shardcache/shardcache/internal/tlsfiles"
	"github.com/shardcache/shardcache/raftfsm"
)

// defaultProtocolMap is Kafka's default listener.security.protocol.map.
const defaultProtocolMap = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"

// bootstrapPasswordEnv holds the bootstrap user's password; an environment
// variable only, so that it is not in the process list.
const bootstrapPasswordEnv = envPrefix + "SASL_BOOTSTRAP_PASSWORD"

// listenerSpec is one --listeners entry with its protocol and advertised
// address (empty: the bound one).
type listenerSpec struct {
	name       string
	addr       string
	protocol   broker.SecurityProtocol
	advertised string
}

// parseListenerList parses "NAME://host:port,..." into name -> address,
// keeping the order; duplicate names are an error.
func parseListenerList(s string) ([]string, map[string]string, error) {
	var names []string
	addrs := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "://")
		if !ok || name == "" {
			return nil, nil, fmt.Errorf("want NAME://host:port items, got %q", item)
		}
		name = strings.ToUpper(name)
		if strings.ContainsAny(name, ":,/ ") {
			return nil, nil, fmt.Errorf("bad listener name %q", name)
		}
		if _, dup := addrs[name]; dup {
			return nil, nil, fmt.Errorf("listener %s named twice", name)
		}
		names = append(names, name)
		addrs[name] = addr
	}
	return names, addrs, nil
}

// parseProtocolMap parses "NAME:PROTOCOL,...".
func parseProtocolMap(s string) (map[string]broker.SecurityProtocol, error) {
	m := map[string]broker.SecurityProtocol{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, proto, ok := strings.Cut(item, ":")
		p, known := broker.ParseSecurityProtocol(strings.ToUpper(strings.TrimSpace(proto)))
		if !ok || name == "" {
			return nil, fmt.Errorf("want NAME:PROTOCOL items, got %q", item)
		}
		if !known {
			return nil, fmt.Errorf("listener %s: unknown security protocol %q (want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)", name, proto)
		}
		name = strings.ToUpper(strings.TrimSpace(name))
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("listener %s mapped twice", name)
		}
		m[name] = p
	}
	return m, nil
}

// listenerSpecs returns the Kafka listeners the configuration asks for: the
// --listeners entries, or without them one PLAINTEXT listener at
// --kafka-addr (advertised as --advertised-kafka-addr).
func (c Config) listenerSpecs() ([]listenerSpec, error) {
	if c.Listeners == "" {
		if c.AdvertisedListeners != "" {
			return nil, fmt.Errorf("flag --advertised-listeners: needs --listeners")
		}
		return []listenerSpec{{name: "PLAINTEXT", addr: c.KafkaAddr, protocol: broker.ProtocolPlaintext, advertised: c.AdvertisedKafkaAddr}}, nil
	}
	pm, err := parseProtocolMap(c.ListenerProtocolMap)
	if err != nil {
		return nil, fmt.Errorf("flag --listener-security-protocol-map: %v", err)
	}
	names, addrs, err := parseListenerList(c.Listeners)
	if err != nil {
		return nil, fmt.Errorf("flag --listeners: %v", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("flag --listeners: no listener")
	}
	advNames, adv, err := parseListenerList(c.AdvertisedListeners)
	if err != nil {
		return nil, fmt.Errorf("flag --advertised-listeners: %v", err)
	}
	for _, n := range advNames {
		if _, ok := addrs[n]; !ok {
			return nil, fmt.Errorf("flag --advertised-listeners: %s is not in --listeners", n)
		}
		if err := checkHostPort(adv[n], false); err != nil {
			return nil, fmt.Errorf("flag --advertised-listeners: %s: %v", n, err)
		}
		if host, _, _ := net.SplitHostPort(adv[n]); host == "" {
			return nil, fmt.Errorf("flag --advertised-listeners: %s needs a host that clients can reach", n)
		}
	}
	var out []listenerSpec
	seenAddr := map[string]string{}
	for _, n := range names {
		p, ok := pm[n]
		if !ok {
			return nil, fmt.Errorf("flag --listeners: listener %s has no security protocol in --listener-security-protocol-map", n)
		}
		if err := checkHostPort(addrs[n], true); err != nil {
			return nil, fmt.Errorf("flag --listeners: %s: %v", n, err)
		}
		if other, dup := seenAddr[addrs[n]]; dup && !strings.HasSuffix(addrs[n], ":0") {
			return nil, fmt.Errorf("flag --listeners: %s and %s bind the same address %s", other, n, addrs[n])
		}
		seenAddr[addrs[n]] = n
		if p.TLS() && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
			return nil, fmt.Errorf("flag --listeners: %s is %s and needs --tls-cert-file and --tls-key-file", n, p)
		}
		out = append(out, listenerSpec{name: n, addr: addrs[n], protocol: p, advertised: adv[n]})
	}
	return out, nil
}

// allowEveryone is --allow-everyone-if-no-acl-found, or by default whether
// no listener authenticates its clients: a local node without security stays
// open, one with SASL or client certificates refuses what no ACL allows.
func (c Config) allowEveryone() bool {
	if c.AllowEveryoneIfNoACLFound != nil {
		return *c.AllowEveryoneIfNoACLFound
	}
	specs, _ := c.listenerSpecs()
	for _, s := range specs {
		if s.protocol.SASL() || (s.protocol == broker.ProtocolSSL && tlsfiles.ClientAuth(c.TLSClientAuth) != tlsfiles.ClientAuthNone) {
			return false
		}
	}
	return true
}

// superUsers is --super-users parsed (Validate has checked it), plus the
// --sasl-bootstrap-user: the first administrator must be able to grant the
// ACLs everyone else needs.
func superUsers(c Config) []string {
	u, _ := broker.ParseSuperUsers(c.SuperUsers)
	if c.SASLBootstrapUser != "" {
		u = append(u, "User:"+c.SASLBootstrapUser)
	}
	return u
}

// validateSecurity checks the security flags (part of Config.Validate).
func (c Config) validateSecurity() error {
	if _, err := parseProtocolMap(c.ListenerProtocolMap); err != nil {
		return fmt.Errorf("flag --listener-security-protocol-map: %v", err)
	}
	if _, err := c.listenerSpecs(); err != nil {
		return err
	}
	if c.TLSCAFile != "" && c.TLSCertFile == "" {
		return fmt.Errorf("flag --tls-ca-file: needs --tls-cert-file and --tls-key-file")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("flag --tls-cert-file: --tls-cert-file and --tls-key-file go together")
	}
	switch tlsfiles.ClientAuth(c.TLSClientAuth) {
	case tlsfiles.ClientAuthNone:
	case tlsfiles.ClientAuthRequested, tlsfiles.ClientAuthRequired:
		if c.TLSCAFile == "" {
			return fmt.Errorf("flag --tls-client-auth: %s needs --tls-ca-file", c.TLSClientAuth)
		}
	default:
		return fmt.Errorf("flag --tls-client-auth: must be none, requested or required, got %q", c.TLSClientAuth)
	}
	if c.HTTPTLS && c.TLSCertFile == "" {
		return fmt.Errorf("flag --http-tls: needs --tls-cert-file and --tls-key-file")
	}
	if err := c.validateClusterTLS(); err != nil {
		return err
	}
	if err := c.validateHTTPAuth(); err != nil {
		return err
	}
	if c.SASLHandshakeTimeout < broker.MinAuthenticationTimeout || c.SASLHandshakeTimeout > broker.MaxAuthenticationTimeout {
		return fmt.Errorf("flag --sasl-handshake-timeout: must be between %s and %s, got %s", broker.MinAuthenticationTimeout, broker.MaxAuthenticationTimeout, c.SASLHandshakeTimeout)
	}
	if _, err := broker.ParseSuperUsers(c.SuperUsers); err != nil {
		return fmt.Errorf("flag --super-users: %v", err)
	}
	if c.SASLSessionLifetime != 0 && c.SASLSessionLifetime < broker.MinSASLSessionLifetime {
		return fmt.Errorf("flag --sasl-session-lifetime: must be 0 (off) or at least %s, got %s", broker.MinSASLSessionLifetime, c.SASLSessionLifetime)
	}
	if c.SASLBootstrapUser != "" {
		if len(c.SASLBootstrapUser) > raftfsm.MaxScramUserBytes {
			return fmt.Errorf("flag --sasl-bootstrap-user: at most %d bytes", raftfsm.MaxScramUserBytes)
		}
	}
	return nil
}

// validateClusterTLS checks that the node-to-node TLS files come as a set.
func (c Config) validateClusterTLS() error {
	files := []struct{ flag, value string }{
		{"cluster-tls-cert-file", c.ClusterTLSCertFile},
		{"cluster-tls-key-file", c.ClusterTLSKeyFile},
		{"cluster-tls-ca-file", c.ClusterTLSCAFile},
	}
	set := 0
	first := ""
	for _, f := range files {
		if f.value != "" {
			set++
			if first == "" {
				first = f.flag
			}
		}
	}
	if set != 0 && set != len(files) {
		return fmt.Errorf("flag --%s: TLS on the node-to-node port needs all of --cluster-tls-cert-file, --cluster-tls-key-file and --cluster-tls-ca-file", first)
	}
	if c.ClusterTLSPermissive && set == 0 {
		return fmt.Errorf("flag --cluster-tls-permissive: needs --cluster-tls-cert-file, --cluster-tls-key-file and --cluster-tls-ca-file")
	}
	return nil
}

// loadClusterTLS loads the node-to-node port's PEM files, client
// certificates required, or returns nil when none are configured.
func (s *server) loadClusterTLS() (*tlsfiles.Config, error) {
	if s.cfg.ClusterTLSCertFile == "" {
		return nil, nil
	}
	return s.loadTLSFiles("cluster-tls", tlsfiles.Files{
		CertFile:   s.cfg.ClusterTLSCertFile,
		KeyFile:    s.cfg.ClusterTLSKeyFile,
		CAFile:     s.cfg.ClusterTLSCAFile,
		ClientAuth: tlsfiles.ClientAuthRequired,
	})
}

// loadTLS loads the PEM files, or returns nil when none are configured.
func (s *server) loadTLS() (*tlsfiles.Config, error) {
	if s.cfg.TLSCertFile == "" {
		return nil, nil
	}
	return s.loadTLSFiles("tls", tlsfiles.Files{
		CertFile:   s.cfg.TLSCertFile,
		KeyFile:    s.cfg.TLSKeyFile,
		CAFile:     s.cfg.TLSCAFile,
		ClientAuth: tlsfiles.ClientAuth(s.cfg.TLSClientAuth),
	})
}

// loadTLSFiles loads the files of the --<flags>-* flags, logging a failed
// reload later. Files that do not load at start are a configuration error
// (exit 2), as for the tokens file.
func (s *server) loadTLSFiles(flags string, f tlsfiles.Files) (*tlsfiles.Config, error) {
	log := s.log
	f.OnError = func(err error) {
		log.Warn(flags+" files did not reload, keeping the last good ones", logError, err)
	}
	cfg, err := tlsfiles.Load(f)
	if err != nil {
		return nil, fmt.Errorf("%w: --%s-* files: %w", errUsage, flags, err)
	}
	return cfg, nil
}

// kafkaListener is a bound Kafka listener.
type kafkaListener struct {
	spec listenerSpec
	ln   net.Listener
	l    broker.Listener
}

// listenersValue is NodeInfo.Listeners for the bound listeners: "" when
// there is only the default PLAINTEXT one.
func listenersValue(cfg Config, ls []*kafkaListener) string {
	if cfg.Listeners == "" {
		return ""
	}
	parts := make([]string, 0, len(ls))
	for _, kl := range ls {
		parts = append(parts, kl.spec.name+"://"+kl.l.AdvertisedAddr)
	}
	return strings.Join(parts, ",")
}

// bootstrapUser stores the bootstrap user's SCRAM-SHA-256 and -512
// credentials when the user has none yet (the first start of a cluster).
func (s *server) bootstrapUser(ctx context.Context) error {
	user := s.cfg.SASLBootstrapUser
	if user == "" {
		return nil
	}
	for _, m := range scram.Mechanisms {
		if _, ok := s.node.ScramCredential(user, m); ok {
			return nil
		}
	}
	mechs := append([]scram.Mechanism(nil), scram.Mechanisms...)
	sort.Slice(mechs, func(i, j int) bool { return mechs[i] < mechs[j] })
	for _, m := range mechs {
		cred, err := scram.NewCredential(m, os.Getenv(bootstrapPasswordEnv), scram.MinIterations)
		if err != nil {
			return err
		}
		if err := s.node.UpsertScramCredential(ctx, raftfsm.ScramCredential{User: user, Credential: cred}); err != nil {
			return fmt.Errorf("bootstrap sasl user: %w", err)
		}
	}
	s.log.Info("bootstrap sasl user created", "user", user)
	return nil
}
