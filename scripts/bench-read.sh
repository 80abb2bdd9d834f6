#!/usr/bin/env bash
# Read path of offloaded segments, all figures from one run against the same local S3 server
# (Garage from scripts/s3-server.sh):
#   - cold sequential read of a 256 MiB offloaded segment through the mount, vs a raw ranged GET
#     of the same object with curl (the limit on this machine);
#   - warm re-read (tierfs's caches and the kernel's page cache);
#   - 1,000 random 4 KiB preads, cold and warm;
#   - `ls -l` of a topic with 10,000 offloaded segments, and the GETs it caused;
#   - peak RSS of the mount against its configured budget.
# Usage: scripts/bench-read.sh [segment MiB, default 256]
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-256}
scripts/setup.sh >/dev/null
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
scripts/s3-server.sh install
cargo build --release --locked -q

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tierfs-bench-read.XXXXXX")
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

cache_size=8M; readahead=24M # the defaults
cat >"$work/broker.conf" <<CONF
managedLedgerMaxEntriesPerLedger=$mib
managedLedgerMinLedgerRolloverTimeMinutes=0
managedLedgerOffloadDeletionLagMs=0
managedLedgerOffloadDriver=S3
managedLedgerOffloadBucket=$TIERFS_TEST_S3_BUCKET
managedLedgerOffloadServiceEndpoint=$TIERFS_TEST_S3_ENDPOINT
managedLedgerOffloadPrefix=bench-read
CONF
mount_tierfs() {
  rm -rf "$data/cache" # every mount starts cold: the disk cache (on by default) emptied
  target/release/tierfs mount "$mnt" --data-dir "$data" --config "$work/broker.conf" \
    --cache-size "$cache_size" --readahead-budget "$readahead" --log warn 2>>"$work/tierfs.log" &
  pid=$!
  for _ in $(seq 100); do [[ -f "$data/admin.addr" ]] && break; sleep 0.1; done
}
admin() { target/release/tierfs admin --data-dir "$data" "$@"; }
now() { date +%s.%N; }
rate() { awk -v m="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.1f", m / (e - s) }'; }

mount_tierfs
topic="$mnt/bench/read/big"
mkdir -p "$topic"
dd if=/dev/urandom of="$topic/active" bs=1M count="$mib" oflag=append conv=notrunc status=none
admin topics offload -s 0 bench/read/big >/dev/null
admin topics offload-status -w bench/read/big >/dev/null
segment="$topic/00000000000000000001.seg"
for _ in $(seq 100); do [[ "$(getfattr --absolute-names --only-values -n user.tierfs.local "$segment" 2>/dev/null)" == no ]] && break; sleep 0.1; done
key=$(getfattr --absolute-names --only-values -n user.tierfs.object "$segment" | sed -E 's#^s3://[^/]+/##')

# The limit: one ranged GET of the whole object with curl (SigV4), into /dev/null.
sync; echo 3 >/proc/sys/vm/drop_caches
t0=$(now)
curl -sf -o /dev/null --aws-sigv4 "aws:amz:$TIERFS_TEST_S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
  -H "Range: bytes=0-$((mib * 1048576 - 1))" "$TIERFS_TEST_S3_ENDPOINT/$TIERFS_TEST_S3_BUCKET/$key"
t1=$(now)
raw=$(rate "$mib" "$t0" "$t1")

# Cold: a fresh mount (empty caches) and no page cache.
unmount; echo 3 >/proc/sys/vm/drop_caches; mount_tierfs
t0=$(now); cat "$segment" >/dev/null; t1=$(now)
cold=$(rate "$mib" "$t0" "$t1")
t0=$(now); cat "$segment" >/dev/null; t1=$(now)
warm=$(rate "$mib" "$t0" "$t1")
# Warm without the kernel's page cache: tierfs's own memory cache only.
echo 3 >/proc/sys/vm/drop_caches
t0=$(now); cat "$segment" >/dev/null; t1=$(now)
warm_tierfs=$(rate "$mib" "$t0" "$t1")
rss_seq=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status")

