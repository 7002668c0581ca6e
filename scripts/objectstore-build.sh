#!/usr/bin/env bash
# Build the object store of tests and `make run` from the Go module proxy, once, into a
# cache outside git: Versity Gateway (versitygw, an S3 server over a directory), pinned in
# objectstore/versions.env. An existing binary is kept, so a second run returns at once.
# Prints the binary's path as its last line. Cold: ~70 s of CPU on 2 cores (module download
# and build); warm: nothing.
#
#   scripts/objectstore-build.sh            build if missing, print the binary's path
#   scripts/objectstore-build.sh --print    print the path only (no build)
#
# Environment: CASCADE_CACHE (default ~/.cache/cascade), GOMODCACHE/GOCACHE (Go's defaults).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=objectstore/versions.env
source "$ROOT/objectstore/versions.env"
CACHE=${CASCADE_CACHE:-$HOME/.cache/cascade}
DIR=$CACHE/tools/versitygw-$VERSITYGW_VERSION
BIN=$DIR/versitygw

if [[ ${1:-} == --print || -x $BIN ]]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "objectstore-build: Go not found (PATH, /usr/local/go/bin)" >&2; exit 1; }

mkdir -p "$DIR"
# One build at a time per cache (make and pytest may both ask).
exec 9>"$DIR/.build.lock"
flock 9
if [[ -x $BIN ]]; then echo "$BIN"; exit 0; fi

start=$SECONDS
echo "objectstore-build: building versitygw $VERSITYGW_VERSION ..." >&2
gobin=$(mktemp -d)
GOBIN=$gobin GOTOOLCHAIN=local GOFLAGS=-trimpath CGO_ENABLED=0 go install -p 2 \
  -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
  "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
mv "$gobin/versitygw" "$BIN.tmp"
rmdir "$gobin"
mv -f "$BIN.tmp" "$BIN"
echo "objectstore-build: versitygw built in $((SECONDS - start))s" >&2
echo "$BIN"
