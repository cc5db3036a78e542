// Package scram is the server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC
// 5802, RFC 7677) as Kafka speaks them (KIP-84), and the credential
// derivation both the SASL exchange and PLAIN verification share.
//
// A credential is what a server keeps of a password: salt, iteration count,
// StoredKey and ServerKey. The password and the salted password are never
// kept; AlterUserScramCredentials sends the salted password and the broker
// derives the two keys from it (Derive).
//
// Like Kafka, passwords are used as their UTF-8 bytes without SASLprep, so a
// credential made by kafka-configs.sh verifies here and the other way round.
package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Mechanism is a SCRAM mechanism, numbered as Kafka's
// AlterUserScramCredentials and DescribeUserScramCredentials number them.
type Mechanism int8

// Mechanisms.
const (
	SHA256 Mechanism = 1
	SHA512 Mechanism = 2
)

// Iteration bounds: Kafka refuses fewer than 4096 (RFC 7677 recommends at
// least that) and more than 16384.
const (
	MinIterations = 4096
	MaxIterations = 16384
)

// MaxSaltBytes bounds a stored salt; clients use 16 to 64 random bytes.
const MaxSaltBytes = 1024

// Mechanisms lists the supported mechanisms, strongest first.
var Mechanisms = []Mechanism{SHA512, SHA256}

// ParseMechanism returns the mechanism of a SASL name such as "SCRAM-SHA-256".
func ParseMechanism(name string) (Mechanism, bool) {
	switch name {
	case "SCRAM-SHA-256":
		return SHA256, true
	case "SCRAM-SHA-512":
		return SHA512, true
	}
	return 0, false
}

// Valid reports whether m is a supported mechanism.
func (m Mechanism) Valid() bool { return m == SHA256 || m == SHA512 }

// String is the SASL mechanism name.
func (m Mechanism) String() string {
	switch m {
	case SHA256:
		return "SCRAM-SHA-256"
	case SHA512:
		return "SCRAM-SHA-512"
	}
	return "SCRAM-unknown(" + strconv.Itoa(int(m)) + ")"
}

func (m Mechanism) hash() func() hash.Hash {
	if m == SHA512 {
		return sha512.New
	}
	return sha256.New
}

// KeyLen is the length of the mechanism's keys and salted password.
func (m Mechanism) KeyLen() int {
	if m == SHA512 {
		return sha512.Size
	}
	return sha256.Size
}

// Credential is what the server stores of one user's password for one
// mechanism.
type Credential struct {
	Mechanism  Mechanism
	Iterations int32
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// Errors of credential checks. Every error of a conversation wraps
// ErrAuthentication.
var (
	ErrBadCredential  = errors.New("scram: unacceptable credential")
	ErrAuthentication = errors.New("scram: authentication failed")
)

// Check validates a credential's fields (bounds, key lengths).
func (c Credential) Check() error {
	switch {
	case !c.Mechanism.Valid():
		return fmt.Errorf("%w: unknown mechanism %d", ErrBadCredential, c.Mechanism)
	case c.Iterations < MinIterations || c.Iterations > MaxIterations:
		return fmt.Errorf("%w: %d iterations is not between %d and %d", ErrBadCredential, c.Iterations, MinIterations, MaxIterations)
	case len(c.Salt) == 0 || len(c.Salt) > MaxSaltBytes:
		return fmt.Errorf("%w: salt of %d bytes is not between 1 and %d", ErrBadCredential, len(c.Salt), MaxSaltBytes)
	case len(c.StoredKey) != c.Mechanism.KeyLen() || len(c.ServerKey) != c.Mechanism.KeyLen():
		return fmt.Errorf("%w: keys are not %d bytes", ErrBadCredential, c.Mechanism.KeyLen())
	}
	return nil
}

// SaltedPassword is Hi(password, salt, iterations) of RFC 5802: PBKDF2 with
// the mechanism's HMAC.
func SaltedPassword(m Mechanism, password string, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(m.hash(), password, salt, iterations, m.KeyLen())
}

// Derive builds a credential from a salted password (what
// AlterUserScramCredentials carries).
func Derive(m Mechanism, salt, saltedPassword []byte, iterations int32) (Credential, error) {
	if !m.Valid() {
		return Credential{}, fmt.Errorf("%w: unknown mechanism %d", ErrBadCredential, m)
	}
	if len(saltedPassword) != m.KeyLen() {
		return Credential{}, fmt.Errorf("%w: salted password of %d bytes, want %d", ErrBadCredential, len(saltedPassword), m.KeyLen())
	}
	clientKey := mac(m, saltedPassword, []byte("Client Key"))
	h := m.hash()()
	h.Write(clientKey)
	c := Credential{
		Mechanism:  m,
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  h.Sum(nil),
		ServerKey:  mac(m, saltedPassword, []byte("Server Key")),
	}
	return c, c.Check()
}

// NewCredential makes a credential for password with a fresh random salt
// (bootstrap users, tests).
func NewCredential(m Mechanism, password string, iterations int32) (Credential, error) {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return Credential{}, err
	}
	sp, err := SaltedPassword(m, password, salt, int(iterations))
	if err != nil {
		return Credential{}, err
	}
	return Derive(m, salt, sp, iterations)
}

