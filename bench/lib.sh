# lib.sh: shared by scripts/bench.sh and scripts/bench-wan.sh (sourced from
# the repository's root). bench_prepare checks root and the tools, builds
# the benchmark driver and linkem into bench/out/bin, and arranges that
# whatever a run leaves behind (FUSE mounts under bench/out, namespaces of
# an emulator whose owner died) is removed on exit, Ctrl-C included.

bench_prepare() {
	if [ "$(id -u)" != 0 ]; then
		echo "bench: needs root (network namespaces, FUSE mounts, TCP congestion control settings)" >&2
		exit 1
	fi
	for tool in iperf3 curl rclone s3fs nsenter fusermount3; do
		command -v "$tool" >/dev/null 2>&1 || echo "bench: $tool is missing (scripts/deps.sh installs it); what needs it will fail" >&2
	done
	[ -x bin/chute ] || go build -o bin/chute ./cmd/chute
	[ -x .cache/bin/weed ] || echo "bench: no .cache/bin/weed (make weed builds it); the S3 parts will fail" >&2
	mkdir -p bench/out/bin
	go build -o bench/out/bin/chutebench ./bench/cmd/chutebench
	go build -o bench/out/bin/linkem ./cmd/linkem
	trap bench_cleanup EXIT
	trap 'bench_cleanup; exit 130' INT TERM
}

bench_cleanup() {
	out=$(pwd)/bench/out
	# FUSE mounts the driver could not take down (it unmounts its own).
	awk -v out="$out/" 'index($5, out) == 1 { print $5 }' /proc/self/mountinfo | while read -r mnt; do
		fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	done
	# Namespaces of emulators whose owner died (live ones are left alone).
	[ -x bench/out/bin/linkem ] && bench/out/bin/linkem cleanup >/dev/null 2>&1 || true
}
