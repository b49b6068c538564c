#!/usr/bin/env bash
# The L7 proxies one request at a time, on loopback: CPU a request and where it goes.
#
#   bench/tools/l7-loopback.sh [-m h1|h2] [-u h1|h2] [-n REQUESTS] [-r ROUNDS] [-p PERF_DIR | -i] SYSTEM...
#
# Installs nginx, nghttp2-client, haproxy (when asked for), linux-perf (with -p) and
# valgrind (with -i) when missing. SYSTEM is `fulcrum` (the stand-alone L7 pool,
# $CARGO_TARGET_DIR or target/, built by bench/e2e/run.sh or `cargo build --release` in
# bench/e2e/l7-standalone), `haproxy`, or the path of another build of the stand-alone
# pool. Each round runs every system once, in the order given: one nginx backend (CPU 0),
# the proxy (CPU 1) with the headers bench/e2e/run.sh gives each (X-Forwarded-For,
# X-Forwarded-Proto, X-Request-Id, traceparent), and h2load (CPU 0): `-m h1` 50
# connections of HTTP/1.1 keep-alive, `-m h2` 10 h2c connections of 5 streams. The proxy
# speaks HTTP/1.1 to the backend, or with `-u h2` h2c (HAProxy: `proto h2`). It prints
# req/s and the proxy's user and system CPU a request (from /proc, over the measured
# requests). Everything listens on 127.0.0.1 ports 18080-18082, 18181 and 18183; every run is
# bounded (timeout) and stopped.
#
# The figure that compares proxies is the CPU a request, and only while the proxy is
# near saturation: h2load and nginx share CPU 0, so an idle proxy's CPU a request moves
# with how often it sleeps and is woken (5-12 us a request in one session on the same
# build). Alternate the systems over several rounds (-r) and compare round by round.
#
# -p DIR also records each system's proxy with `perf record --call-graph dwarf` for 3 s
# under load (cpu-clock: no PMU needed) and prints its time by kind: user space by who
# called (the HTTP/2 crate, the upstream exchange, the request handler, the rest) and
# the kernel by system call.
#
# -i counts instead of timing: each proxy runs under valgrind's callgrind, its counters
# are zeroed after the warm-up and dumped after the measured requests (default 10000
# with -i), and the instructions it retired in user space a request are printed, with
# the share spent in memcpy/memmove. Instructions do not move with the machine's load
# (the times above do, by 5-10% between rounds on a shared VM); they do not see cache
# misses, so a proxy that retires fewer may still take longer. Installs valgrind.
# L7_LOOPBACK_KEEP=DIR keeps each dump there (NAME-MODE-ROUND.callgrind) for
# callgrind_annotate.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode=h2 upstream=h1 requests="" rounds=1 perfdir="" count=0
while getopts "m:u:n:r:p:i" o; do
  case "$o" in
    m) mode="$OPTARG" ;;
    u) upstream="$OPTARG" ;;
    n) requests="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    p) perfdir="$OPTARG" ;;
    i) count=1 ;;
    *) sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ -z "$perfdir" ] || [ "$count" = 0 ] || { echo "l7-loopback: -p or -i, not both" >&2; exit 2; }
if [ -z "$requests" ]; then
  if [ "$count" = 1 ]; then requests=10000; else requests=300000; fi
fi
[[ "$requests" =~ ^[1-9][0-9]*$ ]] || { echo "l7-loopback: -n takes a count of requests" >&2; exit 2; }
[ $# -ge 1 ] || { sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 2; }
case "$mode" in
  h1) port=18080 opts=(-c 50 -m 1 --h1) ;;
  h2) port=18082 opts=(-c 10 -m 5) ;;
  *) echo "l7-loopback: -m h1 or h2" >&2; exit 2 ;;
esac
case "$upstream" in
  h1) up_port=18181 up_protocol=http1 haproxy_proto="" ;;
  h2) up_port=18183 up_protocol=http2 haproxy_proto=" proto h2" ;;
  *) echo "l7-loopback: -u h1 or h2" >&2; exit 2 ;;
