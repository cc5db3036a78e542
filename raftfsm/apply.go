package raftfsm

import (
	"errors"
	"fmt"

	"github.com/shardcache/shardcache/internal/topicconfig"
	"github.com/shardcache/shardcache/shardstore"
)

// processor applies decoded commands. It is deterministic: given the same store
// state, metadata and command, every replica produces the same writes and the
// same result, so replay after a restart and followers agree with the leader.
// The FSM wraps it; it knows nothing about Raft.
type processor struct {
	// resolve turns a topic's overrides into its config (memory only; the
	// stored metadata keeps the overrides).
	resolve func(overrides map[string]string) topicconfig.Config
}

// errMetaInDataGroup: a metadata command reached a data group's log.
var errMetaInDataGroup = errors.New("raftfsm: metadata command in a data group")

// apply runs one command of Raft group group against batch b and, for metadata
// commands, the metadata clone m (nil in data groups). The result is the
// ApplyFuture response:
//
//	CmdProduce:             shardstore.AppendResult or error
//	CmdProduceParts:        []PartResult, one per part (each a result or an error)
//	CmdExpire*:             int (records or producers removed) or error
//	CmdTxnMarker:           int64 (the marker's offset) or error
//	CmdAllocateProducerIDs: int64 (first id of the block) or error
//	CmdSetClusterID:        string (the cluster id in force) or error
//	CmdCreateTopic:         *topicMeta or error
//	others:                 nil or error
func (p *processor) apply(b *shardstore.Batch, group uint32, m *metadata, c *Command) any {
	switch c.Type {
	case CmdProduce:
		res, err := b.Append(c.Shard, c.Options, c.Producer, c.Records)
		if err != nil {
			return err
		}
		return res
	case CmdProduceParts:
		out := make([]PartResult, len(c.Parts))
		for i := range c.Parts {
			p := &c.Parts[i]
			opts := shardstore.AppendOptions{Policy: p.Policy, AppendTimeMs: c.Options.AppendTimeMs, MinCompactionLagMs: p.MinCompactionLagMs}
			out[i].AppendResult, out[i].Err = b.Append(p.Shard, opts, p.Producer, p.Records)
		}
		return out
	case CmdCreateShards:
		for _, s := range c.Shards {
			if err := b.CreateShard(s, group); err != nil && !errors.Is(err, shardstore.ErrShardExists) {
				return err
			}
		}
		return nil
	case CmdDeleteShards:
		for _, s := range c.Shards {
			if err := b.DeleteShard(s); err != nil && !errors.Is(err, shardstore.ErrUnknownShard) {
				return err
			}
		}
		return nil
	case CmdExpireTombstones:
		n, err := b.ExpireTombstones(c.Shard, c.BeforeMs)
		if err != nil {
			return err
		}
		return n
	case CmdExpireSuperseded:
		n, err := b.ExpireSuperseded(c.Shard, c.BeforeMs)
		if err != nil {
			return err
		}
		return n
	case CmdExpireTxnMarkers:
		n, err := b.ExpireTxnMarkers(c.Shard, c.BeforeMs)
		if err != nil {
			return err
		}
		return n
	case CmdDeleteRecordsBefore:
		return b.DeleteRecordsBefore(c.Shard, c.Offset)
	case CmdTxnMarker:
		off, err := b.EndTxn(c.Shard, c.Options, c.Marker)
		if err != nil {
			return err
		}
		return off
	case CmdExpireProducers:
		n, err := b.ExpireProducers(c.Shard, c.BeforeMs, c.Options.AppendTimeMs)
		if err != nil {
			return err
		}
		return n
	}
	if m == nil {
		return fmt.Errorf("%w: %s", errMetaInDataGroup, c.Type)
	}
	w := metaWriter{b.Raw()}
	switch c.Type {
	case CmdCreateTopic:
		return p.createTopic(w, m, &c.Topic)
	case CmdDeleteTopic:
		t, ok := m.topics[c.Topic.Name]
		if !ok {
			return ErrUnknownTopic
		}
		delete(m.topics, t.Name)
		delete(m.byID, t.ID)
		return w.deleteTopic(t.Name)
	case CmdCreatePartitions:
		return p.createPartitions(w, m, c.Topic.Name, c.Topic.Partitions)
	case CmdSetTopicConfig:
		t, ok := m.topics[c.Topic.Name]
		if !ok {
			return ErrUnknownTopic
		}
		nt := *t
		nt.Overrides = c.Topic.Overrides
		nt.config = p.resolve(nt.Overrides)
		m.topics[nt.Name], m.byID[nt.ID] = &nt, &nt
		return w.putTopic(&nt)
	case CmdAlterTopicConfig:
		// The operations apply to the overrides in force when the change is
		// committed, so concurrent changes of one topic all take effect
		// (topicconfig.Alter reads no broker setting: every replica gets the
		// same result).
		t, ok := m.topics[c.Topic.Name]
		if !ok {
			return ErrUnknownTopic
		}
		overrides, err := topicconfig.Alter(t.Overrides, c.ConfigOps)
		if err != nil {
			return err
		}
		nt := *t
		nt.Overrides = overrides
		nt.config = p.resolve(nt.Overrides)
		m.topics[nt.Name], m.byID[nt.ID] = &nt, &nt
		return w.putTopic(&nt)
	case CmdAllocateProducerIDs:
		if c.Count <= 0 || c.Count > 1<<20 {
			return fmt.Errorf("%w: producer id block of %d", ErrBadCommand, c.Count)
		}
		start := m.nextProducerID
		m.nextProducerID += c.Count
		if err := w.putCounters(m); err != nil {
			return err
		}
		return start
	case CmdInitCluster, CmdRegisterNode, CmdRemoveNode, CmdSetGroupLeader:
		return p.applyCluster(w, m, c)
	case CmdUpsertScramCredential, CmdDeleteScramCredential:
		return p.applyScram(w, m, c)
	case CmdCreateACLs, CmdDeleteACLs:
		return p.applyACLs(w, m, c)
	case CmdSetClusterID:
		if m.clusterID == "" && c.ClusterID != "" {
			m.clusterID = c.ClusterID
			if err := w.putClusterID(c.ClusterID); err != nil {
				return err
			}
		}
		return m.clusterID
	}
	return fmt.Errorf("%w: unknown type %d", ErrBadCommand, uint8(c.Type))
}