# 1,000 random 4 KiB preads: cold (fresh mount) and warm (same offsets again).
unmount; echo 3 >/proc/sys/vm/drop_caches; mount_tierfs
preads() {
  python3 - "$segment" <<'PY'
import os, random, statistics, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
rng = random.Random(42)
lat = []
start = time.monotonic()
for _ in range(1000):
    at = rng.randrange(0, size - 4096) & ~4095
    t = time.monotonic(); os.pread(fd, 4096, at); lat.append(time.monotonic() - t)
total = time.monotonic() - start
lat.sort()
print(f"{total:.2f} s total, p50 {lat[500] * 1000:.2f} ms, p99 {lat[990] * 1000:.2f} ms")
PY
}
cold_random=$(preads)
warm_random=$(preads)
rss_random=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status")
unmount

# ls -l of 10,000 offloaded segments: a topic whose manifest lists them (local copies gone).
python3 - "$data/topics/bench/read" <<'PY'
import json, os, sys, time
root = os.path.join(sys.argv[1], "many")
os.makedirs(root, exist_ok=True)
now = int(time.time() * 1000)
sealed = [{"id": i, "entries": 1, "size": 1024, "crc32c": 0, "created_ms": now, "sealed_ms": now,
           "local": False,
           "offload": {"uuid": "u", "data_key": f"bench-read/bench/read/many/{i:020}-u.seg",
                       "index_key": f"bench-read/bench/read/many/{i:020}-u.idx",
                       "started_ms": now, "completed_ms": now}}
          for i in range(1, 10001)]
manifest = {"format": 1, "topic": "bench/read/many", "created_ms": now, "sealed": sealed,
            "active": {"id": 10001, "created_ms": now}}
with open(os.path.join(root, "manifest.json"), "w") as f:
    json.dump(manifest, f)
open(os.path.join(root, "00000000000000010001.seg"), "wb").close()
with open(os.path.join(root, "00000000000000010001.idx"), "wb") as f:
    f.write(b"TFSEGIDX" + (1).to_bytes(4, "little") + bytes(4))
PY
mount_tierfs
gets() { curl -s "$(cat "$data/admin.addr")/metrics" | awk '/^tierfs_store_get_requests_total / { print $2 }'; }
before=$(gets)
t0=$(now); n=$(ls -l "$mnt/bench/read/many" | wc -l); t1=$(now)
t2=$(now); ls -l "$mnt/bench/read/many" >/dev/null; t3=$(now)
after=$(gets)
ls_cold=$(awk -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", e - s }')
ls_warm=$(awk -v s="$t2" -v e="$t3" 'BEGIN { printf "%.3f", e - s }')
unmount

mib_of() { local v=${1%[Mm]}; echo "$v"; } # the sizes above are given in M
budget=$(( $(mib_of "$cache_size") + $(mib_of "$readahead") ))
cat <<REPORT
read path, ${mib} MiB offloaded segment, Garage on loopback, $(nproc) cores (tierfs --cache-size $cache_size --readahead-budget $readahead):
  raw ranged GET (curl)         $raw MiB/s
  cold sequential (cat)         $cold MiB/s   ($(awk -v a="$cold" -v b="$raw" 'BEGIN { printf "%.0f", 100 * a / b }') % of the raw GET)
  warm re-read, page cache      $warm MiB/s   ($(awk -v a="$warm" -v b="$raw" 'BEGIN { printf "%.1f", a / b }')x the raw GET)
  warm re-read, tierfs cache    $warm_tierfs MiB/s   ($(awk -v a="$warm_tierfs" -v b="$raw" 'BEGIN { printf "%.1f", a / b }')x the raw GET)
  1,000 random 4 KiB preads     cold: $cold_random
                                warm: $warm_random
  ls -l, 10,000 segments        $((n - 1)) entries, ${ls_cold} s cold, ${ls_warm} s warm, $((${after%.*} - ${before%.*})) GETs
  peak RSS                      ${rss_seq} MiB after the sequential reads, ${rss_random} MiB after the random ones (budget: ${cache_size} cache + ${readahead} read-ahead = ${budget} MiB, plus the process)
REPORT
