#!/usr/bin/env bash
# Per-core packet-processing benchmarks: fulcrum against dpdk-testpmd on the same harness.
#
# usage: sudo bench/run.sh [--quick] [--repeat N] [--out DIR] [--only REGEX]
#   --only REGEX keeps the scenarios whose name matches (grep -E), e.g. --only 'est-10k'.
#
# For every scenario pcap (bench/gen_pcap.py) this replays the file in memory with
# net_pcap's infinite_rx on ONE forwarding lcore (lcore 1; lcore 0 is the EAL main lcore)
# and reads the packet rate from DPDK's ethdev counters over the telemetry socket
# (bench/ethstats.py, the same counters `dpdk-telemetry.py -f PREFIX` shows):
#   - baseline: dpdk-testpmd --forward-mode=io and --forward-mode=macswap
#   - fulcrum:  `fulcrum run -c CONFIG` with forwarding ipip, dsr and nat (run_fulcrum below);
#               reported as "not measured (binary not ready)" while `fulcrum run` cannot start.
# Then bench/report.py writes RESULTS.md, results.json and SVG plots.
#
#   full (default): 2 s warm-up + 10 s per figure, 3 repetitions (median), baseline and fulcrum
#                   alternating, into bench/results/ (committed)
#   --quick:        0.5 s warm-up + 3 s per figure, into bench/results/quick/ (not committed);
#                   exits non-zero unless every figure was produced and is nonzero. For CI.
#
# Environment:
#   FULCRUM_BENCH=auto|off|require   auto (default): measure fulcrum if it starts, else report it
#                                    not measured; require: fail when it cannot be measured.
#   FULCRUM_BIN=PATH                 the fulcrum binary (default: target/release/fulcrum, then
#                                    $CARGO_TARGET_DIR/release/fulcrum)
#   BENCH_HUGEPAGES=N                2 MiB hugepages to make sure are reserved (default 2048)
#   MEMIF_FLOWS=N, MEMIF_MAX_LOSS=F  flows of the memif generator (10000), loss share still "lossless" (0.001)
#   MEMIF_SYSTEMS="testpmd-io fulcrum-ipip"  the memif systems to measure (default: testpmd io and
#                                    macswap, fulcrum ipip, dsr and nat; quick: ipip only)
#   MEMIF_ROUNDS=N                   rounds of the latency target's pair, testpmd io then fulcrum
#                                    ipip, back to back (default 5, quick 1); the other systems run
#                                    in round 1 only. The target is judged on the rounds' median.
#
# Needs root (hugepages, DPDK). Leaves no hugepage files: every process uses
# --file-prefix=flcbench-* with --huge-unlink, and /dev/hugepages/flcbench-* and
# /var/run/dpdk/flcbench-* are removed on exit. The hugepage reservation itself is left
# in place (other engineers' DPDK runs may rely on it).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
PCAP_DIR="$BENCH_DIR/results/tmp/pcaps"
WORK_DIR="$BENCH_DIR/results/tmp/run"

QUICK=0
REPEAT=""
OUT_DIR=""
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --repeat) REPEAT="$2"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  WARMUP=0.5; DURATION=3; MODE_NAME=quick; REPEAT="${REPEAT:-1}"
  MEMIF_TRIAL=0.5; MEMIF_LAT=1; MEMIF_STEPS=4; IDLE_SECONDS=3; MEMIF_ROUNDS="${MEMIF_ROUNDS:-1}"
  OUT_DIR="${OUT_DIR:-$BENCH_DIR/results/quick}"
else
  WARMUP=2; DURATION=10; MODE_NAME=full; REPEAT="${REPEAT:-3}"
  MEMIF_TRIAL=1; MEMIF_LAT=5; MEMIF_STEPS=8; IDLE_SECONDS=10; MEMIF_ROUNDS="${MEMIF_ROUNDS:-5}"
  OUT_DIR="${OUT_DIR:-$BENCH_DIR/results}"
fi
FULCRUM_BENCH="${FULCRUM_BENCH:-auto}"
MEMIF_FLOWS="${MEMIF_FLOWS:-10000}"
MEMIF_MAX_LOSS="${MEMIF_MAX_LOSS:-0.001}"
# Scheduling of the two memif processes: nice (default, nice -n -10: the poll threads get
# most of their CPU against compile jobs), rt (chrt -f 1: no preemption by normal tasks;
# needs spare CPUs: on two, the FIFO forwarding thread starves the forwarder's own control
# threads on CPU 1 and the memif link never comes up) or none.
case "${MEMIF_PRIO:-nice}" in
  rt) MEMIF_RUN=(chrt -f 1) ;;
  none) MEMIF_RUN=() ;;
  *) MEMIF_RUN=(nice -n -10) ;;