// VerifyPassword reports whether password matches c (PLAIN over SCRAM
// credentials). It costs one PBKDF2 of c.Iterations rounds.
func VerifyPassword(c Credential, password string) bool {
	if c.Check() != nil {
		return false
	}
	sp, err := SaltedPassword(c.Mechanism, password, c.Salt, int(c.Iterations))
	if err != nil {
		return false
	}
	d, err := Derive(c.Mechanism, c.Salt, sp, c.Iterations)
	return err == nil && subtle.ConstantTimeCompare(d.StoredKey, c.StoredKey) == 1
}

func mac(m Mechanism, key, msg []byte) []byte {
	h := hmac.New(m.hash(), key)
	h.Write(msg)
	return h.Sum(nil)
}

// ClientFirst is a parsed client-first-message.
type ClientFirst struct {
	// GS2Header is the "n,," or "n,a=...," prefix, echoed base64 in the
	// client-final message's channel binding.
	GS2Header string
	// AuthzID is the authorization identity ("" when absent).
	AuthzID string
	// User is the unescaped user name.
	User string
	// Nonce is the client nonce.
	Nonce string
	// Bare is client-first-message-bare, part of the AuthMessage.
	Bare string
	// TokenAuth is set by Kafka's delegation-token extension
	// ("tokenauth=true"), which this server does not support.
	TokenAuth bool
}

// maxMessageBytes bounds a SCRAM message; real ones are under 300 bytes.
const maxMessageBytes = 4096

// ParseClientFirst parses a client-first-message (RFC 5802 section 7).
// Channel binding is not supported: the gs2 flag must be "n" or "y".
func ParseClientFirst(msg []byte) (ClientFirst, error) {
	var cf ClientFirst
	if len(msg) > maxMessageBytes {
		return cf, fmt.Errorf("%w: client-first-message of %d bytes", ErrAuthentication, len(msg))
	}
	s := string(msg)
	flag, rest, ok := strings.Cut(s, ",")
	if !ok || (flag != "n" && flag != "y") {
		return cf, fmt.Errorf("%w: client-first-message: channel binding flag must be n or y", ErrAuthentication)
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return cf, fmt.Errorf("%w: client-first-message: no gs2 header", ErrAuthentication)
	}
	if authz != "" {
		v, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return cf, fmt.Errorf("%w: client-first-message: bad authzid", ErrAuthentication)
		}
		name, err := unescape(v)
		if err != nil {
			return cf, err
		}
		cf.AuthzID = name
	}
	cf.GS2Header = s[:len(s)-len(bare)]
	cf.Bare = bare
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 {
		return cf, fmt.Errorf("%w: client-first-message: want n= and r=", ErrAuthentication)
	}
	if strings.HasPrefix(attrs[0], "m=") {
		return cf, fmt.Errorf("%w: client-first-message: mandatory extension not supported", ErrAuthentication)
	}
	u, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return cf, fmt.Errorf("%w: client-first-message: want n= first", ErrAuthentication)
	}
	name, err := unescape(u)
	if err != nil {
		return cf, err
	}
	if name == "" {
		return cf, fmt.Errorf("%w: client-first-message: empty user name", ErrAuthentication)
	}
	cf.User = name
	r, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || r == "" || !printable(r) {
		return cf, fmt.Errorf("%w: client-first-message: want a printable nonce r= second", ErrAuthentication)
	}
	cf.Nonce = r
	for _, ext := range attrs[2:] {
		k, v, _ := strings.Cut(ext, "=")
		if k == "tokenauth" && strings.EqualFold(v, "true") {
			cf.TokenAuth = true
		}
	}
	return cf, nil
}

