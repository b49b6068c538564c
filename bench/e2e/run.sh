#!/usr/bin/env bash
# End-to-end benchmark on the namespace topology (tests/netns/topo.sh): wrk and h2load in
# the client namespace, nginx backends, and the system under test in the LB namespace:
#
#   L4  fulcrum nat and dsr (net_af_packet on lb0, one worker), an nftables DNAT load
#       balancer (kube-proxy's rules: numgen random + masquerade), HAProxy in TCP mode
#   L7  fulcrum's L7 pool (standalone, bench/e2e/l7-standalone), HAProxy in HTTP mode,
#       nginx as a reverse proxy; HTTP/1.1 keep-alive (wrk) and h2c (h2load) in cleartext,
#       and both again over TLS (port 443, a certificate the run makes; the proxy terminates)
#
# The load balancer runs on core $LB_CORE (taskset), the client on core $CLIENT_CORE. The
# backends run beside the client for the reference and L4 figures, and beside the load
# balancer for the L7 figures (unless E2E_L7_BACKEND_CORE says otherwise): the client's core
# then has time to spare and the load balancer's core, where every proxy shares the CPU with
# the same backends, limits each L7 figure, so req/s ranks the proxies by what a request
# costs each. The L4 figures cannot do that: fulcrum's L4 worker polls its core, and there
# the tables carry req/s per LB core instead.
#
# Writes bench/results/e2e.md and two SVG plots (full run) or
# ${TMPDIR:-/tmp}/fulcrum-e2e-quick/ (--quick), and fails when a system under test gave no
# figures or any request failed. Needs root. Traffic stays inside its own namespaces.
#
# usage: bench/e2e/run.sh [--quick] [--out DIR] [--only l4|l7]
#        (--only: measure one group; the L7 proxies only, say, while working on the pool)
#        bench/e2e/reading.md (the report's reading, written by hand) edited after a run:
#        `python3 bench/e2e/report.py --splice-reading bench/results/e2e.md` puts it in.
# env:   FLC_PREFIX (namespace prefix, default flb), E2E_DURATION (s per figure, 10; quick 3),
#        E2E_ROUNDS (rounds over all systems, 3; quick 1), E2E_CONNS (50), E2E_NICE (-10),
#        E2E_QUIET_BUDGET (s the run may wait in all for other work on the machine to calm
#        down before starting a system, 300; quick 0), E2E_PROFILE (figures' keys, e.g.
#        "fulcrum-l7-h1 haproxy-http-h1": `perf record` the load balancer during each, the
#        report goes to OUT/e2e-profile-KEY.txt; E2E_PERF_FREQ: samples/s, 499;
#        E2E_PERF_KEEP=1 keeps perf.data there too), E2E_SYSCALLS=1 (`perf stat` the load
#        balancer's system calls during every figure; per request in the log and
#        OUT/e2e-syscalls.txt; every figure logs the load balancer's user and system CPU
#        per request anyway, also in OUT/e2e-cpu-split.txt), E2E_NSTAT=1 (TCP segments, pure and delayed
#        ACKs per request in the LB namespace during every figure; the log and
#        OUT/e2e-nstat.txt),
#        E2E_L7_BASE (a fulcrum binary, e.g. one built from main: its L7 pool is measured
#        too, in the same rounds, as "before"; `BINARY l7 -c l7.yaml`),
#        E2E_EAL_MEM (default "--no-huge -m 512"), CARGO_TARGET_DIR,
#        E2E_L7_H2_ROW (0 or 1, default 0; 1: with HTTP/1.1 upstreams, fulcrum's pool is also
#        measured with HTTP/2 upstreams in the same rounds, its own row "(h2 upstreams)" in
#        every L7 table),
#        E2E_L7_UPSTREAM (h1 or h2, default h1: the L7 proxies' protocol to the backends; h2:
#        fulcrum's pool and HAProxy multiplex requests over HTTP/2 (h2c) connections to each
#        backend's second listener, nginx stays on HTTP/1.1, the only one its proxy speaks),
#        E2E_BACKEND_NOPUSH (on or off, default on: the nginx backends' tcp_nopush, see
#        conf.sh; on, as in Debian's nginx.conf, sends a response's head and file in one
#        segment; off, nginx's built-in default, in two),
#        E2E_LB_CPU (a percent of one CPU, e.g. 40: every load balancer runs in a cgroup
#        whose CFS quota caps it there, the client and backends do not, so the figures
#        compare what each load balancer serves on the same CPU budget instead of what
#        the saturated client core can send; unset: no cap),
#        E2E_L7_BACKEND_CORE (the nginx backends' core during the L7 figures, default the
#        load balancer's, 1; 0, the client's as for the L4 figures, makes the client's core
#        the limit of every L7 figure, as in every run before 2026-12-06 10:30)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=bench/e2e/conf.sh
source "$HERE/conf.sh"
ARGS=("$@")
QUICK=0
OUT=""
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    --only) ONLY="$2"; shift
            case "$ONLY" in l4|l7) ;; *) echo "--only: l4 or l7" >&2; exit 2 ;; esac ;;
    *) echo "usage: $0 [--quick] [--out DIR] [--only l4|l7]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "run.sh needs root (network namespaces)" >&2; exit 1; }

# The kernel's autogroup scheduling shares the cores between sessions first, so a process's
# own niceness counts only within its session: on a VM where other sessions build and
# benchmark, every process of this run would get a fraction of its core. The run goes into
# a session of its own, whose autogroup gets niceness $E2E_NICE (default -10).
if [ -z "${E2E_OWN_SESSION:-}" ] && command -v setsid >/dev/null; then
  E2E_OWN_SESSION=1 setsid -w "$0" "${ARGS[@]}" &
  inner=$!
  trap 'kill -TERM "$inner" 2>/dev/null' INT TERM
  rc=0
  wait "$inner" || rc=$?
  # a signal interrupts the first wait: wait for the inner run's cleanup
  while kill -0 "$inner" 2>/dev/null; do rc=0; wait "$inner" || rc=$?; done
  exit "$rc"
fi
[ -w "/proc/$$/autogroup" ] && echo "${E2E_NICE:--10}" >"/proc/$$/autogroup" 2>/dev/null || true

export FLC_PREFIX="${FLC_PREFIX:-flb}"
P="$FLC_PREFIX"
if [ "$QUICK" = 1 ]; then
  DURATION="${E2E_DURATION:-3}"; ROUNDS="${E2E_ROUNDS:-1}"; QUIET_BUDGET="${E2E_QUIET_BUDGET:-0}"
