//go:build unix

package integration

// A distributed Kafka Connect cluster of two workers (connect-runtime 4.x, Connect's
// own ConnectDistributed main class; integration/connect names the classpath) whose
// config, offset and status topics live on shardcache. It runs the FileStream source
// and sink connectors (connect-file), configured over Connect's REST API: lines
// appended to a file go through a topic into another file.
//
// Connect's source and sink are at least once: after a worker is killed, lines whose
// offsets were not yet flushed or committed are copied again. So the test checks that
// every line reaches the sink file, and allows duplicates.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// connectLinesPerPhase is how many lines each phase appends to the source file.
	connectLinesPerPhase = 40
	// connectTimeout bounds each wait on the Connect cluster: JVM start and plugin
	// scan, a rebalance, a task moving off a killed worker (its session timeout plus
	// scheduled.rebalance.max.delay.ms), a broker restart.
	connectTimeout = 3 * time.Minute
)

const (
	fileSourceClass = "org.apache.kafka.connect.file.FileStreamSourceConnector"
	fileSinkClass   = "org.apache.kafka.connect.file.FileStreamSinkConnector"
)

// connectWorker is one Connect worker process and its REST address.
type connectWorker struct {
	name  string
	rest  string // host:port of its REST API
	props string // its worker.properties
	proc  *appProc
}

