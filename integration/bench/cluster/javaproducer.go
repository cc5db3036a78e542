package main

// The failover phase's Java producer: integration/failover-producer, the
// Apache Kafka Java client with its default producer configuration, built
// with Maven (offline: scripts/deps.sh fetched its artifacts) and run as a
// child process that prints one line per acknowledgement.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shardcache/shardcache/integration/bench/harness"
)

// javaProducerDir is the Maven project of the Java producer, under the module
// root.
const javaProducerDir = "integration/failover-producer"

// javaProducerMain is its main class.
const javaProducerMain = "io.shardcache.bench.FailoverProducer"

// buildJavaProducer builds the Java producer into a new folder under dir and
// returns the classpath to run it with. It fails with a message saying what
// to install when Maven, Java or the producer's Maven artifacts are missing.
func buildJavaProducer(ctx context.Context, dir string) (classpath string, err error) {
	for _, tool := range []string{"mvn", "java"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("the Java producer (%s) needs Maven and a JDK, and %s is not on PATH: run scripts/deps.sh, or pass -java=false to leave the Java producer out", javaProducerDir, tool)
		}
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "failover-producer")
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-o", "-Dstyle.color=never", "-Dshardcache.build.dir="+out, "compile", "dependency:copy-dependencies")
	cmd.Dir = filepath.Join(root, javaProducerDir)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the Java producer (mvn -o in %s) failed: %w; if an artifact is missing, run scripts/deps.sh (it runs %s/deps.sh)\n%s", javaProducerDir, err, javaProducerDir, strings.TrimSpace(string(msg)))
	}
	return filepath.Join(out, "classes") + string(os.PathListSeparator) + filepath.Join(out, "lib", "*"), nil
}

// startJavaWriter starts the Java producer on the failover topic and feeds its
// acknowledgements to one probe per partition. It runs until ctx ends: then
// its stdin is closed, which stops it (killed if it has not exited 10 s
// later). wg waits for it.
func startJavaWriter(ctx context.Context, wg *sync.WaitGroup, classpath string, seeds []string, partitions, valueBytes int) (*writer, error) {
	cmd := exec.Command("java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=error", "-cp", classpath, javaProducerMain,
		strings.Join(seeds, ","), failoverTopic, strconv.Itoa(partitions), strconv.FormatInt(writeEvery.Milliseconds(), 10), strconv.Itoa(valueBytes))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = log.Writer()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the Java producer: %w", err)
	}
	w := &writer{name: "Java kafka-clients defaults", close: func() {}, probes: make([]*probe, partitions)}
	for i := range w.probes {
		w.probes[i] = &probe{}
	}
	exited := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if ctx.Err() != nil {
				continue // drain until it exits
			}
			part, produced, acked, ackErr, err := parseJavaAck(sc.Text(), partitions)
			if err != nil {
				log.Printf("java producer: %v", err)
				continue
			}
			w.probes[part].ack(produced, acked, ackErr)
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		defer wg.Done()
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-ctx.Done():
		case <-exited:
			if ctx.Err() == nil {
				log.Printf("java producer exited early: %v", cmd.ProcessState)
			}
			return
		}
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	return w, nil
}

// parseJavaAck parses one line of the Java producer:
//
//	ack PARTITION PRODUCED_NS ACKED_NS
//	err PARTITION PRODUCED_NS ACKED_NS MESSAGE
func parseJavaAck(line string, partitions int) (part int, produced, acked time.Time, ackErr, err error) {
	f := strings.SplitN(line, " ", 5)
	if len(f) < 4 || (f[0] != "ack" && f[0] != "err") || (f[0] == "ack") != (len(f) == 4) {
		return 0, time.Time{}, time.Time{}, nil, fmt.Errorf("unexpected line %q", line)
	}
	part, err = strconv.Atoi(f[1])
	if err != nil || part < 0 || part >= partitions {
		return 0, time.Time{}, time.Time{}, nil, fmt.Errorf("bad partition in %q", line)
	}
	var ns [2]int64
	for i, s := range f[2:4] {
		if ns[i], err = strconv.ParseInt(s, 10, 64); err != nil || ns[i] <= 0 {
			return 0, time.Time{}, time.Time{}, nil, fmt.Errorf("bad time in %q", line)
		}
	}
	if f[0] == "err" {
		ackErr = errors.New(f[4])
	}
	return part, time.Unix(0, ns[0]), time.Unix(0, ns[1]), ackErr, nil
}
