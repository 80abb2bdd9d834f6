#!/usr/bin/env bash
# Installs the given Debian packages (through sudo when not root). Callers decide what is missing.
# Usage: scripts/apt-install.sh PACKAGE...
set -euo pipefail
(($#)) || exit 0
echo "installing $*"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@" >/dev/null
