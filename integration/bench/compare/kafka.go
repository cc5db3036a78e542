package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kafkaHeap and kafkaJVM are what bin/kafka-server-start.sh and
// bin/kafka-run-class.sh of a Kafka 4.x distribution pass to the JVM by default.
var (
	kafkaHeap = []string{"-Xmx1G", "-Xms1G"}
	kafkaJVM  = []string{"-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
		"-Djava.awt.headless=true"}
)

// fetchKafka returns the folder holding the jars of Apache Kafka version
// (kafka_2.13, kafka-tools and their runtime dependencies), copied there from
// Maven Central by `mvn dependency:copy-dependencies` over kafka/pom.xml on the
// first run. Later runs find the folder's stamp and need no network.
func fetchKafka(ctx context.Context, root, cache, version string) (string, error) {
	libs := filepath.Join(cache, "kafka-"+version, "libs")
	stamp := filepath.Join(libs, ".complete")
	if _, err := os.Stat(stamp); err == nil {
		return libs, nil
	}
	log.Printf("fetching Apache Kafka %s from Maven Central into %s", version, libs)
	if err := os.RemoveAll(libs); err != nil {
		return "", err
	}
	mvn := exec.CommandContext(ctx, "mvn", "-q", "-B", "-Dstyle.color=never",
		"-f", filepath.Join(root, "integration", "bench", "compare", "kafka", "pom.xml"),
		"-Dkafka.version="+version, "dependency:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory="+libs)
	if out, err := mvn.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mvn dependency:copy-dependencies (Kafka %s): %w\n%s", version, err, out)
	}
	if _, err := os.Stat(filepath.Join(libs, "kafka_2.13-"+version+".jar")); err != nil {
		return "", fmt.Errorf("no kafka_2.13-%s.jar after the fetch: %w", version, err)
	}
	return libs, os.WriteFile(stamp, []byte(version+"\n"), 0o644)
}

// newKafka prepares one KRaft node (broker and controller in one process,
// node.id 1) in dir, on fixed loopback ports, with Kafka's defaults apart from
// the replication factors of its internal topics, which one node needs at 1,
// as config/server.properties of the distribution sets them. It formats the
// metadata directory with kafka.tools.StorageTool, as kafka-storage.sh does.
func newKafka(ctx context.Context, java, libs, dir string) (*node, error) {
	broker, err := freePort()
	if err != nil {
		return nil, err
	}
	controller, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &node{
		name:    "Kafka",
		addr:    fmt.Sprintf("127.0.0.1:%d", broker),
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "kafka.log"),
	}
	props := strings.Join([]string{
		"process.roles=broker,controller",
		"node.id=1",
		fmt.Sprintf("controller.quorum.voters=1@127.0.0.1:%d", controller),
		fmt.Sprintf("listeners=PLAINTEXT://%s,CONTROLLER://127.0.0.1:%d", n.addr, controller),
		"advertised.listeners=PLAINTEXT://" + n.addr,
		"controller.listener.names=CONTROLLER",
		"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"log.dirs=" + n.dataDir,
		"offsets.topic.replication.factor=1",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		"",
	}, "\n")
	propsPath := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(propsPath, []byte(props), 0o644); err != nil {
		return nil, err
	}
	cp := filepath.Join(libs, "*")
	id := make([]byte, 16) // a random cluster id; "=" keeps one starting with "-" an argument
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	format := exec.CommandContext(ctx, java, append(append([]string{}, kafkaJVM...),
		"-cp", cp, "kafka.tools.StorageTool", "format",
		"--cluster-id="+base64.RawURLEncoding.EncodeToString(id), "-c", propsPath)...)
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka-storage format: %w\n%s", err, out)
	}
	n.argv = append(append(append([]string{java}, kafkaHeap...), kafkaJVM...),
		"-cp", cp, "kafka.Kafka", propsPath)
	return n, nil
}
