package raftfsm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// A node's identity is the node id it was first started with, the id of the
// cluster it belongs to, and an incarnation: a random number drawn when the
// data dir was created. The incarnation is part of the node's Raft server id
// in every group, so a node whose data dir was wiped and that joins again
// under the same node id is a new server to Raft: the leaders remove the old
// server (whose votes and log are gone) and add the new one as a non-voter
// that must catch up before it votes. It is kept in the node's Raft log DB under a key of its
// own ('i' 'n'), outside every snapshot span, so a snapshot from another node
// never overwrites it. A node restarted with another --node-id, or asked to join
// another cluster, refuses to start (Kafka does the same with meta.properties).
//
//	'i' 'n' -> version | varint node id | uvarint len | cluster id | uvarint incarnation
const (
	prefixIdentity  = 'i'
	identityVersion = 1
)

var identityKey = []byte{prefixIdentity, 'n'}

// identity is the stored identity; the zero value means none.
type identity struct {
	nodeID      int32
	clusterID   string
	incarnation uint32
}

// loadIdentity reads the stored identity; ok is false when there is none.
func loadIdentity(db *pebble.DB) (id identity, ok bool, err error) {
	v, closer, err := db.Get(identityKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, err
	}
	defer closer.Close()
	if len(v) < 1 || v[0] != identityVersion {
		return identity{}, false, fmt.Errorf("%w: identity value", errCorruptMeta)
	}
	d := decoder{b: v[1:]}
	id.nodeID = int32(d.varintRange(0, 1<<31-1))
	id.clusterID = d.string()
	id.incarnation = uint32(d.uvarintMax(1<<32 - 1))
	if d.err != nil || len(d.b) != 0 {
		return identity{}, false, fmt.Errorf("%w: identity value", errCorruptMeta)
	}
	return id, true, nil
}

// saveIdentity writes the identity, synced.
func saveIdentity(db *pebble.DB, id identity) error {
	v := binary.AppendVarint([]byte{identityVersion}, int64(id.nodeID))
	v = appendString(v, id.clusterID)
	v = binary.AppendUvarint(v, uint64(id.incarnation))
	return db.Set(identityKey, v, pebble.Sync)
}

// checkIdentity compares the stored identity with the configured node id.
func checkIdentity(stored identity, nodeID int32) error {
	if stored.nodeID != nodeID {
		return fmt.Errorf("%w: this data dir belongs to node %d, not node %d (start it with --node-id %d, or use an empty data dir)",
			ErrIdentity, stored.nodeID, nodeID, stored.nodeID)
	}
	return nil
}

// newIncarnation draws a non-zero incarnation.
func newIncarnation() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

// serverID is a node's Raft server id in every group: its node id in decimal,
// then "-" and its incarnation in hex (incarnation 0, a data dir from before
// incarnations, is the node id alone).
func serverID(node int32, incarnation uint32) raft.ServerID {
	id := strconv.FormatInt(int64(node), 10)
	if incarnation != 0 {
		id += "-" + strconv.FormatUint(uint64(incarnation), 16)
	}
	return raft.ServerID(id)
}

// parseServerID returns the node id of a server id.
func parseServerID(id raft.ServerID) (int32, bool) {
	s, _, _ := strings.Cut(string(id), "-")
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil || v < 0 {
		return 0, false
	}
	return int32(v), true
}
