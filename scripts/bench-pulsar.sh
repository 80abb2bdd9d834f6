#!/usr/bin/env bash
# tierfs over a bucket written in Pulsar's offload format (tierfs mount --pulsar), against a
# local S3 server (Garage from scripts/s3-server.sh); the bucket is written by
# examples/pulsar_bench.rs through tierfs's writer of the format:
#   - cold sequential read (`cat`) of a SIZE ledger in 64 MiB blocks through a fresh mount,
#     against one raw GET of its data object, the page cache dropped before each (median of 3;
#     target >= 0.9x);
#   - `tierfs pulsar messages` throughput over that ledger (MB of entries per second), with the
#     ledger in the page cache and on a fresh mount with nothing cached;
#   - `ls -l` of every topic of a bucket of LEDGERS small ledgers (100 topics): on a fresh mount
#     (every index object read), then on a second mount with the same data directory (index
#     objects kept under <data-dir>/pulsar-index), each timed from `tierfs mount` on.
# Usage: scripts/bench-pulsar.sh [SIZE [LEDGERS]]   (defaults 256M 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-256M}; ledgers=${2:-10000}
scripts/setup.sh >/dev/null
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
scripts/s3-server.sh install
cargo build --release --locked -q
cargo build --release --locked -q --example pulsar_bench
bench=target/release/examples/pulsar_bench
tierfs=target/release/tierfs

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tierfs-bench-pulsar.XXXXXX")
mnt="$work/mnt"; mkdir -p "$mnt"
pid=
unmount() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
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
conf bench-pulsar-big >"$work/big.conf"
conf bench-pulsar-many >"$work/many.conf"
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mount_pulsar() { # CONFIG DATA-DIR
  "$tierfs" mount "$mnt" --pulsar --config "$1" --data-dir "$2" --log warn 2>>"$work/tierfs.log" &
  pid=$!
  for _ in $(seq 1200); do [[ -f "$2/admin.addr" ]] && return; sleep 0.05; done
  echo "bench-pulsar: the mount did not come up" >&2; cat "$work/tierfs.log" >&2; exit 1
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB; garage $(garage --version 2>/dev/null | head -n1 | awk '{ print $2 }')"
key=$("$bench" big --config "$work/big.conf" --size "$size" --block 64M)
file="$mnt/bench/default/persistent/big/00000000000000000001.ledger"
reads=(); raws=()
for run in 1 2 3; do
  data="$work/data-big-$run"; mkdir -p "$data"
  mount_pulsar "$work/big.conf" "$data"
  bytes=$(stat -c %s "$file")
  sync; echo 3 >/proc/sys/vm/drop_caches
  start=$(now)
  cat "$file" >/dev/null
  secs=$(since "$start")
  reads+=("$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1048576 }')")
  if [[ $run -eq 3 ]]; then
    start=$(now)
    "$tierfs" pulsar messages "$file" >/dev/null
    secs=$(since "$start")
    mps=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')
  fi
  unmount
  # The raw GET is as cold as the mount's read: without this, Garage would serve it from the
  # page cache the mount's read has just filled.
  sync; echo 3 >/proc/sys/vm/drop_caches
  raws+=("$("$bench" raw-get --config "$work/big.conf" --key "$key")")
done
# `messages` on a fresh mount, nothing cached anywhere: it reads the entry lengths first
# (every block walked for its layout), then the ledger file (every block streamed again).
data="$work/data-big-cold"; mkdir -p "$data"
mount_pulsar "$work/big.conf" "$data"
sync; echo 3 >/proc/sys/vm/drop_caches
start=$(now)
"$tierfs" pulsar messages "$file" >/dev/null
secs=$(since "$start")
cold_mps=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')
unmount
read_mib=$(printf '%s\n' "${reads[@]}" | median)
raw_mib=$(printf '%s\n' "${raws[@]}" | median)
echo "cold sequential read of a $size ledger (64 MiB blocks): tierfs $read_mib MiB/s, raw GET $raw_mib MiB/s, ratio $(awk -v a="$read_mib" -v b="$raw_mib" 'BEGIN { printf "%.2f", a / b }') (runs: ${reads[*]} / ${raws[*]})"
echo "tierfs pulsar messages: $mps MB/s of entries (16 KiB entries, warm page cache)"
echo "tierfs pulsar messages on a fresh mount (cold): $cold_mps MB/s of entries"

"$bench" many --config "$work/many.conf" --ledgers "$ledgers"
data="$work/data-many"; mkdir -p "$data"
for pass in "fresh mount" "second mount, same data directory"; do
  start=$(now)
  mount_pulsar "$work/many.conf" "$data"
  files=$(ls -l "$mnt"/bench/default/persistent/* | grep -c '\.ledger$' || true)
  echo "$pass: 'tierfs mount --pulsar' to a complete 'ls -l' of $files ledgers: $(since "$start") s"
  [[ "$files" -eq "$ledgers" ]] || { echo "bench-pulsar: ls -l showed $files ledgers, not $ledgers" >&2; exit 1; }
  unmount
done
