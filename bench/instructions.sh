#!/usr/bin/env bash
# Instructions per packet, fulcrum against testpmd io on the same harness, counted by
# valgrind's callgrind: a figure the machine's load cannot move.
#
# usage: sudo bench/instructions.sh [--seconds N] [--only REGEX] [--out FILE]
#
# For each scenario (default: est-10k-64, est-1m-64 and synflood-64, `--only` keeps those
# matching a grep -E), the same pcap replayed by net_pcap (infinite_rx) runs under
# callgrind, once for `dpdk-testpmd --forward-mode=io` and once for `fulcrum run` with
# forwarding ipip, each with the configuration and mbuf sizes bench/run.sh uses (its
# --quick mode runs first for a scenario whose config is missing), with `--no-huge`
# instead of hugepages (valgrind cannot map them). Once the port receives, and 5 s more,
# the port's ethdev counter is read over the telemetry socket and callgrind's counters
# dumped (callgrind_control); N seconds later (default 60) both again, and the window
# between the two is what counts:
#   - testpmd: every instruction of the process in the window (its main lcore sleeps),
#   - fulcrum: the instructions inside its worker loop (`--toggle-collect` on
#     `Worker::run`, the PMD's receive and transmit included), less the counters'
#     publication (every 10 ms of TSC time: under valgrind's ~50x slowdown it would be
#     charged to 50x fewer packets than natively),
# over the packets received in the window: the calls callgrind counted to the PMD's
# receive burst (the pcap PMD's function with the most instructions of its own) times 32,
# since the replay fills every burst and both ask for 32; the ethdev counter, read just
# before and just after each dump, checks that figure (it must lie between the inner and
# the outer span of those reads; counting the wrong function would be off 32-fold).
# Both also report the part of their count inside the pcap PMD (librte_net_pcap and the
# TLS lookups its mempool calls make), which each system pays alike per packet.
#
# The ratio is testpmd's count over fulcrum's: the share of testpmd io's rate fulcrum
# would reach if both ran at the same instructions per cycle. The rate ratio of
# RESULTS.md differs from it by how much better or worse each uses the core's cycles
# (testpmd io waits on the replay's memory; fulcrum's own work runs at a high IPC).
# Writes bench/results/instructions.md (or --out FILE); a run takes ~3 minutes a scenario.
# INSTRUCTIONS_KEEP=1 keeps the callgrind files (for callgrind_annotate) in /tmp/flcinstr.*.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
WORK_DIR="$BENCH_DIR/results/tmp/run"
PCAP_DIR="$BENCH_DIR/results/tmp/pcaps"
SECONDS_EACH=60
ONLY='^(est-10k-64|est-1m-64|synflood-64)$'
OUT="$BENCH_DIR/results/instructions.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--seconds N] [--only REGEX] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] && [ "$SECONDS_EACH" -ge 5 ] || { echo "--seconds: 5 or more" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/instructions.sh: needs root (DPDK)" >&2; exit 1; }
for tool in valgrind callgrind_control dpdk-testpmd python3; do
  command -v "$tool" >/dev/null || { echo "bench/instructions.sh: needs $tool" >&2; exit 1; }
done
# shellcheck source=bench/fulcrum-bin.sh
. "$BENCH_DIR/fulcrum-bin.sh"
FULCRUM="$(fulcrum_bin)"
[ -x "$FULCRUM" ] || { echo "bench/instructions.sh: no fulcrum binary (cargo build --release --bin fulcrum)" >&2; exit 1; }

TMP="$(mktemp -d /tmp/flcinstr.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${INSTRUCTIONS_KEEP:-}" ]; then log "callgrind files kept in $TMP"; else rm -rf "$TMP"; fi
  rm -rf /var/run/dpdk/flcinstr-* 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "instructions: $*" >&2; }

# the scenarios bench/run.sh knows, filtered
mapfile -t SCENARIOS < <(sed -nE 's/^  "([a-z0-9-]+)\|.*/\1/p' "$BENCH_DIR/run.sh" | grep -E -- "$ONLY" || true)
[ "${#SCENARIOS[@]}" -gt 0 ] || { echo "bench/instructions.sh: no scenario matches $ONLY" >&2; exit 2; }

# the window's dump, read by bench/callgrind_summary.py (callgrind_annotate misreads a
# dump taken mid-run): instructions, the PMD's share, calls to the PMD's receive burst
summary() { python3 "$BENCH_DIR/callgrind_summary.py" "$@"; }
# packets a receive burst of the replay returns: net_pcap's infinite_rx fills every burst,
# and testpmd and fulcrum both ask for 32
BURST=32