// ClientFinal is a parsed client-final-message.
type ClientFinal struct {
	// ChannelBinding is the decoded c= attribute.
	ChannelBinding []byte
	// Nonce is the combined nonce.
	Nonce string
	// WithoutProof is client-final-message-without-proof, part of the AuthMessage.
	WithoutProof string
	// Proof is the decoded p= attribute.
	Proof []byte
}

// ParseClientFinal parses a client-final-message (RFC 5802 section 7).
func ParseClientFinal(msg []byte) (ClientFinal, error) {
	var cf ClientFinal
	if len(msg) > maxMessageBytes {
		return cf, fmt.Errorf("%w: client-final-message of %d bytes", ErrAuthentication, len(msg))
	}
	s := string(msg)
	i := strings.LastIndex(s, ",p=")
	if i < 0 {
		return cf, fmt.Errorf("%w: client-final-message: no proof", ErrAuthentication)
	}
	cf.WithoutProof = s[:i]
	proof, err := base64.StdEncoding.DecodeString(s[i+3:])
	if err != nil || len(proof) == 0 {
		return cf, fmt.Errorf("%w: client-final-message: proof is not base64", ErrAuthentication)
	}
	cf.Proof = proof
	attrs := strings.Split(cf.WithoutProof, ",")
	if len(attrs) < 2 {
		return cf, fmt.Errorf("%w: client-final-message: want c= and r=", ErrAuthentication)
	}
	c, ok := strings.CutPrefix(attrs[0], "c=")
	if !ok {
		return cf, fmt.Errorf("%w: client-final-message: want c= first", ErrAuthentication)
	}
	if cf.ChannelBinding, err = base64.StdEncoding.DecodeString(c); err != nil {
		return cf, fmt.Errorf("%w: client-final-message: channel binding is not base64", ErrAuthentication)
	}
	r, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || r == "" {
		return cf, fmt.Errorf("%w: client-final-message: want r= second", ErrAuthentication)
	}
	cf.Nonce = r
	return cf, nil
}

// unescape decodes a saslname: "=2C" is ",", "=3D" is "=", any other "=" is
// an error.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: bad escape in name", ErrAuthentication)
		}
		i += 2
	}
	return b.String(), nil
}

// printable reports whether s is printable ASCII without a comma (RFC 5802
// "printable").
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// Lookup returns the credential of user for the conversation's mechanism.
type Lookup func(user string) (Credential, bool)

// Server is one server-side SCRAM conversation: Step takes the client's
// messages in turn and returns the server's. It is not safe for concurrent
// use.
type Server struct {
	mech   Mechanism
	lookup Lookup

	step        int
	first       ClientFirst
	cred        Credential
	known       bool
	nonce       string
	serverFirst string
	user        string
}

// NewServer starts a conversation for mechanism m.
func NewServer(m Mechanism, lookup Lookup) *Server {
	return &Server{mech: m, lookup: lookup}
}

// User is the authenticated user once Done.
func (s *Server) User() string { return s.user }