else
  DURATION="${E2E_DURATION:-10}"; ROUNDS="${E2E_ROUNDS:-3}"; QUIET_BUDGET="${E2E_QUIET_BUDGET:-300}"
fi
ROUND=1
QUIET=1           # whether the machine was quiet before the current system started
CONNS="${E2E_CONNS:-50}"          # wrk: keep-alive connections, one thread
H2_CONNS=10                       # h2load: connections x streams = $CONNS requests in flight
H2_STREAMS=$((CONNS / H2_CONNS))
LB_CORE=1
CLIENT_CORE=0
L7_BACKEND_CORE="${E2E_L7_BACKEND_CORE:-$LB_CORE}"
case "$L7_BACKEND_CORE" in
  "$CLIENT_CORE"|"$LB_CORE") ;;
  *) echo "E2E_L7_BACKEND_CORE: $CLIENT_CORE or $LB_CORE" >&2; exit 2 ;;
esac
BACKEND_CORE="$CLIENT_CORE"       # where the backends run now (place_backends moves them)
# Every process of the benchmark (client, backends, load balancer) runs at this niceness,
# in a session (autogroup) of the same niceness, so that other work on a shared VM gets
# little of the cores while a figure is taken.
NICE="${E2E_NICE:--10}"
EAL_MEM="${E2E_EAL_MEM:---no-huge -m 512}"
VIP=10.99.0.100
LB_ADDR=10.99.0.2
BACKENDS=(10.99.0.11 10.99.0.12 10.99.0.13)
UPSTREAM="${E2E_L7_UPSTREAM:-h1}"
case "${E2E_BACKEND_NOPUSH:=on}" in on|off) ;; *) echo "E2E_BACKEND_NOPUSH: on or off" >&2; exit 2 ;; esac
export E2E_BACKEND_NOPUSH
case "$UPSTREAM" in h1|h2) ;; *) echo "E2E_L7_UPSTREAM: h1 or h2" >&2; exit 2 ;; esac
UPSTREAM_H2_PORT=8080
# The L7 proxies' TLS listener (HTTP/1.1 or h2 by ALPN), with the run's certificate.
TLS_PORT=443
# the L7 proxies' upstream port, fulcrum's cluster protocol, HAProxy's server option and
# the suffix their labels carry
if [ "$UPSTREAM" = h2 ]; then
  UP_PORT=$UPSTREAM_H2_PORT; HAPROXY_PROTO=" proto h2"; UP_LABEL=" (h2 upstreams)"
else
  UP_PORT=80; HAPROXY_PROTO=""; UP_LABEL=""
fi
# E2E_L7_H2_ROW=1: with HTTP/1.1 upstreams (the default), fulcrum's pool is measured a
# second time in the same rounds with HTTP/2 upstreams.
H2_ROW="${E2E_L7_H2_ROW:-0}"
case "$H2_ROW" in 0|1) ;; *) echo "E2E_L7_H2_ROW: 0 or 1" >&2; exit 2 ;; esac
[ "$UPSTREAM" = h1 ] || H2_ROW=0
if [ -z "$OUT" ]; then
  if [ "$QUICK" = 1 ]; then OUT="${TMPDIR:-/tmp}/fulcrum-e2e-quick"; else OUT="$ROOT/bench/results"; fi
fi
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FULCRUM="$CARGO_TARGET_DIR/release/fulcrum"
L7BIN="$CARGO_TARGET_DIR/release/fulcrum-l7-standalone"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-e2e.XXXXXX")"
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"
TLS_CERT="$WORK/tls.crt"; TLS_KEY="$WORK/tls.key"; TLS_PEM="$WORK/tls.pem"
PIDS=()            # processes this script started (their own pids, killed on exit)
DPDK_PREFIX="$P-e2e"

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
ns() { ip netns exec "$1" "${@:2}"; }
die() { log "FAILED: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  [ -z "$LB_CGROUP" ] || rmdir "$LB_CGROUP" 2>/dev/null
  # the cpu controller this run enabled at the root (cgroup v2) is disabled again
  [ "${CPU_CONTROLLER_ENABLED:-0}" = 0 ] || echo -cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
  bash "$ROOT/tests/netns/topo.sh" down >/dev/null 2>&1
  rm -rf "/var/run/dpdk/$DPDK_PREFIX"-* 2>/dev/null
  rm -f /dev/hugepages/"$DPDK_PREFIX"-* 2>/dev/null
  if [ "$rc" != 0 ] && [ -d "$WORK" ]; then
    log "logs kept in $OUT/e2e-failed-logs"
    rm -rf "$OUT/e2e-failed-logs"; mkdir -p "$OUT/e2e-failed-logs"
    find "$WORK" -name '*.log' -exec cp --parents {} "$OUT/e2e-failed-logs" \; 2>/dev/null
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# E2E_LB_CPU: the cgroup every load balancer is started in ("" without a cap), and the
# command prefix that starts a program inside it (it execs, so the pid stays the
# program's). cgroup v2 (cpu.max) or v1's cpu controller (cfs_quota_us), period 10 ms.
LB_CGROUP=""
LB_IN_CGROUP=()
CPU_CONTROLLER_ENABLED=0
lb_cgroup_setup() {
  [ -n "${E2E_LB_CPU:-}" ] || return 0
  [[ "$E2E_LB_CPU" =~ ^[0-9]+$ ]] && [ "$E2E_LB_CPU" -ge 5 ] && [ "$E2E_LB_CPU" -le 100 ] \
    || die "E2E_LB_CPU: a percent of one CPU, 5 to 100 (got '$E2E_LB_CPU')"
  local quota=$((E2E_LB_CPU * 100))
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    if ! grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control; then
      echo +cpu >/sys/fs/cgroup/cgroup.subtree_control || die "E2E_LB_CPU: cannot enable the cpu controller"
      CPU_CONTROLLER_ENABLED=1
    fi
    LB_CGROUP="/sys/fs/cgroup/$P-e2e-lb"
    mkdir -p "$LB_CGROUP" && echo "$quota 10000" >"$LB_CGROUP/cpu.max" || die "E2E_LB_CPU: cpu.max"
  elif [ -d /sys/fs/cgroup/cpu ]; then
    LB_CGROUP="/sys/fs/cgroup/cpu/$P-e2e-lb"
    mkdir -p "$LB_CGROUP" && echo 10000 >"$LB_CGROUP/cpu.cfs_period_us" \
      && echo "$quota" >"$LB_CGROUP/cpu.cfs_quota_us" || die "E2E_LB_CPU: cfs_quota_us"
  else
    die "E2E_LB_CPU: no cgroup cpu controller on this machine"
  fi
  # shellcheck disable=SC2016
  LB_IN_CGROUP=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$LB_CGROUP")
  log "every load balancer capped at ${E2E_LB_CPU}% of one CPU ($LB_CGROUP)"
}

# Starts "$@" in the background with output to $1; its pid goes to LAST_PID and to the
# list killed on exit (taskset and `ip netns exec` exec, so the pid is the program's).
LAST_PID=""
LB_PID=""          # the load balancer under test (for E2E_PROFILE)
spawn() {
  local logf="$1"; shift
  "$@" >"$logf" 2>&1 &
  LAST_PID="$!"
  PIDS+=("$LAST_PID")
}

stop_pid() {
  local pid="$1" sig="${2:-TERM}"
  kill -"$sig" "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# --- 1. packages and binaries ------------------------------------------------------------
install_packages() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v wrk >/dev/null || need+=(wrk)
  command -v nft >/dev/null || need+=(nftables)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  command -v ethtool >/dev/null || need+=(ethtool)
  if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    # Debian starts nginx/haproxy services on install where an init system runs; this
    # benchmark starts its own instances and does not need them.
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q "${need[@]}" >"$WORK/apt.log" 2>&1 || {
      timeout 300 apt-get update -q >>"$WORK/apt.log" 2>&1
      DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q "${need[@]}" >>"$WORK/apt.log" 2>&1
    } || die "apt-get install ${need[*]} (see $WORK/apt.log)"
  fi
}

build() {
  log "building fulcrum and the L7 stand-alone runner (release)"
  if [ "$ONLY" != l7 ]; then
    (cd "$ROOT" && timeout 1800 cargo build --release -q --bin fulcrum) || die "cargo build fulcrum"
  fi
  if [ "$ONLY" != l4 ]; then
    (cd "$HERE/l7-standalone" && timeout 1800 cargo build --release -q) || die "cargo build l7-standalone"
  fi
}

# --- 2. topology and nginx backends ------------------------------------------------------
backend_nginx() {
  local i="$1" addr="$2" dir="$WORK/b$i"
  mkdir -p "$dir/www" "$dir/tmp"
  # a small static file (78 bytes) naming the backend
  printf 'backend%s: fulcrum end-to-end benchmark static file, served by nginx in %s-b%s\n' \
    "$i" "$P" "$i" >"$dir/www/index.html"
  # h2c (prior knowledge) for proxies with HTTP/2 upstreams (E2E_L7_UPSTREAM=h2)
  nginx_backend_conf "$dir" 80 "  server {
    listen $UPSTREAM_H2_PORT http2 backlog=4096;
    root $dir/www;
  }
" >"$dir/nginx.conf"
  spawn "$dir/nginx.out.log" taskset -c "$BACKEND_CORE" nice -n "$NICE" ip netns exec "$P-b$i" \
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
}

