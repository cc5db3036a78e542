#!/usr/bin/env bash
# deps.sh for integration/connect (run by scripts/deps.sh): fetches the Connect
# worker's classpath (connect-runtime, connect-file, connect-json, an slf4j binding)
# and the dependency plugin, then proves that the offline run the test makes
# (`mvn -o compile dependency:build-classpath`, connect_test.go) works. Idempotent:
# Maven runs only when pom.xml changed (a stamp keyed by its hash,
# scripts/deps-lib.sh). Java and Maven come from scripts/deps.sh.
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=connect
source ../../scripts/deps-lib.sh

want="$(file_hash pom.xml)"
stamp_fresh connect "$want" && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
log "mvn dependency:go-offline"
mvn -q -B -Dstyle.color=never -Dshardcache.build.dir="$tmp" dependency:go-offline ||
	die "mvn dependency:go-offline"
log "offline check"
mvn -q -B -o -Dstyle.color=never -Dshardcache.build.dir="$tmp" -Dmdep.outputFile="$tmp/cp.txt" \
	compile dependency:build-classpath || die "offline build: a dependency or plugin is missing"
stamp_write connect "$want"