esac

# name | gen_pcap.py arguments | what it models
ALL_SCENARIOS=(
  "est-10k-64|--flows 10000 --packets 100000 --size 64|10k established flows, 64-byte frames"
  "est-10k-512|--flows 10000 --packets 100000 --size 512|10k established flows, 512-byte frames"
  "est-1m-64|--flows 1000000 --packets 1000000 --size 64|1M established flows, 64-byte frames"
  "est-1m-512|--flows 1000000 --packets 1000000 --size 512|1M established flows, 512-byte frames"
  "est6-10k-78|--ipv6 --flows 10000 --packets 100000 --size 78|10k established IPv6 flows, 78-byte frames (the smallest Ethernet/IPv6/TCP frame)"
  "synflood-64|--syn-flood --packets 1000000 --size 64|SYN flood: every packet a SYN of a new flow (1M distinct tuples per replay)"
  "malformed10-64|--flows 10000 --packets 100000 --size 64 --malformed-pct 10|10k flows, 64-byte frames, 10% malformed"
)
SCENARIOS=()
for s in "${ALL_SCENARIOS[@]}"; do
  if [ -z "$ONLY" ] || echo "${s%%|*}" | grep -Eq -- "$ONLY"; then SCENARIOS+=("$s"); fi
done
if [ "${#SCENARIOS[@]}" -eq 0 ] && ! echo "memif idle" | grep -Eq -- "$ONLY"; then echo "bench: no scenario matches --only $ONLY" >&2; exit 2; fi
TESTPMD_MODES=(io macswap)
FULCRUM_MODES=(ipip dsr nat)

# Full mode measures every forwarding mode on every scenario. Quick mode keeps CI near two
# minutes once fulcrum runs (each figure costs ~5.5 s: start, pcap load, 0.5 + 3 s, stop):
# ipip on every scenario, dsr and nat on est-10k-64 only.
fulcrum_modes_for() {
  if [ "$QUICK" = 1 ] && [ "$1" != est-10k-64 ]; then echo ipip; else echo "${FULCRUM_MODES[@]}"; fi
}

log() { echo "bench: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "run as root (hugepages and DPDK need it)"; exit 1
fi
for tool in dpdk-testpmd python3 git; do
  command -v "$tool" >/dev/null || { log "missing $tool (Debian: dpdk-dev, python3, git)"; exit 1; }
done

# ---------------------------------------------------------------- cleanup
CHILD_PIDS=()
cleanup() {
  local pid
  for pid in "${CHILD_PIDS[@]}"; do
    kill -INT "$pid" 2>/dev/null || true
  done
  for pid in "${CHILD_PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f /dev/hugepages/flcbench-* 2>/dev/null || true
  rm -rf /var/run/dpdk/flcbench-* 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- hugepages
setup_hugepages() {
  local want="${BENCH_HUGEPAGES:-2048}" have
  have=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
  if [ "${have:-0}" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
  fi
  if ! mount | grep -q "type hugetlbfs"; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages
  fi
  log "hugepages: $(awk '/HugePages_Total/ {t=$2} /HugePages_Free/ {f=$2} END {print t" reserved, "f" free"}' /proc/meminfo) (2 MiB)"
}

free_hugepage_mib() { awk '/HugePages_Free/ {print $2 * 2}' /proc/meminfo; }

# ---------------------------------------------------------------- pcaps
scenario_field() { echo "$1" | cut -d'|' -f"$2"; }

pcap_for() { echo "$PCAP_DIR/$1.pcap"; }

generate_pcaps() {
  mkdir -p "$PCAP_DIR"
  local s name args pcap
  for s in "${SCENARIOS[@]}"; do
    name=$(scenario_field "$s" 1); args=$(scenario_field "$s" 2)
    pcap=$(pcap_for "$name")
    # Regenerate when missing, or when the generator or its arguments changed.
    if [ -f "$pcap" ] && [ "$pcap" -nt "$BENCH_DIR/gen_pcap.py" ] && [ "$(cat "$pcap.args" 2>/dev/null)" = "$args" ]; then
      continue
    fi
    log "generating $name ($args)"
    # shellcheck disable=SC2086
    python3 "$BENCH_DIR/gen_pcap.py" -q -o "$pcap" $args
    echo "$args" > "$pcap.args"
  done
}

# Packets in a pcap file: the generator writes fixed-size records, but count them properly.
pcap_packets() {
  python3 - "$1" <<'EOF'
import struct, sys
n = 0
with open(sys.argv[1], "rb") as f:
    f.read(24)
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        incl = struct.unpack("<IIII", h)[2]
        f.seek(incl, 1)
        n += 1
print(n)
EOF
}

# Largest frame in a scenario: 60 or 508 bytes (gen_pcap.py --size minus the FCS).
# fulcrum_mtu FRAME FAMILY: the port MTU for frames of FRAME bytes: the IP packet plus 48
# bytes for any encapsulation, and at least 1280 (the IPv6 minimum) for v6
fulcrum_mtu() {
  local mtu=$(( $1 - 14 + 48 ))
  if [ "$2" = v6 ] && [ "$mtu" -lt 1280 ]; then mtu=1280; fi
  echo "$mtu"
}

# fulcrum_data_room FRAME FAMILY: dpdk.mbuf_data_room for that MTU: fulcrum's 154 bytes of
# headroom (where encapsulation goes), Ethernet/VLAN headers and FCS, rounded up to 64
fulcrum_data_room() {
  local mtu; mtu=$(fulcrum_mtu "$1" "$2")
  echo $(( (mtu + 154 + 63) / 64 * 64 ))
}

family_for() {
  case "$1" in est6-*) echo v6 ;; *) echo v4 ;; esac
}

frame_len_for() {
  case "$1" in *-512) echo 508 ;; *-78) echo 74 ;; *) echo 60 ;; esac
}

