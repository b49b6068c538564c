#!/usr/bin/env bash
# The namespace topology of fulcrum's demo and integration tests.
#
#   ${P}-cl (client)    eth0 10.99.0.10/24  fd99::10/64
#   ${P}-lb (fulcrum)   lb0  10.99.0.2/24   fd99::2/64   (fulcrum drives lb0 with net_af_packet;
#                                                          the kernel addresses are not configured there)
#   ${P}-b1..b3         eth0 10.99.0.11-13  fd99::11-13  HTTP servers answering with their name
#   ${P}-sw             br0 joining them all
#
# usage: topo.sh up MODE [QPAIRS]   MODE = dsr | ipip | gue | nat   (how backends are set up)
#        topo.sh down
# Environment: FLC_PREFIX (default flc) names every namespace, so runs can be told apart.
set -euo pipefail
P="${FLC_PREFIX:-flc}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BACKENDS="${FLC_BACKENDS:-3}"
VIP4=10.99.0.100
VIP6=fd99::100
RUN_DIR="/run/fulcrum-netns/$P"

ns() { ip netns exec "$1" "${@:2}"; }

# One veth from the switch to namespace $1, named $2 inside it.
link() {
  local nsname="$1" ifname="$2" mac="$3" mtu="$4" swname="$5"
  ip link add "$swname" type veth peer name "$ifname" netns "$nsname"
  ip link set "$swname" netns "$P-sw"
  ns "$P-sw" ip link set "$swname" master br0 mtu "$mtu" up
  ns "$nsname" ip link set "$ifname" address "$mac" mtu "$mtu" up
  ns "$nsname" ip link set lo up
  # Packets must reach net_af_packet with finished checksums, and no GRO-merged giants.
  ns "$nsname" ethtool -K "$ifname" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  ns "$P-sw" ethtool -K "$swname" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
}

up() {
  local mode="$1" qpairs="${2:-1}"
  down >/dev/null 2>&1 || true
  mkdir -p "$RUN_DIR"
  for n in sw cl lb; do ip netns add "$P-$n"; done
  ns "$P-sw" ip link add br0 type bridge
  ns "$P-sw" ip link set br0 mtu 1600 up
  ns "$P-sw" ip link set lo up
  # fulcrum's port (several queues when asked, for net_af_packet qpairs)
  ip link add "$P-vlb" type veth peer name lb0 netns "$P-lb" numrxqueues "$qpairs" numtxqueues "$qpairs"
  ip link set "$P-vlb" netns "$P-sw"
  ns "$P-sw" ip link set "$P-vlb" master br0 mtu 1600 up
  ns "$P-lb" ip link set lb0 address 02:99:00:00:00:02 mtu 1600 up
  ns "$P-lb" ip link set lo up
  ns "$P-lb" ethtool -K lb0 tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  ns "$P-sw" ethtool -K "$P-vlb" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  ns "$P-lb" sysctl -qw net.ipv6.conf.lb0.disable_ipv6=1

  link "$P-cl" eth0 02:99:00:00:00:10 1500 "$P-vcl"
  ns "$P-cl" ip addr add 10.99.0.10/24 dev eth0
  ns "$P-cl" ip addr add fd99::10/64 dev eth0 nodad

  for i in $(seq 1 "$BACKENDS"); do
    local b="$P-b$i" host=$((10 + i))
    ip netns add "$b"
    link "$b" eth0 "02:99:00:00:00:$host" 1600 "$P-vb$i"
    ns "$b" ip addr add "10.99.0.$host/24" dev eth0
    ns "$b" ip addr add "fd99::$host/64" dev eth0 nodad
    ns "$b" "$ROOT/scripts/backend-setup.sh" "$mode" "$VIP4" "$VIP6" --userspace-decap --run-dir "$RUN_DIR/b$i"
    start_backend "$i"
  done
  # wait for the HTTP servers
  for i in $(seq 1 "$BACKENDS"); do
    for _ in $(seq 1 50); do
      ns "$P-b$i" bash -c "exec 3<>/dev/tcp/127.0.0.1/80" 2>/dev/null && break
      sleep 0.1
    done
  done
}

# The HTTP server of backend $1 (ip netns exec execs it, so $! is the server's pid).
start_backend() {
  local i="$1"
  ip netns exec "$P-b$i" python3 "$HERE/backend.py" "backend$i" 80 >>"$RUN_DIR/b$i.http.log" 2>&1 &
  echo $! > "$RUN_DIR/b$i.http.pid"
}

stop_backend() {
  local f="$RUN_DIR/b$1.http.pid"
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
}

down() {
  if [ -d "$RUN_DIR" ]; then
    for f in "$RUN_DIR"/*.pid "$RUN_DIR"/*/*.pid; do
      [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$RUN_DIR"
  fi
  for n in $(ip netns list | awk '{print $1}' | grep -E "^$P-(sw|cl|lb|b[0-9]+)$" || true); do
    # kill anything still running inside, then remove
    ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
}

case "${1:-}" in
  up) up "${2:?mode}" "${3:-1}" ;;
  down) down ;;
  stop-backend) stop_backend "${2:?backend number}" ;;
  start-backend)
    start_backend "${2:?backend number}"
    for _ in $(seq 1 50); do
      ip netns exec "$P-b$2" bash -c "exec 3<>/dev/tcp/127.0.0.1/80" 2>/dev/null && break
      sleep 0.1
    done ;;
  *) echo "usage: $0 up MODE [QPAIRS] | down | stop-backend N | start-backend N" >&2; exit 2 ;;
esac
