#!/bin/sh
# build-weed.sh builds the SeaweedFS binary that chute's tests and
# benchmarks start as their S3 server, once per machine, into
# <repo>/.cache/bin/weed.
#
# `go install` refuses the module (its go.mod has replace directives), so
# the script downloads the pinned module, copies it somewhere writable and
# runs `go build ./weed` inside (about 5 to 10 minutes on 2 cores).
#
# Usage: scripts/build-weed.sh [output]   (default: <repo>/.cache/bin/weed)
# Set WEED_FORCE=1 to rebuild an existing binary.
set -eu

module=github.com/seaweedfs/seaweedfs
version=v0.0.0-20261109003541-7506e5f91cd6

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/.cache/bin/weed}
# The build runs from another folder: make the output path absolute first.
case $out in
/*) ;;
*) out=$(pwd)/$out ;;
esac
stamp=$out.version

say() { printf 'build-weed: %s\n' "$*"; }

if [ "${WEED_FORCE:-0}" != 1 ] && [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module@$version" ]; then
	say "$out is already $module@$version; nothing to do (WEED_FORCE=1 rebuilds)"
	exit 0
fi

command -v go >/dev/null 2>&1 || { say "go is not on PATH"; exit 1; }

say "downloading $module@$version"
# Run outside the repository so that chute's go.mod plays no part.
cd /
src=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -d "$src" ]; then
	say "go mod download did not report the module's folder"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/chute-weed-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT INT TERM
say "copying $src to $work/src (the module cache is read-only)"
cp -R "$src" "$work/src"
chmod -R u+w "$work/src"

mkdir -p "$(dirname "$out")"
say "go build ./weed (this takes several minutes)"
(cd "$work/src" && GOFLAGS=-buildvcs=false go build -o "$work/weed" ./weed)
mv -f "$work/weed" "$out"
printf '%s\n' "$module@$version" >"$stamp"
say "built $out ($("$out" version 2>/dev/null | head -n 1))"