esac
# what it runs, installed when missing (Debian packages; needs root then)
# shellcheck source=scripts/setup.sh
source "$root/scripts/setup.sh"
# shellcheck source=bench/e2e/conf.sh
source "$root/bench/e2e/conf.sh"
debs=(nginx nghttp2-client curl python3)
[[ " $* " == *" haproxy "* ]] && debs+=(haproxy)
[ -z "$perfdir" ] || debs+=(linux-perf)
[ "$count" = 0 ] || debs+=(valgrind)
install_debs "${debs[@]}"

work="$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-l7lo.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/tmp"
printf 'backend1: fulcrum L7 loopback benchmark static file, served by nginx on 127.0.0.1\n' >"$work/www/index.html"
nginx_backend_conf "$work" 127.0.0.1:18181 "  server {
    listen 127.0.0.1:18183 http2 backlog=4096;
    root $work/www;
  }
" >"$work/nginx.conf"
cat >"$work/l7.yaml" <<EOF
l7:
  cores: [1]
  access_log: none
services:
  - name: web
    listen: 127.0.0.1:18080
    routes: [{ cluster: backends }]
    clusters: [{ name: backends, protocol: $up_protocol, lb: round_robin, endpoints: [{ address: "127.0.0.1:$up_port" }] }]
  - name: web-h2c
    listen: 127.0.0.1:18082
    routes: [{ cluster: backends }]
    clusters: [{ name: backends, protocol: $up_protocol, lb: round_robin, endpoints: [{ address: "127.0.0.1:$up_port" }] }]
EOF
{ haproxy_loopback_head; cat <<'EOF'
  option forwardfor
frontend web
  bind 127.0.0.1:18080
  bind 127.0.0.1:18082 proto h2
EOF
  haproxy_added_headers
  cat <<'EOF'
  default_backend backends
backend backends
EOF
  echo "  server b1 127.0.0.1:$up_port$haproxy_proto"
} >"$work/haproxy.cfg"

# succeeded NAME -> the requests h2load's last run completed (exits when none did)
succeeded() {
  local ok
  ok="$(grep -o '[0-9]* succeeded' "$work/h2load.out" | cut -d' ' -f1)"
  [ -n "$ok" ] && [ "$ok" -gt 0 ] || { echo "l7-loopback: $1: h2load failed" >&2; tail -3 "$work/h2load.out" >&2; exit 1; }
  echo "$ok"
}

# cpu_ticks PID -> "utime stime" (clock ticks)
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# one_run SYSTEM ROUND
one_run() {
  local sys="$1" round="$2" name bin pid ng
  case "$sys" in
    haproxy) name=haproxy ;;
    fulcrum) name=fulcrum bin="${CARGO_TARGET_DIR:-$root/target}/release/fulcrum-l7-standalone" ;;
    *) name="$(basename "$sys")" bin="$sys" ;;
  esac
  taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -e "$work/nginx.err" &
  ng=$!; pids+=("$ng")
  # -i: under callgrind, counting from the zeroing after the warm-up (slow to start)
  local under=() tries=50 warmup=20000
  if [ "$count" = 1 ]; then
    rm -f "$work"/cg.out*
    under=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --dump-line=no)
    tries=600 warmup=2000
  fi
  if [ "$sys" = haproxy ]; then
    taskset -c 1 "${under[@]}" haproxy -f "$work/haproxy.cfg" -db >"$work/proxy.log" 2>&1 &
  else
    [ -x "$bin" ] || { echo "l7-loopback: no $bin (build bench/e2e/l7-standalone)" >&2; exit 2; }
    taskset -c 1 "${under[@]}" "$bin" "$work/l7.yaml" >"$work/proxy.log" 2>&1 &
  fi
  pid=$!; pids+=("$pid")
  local up=0
  for _ in $(seq 1 "$tries"); do
    if curl -sf -m 1 -o /dev/null "http://127.0.0.1:$port/index.html" --http2-prior-knowledge 2>/dev/null \
      || curl -sf -m 1 -o /dev/null "http://127.0.0.1:$port/index.html" 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [ "$up" = 1 ] || { echo "l7-loopback: $name did not answer; its log:" >&2; tail -5 "$work/proxy.log" >&2; exit 1; }
  timeout 60 taskset -c 0 h2load -n "$warmup" "${opts[@]}" "http://127.0.0.1:$port/index.html" >/dev/null 2>&1 || true
  if [ "$count" = 1 ]; then
    callgrind_control -z "$pid" >/dev/null 2>&1
    timeout 600 taskset -c 0 h2load -n "$requests" "${opts[@]}" "http://127.0.0.1:$port/index.html" >"$work/h2load.out" 2>&1 || true
    callgrind_control -d "$pid" >/dev/null 2>&1
    local ok dump
    ok="$(succeeded "$name")"
    # the dump the zeroing started: the newest numbered one
    dump="$(ls -t "$work"/cg.out.* 2>/dev/null | head -1)"
    [ -n "$dump" ] || { echo "l7-loopback: $name: no callgrind dump" >&2; exit 1; }
    if [ -n "${L7_LOOPBACK_KEEP:-}" ]; then
      mkdir -p "$L7_LOOPBACK_KEEP"
      cp "$dump" "$L7_LOOPBACK_KEEP/$name-$mode-$round.callgrind"
    fi
    callgrind_annotate --inclusive=no --threshold=100 --auto=no "$dump" 2>/dev/null | python3 -c "
