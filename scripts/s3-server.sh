#!/usr/bin/env bash
# A real S3-compatible server (Garage) on loopback for tests and benchmarks.
#
#   scripts/s3-server.sh install        install garage 2.5.0 from crates.io unless it is there
#   scripts/s3-server.sh start DIR      configure and start a single-node server under DIR, create
#                                       the access key and buckets, write DIR/env (shell exports)
#   scripts/s3-server.sh stop DIR       stop it
#   scripts/s3-server.sh resume DIR     start a stopped server again, with its data
#   scripts/s3-server.sh start-cluster DIR [N]
#                                       N Garage nodes (default 3, replication_factor = N) on
#                                       loopback behind haproxy (installed if missing), as
#                                       production clusters are run; DIR/env as for `start`, its
#                                       endpoint the load balancer
#   scripts/s3-server.sh kill-node DIR I    SIGKILL node I (1-based) of a cluster
#   scripts/s3-server.sh stop-cluster DIR   stop every node and the load balancer
#
# DIR/env exports TIERFS_TEST_S3_ENDPOINT, TIERFS_TEST_S3_REGION, TIERFS_TEST_S3_BUCKET,
# TIERFS_TEST_S3_OSS_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (test-only credentials).
# Virtual-hosted style (needed by the aliyun-oss driver) uses root_domain ".localhost" and one
# /etc/hosts line per bucket, which `start` adds when it may.
set -euo pipefail

GARAGE_VERSION=2.5.0
REGION=us-east-1
BUCKET=tierfs-test
OSS_BUCKET=tierfs-oss
# Test-only credentials for a server that listens on loopback only.
KEY_ID=GK0123456789abcdef01234567
KEY_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
export PATH="$HOME/.cargo/bin:$PATH"

install() {
  if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    return 0
  fi
  echo "s3-server: installing garage $GARAGE_VERSION from crates.io (about 10 minutes on 2 cores)"
  cargo install "garage@$GARAGE_VERSION" --locked --no-default-features \
    --features bundled-libs,lmdb,sqlite --quiet
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Ports of servers that may come back (`stop` then `resume`) stay theirs: a claim file per S3
# port names the server's directory, and a port whose claim names a directory that still exists
# is passed over even while it is free. (Tests stop one server while others start.)
CLAIMS=${TMPDIR:-/tmp}/tierfs-s3-ports
claimed() {
  local owner
  owner=$(cat "$CLAIMS/$1" 2>/dev/null) || return 1
  [[ -d "$owner" ]]
}

# The S3 port (and the RPC port after it) for the server in directory $1: TIERFS_TEST_S3_PORT,
# or the first free, unclaimed pair from 3900.
pick_ports() {
  if [[ -n "${TIERFS_TEST_S3_PORT:-}" ]]; then
    S3_PORT=$TIERFS_TEST_S3_PORT
  else
    S3_PORT=3900
    while claimed "$S3_PORT" || ! port_free "$S3_PORT" || ! port_free $((S3_PORT + 1)); do
      S3_PORT=$((S3_PORT + 2))
      ((S3_PORT < 4100)) || { echo "s3-server: no free port pair in 3900-4100" >&2; exit 1; }
    done
  fi
  RPC_PORT=$((S3_PORT + 1))
  mkdir -p "$CLAIMS"
  echo "$1" >"$CLAIMS/$S3_PORT"
}

start() {
  local dir=$1
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  pick_ports "$dir"
  node_config "$dir" "$S3_PORT" "$RPC_PORT" 1 "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  local g=(garage -c "$dir/garage.toml")
  "${g[@]}" server >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    "${g[@]}" status >/dev/null 2>&1 && break
    sleep 0.1
  done
  local node
  node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1)
  [[ -n "$node" ]] || { cat "$dir/server.log" >&2; echo "s3-server: garage did not start" >&2; exit 1; }
  "${g[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null
  "${g[@]}" layout apply --version 1 >/dev/null
  "${g[@]}" key import --yes -n tierfs "$KEY_ID" "$KEY_SECRET" >/dev/null
  for bucket in "$BUCKET" "$OSS_BUCKET"; do
    "${g[@]}" bucket create "$bucket" >/dev/null
    "${g[@]}" bucket allow --read --write --owner "$bucket" --key tierfs >/dev/null
    if ! grep -q "[[:space:]]$bucket.localhost\$" /etc/hosts 2>/dev/null; then
      echo "127.0.0.1 $bucket.localhost" >>/etc/hosts 2>/dev/null ||
        echo "s3-server: cannot add $bucket.localhost to /etc/hosts; virtual-hosted requests will fail" >&2
    fi
  done
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" || true)
    [[ "$code" == "403" || "$code" == "200" ]] && break
    sleep 0.1
  done
  cat >"$dir/env" <<ENV
export TIERFS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export TIERFS_TEST_S3_VHOST_ENDPOINT=http://localhost:$S3_PORT
export TIERFS_TEST_S3_REGION=$REGION
export TIERFS_TEST_S3_BUCKET=$BUCKET
export TIERFS_TEST_S3_OSS_BUCKET=$OSS_BUCKET
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$KEY_SECRET
export AWS_REGION=$REGION
export AWS_EC2_METADATA_DISABLED=true
ENV
  echo "s3-server: garage $GARAGE_VERSION serving http://localhost:$S3_PORT (buckets $BUCKET, $OSS_BUCKET); env in $dir/env"
}