# ---------------------------------------------------------------- measurement
# measure PREFIX PID LOGFILE -> JSON line on stdout, or nothing (status 1)
# measure PREFIX PID [THREAD_REGEX] (default: the EAL lcore thread rte-worker-1)
measure() {
  local prefix="$1" pid="$2" thread="${3:-^(rte|lcore)-worker-1\$}"
  python3 "$BENCH_DIR/ethstats.py" --prefix "$prefix" --pid "$pid" --thread "$thread" \
    --warmup "$WARMUP" --duration "$DURATION" --timeout 90
}

stop_process() {
  local pid="$1" i
  kill -INT "$pid" 2>/dev/null || true
  for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=()
  for i in "${CHILD_PIDS[@]}"; do [ "$i" = "$pid" ] || keep+=("$i"); done
  CHILD_PIDS=("${keep[@]+"${keep[@]}"}")
  rm -f /dev/hugepages/flcbench-* 2>/dev/null || true
  rm -rf /var/run/dpdk/flcbench-* 2>/dev/null || true
}

record() { echo "$1" >> "$WORK_DIR/results.jsonl"; }

rate_line() {
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f Mpps per core-second (%.1f ns/packet); wall %.2f Mpps rx, %.2f tx; core share %.2f" % (d.get("rx_pps_cpu",0)/1e6, 1e9/d["rx_pps_cpu"] if d.get("rx_pps_cpu") else 0, d["rx_pps"]/1e6, d["tx_pps"]/1e6, d.get("cpu_share",0)))' "$1"
}

# run_testpmd SCENARIO PCAP MODE [TX_DEVARGS] [SYSTEM_NAME]
# The net_pcap vdev: rx_pcap replayed from memory (infinite_rx=1); no tx stream, so the
# PMD's tx-drop queue frees every transmitted mbuf (the cheapest transmit; compared with
# tx_pcap=/dev/null and tx_iface=<veth> in the full run, see RESULTS.md).
run_testpmd() {
  local scenario="$1" pcap="$2" mode="$3" tx="${4-}" system="${5:-testpmd-$3}"
  local packets frame mbuf_size mbufs need_mib prefix logf pid json
  packets=$(pcap_packets "$pcap")
  frame=$(frame_len_for "$scenario")
  # Data room = 128 bytes of headroom + the frame rounded up to 64 (at least 128).
  mbuf_size=$(( 128 + ( (frame + 63) / 64 * 64 < 128 ? 128 : (frame + 63) / 64 * 64 ) ))
  # IPv6 scenarios: fulcrum's port MTU must be at least 1280 (the IPv6 minimum), so its
  # mbufs are sized for that; testpmd gets the same data room, so both replay the file
  # from equally large mbufs (the replay's cache footprint grows with them)
  if [ "$(family_for "$scenario")" = v6 ]; then mbuf_size=$(fulcrum_data_room "$frame" v6); fi
  # infinite_rx copies the whole file into mbufs of the RX queue's pool at queue setup,
  # then copies each replayed packet into a fresh mbuf: the pool holds the file plus
  # the working set (descriptors, per-lcore caches, bursts).
  mbufs=$(( packets + 32768 ))
  need_mib=$(( mbufs * (mbuf_size + 192) / 1048576 + 64 ))
  if [ "$(free_hugepage_mib)" -lt "$need_mib" ]; then
    log "$scenario $system: needs ~${need_mib} MiB of free hugepages, $(free_hugepage_mib) free"
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"failed: not enough free hugepages\"}"
    return 0
  fi
  prefix="flcbench-tp-$$"
  logf="$WORK_DIR/$scenario.$system.log"
  # shellcheck disable=SC2086
  dpdk-testpmd -l 0,1 --main-lcore 0 --file-prefix="$prefix" --huge-unlink --no-pci \
    --vdev="net_pcap0,rx_pcap=$pcap,infinite_rx=1$tx" -- \
    --forward-mode="$mode" --nb-cores=1 --rxq=1 --txq=1 --no-mlockall --no-flush-rx \
    --total-num-mbufs="$mbufs" --mbuf-size="$mbuf_size" --stats-period 100000 \
    </dev/null >"$logf" 2>&1 &
  pid=$!
  CHILD_PIDS+=("$pid")
  if json=$(measure "$prefix" "$pid" 2>>"$logf"); then
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"ok\",\"packets_in_file\":$packets,\"mbuf_size\":$mbuf_size,\"stats\":$json}"
    log "$scenario $system: $(rate_line "$json")"
  else
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"failed: see $(basename "$logf")\"}"
    log "$scenario $system: FAILED (log: $logf)"
    tail -5 "$logf" >&2 || true
  fi
  stop_process "$pid"
}

