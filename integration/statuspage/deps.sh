#!/usr/bin/env bash
# deps.sh installs what integration/statuspage needs: Debian's chromium (the
# browser the test drives; playwright-core never downloads one) and the npm
# packages of package-lock.json. Idempotent and fast when both are present:
# apt runs only when /usr/bin/chromium is missing, npm ci only when the lock file
# changed (a stamp keyed by its hash) or node_modules is gone.
set -euo pipefail
cd "$(dirname "$0")"

stamps="${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}"
mkdir -p "$stamps"
log() { echo "deps(statuspage): $*" >&2; }
die() {
	echo "deps(statuspage): FAILED: $*" >&2
	exit 1
}
sudo=""
if [[ "$(id -u)" != 0 ]]; then
	sudo="sudo"
fi

pkgs=()
[[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
if ((${#pkgs[@]})); then
	log "apt-get install ${pkgs[*]}"
	$sudo apt-get update -q || die "apt-get update"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${pkgs[@]}" ||
		die "apt-get install ${pkgs[*]}"
fi
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is still missing after apt-get install"

stamp="$stamps/npm-integration-statuspage"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "${SHARDCACHE_DEPS_FORCE:-}" == 1 || ! -d node_modules/playwright-core || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
	log "npm ci"
	npm ci --no-audit --no-fund --loglevel=error || die "npm ci"
	echo "$want" >"$stamp"
fi
