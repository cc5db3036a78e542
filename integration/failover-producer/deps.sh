#!/usr/bin/env bash
# deps.sh fetches every Maven artifact integration/failover-producer needs (the Kafka
# Java client and the plugins of its offline build), so the cluster benchmark's
# failover phase can build it with `mvn -o` (Java and Maven come from scripts/deps.sh).
# The check is the benchmark's own offline build, into a temporary folder. A stamp
# keyed by pom.xml's hash makes later runs a no-op (scripts/deps-lib.sh).
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=failover-producer
source ../../scripts/deps-lib.sh

want="$(file_hash pom.xml)"
stamp_fresh maven-integration-failover-producer "$want" && exit 0
log "mvn dependency:go-offline"
mvn -q -B -Dstyle.color=never dependency:go-offline || die "mvn dependency:go-offline"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
log "offline check: mvn -o compile dependency:copy-dependencies"
mvn -q -B -o -Dstyle.color=never -Dshardcache.build.dir="$build" compile dependency:copy-dependencies ||
	die "offline build: an artifact is missing from the local Maven repository"
stamp_write maven-integration-failover-producer "$want"
