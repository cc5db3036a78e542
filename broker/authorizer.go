package broker

// Authorization: Kafka's StandardAuthorizer rules over the ACL bindings the
// metadata group replicates (raftfsm/acls.go, internal/acl).
//
// A request's principal (security.go) may do operation O on resource R when:
//   - it is a super user (Config.SuperUsers); otherwise
//   - no binding applies to R (no LITERAL binding of R's name or of "*", no
//     PREFIXED binding whose prefix starts R's name, whoever they name): the
//     answer is Config.AllowEveryoneIfNoACLFound; otherwise
//   - a binding that applies to R, to the principal (or "User:*") and to the
//     client's host (or "*") DENYs O or ALL: refused (DENY beats ALLOW);
//   - one ALLOWs O or ALL, or an operation that implies O: READ, WRITE,
//     DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies
//     DESCRIBE_CONFIGS: allowed;
//   - anything else is refused.
//
// Every handler asks through Broker.allowed (one call per resource, in the
// handler file, where Kafka checks); Broker.Authorize is the same decision
// for callers outside the Kafka protocol (the HTTP API).
//
// Cost: the bindings are indexed by resource once per ACL change (the
// metadata's ACLSet is immutable, so its pointer says whether the index is
// current). With no bindings at all a decision is a pointer load and a
// compare; with bindings it is two map lookups and a scan of the prefixed
// bindings of the resource type (BenchmarkAuthorize).

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/raftfsm"
)

