#!/bin/sh
# bench.sh (make bench): chute's figures on this machine, in one run, written
# to bench/results/bench-<date>.{md,json} and bench-latest.{md,json}, and to
# the generated sections of BENCHMARKS.md. Nothing is asserted.
#
#   loopback  1 GiB up and down with chute cp to a folder-store server on
#             127.0.0.1, beside cp of the same file and iperf3 (TCP, UDP) over
#             loopback; CPU seconds per GiB for sender and receiver
#   link      chute cp across the link emulator: 100 ms RTT, 1% loss, 200 Mbit/s
#   s3        chute server --store s3 in front of SeaweedFS on loopback, beside
#             curl --aws-sigv4 (one stream) and rclone copy (multipart)
#   mount     chute mount (when it exists), rclone mount, s3fs on the same
#             bucket: big file write/read, cp -r of 1,000 small files,
#             ls -lR and find of a 10,000-object bucket
#   go        go test -bench . ./engine/... ./cos/...
#
# Sizes and parts come from the environment, e.g. a quick run:
#   CHUTE_BENCH_SIZE=128M CHUTE_BENCH_LINK_SIZE=64M CHUTE_BENCH_REPEAT=1 \
#   CHUTE_BENCH_SMALL_FILES=100 CHUTE_BENCH_TREE=1000 CHUTE_BENCH_PARTS=loopback,link make bench
# `bench/out/bin/chutebench help` lists every setting. Needs root (network
# namespaces, FUSE). Other work on the machine skews the figures: each
# result records the load average.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. "$repo/bench/lib.sh"
bench_prepare
bench/out/bin/chutebench local
