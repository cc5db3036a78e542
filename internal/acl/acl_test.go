package acl

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func ptr(s string) *string { return &s }

// TestFilterMatches pins Kafka's AclBindingFilter semantics.
func TestFilterMatches(t *testing.T) {
	lit := Binding{ResourceType: kmsg.ACLResourceTypeTopic, Name: "orders", Pattern: kmsg.ACLResourcePatternTypeLiteral,
		Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}
	wild := lit
	wild.Name = Wildcard
	pre := lit
	pre.Name, pre.Pattern = "ord", kmsg.ACLResourcePatternTypePrefixed
	anyOf := func(mod func(*Filter)) Filter {
		f := Filter{ResourceType: kmsg.ACLResourceTypeAny, Pattern: kmsg.ACLResourcePatternTypeAny,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
		mod(&f)
		return f
	}
	tests := []struct {
		name           string
		f              Filter
		lit, wild, pre bool
	}{
		{"everything", anyOf(func(*Filter) {}), true, true, true},
		{"name with ANY pattern is exact", anyOf(func(f *Filter) { f.Name = ptr("orders") }), true, false, false},
		{"LITERAL", anyOf(func(f *Filter) { f.Pattern = kmsg.ACLResourcePatternTypeLiteral }), true, true, false},
		{"PREFIXED name", anyOf(func(f *Filter) { f.Pattern, f.Name = kmsg.ACLResourcePatternTypePrefixed, ptr("ord") }), false, false, true},
		{"MATCH orders", anyOf(func(f *Filter) { f.Pattern, f.Name = kmsg.ACLResourcePatternTypeMatch, ptr("orders") }), true, true, true},
		{"MATCH other", anyOf(func(f *Filter) { f.Pattern, f.Name = kmsg.ACLResourcePatternTypeMatch, ptr("other") }), false, true, false},
		{"group type", anyOf(func(f *Filter) { f.ResourceType = kmsg.ACLResourceTypeGroup }), false, false, false},
		{"principal", anyOf(func(f *Filter) { f.Principal = ptr("User:bob") }), false, false, false},
		{"host", anyOf(func(f *Filter) { f.Host = ptr("*") }), true, true, true},
		{"operation", anyOf(func(f *Filter) { f.Operation = kmsg.ACLOperationWrite }), false, false, false},
		{"permission", anyOf(func(f *Filter) { f.Permission = kmsg.ACLPermissionTypeAllow }), true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				b    Binding
				want bool
			}{{lit, tt.lit}, {wild, tt.wild}, {pre, tt.pre}} {
				if got := tt.f.Matches(&c.b); got != c.want {
					t.Errorf("matches %s %s = %v, want %v", c.b.Pattern, c.b.Name, got, c.want)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := Binding{ResourceType: kmsg.ACLResourceTypeCluster, Name: ClusterName, Pattern: kmsg.ACLResourcePatternTypeLiteral,
		Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationAlter, Permission: kmsg.ACLPermissionTypeAllow}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Binding){
		func(b *Binding) { b.ResourceType = kmsg.ACLResourceTypeAny },
		func(b *Binding) { b.Pattern = kmsg.ACLResourcePatternTypeMatch },
		func(b *Binding) { b.Operation = kmsg.ACLOperationUnknown },
		func(b *Binding) { b.Permission = kmsg.ACLPermissionTypeAny },
		func(b *Binding) { b.Name = "" },
		func(b *Binding) { b.Name = "other-cluster" },
		func(b *Binding) { b.Principal = "alice" },
		func(b *Binding) { b.Principal = "User:" },
		func(b *Binding) { b.Host = "" },
	}
	for i, mod := range bad {
		b := good
		mod(&b)
		if err := b.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: Validate(%+v) = %v, want ErrInvalid", i, b, err)
		}
	}
	if err := (&Filter{ResourceType: kmsg.ACLResourceTypeUnknown, Pattern: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("filter of UNKNOWN resource type: %v, want ErrInvalid", err)
	}
}
