#!/usr/bin/env bash
# Sets up, builds and runs a tierfs mount on the embedded default: the local tier under the
# data directory. Usage: scripts/run.sh [MOUNTPOINT] [extra `tierfs mount` flags…]
# Stops with Ctrl-C (or `fusermount3 -u MOUNTPOINT`), flushing everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
mountpoint=${1:-/mnt/tierfs}
shift || true
cargo build --release --locked
mkdir -p "$mountpoint"
echo "run: mounting tierfs at $mountpoint (try: mkdir -p $mountpoint/public/default/my-topic && echo hello >> $mountpoint/public/default/my-topic/active)"
exec target/release/tierfs mount "$mountpoint" "$@"
