package integration

// Kafka's own command-line tools (kafka-tools 4.x from Maven Central, run by
// integration/kafkatools/run.sh the way bin/*.sh runs them) against the binary,
// each checked on the output a user reads. One broker serves every subtest; each
// tool run is one JVM start, so the subtests share topics where they can.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaToolTimeout bounds one tool run; a tool that hangs is killed and fails its
// test.
const kafkaToolTimeout = 3 * time.Minute

// kafkaTools runs Kafka's tools against one broker.
type kafkaTools struct {
	script    string // integration/kafkatools/run.sh
	bootstrap string
}

// requireKafkaTools finds run.sh and checks that java, mvn and the tools' jars
// are there: missing ones fail the test under CI and skip it otherwise (make
// deps installs them).
func requireKafkaTools(t *testing.T, b *testBroker) *kafkaTools {
	t.Helper()
	requireTool(t, "java")
	requireTool(t, "mvn")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "integration", "kafkatools", "run.sh")
	out, err := exec.Command(script, "--classpath").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s --classpath: %v\n%s", script, err, out)
		}
		t.Skipf("Kafka's tools are not installed (run make deps): %s --classpath: %v", script, err)
	}
	return &kafkaTools{script: script, bootstrap: b.KafkaAddr}
}

// run runs tool with args and stdin; it returns stdout, stderr and the exit
// error. A tool still running after kafkaToolTimeout fails the test.
func (k *kafkaTools) run(t *testing.T, stdin, tool string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaToolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.script, append([]string{tool}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err = cmd.Run()
	t.Logf("%s %s (%v)\nstdout:\n%s\nstderr:\n%s", tool, strings.Join(args, " "),
		time.Since(start).Round(time.Millisecond), out.String(), errOut.String())
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after %v", tool, kafkaToolTimeout)
	}
	return out.String(), errOut.String(), err
}

// ok runs a tool that must succeed and returns its stdout.
func (k *kafkaTools) ok(t *testing.T, stdin, tool string, args ...string) string {
	t.Helper()
	out, _, err := k.run(t, stdin, tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", tool, strings.Join(args, " "), err)
	}
	return out
}

// bs is the --bootstrap-server argument pair.
func (k *kafkaTools) bs() []string { return []string{"--bootstrap-server", k.bootstrap} }

func (k *kafkaTools) with(args ...string) []string { return append(k.bs(), args...) }

// mustContain fails the test unless out has every one of want.
func mustContain(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: output has no %q:\n%s", what, w, out)
		}
	}
}

// offsetsOf parses kafka-get-offsets lines "topic:partition:offset".
func offsetsOf(t *testing.T, out, topic string) map[int32]int64 {
	t.Helper()
	got := map[int32]int64{}
	for _, line := range strings.Fields(out) {
		parts := strings.Split(line, ":")
		if len(parts) != 3 || parts[0] != topic {
			continue
		}
		p, err1 := strconv.Atoi(parts[1])
		o, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("kafka-get-offsets line %q", line)
		}
		got[int32(p)] = o
	}
	return got
}

