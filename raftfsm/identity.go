package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// A node's identity is the node id it was first started with and the id of the
// cluster it belongs to. It is kept in the node's Pebble DB under a key of its
// own ('i' 'n'), outside every snapshot span, so a snapshot from another node
// never overwrites it. A node restarted with another --node-id, or asked to join
// another cluster, refuses to start (Kafka does the same with meta.properties).
//
//	'i' 'n' -> version | varint node id | uvarint len | cluster id
const (
	prefixIdentity  = 'i'
	identityVersion = 1
)

var identityKey = []byte{prefixIdentity, 'n'}

// identity is the stored identity; the zero value means none.
type identity struct {
	nodeID    int32
	clusterID string
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
	if d.err != nil || len(d.b) != 0 {
		return identity{}, false, fmt.Errorf("%w: identity value", errCorruptMeta)
	}
	return id, true, nil
}

// saveIdentity writes the identity, synced.
func saveIdentity(db *pebble.DB, id identity) error {
	v := binary.AppendVarint([]byte{identityVersion}, int64(id.nodeID))
	v = appendString(v, id.clusterID)
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
