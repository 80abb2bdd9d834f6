#!/usr/bin/env bash
# Offload throughput of a 256 MiB segment through tierfs, as a ratio to a plain multipart upload
# of the same bytes by another client (boto3, same part size and concurrency) to the same local
# S3 server (Garage, from scripts/s3-server.sh), in the same run. Median of RUNS (default 3).
# Usage: scripts/bench-offload.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
scripts/setup.sh >/dev/null
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
scripts/s3-server.sh install
cargo build --release --locked -q

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tierfs-bench-offload.XXXXXX")
mnt="$work/mnt"; data="$work/data"; mkdir -p "$mnt" "$data"
cleanup() {
  [[ -n "${pid:-}" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  fusermount3 -u -z -q "$mnt" 2>/dev/null || true
  scripts/s3-server.sh stop "$work/s3" || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/s3-server.sh start "$work/s3" >/dev/null
. "$work/s3/env"

venv="${XDG_CACHE_HOME:-$HOME/.cache}/tierfs-bench-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import boto3' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q boto3
fi

part=$((64 * 1024 * 1024)); threads=2; segment_mib=256
cat >"$work/broker.conf" <<CONF
managedLedgerMaxEntriesPerLedger=$segment_mib
managedLedgerMinLedgerRolloverTimeMinutes=0
managedLedgerOffloadDriver=S3
managedLedgerOffloadBucket=$TIERFS_TEST_S3_BUCKET
managedLedgerOffloadServiceEndpoint=$TIERFS_TEST_S3_ENDPOINT
managedLedgerOffloadPrefix=bench
managedLedgerOffloadMaxBlockSizeInBytes=$part
managedLedgerOffloadMaxThreads=$threads
CONF
target/release/tierfs mount "$mnt" --data-dir "$data" --config "$work/broker.conf" 2>"$work/tierfs.log" &
pid=$!
for _ in $(seq 100); do [[ -f "$data/admin.addr" ]] && break; sleep 0.1; done
admin() { target/release/tierfs admin --data-dir "$data" "$@"; }
mkdir -p "$mnt/bench/offload/topic"

tierfs_rates=(); boto_rates=()
for run in $(seq "$runs"); do
  # One segment of 256 entries of 1 MiB (dd's buffers are page-aligned: one write, one entry).
  dd if=/dev/urandom of="$mnt/bench/offload/topic/active" bs=1M count=$segment_mib oflag=append conv=notrunc status=none
  segment=$(printf '%020d' "$run")
  admin topics offload -s 0 bench/offload/topic >/dev/null
  admin topics offload-status -w bench/offload/topic >/dev/null
  seconds=$(grep "offload complete" "$work/tierfs.log" | grep "segment=$run " | sed -E 's/.*seconds=([0-9.]+).*/\1/' | tail -1)
  tierfs_rates+=("$(awk -v s="$seconds" -v m="$segment_mib" 'BEGIN { printf "%.1f", m / s }')")
  boto=$("$venv/bin/python" - "$data/topics/bench/offload/topic/$segment.seg" "$part" "$threads" "$run" <<'PY'
import os, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
path, part, threads, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s3 = boto3.client("s3", endpoint_url=os.environ["TIERFS_TEST_S3_ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))
cfg = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=threads)
start = time.monotonic()
s3.upload_file(path, os.environ["TIERFS_TEST_S3_BUCKET"], f"bench-boto3/{run}.seg", Config=cfg)
print(f"{os.path.getsize(path) / 1048576 / (time.monotonic() - start):.1f}")
PY
)
  boto_rates+=("$boto")
  echo "run $run: tierfs ${tierfs_rates[-1]} MiB/s, boto3 $boto MiB/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
t=$(median "${tierfs_rates[@]}"); b=$(median "${boto_rates[@]}")
echo "offload of a ${segment_mib} MiB segment (parts of $((part >> 20)) MiB, $threads at a time), median of $runs:"
awk -v t="$t" -v b="$b" 'BEGIN { printf "  tierfs offload %.1f MiB/s, boto3 multipart upload %.1f MiB/s, ratio %.2f\n", t, b, t / b }'