# place_backends CORE: every process of the backend namespaces (nginx's master and worker,
# all their threads) onto CORE.
place_backends() {
  [ "$BACKEND_CORE" != "$1" ] || return 0
  local i pid
  for i in 1 2 3; do
    for pid in $(ip netns pids "$P-b$i"); do
      taskset -a -p -c "$1" "$pid" >/dev/null || die "taskset of backend $i's $pid to core $1"
    done
  done
  BACKEND_CORE="$1"
  log "backends on core $1"
}

topology_up() {
  log "topology $P (dsr-ready backends: VIP on lo, arp_ignore)"
  bash "$ROOT/tests/netns/topo.sh" up dsr 1 >"$WORK/topo.log" 2>&1 || die "topo.sh up (see $WORK/topo.log)"
  # replace topo.sh's python HTTP servers by nginx: stop every process in the backend
  # namespaces (topo.sh's pid files name a subshell, not the server)
  for i in 1 2 3; do
    ip netns pids "$P-b$i" | xargs -r kill 2>/dev/null || true
  done
  for i in 1 2 3; do
    for _ in $(seq 1 50); do
      [ -z "$(ip netns pids "$P-b$i")" ] && break
      sleep 0.1
    done
    [ -z "$(ip netns pids "$P-b$i")" ] || die "processes left in $P-b$i: $(ip netns pids "$P-b$i")"
  done
  for i in 1 2 3; do backend_nginx "$i" "${BACKENDS[$((i - 1))]}"; done
  for i in 1 2 3; do
    local ok=0
    for _ in $(seq 1 50); do
      if ns "$P-b$i" curl -sfI -m 1 "http://127.0.0.1/index.html" 2>/dev/null | grep -qi '^server: nginx'; then ok=1; break; fi
      sleep 0.1
    done
    [ "$ok" = 1 ] || die "nginx in $P-b$i did not start ($(cat "$WORK/b$i/error.log" 2>/dev/null))"
  done
  # the LB namespace: no kernel forwarding, no ICMP redirects in the one-armed setup
  ns "$P-lb" sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.lb0.send_redirects=0
}

# Kernel addresses on lb0 for the kernel-based load balancers (absent while fulcrum drives
# lb0 with net_af_packet, or the kernel would answer its packets too).
lb_kernel_addresses() {
  ns "$P-lb" ip addr replace "$LB_ADDR/24" dev lb0
  ns "$P-lb" ip addr replace "$VIP/32" dev lb0
  ns "$P-lb" sysctl -qw net.ipv4.ip_forward=1
  flush_neighbours
}

flush_neighbours() {
  for n in cl b1 b2 b3; do ns "$P-$n" ip neigh flush all >/dev/null 2>&1 || true; done
}

# Requests served so far by each backend (nginx stub_status), "n1 n2 n3".
backend_counts() {
  local out=()
  for i in 1 2 3; do
    out+=("$(ns "$P-b$i" curl -s -m 2 "http://127.0.0.1/nginx_status" | awk 'NR==3 {print $3}')")
  done
  echo "${out[*]}"
}

# wait_vip [PORT [SCHEME]]: the VIP answers on PORT (80) over SCHEME (http; https takes
# the run's self-signed certificate as it is).
wait_vip() {
  local port="${1:-80}" scheme="${2:-http}"
  for _ in $(seq 1 100); do
    if ns "$P-cl" curl -skf -m 1 -o /dev/null "$scheme://$VIP:$port/index.html"; then return 0; fi
    sleep 0.2
  done
  return 1
}

# The TLS listeners' certificate: ECDSA P-256, self-signed, made for this run; every
# proxy serves the same one ($TLS_CERT, $TLS_KEY; HAProxy reads both from $TLS_PEM).
make_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$VIP" -keyout "$TLS_KEY" -out "$TLS_CERT" >/dev/null 2>&1 \
    || die "openssl could not make the TLS certificate"
  cat "$TLS_CERT" "$TLS_KEY" >"$TLS_PEM"
}

