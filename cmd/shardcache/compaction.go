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
	loop, err := compaction.New(compaction.Config{
		Node:                 s.node,
		Store:                s.store,
		Interval:             s.cfg.CompactionInterval,
		ProducerIDExpiration: s.cfg.ProducerIDExpiration,
		Logger:               s.log.With(logComponent, "compaction"),
		Registerer:           s.reg,
	})
	if err != nil {
		return fmt.Errorf("compaction: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.compactionStop = cancel
	s.compactionDone = make(chan error, 1)
	go func() { s.compactionDone <- loop.Run(ctx) }()
	return nil
}
