package broker

// SaslHandshake: v0-1
//
// Behavior:
//   - Picks the SASL mechanism of the SaslAuthenticate exchange that follows
//     (KIP-152): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, and lists them.
//   - An unknown mechanism is UNSUPPORTED_SASL_MECHANISM; a listener without
//     SASL, or a handshake in the middle of an exchange, is
//     ILLEGAL_SASL_STATE. Either way the connection closes after the
//     answer, as Kafka's does.
//   - Re-authentication (KIP-368): an authenticated connection may send a new
//     handshake; it must name the mechanism it authenticated with.
//
// Version notes:
//   - v0 is advertised and answered because librdkafka will not use SASL
//     unless ApiVersions lists v0 (its SaslHandshake feature), but the raw
//     SASL tokens a v0 client then sends without Kafka framing are not
//     served: such a frame does not parse and closes the connection. Every
//     client that sends ApiVersions first uses v1 and SaslAuthenticate
//     (Kafka 4.0 removed the v0 flow, KIP-896).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/scram"
)

func init() { register(kmsg.SASLHandshake.Int16(), 0, 1, (*Broker).handleSASLHandshake) }

func (b *Broker) handleSASLHandshake(_ context.Context, rc *requestContext, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = SASLMechanisms
	s := &rc.conn.sess
	fail := func(code *kerr.Error) (kmsg.Response, error) {
		resp.ErrorCode = code.Code
		rc.closeAfter = true
		b.metrics.saslAuthentications.WithLabelValues(mechanismLabel(req.Mechanism), "failure").Inc()
		b.log.Warn("sasl handshake refused, closing connection", logKeyRemote, rc.conn.remote, logKeyListener, rc.listener.Name,
			logKeyMechanism, mechanismLabel(req.Mechanism), logKeyError, code.Message)
		return resp, nil
	}
	if !rc.listener.Protocol.SASL() || s.mechanism != "" {
		return fail(kerr.IllegalSaslState)
	}
	known := false
	for _, m := range SASLMechanisms {
		known = known || m == req.Mechanism
	}
	if !known {
		return fail(kerr.UnsupportedSaslMechanism)
	}
	if s.user != "" && req.Mechanism != s.authMechanism {
		return fail(kerr.IllegalSaslState)
	}
	s.mechanism = req.Mechanism
	if m, ok := scram.ParseMechanism(req.Mechanism); ok {
		node := b.node
		s.scram = scram.NewServer(m, func(user string) (scram.Credential, bool) { return node.ScramCredential(user, m) })
	}
	return resp, nil
}

// mechanismLabel bounds the mechanism label of the metric.
func mechanismLabel(m string) string {
	for _, known := range SASLMechanisms {
		if m == known {
			return m
		}
	}
	return "unknown"
}