# tls_session KEY: the protocol and cipher suite the VIP's TLS listener picks for an
# OpenSSL client (what wrk and h2load link), logged and kept for the report.
tls_session() {
  local got
  got="$(ns "$P-cl" timeout 5 openssl s_client -brief -connect "$VIP:$TLS_PORT" </dev/null 2>&1 \
    | sed -nE 's/^(Protocol version|Ciphersuite): *//p' | paste -sd' ')"
  log "$1 over TLS: $got"
  printf '%s\t%s\n' "$1" "$got" >>"$WORK/tls-sessions.txt"
}

# run_tls KEY LABEL: the system's TLS listener, HTTP/1.1 keep-alive (wrk) and h2 by ALPN
# (h2load), as KEY-h1tls and KEY-h2tls.
run_tls() {
  wait_vip "$TLS_PORT" https || die "$2: VIP not answering HTTPS on port $TLS_PORT"
  [ "$ROUND" != 1 ] || tls_session "$1"
  run_wrk "$1-h1tls" l7 "$2" "https://$VIP:$TLS_PORT/index.html"
  run_h2load "$1-h2tls" l7 "$2" "https://$VIP:$TLS_PORT/index.html"
}

# --- 3. measurements -----------------------------------------------------------------------
# row: KEY GROUP LABEL CLIENT RPS P50_US P99_US ERRORS SPLIT CPU LB_CPU%
# (plus the round, and whether the machine was quiet before the system started)
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$ROUND" "$QUIET" >>"$RESULTS"; }

