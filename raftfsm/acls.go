package raftfsm

// ACL bindings (Kafka's CreateAcls, DescribeAcls, DeleteAcls) as the
// metadata group keeps them. They are replicated like topics, so every node
// authorizes every request the same way, and changed from any node (metaOp
// forwards to the metadata leader). Each change is a delta: CmdCreateACLs
// adds bindings (one already present stays as it is), CmdDeleteACLs removes
// the bindings its filters match in the ACLs in force when it applies, and
// answers them per filter, so every replica deletes, and the caller reports,
// the same bindings.
//
// Stored key, beside those of metadata.go, cluster.go and scram.go:
//
//	'm' 'a' <binding> -> version
//
// where <binding> is resource type, name, pattern type, principal, host,
// operation and permission (appendACL). The metadata snapshot copies every
// 'm' key, so ACLs are in it.

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
)

const metaKindACL = 'a'

// MaxACLsPerCommand bounds the bindings of one CreateACLs or the filters of
// one DeleteACLs, so one Raft entry stays small.
const MaxACLsPerCommand = 1000

// ACLSet is the ACL bindings in force at one point of the metadata log. It
// is immutable: every change builds a new set, so a caller may keep one and
// compare it by pointer to learn whether the ACLs changed.
type ACLSet struct {
	m    map[acl.Binding]struct{}
	list []acl.Binding // sorted by acl.Less
}

var emptyACLSet = &ACLSet{m: map[acl.Binding]struct{}{}}

// Bindings returns every binding, sorted by acl.Less. The slice is shared:
// callers must not modify it.
func (s *ACLSet) Bindings() []acl.Binding { return s.list }

// Len is the number of bindings.
func (s *ACLSet) Len() int { return len(s.list) }

// Has reports whether b is in the set.
func (s *ACLSet) Has(b acl.Binding) bool {
	_, ok := s.m[b]
	return ok
}

func newACLSet(m map[acl.Binding]struct{}) *ACLSet {
	list := make([]acl.Binding, 0, len(m))
	for b := range m {
		list = append(list, b)
	}
	sort.Slice(list, func(i, j int) bool { return acl.Less(&list[i], &list[j]) })
	return &ACLSet{m: m, list: list}
}

func appendACL(dst []byte, b *acl.Binding) []byte {
	dst = append(dst, byte(b.ResourceType))
	dst = appendString(dst, b.Name)
	dst = append(dst, byte(b.Pattern))
	dst = appendString(dst, b.Principal)
	dst = appendString(dst, b.Host)
	dst = append(dst, byte(b.Operation))
	return append(dst, byte(b.Permission))
}

func (d *decoder) acl(b *acl.Binding) {
	b.ResourceType = kmsg.ACLResourceType(d.byte())
	b.Name = d.string()
	b.Pattern = kmsg.ACLResourcePatternType(d.byte())
	b.Principal = d.string()
	b.Host = d.string()
	b.Operation = kmsg.ACLOperation(d.byte())
	b.Permission = kmsg.ACLPermissionType(d.byte())
}

// appendNullableString writes a *string as appendNullable does bytes.
func appendNullableString(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, 0)
	}
	return appendNullable(dst, []byte(*s))
}