// Claimed is the user name the client-first-message claimed ("" before
// it), for logs of a failed exchange.
func (s *Server) Claimed() string { return s.first.User }

// Done reports whether the conversation has authenticated the client.
func (s *Server) Done() bool { return s.user != "" }

// Step takes the next client message and returns the server's answer. An
// error (wrapping ErrAuthentication) ends the conversation; its text names
// no secret and is safe to send to the client.
func (s *Server) Step(msg []byte) ([]byte, error) {
	switch s.step {
	case 0:
		s.step++
		return s.clientFirst(msg)
	case 1:
		s.step++
		return s.final(msg)
	}
	return nil, fmt.Errorf("%w: conversation already finished", ErrAuthentication)
}

func (s *Server) clientFirst(msg []byte) ([]byte, error) {
	cf, err := ParseClientFirst(msg)
	if err != nil {
		return nil, err
	}
	if cf.TokenAuth {
		return nil, fmt.Errorf("%w: delegation tokens are not supported", ErrAuthentication)
	}
	if cf.AuthzID != "" && cf.AuthzID != cf.User {
		return nil, fmt.Errorf("%w: authorization id differs from the user name", ErrAuthentication)
	}
	s.first = cf
	s.cred, s.known = s.lookup(cf.User)
	if !s.known || s.cred.Mechanism != s.mech || s.cred.Check() != nil {
		// Answer as for a known user (with a salt that depends only on
		// the name) so that a client cannot tell users apart; the final
		// step fails. RFC 5802 section 9 suggests this.
		s.known = false
		h := hmac.New(sha256.New, []byte("shardcache-unknown-user"))
		h.Write([]byte(cf.User))
		s.cred = Credential{Mechanism: s.mech, Iterations: MinIterations, Salt: h.Sum(nil)}
	}
	nb := make([]byte, 24)
	if _, err := rand.Read(nb); err != nil {
		return nil, fmt.Errorf("%w: no randomness: %v", ErrAuthentication, err)
	}
	s.nonce = cf.Nonce + base64.RawURLEncoding.EncodeToString(nb)
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.cred.Salt) + ",i=" + strconv.Itoa(int(s.cred.Iterations))
	return []byte(s.serverFirst), nil
}

func (s *Server) final(msg []byte) ([]byte, error) {
	cf, err := ParseClientFinal(msg)
	if err != nil {
		return nil, err
	}
	// Kafka's server accepts a final nonce that ends with the one it sent,
	// not only an equal one, and librdkafka 2.0 (kcat 1.7.1 among others)
	// depends on it: it sends its client nonce twice. The server nonce,
	// fresh and random, must still be there, and the proof covers the
	// message as sent.
	if !strings.HasSuffix(cf.Nonce, s.nonce) {
		return nil, fmt.Errorf("%w: nonce mismatch", ErrAuthentication)
	}
	if string(cf.ChannelBinding) != s.first.GS2Header {
		return nil, fmt.Errorf("%w: channel binding mismatch", ErrAuthentication)
	}
	if !s.known || len(cf.Proof) != s.mech.KeyLen() {
		return nil, fmt.Errorf("%w: invalid credentials", ErrAuthentication)
	}
	authMsg := []byte(s.first.Bare + "," + s.serverFirst + "," + cf.WithoutProof)
	sig := mac(s.mech, s.cred.StoredKey, authMsg)
	clientKey := make([]byte, len(sig))
	for i := range sig {
		clientKey[i] = cf.Proof[i] ^ sig[i]
	}
	h := s.mech.hash()()
	h.Write(clientKey)
	if subtle.ConstantTimeCompare(h.Sum(nil), s.cred.StoredKey) != 1 {
		return nil, fmt.Errorf("%w: invalid credentials", ErrAuthentication)
	}
	s.user = s.first.User
	return []byte("v=" + base64.StdEncoding.EncodeToString(mac(s.mech, s.cred.ServerKey, authMsg))), nil
}
