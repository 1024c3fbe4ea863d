#!/bin/sh
# deps.sh installs, with apt-get, the machine packages chute's tests,
# demo and benchmarks use, when they are missing: fuse3 (the mount),
# rclone and s3fs (metadata interoperability and comparisons), iperf3
# (link emulator validation, fairness), rsync, curl, fio, hyperfine,
# nftables (a test that blocks the UDP port).
#
# Usage: scripts/deps.sh [package...]   (default: all of them)
set -eu

say() { printf 'deps: %s\n' "$*"; }

# command name → Debian package
want=${*:-"fusermount3:fuse3 rclone:rclone s3fs:s3fs iperf3:iperf3 rsync:rsync curl:curl fio:fio hyperfine:hyperfine ip:iproute2 nsenter:util-linux nft:nftables"}
missing=""
for pair in $want; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
	say "all present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	say "missing:$missing — run as root, or install them with: sudo apt-get install$missing"
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	say "missing:$missing — and no apt-get here; install them with your package manager"
	exit 1
fi
say "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
say "installed:$missing"
