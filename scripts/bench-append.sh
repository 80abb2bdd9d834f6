#!/usr/bin/env bash
# Append throughput through a tierfs mount, as a ratio to plain appends to a local file on the
# same filesystem as the data directory, in the same run. Each write(2) is one entry.
# Usage: scripts/bench-append.sh [MiB per case, default 128]
# Prints one line per entry size: MiB/s through the mount, MiB/s plain, the ratio, and the
# microseconds one write(2) of one entry costs each way.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
cargo build --release --locked -q
total_mib=${1:-128}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tierfs-bench.XXXXXX")
mnt="$work/mnt"; data="$work/data"; mkdir -p "$mnt" "$data"
cleanup() {
  [[ -n "${pid:-}" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  fusermount3 -u -z -q "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Pulsar's default rollover (5000 entries, 2 GB, 2-240 min): segments seal during the run.
target/release/tierfs mount "$mnt" --data-dir "$data" --log warn 2>"$work/tierfs.log" &
pid=$!
for _ in $(seq 100); do [[ -f "$data/admin.addr" ]] && break; sleep 0.1; done
[[ -f "$data/admin.addr" ]] || { cat "$work/tierfs.log"; exit 1; }

# seconds to append COUNT entries of BS bytes to FILE with one write(2) each
timed_dd() {
  local file=$1 bs=$2 count=$3 start end
  sync
  start=$(date +%s.%N)
  dd if=/dev/zero of="$file" bs="$bs" count="$count" oflag=append conv=notrunc,fsync status=none
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.6f", e - s }'
}

printf '%-8s %10s %14s %12s %8s %16s %15s\n' entry entries "tierfs MiB/s" "plain MiB/s" ratio "tierfs us/write" "plain us/write"
for bs in 4096 1048576; do
  count=$(( total_mib * 1048576 / bs ))
  mkdir -p "$mnt/bench/append/size-$bs"
  t_mount=$(timed_dd "$mnt/bench/append/size-$bs/active" "$bs" "$count")
  t_plain=$(timed_dd "$data/plain-$bs" "$bs" "$count")
  awk -v bs="$bs" -v n="$count" -v tm="$t_mount" -v tp="$t_plain" -v mib="$total_mib" 'BEGIN {
    label = (bs >= 1048576) ? (bs / 1048576 "MiB") : (bs / 1024 "KiB");
    printf "%-8s %10d %14.1f %12.1f %8.2f %16.1f %15.1f\n", label, n, mib / tm, mib / tp, tp / tm, tm / n * 1e6, tp / n * 1e6
  }'
done
echo "(${total_mib} MiB per case, conv=fsync at the end of each; tierfs $(target/release/tierfs --version | cut -d' ' -f2), $(nproc) cores)"
