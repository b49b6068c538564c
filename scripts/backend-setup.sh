#!/usr/bin/env bash
# Prepares a backend host for a fulcrum forwarding mode. Run it as root ON THE BACKEND.
#
# usage: backend-setup.sh MODE VIP4 [VIP6] [--userspace-decap] [--run-dir DIR]
#   MODE: dsr | ipip | gue | nat
#
# What each mode needs, and why (the part most often got wrong with Katran-style LBs):
# - dsr, ipip, gue: the backend answers the client directly with the VIP as source address,
#   so the VIP must be a local address: it goes on `lo` as a /32 (/128). The backend must not
#   answer ARP for it (or it would steal the VIP from the load balancer):
#   arp_ignore=1 (answer only for addresses on the receiving interface) and arp_announce=2
#   (use the best local address, never the VIP, as ARP source). IPv6 neighbour discovery
#   answers only for addresses on the receiving interface, so a VIP on lo is silent.
# - ipip, gue: packets arrive encapsulated; the kernel decapsulates them (ipip / ip6_tunnel
#   modules for IPIP, fou for GUE on UDP 6080) and the inner packet, from the client to the
#   VIP, appears on the tunnel device. rp_filter must be off (0) or loose (2) on it and on
#   "all", because the client is not routed via the tunnel and strict reverse-path filtering
#   drops every packet.
# - nat: nothing: fulcrum rewrites the destination to the backend and the source to its own
#   address, so the backend answers fulcrum as it would any client.
# --userspace-decap: for test kernels without ipip/fou: start tests/netns/decap.py on a TUN
#   device instead of configuring kernel tunnels.
set -euo pipefail
MODE="${1:?mode: dsr|ipip|gue|nat}"; VIP4="${2:?VIP4}"; VIP6="${3:-}"
shift 2; [ -n "$VIP6" ] && shift
USERSPACE=0; RUN_DIR=/run/fulcrum-backend
while [ $# -gt 0 ]; do
  case "$1" in
    --userspace-decap) USERSPACE=1 ;;
    --run-dir) RUN_DIR="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GUE_PORT="${GUE_PORT:-6080}"

vip_on_lo() {
  ip addr replace "$VIP4/32" dev lo
  [ -n "$VIP6" ] && ip addr replace "$VIP6/128" dev lo
  sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  for dev in $(ls /sys/class/net); do
    sysctl -qw "net.ipv4.conf.$dev.arp_ignore=1" "net.ipv4.conf.$dev.arp_announce=2" 2>/dev/null || true
  done
}

rp_filter_off() {
  sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  for dev in $(ls /sys/class/net); do
    sysctl -qw "net.ipv4.conf.$dev.rp_filter=0" 2>/dev/null || true
  done
}

case "$MODE" in
  nat) ;;
  dsr) vip_on_lo ;;
  ipip|gue)
    vip_on_lo
    if [ "$USERSPACE" = 1 ]; then
      mkdir -p "$RUN_DIR"
      python3 "$HERE/../tests/netns/decap.py" fltun0 "$GUE_PORT" >"$RUN_DIR/decap.log" 2>&1 &
      echo $! > "$RUN_DIR/decap.pid"
      for _ in $(seq 1 50); do ip link show fltun0 >/dev/null 2>&1 && break; sleep 0.1; done
      ip link set fltun0 up
    elif [ "$MODE" = ipip ]; then
      modprobe ipip; modprobe ip6_tunnel
      ip link set tunl0 up
      ip link add fltun6 type ip6tnl mode any remote any local any 2>/dev/null || true
      ip link set fltun6 up 2>/dev/null || true
    else
      modprobe fou
      ip fou add port "$GUE_PORT" ipproto 4
      ip -6 fou add port "$GUE_PORT" ipproto 41 2>/dev/null || true
      ip link set tunl0 up
    fi
    rp_filter_off
    ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
echo "backend-setup: $MODE ready (VIP $VIP4${VIP6:+, $VIP6})"