// ParseSuperUsers parses Kafka's super.users format, "User:a;User:b", into
// principals. Every entry needs a type and a name ("User:alice").
func ParseSuperUsers(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ";") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, fmt.Errorf("super user %q is not TYPE:NAME, for example User:admin", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// aclEntry is one binding's who, where and what, under its resource.
type aclEntry struct {
	principal string
	host      string
	op        kmsg.ACLOperation
	deny      bool
}

type aclResource struct {
	typ  kmsg.ACLResourceType
	name string
}

type aclPrefix struct {
	prefix  string
	entries []aclEntry
}

// aclIndex is an ACLSet indexed by resource.
type aclIndex struct {
	src      *raftfsm.ACLSet
	literal  map[aclResource][]aclEntry
	prefixed map[kmsg.ACLResourceType][]aclPrefix
}

func newACLIndex(s *raftfsm.ACLSet) *aclIndex {
	ix := &aclIndex{src: s, literal: map[aclResource][]aclEntry{}, prefixed: map[kmsg.ACLResourceType][]aclPrefix{}}
	for _, b := range s.Bindings() {
		e := aclEntry{principal: b.Principal, host: b.Host, op: b.Operation, deny: b.Permission == kmsg.ACLPermissionTypeDeny}
		if b.Pattern == kmsg.ACLResourcePatternTypeLiteral {
			k := aclResource{b.ResourceType, b.Name}
			ix.literal[k] = append(ix.literal[k], e)
			continue
		}
		ps := ix.prefixed[b.ResourceType]
		// Bindings are sorted by name within a type, so one prefix's
		// bindings are adjacent.
		if n := len(ps); n > 0 && ps[n-1].prefix == b.Name {
			ps[n-1].entries = append(ps[n-1].entries, e)
		} else {
			ps = append(ps, aclPrefix{prefix: b.Name, entries: []aclEntry{e}})
		}
		ix.prefixed[b.ResourceType] = ps
	}
	return ix
}

// authorizer decides requests; safe for concurrent use.
type authorizer struct {
	superUsers   map[string]bool
	allowIfNoACL bool
	acls         func() *raftfsm.ACLSet

	mu  sync.Mutex // serializes index rebuilds
	idx atomic.Pointer[aclIndex]
}

func newAuthorizer(superUsers []string, allowIfNoACL bool, acls func() *raftfsm.ACLSet) *authorizer {
	a := &authorizer{superUsers: map[string]bool{}, allowIfNoACL: allowIfNoACL, acls: acls}
	for _, p := range superUsers {
		a.superUsers[p] = true
	}
	return a
}

// index returns the index of s, building it if the ACLs changed.
func (a *authorizer) index(s *raftfsm.ACLSet) *aclIndex {
	if ix := a.idx.Load(); ix != nil && ix.src == s {
		return ix
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if ix := a.idx.Load(); ix != nil && ix.src == s {
		return ix
	}
	ix := newACLIndex(s)
	a.idx.Store(ix)
	return ix
}

// authorize decides whether principal, connected from host, may do op on
// the resource of type rt named name.
func (a *authorizer) authorize(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if a.superUsers[principal] {
		return true
	}
	s := a.acls()
	if s == nil || s.Len() == 0 {
		return a.allowIfNoACL
	}
	ix := a.index(s)
	d := decision{principal: principal, host: host, op: op}
	d.scan(ix.literal[aclResource{rt, name}])
	d.scan(ix.literal[aclResource{rt, acl.Wildcard}])
	for _, p := range ix.prefixed[rt] {
		if strings.HasPrefix(name, p.prefix) {
			d.scan(p.entries)
		}
	}
	if !d.found {
		return a.allowIfNoACL
	}
	return d.allowed && !d.denied
}

// decision collects what the bindings of one resource say about a request.
type decision struct {
	principal, host string
	op              kmsg.ACLOperation
	// found: some binding applies to the resource (whoever it names).
	found, allowed, denied bool
}

func (d *decision) scan(es []aclEntry) {
	if len(es) > 0 {
		d.found = true
	}
	for i := range es {
		e := &es[i]
		if (e.principal != d.principal && e.principal != acl.WildcardPrincipal) || (e.host != d.host && e.host != acl.Wildcard) {
			continue
		}
		if e.deny {
			d.denied = d.denied || e.op == d.op || e.op == kmsg.ACLOperationAll
		} else {
			d.allowed = d.allowed || implies(e.op, d.op)
		}
	}
}

// implies reports whether an ALLOW of granted allows op.
func implies(granted, op kmsg.ACLOperation) bool {
	switch {
	case granted == op, granted == kmsg.ACLOperationAll:
		return true
	case op == kmsg.ACLOperationDescribe:
		switch granted {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case op == kmsg.ACLOperationDescribeConfigs:
		return granted == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// Authorize reports whether principal ("User:alice"), connected from host
// (an IP address), may do op on the resource of type res named name
// (acl.ClusterName for the cluster), by the rules of this file. It is safe
// for concurrent use and cheap enough for every request.
func (b *Broker) Authorize(principal, host string, op kmsg.ACLOperation, res kmsg.ACLResourceType, name string) bool {
	return b.authz.authorize(principal, host, op, res, name)
}

// allowed is Authorize for the request's principal and client host. Every
// handler checks its resources through it (or allowedCluster).
func (b *Broker) allowed(rc *requestContext, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if b.authz.authorize(rc.principal, rc.host, op, rt, name) {
		return true
	}
	b.metrics.authorizationDenied.WithLabelValues(rt.String()).Inc()
	b.log.Debug("request denied", logKeyPrincipal, rc.principal, logKeyRemote, rc.host,
		logKeyAPIKey, rc.key, "operation", op.String(), "resource_type", rt.String(), "resource", name)
	return false
}

// permits is allowed without counting or logging a refusal, for filtering
// lists (Kafka does not log those either).
func (b *Broker) permits(rc *requestContext, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	return b.authz.authorize(rc.principal, rc.host, op, rt, name)
}

// allowedCluster checks op on the cluster resource.
func (b *Broker) allowedCluster(rc *requestContext, op kmsg.ACLOperation) bool {
	return b.allowed(rc, op, kmsg.ACLResourceTypeCluster, acl.ClusterName)
}

// allowedTopicCreate checks CREATE on the cluster or on the topic, as Kafka
// does for CreateTopics and auto-creation.
func (b *Broker) allowedTopicCreate(rc *requestContext, topic string) bool {
	if b.permits(rc, kmsg.ACLOperationCreate, kmsg.ACLResourceTypeCluster, acl.ClusterName) {
		return true
	}
	return b.allowed(rc, kmsg.ACLOperationCreate, kmsg.ACLResourceTypeTopic, topic)
}

// hostOf is the IP of a "host:port" remote address, the host ACLs name.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
