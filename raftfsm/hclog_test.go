package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	h := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l := h.Named("snapshot").With("group", 3)
	tests := []struct {
		name string
		log  func()
		want string // substring; "" means nothing logged
	}{
		{"info with args", func() { l.Info("Entering Leader State", "term", 2) }, `level=INFO msg="entering leader state" library=raft.snapshot group=3 term=2`},
		{"warn", func() { l.Warn("slow") }, `level=WARN msg=slow`},
		{"error", func() { l.Error("failed", "error", "boom") }, `level=ERROR msg=failed library=raft.snapshot group=3 error=boom`},
		{"debug filtered by slog", func() { l.Debug("noise") }, ""},
		{"refused dial to a stale server is debug", func() {
			l.Error("failed to appendEntries to", "peer", "3", "error", fmt.Errorf("dial: %w", errStaleServer))
		}, ""},
		{"other dial errors stay errors", func() {
			l.Error("failed to appendEntries to", "peer", "3", "error", errors.New("connection refused"))
		}, `level=ERROR msg="failed to appendentries to"`},
		{"a trimmed entry on the way to a snapshot is info", func() {
			l.Error("failed to get log", "index", 1, "error", raft.ErrLogNotFound)
		}, `level=INFO msg="failed to get log"`},
		{"other log read errors stay errors", func() {
			l.Error("failed to get log", "index", 1, "error", errors.New("disk on fire"))
		}, `level=ERROR msg="failed to get log"`},
		{"standard logger", func() { l.StandardLogger(nil).Print("from std\n") }, `msg="from std"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			tt.log()
			got := buf.String()
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Fatalf("logged %q, want %q", got, tt.want)
			}
		})
	}
	if l.IsDebug() || !l.IsInfo() {
		t.Fatal("levels do not follow the slog handler")
	}
	h.SetLevel(hclog.Error)
	buf.Reset()
	h.Warn("hidden")
	if buf.Len() != 0 {
		t.Fatalf("SetLevel(Error) let a warning through: %q", buf.String())
	}
}
