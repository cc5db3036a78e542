package raftfsm

import (
	"context"

	"github.com/shardcache/shardcache/internal/topicconfig"
)

// AlterTopicConfig changes a topic's overrides by ops (IncrementalAlterConfigs:
// set, delete, append, subtract per config). Any node accepts it; the change
// runs on the metadata leader (see CreateTopic).
//
// The operations travel in the Raft command and the metadata state machine
// applies them to the overrides in force when the command is committed, so two
// admins changing different configs of one topic at once both see their change
// kept: no caller reads the overrides, edits them and writes the whole map
// back. The result is validated there too (topicconfig.Alter), so a change that
// a concurrent one made invalid fails as a whole.
//
// Errors: ErrUnknownTopic, topicconfig.ErrUnknown, topicconfig.ErrInvalid.
// validateOnly checks the operations against the overrides this node knows
// and changes nothing.
func (n *Node) AlterTopicConfig(ctx context.Context, name string, ops []topicconfig.Op, validateOnly bool) error {
	if err := n.checkReady(); err != nil {
		return err
	}
	if err := n.checkAlter(name, ops); err != nil || validateOnly {
		return err
	}
	_, err := n.metaOp(ctx, &rpcRequest{Op: opAlterTopicConfig, Topic: name, ConfigOps: ops})
	return err
}

// checkAlter applies ops to the topic's overrides as this node knows them and
// resolves the result over the broker defaults, for an early and complete
// answer; the state machine decides on the overrides in force.
func (n *Node) checkAlter(name string, ops []topicconfig.Op) error {
	t, ok := n.metadata().topics[name]
	if !ok {
		return ErrUnknownTopic
	}
	overrides, err := topicconfig.Alter(t.Overrides, ops)
	if err != nil {
		return err
	}
	_, err = topicconfig.Resolve(overrides, n.cfg.BrokerTopicDefaults)
	return err
}

// alterTopicConfigLocal runs AlterTopicConfig on the metadata leader and
// returns the metadata index of the change.
func (n *Node) alterTopicConfigLocal(ctx context.Context, name string, ops []topicconfig.Op, validateOnly bool) (uint64, error) {
	if err := n.checkAlter(name, ops); err != nil || validateOnly {
		return 0, err
	}
	_, idx, err := n.proposeLocal(ctx, metaGroup, &Command{Type: CmdAlterTopicConfig, Topic: topicMeta{Name: name}, ConfigOps: ops})
	return idx, err
}