// checkNewPartitions checks that ps continue t's numbering from first and use
// shard ids never used before, and returns the next free shard id.
func checkNewPartitions(m *metadata, first int32, ps []PartitionInfo) (uint64, error) {
	next := m.nextShard
	for i, p := range ps {
		if p.Partition != first+int32(i) {
			return 0, fmt.Errorf("%w: partition %d out of order", ErrInvalidPartitions, p.Partition)
		}
		if uint64(p.Shard) < m.nextShard {
			return 0, fmt.Errorf("%w: shard %d already allocated", ErrInvalidPartitions, p.Shard)
		}
		if uint64(p.Shard) >= next {
			next = uint64(p.Shard) + 1
		}
	}
	return next, nil
}

func (p *processor) createTopic(w metaWriter, m *metadata, t *topicMeta) any {
	if _, ok := m.topics[t.Name]; ok {
		return ErrTopicExists
	}
	if _, ok := m.byID[t.ID]; ok {
		return fmt.Errorf("%w: topic id taken", ErrTopicExists)
	}
	if len(t.Partitions) < 1 || len(t.Partitions) > maxPartitions {
		return ErrInvalidPartitions
	}
	next, err := checkNewPartitions(m, 0, t.Partitions)
	if err != nil {
		return err
	}
	nt := *t
	nt.Partitions = append([]PartitionInfo(nil), t.Partitions...)
	nt.config = p.resolve(nt.Overrides)
	m.topics[nt.Name], m.byID[nt.ID] = &nt, &nt
	m.nextShard = next
	if err := w.putTopic(&nt); err != nil {
		return err
	}
	if err := w.putCounters(m); err != nil {
		return err
	}
	return &nt
}

func (p *processor) createPartitions(w metaWriter, m *metadata, name string, ps []PartitionInfo) any {
	t, ok := m.topics[name]
	if !ok {
		return ErrUnknownTopic
	}
	if len(ps) < 1 || len(t.Partitions)+len(ps) > maxPartitions {
		return ErrInvalidPartitions
	}
	next, err := checkNewPartitions(m, int32(len(t.Partitions)), ps)
	if err != nil {
		return err
	}
	nt := *t
	nt.Partitions = append(append([]PartitionInfo(nil), t.Partitions...), ps...)
	m.topics[nt.Name], m.byID[nt.ID] = &nt, &nt
	m.nextShard = next
	if err := w.putTopic(&nt); err != nil {
		return err
	}
	return w.putCounters(m)
}