# ======================================================================== fulcrum hook
# run_fulcrum SCENARIO PCAP [FORWARDING]
#
# Builds a fulcrum YAML config (contract: /work/shared/config-contract.md) with the same
# net_pcap vdev (infinite_rx, tx drop) and ONE worker core (lcore 1, EAL main lcore 0),
# runs `fulcrum run -c CONFIG` for the same warm-up and window as testpmd, and reads the
# same ethdev counters of port 0 over the same telemetry socket. The forwarding thread is
# fulcrum's worker, the std thread `fulcrum-w0` (ethstats.py --thread).
#
# Service: VIP 10.99.0.100 tcp/80, forwarding FORWARDING (ipip | dsr | nat), three
# backends 10.99.0.11-13 whose MACs are static neighbors on the port (10.99.0.2/24), so
# nothing waits for ARP. Health checks off (kind: none) so every backend stays healthy.
# `dpdk.mbufs` = packets in the file + 32768: infinite_rx copies the whole pcap into the
# RX queue's pool at queue setup.
#
# After SIGINT fulcrum prints its counters (`counter NAME VALUE`); bench/fulcrum_counters.py
# keeps the ones that show whether it forwarded what it was sent (engine_rx_packets,
# engine_forwarded, drops, port_ipackets/opackets) and report.py checks them.
#
# While `fulcrum run` cannot start (binary missing, config rejected) this records
# "fulcrum: not measured (binary not ready)". Once it starts, a failed measurement is an
# error. FULCRUM_BENCH=off skips it; FULCRUM_BENCH=require makes "not ready" an error.
# shellcheck source=bench/fulcrum-bin.sh
. "$BENCH_DIR/fulcrum-bin.sh"

# write_fulcrum_config CFG EAL_TAIL DEVICE FORWARDING PREFIX MBUFS IDLE CORE [FRAME] [FAMILY]
#   EAL_TAIL: the vdev argument(s), already quoted as YAML list items
#   FAMILY: v4 (default: port 10.99.0.2/24, VIP 10.99.0.100, backends 10.99.0.11-13) or v6
#   (fd99::2/64, fd99::100, fd99::11-13: what gen_pcap.py --ipv6 sends to)
#   FRAME: the largest frame of the traffic; when given, the port MTU and the mbuf data room
#   are sized for it (as testpmd's pool is) instead of for 1500-byte packets
write_fulcrum_config() {
  local cfg="$1" vdev="$2" device="$3" forwarding="$4" prefix="$5" mbufs="$6" idle="$7" core="${8:-1}"
  local frame="${9:-}" family="${10:-v4}" mbufs_line="" room_line="" mtu_line="" snat_line=""
  local net="10.99.0." plen=24
  if [ "$family" = v6 ]; then net="fd99::"; plen=64; fi
  if [ -n "$mbufs" ]; then mbufs_line="  mbufs: $mbufs"; fi
  if [ "$forwarding" = nat ]; then
    # full NAT from 16 source addresses: each gives every backend one flow per NAT port
    # (31,744), so 3 backends hold 1.5M flows: the 1M-flow and SYN-flood scenarios fit
    snat_line="    snat_addresses: [$(seq -s, -f "${net}%g" 32 47 | sed 's/,/, /g')]"
  fi
  if [ -n "$frame" ]; then
    room_line="  mbuf_data_room: $(fulcrum_data_room "$frame" "$family")"
    mtu_line="    mtu: $(fulcrum_mtu "$frame" "$family")"
  fi
  cat >"$cfg" <<YAML
# generated by bench/run.sh: one worker on lcore $core
dpdk:
  eal_args: [${FULCRUM_EAL_CORES:-"-l", "0,1", "--main-lcore", "0"}, "--file-prefix=$prefix", "--huge-unlink", "--no-pci",
             $vdev]
$mbufs_line
$room_line
${FULCRUM_DPDK_EXTRA:-}
ports:
  - name: bench
    device: $device
    address: ${net}2/$plen
$mtu_line
$snat_line
    neighbors:
      - address: ${net}11
        mac: "02:00:00:99:00:11"
      - address: ${net}12
        mac: "02:00:00:99:00:12"
      - address: ${net}13
        mac: "02:00:00:99:00:13"

workers:
  cores: [$core]
  idle: $idle

flow_table:
  capacity: 2097152
  tcp_established_timeout: 300s
  tcp_transitory_timeout: 15s
  udp_timeout: 30s

admin:
  listen: 127.0.0.1:19100

services:
  - name: bench
    vip: ${net}100
    port: 80
    protocol: tcp
    mode: l4
    forwarding: $forwarding
    maglev_table_size: 65537
    backends:
      - address: ${net}11
        weight: 1
      - address: ${net}12
        weight: 1
      - address: ${net}13
        weight: 1
    health_check:
      kind: none
YAML
}

