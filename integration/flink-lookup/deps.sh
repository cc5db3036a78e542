#!/usr/bin/env bash
# deps.sh installs what integration/flink-lookup needs: a JDK and Maven (Debian
# packages, only when missing) and every Maven artifact of pom.xml, including the
# plugins and surefire's JUnit Platform provider, so `mvn -o test` works offline.
# The check is a real offline run of the one test that needs no broker. A stamp
# keyed by pom.xml's hash makes later runs a no-op.
set -euo pipefail
cd "$(dirname "$0")"

stamps="${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}"
mkdir -p "$stamps"
log() { echo "deps(flink-lookup): $*" >&2; }
die() {
	echo "deps(flink-lookup): FAILED: $*" >&2
	exit 1
}
sudo=""
if [[ "$(id -u)" != 0 ]]; then
	sudo="sudo"
fi

pkgs=()
command -v java >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
if ((${#pkgs[@]})); then
	log "apt-get install ${pkgs[*]}"
	$sudo apt-get update -q || die "apt-get update"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" || die "apt-get install ${pkgs[*]}"
fi

stamp="$stamps/maven-integration-flink-lookup"
want="$(sha256sum pom.xml | cut -d' ' -f1)"
if [[ "${SHARDCACHE_DEPS_FORCE:-}" == 1 || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
	log "mvn dependency:go-offline"
	mvn -q -B -Dstyle.color=never dependency:go-offline || die "mvn dependency:go-offline"
	# An offline run proves the test lifecycle (compiler, surefire and its
	# provider) resolves without the network; its build goes to a temp folder.
	build="$(mktemp -d)"
	trap 'rm -rf "$build"' EXIT
	log "offline check: mvn -o test (the broker-free test only)"
	mvn -q -B -o -Dstyle.color=never -Dshardcache.build.dir="$build" -Dtest='EnrichJobTest#encodesPathSegments' test ||
		die "offline test run: an artifact is missing from the local Maven repository"
	echo "$want" >"$stamp"
fi
