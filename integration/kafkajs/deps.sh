#!/usr/bin/env bash
# deps.sh for integration/kafkajs (run by scripts/deps.sh): installs node and npm from
# Debian when missing, then `npm ci` from package-lock.json (kafkajs pinned) into
# integration/kafkajs/node_modules. Idempotent: npm runs only when the lock file changed
# (a stamp keyed by its hash, scripts/deps-lib.sh) or node_modules is gone.
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=kafkajs
source ../../scripts/deps-lib.sh

pkgs=()
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
apt_install "${pkgs[@]}"
major="$(node -p 'process.versions.node.split(".")[0]')" || die "node does not run"
((major >= 20)) || die "node $major is too old: the test needs node >= 20 (node:test with the junit reporter)"

want="$(file_hash package-lock.json)"
stamp_fresh kafkajs "$want" && [[ -f node_modules/kafkajs/package.json ]] && exit 0
log "npm ci"
npm ci --no-audit --no-fund --loglevel=error || die "npm ci"
node -e 'require("kafkajs")' || die "kafkajs not loadable after npm ci"
stamp_write kafkajs "$want"