# fulcrum's exit counters as JSON ({} when there are none).
fulcrum_counters() { python3 "$BENCH_DIR/fulcrum_counters.py" "$1"; }

run_fulcrum() {
  local scenario="$1" pcap="$2" forwarding="${3:-ipip}"
  local system="fulcrum-$forwarding" bin cfg prefix logf pid json packets counters
  if [ "$FULCRUM_BENCH" = off ]; then return 0; fi
  bin=$(fulcrum_bin)
  cfg="$WORK_DIR/fulcrum-$scenario-$forwarding.yaml"
  prefix="flcbench-fl-$$"
  logf="$WORK_DIR/$scenario.$system.log"
  packets=$(pcap_packets "$pcap")
  write_fulcrum_config "$cfg" "\"--vdev=net_pcap0,rx_pcap=$pcap,infinite_rx=1\"" net_pcap0 "$forwarding" \
    "$prefix" "$(( packets + 32768 ))" poll 1 "$(frame_len_for "$scenario")" "$(family_for "$scenario")"
  if [ ! -x "$bin" ]; then
    echo "no executable $bin" >"$logf"
    fulcrum_not_ready "$scenario" "$system"; return 0
  fi
  "$bin" run -c "$cfg" </dev/null >"$logf" 2>&1 &
  pid=$!
  CHILD_PIDS+=("$pid")
  if json=$(measure "$prefix" "$pid" '^fulcrum-w0$' 2>>"$logf"); then
    stop_process "$pid"
    counters=$(fulcrum_counters "$logf")
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"ok\",\"packets_in_file\":$packets,\"stats\":$json,\"fulcrum\":$counters}"
    log "$scenario $system: $(rate_line "$json"); $(python3 "$BENCH_DIR/fulcrum_counters.py" --line "$logf")"
  elif ! kill -0 "$pid" 2>/dev/null; then
    # `fulcrum run` exited before any packet was counted: the binary is not ready.
    stop_process "$pid"
    fulcrum_not_ready "$scenario" "$system"
    tail -3 "$logf" >&2 || true
  else
    stop_process "$pid"
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"failed: see $(basename "$logf")\"}"
    log "$scenario $system: FAILED (log: $logf)"
  fi
}

fulcrum_not_ready() {
  local scenario="$1" system="$2"
  if [ "$FULCRUM_BENCH" = require ]; then
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"failed: binary not ready\"}"
    log "$scenario $system: FAILED: fulcrum binary not ready (FULCRUM_BENCH=require)"
  else
    record "{\"scenario\":\"$scenario\",\"system\":\"$system\",\"status\":\"not measured (binary not ready)\"}"
    log "$scenario $system: fulcrum: not measured (binary not ready)"
  fi
}
# ==================================================================== end of fulcrum hook

# ---------------------------------------------------------------- memif: generator <-> forwarder
# run_memif SYSTEM ROUND   (testpmd-io | testpmd-macswap | fulcrum-ipip | fulcrum-dsr | fulcrum-nat)
#
# bench/gen (flcgen, on fulcrum-dpdk) is the memif *server* on lcore 0 (CPU 0, its own);
# the forwarder is the memif *client*, all its threads on CPU 1 (testpmd: EAL
# lcore 1 with --port-topology=loop, so port 0 forwards back to port 0; fulcrum: worker
# core 1, its TX to the backends' MACs goes out the same port). flcgen finds the highest
# lossless rate (loss <= MEMIF_MAX_LOSS in the steady 80% of a trial's 100 ms windows: a host stall
# spoils the windows it falls in, an overloaded forwarder all of them) and measures latency
# at 50% and 90% of it, over all windows and over the steady ones.
memif_gen_bin() {
  if [ -n "${FLCGEN_BIN:-}" ]; then echo "$FLCGEN_BIN"; return; fi
  local d
  for d in "${CARGO_TARGET_DIR:-}" "$REPO_DIR/target"; do
    if [ -n "$d" ] && [ -x "$d/release/flcgen" ]; then echo "$d/release/flcgen"; return; fi
  done
  echo "$REPO_DIR/target/release/flcgen"
}

