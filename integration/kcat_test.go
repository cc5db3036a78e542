package integration

// kcat (librdkafka) against shardcache: metadata, keyed produce, a bounded read from
// the beginning that must stop at end of partition, and offsets by timestamp.

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kcatTimeout bounds one kcat run; a consumer that never sees end of partition is
// killed and the test fails.
const kcatTimeout = 30 * time.Second

// runKcat runs kcat with args and stdin and returns its stdout; it fails the test on
// a non-zero exit or timeout.
func runKcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	bin := requireTool(t, "kcat")
	ctx, cancel := context.WithTimeout(context.Background(), kcatTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	t.Logf("kcat %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	if ctx.Err() != nil {
		t.Fatalf("kcat %s: still running after %v", strings.Join(args, " "), kcatTimeout)
	}
	if err != nil {
		t.Fatalf("kcat %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String()
}

func TestKcat(t *testing.T) {
	requireTool(t, "kcat")
	b := startBroker(t)
	adm := b.Admin(t)
	topic := topicName(t)
	createTopic(t, adm, topic, 1, nil)

	t.Run("metadata lists the topic", func(t *testing.T) {
		out := runKcat(t, "", "-b", b.KafkaAddr, "-L")
		if !strings.Contains(out, fmt.Sprintf("topic %q with 1 partitions", topic)) {
			t.Fatalf("kcat -L does not list topic %s with 1 partition", topic)
		}
	})

	t.Run("keyed produce then consume latest values", func(t *testing.T) {
		lines := []string{"k1:v1", "k2:v1", "k3:v1", "k1:v2", "k2:v2", "k1:v3"}
		runKcat(t, strings.Join(lines, "\n")+"\n", "-b", b.KafkaAddr, "-P", "-K:", "-t", topic)

		if end := endOffsets(t, adm, topic)[0]; end != int64(len(lines)) {
			t.Fatalf("high watermark %d after kcat produced %d records", end, len(lines))
		}
		// Offsets 0, 1, 3 are superseded; -e must still stop at end of partition.
		out := runKcat(t, "", "-b", b.KafkaAddr, "-C", "-e", "-q", "-o", "beginning", "-t", topic, "-f", `%k=%s\n`)
		got := strings.Fields(out)
		sort.Strings(got)
		want := []string{"k1=v3", "k2=v2", "k3=v1"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("kcat read %q, want exactly %q", got, want)
		}
	})

	t.Run("offsets by timestamp", func(t *testing.T) {
		tsTopic := topicName(t)
		createTopic(t, adm, tsTopic, 1, nil)
		cl := b.Client(t)
		base := time.Now().Add(-time.Hour).Truncate(time.Second)
		for i, key := range []string{"a", "b", "c", "d"} {
			r := kv(tsTopic, key, strp("x"))
			r.Timestamp = base.Add(time.Duration(i) * 10 * time.Second)
			produceSync(t, cl, r)
		}
		offsetRE := regexp.MustCompile(`\[0\]\s+offset\s+(-?\d+)`)
		for _, tc := range []struct {
			ts   time.Time
			want string
		}{
			{base.Add(-time.Second), "0"},
			{base.Add(15 * time.Second), "2"},
			{base.Add(30 * time.Second), "3"},
		} {
			out := runKcat(t, "", "-b", b.KafkaAddr, "-Q", "-t", fmt.Sprintf("%s:0:%d", tsTopic, tc.ts.UnixMilli()))
			m := offsetRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("kcat -Q output has no offset for partition 0: %q", out)
			}
			if m[1] != tc.want {
				t.Fatalf("kcat -Q at %d: offset %s, want %s", tc.ts.UnixMilli(), m[1], tc.want)
			}
		}
	})

	t.Run("produced with kgo, read by kcat", func(t *testing.T) {
		kt := topicName(t)
		createTopic(t, adm, kt, 1, nil)
		cl := b.Client(t)
		var recs []*kgo.Record
		for i := range 100 {
			recs = append(recs, kv(kt, fmt.Sprintf("key%03d", i%10), strp(fmt.Sprintf("v%03d", i))))
		}
		produceSync(t, cl, recs...)
		out := runKcat(t, "", "-b", b.KafkaAddr, "-C", "-e", "-q", "-o", "beginning", "-t", kt, "-f", `%k=%s %o\n`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 10 {
			t.Fatalf("kcat read %d records, want 10 (one per key)", len(lines))
		}
		for i, line := range lines {
			want := fmt.Sprintf("key%03d=v%03d %d", i, 90+i, 90+i)
			if line != want {
				t.Fatalf("line %d = %q, want %q", i, line, want)
			}
		}
	})
}
