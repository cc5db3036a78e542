#!/usr/bin/env bash
# deps.sh installs what integration/flink-lookup needs: every Maven artifact of
# pom.xml, including the plugins and surefire's JUnit Platform provider, so
# `mvn -o test` works offline (Java and Maven themselves come from scripts/deps.sh).
# The check is a real offline run of the one test that needs no broker. A stamp
# keyed by pom.xml's hash makes later runs a no-op (scripts/deps-lib.sh).
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=flink-lookup
source ../../scripts/deps-lib.sh

want="$(file_hash pom.xml)"
stamp_fresh maven-integration-flink-lookup "$want" && exit 0
log "mvn dependency:go-offline"
mvn -q -B -Dstyle.color=never dependency:go-offline || die "mvn dependency:go-offline"
# An offline run proves the test lifecycle (compiler, surefire and its provider)
# resolves without the network; its build goes to a temp folder.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
log "offline check: mvn -o test (the broker-free test only)"
mvn -q -B -o -Dstyle.color=never -Dshardcache.build.dir="$build" -Dtest='EnrichJobTest#encodesPathSegments' test ||
	die "offline test run: an artifact is missing from the local Maven repository"
stamp_write maven-integration-flink-lookup "$want"
