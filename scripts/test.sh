#!/usr/bin/env bash
# Sets up what the tests need, then runs every check and test: formatting, clippy, unit tests
# and the end-to-end tests, which mount real FUSE filesystems (root and /dev/fuse required) and
# offload to a real S3-compatible server (Garage, started on loopback by scripts/s3-server.sh;
# the scale-out test starts a 3-node Garage cluster behind haproxy of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
scripts/s3-server.sh install
command -v haproxy >/dev/null 2>&1 || scripts/apt-install.sh haproxy

s3dir=$(mktemp -d "${TMPDIR:-/tmp}/tierfs-s3.XXXXXX")
trap 'scripts/s3-server.sh stop "$s3dir"; rm -rf "$s3dir"' EXIT
scripts/s3-server.sh start "$s3dir"
# shellcheck disable=SC1091
. "$s3dir/env"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast "$@"