import re, sys
total = copy = 0
for line in sys.stdin:
    m = re.match(r'\s*([0-9,]+) \(\s*[0-9.]+%\)\s+(.*)', line)
    if not m:
        continue
    n = int(m.group(1).replace(',', ''))
    if 'PROGRAM TOTALS' in m.group(2):
        total = n
    elif re.search(r'mem(cpy|move)', m.group(2)):
        copy += n
if total == 0:
    sys.exit('l7-loopback: $name: no totals in the callgrind dump')
print('round $round $mode, upstream $upstream: %-24s %9.0f instructions a request in user space (memcpy/memmove %4.1f%%) (%d ok)'
      % ('$name', total / $ok, 100.0 * copy / total, $ok))"
  elif [ -n "$perfdir" ]; then
    mkdir -p "$perfdir"
    timeout 120 taskset -c 0 h2load -n "$requests" "${opts[@]}" "http://127.0.0.1:$port/index.html" >"$work/h2load.out" 2>&1 &
    local load=$!
    sleep 0.5
    timeout 30 perf record -q -F 2999 --call-graph dwarf,16384 -e cpu-clock -p "$pid" \
      -o "$perfdir/$name-$mode-$round.data" -- sleep 3 >/dev/null 2>&1 || true
    wait "$load" || true
    perf script -i "$perfdir/$name-$mode-$round.data" 2>/dev/null | python3 "$here/l7_split.py" "$name"
  else
    local u0 s0 u1 s1
    read -r u0 s0 < <(cpu_ticks "$pid")
    timeout 120 taskset -c 0 h2load -n "$requests" "${opts[@]}" "http://127.0.0.1:$port/index.html" >"$work/h2load.out" 2>&1 || true
    read -r u1 s1 < <(cpu_ticks "$pid")
    local ok rps
    ok="$(succeeded "$name")"
    rps="$(grep -o 'finished in [^,]*, [0-9.]* req/s' "$work/h2load.out" | awk '{print $4}')"
    python3 -c "
u = ($u1 - $u0) * 1e6 / $hz / $ok; s = ($s1 - $s0) * 1e6 / $hz / $ok
print('round $round $mode, upstream $upstream: %-24s %9.0f req/s  user %5.2f us  system %5.2f us  total %5.2f us a request (%d ok)' % ('$name', $rps, u, s, u + s, $ok))"
  fi
  kill -TERM "$pid" 2>/dev/null || true
  kill -QUIT "$ng" 2>/dev/null || true
  for _ in $(seq 1 $((tries / 2))); do kill -0 "$pid" 2>/dev/null || kill -0 "$ng" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" "$ng" 2>/dev/null || true
  wait "$pid" "$ng" 2>/dev/null || true
  pids=()
}

for r in $(seq 1 "$rounds"); do
  for sys in "$@"; do one_run "$sys" "$r"; done
done
