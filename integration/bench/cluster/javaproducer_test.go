package main

import (
	"testing"
	"time"
)

func TestParseJavaAck(t *testing.T) {
	for _, tc := range []struct {
		line    string
		ok      bool
		part    int
		failed  bool
		message string
	}{
		{line: "ack 3 1700000000000000000 1700000000005000000", ok: true, part: 3},
		{line: "err 0 1700000000000000000 1700000000005000000 TimeoutException: Expiring 1 record(s)", ok: true, failed: true, message: "TimeoutException: Expiring 1 record(s)"},
		{line: ""},
		{line: "ack"},
		{line: "ack 8 1 2"},                       // partition out of range
		{line: "ack -1 1 2"},                      // negative partition
		{line: "ack 1 x 2"},                       // bad time
		{line: "ack 1 0 2"},                       // zero time
		{line: "ack 1 1 2 extra"},                 // trailing field on an ack
		{line: "err 1 1 2"},                       // err without a message
		{line: "nak 1 1 2"},                       // unknown kind
		{line: "ack 1 99999999999999999999999 2"}, // overflow
	} {
		part, produced, acked, ackErr, err := parseJavaAck(tc.line, 8)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.line, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if part != tc.part || !produced.Equal(time.Unix(0, 1700000000000000000)) || acked.Sub(produced) != 5*time.Millisecond {
			t.Errorf("%q: got partition %d, produced %v, acked %v", tc.line, part, produced, acked)
		}
		if (ackErr != nil) != tc.failed || (ackErr != nil && ackErr.Error() != tc.message) {
			t.Errorf("%q: ack error %v, want failed=%v %q", tc.line, ackErr, tc.failed, tc.message)
		}
	}
}

func FuzzParseJavaAck(f *testing.F) {
	f.Add("")
	f.Add("ack 3 1700000000000000000 1700000000005000000")
	f.Add("err 0 1 2 TimeoutException: x")
	f.Add("ack 3 1700000000000000000 1700000000005000000\x00garbage")
	f.Fuzz(func(t *testing.T, line string) {
		part, _, _, _, err := parseJavaAck(line, 8)
		if err == nil && (part < 0 || part >= 8) {
			t.Fatalf("%q: partition %d accepted", line, part)
		}
	})
}
