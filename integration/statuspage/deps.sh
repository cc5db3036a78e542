#!/usr/bin/env bash
# deps.sh installs what integration/statuspage needs: Debian's chromium (the
# browser the test drives; playwright-core never downloads one) and the npm
# packages of package-lock.json. Idempotent and fast when both are present:
# apt runs only when /usr/bin/chromium is missing, npm ci only when the lock file
# changed (a stamp keyed by its hash, scripts/deps-lib.sh) or node_modules is gone.
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=statuspage
source ../../scripts/deps-lib.sh

pkgs=()
[[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
apt_install "${pkgs[@]}"
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is still missing after apt-get install"

want="$(file_hash package-lock.json)"
stamp_fresh npm-integration-statuspage "$want" && [[ -d node_modules/playwright-core ]] && exit 0
log "npm ci"
npm ci --no-audit --no-fund --loglevel=error || die "npm ci"
stamp_write npm-integration-statuspage "$want"