# Runs "$@" (a DPDK process with EAL --file-prefix PREFIX) under callgrind: once its port
# receives, WARMUP s more, then callgrind's counters are zeroed (the start-up's profile is
# large, and dumping it had held the window's start back by a minute on a loaded CI
# machine) and dumped (a dump also zeroes them), and SECONDS_EACH s later dumped again: the
# second dump holds the window's instructions. Each dump is bracketed by two reads of the
# port's ipackets, one before the dump request and one after it returns: a dump's request
# waits until valgrind serves it, minutes on a loaded machine, so the window callgrind
# counted is known only to lie between the inner reads' span and the outer reads' span.
# Start-up (EAL, the PMD loading its pcap, tables) is outside the count for both systems.
# Then SIGINT. VG_OUT: the callgrind file (the window's dump is VG_OUT.2); VG_LOG: the
# program's output; WINDOW_PACKETS: "LOW HIGH", the packets received in the inner and the
# outer span (0 when the reads failed).
WARMUP=5
under_callgrind() {
  local prefix="$1" extra="$2"; shift 2
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$VG_OUT" $extra "$@" </dev/null >"$VG_LOG" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  WINDOW_PACKETS="$(PYTHONPATH="$BENCH_DIR" python3 - "$prefix" "$pid" "$WARMUP" "$SECONDS_EACH" <<'PY'
import subprocess, sys, time
import ethstats
prefix, pid, warmup, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
tel = ethstats.connect(prefix, time.monotonic() + 600, pid)
ipackets = lambda: int(ethstats.port_stats(tel, 0)["ipackets"])
deadline = time.monotonic() + 600
while ipackets() == 0:
    if time.monotonic() > deadline:
        sys.exit("no packets within 600 s")
    time.sleep(0.5)
time.sleep(warmup)
ctl = lambda cmd: subprocess.run(["callgrind_control", cmd, str(pid)], check=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ctl("-z")
before0 = ipackets()
ctl("-d")
after0 = ipackets()
time.sleep(window)
before1 = ipackets()
ctl("-d")
after1 = ipackets()
print(before1 - after0, after1 - before0)
PY
)" || WINDOW_PACKETS=0
  kill -INT "$pid" 2>/dev/null || true
  # valgrind needs a while to stop and write its files
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  VG_OUT="$VG_OUT.2"
}

# testpmd_room SCENARIO: testpmd io's mbuf size as bench/run.sh chose it for SCENARIO (its
# latest record of it in results.jsonl), or nothing without one.
testpmd_room() {
  python3 - "$WORK_DIR/results.jsonl" "$1" <<'EOF' 2>/dev/null | tail -1
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("scenario") == sys.argv[2] and r.get("system") == "testpmd-io" and r.get("mbuf_size"):
        print(r["mbuf_size"])
EOF
}

ROWS=()
for scenario in "${SCENARIOS[@]}"; do
  cfg="$WORK_DIR/fulcrum-$scenario-ipip.yaml"
  if [ ! -f "$cfg" ] || [ -z "$(testpmd_room "$scenario")" ]; then
    log "$scenario: no bench/run.sh record of it yet, running bench/run.sh --quick --only '^$scenario\$' to make one"
    FULCRUM_BIN="$FULCRUM" bash "$BENCH_DIR/run.sh" --quick --only "^$scenario\$" --out "$TMP/quick" >"$TMP/quick.log" 2>&1 \
      || { tail -5 "$TMP/quick.log" >&2; exit 1; }
  fi
  pcap="$PCAP_DIR/$scenario.pcap"
  [ -f "$pcap" ] && [ -f "$cfg" ] || { echo "bench/instructions.sh: no $pcap or $cfg" >&2; exit 1; }
  mbufs="$(sed -nE 's/^  mbufs: ([0-9]+)/\1/p' "$cfg")"
  room="$(sed -nE 's/^  mbuf_data_room: ([0-9]+)/\1/p' "$cfg")"
  # no hugepages under valgrind: enough plain memory for the pool (mbuf + headroom)
  mem=$(( mbufs * (room + 384) / 1048576 + 512 ))

  tp_room="$(testpmd_room "$scenario")"
  [ -n "$tp_room" ] || { echo "bench/instructions.sh: no testpmd-io record of $scenario" >&2; exit 1; }
  VG_OUT="$TMP/tp.$scenario.cg"; VG_LOG="$TMP/tp.$scenario.log"
  log "$scenario: testpmd io, ${SECONDS_EACH}s under callgrind"
  under_callgrind "flcinstr-tp-$$" "" dpdk-testpmd -l 0,1 --main-lcore 0 --file-prefix="flcinstr-tp-$$" --no-huge -m "$mem" --no-pci \
    --vdev="net_pcap0,rx_pcap=$pcap,infinite_rx=1" -- \
    --forward-mode=io --nb-cores=1 --rxq=1 --txq=1 --no-mlockall --no-flush-rx \
    --total-num-mbufs="$mbufs" --mbuf-size="$tp_room" --stats-period 100000
  tp_tel="$WINDOW_PACKETS"; tp_sum="$(summary "$VG_OUT")"

  # fulcrum ipip: its bench config with --no-huge and its own prefix and admin port
  fcfg="$TMP/fulcrum-$scenario.yaml"
  sed -E -e "s/\"--file-prefix=[^\"]*\"/\"--file-prefix=flcinstr-fl-$$\"/" \
    -e "s/\"--huge-unlink\", /\"--no-huge\", \"-m\", \"$mem\", /" \
    -e 's/^  listen: 127\.0\.0\.1:[0-9]+/  listen: 127.0.0.1:19188/' "$cfg" >"$fcfg"
  VG_OUT="$TMP/fl.$scenario.cg"; VG_LOG="$TMP/fl.$scenario.log"
  log "$scenario: fulcrum ipip, ${SECONDS_EACH}s under callgrind"
  under_callgrind "flcinstr-fl-$$" "--toggle-collect=fulcrum::runtime::worker::Worker::run" "$FULCRUM" run -c "$fcfg"
  fl_tel="$WINDOW_PACKETS"; fl_sum="$(summary --exclude 'Worker::publish' "$VG_OUT")"
  row="$(python3 - "$scenario" "$BURST" "$tp_tel" "$tp_sum" "$fl_tel" "$fl_sum" <<'EOF'
import json, sys
span = lambda a: tuple(int(x) for x in a.split()) if len(a.split()) == 2 else (0, 0)
s, burst, tp_tel, tp, fl_tel, fl = sys.argv[1], int(sys.argv[2]), span(sys.argv[3]), \
    json.loads(sys.argv[4]), span(sys.argv[5]), json.loads(sys.argv[6])
tp_pkts, fl_pkts = tp["rx_calls"] * burst, fl["rx_calls"] * burst
if not tp_pkts or not fl_pkts:
    sys.exit(f"{s}: no receive bursts counted (testpmd {tp}, fulcrum {fl})")
# the ethdev counter's reads bracket the dumps (see under_callgrind): the packets the
# counted bursts received lie between the inner and the outer span, give or take one
# burst and 1% (a burst's packets are counted when it returns); this checks that the
# receive burst was the function counted, which would be off 32-fold or more
for name, bursts, (low, high) in (("testpmd", tp_pkts, tp_tel), ("fulcrum", fl_pkts, fl_tel)):
    if not high or not 0.99 * low - burst <= bursts <= 1.01 * high + burst:
        sys.exit(f"{s}: {name}: {bursts} packets by bursts, {low} to {high} by the ethdev "
                 "counter around the window")
tpi = tp["total"] / tp_pkts
fli = (fl["total"] - fl["excluded"]) / fl_pkts
print(f"| {s} | {tpi:.1f} | {tp['pmd_self'] / tp_pkts:.1f} | {fli:.1f} | {fl['pmd_self'] / fl_pkts:.1f} | "
      f"{fli - fl['pmd_self'] / fl_pkts:.1f} | {100 * tpi / fli:.1f}% | {tp_pkts:,} / {fl_pkts:,} |")
EOF
)" || { log "$scenario: failed; logs in $TMP"; INSTRUCTIONS_KEEP=1; exit 1; }
  log "$row"
  ROWS+=("$row")
