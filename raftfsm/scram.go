package raftfsm

// SCRAM credentials (SASL users) as the metadata group keeps them: salt,
// iterations, StoredKey and ServerKey per user and mechanism, never a
// password. They are replicated like topics, so every node authenticates
// every user, and changed from any node (metaOp forwards to the metadata
// leader). Each change is a delta (CmdUpsertScramCredential,
// CmdDeleteScramCredential) applied to the credentials in force.
//
// Stored key, beside those of metadata.go and cluster.go:
//
//	'm' 'u' <mechanism:1> <user> -> version | varint iterations | salt | stored key | server key
//
// The metadata snapshot copies every 'm' key, so credentials are in it.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/shardcache/shardcache/internal/scram"
)

const metaKindScram = 'u'

// MaxScramUserBytes bounds a SCRAM user name.
const MaxScramUserBytes = 1024

// ErrUnknownCredential: no credential of that user and mechanism.
var ErrUnknownCredential = errors.New("raftfsm: unknown scram credential")

// ScramCredential is one user's credential for one mechanism.
type ScramCredential struct {
	User string
	scram.Credential
}

type scramKey struct {
	user string
	mech scram.Mechanism
}

func scramMetaKey(user string, mech scram.Mechanism) []byte {
	return append([]byte{prefixMeta, metaKindScram, byte(mech)}, user...)
}

func appendScram(dst []byte, c *ScramCredential) []byte {
	dst = appendString(dst, c.User)
	dst = append(dst, byte(c.Mechanism))
	return appendScramValue(dst, &c.Credential)
}

func appendScramValue(dst []byte, c *scram.Credential) []byte {
	dst = binary.AppendVarint(dst, int64(c.Iterations))
	dst = appendString(dst, string(c.Salt))
	dst = appendString(dst, string(c.StoredKey))
	return appendString(dst, string(c.ServerKey))
}

func (d *decoder) scram(c *ScramCredential) {
	c.User = d.string()
	c.Mechanism = scram.Mechanism(int8(d.byte()))
	d.scramValue(&c.Credential)
}

func (d *decoder) scramValue(c *scram.Credential) {
	c.Iterations = int32(d.varintRange(0, 1<<31-1))
	c.Salt = []byte(d.string())
	c.StoredKey = []byte(d.string())
	c.ServerKey = []byte(d.string())
}

func (w metaWriter) putScram(c *ScramCredential) error {
	return w.b.Set(scramMetaKey(c.User, c.Mechanism), appendScramValue([]byte{metaValueVersion}, &c.Credential), nil)
}

// loadScramKey decodes a stored credential into m.
func (m *metadata) loadScramKey(k []byte, d *decoder) {
	if len(k) < 4 {
		d.fail("scram key")
		return
	}
	c := &ScramCredential{User: string(k[3:])}
	c.Mechanism = scram.Mechanism(int8(k[2]))
	d.scramValue(&c.Credential)
	m.scram[scramKey{c.User, c.Mechanism}] = c
}

// checkScram validates a credential to be stored.
func checkScram(c *ScramCredential) error {
	if c.User == "" || len(c.User) > MaxScramUserBytes {
		return fmt.Errorf("%w: user name of %d bytes is not between 1 and %d", scram.ErrBadCredential, len(c.User), MaxScramUserBytes)
	}
	return c.Check()
}

// applyScram applies the credential commands to the metadata clone m.
func (p *processor) applyScram(w metaWriter, m *metadata, c *Command) any {
	k := scramKey{c.Scram.User, c.Scram.Mechanism}
	switch c.Type {
	case CmdUpsertScramCredential:
		if err := checkScram(&c.Scram); err != nil {
			return err
		}
		nc := c.Scram
		m.scram[k] = &nc
		return w.putScram(&nc)
	case CmdDeleteScramCredential:
		if _, ok := m.scram[k]; !ok {
			return ErrUnknownCredential
		}
		delete(m.scram, k)
		return w.b.Delete(scramMetaKey(k.user, k.mech), nil)
	}
	return fmt.Errorf("%w: unknown type %d", ErrBadCommand, uint8(c.Type))
}

// ScramCredential returns user's credential for mech as this node's metadata
// has it. The slices are shared: callers must not modify them.
func (n *Node) ScramCredential(user string, mech scram.Mechanism) (scram.Credential, bool) {
	c, ok := n.metadata().scram[scramKey{user, mech}]
	if !ok {
		return scram.Credential{}, false
	}
	return c.Credential, true
}

// ScramCredentials returns every credential, by user then mechanism. The
// slices are shared: callers must not modify them.
func (n *Node) ScramCredentials() []ScramCredential {
	m := n.metadata()
	out := make([]ScramCredential, 0, len(m.scram))
	for _, c := range m.scram {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Mechanism < out[j].Mechanism
	})
	return out
}

// UpsertScramCredential stores c, replacing the user's credential of the
// same mechanism. It may be called on any node.
func (n *Node) UpsertScramCredential(ctx context.Context, c ScramCredential) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if err := checkScram(&c); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opUpsertScram, Scram: &c})
	return err
}

// DeleteScramCredential removes user's credential for mech; it returns
// ErrUnknownCredential when there is none. It may be called on any node.
func (n *Node) DeleteScramCredential(ctx context.Context, user string, mech scram.Mechanism) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if _, ok := n.metadata().scram[scramKey{user, mech}]; !ok {
		return ErrUnknownCredential
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opDeleteScram, Scram: &ScramCredential{User: user, Credential: scram.Credential{Mechanism: mech}}})
	return err
}

// scramLocal runs an upsert or delete on the metadata leader.
func (n *Node) scramLocal(ctx context.Context, op string, c *ScramCredential) (uint64, error) {
	if c == nil {
		return 0, fmt.Errorf("%w: %s without a credential", ErrBadRequest, op)
	}
	t := CmdUpsertScramCredential
	if op == opDeleteScram {
		t = CmdDeleteScramCredential
	}
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: t, Scram: *c})
	return idx, err
}
