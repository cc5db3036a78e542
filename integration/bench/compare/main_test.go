package main

import (
	"strings"
	"testing"
	"time"
)

func validConfig() config {
	return config{rounds: 3, kafkaVersion: "4.4.0", restoreKeys: 100_000, liveKeys: 1_000_000,
		manyPartitions: 10_000, readTimeout: time.Minute,
		client: clientSettings{linger: 5 * time.Millisecond, maxBuffered: 10_000, keyBytes: 16, timeout: time.Minute}}
}

func TestValidate(t *testing.T) {
	ws, err := validConfig().validate()
	if err != nil || len(ws) != 8 {
		t.Fatalf("defaults: %d workloads, %v", len(ws), err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*config)
	}{
		{"rounds", "-rounds", func(c *config) { c.rounds = 0 }},
		{"keys", "-restore-keys", func(c *config) { c.liveKeys = -1 }},
		{"partitions", "-many-partitions", func(c *config) { c.manyPartitions = 0 }},
		{"buffer", "-max-buffered", func(c *config) { c.client.maxBuffered = 0 }},
		{"version", "-kafka-version", func(c *config) { c.kafkaVersion = "../x y" }},
		{"workload", `unknown id "nope"`, func(c *config) { c.workloads = "p5,nope" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.edit(&c)
			if _, err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	c := validConfig()
	c.workloads = "live, p10"
	ws, err = c.validate()
	if err != nil || len(ws) != 2 || ws[0].Keys != 1_000_000 || ws[1].Versions != 10 {
		t.Fatalf("picked workloads: %+v, %v", ws, err)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1k", 100_000: "100k",
		1_000_000: "1M", 10_000_000: "10M", 1_234_567: "1,234,567", 1_500: "1,500"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}
