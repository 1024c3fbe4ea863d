#!/bin/sh
# demo.sh: the main job on the embedded default. It starts a transfer node
# on loopback with its folder store and a bucket, mounts the bucket as a
# folder, copies files in with plain cp, reads them back and checks their
# checksums, then moves a large file with `chute cp` both ways.
#
# Everything lives under .cache/demo (keys, the node's data, the mount
# point); the node and the mount are stopped at the end.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
chute=$repo/bin/chute
demo=$repo/.cache/demo
port=${CHUTE_DEMO_PORT:-33001}
url=chute://127.0.0.1:$port/photos

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$demo/node/staging" "$demo/files" "$demo/back"
mkdir -p "$demo/files/shoot/raw" "$demo/back" "$demo/mnt"
export CHUTE_HOME=$demo/home

if [ ! -f "$CHUTE_HOME/id_ed25519" ]; then
	say "make a client key"
	"$chute" keygen
fi
mkdir -p "$demo/node"
cp "$CHUTE_HOME/id_ed25519.pub" "$demo/node/authorized_keys"

say "start a transfer node: SSH control on tcp $port, data on udp $port, folder store"
"$chute" server --data "$demo/node" --bucket photos --listen "127.0.0.1:$port" >"$demo/server.log" 2>&1 &
server=$!
mounted=""
cleanup() {
	if [ -n "$mounted" ]; then "$chute" unmount "$demo/mnt" >/dev/null 2>&1 || fusermount3 -u "$demo/mnt" 2>/dev/null || true; fi
	kill "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 50); do grep -q "control (SSH)" "$demo/server.log" 2>/dev/null && break; sleep 0.1; done
cat "$demo/server.log"

say "make some files"
for i in 1 2 3 4 5; do head -c $((i * 300000)) /dev/urandom >"$demo/files/shoot/raw/IMG_000$i.CR3"; done
printf 'a note with spaces and accents: café\n' >"$demo/files/shoot/notes é.txt"
head -c $((64 << 20)) /dev/urandom >"$demo/files/big.iso"
ls -lR "$demo/files" | head -20

if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null 2>&1 && "$chute" help 2>/dev/null | grep -q '^  mount'; then
	say "mount the bucket at $demo/mnt"
	"$chute" mount --daemon "$url" "$demo/mnt"
	mounted=1
	say "cp -r into the mount: close returns when each object is committed"
	if cp -r "$demo/files/shoot" "$demo/mnt/"; then
		echo "cp exit status 0: every file uploaded and committed"
	else
		echo "cp into the mount failed (see the mount's log above)"
		exit 1
	fi
	ls -l "$demo/mnt" "$demo/mnt/shoot" "$demo/mnt/shoot/raw"
	say "read back through the mount and compare checksums"
	(cd "$demo/files/shoot" && find . -type f -exec sha256sum {} + | sort -k2) >"$demo/sums.src"
	(cd "$demo/mnt/shoot" && find . -type f -exec sha256sum {} + | sort -k2) >"$demo/sums.mnt"
	diff "$demo/sums.src" "$demo/sums.mnt"
	echo "all $(wc -l <"$demo/sums.src") files match"
	say "unmount (waits for pending uploads)"
	"$chute" unmount "$demo/mnt"
	mounted=""
else
	say "no FUSE here (or no mount command): copying with chute cp instead"
	"$chute" cp -r "$demo/files/shoot" "$url/"
fi

say "chute cp a 64 MiB file up and back, with a JSON summary"
"$chute" cp --json "$demo/files/big.iso" "$url/isos/big.iso" | grep '"type":"done"'
"$chute" cp --json "$url/isos/big.iso" "$demo/back/big.iso" | grep '"type":"done"'
cmp "$demo/files/big.iso" "$demo/back/big.iso" && echo "big.iso round trip: identical"

say "chute ls"
"$chute" ls -r "$url/"

say "the objects on the node's disk"
find "$demo/node/objects/photos" -type f | head -20
say "done: the node stops now; its data stays in $demo/node"