# Starts a stopped server again with its data (for tests that take the store away and back).
resume() {
  local dir=$1
  garage -c "$dir/garage.toml" server >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  . "$dir/env"
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$TIERFS_TEST_S3_ENDPOINT/" || true)
    [[ "$code" == "403" || "$code" == "200" ]] && return 0
    sleep 0.1
  done
  echo "s3-server: garage did not come back" >&2
  exit 1
}

# Writes a Garage configuration for one node under $1 (S3 port $2, RPC port $3, replication $4,
# shared RPC secret $5).
node_config() {
  local dir=$1 s3=$2 rpc=$3 replication=$4 secret=$5
  mkdir -p "$dir/meta" "$dir/data"
  cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = $replication
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".localhost"
TOML
}

start_cluster() {
  local dir=$1 nodes=${2:-3}
  install
  command -v haproxy >/dev/null 2>&1 || "$(dirname "$0")/apt-install.sh" haproxy
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local secret
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local ids=() first_rpc="" backends=""
  for i in $(seq "$nodes"); do
    mkdir -p "$dir/node$i"
    pick_ports "$dir/node$i"
    node_config "$dir/node$i" "$S3_PORT" "$RPC_PORT" "$nodes" "$secret"
    garage -c "$dir/node$i/garage.toml" server >"$dir/node$i/server.log" 2>&1 &
    echo $! >"$dir/node$i/pid"
    for _ in $(seq 100); do
      garage -c "$dir/node$i/garage.toml" status >/dev/null 2>&1 && break
      sleep 0.1
    done
    ids+=("$(garage -c "$dir/node$i/garage.toml" node id -q 2>/dev/null)")
    [[ -n "${ids[-1]}" ]] || { cat "$dir/node$i/server.log" >&2; echo "s3-server: node $i did not start" >&2; exit 1; }
    backends+="    server node$i 127.0.0.1:$S3_PORT check inter 300ms fall 2 rise 2"$'\n'
    [[ -n "$first_rpc" ]] || first_rpc=$RPC_PORT
  done
  local g=(garage -c "$dir/node1/garage.toml")
  for i in $(seq 2 "$nodes"); do
    "${g[@]}" node connect "${ids[$((i - 1))]}" >/dev/null
  done
  for i in $(seq "$nodes"); do
    "${g[@]}" layout assign -z "dc$i" -c 1G "$(cut -d@ -f1 <<<"${ids[$((i - 1))]}")" >/dev/null
  done
  "${g[@]}" layout apply --version 1 >/dev/null
  "${g[@]}" key import --yes -n tierfs "$KEY_ID" "$KEY_SECRET" >/dev/null
  "${g[@]}" bucket create "$BUCKET" >/dev/null
  "${g[@]}" bucket allow --read --write --owner "$BUCKET" --key tierfs >/dev/null
  # The load balancer: its own free port.
  local lb=4200
  while ! port_free "$lb"; do lb=$((lb + 1)); done
  cat >"$dir/haproxy.cfg" <<CFG
global
    maxconn 1024
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
frontend s3
    bind 127.0.0.1:$lb
    default_backend garage
backend garage
    balance roundrobin
$backends
CFG
  haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid" >"$dir/haproxy.log" 2>&1
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lb/" || true)
    [[ "$code" == "403" || "$code" == "200" ]] && break
    sleep 0.1
  done
  cat >"$dir/env" <<ENV
export TIERFS_TEST_S3_ENDPOINT=http://127.0.0.1:$lb
export TIERFS_TEST_S3_REGION=$REGION
export TIERFS_TEST_S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$KEY_SECRET
export AWS_REGION=$REGION
export AWS_EC2_METADATA_DISABLED=true
ENV
  echo "s3-server: $nodes garage nodes (replication $nodes) behind haproxy at http://127.0.0.1:$lb; env in $dir/env"
}

kill_node() {
  local dir=$1 i=$2
  [[ -f "$dir/node$i/pid" ]] || { echo "s3-server: no node $i in $dir" >&2; exit 2; }
  kill -9 "$(cat "$dir/node$i/pid")" 2>/dev/null || true
  rm -f "$dir/node$i/pid"
}

stop_cluster() {
  local dir=$1
  for pidfile in "$dir"/node*/pid "$dir/haproxy.pid"; do
    [[ -f "$pidfile" ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

stop() {
  local dir=$1
  if [[ -f "$dir/pid" ]]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$dir/pid")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?usage: s3-server.sh start DIR}" ;;
  stop) stop "${2:?usage: s3-server.sh stop DIR}" ;;
  resume) resume "${2:?usage: s3-server.sh resume DIR}" ;;
  start-cluster) start_cluster "${2:?usage: s3-server.sh start-cluster DIR [N]}" "${3:-3}" ;;
  kill-node) kill_node "${2:?usage: s3-server.sh kill-node DIR I}" "${3:?usage: s3-server.sh kill-node DIR I}" ;;
  stop-cluster) stop_cluster "${2:?usage: s3-server.sh stop-cluster DIR}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR | resume DIR | start-cluster DIR [N] | kill-node DIR I | stop-cluster DIR" >&2; exit 2 ;;
esac
