#!/usr/bin/env bash
# deps.sh installs what the tests need beyond Go: kcat (Debian package), the Python
# clients of integration/python, the Maven dependencies of the Java client tests, and
# then runs every integration/<name>/deps.sh (Flink jobs, the Kafka Streams app, the
# Kafka Connect workers, quixstreams, npm clients, the browser test), each an
# installer of its own. It is idempotent and fast when everything is
# present: apt runs only for a missing command, pip and Maven only when their input
# file changed (a stamp keyed by the file's hash). Any failed install fails the script.
#
# Environment: SHARDCACHE_DEPS_CACHE (stamp folder, default
# ~/.cache/shardcache-deps), SHARDCACHE_DEPS_FORCE=1 (ignore the stamps).
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS_NAME=main
source scripts/deps-lib.sh

python_dir=integration/python
java_dir=integration/java

# Debian packages, for commands that are missing.
pkgs=()
command -v kcat >/dev/null 2>&1 || pkgs+=(kcat)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
command -v java >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
apt_install "${pkgs[@]}"
command -v kcat >/dev/null 2>&1 || die "kcat is still missing after apt-get install"

# Go modules (a no-op when the module cache has them).
go mod download || die "go mod download"

# Python clients.
want="$(file_hash "$python_dir/requirements.txt")"
if ! stamp_fresh python "$want"; then
	log "pip install -r $python_dir/requirements.txt"
	# PIP_BREAK_SYSTEM_PACKAGES: a Debian python3 refuses pip installs otherwise
	# (PEP 668); it changes nothing for a pyenv or venv python.
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
		-r "$python_dir/requirements.txt" || die "pip install -r $python_dir/requirements.txt"
	stamp_write python "$want"
fi

# Java client tests: fetch every Maven dependency once, so they run offline.
want="$(file_hash "$java_dir/pom.xml")"
if ! stamp_fresh maven-integration-java "$want"; then
	log "mvn dependency:go-offline in $java_dir"
	(cd "$java_dir" && mvn -q -B -Dstyle.color=never dependency:go-offline) || die "mvn dependency:go-offline in $java_dir"
	stamp_write maven-integration-java "$want"
fi

# Sub-projects with installs of their own, in order.
for sub in integration/*/deps.sh; do
	[[ -f "$sub" ]] || continue
	log "running $sub"
	bash "$sub" || die "$sub"
done
log "ok"
