package main

import (
	"context"
	"fmt"

	"github.com/shardcache/shardcache/compaction"
)

// startCompaction starts the compaction loop (tombstone expiry, min compaction
// lag, retention of delete-policy topics, idle producer ids after
// --producer-id-expiration) every --compaction-interval, under its
// own context; shutdown cancels it and waits for Run to return, before Raft
// closes.
func (s *server) startCompaction() error {
	cc := compactionConfig(s.cfg)
	cc.Node, cc.Store = s.node, s.store
	cc.Logger = s.log.With(logComponent, "compaction")
	cc.Registerer = s.reg
	loop, err := compaction.New(cc)
	if err != nil {
		return fmt.Errorf("compaction: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.compactionStop = cancel
	s.compactionDone = make(chan error, 1)
	go func() { s.compactionDone <- loop.Run(ctx) }()
	return nil
}

// compactionConfig is the compaction loop's configuration from the flags (see
// storeOptions).
func compactionConfig(cfg Config) compaction.Config {
	return compaction.Config{
		Interval:             cfg.CompactionInterval,
		ProducerIDExpiration: cfg.ProducerIDExpiration,
	}
}
