#!/usr/bin/env bash
# The fulcrum demo: builds fulcrum, creates a namespace topology (a client, the load
# balancer, three HTTP backends on one bridge), starts fulcrum from configs/demo.yaml
# on net_af_packet, sends a few hundred curl requests through the VIP, prints how they
# were spread and fulcrum's counters, and tears everything down.
#
# usage: sudo scripts/demo.sh [CONFIG]   (default configs/demo.yaml)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
need_root
install_packages
setup_hugepages
CONFIG="${1:-configs/demo.yaml}"
REQUESTS="${DEMO_REQUESTS:-300}"
export FLC_PREFIX=flc

echo "== building fulcrum"
cargo build --release --bin fulcrum
BIN=target/release/fulcrum
$BIN --version
$BIN check -c "$CONFIG"

MODE=$(awk '/forwarding:/ {print $2; exit}' "$CONFIG")
EAL_PREFIX=$(grep -o -- '--file-prefix=[A-Za-z0-9_-]*' "$CONFIG" | head -1 | cut -d= -f2 || true)
echo "== topology (backends set up for ${MODE:-dsr})"
cleanup() {
  [ -n "${FPID:-}" ] && kill -INT "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null || true
  bash tests/netns/topo.sh down
  # the config's EAL --file-prefix: its hugepage files and the runtime directory DPDK
  # leaves behind (empty once fulcrum has stopped cleanly)
  if [ -n "$EAL_PREFIX" ]; then
    rm -rf "/dev/hugepages/$EAL_PREFIX"* "/var/run/dpdk/$EAL_PREFIX" 2>/dev/null || true
  fi
}
trap cleanup EXIT
bash tests/netns/topo.sh up "${MODE:-dsr}"

echo "== starting fulcrum"
LOG=$(mktemp /tmp/fulcrum-demo.XXXXXX.log)
ip netns exec flc-lb $BIN run -c "$CONFIG" >"$LOG" 2>&1 &
FPID=$!
for _ in $(seq 1 100); do grep -q "workers running" "$LOG" && break; sleep 0.1; done
grep -q "workers running" "$LOG" || { echo "fulcrum did not start:"; cat "$LOG"; exit 1; }

echo "== $REQUESTS requests to http://10.99.0.100/"
declare -A SEEN=()
FAIL=0
for i in $(seq 1 "$REQUESTS"); do
  if out=$(ip netns exec flc-cl curl -s -m 2 http://10.99.0.100/); then
    name=${out%% *}; SEEN[$name]=$(( ${SEEN[$name]:-0} + 1 ))
  else
    FAIL=$((FAIL + 1))
  fi
done
for k in $(printf '%s\n' "${!SEEN[@]}" | sort); do
  printf '  %-10s %4d requests (%d%%)\n' "$k" "${SEEN[$k]}" $(( SEEN[$k] * 100 / REQUESTS ))
done
echo "  failed     $FAIL"

echo "== the admin API's view (GET /api/services)"
ip netns exec flc-lb curl -s -m 3 http://127.0.0.1:9100/api/services | python3 -m json.tool || true

echo "== fulcrum counters"
kill -INT "$FPID"; wait "$FPID" || true; FPID=
cat "$LOG"
