#!/usr/bin/env bash
# run.sh TOOL [ARG...]: runs one of Kafka's command-line tools from the Maven Central jars
# named by pom.xml, the way a Kafka distribution's bin/TOOL.sh runs it.
#
# TOOL is a script name of the distribution without ".sh" (kafka-topics, kafka-configs,
# kafka-console-producer, ...; `run.sh --list` prints them) or a fully qualified main
# class (org.apache.kafka.tools.TopicCommand). Every ARG goes to the tool unchanged:
#   integration/kafkatools/run.sh kafka-topics --bootstrap-server 127.0.0.1:9092 --list
#
# The classpath is resolved once, offline, with `mvn dependency:build-classpath` and
# cached in target/classpath-<hash of pom.xml> (KAFKATOOLS_CACHE names another folder),
# so a run costs one JVM start. The jars must be in the local Maven repository:
# deps.sh (run by scripts/deps.sh) puts them there. `run.sh --classpath` prints the
# classpath and nothing else.
#
# Environment: JAVA (default: java on PATH), KAFKA_HEAP_OPTS (default -Xmx512m),
# KAFKA_OPTS (more JVM options, as in kafka-run-class.sh). Logging goes to stderr at WARN
# (log4j2.properties), so stdout holds only what the tool prints.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

tools=(
	"kafka-topics org.apache.kafka.tools.TopicCommand"
	"kafka-configs org.apache.kafka.tools.ConfigCommand"
	"kafka-console-producer org.apache.kafka.tools.ConsoleProducer"
	"kafka-console-consumer org.apache.kafka.tools.consumer.ConsoleConsumer"
	"kafka-consumer-groups org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
	"kafka-groups org.apache.kafka.tools.GroupsCommand"
	"kafka-get-offsets org.apache.kafka.tools.GetOffsetShell"
	"kafka-delete-records org.apache.kafka.tools.DeleteRecordsCommand"
	"kafka-log-dirs org.apache.kafka.tools.LogDirsCommand"
	"kafka-metadata-quorum org.apache.kafka.tools.MetadataQuorumCommand"
	"kafka-features org.apache.kafka.tools.FeatureCommand"
	"kafka-cluster org.apache.kafka.tools.ClusterTool"
	"kafka-broker-api-versions org.apache.kafka.tools.BrokerApiVersionsCommand"
	"kafka-verifiable-producer org.apache.kafka.tools.VerifiableProducer"
	"kafka-verifiable-consumer org.apache.kafka.tools.VerifiableConsumer"
	"kafka-producer-perf-test org.apache.kafka.tools.ProducerPerformance"
	"kafka-consumer-perf-test org.apache.kafka.tools.ConsumerPerformance"
	"kafka-e2e-latency org.apache.kafka.tools.EndToEndLatency"
	"kafka-transactions org.apache.kafka.tools.TransactionsCommand"
	"kafka-acls org.apache.kafka.tools.AclCommand"
	"kafka-leader-election org.apache.kafka.tools.LeaderElectionCommand"
	"kafka-reassign-partitions org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
	"kafka-streams-application-reset org.apache.kafka.tools.StreamsResetter"
)

usage() {
	echo "usage: $0 TOOL [ARG...] | --list | --classpath" >&2
	echo "  TOOL: a bin/*.sh name without .sh (see --list) or a main class" >&2
	exit 2
}

classpath() {
	local cache="${KAFKATOOLS_CACHE:-$dir/target}" hash file
	hash="$(sha256sum "$dir/pom.xml" | cut -c1-16)"
	file="$cache/classpath-$hash"
	if ! cached "$file"; then
		mkdir -p "$cache"
		local out tmp="$file.$$.tmp" # concurrent first runs each write their own, then rename
		if ! out="$(mvn -q -B -o -Dstyle.color=never -f "$dir/pom.xml" dependency:build-classpath \
			-Dmdep.outputFile="$tmp" 2>&1)"; then
			echo "$out" >&2
			echo "$0: the tools' jars are not in the local Maven repository: run scripts/deps.sh" >&2
			rm -f "$tmp"
			exit 1
		fi
		mv "$tmp" "$file"
	fi
	cat "$file"
}

# cached: the classpath file exists and every jar it names is still there (a
# cleared local Maven repository makes it stale).
cached() {
	[[ -s "$1" ]] || return 1
	local jar jars
	IFS=: read -r -a jars <"$1"
	for jar in "${jars[@]}"; do
		[[ -f "$jar" ]] || return 1
	done
}

(($#)) || usage
case "$1" in
--list)
	for t in "${tools[@]}"; do echo "${t% *}"; done
	exit 0
	;;
--classpath)
	classpath
	echo
	exit 0
	;;
-*) usage ;;
esac

tool="$1"
shift
main=""
if [[ "$tool" == *.* ]]; then
	main="$tool"
else
	for t in "${tools[@]}"; do
		[[ "${t% *}" == "${tool%.sh}" ]] && main="${t#* }"
	done
	[[ -n "$main" ]] || { echo "$0: unknown tool $tool (run $0 --list)" >&2; exit 2; }
fi
cp="$(classpath)"
# Short-lived JVMs: C1 only and the serial collector start fastest on a small machine.
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS and KAFKA_OPTS are word lists, as in kafka-run-class.sh
exec "${JAVA:-java}" ${KAFKA_HEAP_OPTS:--Xmx512m} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
	-Dlog4j2.configurationFile="$dir/log4j2.properties" ${KAFKA_OPTS:-} -cp "$cp" "$main" "$@"