done

mkdir -p "$(dirname "$OUT")"
{
  echo "# Instructions per packet: fulcrum ipip against testpmd io (callgrind)"
  echo
  echo "Generated by \`bench/instructions.sh --seconds $SECONDS_EACH\` on $(date -u '+%Y-%m-%d %H:%M UTC'),"
  echo "commit \`$(git -C "$REPO_DIR" rev-parse --short HEAD)\`$(git -C "$REPO_DIR" diff --quiet HEAD -- src dpdk 2>/dev/null || echo ' (with uncommitted changes)'),"
  echo "$(sed -nE 's/^model name\s*: (.*)/\1/p' /proc/cpuinfo | head -1), valgrind $(valgrind --version | sed 's/valgrind-//')."
  echo
  echo "Each system replays the scenario's pcap (bench/run.sh's, net_pcap \`infinite_rx=1\`, one"
  echo "forwarding core, the same mbuf sizes) for $SECONDS_EACH s under callgrind. Counts are"
  echo "instructions retired, so they do not move with the machine's load; see the script's"
  echo "header for what is counted. *PMD*: the part inside the pcap PMD (its replay copy and"
  echo "its transmit drop, with the mempool's TLS lookups), which both pay alike. *Ratio*:"
  echo "testpmd io's instructions over fulcrum's, the share of testpmd io's rate fulcrum would"
  echo "reach at the same instructions per cycle (RESULTS.md measures the rates themselves)."
  echo
  echo "| scenario | testpmd io | of which PMD | fulcrum ipip | of which PMD | fulcrum without PMD | ratio | packets counted (testpmd / fulcrum) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
} >"$OUT"
log "wrote $OUT"
