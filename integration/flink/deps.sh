#!/usr/bin/env bash
# deps.sh for integration/flink (run by scripts/deps.sh): makes `mvn -o -P <profile> test`
# work offline for both Flink profiles. For each profile it runs dependency:go-offline and
# then one offline build that compiles the jobs and starts surefire with no test selected,
# which proves that every dependency, plugin and surefire's JUnit Platform provider is in
# the local repository (go-offline alone misses some of them). Idempotent: Maven runs only
# when pom.xml changed (a stamp keyed by its hash under
# ${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps); SHARDCACHE_DEPS_FORCE=1 ignores it.
# Java and Maven come from Debian when missing. Any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")"

die() {
	echo "deps(flink): FAILED: $*" >&2
	exit 1
}
stamps="${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}"
mkdir -p "$stamps"
sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo"

pkgs=()
command -v java >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
if ((${#pkgs[@]})); then
	echo "deps(flink): apt-get install ${pkgs[*]}" >&2
	$sudo apt-get update -q || die "apt-get update"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" || die "apt-get install ${pkgs[*]}"
fi

hash="$(sha256sum pom.xml | cut -d' ' -f1)"
stamp="$stamps/flink"
if [[ "${SHARDCACHE_DEPS_FORCE:-}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
	exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for profile in flink-2.2 flink-1.20; do
	echo "deps(flink): mvn dependency:go-offline -P $profile" >&2
	mvn -q -B -Dstyle.color=never -P "$profile" -Dshardcache.build.dir="$tmp/$profile" \
		dependency:go-offline test-compile || die "mvn dependency:go-offline test-compile -P $profile"
	echo "deps(flink): offline check -P $profile" >&2
	mvn -q -B -o -Dstyle.color=never -P "$profile" -Dshardcache.build.dir="$tmp/$profile" \
		-Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false test ||
		die "offline build of -P $profile: a dependency or surefire provider is missing"
done
echo "$hash" >"$stamp"
