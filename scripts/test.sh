#!/usr/bin/env bash
# Sets up what the tests need, then runs every check and test: formatting, clippy, unit tests
# and the end-to-end tests, which mount real FUSE filesystems (root and /dev/fuse required).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast "$@"
