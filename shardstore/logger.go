package shardstore

import (
	"fmt"
	"log/slog"
)

// logKeyMsg is the attribute holding Pebble's own formatted message.
const logKeyMsg = "pebble_msg"

// pebbleLogger adapts slog to Pebble's Logger. Pebble formats its own messages;
// they go under one attribute so the slog message stays constant.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info("pebble", logKeyMsg, fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble", logKeyMsg, fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on broken invariants; it must not return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error("pebble fatal", logKeyMsg, msg)
	panic("pebble: " + msg)
}
