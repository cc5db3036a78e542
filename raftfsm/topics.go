package raftfsm

// Topic administration: create and delete topics, add partitions, change
// configs. Each runs on the metadata group's leader (metaOp forwards it from
// any node) and returns once this node's metadata has the change; the shards
// follow through proposeShards.

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

func shardsByGroup(ps []PartitionInfo) map[uint32][]shardstore.ShardID {
	out := map[uint32][]shardstore.ShardID{}
	for _, p := range ps {
		out[p.Group] = append(out[p.Group], p.Shard)
	}
	return out
}

// newPartitions places count new partitions numbered from first on fresh shards:
// shard s goes to data group 1 + s mod the cluster's pool size.
func (n *Node) newPartitions(first, count int32) []PartitionInfo {
	m := n.metadata()
	groups := uint64(max(m.settings.dataGroups, 1))
	ps := make([]PartitionInfo, count)
	for i := range ps {
		s := shardstore.ShardID(m.nextShard + uint64(i))
		ps[i] = PartitionInfo{Partition: first + int32(i), Shard: s, Group: 1 + uint32(uint64(s)%groups)}
	}
	return ps
}

func newTopicID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) {
		rand.Read(id[:])
		id[6] = id[6]&0x0f | 0x40 // version 4
		id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	}
	return id
}

// CreateTopic creates a topic and its shards. Any node accepts it: the change
// runs on the metadata leader, and this call returns once this node's metadata
// has the topic. Errors: ErrTopicExists, ErrInvalidTopic, ErrInvalidPartitions
// (count < 1 or too many), topicconfig.ErrUnknown / ErrInvalid. validateOnly
// checks without creating.
func (n *Node) CreateTopic(ctx context.Context, name string, partitions int32, overrides map[string]string, validateOnly bool) (TopicInfo, error) {
	if err := n.checkReady(); err != nil {
		return TopicInfo{}, err
	}
	if err := n.checkNewTopic(name, partitions, overrides); err != nil {
		return TopicInfo{}, err
	}
	if validateOnly {
		if _, ok := n.metadata().topics[name]; ok {
			return TopicInfo{}, ErrTopicExists
		}
		t := &topicMeta{Name: name, Partitions: n.newPartitions(0, partitions), Overrides: overrides, config: n.resolve(overrides)}
		return t.info(), nil
	}
	if _, err := n.metaOp(ctx, &rpcRequest{Op: opCreateTopic, Topic: name, Partitions: partitions, Overrides: overrides}); err != nil {
		return TopicInfo{}, err
	}
	t, ok := n.Topic(name)
	if !ok {
		return TopicInfo{}, ErrUnknownTopic // deleted meanwhile
	}
	return t, nil
}

func (n *Node) checkNewTopic(name string, partitions int32, overrides map[string]string) error {
	if !validTopicName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if partitions < 1 || partitions > maxPartitions {
		return fmt.Errorf("%w: %d (1 to %d)", ErrInvalidPartitions, partitions, maxPartitions)
	}
	_, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults)
	return err
}

// createTopicLocal runs CreateTopic on the metadata leader and returns the
// metadata index of the change.
func (n *Node) createTopicLocal(ctx context.Context, name string, partitions int32, overrides map[string]string, validateOnly bool) (uint64, error) {
	if err := n.checkNewTopic(name, partitions, overrides); err != nil {
		return 0, err
	}
	n.propMu.Lock()
	defer n.propMu.Unlock()
	if _, ok := n.metadata().topics[name]; ok {
		return 0, ErrTopicExists
	}
	if validateOnly {
		return 0, nil
	}
	t := &topicMeta{Name: name, ID: newTopicID(), Partitions: n.newPartitions(0, partitions), Overrides: maps.Clone(overrides)}
	resp, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdCreateTopic, Topic: *t})
	if err != nil {
		return 0, err
	}
	created := resp.(*topicMeta)
	n.proposeShards(ctx, CmdCreateShards, shardsByGroup(created.Partitions))
	n.log.Info("topic created", keyTopic, name, keyCount, partitions)
	return idx, nil
}

// DeleteTopic removes a topic and its shards (ErrUnknownTopic). Any node
// accepts it (see CreateTopic).
func (n *Node) DeleteTopic(ctx context.Context, name string) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opDeleteTopic, Topic: name})
	return err
}

func (n *Node) deleteTopicLocal(ctx context.Context, name string) (uint64, error) {
	n.propMu.Lock()
	defer n.propMu.Unlock()
	t, ok := n.metadata().topics[name]
	if !ok {
		return 0, ErrUnknownTopic
	}
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdDeleteTopic, Topic: topicMeta{Name: name}})
	if err != nil {
		return 0, err
	}
	n.proposeShards(ctx, CmdDeleteShards, shardsByGroup(t.Partitions))
	n.log.Info("topic deleted", keyTopic, name)
	return idx, nil
}

// CreatePartitions grows a topic to count partitions (ErrInvalidPartitions when
// count is not larger than the current count). Any node accepts it.
func (n *Node) CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if validateOnly {
		_, err := n.checkPartitions(name, count)
		return err
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opCreatePartitions, Topic: name, Partitions: count})
	return err
}

func (n *Node) checkPartitions(name string, count int32) (int32, error) {
	t, ok := n.metadata().topics[name]
	if !ok {
		return 0, ErrUnknownTopic
	}
	cur := int32(len(t.Partitions))
	if count <= cur || count > maxPartitions {
		return 0, fmt.Errorf("%w: %d (topic has %d, limit %d)", ErrInvalidPartitions, count, cur, maxPartitions)
	}
	return cur, nil
}

func (n *Node) createPartitionsLocal(ctx context.Context, name string, count int32, validateOnly bool) (uint64, error) {
	n.propMu.Lock()
	defer n.propMu.Unlock()
	cur, err := n.checkPartitions(name, count)
	if err != nil || validateOnly {
		return 0, err
	}
	ps := n.newPartitions(cur, count-cur)
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdCreatePartitions, Topic: topicMeta{Name: name, Partitions: ps}})
	if err != nil {
		return 0, err
	}
	n.proposeShards(ctx, CmdCreateShards, shardsByGroup(ps))
	return idx, nil
}

// SetTopicConfig replaces a topic's overrides with overrides (validated first).
// Any node accepts it.
func (n *Node) SetTopicConfig(ctx context.Context, name string, overrides map[string]string, validateOnly bool) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if _, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults); err != nil {
		return err
	}
	if _, ok := n.metadata().topics[name]; !ok {
		return ErrUnknownTopic
	}
	if validateOnly {
		return nil
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opSetTopicConfig, Topic: name, Overrides: overrides})
	return err
}

func (n *Node) setTopicConfigLocal(ctx context.Context, name string, overrides map[string]string, validateOnly bool) (uint64, error) {
	if _, err := topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults); err != nil {
		return 0, err
	}
	if validateOnly {
		return 0, nil
	}
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdSetTopicConfig, Topic: topicMeta{Name: name, Overrides: overrides}})
	return idx, err
}