# CPU time (clock ticks, all threads) used so far by the load balancer process, or "".
# The load balancer process's user and system CPU ticks (all threads): "UTIME STIME";
# "" without a process (nftables, the reference).
lb_split() {
  [ -n "$LB_PID" ] && [ -r "/proc/$LB_PID/stat" ] || { [ -z "$LB_PID" ] || log "lb_split: no /proc/$LB_PID/stat"; echo ""; return; }
  sed 's/.*) //' "/proc/$LB_PID/stat" | awk '{print $12, $13}'
}
# Their sum, for lb_percent.
lb_ticks() { [ -n "$1" ] || { echo ""; return; }; echo $(( ${1% *} + ${1#* } )); }
# cpu_split KEY LABEL REQUESTS "U0 S0" "U1 S1": the load balancer's user and system CPU per
# request over a figure (the kernel's share of a proxy's work shows here; the table's
# "LB process CPU" is their sum), in the log and OUT/e2e-cpu-split.txt.
cpu_split() {
  [ -n "$4" ] && [ -n "$5" ] && [ "${3:-0}" -gt 0 ] 2>/dev/null || return 0
  local per
  per="$(awk -v a="$4" -v b="$5" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      printf "user %.1f us, system %.1f us", (y[1] - x[1]) / hz / n * 1e6, (y[2] - x[2]) / hz / n * 1e6 }')"
  log "$2: load balancer CPU per request: $per"
  echo "$1 ($2, $3 requests): $per" >>"$WORK/cpu-split.txt"
}

# switches_snapshot: context switches so far, voluntary and involuntary, of the load
# balancer (all threads) and of the backends (every process of their namespaces):
# "LB_VOL LB_INVOL BE_VOL BE_INVOL". On the L7 tables the backends share the load
# balancer's core, so how often each proxy hands the core over (and is taken off it)
# is part of what a request costs there.
switches_snapshot() {
  local backends=() i
  for i in 1 2 3; do backends+=($(ip netns pids "$P-b$i" 2>/dev/null || true)); done
  echo "$(task_switches $LB_PID) $(task_switches "${backends[@]}")"
}
# task_switches PID...: "VOLUNTARY INVOLUNTARY" context switches of every thread of PIDs.
task_switches() {
  local pid files=()
  for pid in "$@"; do files+=(/proc/"$pid"/task/*/status); done
  [ "${#files[@]}" -gt 0 ] || { echo "0 0"; return; }
  awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v + 0, n + 0}' \
    "${files[@]}" 2>/dev/null || true
}
# switches_split KEY LABEL REQUESTS BEFORE AFTER: context switches a request, in the log
# and OUT/e2e-switches.txt.
switches_split() {
  [ -n "$4" ] && [ -n "$5" ] && [ "${3:-0}" -gt 0 ] 2>/dev/null || return 0
  local per
  per="$(awk -v a="$4" -v b="$5" -v n="$3" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      printf "load balancer %.3f voluntary, %.3f involuntary; backends %.3f voluntary, %.3f involuntary",
        (y[1] - x[1]) / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n, (y[4] - x[4]) / n }')"
  log "$2: context switches per request: $per"
  echo "$1 ($2, $3 requests): $per" >>"$WORK/switches.txt"
}

# Percent of one core the load balancer used between two lb_ticks sums over $3 us.
lb_percent() {
  [ -n "$1" ] && [ -n "$2" ] || { echo "-"; return; }
  awk -v a="$1" -v b="$2" -v us="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", 100 * (b - a) / hz / (us / 1e6)}'
}

# E2E_SYSCALLS: count the load balancer's system calls (all its threads) during every
# figure, by kind, to set them against the requests it served.
SYSCALL_EVENTS="raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_readv,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex,syscalls:sys_enter_clock_gettime,syscalls:sys_enter_accept4"
STAT_PID=""
syscalls_start() {
  [ -n "${E2E_SYSCALLS:-}" ] && [ -n "$LB_PID" ] || return 0
  spawn "$WORK/$1.syscalls.txt" perf stat -x, -e "$SYSCALL_EVENTS" -p "$LB_PID"
  STAT_PID="$LAST_PID"
}
# syscalls_stop KEY LABEL REQUESTS: per request, by kind.
syscalls_stop() {
  [ -n "$STAT_PID" ] || return 0
  stop_pid "$STAT_PID" INT
  STAT_PID=""
  local per
  per="$(awk -F, -v n="$3" '$3 ~ /sys_enter/ && n > 0 {
      name = $3; sub(/.*sys_enter_?/, "", name); if (name == "") name = "all"
      if ($1 + 0 > 0) printf "%s%s %.2f", (k++ ? ", " : ""), name, $1 / n }' "$WORK/$1.syscalls.txt")"
  log "$2: system calls per request: $per"
  echo "$1 ($2, $3 requests): $per" >>"$OUT/e2e-syscalls.txt"
}

# E2E_NSTAT: TCP segments per request in the load balancer's namespace (in, out, and
# the TcpExt counters that tell pure ACKs and delayed ACKs apart), to set the kernel
# work each proxy causes against the requests it served.
NSTAT_KEYS="InSegs OutSegs RetransSegs DelayedACKs TCPPureAcks TCPHPAcks TCPAutoCorking TCPOrigDataSent TCPHPHits"
nstat_read() {
  ns "$P-lb" cat /proc/net/snmp /proc/net/netstat | awk -v keys="$NSTAT_KEYS" '
    BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
    /^(Tcp|TcpExt):/ { if (!($1 in hdr)) { hdr[$1] = $0; next }
      split(hdr[$1], h, " "); for (i = 2; i <= NF; i++) if (h[i] in want) v[h[i]] = $i }
    END { for (i = 1; i <= n; i++) printf "%s=%s ", k[i], v[k[i]] + 0 }'
}
NSTAT_BEFORE=""
nstat_start() { [ -n "${E2E_NSTAT:-}" ] || return 0; NSTAT_BEFORE="$(nstat_read)"; }
# nstat_stop KEY LABEL REQUESTS
nstat_stop() {
  [ -n "$NSTAT_BEFORE" ] || return 0
  local after per
  after="$(nstat_read)"
  per="$(awk -v a="$NSTAT_BEFORE" -v b="$after" -v n="$3" 'BEGIN {
      na = split(a, x, " "); split(b, y, " ")
      for (i = 1; i <= na; i++) { split(x[i], p, "="); split(y[i], q, "=")
        if (n > 0) printf "%s%s %.2f", (i > 1 ? ", " : ""), p[1], (q[2] - p[2]) / n } }')"
  NSTAT_BEFORE=""
  log "$2: TCP counters per request (LB namespace): $per"
  echo "$1 ($2, $3 requests): $per" >>"$OUT/e2e-nstat.txt"
}

# E2E_PROFILE: perf record of the load balancer (LB_PID) during the figures it names.
PERF_PID=""
profile_start() {
  [[ " ${E2E_PROFILE:-} " == *" $1 "* ]] && [ -n "$LB_PID" ] || return 0
  command -v perf >/dev/null || { log "E2E_PROFILE: no perf"; return 0; }
  spawn "$WORK/$1.perf.log" perf record -F ${E2E_PERF_FREQ:-499} -g -o "$WORK/$1.perf.data" -p "$LB_PID"
  PERF_PID="$LAST_PID"
}
profile_stop() {
  [ -n "$PERF_PID" ] || return 0
  stop_pid "$PERF_PID" INT
  PERF_PID=""
  perf report -i "$WORK/$1.perf.data" --no-children --percent-limit 0.7 --stdio -g none \
    >"$OUT/e2e-profile-$1.txt" 2>/dev/null || true
  # where the time went by binary (kernel, libc, the proxy itself)
  perf report -i "$WORK/$1.perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | sed 's/^/# by dso: /' >>"$OUT/e2e-profile-$1.txt" || true
  [ -z "${E2E_PERF_KEEP:-}" ] || cp "$WORK/$1.perf.data" "$OUT/e2e-profile-$1.perf.data"
  log "profile of $1: $OUT/e2e-profile-$1.txt"
}

# Waits (within what is left of QUIET_BUDGET) until both cores were at least 80% idle over
# one second: other work on a shared VM skews every figure. Sets QUIET.
wait_quiet() {
  QUIET=1
  while :; do
    local a b busy
    a="$(cpu_snapshot)"; sleep 1; b="$(cpu_snapshot)"
    busy="$(cpu_usage "$a" "$b" | awk '{split($1, x, "/"); split($2, y, "/"); print (x[1] > y[1] ? x[1] : y[1])}')"
    [ "$busy" -le 20 ] && return 0
    if [ "$QUIET_BUDGET" -le 0 ]; then
      QUIET=0
      [ "$QUICK" = 1 ] || log "machine busy (${busy}% on a core): measuring anyway"
      return 0
    fi
    QUIET_BUDGET=$((QUIET_BUDGET - 1))
  done
}

lb_no_kernel_addresses() {
  ns "$P-lb" ip addr flush dev lb0
  ns "$P-lb" sysctl -qw net.ipv4.ip_forward=0
  flush_neighbours
}

# Jiffies of cores 0 and 1: "busy0 softirq0 total0 busy1 softirq1 total1".
cpu_snapshot() {
  awk '$1 == "cpu0" || $1 == "cpu1" {
         busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6
         printf "%d %d %d ", busy, $8, total }' /proc/stat
}

# "core0 busy%/softirq% core1 busy%/softirq%" between two snapshots.
cpu_usage() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    for (c = 0; c < 2; c++) {
      t = y[3*c+3] - x[3*c+3]; if (t <= 0) t = 1
      printf "%s%d/%d", (c ? " " : ""), 100 * (y[3*c+1] - x[3*c+1]) / t, 100 * (y[3*c+2] - x[3*c+2]) / t
    } }'
}

# Per-backend requests between two stub_status readings (each reading counts itself).
backend_split() {
  paste -d' ' <(tr ' ' '\n' <<<"$1") <(tr ' ' '\n' <<<"$2") | awk '{printf "%s%d", (NR>1?"/":""), $2-$1-1}'
}

run_wrk() {
  local key="$1" group="$2" label="$3" url="$4"
  local before after out line
  before="$(backend_counts)"
  out="$WORK/$key.wrk.log"
  log "$label: wrk -t1 -c$CONNS -d${DURATION}s $url"
  local cpu0 cpu1
  profile_start "$key"
  syscalls_start "$key"
  nstat_start
  local lb0 lb1 t0 t1
  local split0 split1
  local sw0 sw1
  sw0="$(switches_snapshot)"
  split0="$(lb_split)"; t0="$(date +%s%N)"
  lb0="$(lb_ticks "$split0")"
  cpu0="$(cpu_snapshot)"
  timeout $((DURATION + 30)) taskset -c "$CLIENT_CORE" nice -n "$NICE" ip netns exec "$P-cl" \
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s -s "$HERE/report.lua" "$url" >"$out" 2>&1 \
    || die "$label: wrk failed: $(cat "$out")"
  cpu1="$(cpu_snapshot)"
  split1="$(lb_split)"; t1="$(date +%s%N)"
  sw1="$(switches_snapshot)"
  lb1="$(lb_ticks "$split1")"
  profile_stop "$key"
  after="$(backend_counts)"
  line="$(grep '^E2E ' "$out")" || die "$label: no wrk report: $(cat "$out")"
  local req dur p50 p99 errs
  req="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")"
  syscalls_stop "$key" "$label" "$req"
  cpu_split "$key" "$label" "$req" "$split0" "$split1"
  switches_split "$key" "$label" "$req" "$sw0" "$sw1"
  nstat_stop "$key" "$label" "$req"
  dur="$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")"
  p50="$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")"
  p99="$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")"
  errs="$(awk '{s=0; for (i=1;i<=NF;i++) if ($i ~ /^err_/) {split($i,a,"="); s+=a[2]} print s}' <<<"$line")"
  local rps split cpu
  rps="$(awk -v r="$req" -v d="$dur" 'BEGIN {printf "%.0f", r / (d / 1e6)}')"
  split="$(backend_split "$before" "$after")"
  cpu="$(cpu_usage "$cpu0" "$cpu1")"
  local lbcpu
  lbcpu="$(lb_percent "$lb0" "$lb1" $(((t1 - t0) / 1000)))"
  log "$label: $rps req/s, p50 ${p50} us, p99 ${p99} us, errors $errs, backends $split, cpu busy/softirq % $cpu, LB cpu $lbcpu%"
  record "$key" "$group" "$label" "wrk" "$rps" "$p50" "$p99" "$errs" "$split" "$cpu" "$lbcpu"
}

run_h2load() {
  local key="$1" group="$2" label="$3" url="$4"
  local before after out reqlog
  before="$(backend_counts)"
  out="$WORK/$key.h2load.log"
  reqlog="$WORK/$key.h2load.requests"
  log "$label: h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D$DURATION $url"
  local cpu0 cpu1
  profile_start "$key"
  syscalls_start "$key"
  nstat_start
  local lb0 lb1 t0 t1
  local split0 split1
  local sw0 sw1
  sw0="$(switches_snapshot)"
  split0="$(lb_split)"; t0="$(date +%s%N)"
  lb0="$(lb_ticks "$split0")"
  cpu0="$(cpu_snapshot)"
  timeout $((DURATION + 30)) taskset -c "$CLIENT_CORE" nice -n "$NICE" ip netns exec "$P-cl" \
    h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DURATION" --log-file="$reqlog" "$url" >"$out" 2>&1 \
    || die "$label: h2load failed: $(cat "$out")"
  cpu1="$(cpu_snapshot)"
  split1="$(lb_split)"; t1="$(date +%s%N)"
  sw1="$(switches_snapshot)"
  lb1="$(lb_ticks "$split1")"
  profile_stop "$key"
  after="$(backend_counts)"
  local rps failed errored timeouts stats
  rps="$(sed -nE 's/^finished in [^,]+, ([0-9.]+) req\/s.*/\1/p' "$out" | awk '{printf "%.0f", $1}')"
  [ -n "$rps" ] || die "$label: no h2load summary: $(cat "$out")"
  local h2req
  h2req="$(sed -nE 's/^requests: [0-9]+ total, [0-9]+ started, [0-9]+ done, ([0-9]+) succeeded.*/\1/p' "$out")"
  syscalls_stop "$key" "$label" "$h2req"
  cpu_split "$key" "$label" "$h2req" "$split0" "$split1"
  switches_split "$key" "$label" "$h2req" "$sw0" "$sw1"
  nstat_stop "$key" "$label" "$h2req"
  read -r failed errored timeouts < <(sed -nE 's/^requests: .* ([0-9]+) failed, ([0-9]+) errored, ([0-9]+) timeout.*/\1 \2 \3/p' "$out")
  # per-request log: start (us since epoch) TAB status TAB response time (us)
  stats="$(python3 - "$reqlog" <<'PY'
import sys
lat, bad = [], 0
with open(sys.argv[1]) as f:
    for line in f:
        parts = line.split()
        if len(parts) < 3:
            continue
        if not parts[1].startswith(("2", "3")):
            bad += 1
        lat.append(int(parts[2]))
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
print(pick(0.50), pick(0.99), bad)
PY
)"
  local p50 p99 bad
  read -r p50 p99 bad <<<"$stats"
  local errs=$((failed + errored + timeouts + bad))
  local split cpu
  split="$(backend_split "$before" "$after")"
  cpu="$(cpu_usage "$cpu0" "$cpu1")"
  local lbcpu
  lbcpu="$(lb_percent "$lb0" "$lb1" $(((t1 - t0) / 1000)))"
  log "$label: $rps req/s, p50 ${p50} us, p99 ${p99} us, errors $errs, backends $split, cpu busy/softirq % $cpu, LB cpu $lbcpu%"
  record "$key" "$group" "$label" "h2load" "$rps" "$p50" "$p99" "$errs" "$split" "$cpu" "$lbcpu"
  rm -f "$reqlog"
}

# fulcrum L4 on net_af_packet, one worker on $LB_CORE.
fulcrum_l4() {
  wait_quiet
  local key="$1" forwarding="$2" idle="$3" label="$4"
  local dir="$WORK/$key"
  mkdir -p "$dir"
  local eal="\"--no-pci\", \"--file-prefix=$DPDK_PREFIX-$key\", \"--vdev=net_af_packet0,iface=lb0\", \"--log-level=*:warning\""
  for a in $EAL_MEM; do eal+=", \"$a\""; done
  cat >"$dir/fulcrum.yaml" <<EOF
dpdk:
  eal_args: [$eal]
ports:
  - name: lan
    device: net_af_packet0
    address: $LB_ADDR/24
workers:
  cores: [$LB_CORE]
  idle: $idle
flow_table:
  capacity: 65536
admin:
  listen: 127.0.0.1:0
services:
  - name: web
    vip: $VIP
    port: 80
    protocol: tcp
    forwarding: $forwarding
    backends:
      - address: ${BACKENDS[0]}
      - address: ${BACKENDS[1]}
      - address: ${BACKENDS[2]}
EOF
  flush_neighbours
  spawn "$dir/fulcrum.log" "${LB_IN_CGROUP[@]}" taskset -c "$LB_CORE" nice -n "$NICE" ip netns exec "$P-lb" "$FULCRUM" run -c "$dir/fulcrum.yaml"
  local pid="$LAST_PID"
  LB_PID="$pid"
  local up=0
  for _ in $(seq 1 300); do
    grep -q "workers running" "$dir/fulcrum.log" 2>/dev/null && { up=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ "$up" = 1 ] || die "$label: fulcrum did not start: $(cat "$dir/fulcrum.log")"
  wait_vip 80 || die "$label: VIP not answering through fulcrum: $(tail -20 "$dir/fulcrum.log")"
  run_wrk "$key" l4 "$label" "http://$VIP/index.html"
  stop_pid "$pid" INT
  # fulcrum's own final counters, kept for the report
  grep -E '^counter (port_imissed|port_ierrors|port_oerrors|worker_tx_dropped|engine_new_flows|port_ipackets|port_opackets)' \
    "$dir/fulcrum.log" | sed "s/^/$key round$ROUND /" >>"$WORK/counters.txt" || true
}

nftables_lb() {
  wait_quiet
  lb_kernel_addresses
  ns "$P-lb" nft -f - <<EOF
table ip fulcrum_e2e {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $VIP tcp dport 80 dnat to numgen random mod 3 map { 0 : ${BACKENDS[0]}, 1 : ${BACKENDS[1]}, 2 : ${BACKENDS[2]} }
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip daddr { ${BACKENDS[0]}, ${BACKENDS[1]}, ${BACKENDS[2]} } tcp dport 80 masquerade
  }
}
EOF
  ns "$P-lb" nft list ruleset >"$WORK/nft-ruleset.txt"
  wait_vip 80 || die "nftables: VIP not answering"
  LB_PID=""
  run_wrk nft l4 "nftables DNAT (numgen + masquerade)" "http://$VIP/index.html"
  ns "$P-lb" nft delete table ip fulcrum_e2e
}

# Starts HAProxy (foreground, one thread) on the config file $WORK/$1.haproxy.cfg.
haproxy_run() {
  local key="$1"
  spawn "$WORK/$key.haproxy.log" "${LB_IN_CGROUP[@]}" taskset -c "$LB_CORE" nice -n "$NICE" ip netns exec "$P-lb" haproxy -db -f "$WORK/$key.haproxy.cfg"
}

haproxy_global() {
  cat <<EOF
global
  nbthread 1
  maxconn 8000
  tune.bufsize 16384
defaults
  timeout connect 2s
  timeout client 60s
  timeout server 60s
EOF
}

haproxy_tcp() {
  wait_quiet
  { haproxy_global; cat <<EOF
  mode tcp
listen vip
  bind $VIP:80
  balance roundrobin
  server b1 ${BACKENDS[0]}:80
  server b2 ${BACKENDS[1]}:80
  server b3 ${BACKENDS[2]}:80
EOF
  } >"$WORK/haproxy-tcp.haproxy.cfg"
  haproxy_run haproxy-tcp
  local pid="$LAST_PID"
  LB_PID="$pid"
  wait_vip 80 || die "haproxy tcp: VIP not answering: $(cat "$WORK/haproxy-tcp.haproxy.log")"
  run_wrk haproxy-tcp l4 "HAProxy $(haproxy_version) TCP mode" "http://$VIP/index.html"
  stop_pid "$pid"
}

haproxy_http() {
  wait_quiet
  { haproxy_global; cat <<EOF
  mode http
  option http-keep-alive
  option forwardfor
  timeout http-keep-alive 60s
  http-reuse safe
frontend web
  bind $VIP:80
  bind $VIP:81 proto h2
  bind $VIP:$TLS_PORT ssl crt $TLS_PEM alpn h2,http/1.1
EOF
  haproxy_added_headers
  cat <<EOF
  default_backend backends
backend backends
  balance roundrobin
  server b1 ${BACKENDS[0]}:$UP_PORT$HAPROXY_PROTO
  server b2 ${BACKENDS[1]}:$UP_PORT$HAPROXY_PROTO
  server b3 ${BACKENDS[2]}:$UP_PORT$HAPROXY_PROTO
EOF
  } >"$WORK/haproxy-http.haproxy.cfg"
  haproxy_run haproxy-http
  local pid="$LAST_PID"
  LB_PID="$pid"
  wait_vip 80 || die "haproxy http: VIP not answering: $(cat "$WORK/haproxy-http.haproxy.log")"
  run_wrk haproxy-http-h1 l7 "HAProxy $(haproxy_version) HTTP mode$UP_LABEL" "http://$VIP/index.html"
  run_h2load haproxy-http-h2 l7 "HAProxy $(haproxy_version) HTTP mode$UP_LABEL" "http://$VIP:81/index.html"
  run_tls haproxy-http "HAProxy $(haproxy_version) HTTP mode$UP_LABEL"
  stop_pid "$pid"
}

nginx_proxy() {
  wait_quiet
  local dir="$WORK/nginx-lb"
  mkdir -p "$dir/tmp"
  local upstream="upstream backends { server ${BACKENDS[0]}:80; server ${BACKENDS[1]}:80; server ${BACKENDS[2]}:80; keepalive 128; keepalive_requests 10000000; keepalive_timeout 60s; }"
  # The headers fulcrum's pool adds, so each proxy does the same work per request:
  # X-Forwarded-For (appended), X-Forwarded-Proto, X-Request-Id (random, 32 hex) and a
  # W3C traceparent (nginx has no span generator: the span id is the request id's head).
  local hdrs="proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Request-Id \$request_id; proxy_set_header traceparent 00-\$request_id-\$span_id-01;"
  local loc="location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; $hdrs }"
  nginx_conf "$dir" "  keepalive_timeout 120s;
  keepalive_requests 10000000;
  map \$request_id \$span_id { \"~^(?<head>.{16})\" \$head; }
  $upstream
  server { listen $VIP:80 backlog=4096; $loc }
  server { listen $VIP:81 http2 backlog=4096; $loc }
  server { listen $VIP:$TLS_PORT ssl http2 backlog=4096; ssl_certificate $TLS_CERT; ssl_certificate_key $TLS_KEY; ssl_protocols TLSv1.2 TLSv1.3; $loc }" >"$dir/nginx.conf"
  spawn "$dir/nginx.out.log" "${LB_IN_CGROUP[@]}" taskset -c "$LB_CORE" nice -n "$NICE" ip netns exec "$P-lb" \
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
  local pid="$LAST_PID"
  wait_vip 80 || die "nginx proxy: VIP not answering: $(cat "$dir/error.log")"
  LB_PID="$(pgrep -P "$pid" | head -1)"   # the worker process
  run_wrk nginx-h1 l7 "nginx $(nginx_version) reverse proxy" "http://$VIP/index.html"
  run_h2load nginx-h2 l7 "nginx $(nginx_version) reverse proxy" "http://$VIP:81/index.html"
  run_tls nginx "nginx $(nginx_version) reverse proxy"
  stop_pid "$pid" QUIT
}

# fulcrum_l7 KEY LABEL UPSTREAM COMMAND...: the L7 pool, started as COMMAND l7.yaml, its
# clusters speaking UPSTREAM (h1 or h2) to the backends.
fulcrum_l7() {
  local key="$1" label="$2" up_protocol=http1 up_port=80
  if [ "$3" = h2 ]; then up_protocol=http2 up_port=$UPSTREAM_H2_PORT; fi
  shift 3
  wait_quiet
  local dir="$WORK/$key"
  mkdir -p "$dir"
  l7_service() {
    cat <<EOF
  - name: $1
    listen: $VIP:$2
EOF
    if [ -n "${3:-}" ]; then
      cat <<EOF
    tls:
      certificates: [{ cert: "$TLS_CERT", key: "$TLS_KEY" }]
EOF
    fi
    cat <<EOF
    routes:
      - cluster: backends
    clusters:
      - name: backends
        protocol: $up_protocol
        lb: round_robin
        endpoints:
          - address: "${BACKENDS[0]}:$up_port"
          - address: "${BACKENDS[1]}:$up_port"
          - address: "${BACKENDS[2]}:$up_port"
EOF
  }
  { cat <<EOF
l7:
  cores: [$LB_CORE]
  access_log: none
services:
EOF
    l7_service web 80; l7_service web-h2c 81; l7_service web-tls "$TLS_PORT" tls; } >"$dir/l7.yaml"
  spawn "$dir/l7.log" "${LB_IN_CGROUP[@]}" taskset -c "$LB_CORE" nice -n "$NICE" ip netns exec "$P-lb" "$@" "$dir/l7.yaml"
  local pid="$LAST_PID"
  LB_PID="$pid"
  wait_vip 80 || die "$label: VIP not answering: $(cat "$dir/l7.log")"
  run_wrk "$key-h1" l7 "$label" "http://$VIP/index.html"
  run_h2load "$key-h2" l7 "$label" "http://$VIP:81/index.html"
  run_tls "$key" "$label"
  stop_pid "$pid" INT
}

haproxy_version() { haproxy -v 2>/dev/null | sed -nE '1s/.*version ([0-9.]+).*/\1/p'; }
nginx_version() { nginx -v 2>&1 | sed -nE 's/.*nginx\/([0-9.]+).*/\1/p'; }

# --- main ----------------------------------------------------------------------------------
# One round measures every system once; the report takes each system's median round.
one_round() {
  ROUND="$1"
  log "round $ROUND of $ROUNDS"
  lb_no_kernel_addresses

  # Reference: the client straight to one backend (no load balancer).
  place_backends "$CLIENT_CORE"
  wait_quiet
  LB_PID=""
  run_wrk direct ref "no load balancer (client to one backend)" "http://${BACKENDS[0]}/index.html"

  if [ "$ONLY" != l7 ]; then
    # L4. fulcrum first, while lb0 has no kernel addresses.
    fulcrum_l4 fulcrum-nat nat adaptive "fulcrum L4 nat (net_af_packet)"
    fulcrum_l4 fulcrum-dsr dsr adaptive "fulcrum L4 dsr (net_af_packet)"
    if [ "$QUICK" = 0 ]; then
      fulcrum_l4 fulcrum-dsr-poll dsr poll "fulcrum L4 dsr, idle: poll"
    fi
    nftables_lb
    haproxy_tcp
  fi

  if [ "$ONLY" != l4 ]; then
    # L7 (the VIP on lb0, as the kernel-based L4 systems leave it).
    place_backends "$L7_BACKEND_CORE"
    lb_kernel_addresses
    fulcrum_l7 fulcrum-l7 "fulcrum L7 pool$UP_LABEL" "$UPSTREAM" "$L7BIN"
    if [ "$H2_ROW" = 1 ]; then
      fulcrum_l7 fulcrum-l7-h2up "fulcrum L7 pool (h2 upstreams)" h2 "$L7BIN"
    fi
    if [ -n "${E2E_L7_BASE:-}" ]; then
      fulcrum_l7 fulcrum-l7-base "fulcrum L7 pool, before ($(basename "$E2E_L7_BASE"))" "$UPSTREAM" "$E2E_L7_BASE" l7 -c
    fi
    haproxy_http
    nginx_proxy
  fi
}

START=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
install_packages
build
[ "$ONLY" = l7 ] || [ -x "$FULCRUM" ] || die "no $FULCRUM"
[ "$ONLY" = l4 ] || [ -x "$L7BIN" ] || die "no $L7BIN"
: >"$RESULTS"
: >"$WORK/counters.txt"
: >"$WORK/tls-sessions.txt"
[ "$ONLY" = l4 ] || make_certificate
lb_cgroup_setup
topology_up
for r in $(seq 1 "$ROUNDS"); do one_round "$r"; done

ELAPSED=$(( $(date +%s) - START ))
log "measured in ${ELAPSED}s; writing $OUT"
cp "$RESULTS" "$OUT/e2e-results.tsv"
cp "$WORK/counters.txt" "$OUT/e2e-counters.txt"
[ ! -f "$WORK/cpu-split.txt" ] || cp "$WORK/cpu-split.txt" "$OUT/e2e-cpu-split.txt"
[ ! -f "$WORK/switches.txt" ] || cp "$WORK/switches.txt" "$OUT/e2e-switches.txt"
python3 "$HERE/report.py" --results "$RESULTS" --counters "$WORK/counters.txt" --out "$OUT" \
  --duration "$DURATION" --conns "$CONNS" --h2-conns "$H2_CONNS" --h2-streams "$H2_STREAMS" \
  --lb-core "$LB_CORE" --client-core "$CLIENT_CORE" --l7-backend-core "$L7_BACKEND_CORE" \
  --elapsed "$ELAPSED" --rounds "$ROUNDS" \
  --quick "$QUICK" --root "$ROOT" --nft-ruleset "$WORK/nft-ruleset.txt" \
  --tls-sessions "$WORK/tls-sessions.txt" \
  --load "$LOAD_BEFORE -> $(cut -d' ' -f1-3 /proc/loadavg)" \
  --autogroup "$(cat "/proc/$$/autogroup" 2>/dev/null)" --lb-cpu "${E2E_LB_CPU:-}" \
  --backend-nopush "$E2E_BACKEND_NOPUSH"

# every system under test gave figures and no request failed
awk -F'\t' '$5 + 0 <= 0 || $8 + 0 > 0 { bad = 1; print "bad row: " $0 > "/dev/stderr" } END { exit bad }' "$RESULTS" \
  || die "a system under test gave no figures or had failed requests"
log "done: $OUT/e2e.md"
