#!/usr/bin/env bash
# deps.sh for integration/kafkatools (run by scripts/deps.sh): puts the jars of Kafka's
# command-line tools (pom.xml) in the local Maven repository, then checks that run.sh
# resolves their classpath offline and starts a tool. Idempotent: Maven runs only when
# pom.xml changed (a stamp keyed by its hash, scripts/deps-lib.sh). Java and Maven
# themselves come from scripts/deps.sh. Any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=kafkatools
source ../../scripts/deps-lib.sh

want="$(file_hash pom.xml)"
stamp_fresh kafkatools "$want" && exit 0
log "mvn dependency:resolve"
mvn -q -B -Dstyle.color=never dependency:resolve || die "mvn dependency:resolve"
log "offline check: run.sh kafka-topics --version"
./run.sh kafka-topics --version >/dev/null || die "run.sh kafka-topics --version (offline classpath)"
stamp_write kafkatools "$want"
