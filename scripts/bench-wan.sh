#!/bin/sh
# bench-wan.sh (make bench-wan): chute beside HTTP tools on long, lossy links.
# The chute server and a SeaweedFS S3 server run in the "far" namespace of
# the link emulator, the clients in the "near" one; for every RTT × loss
# cell each tool uploads and downloads one file:
#   chute cp (default policy, and --policy fixed at the link rate),
#   curl --aws-sigv4 (one HTTP stream), rclone copy (multipart, parallel),
#   cp into and out of chute mount (when it exists), rclone mount and s3fs.
# TCP tools use CUBIC in the namespaces by default (CHUTE_WAN_CC; the script
# allows it in the host's list while it runs and puts the list back after).
# Then the fairness run: chute --policy fair, then low, against one iperf3
# TCP flow on the same bottleneck. Then the set-up run: many copies of a
# 1 KiB file across 100 ms, without loss and with 2%: what each command
# pays besides its bytes, as a distribution.
#
# Results: bench/results/wan-<date>.{json,md}, wan-latest.{json,md,svg},
# fair-<date>.{json,md}, fair-latest.{json,md,svg}, setup-<date>.{json,md},
# setup-latest.{json,md}, and BENCHMARKS.md's generated sections.
#
# Usage: scripts/bench-wan.sh [grid|fair|setup|all]   (default all)
# Settings (CHUTE_WAN_*, CHUTE_FAIR_*, CHUTE_SETUP_*): bench/out/bin/chutebench help. A
# quick run: CHUTE_WAN_SIZE=32M CHUTE_WAN_RTTS="0 100ms" CHUTE_WAN_LOSSES="0 2%"
# CHUTE_WAN_TIMEOUT=30s CHUTE_FAIR_SECONDS=10 make bench-wan
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. "$repo/bench/lib.sh"
what=${1:-all}
case $what in
grid | fair | setup | all) ;;
*)
	echo "usage: $0 [grid|fair|setup|all]" >&2
	exit 2
	;;
esac
bench_prepare
status=0
if [ "$what" = grid ] || [ "$what" = all ]; then
	bench/out/bin/chutebench wan || status=$?
fi
if [ "$what" = fair ] || [ "$what" = all ]; then
	bench/out/bin/chutebench fair || status=$?
fi
if [ "$what" = setup ] || [ "$what" = all ]; then
	bench/out/bin/chutebench setup || status=$?
fi
exit $status
