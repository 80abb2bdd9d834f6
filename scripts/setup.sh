#!/usr/bin/env bash
# Installs what tierfs needs to build, mount and be tested on a fresh Debian machine:
# fuse3 (fusermount3 and the kernel's /dev/fuse user side), attr (getfattr, used by tests and
# docs), and checks the Rust toolchain. Safe to run again: it skips what is already there.
set -euo pipefail

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v getfattr >/dev/null 2>&1 || need_apt+=(attr)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
"$(dirname "$0")/apt-install.sh" ${need_apt[@]+"${need_apt[@]}"}

if [[ ! -e /dev/fuse ]]; then
  modprobe fuse 2>/dev/null || true
fi
[[ -e /dev/fuse ]] || { echo "setup: /dev/fuse is missing; this machine cannot mount FUSE filesystems" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1; then
  [[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
echo "setup: ok ($(fusermount3 --version 2>&1 | head -n1), $(cargo --version))"
