package httpapi

// Authentication and authorization of the HTTP API.
//
// Authentication is on when Config.Tokens or Config.ClientCerts is set; off,
// every endpoint answers anyone, as before. On:
//   - A request's principal comes from its "Authorization: Bearer <token>"
//     header (the tokens file, auth_tokens.go), else from the TLS client
//     certificate the connection verified ("User:" and the subject's common
//     name, as the Kafka listeners map certificates; tlsfiles.Principal). A
//     bearer token that is not in the file is refused even when a valid
//     certificate came with it.
//   - A request without a principal answers 401 with "WWW-Authenticate:
//     Bearer" and a JSON error; one whose principal Config.Authorizer denies
//     answers 403. Each route names what it needs (its access in the route table,
//     handler.go): lookups READ on the topic, the cluster view, the status
//     page and /v1/status DESCRIBE on the cluster ("kafka-cluster"), node
//     removal and the pprof profiles ALTER on the cluster.
//   - /metrics, /healthz and /readyz answer without credentials unless
//     Config.ProbesNeedAuth; then they need a principal (no ACL).
//   - GET /v1/cluster asks the other nodes' /v1/cluster/local with the
//     caller's own Authorization header, so each node checks the caller
//     itself; a caller known by its certificate only is not forwarded and
//     the other nodes answer 401 (shown as the node's error).
//   - Failures are counted in shardcache_http_auth_failures_total{reason} and
//     logged at debug level with the remote address, never the token.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/tlsfiles"
)

// ClusterResourceName is the name of the cluster resource in ACLs (Kafka's
// "kafka-cluster").
const ClusterResourceName = "kafka-cluster"

