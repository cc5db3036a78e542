package broker

// SaslAuthenticate: v0-2
//
// Behavior:
//   - Carries the SASL exchange of the mechanism SaslHandshake chose
//     (KIP-152). SCRAM-SHA-256/512 take two round trips (RFC 5802) against
//     the credentials stored through Raft (raftfsm scram.go). PLAIN takes
//     one: it is checked against the user's SCRAM credential (SHA-512 if
//     there is one, else SHA-256) by salting the password it carries, so one
//     set of users, managed with AlterUserScramCredentials, serves every
//     mechanism and no password is ever stored.
//   - A failure is SASL_AUTHENTICATION_FAILED with a message that names no
//     secret; the connection closes after the answer. Failures are logged at
//     Warn with the user name and mechanism, and counted in
//     shardcache_sasl_authentications_total{mechanism,result}.
//   - Success sets the connection's principal to "User:<name>".
//   - Without a SaslHandshake first, or on a listener without SASL, the
//     answer is ILLEGAL_SASL_STATE and the connection closes.
//
// Version notes:
//   - v1+: SessionLifetimeMillis is Config.SASLSessionLifetime (KIP-368; 0
//     when re-authentication is off). A session that expires closes the
//     connection at its next request other than ApiVersions, SaslHandshake
//     and SaslAuthenticate; a v0 client cannot re-authenticate and is closed
//     the same way.
//   - Re-authentication must keep the principal (KIP-368).
//   - Delegation tokens (SCRAM's tokenauth extension) are refused.

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/scram"
)

func init() { register(kmsg.SASLAuthenticate.Int16(), 0, 2, (*Broker).handleSASLAuthenticate) }

// errPlainFailed is a PLAIN exchange that does not verify.
var errPlainFailed = errors.New("invalid user name or password")

func (b *Broker) handleSASLAuthenticate(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	c := rc.conn
	s := &c.sess
	if !rc.listener.Protocol.SASL() || s.mechanism == "" {
		msg := "SaslAuthenticate without a SaslHandshake first"
		resp.ErrorCode, resp.ErrorMessage = kerr.IllegalSaslState.Code, &msg
		rc.closeAfter = true
		return resp, nil
	}
	mech := s.mechanism
	var (
		user string
		out  []byte
		err  error
	)
	claimed := ""
	if s.scram != nil {
		out, err = s.scram.Step(req.SASLAuthBytes)
		claimed = s.scram.Claimed()
		if err == nil && !s.scram.Done() {
			resp.SASLAuthBytes = out
			return resp, nil
		}
		if err == nil {
			user = s.scram.User()
		}
	} else {
		user, err = b.checkPlain(req.SASLAuthBytes)
		if parts := bytes.Split(req.SASLAuthBytes, []byte{0}); len(parts) == 3 {
			claimed = string(parts[1])
		}
	}
	if err == nil && s.user != "" && user != s.user {
		err = errors.New("re-authentication as another user")
	}
	s.mechanism, s.scram = "", nil
	if err != nil {
		msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism " + mech
		resp.ErrorCode, resp.ErrorMessage = kerr.SaslAuthenticationFailed.Code, &msg
		rc.closeAfter = true
		b.metrics.saslAuthentications.WithLabelValues(mech, "failure").Inc()
		// The reason comes from the parsers and checks, which never quote
		// a password, a proof or a key.
		b.log.Warn("sasl authentication failed, closing connection", logKeyRemote, c.remote, logKeyListener, rc.listener.Name,
			logKeyMechanism, mech, logKeyUser, claimed, logKeyError, err)
		return resp, nil
	}
	resp.SASLAuthBytes = out
	reauth := s.user != ""
	s.user, s.authMechanism, s.principal = user, mech, principalPrefix+user
	if life := b.cfg.SASLSessionLifetime; life > 0 {
		s.expires = time.Now().Add(life)
		resp.SessionLifetimeMillis = life.Milliseconds()
	}
	c.sess.authenticated.Store(true)
	b.metrics.saslAuthentications.WithLabelValues(mech, "success").Inc()
	b.log.Debug("sasl authenticated", logKeyRemote, c.remote, logKeyListener, rc.listener.Name,
		logKeyMechanism, mech, logKeyUser, user, "reauthentication", reauth)
	return resp, nil
}

// checkPlain verifies a PLAIN message, "authzid NUL user NUL password"
// (RFC 4616), against the user's SCRAM credential.
func (b *Broker) checkPlain(msg []byte) (string, error) {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", errors.New("PLAIN message is not authzid NUL user NUL password")
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		return "", errors.New("PLAIN authorization id differs from the user name")
	}
	for _, m := range scram.Mechanisms {
		if cred, ok := b.node.ScramCredential(user, m); ok {
			if scram.VerifyPassword(cred, pass) {
				return user, nil
			}
			return "", errPlainFailed
		}
	}
	return "", errPlainFailed
}