# wants SECTION: whether this run measures SECTION (memif, idle): no --only, or one matching it.
wants() { [ -z "$ONLY" ] || echo "$1" | grep -Eq -- "$ONLY"; }

# ensure_memif_gen: builds bench/gen (flcgen, flcstall) when the memif section will run and
# the binary is missing, before the long part of the run instead of reporting "no flcgen" at
# its end. A failed build is logged; the memif figures then report the missing binary.
ensure_memif_gen() {
  if [ -n "${FLCGEN_BIN:-}" ] || [ -x "$(memif_gen_bin)" ]; then return 0; fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "no $(memif_gen_bin) and no cargo to build it: the memif figures will be missing"
    return 0
  fi
  log "building bench/gen (cargo build --release -p fulcrum-bench-gen)"
  (cd "$REPO_DIR" && cargo build --release -q -p fulcrum-bench-gen) ||
    log "building bench/gen failed: the memif figures will be missing"
}

# run_stall_probe: bench/gen's flcstall spins on each CPU at once (as the two memif processes
# will), under the same scheduling, and tallies the gaps in which it was off its CPU (host
# preemption, timer ticks, other work): the floor under any latency percentile taken here.
run_stall_probe() {
  local stall cpu pids=() secs=5
  stall="$(dirname "$(memif_gen_bin)")/flcstall"
  if [ ! -x "$stall" ]; then
    record '{"scenario":"stall","system":"cpu0","status":"failed: no flcstall binary (cargo build --release -p fulcrum-bench-gen)"}'
    return 0
  fi
  if [ "$QUICK" = 1 ]; then secs=2; fi
  for cpu in 0 1; do
    taskset -c "$cpu" "${MEMIF_RUN[@]}" "$stall" "$secs" >"$WORK_DIR/stall.cpu$cpu.json" 2>/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}" 2>/dev/null || true
  for cpu in 0 1; do
    if [ -s "$WORK_DIR/stall.cpu$cpu.json" ]; then
      record "{\"scenario\":\"stall\",\"system\":\"cpu$cpu\",\"status\":\"ok\",\"probe\":$(cat "$WORK_DIR/stall.cpu$cpu.json")}"
      log "stall probe cpu$cpu: $(cat "$WORK_DIR/stall.cpu$cpu.json")"
    else
      record "{\"scenario\":\"stall\",\"system\":\"cpu$cpu\",\"status\":\"failed\"}"
    fi
  done
}

