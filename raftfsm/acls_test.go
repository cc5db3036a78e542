package raftfsm

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shardcache/shardcache/internal/acl"
)

func testBinding(rt kmsg.ACLResourceType, name string, pt kmsg.ACLResourcePatternType, principal string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) acl.Binding {
	return acl.Binding{ResourceType: rt, Name: name, Pattern: pt, Principal: principal, Host: "*", Operation: op, Permission: perm}
}

var (
	aliceReadOrders = testBinding(kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLResourcePatternTypeLiteral, "User:alice", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow)
	bobWriteOrd     = testBinding(kmsg.ACLResourceTypeTopic, "ord", kmsg.ACLResourcePatternTypePrefixed, "User:bob", kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeAllow)
	anyoneDenyGroup = testBinding(kmsg.ACLResourceTypeGroup, "g1", kmsg.ACLResourcePatternTypeLiteral, "User:*", kmsg.ACLOperationAll, kmsg.ACLPermissionTypeDeny)
)

// TestNodeACLs creates and deletes bindings through the metadata log: a
// repeated binding is stored once, a delete filter answers what it removed,
// a bad binding stores nothing, and the bindings survive a restart.
func TestNodeACLs(t *testing.T) {
	c := newTestCluster(t)
	ctx := testCtx(t)
	before := c.node.ACLs()
	if err := c.node.CreateACLs(ctx, []acl.Binding{aliceReadOrders, bobWriteOrd, anyoneDenyGroup, aliceReadOrders}); err != nil {
		t.Fatal(err)
	}
	if c.node.ACLs() == before {
		t.Fatal("the ACL set kept its pointer after a change")
	}
	want := []acl.Binding{bobWriteOrd, aliceReadOrders, anyoneDenyGroup} // sorted by acl.Less
	if got := c.node.ACLs().Bindings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("bindings = %+v, want %+v", got, want)
	}

	bad := aliceReadOrders
	bad.Operation = kmsg.ACLOperationAny
	if err := c.node.CreateACLs(ctx, []acl.Binding{bobWriteOrd, bad}); !errors.Is(err, ErrBadRequest) || !errors.Is(err, acl.ErrInvalid) {
		t.Fatalf("CreateACLs(bad) = %v, want ErrBadRequest and acl.ErrInvalid", err)
	}
	if _, err := c.node.DeleteACLs(ctx, nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("DeleteACLs(nil) = %v, want ErrBadRequest", err)
	}

	// MATCH on topic "orders" finds the literal and the prefixed binding;
	// the second filter matches nothing.
	orders := "orders"
	deleted, err := c.node.DeleteACLs(ctx, []acl.Filter{
		{ResourceType: kmsg.ACLResourceTypeTopic, Name: &orders, Pattern: kmsg.ACLResourcePatternTypeMatch,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny},
		{ResourceType: kmsg.ACLResourceTypeCluster, Pattern: kmsg.ACLResourcePatternTypeAny,
			Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 || !reflect.DeepEqual(deleted[0], []acl.Binding{bobWriteOrd, aliceReadOrders}) || len(deleted[1]) != 0 {
		t.Fatalf("deleted = %+v", deleted)
	}
	c.restart()
	if got := c.node.ACLs().Bindings(); !reflect.DeepEqual(got, []acl.Binding{anyoneDenyGroup}) {
		t.Fatalf("after restart: bindings = %+v", got)
	}
}

// TestClusterACLsFromAnyNode changes ACLs on a node that does not lead the
// metadata group and sees them on every node, one that joins later included.
func TestClusterACLsFromAnyNode(t *testing.T) {
	nodes := newTCPCluster(t, 2)
	ctx := testCtx(t)
	follower := metaFollower(t, nodes)
	if err := follower.node.CreateACLs(ctx, []acl.Binding{aliceReadOrders, bobWriteOrd}); err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, newTCPNode(t, 3, []string{nodes[0].addr}))
	if err := nodes[2].node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ACLs on every node", 30*time.Second, func() bool {
		for _, n := range nodes {
			if n.node.ACLs().Len() != 2 {
				return false
			}
		}
		return true
	})
	deleted, err := nodes[2].node.DeleteACLs(ctx, []acl.Filter{{ResourceType: kmsg.ACLResourceTypeTopic,
		Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(deleted, [][]acl.Binding{{bobWriteOrd}}) {
		t.Fatalf("deleted = %+v", deleted)
	}
	waitFor(t, "the deletion on every node", 30*time.Second, func() bool {
		for _, n := range nodes {
			if s := n.node.ACLs(); s.Len() != 1 || !s.Has(aliceReadOrders) {
				return false
			}
		}
		return true
	})
}

// FuzzACLKey feeds stored-key bytes to the loader: it refuses or decodes,
// and what it decodes encodes back to the same key.
func FuzzACLKey(f *testing.F) {
	f.Add([]byte{})
	for _, b := range []acl.Binding{aliceReadOrders, bobWriteOrd, anyoneDenyGroup} {
		k := aclMetaKey(&b)
		f.Add(k[2:])
		f.Add(append(k[2:len(k):len(k)], 0xff))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k := append([]byte{prefixMeta, metaKindACL}, b...)
		got := map[acl.Binding]struct{}{}
		if err := loadACLKey(k, got); err != nil {
			return
		}
		for bd := range got {
			if re := aclMetaKey(&bd); string(re) != string(k) {
				t.Fatalf("key %x decodes to %+v, which encodes to %x", k, bd, re)
			}
		}
	})
}
