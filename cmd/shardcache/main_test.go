package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runMainEnv makes the test binary run main() instead of the tests, so the
// process-level behaviour (exit codes, signals) is tested on the real main.
const runMainEnv = "SHARDCACHE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mainCommand prepares the test binary as the shardcache binary with args, an
// environment of env plus the parent's, and a deadline.
func mainCommand(t testing.TB, env []string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	return cmd
}

func TestMainInvalidValueExits2NamingTheFlag(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		args []string
		flag string
	}{
		{"flag", nil, []string{"--node-id", "x"}, "--node-id"},
		{"env", []string{"SHARDCACHE_LOG_FORMAT=xml"}, nil, "--log-format"},
		{"range", nil, []string{"--raft-groups=0"}, "--raft-groups"},
		{"unknown flag", nil, []string{"--bogus"}, "--bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := mainCommand(t, tt.env, tt.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("err = %v, want exit status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.flag) {
				t.Fatalf("output does not name %s:\n%s", tt.flag, out)
			}
		})
	}
}

func TestMainHelpExits0(t *testing.T) {
	out, err := mainCommand(t, nil, "--help").Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"--data-dir", "SHARDCACHE_DATA_DIR", "--max-request-bytes", "100MiB", "--compaction-interval", "10s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestAdvertisedAddr(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	tests := []struct {
		flag  string
		bound string
		want  string
	}{
		{"", "127.0.0.1:41234", "127.0.0.1:41234"},
		{"kafka.example:9092", "127.0.0.1:41234", "kafka.example:9092"},
		{"", "0.0.0.0:9092", net.JoinHostPort(host, "9092")},
		{"", "[::]:9092", net.JoinHostPort(host, "9092")},
		{"", "[::1]:9092", "[::1]:9092"},
	}
	for _, tt := range tests {
		addr, err := net.ResolveTCPAddr("tcp", tt.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := advertisedAddr(tt.flag, addr); got != tt.want {
			t.Errorf("advertisedAddr(%q, %s) = %q, want %q", tt.flag, tt.bound, got, tt.want)
		}
	}
}