// Authorizer decides whether principal, connecting from host, may do op on the
// resource of type res named name. It must be safe for concurrent use.
type Authorizer interface {
	Authorize(principal, host string, op kmsg.ACLOperation, res kmsg.ACLResourceType, name string) bool
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(principal, host string, op kmsg.ACLOperation, res kmsg.ACLResourceType, name string) bool

// Authorize implements Authorizer.
func (f AuthorizerFunc) Authorize(principal, host string, op kmsg.ACLOperation, res kmsg.ACLResourceType, name string) bool {
	return f(principal, host, op, res, name)
}

// Error codes of authentication and authorization failures.
const (
	codeUnauthenticated = "unauthenticated"
	codeForbidden       = "forbidden"
)

// Reasons of shardcache_http_auth_failures_total.
const (
	authMissing   = "missing"   // no credentials
	authMalformed = "malformed" // an Authorization header that is not a bearer token
	authInvalid   = "invalid"   // a bearer token that is not in the file
	authDenied    = "denied"    // authenticated, then denied by the authorizer
)

// access is what a route needs when authentication is on.
type access struct {
	// open routes answer anyone.
	open bool
	// op and res, when op is not zero, are checked with the Authorizer; a
	// zero op needs a principal only.
	op  kmsg.ACLOperation
	res kmsg.ACLResourceType
	// topicParam names the path parameter that is the resource's name
	// (topic resources); cluster resources are ClusterResourceName.
	topicParam string
	// forward: the handler asks other nodes on the caller's behalf, with the
	// caller's bearer header (forwardAuth).
	forward bool
}

var (
	accessOpen          = access{open: true}
	accessPrincipal     = access{}
	accessTopicRead     = access{op: kmsg.ACLOperationRead, res: kmsg.ACLResourceTypeTopic, topicParam: "topic"}
	accessClusterRead   = access{op: kmsg.ACLOperationDescribe, res: kmsg.ACLResourceTypeCluster}
	accessClusterChange = access{op: kmsg.ACLOperationAlter, res: kmsg.ACLResourceTypeCluster}
	// GET /v1/cluster and node removal ask the other nodes' /v1/cluster/local.
	accessClusterView = access{op: kmsg.ACLOperationDescribe, res: kmsg.ACLResourceTypeCluster, forward: true}
	accessNodeRemoval = access{op: kmsg.ACLOperationAlter, res: kmsg.ACLResourceTypeCluster, forward: true}
)

// authOn reports whether requests are authenticated.
func (h *Handler) authOn() bool { return h.cfg.Tokens != nil || h.cfg.ClientCerts }

// guard wraps next with the checks a route needs.
func (h *Handler) guard(a access, next http.Handler) http.Handler {
	if !h.authOn() || a.open {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		principal, viaToken, reason := h.authenticate(r)
		if principal == "" {
			h.refuse(w, r, reason)
			return
		}
		if a.op != 0 {
			name := ClusterResourceName
			if a.topicParam != "" {
				name = r.PathValue(a.topicParam)
			}
			if !h.cfg.Authorizer.Authorize(principal, remoteHost(r), a.op, a.res, name) {
				h.metrics.authFailures.WithLabelValues(authDenied).Inc()
				h.log.Debug("http request denied", keyPrincipal, principal, keyRemote, r.RemoteAddr, keyURLPath, r.URL.Path)
				writeAPIError(w, errorf(http.StatusForbidden, codeForbidden, "%s may not %s %s %q", principal, a.op, strings.ToLower(a.res.String()), name))
				return
			}
		}
		// Only a bearer caller's credentials travel on to other nodes
		// (GET /v1/cluster); they were just checked here. A token that came
		// over TLS goes on over TLS only.
		if viaToken && a.forward && (r.TLS == nil || h.cfg.PeerTLS != nil) {
			r = r.WithContext(context.WithValue(r.Context(), forwardAuthKey{}, r.Header.Get("Authorization")))
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate returns the request's principal and whether a bearer token
// gave it, or "" and why there is none. Without a tokens file the
// Authorization header is ignored.
func (h *Handler) authenticate(r *http.Request) (principal string, viaToken bool, reason string) {
	if vals := r.Header.Values("Authorization"); len(vals) > 0 && h.cfg.Tokens != nil {
		if len(vals) > 1 {
			return "", false, authMalformed
		}
		scheme, token, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", false, authMalformed
		}
		token = strings.TrimLeft(token, " ")
		if token == "" || len(token) > MaxTokenBytes || strings.ContainsAny(token, " \t") {
			return "", false, authMalformed
		}
		p, ok := h.cfg.Tokens.Principal(token)
		if !ok {
			return "", false, authInvalid
		}
		return p, true, ""
	}
	if r.TLS != nil {
		if p := tlsfiles.Principal(*r.TLS); p != "" {
			return p, false, ""
		}
	}
	return "", false, authMissing
}

// refuse answers 401 (RFC 6750 section 3: error="invalid_token" when a token
// was presented and is not valid, invalid_request when the header is malformed).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, reason string) {
	h.metrics.authFailures.WithLabelValues(reason).Inc()
	h.log.Debug("http authentication failed", keyReason, reason, keyRemote, r.RemoteAddr, keyURLPath, r.URL.Path)
	challenge := `Bearer realm="shardcache"`
	msg := "authentication required: send \"Authorization: Bearer <token>\" or a client certificate"
	switch reason {
	case authInvalid:
		challenge += `, error="invalid_token"`
		msg = "the bearer token is not valid"
	case authMalformed:
		challenge += `, error="invalid_request"`
		msg = fmt.Sprintf("the Authorization header is not one \"Bearer <token>\" with a token of at most %d bytes", MaxTokenBytes)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeAPIError(w, errorf(http.StatusUnauthorized, codeUnauthenticated, "%s", msg))
}

// forwardAuthKey keys the caller's checked Authorization header in a
// request's context.
type forwardAuthKey struct{}

// forwardAuth is the Authorization header to send to other nodes on the
// caller's behalf, "" when there is none.
func forwardAuth(ctx context.Context) string {
	s, _ := ctx.Value(forwardAuthKey{}).(string)
	return s
}

// remoteHost is the client's IP address, as ACLs name hosts.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