func TestKafkaTools(t *testing.T) {
	b := startBroker(t, groupBrokerArgs...)
	k := requireKafkaTools(t, b)
	adm := b.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	meta, err := adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodeID := meta.Brokers[0].NodeID

	// data is a delete-policy topic with keyed records in 2 partitions, shared by
	// the read-only subtests.
	data := topicName(t) + "-data"
	createTopic(t, adm, data, 2, map[string]string{"cleanup.policy": "delete"})
	var lines []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("k%03d:v%03d", i, i))
	}
	k.ok(t, strings.Join(lines, "\n")+"\n", "kafka-console-producer", k.with("--topic", data,
		"--reader-property", "parse.key=true", "--reader-property", "key.separator=:")...)

	t.Run("kafka-topics", func(t *testing.T) {
		topic := topicName(t)
		out := k.ok(t, "", "kafka-topics", k.with("--create", "--topic", topic, "--partitions", "2",
			"--config", "cleanup.policy=delete", "--config", "retention.ms=3600000")...)
		mustContain(t, "create", out, "Created topic "+topic+".")
		out = k.ok(t, "", "kafka-topics", k.with("--list")...)
		if !slices.Contains(strings.Fields(out), topic) {
			t.Fatalf("--list does not name %s:\n%s", topic, out)
		}
		out = k.ok(t, "", "kafka-topics", k.with("--alter", "--topic", topic, "--partitions", "3")...)
		// --describe pages through DescribeTopicPartitions one partition at a time.
		out = k.ok(t, "", "kafka-topics", k.with("--describe", "--topic", topic, "--partition-size-limit-per-response", "1")...)
		mustContain(t, "describe", out, "Topic: "+topic+"\t", "PartitionCount: 3", "ReplicationFactor: 1",
			"cleanup.policy=delete", "retention.ms=3600000")
		for p := range 3 {
			mustContain(t, "describe", out, fmt.Sprintf("Partition: %d\tLeader: %d\tReplicas: %d\tIsr: %d", p, nodeID, nodeID, nodeID))
		}
		k.ok(t, "", "kafka-topics", k.with("--delete", "--topic", topic)...)
		out = k.ok(t, "", "kafka-topics", k.with("--list")...)
		if slices.Contains(strings.Fields(out), topic) {
			t.Fatalf("--list still names deleted %s:\n%s", topic, out)
		}
	})

	t.Run("kafka-configs", func(t *testing.T) {
		out := k.ok(t, "", "kafka-configs", k.with("--alter", "--entity-type", "topics", "--entity-name", data,
			"--add-config", "retention.ms=86400000")...)
		mustContain(t, "alter", out, "Completed updating config for topic "+data+".")
		out = k.ok(t, "", "kafka-configs", k.with("--describe", "--entity-type", "topics", "--entity-name", data)...)
		mustContain(t, "describe topic", out, "Dynamic configs for topic "+data+" are:",
			"cleanup.policy=delete", "retention.ms=86400000")
		out = k.ok(t, "", "kafka-configs", k.with("--describe", "--entity-type", "brokers",
			"--entity-name", strconv.Itoa(int(nodeID)), "--all")...)
		mustContain(t, "describe broker", out, fmt.Sprintf("All configs for broker %d are:", nodeID),
			"log.cleanup.policy=compact", fmt.Sprintf("broker.id=%d", nodeID))
	})

	t.Run("console-consumer", func(t *testing.T) {
		out := k.ok(t, "", "kafka-console-consumer", k.with("--topic", data, "--from-beginning",
			"--max-messages", "200", "--formatter-property", "print.key=true",
			"--formatter-property", "key.separator=:")...)
		got := strings.Fields(out)
		slices.Sort(got)
		if !slices.Equal(got, lines) {
			t.Fatalf("console consumer read %d records, want the %d produced:\n%s", len(got), len(lines), out)
		}
	})

	t.Run("kafka-get-offsets", func(t *testing.T) {
		out := k.ok(t, "", "kafka-get-offsets", k.with("--topic", data)...)
		got := offsetsOf(t, out, data)
		if len(got) != 2 || got[0]+got[1] != 200 {
			t.Fatalf("latest offsets %v, want 2 partitions holding 200 records", got)
		}
	})

	t.Run("kafka-consumer-groups", func(t *testing.T) {
		group := topicName(t)
		// A live member: a console consumer that runs until it is stopped.
		cctx, stop := context.WithCancel(ctx)
		consumer := exec.CommandContext(cctx, k.script, append([]string{"kafka-console-consumer"},
			k.with("--topic", data, "--group", group, "--from-beginning")...)...)
		// SIGTERM, not SIGKILL: the consumer closes and leaves its group, as
		// Ctrl-C does, instead of holding it for a session timeout.
		consumer.Cancel = func() error { return consumer.Process.Signal(syscall.SIGTERM) }
		consumer.WaitDelay = time.Minute
		if err := consumer.Start(); err != nil {
			t.Fatal(err)
		}
		stopped := false
		stopConsumer := func() {
			if !stopped {
				stopped = true
				stop()
				_ = consumer.Wait()
			}
		}
		defer stopConsumer()
		waitFor(t, 2*time.Minute, 200*time.Millisecond, "the console consumer's group is Stable with its commits", func() error {
			groups, err := adm.DescribeGroups(ctx, group)
			if err != nil {
				return err
			}
			if g := groups[group]; g.State != "Stable" || len(g.Members) != 1 {
				return fmt.Errorf("state %q with %d members", g.State, len(g.Members))
			}
			lag, err := adm.Lag(ctx, group)
			if err != nil {
				return err
			}
			if total := lag[group].Lag.Total(); total != 0 || len(lag[group].Lag.Sorted()) != 2 {
				return fmt.Errorf("lag %d over %d partitions", total, len(lag[group].Lag.Sorted()))
			}
			return nil
		})
		out := k.ok(t, "", "kafka-consumer-groups", k.with("--list")...)
		if !slices.Contains(strings.Fields(out), group) {
			t.Fatalf("--list does not name %s:\n%s", group, out)
		}
		out = k.ok(t, "", "kafka-consumer-groups", k.with("--describe", "--group", group, "--state")...)
		if !regexp.MustCompile(regexp.QuoteMeta(group) + `\s+\S+\s+\(\d+\)\s+range\s+Stable\s+1`).MatchString(out) {
			t.Fatalf("--state: want %s with strategy range, Stable, 1 member:\n%s", group, out)
		}
		out = k.ok(t, "", "kafka-consumer-groups", k.with("--describe", "--group", group, "--members")...)
		if !regexp.MustCompile(`(?m)` + regexp.QuoteMeta(group) + `\s+\S+\s+/127\.0\.0\.1\s+\S+\s+2\s*$`).MatchString(out) {
			t.Fatalf("--members: want one member with 2 partitions:\n%s", out)
		}
		out = k.ok(t, "", "kafka-consumer-groups", k.with("--describe", "--group", group)...)
		for p := range 2 {
			if !regexp.MustCompile(fmt.Sprintf(`%s\s+%s\s+%d\s+(\d+)\s+(\d+)\s+0\s+[^-\s]`,
				regexp.QuoteMeta(group), regexp.QuoteMeta(data), p)).MatchString(out) {
				t.Fatalf("--describe: partition %d not at its end with lag 0 and an owner:\n%s", p, out)
			}
		}

		stopConsumer()
		waitFor(t, time.Minute, 200*time.Millisecond, "the group is Empty once its consumer left", func() error {
			groups, err := adm.DescribeGroups(ctx, group)
			if err != nil {
				return err
			}
			if s := groups[group].State; s != "Empty" {
				return fmt.Errorf("state %q", s)
			}
			return nil
		})
		out = k.ok(t, "", "kafka-consumer-groups", k.with("--group", group, "--reset-offsets", "--to-earliest",
			"--topic", data, "--execute")...)
		for p := range 2 {
			if !regexp.MustCompile(fmt.Sprintf(`%s\s+%s\s+%d\s+0\b`, regexp.QuoteMeta(group), regexp.QuoteMeta(data), p)).MatchString(out) {
				t.Fatalf("--reset-offsets: partition %d not reset to 0:\n%s", p, out)
			}
		}
		offsets, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		offsets.Each(func(o kadm.OffsetResponse) {
			if o.At != 0 {
				t.Fatalf("committed offset of %s-%d is %d after the reset, want 0", o.Topic, o.Partition, o.At)
			}
		})

		// kafka-groups (ListGroups v5) names the type of every group.
		out = k.ok(t, "", "kafka-groups", k.with("--list")...)
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(group) + `\s+Classic\s+consumer\s*$`).MatchString(out) {
			t.Fatalf("kafka-groups --list: want %s as Classic consumer:\n%s", group, out)
		}
		out = k.ok(t, "", "kafka-groups", k.with("--list", "--consumer")...)
		mustContain(t, "kafka-groups --list --consumer", out, group)

		out = k.ok(t, "", "kafka-consumer-groups", k.with("--delete", "--group", group)...)
		mustContain(t, "--delete", out, "Deletion of requested consumer groups ('"+group+"') was successful.")
		out = k.ok(t, "", "kafka-consumer-groups", k.with("--list")...)
		if slices.Contains(strings.Fields(out), group) {
			t.Fatalf("--list still names deleted group %s:\n%s", group, out)
		}
	})

	t.Run("verifiable producer and consumer", func(t *testing.T) {
		topic := topicName(t)
		createTopic(t, adm, topic, 2, map[string]string{"cleanup.policy": "delete"})
		out := k.ok(t, "", "kafka-verifiable-producer", k.with("--topic", topic, "--max-messages", "500", "--acks", "-1")...)
		events := jsonEvents(t, out)
		if n := countEvents(events, "producer_send_success"); n != 500 {
			t.Fatalf("verifiable producer: %d producer_send_success, want 500", n)
		}
		if n := countEvents(events, "producer_send_error"); n != 0 {
			t.Fatalf("verifiable producer: %d producer_send_error", n)
		}
		out = k.ok(t, "", "kafka-verifiable-consumer", k.with("--topic", topic, "--group-id", topicName(t),
			"--max-messages", "500", "--reset-policy", "earliest")...)
		consumed := 0
		for _, e := range jsonEvents(t, out) {
			switch e["name"] {
			case "records_consumed":
				consumed += int(e["count"].(float64))
			case "offsets_committed":
				if e["success"] != true {
					t.Fatalf("verifiable consumer: failed commit %v", e)
				}
			}
		}
		if consumed != 500 {
			t.Fatalf("verifiable consumer: consumed %d records, want 500", consumed)
		}
	})

	t.Run("perf tests", func(t *testing.T) {
		topic := topicName(t)
		createTopic(t, adm, topic, 2, map[string]string{"cleanup.policy": "delete"})
		out := k.ok(t, "", "kafka-producer-perf-test", "--topic", topic, "--num-records", "20000",
			"--record-size", "100", "--throughput", "-1", "--bootstrap-server", k.bootstrap)
		mustContain(t, "producer perf test", out, "20000 records sent")
		out = k.ok(t, "", "kafka-consumer-perf-test", k.with("--topic", topic, "--num-records", "20000")...)
		// start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
		var msgs int64 = -1
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(line, ", ")
			if len(f) >= 5 && !strings.HasPrefix(line, "start.time") {
				msgs, _ = strconv.ParseInt(f[4], 10, 64)
			}
		}
		if msgs < 20000 {
			t.Fatalf("consumer perf test consumed %d records, want 20000:\n%s", msgs, out)
		}
	})

	t.Run("transactional perf test", func(t *testing.T) {
		topic := topicName(t)
		createTopic(t, adm, topic, 2, map[string]string{"cleanup.policy": "delete"})
		// One transaction per 3 s (the tool's default --transaction-duration-ms):
		// InitProducerId, AddPartitionsToTxn, transactional produce and EndTxn.
		out, stderr, err := k.run(t, "", "kafka-producer-perf-test", "--topic", topic, "--num-records", "1000",
			"--record-size", "10", "--throughput", "-1", "--transactional-id", topic,
			"--bootstrap-server", k.bootstrap)
		if err != nil {
			t.Fatalf("transactional producer perf test: %v\nstderr:\n%s", err, stderr)
		}
		mustContain(t, "transactional perf test", out, "1000 records sent")
		for _, bad := range []string{"ERROR", "Exception"} {
			if strings.Contains(stderr, bad) {
				t.Fatalf("transactional perf test logged %s:\n%s", bad, stderr)
			}
		}
		// A read_committed console consumer reads every record the test sent.
		out = k.ok(t, "", "kafka-console-consumer", k.with("--topic", topic, "--from-beginning",
			"--max-messages", "1000", "--isolation-level", "read_committed", "--timeout-ms", "60000")...)
		if n := len(strings.Fields(out)); n != 1000 {
			t.Fatalf("read_committed console consumer read %d records, want the 1000 sent", n)
		}
	})

	t.Run("kafka-broker-api-versions", func(t *testing.T) {
		out := k.ok(t, "", "kafka-broker-api-versions", k.bs()...)
		mustContain(t, "api versions", out, fmt.Sprintf("%s (id: %d rack: null", b.KafkaAddr, nodeID),
			"DeleteRecords(21): 0 to 2 [usable: 2]", "DescribeLogDirs(35): 1 to 4 [usable: 4]",
			"DescribeQuorum(55): 0 to 2 [usable: 2]", "DescribeTopicPartitions(75): 0 [usable: 0]",
			"ListGroups(16): 0 to 5 [usable: 5]")
	})

	t.Run("kafka-cluster cluster-id", func(t *testing.T) {
		out := k.ok(t, "", "kafka-cluster", append([]string{"cluster-id"}, k.bs()...)...)
		mustContain(t, "cluster-id", out, "Cluster ID: "+meta.Cluster)
	})

	t.Run("kafka-delete-records", func(t *testing.T) {
		topic := topicName(t)
		createTopic(t, adm, topic, 2, map[string]string{"cleanup.policy": "delete"})
		cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for p := range int32(2) {
			for i := range 20 {
				produceSync(t, cl, &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(i))})
			}
		}
		spec := fmt.Sprintf(`{"version":1,"partitions":[{"topic":%q,"partition":0,"offset":10},{"topic":%q,"partition":1,"offset":-1}]}`, topic, topic)
		file := filepath.Join(t.TempDir(), "delete.json")
		if err := os.WriteFile(file, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		out := k.ok(t, "", "kafka-delete-records", k.with("--offset-json-file", file)...)
		mustContain(t, "delete records", out, "partition: "+topic+"-0\tlow_watermark: 10",
			"partition: "+topic+"-1\tlow_watermark: 20")
		out = k.ok(t, "", "kafka-get-offsets", k.with("--topic", topic, "--time", "earliest")...)
		if got := offsetsOf(t, out, topic); got[0] != 10 || got[1] != 20 {
			t.Fatalf("earliest offsets after delete-records %v, want 0:10 1:20", got)
		}
		// A consumer from the beginning starts at the new log start.
		reader := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
		var got []*kgo.Record
		for len(got) < 10 && ctx.Err() == nil {
			fs := reader.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatal(err)
			}
			got = append(got, fs.Records()...)
		}
		if len(got) != 10 || got[0].Offset != 10 {
			t.Fatalf("consuming from the start after delete-records: %s", describe(got))
		}
		// Above the high watermark: Kafka's OFFSET_OUT_OF_RANGE, shown per partition.
		spec = fmt.Sprintf(`{"version":1,"partitions":[{"topic":%q,"partition":0,"offset":999}]}`, topic)
		if err := os.WriteFile(file, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, _ = k.run(t, "", "kafka-delete-records", k.with("--offset-json-file", file)...)
		mustContain(t, "delete records above the high watermark", out, "partition: "+topic+"-0\terror:", "OffsetOutOfRangeException")
	})

	t.Run("kafka-log-dirs", func(t *testing.T) {
		out := k.ok(t, "", "kafka-log-dirs", k.with("--describe", "--topic-list", data)...)
		var doc struct {
			Brokers []struct {
				Broker  int32 `json:"broker"`
				LogDirs []struct {
					LogDir     string  `json:"logDir"`
					Error      *string `json:"error"`
					Partitions []struct {
						Partition string `json:"partition"`
						Size      int64  `json:"size"`
					} `json:"partitions"`
				} `json:"logDirs"`
			} `json:"brokers"`
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "{") {
				if err := json.Unmarshal([]byte(line), &doc); err != nil {
					t.Fatalf("log dirs JSON: %v\n%s", err, line)
				}
			}
		}
		if len(doc.Brokers) != 1 || doc.Brokers[0].Broker != nodeID || len(doc.Brokers[0].LogDirs) != 1 {
			t.Fatalf("log dirs: want one broker %d with one log dir:\n%s", nodeID, out)
		}
		dir := doc.Brokers[0].LogDirs[0]
		if b.DataDir != "" && dir.LogDir != b.DataDir {
			t.Fatalf("log dir %q, want the data dir %q", dir.LogDir, b.DataDir)
		}
		var names []string
		for _, p := range dir.Partitions {
			names = append(names, p.Partition)
			if p.Size <= 0 {
				t.Fatalf("partition %s size %d, want the size of its records", p.Partition, p.Size)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{data + "-0", data + "-1"}) {
			t.Fatalf("log dir partitions %v, want %s-0 and %s-1", names, data, data)
		}
	})

	t.Run("kafka-metadata-quorum", func(t *testing.T) {
		out := k.ok(t, "", "kafka-metadata-quorum", k.with("describe", "--status")...)
		mustContain(t, "describe --status", out, "ClusterId:              "+meta.Cluster,
			fmt.Sprintf("LeaderId:               %d", nodeID), "MaxFollowerLag:         0",
			fmt.Sprintf(`CurrentVoters:          [{"id": %d, `, nodeID), "CurrentObservers:       []")
		if m := regexp.MustCompile(`HighWatermark:\s+(\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" {
			t.Fatalf("describe --status: want a positive HighWatermark:\n%s", out)
		}
		out = k.ok(t, "", "kafka-metadata-quorum", k.with("describe", "--replication")...)
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+\S+\s+\d+\s+0\s+\d+\s+\d+\s+Leader`, nodeID)).MatchString(out) {
			t.Fatalf("describe --replication: want node %d as Leader with lag 0:\n%s", nodeID, out)
		}
	})

	t.Run("kafka-features", func(t *testing.T) {
		out := k.ok(t, "", "kafka-features", k.with("describe")...)
		if !regexp.MustCompile(`Feature: metadata.version\s+SupportedMinVersion: 3.3-IV3\s+SupportedMaxVersion: 4.0-IV3\s+FinalizedVersionLevel: 4.0-IV3`).MatchString(out) {
			t.Fatalf("features: want metadata.version finalized at 4.0-IV3:\n%s", out)
		}
		if strings.Contains(out, "transaction.version") {
			t.Fatalf("features advertise transaction.version before transactions exist:\n%s", out)
		}
	})
}

// jsonEvents parses the JSON lines the verifiable tools print.
func jsonEvents(t *testing.T, out string) []map[string]any {
	t.Helper()
	var events []map[string]any
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("verifiable tool output %q: %v", line, err)
		}
		events = append(events, e)
	}
	return events
}

func countEvents(events []map[string]any, name string) int {
	n := 0
	for _, e := range events {
		if e["name"] == name {
			n++
		}
	}
	return n
}