// TestKafkaConnectDistributed runs a two-worker Connect cluster with the FileStream
// connectors through a kill -9 of the worker running the source task and a broker
// restart, then checks with a restarted worker that the connector configs, source
// offsets and status were kept by the broker.
func TestKafkaConnectDistributed(t *testing.T) {
	root := mustModuleRoot(t)
	dir := filepath.Join(root, "integration", "connect")
	cp := mavenClasspath(t, dir, "integration/connect/deps.sh")
	b := startFixedPortBroker(t, "--group-initial-rebalance-delay=0")
	adm := b.Admin(t)
	base := topicName(t)
	// FileStreamSource writes keyless records, which a compacted topic refuses.
	lines := base + "-lines"
	createTopic(t, adm, lines, 2, map[string]string{"cleanup.policy": "delete"})

	work := t.TempDir()
	source, sink := filepath.Join(work, "source.txt"), filepath.Join(work, "sink.txt")
	if err := os.WriteFile(source, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	topics := map[string]string{
		"config.storage.topic": base + "-configs",
		"offset.storage.topic": base + "-offsets",
		"status.storage.topic": base + "-status",
	}
	workers := make(map[string]*connectWorker)
	for _, name := range []string{"w1", "w2"} {
		w := &connectWorker{name: name, rest: fmt.Sprintf("127.0.0.1:%d", freePort(t)), props: filepath.Join(work, name+".properties")}
		props := map[string]string{
			"bootstrap.servers":                 b.KafkaAddr,
			"group.id":                          "connect-" + base,
			"key.converter":                     "org.apache.kafka.connect.storage.StringConverter",
			"value.converter":                   "org.apache.kafka.connect.storage.StringConverter",
			"config.storage.replication.factor": "1",
			"offset.storage.replication.factor": "1",
			"status.storage.replication.factor": "1",
			"offset.storage.partitions":         "3",
			"status.storage.partitions":         "2",
			"listeners":                         "http://" + w.rest,
			"rest.advertised.host.name":         "127.0.0.1",
			"rest.advertised.port":              strings.Split(w.rest, ":")[1],
			"offset.flush.interval.ms":          "500",
			"session.timeout.ms":                "6000",
			"heartbeat.interval.ms":             "1000",
			"scheduled.rebalance.max.delay.ms":  "2000",
			"plugin.discovery":                  "only_scan",
		}
		for k, v := range topics {
			props[k] = v
		}
		var sb strings.Builder
		for k, v := range props {
			fmt.Fprintf(&sb, "%s=%s\n", k, v)
		}
		if err := os.WriteFile(w.props, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		workers[name] = w
	}
	startWorker := func(w *connectWorker) {
		w.proc = startApp(t, "connect-"+w.name, dir, nil, "java", jvmFlags[0], jvmFlags[1], jvmFlags[2],
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", cp,
			"org.apache.kafka.connect.cli.ConnectDistributed", w.props)
	}
	running := func() []*appProc {
		var out []*appProc
		for _, w := range workers {
			if w.proc != nil {
				out = append(out, w.proc)
			}
		}
		return out
	}
	for _, w := range workers {
		startWorker(w)
	}
	for _, w := range workers {
		waitApps(t, connectTimeout, w.name+" REST API up", running(), func() error {
			_, err := connectGet(w.rest, "/connectors", nil)
			return err
		})
	}

	sourceConfig := map[string]string{"connector.class": fileSourceClass, "tasks.max": "1", "file": source, "topic": lines}
	sinkConfig := map[string]string{"connector.class": fileSinkClass, "tasks.max": "1", "file": sink, "topics": lines}
	connectPut(t, workers["w1"].rest, "/connectors/file-source/config", sourceConfig)
	connectPut(t, workers["w1"].rest, "/connectors/file-sink/config", sinkConfig)

	var written []string
	appendLines := func(phase int) {
		t.Helper()
		f, err := os.OpenFile(source, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range connectLinesPerPhase {
			l := fmt.Sprintf("phase-%d line-%03d", phase, i)
			written = append(written, l)
			fmt.Fprintln(f, l)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitSink := func(what string) {
		t.Helper()
		waitApps(t, connectTimeout, what, running(), func() error { return sinkHas(sink, written) })
	}

	// Phase 1: both connectors run and copy the file.
	appendLines(1)
	waitSink("phase 1 lines in the sink file")

	// Phase 2: kill -9 the worker running the source task; the other takes it over.
	victim, survivor := workers["w1"], workers["w2"]
	if id := taskWorker(t, workers["w1"].rest, "file-source", running()); id != victim.rest {
		victim, survivor = survivor, victim
	}
	t.Logf("killing %s (runs the source task)", victim.name)
	victim.proc.Kill(t)
	victim.proc = nil
	appendLines(2)
	waitApps(t, connectTimeout, "tasks moved to "+survivor.name, running(), func() error {
		for _, c := range []string{"file-source", "file-sink"} {
			if err := connectorRunningOn(survivor.rest, c, survivor.rest); err != nil {
				return err
			}
		}
		return nil
	})
	waitSink("phase 2 lines in the sink file (after a worker kill)")

	// Phase 3: the broker restarts under the cluster.
	restartBroker(t, b)
	appendLines(3)
	waitSink("phase 3 lines in the sink file (after a broker restart)")

	// The killed worker comes back with nothing but its properties: what it reports
	// it read from the config, offset and status topics.
	startWorker(victim)
	waitApps(t, connectTimeout, victim.name+" back with the connectors' state", running(), func() error {
		var names []string
		if _, err := connectGet(victim.rest, "/connectors", &names); err != nil {
			return err
		}
		if len(names) != 2 {
			return fmt.Errorf("connectors %q, want file-source and file-sink", names)
		}
		for name, want := range map[string]map[string]string{"file-source": sourceConfig, "file-sink": sinkConfig} {
			var got map[string]string
			if _, err := connectGet(victim.rest, "/connectors/"+name+"/config", &got); err != nil {
				return err
			}
			for k, v := range want {
				if got[k] != v {
					return fmt.Errorf("%s config %s=%q, want %q", name, k, got[k], v)
				}
			}
			if err := connectorRunningOn(victim.rest, name, ""); err != nil {
				return err
			}
		}
		return sourceOffsetAt(victim.rest, source)
	})
	for name := range topics {
		topic := topics[name]
		if p := topicConfig(t, adm, topic, "cleanup.policy"); p != "compact" {
			t.Errorf("%s %s: cleanup.policy=%s, want compact", name, topic, p)
		}
	}
	if err := sinkHas(sink, written); err != nil {
		t.Fatal(err)
	}
	// Stop both at once: a worker stopping alone waits for the rebalance it causes.
	for _, w := range workers {
		w.proc.signal(syscall.SIGTERM)
	}
	for _, w := range workers {
		w.proc.Stop(t)
	}
}

// sinkHas checks that the sink file holds every line of want and nothing else
// (duplicates allowed: Connect is at least once).
func sinkHas(path string, want []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	have := make(map[string]int)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		have[sc.Text()]++
	}
	wanted := make(map[string]bool, len(want))
	var missing []string
	for _, l := range want {
		wanted[l] = true
		if have[l] == 0 {
			missing = append(missing, l)
		}
	}
	for l := range have {
		if !wanted[l] {
			return fmt.Errorf("sink file has a line never written: %q", l)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d lines missing from the sink file, first %q", len(missing), len(want), missing[0])
	}
	return nil
}

// connectStatus is GET /connectors/{name}/status.
type connectStatus struct {
	Connector struct {
		State    string `json:"state"`
		WorkerID string `json:"worker_id"`
	} `json:"connector"`
	Tasks []struct {
		ID       int    `json:"id"`
		State    string `json:"state"`
		WorkerID string `json:"worker_id"`
		Trace    string `json:"trace"`
	} `json:"tasks"`
}

// connectorRunningOn checks that connector name and its tasks are RUNNING, on
// worker (a REST host:port) when worker is not empty.
func connectorRunningOn(rest, name, worker string) error {
	var st connectStatus
	if _, err := connectGet(rest, "/connectors/"+name+"/status", &st); err != nil {
		return err
	}
	if st.Connector.State != "RUNNING" || (worker != "" && st.Connector.WorkerID != worker) {
		return fmt.Errorf("%s: connector %s on %s", name, st.Connector.State, st.Connector.WorkerID)
	}
	if len(st.Tasks) == 0 {
		return fmt.Errorf("%s: no tasks", name)
	}
	for _, tk := range st.Tasks {
		if tk.State != "RUNNING" || (worker != "" && tk.WorkerID != worker) {
			return fmt.Errorf("%s: task %d %s on %s %s", name, tk.ID, tk.State, tk.WorkerID, tk.Trace)
		}
	}
	return nil
}

// taskWorker returns the worker id (its REST host:port) of the worker running
// connector name's first task, waiting until it runs.
func taskWorker(t testing.TB, rest, name string, apps []*appProc) string {
	t.Helper()
	var worker string
	waitApps(t, connectTimeout, name+" task running", apps, func() error {
		var st connectStatus
		if _, err := connectGet(rest, "/connectors/"+name+"/status", &st); err != nil {
			return err
		}
		if len(st.Tasks) == 0 || st.Tasks[0].State != "RUNNING" {
			return fmt.Errorf("%s tasks: %+v", name, st.Tasks)
		}
		worker = st.Tasks[0].WorkerID
		return nil
	})
	return worker
}

// sourceOffsetAt checks the file-source connector's committed offset (GET
// /connectors/file-source/offsets, KIP-875) against the source file's size: the
// FileStream source's offset is the byte position it has read to.
func sourceOffsetAt(rest, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var offs struct {
		Offsets []struct {
			Partition map[string]any `json:"partition"`
			Offset    map[string]any `json:"offset"`
		} `json:"offsets"`
	}
	if _, err := connectGet(rest, "/connectors/file-source/offsets", &offs); err != nil {
		return err
	}
	if len(offs.Offsets) != 1 {
		return fmt.Errorf("file-source offsets: %+v, want one", offs.Offsets)
	}
	pos, _ := offs.Offsets[0].Offset["position"].(float64)
	if int64(pos) != fi.Size() {
		return fmt.Errorf("file-source offset position %v, want the file size %d", offs.Offsets[0].Offset["position"], fi.Size())
	}
	return nil
}

var connectHTTP = &http.Client{Timeout: 10 * time.Second}

// connectGet GETs path from a worker's REST API and decodes a 200 answer into out
// (when not nil); any other status is an error.
func connectGet(rest, path string, out any) ([]byte, error) {
	resp, err := connectHTTP.Get("http://" + rest + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return body, fmt.Errorf("GET %s: %v: %s", path, err, body)
		}
	}
	return body, nil
}

// connectPut PUTs a connector config, retrying while the cluster rebalances (409).
func connectPut(t testing.TB, rest, path string, config map[string]string) {
	t.Helper()
	body, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, connectTimeout, 200*time.Millisecond, "PUT "+path, func() error {
		req, err := http.NewRequest(http.MethodPut, "http://"+rest+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := connectHTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("%s: %s", resp.Status, answer)
		}
		return nil
	})
}
