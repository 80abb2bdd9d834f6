#!/usr/bin/env bash
# The bucket's catalog at scale, against a local S3 server (Garage from scripts/s3-server.sh):
#   - a bucket with TOPICS topics x SEGMENTS offloaded segments (default 100 x 1,000), written by
#     examples/catalog_bench.rs through tierfs's own catalog code (metadata only unless
#     --objects: `ls -R` never reads a segment's objects);
#   - time from `tierfs mount --read-only` to the first complete `ls -R` of the mount;
#   - requests made by one refresh of the unchanged bucket (the mount's own metrics);
#   - catalog bytes written by one offload in a topic that already has 100,000 segments, and in
#     one of 100 segments, for comparison: 512 offloads after 256 of warm-up, so that the window
#     holds checkpoints (every 128 commits at least) and the mean is the amortised cost.
# Usage: scripts/bench-catalog.sh [TOPICS SEGMENTS] [--objects]
set -euo pipefail
cd "$(dirname "$0")/.."
topics=100; segments=1000; objects=()
args=()
for a in "$@"; do
  case "$a" in
    --objects) objects=(--objects) ;;
    *) args+=("$a") ;;
  esac
done
[[ ${#args[@]} -ge 1 ]] && topics=${args[0]}
[[ ${#args[@]} -ge 2 ]] && segments=${args[1]}
scripts/setup.sh >/dev/null
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
scripts/s3-server.sh install
cargo build --release --locked -q
cargo build --release --locked -q --example catalog_bench
bench=target/release/examples/catalog_bench

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tierfs-bench-catalog.XXXXXX")
mnt="$work/mnt"; data="$work/data"; mkdir -p "$mnt" "$data"
unmount() {
  [[ -n "${pid:-}" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  pid=
  fusermount3 -u -z -q "$mnt" 2>/dev/null || true
}
cleanup() { unmount; scripts/s3-server.sh stop "$work/s3" || true; rm -rf "$work"; }
trap cleanup EXIT
scripts/s3-server.sh start "$work/s3" >/dev/null
. "$work/s3/env"
conf() {
  cat <<CONF
managedLedgerOffloadDriver=S3
managedLedgerOffloadBucket=$TIERFS_TEST_S3_BUCKET
managedLedgerOffloadServiceEndpoint=$TIERFS_TEST_S3_ENDPOINT
managedLedgerOffloadPrefix=$1
CONF
}
conf bench-catalog >"$work/broker.conf"
conf bench-cost-long >"$work/cost-long.conf"
conf bench-cost-short >"$work/cost-short.conf"
now() { date +%s.%N; }
metric() { curl -s "$(cat "$data/admin.addr")/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB; garage $(garage --version 2>/dev/null | head -n1 | awk '{ print $2 }')"
"$bench" populate --config "$work/broker.conf" --topics "$topics" --segments "$segments" "${objects[@]}"

refresh=2
start=$(now)
target/release/tierfs mount "$mnt" --read-only --data-dir "$data" --config "$work/broker.conf" \
  --refresh-interval "${refresh}s" --log warn 2>>"$work/tierfs.log" &
pid=$!
for _ in $(seq 600); do [[ -f "$data/admin.addr" ]] && break; sleep 0.05; done
files=$(ls -R "$mnt" | grep -c '\.seg$' || true)
end=$(now)
echo "time from 'tierfs mount --read-only' to the first complete 'ls -R': $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }') s ($files segments in $topics topics)"
[[ "$files" -eq $((topics * segments)) ]] || { echo "bench-catalog: ls -R showed $files segments, not $((topics * segments))" >&2; exit 1; }

sleep "$refresh"
r0=$(metric tierfs_catalog_requests_total); f0=$(metric tierfs_catalog_refreshes_total)
sleep $((refresh * 5 + 1))
r1=$(metric tierfs_catalog_requests_total); f1=$(metric tierfs_catalog_refreshes_total)
echo "idle refreshes: $((f1 - f0)), requests they made: $((r1 - r0)) ($(awk -v r=$((r1 - r0)) -v f=$((f1 - f0)) 'BEGIN { printf "%.2f", r / f }') per refresh, whatever the number of topics)"
unmount

"$bench" offload-cost --config "$work/cost-long.conf" --base 100000 --offloads 512
"$bench" offload-cost --config "$work/cost-short.conf" --base 100 --offloads 512