run_memif() {
  local system="$1" round="${2:-1}" gen sock gprefix fprefix glog flog gpid fpid json counters cfg bin
  gen=$(memif_gen_bin)
  if [ ! -x "$gen" ]; then
    record "{\"scenario\":\"memif\",\"system\":\"$system\",\"round\":$round,\"status\":\"failed: no flcgen binary (cargo build --release -p fulcrum-bench-gen)\"}"
    log "memif $system: no $gen"; return 0
  fi
  sock="/run/flcbench-memif-$$.sock"; rm -f "$sock"
  gprefix="flcbench-gen-$$"; fprefix="flcbench-fm-$$"
  glog="$WORK_DIR/memif.$system.r$round.gen.log"; flog="$WORK_DIR/memif.$system.r$round.log"
  # CPU 0 is the generator's alone; every thread of the forwarder (its EAL main lcore and
  # control threads included, mapped with --lcores) stays on CPU 1 with the forwarding lcore.
  taskset -c 0 "${MEMIF_RUN[@]}" "$gen" --eal "-l 0 --file-prefix=$gprefix --huge-unlink --no-pci --vdev=net_memif0,role=server,socket=$sock,id=0" \
    --flows "$MEMIF_FLOWS" --len 96 --trial-secs "$MEMIF_TRIAL" --lat-secs "$MEMIF_LAT" \
    --max-steps "$MEMIF_STEPS" --max-loss "$MEMIF_MAX_LOSS" --linger 20 >"$WORK_DIR/memif.$system.r$round.json" 2>"$glog" &
  gpid=$!; CHILD_PIDS+=("$gpid")
  for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
  case "$system" in
    testpmd-*)
      taskset -c 1 "${MEMIF_RUN[@]}" dpdk-testpmd --lcores=0@1,1@1 --main-lcore 0 --file-prefix="$fprefix" --huge-unlink --no-pci \
        --vdev="net_memif0,role=client,socket=$sock,id=0" -- \
        --forward-mode="${system#testpmd-}" --port-topology=loop --nb-cores=1 --no-mlockall \
        --total-num-mbufs=32768 --stats-period 100000 </dev/null >"$flog" 2>&1 &
      fpid=$! ;;
    fulcrum-*)
      bin=$(fulcrum_bin)
      cfg="$WORK_DIR/fulcrum-memif-${system#fulcrum-}.yaml"
      FULCRUM_EAL_CORES='"--lcores=0@1,1@1", "--main-lcore", "0"' \
        write_fulcrum_config "$cfg" "\"--vdev=net_memif0,role=client,socket=$sock,id=0\"" net_memif0 \
        "${system#fulcrum-}" "$fprefix" "" poll 1
      taskset -c 1 "${MEMIF_RUN[@]}" "$bin" run -c "$cfg" </dev/null >"$flog" 2>&1 &
      fpid=$! ;;
  esac
  CHILD_PIDS+=("$fpid")
  # The generator prints its results, then (--linger) holds the memif link until the
  # forwarder has gone: the forwarder is stopped first. (DPDK 22.11's memif PMD unmaps the
  # shared regions from its interrupt thread when the peer disconnects, racing the poll
  # thread's rx_burst: a forwarder left polling after the generator closed could crash.)
  while kill -0 "$gpid" 2>/dev/null && [ ! -s "$WORK_DIR/memif.$system.r$round.json" ]; do sleep 0.2; done
  stop_process "$fpid"
  wait "$gpid" 2>/dev/null || true
  local keep=() i
  for i in "${CHILD_PIDS[@]}"; do [ "$i" = "$gpid" ] || keep+=("$i"); done
  CHILD_PIDS=("${keep[@]+"${keep[@]}"}")
  rm -f "$sock"
  json=$(cat "$WORK_DIR/memif.$system.r$round.json" 2>/dev/null || true)
  counters='{}'
  case "$system" in fulcrum-*) counters=$(fulcrum_counters "$flog") ;; esac
  if [ -n "$json" ]; then
    record "{\"scenario\":\"memif\",\"system\":\"$system\",\"round\":$round,\"status\":\"ok\",\"gen\":$json,\"fulcrum\":$counters}"
    log "memif $system round $round: $(grep -E 'flcgen: [0-9]+% of' "$glog" | tr '\n' ';')"
  else
    record "{\"scenario\":\"memif\",\"system\":\"$system\",\"round\":$round,\"status\":\"failed: see $(basename "$glog")\"}"
    log "memif $system round $round: FAILED (log: $glog)"; tail -3 "$glog" >&2 || true
  fi
}

# ---------------------------------------------------------------- idle CPU
# run_idle IDLE (poll | adaptive): fulcrum on a net_ring port nobody sends to; the process's
# utime+stime (/proc/PID/stat) over IDLE_SECONDS after a 2 s settle, as % of one CPU.
run_idle() {
  local idle="$1" bin cfg prefix logf pid cpu
  bin=$(fulcrum_bin)
  [ -x "$bin" ] || { record "{\"scenario\":\"idle\",\"system\":\"fulcrum-idle-$idle\",\"status\":\"not measured (binary not ready)\"}"; return 0; }
  cfg="$WORK_DIR/fulcrum-idle-$idle.yaml"; prefix="flcbench-fi-$$"; logf="$WORK_DIR/idle.fulcrum-$idle.log"
  write_fulcrum_config "$cfg" '"--vdev=net_ring0"' net_ring0 ipip "$prefix" "" "$idle" 1
  "$bin" run -c "$cfg" </dev/null >"$logf" 2>&1 &
  pid=$!; CHILD_PIDS+=("$pid")
  for _ in $(seq 1 100); do grep -q 'workers running' "$logf" 2>/dev/null && break; sleep 0.1; done
  sleep 2
  if cpu=$(python3 - "$pid" "$IDLE_SECONDS" <<'PY'
import json, os, sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2])
hz = os.sysconf("SC_CLK_TCK")
def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime
u0, s0 = ticks(); t0 = time.monotonic()
time.sleep(secs)
u1, s1 = ticks(); t1 = time.monotonic()
wall = t1 - t0
print(json.dumps({"seconds": round(wall, 3), "utime_s": (u1 - u0) / hz, "stime_s": (s1 - s0) / hz,
                  "cpu_percent": round(100.0 * ((u1 - u0) + (s1 - s0)) / hz / wall, 2)}))