func (d *decoder) nullableString() *string {
	b := d.nullable()
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func appendACLFilter(dst []byte, f *acl.Filter) []byte {
	dst = append(dst, byte(f.ResourceType))
	dst = appendNullableString(dst, f.Name)
	dst = append(dst, byte(f.Pattern))
	dst = appendNullableString(dst, f.Principal)
	dst = appendNullableString(dst, f.Host)
	dst = append(dst, byte(f.Operation))
	return append(dst, byte(f.Permission))
}

func (d *decoder) aclFilter(f *acl.Filter) {
	f.ResourceType = kmsg.ACLResourceType(d.byte())
	f.Name = d.nullableString()
	f.Pattern = kmsg.ACLResourcePatternType(d.byte())
	f.Principal = d.nullableString()
	f.Host = d.nullableString()
	f.Operation = kmsg.ACLOperation(d.byte())
	f.Permission = kmsg.ACLPermissionType(d.byte())
}

// A binding takes at least 7 bytes encoded, a filter 7.
const minACLBytes = 7

func aclMetaKey(b *acl.Binding) []byte {
	return appendACL([]byte{prefixMeta, metaKindACL}, b)
}

// loadACLKey decodes a stored binding into bindings.
func loadACLKey(k []byte, bindings map[acl.Binding]struct{}) error {
	d := decoder{b: k[2:]}
	var b acl.Binding
	d.acl(&b)
	if d.err != nil || len(d.b) != 0 {
		return fmt.Errorf("%w: acl key %q", errCorruptMeta, k)
	}
	bindings[b] = struct{}{}
	return nil
}

// checkACLCommand validates the bindings or filters of an ACL command.
func checkACLCommand(c *Command) error {
	n := len(c.ACLs) + len(c.ACLFilters)
	if n == 0 || n > MaxACLsPerCommand {
		return fmt.Errorf("%w: %d bindings or filters in one command, want 1 to %d", acl.ErrInvalid, n, MaxACLsPerCommand)
	}
	for i := range c.ACLs {
		if err := c.ACLs[i].Validate(); err != nil {
			return err
		}
	}
	for i := range c.ACLFilters {
		if err := c.ACLFilters[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

// applyACLs applies CmdCreateACLs and CmdDeleteACLs to the metadata clone m.
// CmdDeleteACLs answers [][]acl.Binding, the bindings each filter matched.
func (p *processor) applyACLs(w metaWriter, m *metadata, c *Command) any {
	if err := checkACLCommand(c); err != nil {
		return err
	}
	switch c.Type {
	case CmdCreateACLs:
		next := make(map[acl.Binding]struct{}, len(m.acls.m)+len(c.ACLs))
		for b := range m.acls.m {
			next[b] = struct{}{}
		}
		for i := range c.ACLs {
			b := &c.ACLs[i]
			if _, ok := next[*b]; ok {
				continue
			}
			next[*b] = struct{}{}
			if err := w.b.Set(aclMetaKey(b), []byte{metaValueVersion}, nil); err != nil {
				return err
			}
		}
		m.acls = newACLSet(next)
		return nil
	case CmdDeleteACLs:
		deleted := make([][]acl.Binding, len(c.ACLFilters))
		gone := map[acl.Binding]struct{}{}
		for i := range c.ACLFilters {
			f := &c.ACLFilters[i]
			for _, b := range m.acls.list {
				if f.Matches(&b) {
					deleted[i] = append(deleted[i], b)
					gone[b] = struct{}{}
				}
			}
		}
		if len(gone) == 0 {
			return deleted
		}
		next := make(map[acl.Binding]struct{}, len(m.acls.m))
		for b := range m.acls.m {
			if _, ok := gone[b]; !ok {
				next[b] = struct{}{}
			}
		}
		for _, b := range m.acls.list {
			if _, ok := gone[b]; ok {
				if err := w.b.Delete(aclMetaKey(&b), nil); err != nil {
					return err
				}
			}
		}
		m.acls = newACLSet(next)
		return deleted
	}
	return fmt.Errorf("%w: unknown type %d", ErrBadCommand, uint8(c.Type))
}

// ACLs returns the ACL bindings as this node's metadata has them. The set is
// immutable and changes pointer whenever the ACLs change.
func (n *Node) ACLs() *ACLSet { return n.metadata().acls }

// CreateACLs stores the bindings (those already stored stay). It may be
// called on any node; a binding that does not validate is an error wrapping
// ErrBadRequest and acl.ErrInvalid, and nothing is stored.
func (n *Node) CreateACLs(ctx context.Context, bindings []acl.Binding) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if err := checkACLCommand(&Command{Type: CmdCreateACLs, ACLs: bindings}); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opCreateACLs, ACLs: bindings})
	return err
}

// DeleteACLs deletes the bindings the filters match when the deletion is
// applied, and returns them per filter. It may be called on any node.
func (n *Node) DeleteACLs(ctx context.Context, filters []acl.Filter) ([][]acl.Binding, error) {
	if err := n.checkReady(); err != nil {
		return nil, err
	}
	if err := checkACLCommand(&Command{Type: CmdDeleteACLs, ACLFilters: filters}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	resp, err := n.metaOp(ctx, &rpcRequest{Op: opDeleteACLs, ACLFilters: filters})
	if err != nil {
		return nil, err
	}
	if len(resp.DeletedACLs) != len(filters) {
		return nil, fmt.Errorf("raftfsm: acl deletion answered %d results for %d filters", len(resp.DeletedACLs), len(filters))
	}
	return resp.DeletedACLs, nil
}

// aclsLocal runs a creation or deletion on the metadata leader.
func (n *Node) aclsLocal(ctx context.Context, req *rpcRequest, resp *rpcResponse) (uint64, error) {
	c := &Command{Type: CmdCreateACLs, ACLs: req.ACLs}
	if req.Op == opDeleteACLs {
		c = &Command{Type: CmdDeleteACLs, ACLFilters: req.ACLFilters}
	}
	if err := checkACLCommand(c); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	v, idx, err := n.proposeLocal(ctx, metaGroup, c)
	if err == nil && c.Type == CmdDeleteACLs {
		resp.DeletedACLs, _ = v.([][]acl.Binding)
	}
	return idx, err
}
