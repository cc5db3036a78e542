package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/shardcache/shardcache/internal/acl"
	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// Cluster metadata keys in the node's state DB, written by the metadata group's
// FSM in the same batch as its applied index:
//
//	'm' 'c'          -> cluster id
//	'm' 'n'          -> counters: version | uvarint next shard id | varint next producer id
//	'm' 't' <name>   -> topic: version | appendTopic encoding
const (
	prefixMeta       = 'm'
	metaKindCluster  = 'c'
	metaKindCounters = 'n'
	metaKindTopic    = 't'

	metaValueVersion = 1

	// maxPartitions bounds a topic's partition count.
	maxPartitions = 10000
)

// topicMeta is a topic as the metadata state machine keeps it. Values in a
// metadata are never modified once published: changes build a new topicMeta.
type topicMeta struct {
	Name       string
	ID         [16]byte
	Partitions []PartitionInfo
	Overrides  map[string]string
	// config is Overrides resolved over the broker defaults (memory only).
	config topicconfig.Config
}

// metadata is the cluster metadata state. The metadata group's FSM applies a
// batch to a clone and publishes the clone after the Pebble commit.
type metadata struct {
	clusterID      string
	topics         map[string]*topicMeta
	byID           map[[16]byte]*topicMeta
	nextShard      uint64
	nextProducerID int64

	// Cluster membership (cluster.go).
	settings  clusterSettings
	nodes     map[int32]*NodeInfo
	placement map[uint32][]int32 // data group -> replicas, first = preferred leader
	leaders   map[uint32]GroupLeader

	// SASL users (scram.go).
	scram map[scramKey]*ScramCredential

	// ACL bindings (acls.go); immutable, replaced on change.
	acls *ACLSet
}

func newMetadata() *metadata {
	return &metadata{
		topics:    map[string]*topicMeta{},
		byID:      map[[16]byte]*topicMeta{},
		nextShard: 1,
		nodes:     map[int32]*NodeInfo{},
		placement: map[uint32][]int32{},
		leaders:   map[uint32]GroupLeader{},
		scram:     map[scramKey]*ScramCredential{},
		acls:      emptyACLSet,
	}
}

// clone copies the maps; their values are shared (they are never modified
// once published: changes store new values).
func (m *metadata) clone() *metadata {
	c := *m
	c.topics = maps.Clone(m.topics)
	c.byID = maps.Clone(m.byID)
	c.nodes = maps.Clone(m.nodes)
	c.placement = maps.Clone(m.placement)
	c.leaders = maps.Clone(m.leaders)
	c.scram = maps.Clone(m.scram)
	return &c
}

// info returns t as a TopicInfo. Partitions and Overrides are shared with the
// published metadata, which never modifies them (changes build a new
// topicMeta), so a lookup costs nothing per partition; Partitions is clipped
// so an append by the caller copies.
func (t *topicMeta) info() TopicInfo {
	return TopicInfo{
		Name:       t.Name,
		ID:         t.ID,
		Partitions: slices.Clip(t.Partitions),
		Overrides:  t.Overrides,
		Config:     t.config,
	}
}

func metaKey(kind byte, name string) []byte {
	return append([]byte{prefixMeta, kind}, name...)
}

// metaWriter writes metadata keys into a Pebble batch.
type metaWriter struct{ b *pebble.Batch }

func (w metaWriter) putTopic(t *topicMeta) error {
	v := appendTopic([]byte{metaValueVersion}, t)
	return w.b.Set(metaKey(metaKindTopic, t.Name), v, nil)
}

func (w metaWriter) deleteTopic(name string) error {
	return w.b.Delete(metaKey(metaKindTopic, name), nil)
}

func (w metaWriter) putCounters(m *metadata) error {
	v := []byte{metaValueVersion}
	v = binary.AppendUvarint(v, m.nextShard)
	v = binary.AppendVarint(v, m.nextProducerID)
	return w.b.Set(metaKey(metaKindCounters, ""), v, nil)
}

func (w metaWriter) putClusterID(id string) error {
	return w.b.Set(metaKey(metaKindCluster, ""), append([]byte{metaValueVersion}, id...), nil)
}

// errCorruptMeta is wrapped by errors about stored metadata that does not decode.
var errCorruptMeta = errors.New("raftfsm: corrupt metadata")

// loadMetadata reads the metadata keys from db; resolve fills each topic's config.
func loadMetadata(db *pebble.DB, resolve func(map[string]string) topicconfig.Config) (*metadata, error) {
	m := newMetadata()
	bindings := map[acl.Binding]struct{}{}
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixMeta},
		UpperBound: []byte{prefixMeta + 1},
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) < 2 || len(v) < 1 || v[0] != metaValueVersion {
			return nil, fmt.Errorf("%w: key %q", errCorruptMeta, k)
		}
		d := decoder{b: v[1:]}
		switch k[1] {
		case metaKindCluster:
			m.clusterID = string(d.b)
			d.b = nil
		case metaKindCounters:
			m.nextShard = d.uvarint()
			m.nextProducerID = d.varint()
		case metaKindTopic:
			t := &topicMeta{}
			d.topic(t)
			t.config = resolve(t.Overrides)
			m.topics[t.Name] = t
			m.byID[t.ID] = t
		case metaKindScram:
			m.loadScramKey(k, &d)
		case metaKindACL:
			if err := loadACLKey(k, bindings); err != nil {
				return nil, err
			}
		default:
			if !m.loadClusterKey(k, &d) {
				return nil, fmt.Errorf("%w: key %q", errCorruptMeta, k)
			}
		}
		if d.err != nil || len(d.b) != 0 {
			return nil, fmt.Errorf("%w: key %q", errCorruptMeta, k)
		}
	}
	if len(bindings) > 0 {
		m.acls = newACLSet(bindings)
	}
	return m, it.Error()
}

// shardGroups maps every shard of every topic to its group.
func (m *metadata) shardGroups() map[shardstore.ShardID]uint32 {
	out := map[shardstore.ShardID]uint32{}
	for _, t := range m.topics {
		for _, p := range t.Partitions {
			out[p.Shard] = p.Group
		}
	}
	return out
}

// sortedTopics returns the topics in name order.
func (m *metadata) sortedTopics() []*topicMeta {
	ts := make([]*topicMeta, 0, len(m.topics))
	for _, t := range m.topics {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return ts
}

// validTopicName applies Kafka's rules: 1-249 characters of [a-zA-Z0-9._-],
// not "." or "..".
func validTopicName(name string) bool {
	if len(name) == 0 || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