PY
  ); then
    record "{\"scenario\":\"idle\",\"system\":\"fulcrum-idle-$idle\",\"status\":\"ok\",\"idle\":$cpu}"
    log "idle $idle: $cpu"
  else
    record "{\"scenario\":\"idle\",\"system\":\"fulcrum-idle-$idle\",\"status\":\"failed: see $(basename "$logf")\"}"
  fi
  stop_process "$pid"
}

# Transmit variants of the net_pcap vdev, measured once (full mode) on est-10k-64 / io.
# No dummy interface type on this kernel, so tx_iface goes to one end of a veth pair.
run_tx_variants() {
  local pcap r
  pcap=$(pcap_for est-10k-64)
  for r in $(seq 1 "$REPEAT"); do
    run_testpmd est-10k-64 "$pcap" io "" "tx-drop"
    run_testpmd est-10k-64 "$pcap" io ",tx_pcap=/dev/null" "tx-pcap-devnull"
    if ip link add flcbench-tx0 type veth peer name flcbench-tx1 2>/dev/null; then
      ip link set flcbench-tx0 up; ip link set flcbench-tx1 up
      run_testpmd est-10k-64 "$pcap" io ",tx_iface=flcbench-tx0" "tx-iface-veth"
      ip link del flcbench-tx0 2>/dev/null || true
    else
      record '{"scenario":"est-10k-64","system":"tx-iface-veth","status":"not measured (no veth)"}'
    fi
  done
}

# ---------------------------------------------------------------- main
main() {
  local started s name pcap mode r
  started=$(date +%s)
  rm -rf "$WORK_DIR"; mkdir -p "$WORK_DIR" "$OUT_DIR"
  : >"$WORK_DIR/results.jsonl"
  setup_hugepages
  cleanup
  if [ "$QUICK" = 1 ]; then
    log "checking the pcap generator and the report"
    python3 "$BENCH_DIR/test_gen_pcap.py" -q
    python3 "$BENCH_DIR/test_report.py" -q
  fi
  if wants memif; then ensure_memif_gen; fi
  generate_pcaps

  python3 "$BENCH_DIR/report.py" machine --mode "$MODE_NAME" --warmup "$WARMUP" --duration "$DURATION" \
    --repeat "$REPEAT" --repo "$REPO_DIR" >"$WORK_DIR/meta.json"
  for s in "${SCENARIOS[@]}"; do
    name=$(scenario_field "$s" 1)
    pcap=$(pcap_for "$name")
    python3 -c 'import json,sys; print(json.dumps({"scenario_def": sys.argv[1], "gen_args": sys.argv[2], "description": sys.argv[3]}))' \
      "$name" "$(scenario_field "$s" 2)" "$(scenario_field "$s" 3)" >>"$WORK_DIR/results.jsonl"
    # Baseline and fulcrum alternate within each repetition so both see the same machine load.
    for r in $(seq 1 "$REPEAT"); do
      for mode in "${TESTPMD_MODES[@]}"; do run_testpmd "$name" "$pcap" "$mode"; done
      for mode in $(fulcrum_modes_for "$name"); do run_fulcrum "$name" "$pcap" "$mode"; done
    done
  done
  if [ "$QUICK" = 0 ] && [ -z "$ONLY" ]; then run_tx_variants; fi
  if wants memif; then
    local memif_systems=(testpmd-io testpmd-macswap)
    if [ "$FULCRUM_BENCH" != off ] && [ -x "$(fulcrum_bin)" ]; then
      if [ "$QUICK" = 1 ]; then memif_systems+=(fulcrum-ipip); else memif_systems+=(fulcrum-ipip fulcrum-dsr fulcrum-nat); fi
    fi
    if [ -n "${MEMIF_SYSTEMS:-}" ]; then read -ra memif_systems <<< "$MEMIF_SYSTEMS"; fi
    run_stall_probe
    for mode in "${memif_systems[@]}"; do run_memif "$mode" 1; done
    # more rounds of the latency target's pair only, back to back (see MEMIF_ROUNDS)
    local round
    for round in $(seq 2 "$MEMIF_ROUNDS"); do
      for mode in testpmd-io fulcrum-ipip; do
        if [[ " ${memif_systems[*]} " == *" $mode "* ]]; then run_memif "$mode" "$round"; fi
      done
    done
  fi
  if [ "$FULCRUM_BENCH" != off ] && wants idle; then
    run_idle poll; run_idle adaptive
  fi

  python3 "$BENCH_DIR/report.py" machine-end >"$WORK_DIR/meta-end.json"
  local check=()
  if [ "$QUICK" = 1 ]; then check=(--check); fi
  python3 "$BENCH_DIR/report.py" report --work "$WORK_DIR" --out "$OUT_DIR" "${check[@]}"
  log "done in $(( $(date +%s) - started )) s: $OUT_DIR/RESULTS.md"
}

main
