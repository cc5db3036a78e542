// Package acl is Kafka's access control list model as shardcache keeps it:
// bindings (a resource pattern and an access control entry), filters over
// them (DescribeAcls, DeleteAcls) and the validation CreateAcls applies.
// The enums are kmsg's, numbered as on the wire.
//
// The metadata group stores bindings (raftfsm/acls.go) and resolves delete
// filters with Filter.Matches when it applies the deletion, so every replica
// deletes the same bindings; the broker's authorizer (broker/authorizer.go)
// decides requests against them.
package acl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ClusterName is the only name of the CLUSTER resource.
const ClusterName = "kafka-cluster"

// Wildcard is the literal resource name that matches every name of its
// type, and the host that matches every host.
const Wildcard = "*"

// WildcardPrincipal matches every user principal.
const WildcardPrincipal = "User:*"

// MaxFieldBytes bounds a binding's resource name, principal and host.
const MaxFieldBytes = 4096

// ErrInvalid is wrapped by every validation error (Kafka's INVALID_REQUEST).
var ErrInvalid = errors.New("invalid acl")

// Binding is one ACL: who (Principal, from Host) may or may not
// (Permission) do Operation on the resources its pattern names.
// Bindings are comparable and used as map keys.
type Binding struct {
	ResourceType kmsg.ACLResourceType
	Name         string
	Pattern      kmsg.ACLResourcePatternType // LITERAL or PREFIXED
	Principal    string
	Host         string
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType // ALLOW or DENY
}

// Filter selects bindings. A nil Name, Principal or Host and the ANY enum
// values match everything; Pattern MATCH matches the bindings that apply to
// the resource Name (the literal name, the literal wildcard and the
// prefixes of Name).
type Filter struct {
	ResourceType kmsg.ACLResourceType        `json:"rt"`
	Name         *string                     `json:"n,omitempty"`
	Pattern      kmsg.ACLResourcePatternType `json:"pt"`
	Principal    *string                     `json:"p,omitempty"`
	Host         *string                     `json:"h,omitempty"`
	Operation    kmsg.ACLOperation           `json:"op"`
	Permission   kmsg.ACLPermissionType      `json:"perm"`
}

// invalidError is a validation error: Kafka's message, and errors.Is
// ErrInvalid.
type invalidError string

func (e invalidError) Error() string        { return string(e) }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return invalidError(fmt.Sprintf(format, args...))
}

// Validate checks a binding to be created, with the messages Kafka's
// CreateAcls answers.
func (b *Binding) Validate() error {
	switch b.ResourceType {
	case kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster,
		kmsg.ACLResourceTypeTransactionalId, kmsg.ACLResourceTypeDelegationToken, kmsg.ACLResourceTypeUser:
	default:
		return invalid("Invalid resourceType %s", b.ResourceType)
	}
	switch b.Pattern {
	case kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed:
	default:
		return invalid("Invalid patternType %s", b.Pattern)
	}
	if !concreteOperation(b.Operation) {
		return invalid("Invalid operation %s", b.Operation)
	}
	switch b.Permission {
	case kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny:
	default:
		return invalid("Invalid permissionType %s", b.Permission)
	}
	if b.Name == "" {
		return invalid("Resource name should not be empty")
	}
	if b.ResourceType == kmsg.ACLResourceTypeCluster && (b.Name != ClusterName || b.Pattern != kmsg.ACLResourcePatternTypeLiteral) {
		return invalid("The only valid name for the CLUSTER resource is %s", ClusterName)
	}
	if typ, name, ok := strings.Cut(b.Principal, ":"); !ok || typ == "" || name == "" {
		return invalid("Could not parse principal from `%s` (no colon is present separating the principal type from the principal name)", b.Principal)
	}
	if b.Host == "" {
		return invalid("Host should not be empty (use * for every host)")
	}
	for _, f := range []string{b.Name, b.Principal, b.Host} {
		if len(f) > MaxFieldBytes {
			return invalid("A resource name, principal or host is longer than %d bytes", MaxFieldBytes)
		}
	}
	return nil
}

func concreteOperation(op kmsg.ACLOperation) bool {
	return op >= kmsg.ACLOperationAll && op <= kmsg.ACLOperationDescribeTokens
}

// Validate checks a filter (DescribeAcls, DeleteAcls): every enum must be
// known; ANY is allowed everywhere, MATCH as the pattern type.
func (f *Filter) Validate() error {
	if f.ResourceType < kmsg.ACLResourceTypeAny || f.ResourceType > kmsg.ACLResourceTypeUser {
		return invalid("Invalid resourceType %s", f.ResourceType)
	}
	if f.Pattern < kmsg.ACLResourcePatternTypeAny || f.Pattern > kmsg.ACLResourcePatternTypePrefixed {
		return invalid("Invalid patternType %s", f.Pattern)
	}
	if f.Operation != kmsg.ACLOperationAny && !concreteOperation(f.Operation) {
		return invalid("Invalid operation %s", f.Operation)
	}
	switch f.Permission {
	case kmsg.ACLPermissionTypeAny, kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny:
	default:
		return invalid("Invalid permissionType %s", f.Permission)
	}
	return nil
}

// Matches reports whether the filter selects b (Kafka's AclBindingFilter).
func (f *Filter) Matches(b *Binding) bool {
	return f.matchesResource(b) &&
		(f.Principal == nil || *f.Principal == b.Principal) &&
		(f.Host == nil || *f.Host == b.Host) &&
		(f.Operation == kmsg.ACLOperationAny || f.Operation == b.Operation) &&
		(f.Permission == kmsg.ACLPermissionTypeAny || f.Permission == b.Permission)
}

func (f *Filter) matchesResource(b *Binding) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != b.ResourceType {
		return false
	}
	if f.Pattern != kmsg.ACLResourcePatternTypeAny && f.Pattern != kmsg.ACLResourcePatternTypeMatch && f.Pattern != b.Pattern {
		return false
	}
	if f.Name == nil {
		return true
	}
	if f.Pattern != kmsg.ACLResourcePatternTypeMatch {
		return *f.Name == b.Name
	}
	switch b.Pattern {
	case kmsg.ACLResourcePatternTypeLiteral:
		return *f.Name == b.Name || b.Name == Wildcard
	case kmsg.ACLResourcePatternTypePrefixed:
		return strings.HasPrefix(*f.Name, b.Name)
	}
	return false
}

// Less orders bindings by resource type, name, pattern, principal, host,
// operation and permission (DescribeAcls answers in this order).
func Less(a, b *Binding) bool {
	switch {
	case a.ResourceType != b.ResourceType:
		return a.ResourceType < b.ResourceType
	case a.Name != b.Name:
		return a.Name < b.Name
	case a.Pattern != b.Pattern:
		return a.Pattern < b.Pattern
	case a.Principal != b.Principal:
		return a.Principal < b.Principal
	case a.Host != b.Host:
		return a.Host < b.Host
	case a.Operation != b.Operation:
		return a.Operation < b.Operation
	}
	return a.Permission < b.Permission
}
