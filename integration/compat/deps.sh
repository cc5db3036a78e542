#!/usr/bin/env bash
# deps.sh for integration/compat (run by scripts/deps.sh): downloads the franz-go module
# named in go.mod and the modules its own go.sum lists, so TestKgoSuite can build the
# franz-go pkg/kgo tests offline. Idempotent: `go mod download` is a no-op when the
# module cache already has them, and the offline build check runs once per franz-go
# version (a stamp, see scripts/deps-lib.sh). Any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEPS_NAME=compat
source scripts/deps-lib.sh

module=github.com/twmb/franz-go
version="$(go list -m -f '{{.Version}}' "$module")" || die "go list -m $module"
[[ -n "$version" ]] || die "no version of $module in go.mod"
go mod download "$module@$version" || die "go mod download $module@$version"
dir="$(go list -m -f '{{.Dir}}' "$module")" || die "go list -m -f {{.Dir}} $module"
[[ -f "$dir/pkg/kgo/helpers_test.go" ]] || die "$dir has no pkg/kgo tests"
# The module's own requirements (test imports included), read from its go.mod and go.sum;
# the module cache is read-only, so run from there without writing anything.
(cd "$dir" && GOFLAGS=-mod=readonly GOWORK=off go mod download) || die "go mod download in $dir"
# Check once that the tests build offline, as TestKgoSuite runs them.
stamp_fresh compat-franz-go "$version" && exit 0
log "checking that franz-go $version pkg/kgo tests build offline"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -r "$dir" "$tmp/franz-go"
chmod -R u+w "$tmp/franz-go"
(cd "$tmp/franz-go" && GOFLAGS=-mod=readonly GOWORK=off GOPROXY=off go vet ./pkg/kgo/ >/dev/null) ||
	die "franz-go $version pkg/kgo tests do not build offline"
stamp_write compat-franz-go "$version"
