package main

import (
	"io"
	"log/slog"
)

// Attribute keys of the binary's log lines.
const (
	logAddr      = "addr"
	logNodeID    = "node_id"
	logDataDir   = "data_dir"
	logComponent = "component"
	logSignal    = "signal"
	logError     = "err"
	logElapsed   = "elapsed"
	logBytes     = "bytes"
)

// newLogger builds the root logger from --log-level and --log-format. start adds
// the node id to its own lines and to the components that do not add it
// themselves (raftfsm does).
func newLogger(w io.Writer, cfg Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h)
}
