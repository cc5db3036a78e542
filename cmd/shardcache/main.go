// Command shardcache runs one shardcache node: a broker that speaks the Kafka wire
// protocol and keeps every topic partition as a key-compacted shard in Pebble,
// written through Raft.
//
// Every flag can also be set by an environment variable, SHARDCACHE_ followed by
// the flag name in upper case with dashes as underscores (--data-dir is
// SHARDCACHE_DATA_DIR); a flag on the command line wins. Run shardcache --help for
// the list. Invalid values exit with status 2 and a message naming the flag.
//
// The first SIGINT or SIGTERM shuts the node down in order (see run.go); a second
// one forces exit with status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/shardcache/shardcache/raftfsm"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		usage(os.Stdout)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "shardcache: %v\nRun shardcache --help for the flags.\n", err)
		os.Exit(2)
	}
	log := newLogger(os.Stderr, cfg)
	slog.SetDefault(log)
	if limit := setMemoryLimit(cfg, os.LookupEnv); limit > 0 {
		log.Debug("go memory limit set", logNodeID, cfg.NodeID, logBytes, limit)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// This goroutine lives as long as the process: the first signal starts the
	// ordered shutdown, a second one ends the process at once.
	go func() {
		log := log.With(logNodeID, cfg.NodeID)
		sig := <-sigs
		log.Info("signal received, shutting down", logSignal, sig.String())
		cancel()
		sig = <-sigs
		log.Error("second signal, forcing exit", logSignal, sig.String())
		os.Exit(1)
	}()

	if err := run(ctx, cfg, log); err != nil {
		log.Error("shardcache failed", logNodeID, cfg.NodeID, logError, err)
		if errors.Is(err, raftfsm.ErrIdentity) || errors.Is(err, errUsage) {
			// A data dir of another node or cluster, or a file named by a
			// flag that does not load, is a configuration error.
			fmt.Fprintf(os.Stderr, "shardcache: %v\n", err)
			os.Exit(2)
		}
		os.Exit(1)
	}
}
