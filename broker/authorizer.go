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
	"slices"
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

// aclIndex is an ACLSet indexed by resource: literal bindings by type and
// name, prefixed ones by type and prefix, with the prefix lengths in use per
// type, so a lookup tries only the prefixes of the name that some binding
// could have.
type aclIndex struct {
	src        *raftfsm.ACLSet
	literal    map[aclResource][]aclEntry
	prefixed   map[aclResource][]aclEntry
	prefixLens map[kmsg.ACLResourceType][]int // ascending
}

func newACLIndex(s *raftfsm.ACLSet) *aclIndex {
	ix := &aclIndex{src: s, literal: map[aclResource][]aclEntry{}, prefixed: map[aclResource][]aclEntry{},
		prefixLens: map[kmsg.ACLResourceType][]int{}}
	for _, b := range s.Bindings() {
		e := aclEntry{principal: b.Principal, host: b.Host, op: b.Operation, deny: b.Permission == kmsg.ACLPermissionTypeDeny}
		k := aclResource{b.ResourceType, b.Name}
		if b.Pattern == kmsg.ACLResourcePatternTypeLiteral {
			ix.literal[k] = append(ix.literal[k], e)
			continue
		}
		if len(ix.prefixed[k]) == 0 {
			ls := ix.prefixLens[b.ResourceType]
			if i, found := slices.BinarySearch(ls, len(b.Name)); !found {
				ix.prefixLens[b.ResourceType] = slices.Insert(ls, i, len(b.Name))
			}
		}
		ix.prefixed[k] = append(ix.prefixed[k], e)
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
	for _, l := range ix.prefixLens[rt] {
		if l > len(name) {
			break
		}
		d.scan(ix.prefixed[aclResource{rt, name[:l]}])
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

// authorizeAny decides whether principal may do op on some resource of
// type rt (Kafka's authorizeByResourceType, which InitProducerId uses for
// idempotent producers): yes for super users and where a resource that no
// binding names is open (allowIfNoACL); otherwise some ALLOW binding of op
// (or ALL) must apply to the principal and host without a DENY covering it
// (a DENY on the literal "*", on the same literal name or on a prefix of
// the allowed name).
func (a *authorizer) authorizeAny(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType) bool {
	if a.superUsers[principal] {
		return true
	}
	s := a.acls()
	if s == nil || s.Len() == 0 {
		return a.allowIfNoACL
	}
	var allowLit, allowPre, denyPre []string
	denyLit := map[string]bool{}
	for _, b := range s.Bindings() {
		if b.ResourceType != rt || (b.Operation != op && b.Operation != kmsg.ACLOperationAll) ||
			(b.Principal != principal && b.Principal != acl.WildcardPrincipal) || (b.Host != host && b.Host != acl.Wildcard) {
			continue
		}
		lit := b.Pattern == kmsg.ACLResourcePatternTypeLiteral
		switch {
		case b.Permission == kmsg.ACLPermissionTypeDeny && lit && b.Name == acl.Wildcard:
			return false
		case b.Permission == kmsg.ACLPermissionTypeDeny && lit:
			denyLit[b.Name] = true
		case b.Permission == kmsg.ACLPermissionTypeDeny:
			denyPre = append(denyPre, b.Name)
		case lit:
			allowLit = append(allowLit, b.Name)
		default:
			allowPre = append(allowPre, b.Name)
		}
	}
	deniedByPrefix := func(name string) bool {
		return slices.ContainsFunc(denyPre, func(p string) bool { return strings.HasPrefix(name, p) })
	}
	for _, n := range allowLit {
		if !denyLit[n] && !deniedByPrefix(n) {
			return true
		}
	}
	for _, n := range allowPre {
		if !deniedByPrefix(n) {
			return true
		}
	}
	// A name no binding covers is open when allowIfNoACL (Kafka checks a
	// made-up resource name the same way).
	return a.authorize(principal, host, op, rt, "\x00no-such-resource")
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

// allowedIdempotentWrite is InitProducerId's check for a producer without
// a transactional id (Kafka 4, KIP-679): IDEMPOTENT_WRITE on the cluster, or
// WRITE on any topic.
func (b *Broker) allowedIdempotentWrite(rc *requestContext) bool {
	if b.permits(rc, kmsg.ACLOperationIdempotentWrite, kmsg.ACLResourceTypeCluster, acl.ClusterName) ||
		b.authz.authorizeAny(rc.principal, rc.host, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic) {
		return true
	}
	return b.allowedCluster(rc, kmsg.ACLOperationIdempotentWrite) // counted and logged
}

// The operations each resource type reports in AuthorizedOperations
// (Kafka's AclEntry.supportedOperations).
var (
	topicOperations = []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs}
	groupOperations   = []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete}
	clusterOperations = []kmsg.ACLOperation{kmsg.ACLOperationCreate, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs,
		kmsg.ACLOperationIdempotentWrite}
)

// authorizedOperations is the AuthorizedOperations bit field (KIP-430): bit
// op set for each of ops the principal may do on the resource.
func (b *Broker) authorizedOperations(rc *requestContext, rt kmsg.ACLResourceType, name string, ops []kmsg.ACLOperation) int32 {
	var bits int32
	for _, op := range ops {
		if b.permits(rc, op, rt, name) {
			bits |= 1 << op
		}
	}
	return bits
}

// hostOf is the IP of a "host:port" remote address, the host ACLs name.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
