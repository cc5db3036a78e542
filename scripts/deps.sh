#!/usr/bin/env bash
# deps.sh installs what the tests need beyond Go: kcat (Debian package), the
# Python clients of integration/python and the Maven dependencies of the Java
# client tests. It is idempotent and fast when everything is present: apt runs
# only for a missing command, pip and Maven only when their input file changed
# (a stamp keyed by the file's hash). Any failed install fails the script.
#
# Environment: SHARDCACHE_DEPS_CACHE (stamp folder, default
# ~/.cache/shardcache-deps), SHARDCACHE_DEPS_FORCE=1 (ignore the stamps).
set -euo pipefail
cd "$(dirname "$0")/.."

stamps="${SHARDCACHE_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardcache-deps}"
mkdir -p "$stamps"

log() { echo "deps: $*" >&2; }
die() {
	echo "deps: FAILED: $*" >&2
	exit 1
}

# fresh NAME FILE... succeeds when the stamp NAME matches the files' hash.
fresh() {
	local name=$1
	shift
	[[ "${SHARDCACHE_DEPS_FORCE:-}" != 1 ]] &&
		[[ -f "$stamps/$name" ]] &&
		[[ "$(cat "$stamps/$name")" == "$(cat "$@" | sha256sum)" ]]
}
stamp() {
	local name=$1
	shift
	cat "$@" | sha256sum >"$stamps/$name"
}

sudo=""
if [[ "$(id -u)" != 0 ]]; then
	sudo="sudo"
fi

# Debian packages, for commands that are missing.
python_dir=integration/python
java_dirs=()
for d in integration/java; do
	[[ -f "$d/pom.xml" ]] && java_dirs+=("$d")
done
pkgs=()
command -v kcat >/dev/null 2>&1 || pkgs+=(kcat)
if [[ -f "$python_dir/requirements.txt" ]]; then
	command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
	python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
fi
if ((${#java_dirs[@]})); then
	command -v java >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
	command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
fi
if ((${#pkgs[@]})); then
	log "apt-get install ${pkgs[*]}"
	$sudo apt-get update -q || die "apt-get update"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${pkgs[@]}" || die "apt-get install ${pkgs[*]}"
fi
command -v kcat >/dev/null 2>&1 || die "kcat is still missing after apt-get install"

# Go modules (a no-op when the module cache has them).
go mod download || die "go mod download"

# Python clients.
if [[ -f "$python_dir/requirements.txt" ]]; then
	if ! fresh python "$python_dir/requirements.txt"; then
		log "pip install -r $python_dir/requirements.txt"
		# PIP_BREAK_SYSTEM_PACKAGES: a Debian python3 refuses pip installs
		# otherwise (PEP 668); it changes nothing for a pyenv or venv python.
		PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
			-r "$python_dir/requirements.txt" || die "pip install -r $python_dir/requirements.txt"
		stamp python "$python_dir/requirements.txt"
	fi
else
	log "no $python_dir/requirements.txt, skipping the Python clients"
fi

# Java: fetch every Maven dependency once, so the tests can run offline.
for d in "${java_dirs[@]}"; do
	name="maven-${d//\//-}"
	if ! fresh "$name" "$d/pom.xml"; then
		log "mvn dependency:go-offline in $d"
		(cd "$d" && mvn -q -B -Dstyle.color=never dependency:go-offline) || die "mvn dependency:go-offline in $d"
		stamp "$name" "$d/pom.xml"
	fi
done
if ((${#java_dirs[@]} == 0)); then
	log "no integration/java/pom.xml, skipping Maven"
fi
# Sub-projects with installs of their own (Flink jobs, npm clients, the browser
# test) each keep an idempotent integration/<name>/deps.sh; run them in order.
for sub in integration/*/deps.sh; do
	[[ -f "$sub" ]] || continue
	log "running $sub"
	bash "$sub" || die "$sub"
done
log "ok"
