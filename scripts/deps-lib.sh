# deps-lib.sh: helpers shared by scripts/deps.sh and every integration/*/deps.sh.
# Source it after setting DEPS_NAME (the prefix of log lines). It gives:
#   log MSG...            a line on stderr, "deps(NAME): MSG"
#   die MSG...            the same with FAILED, then exit 1
#   apt_install PKG...    apt-get update + install of the packages given (none: no-op);
#                         sudo when not root
#   stamp_fresh NAME VAL  true when stamp NAME holds VAL (SHARDCACHE_DEPS_FORCE=1: never)
#   stamp_write NAME VAL  records VAL as stamp NAME
#   file_hash FILE...     sha256 of the files' contents
# Stamps live in ${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}.
# shellcheck shell=bash

DEPS_NAME="${DEPS_NAME:-deps}"
DEPS_STAMPS="${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}"
mkdir -p "$DEPS_STAMPS"

log() { echo "deps($DEPS_NAME): $*" >&2; }
die() {
	echo "deps($DEPS_NAME): FAILED: $*" >&2
	exit 1
}

apt_install() {
	(($#)) || return 0
	local sudo=""
	[[ "$(id -u)" == 0 ]] || sudo="sudo"
	log "apt-get install $*"
	$sudo apt-get update -q || die "apt-get update"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" ||
		die "apt-get install $*"
}

stamp_fresh() {
	[[ "${SHARDCACHE_DEPS_FORCE:-}" != 1 && -f "$DEPS_STAMPS/$1" && "$(cat "$DEPS_STAMPS/$1")" == "$2" ]]
}

stamp_write() { echo "$2" >"$DEPS_STAMPS/$1"; }

file_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }
