#!/usr/bin/env bash
# Paired A/B of two fulcrum builds on one per-core bench config.
#
#   bench/tools/ab.sh [-n ROUNDS] [-w WARMUP_S] [-d DURATION_S] BIN_A BIN_B [CONFIG [CONFIG_B]]
#
# Runs BIN_A and BIN_B alternately (A then B in odd rounds, B then A in even ones), one
# `fulcrum run -c CONFIG` at a time, and reads each run's rate from DPDK's ethdev counters
# over the worker thread's CPU time (bench/ethstats.py, as bench/run.sh does). Prints each
# build's rounds, mean and median, and the paired ratio B/A (each round's B over the same
# round's A): its mean, standard error, median and how many rounds B led.
#
# Why paired rounds: on a shared VM the same build reads 5-10% apart from one minute to
# the next, so two builds' means over a few rounds each cannot show a 2-3% change; the
# ratio within a round, a few seconds apart, can (8 rounds: a standard error of ~1-2%).
#
# CONFIG defaults to the est-10k-64 `ipip` config bench/run.sh last wrote
# (bench/results/tmp/run/fulcrum-est-10k-64-ipip.yaml): run `bench/run.sh --quick --only
# '^est-10k-64$'` once first. The worker thread is `fulcrum-w0` (one worker). Every run is
# bounded (ethstats' timeout, then SIGINT, then SIGKILL) and its hugepage files removed.
# CONFIG_B, when given, is BIN_B's config (BIN_A keeps CONFIG), for a change of config
# rather than of build (BIN_B may then be BIN_A); both must use the same --file-prefix.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
rounds=8 warmup=1 duration=4
while getopts "n:w:d:" o; do
  case "$o" in
    n) rounds="$OPTARG" ;;
    w) warmup="$OPTARG" ;;
    d) duration="$OPTARG" ;;
    *) sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 2; }
a="$1" b="$2" cfg="${3:-$bench/results/tmp/run/fulcrum-est-10k-64-ipip.yaml}"
cfg_b="${4:-$cfg}"
for f in "$a" "$b"; do [ -x "$f" ] || { echo "ab: $f is not an executable" >&2; exit 2; }; done
[ -r "$cfg_b" ] || { echo "ab: no config $cfg_b" >&2; exit 2; }
[ -r "$cfg" ] || { echo "ab: no config $cfg (run bench/run.sh --quick --only '^est-10k-64\$' first)" >&2; exit 2; }
prefix="$(grep -o 'file-prefix=[^" ,]*' "$cfg" | head -1 | cut -d= -f2)"
[ "$(grep -o 'file-prefix=[^" ,]*' "$cfg_b" | head -1 | cut -d= -f2)" = "$prefix" ] ||
  { echo "ab: $cfg and $cfg_b name different --file-prefix values" >&2; exit 2; }
[ -n "$prefix" ] || { echo "ab: $cfg has no --file-prefix in its eal_args" >&2; exit 2; }

out="$(mktemp)"
log="$(mktemp)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "/dev/hugepages/$prefix"* 2>/dev/null || true
  rm -rf "/var/run/dpdk/$prefix" 2>/dev/null || true
  rm -f "$out" "$log"
}
trap cleanup EXIT

# one_run BIN CONFIG -> Mpps a core-second on stdout (empty when the run failed)
one_run() {
  "$1" run -c "$2" </dev/null >"$log" 2>&1 &
  pid=$!
  python3 "$bench/ethstats.py" --prefix "$prefix" --pid "$pid" --thread '^fulcrum-w0$' \
    --warmup "$warmup" --duration "$duration" --timeout 60 2>/dev/null |
    python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["rx_pps_cpu"] / 1e6))' || true
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  rm -f "/dev/hugepages/$prefix"* 2>/dev/null || true
}

for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for which in $order; do
    if [ "$which" = A ]; then bin="$a" c="$cfg"; else bin="$b" c="$cfg_b"; fi
    v="$(one_run "$bin" "$c")"
    if [ -z "$v" ]; then echo "ab: round $r, $which ($bin) produced no figure; its log:" >&2; tail -5 "$log" >&2; exit 1; fi
    echo "$r $which $v" >>"$out"
    echo "ab: round $r $which $v Mpps" >&2
  done
done

python3 - "$out" "$a" "$b" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
d = {}
for r, which, v in rows:
    d.setdefault(int(r), {})[which] = float(v)
ra = [d[r]["A"] for r in sorted(d)]
rb = [d[r]["B"] for r in sorted(d)]
q = [y / x for x, y in zip(ra, rb)]
for name, path, xs in (("A", sys.argv[2], ra), ("B", sys.argv[3], rb)):
    print("%s %s: mean %.2f, median %.2f Mpps (%s)" % (name, path, st.mean(xs), st.median(xs), " ".join("%.2f" % x for x in xs)))
se = st.stdev(q) / len(q) ** 0.5 if len(q) > 1 else float("nan")
print("B/A paired: mean %.4f (standard error %.4f), median %.4f, B ahead in %d of %d rounds"
      % (st.mean(q), se, st.median(q), sum(1 for x in q if x > 1), len(q)))
PY
