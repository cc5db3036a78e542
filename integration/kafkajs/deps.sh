#!/usr/bin/env bash
# deps.sh for integration/kafkajs (run by scripts/deps.sh): installs node and npm from
# Debian when missing, then `npm ci` from package-lock.json (kafkajs pinned) into
# integration/kafkajs/node_modules. Idempotent: npm runs only when the lock file changed
# (a stamp keyed by its hash under ${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps) or
# node_modules is gone. SHARDCACHE_DEPS_FORCE=1 ignores the stamp. Failures are fatal.
set -euo pipefail
cd "$(dirname "$0")"

die() {
	echo "deps(kafkajs): FAILED: $*" >&2
	exit 1
}
stamps="${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}"
mkdir -p "$stamps"
sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo"

pkgs=()
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
if ((${#pkgs[@]})); then
	echo "deps(kafkajs): apt-get install ${pkgs[*]}" >&2
	$sudo apt-get update -q || die "apt-get update"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" || die "apt-get install ${pkgs[*]}"
fi
major="$(node -p 'process.versions.node.split(".")[0]')" || die "node does not run"
((major >= 20)) || die "node $major is too old: the test needs node >= 20 (node:test with the junit reporter)"

hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="$stamps/kafkajs"
if [[ "${SHARDCACHE_DEPS_FORCE:-}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$hash" && -f node_modules/kafkajs/package.json ]]; then
	exit 0
fi
echo "deps(kafkajs): npm ci" >&2
npm ci --no-audit --no-fund --loglevel=error || die "npm ci"
node -e 'require("kafkajs")' || die "kafkajs not loadable after npm ci"
echo "$hash" >"$stamp"
