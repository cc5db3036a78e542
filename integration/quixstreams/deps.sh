#!/usr/bin/env bash
# deps.sh for integration/quixstreams (run by scripts/deps.sh): pip installs
# requirements.txt. Idempotent: pip runs only when requirements.txt changed (a stamp
# keyed by its hash, scripts/deps-lib.sh). python3 and pip come from scripts/deps.sh.
set -euo pipefail
cd "$(dirname "$0")"
DEPS_NAME=quixstreams
source ../../scripts/deps-lib.sh

want="$(file_hash requirements.txt)"
stamp_fresh quixstreams "$want" && exit 0
log "pip install -r requirements.txt"
# PIP_BREAK_SYSTEM_PACKAGES: a Debian python3 refuses pip installs otherwise (PEP 668).
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
	-r requirements.txt || die "pip install -r requirements.txt"
stamp_write quixstreams "$want"
