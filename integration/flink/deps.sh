#!/usr/bin/env bash
# deps.sh for integration/flink (run by scripts/deps.sh): makes `mvn -o -P <profile> test`
# work offline for both Flink profiles. For each profile it runs dependency:go-offline and
# test-compile, then one offline build that starts surefire with no test selected, which
# proves that every dependency, plugin and surefire's JUnit Platform provider is in the
# local repository (go-offline alone misses some of them). Idempotent: Maven runs only
# when pom.xml changed (a stamp keyed by its hash, scripts/deps-lib.sh). Java and Maven
# themselves come from scripts/deps.sh. Any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=flink
source ../../scripts/deps-lib.sh

want="$(file_hash pom.xml)"
stamp_fresh flink "$want" && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for profile in flink-2.2 flink-1.20; do
	log "mvn dependency:go-offline test-compile -P $profile"
	mvn -q -B -Dstyle.color=never -P "$profile" -Dshardcache.build.dir="$tmp/$profile" \
		dependency:go-offline test-compile || die "mvn dependency:go-offline test-compile -P $profile"
	log "offline check -P $profile"
	mvn -q -B -o -Dstyle.color=never -P "$profile" -Dshardcache.build.dir="$tmp/$profile" \
		-Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false test ||
		die "offline build of -P $profile: a dependency or surefire provider is missing"
done
stamp_write flink "$want"
