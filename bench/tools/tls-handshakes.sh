#!/usr/bin/env bash
# What a full TLS handshake costs each L7 proxy, by key exchange: the hybrid
# post-quantum X25519MLKEM768 that fulcrum's pool picks for clients offering it
# (current browsers do) against classical X25519, and nginx and HAProxy beside it.
#
#   bench/tools/tls-handshakes.sh [-n CONNECTIONS] [-c CONCURRENCY] [-r ROUNDS] [SYSTEM...]
#
# SYSTEM is `fulcrum` (the stand-alone L7 pool), `nginx` or `haproxy`; all three by
# default. The pool and the client are built in bench/e2e/l7-standalone into
# $CARGO_TARGET_DIR or target/ (bench/e2e/run.sh builds both). Installs nginx, haproxy, openssl and curl when missing (Debian
# packages; needs root then).
#
# One nginx backend (CPU 0) serves a static file on 127.0.0.1:18181. Each proxy in turn
# (CPU 1) terminates TLS on 127.0.0.1:18443 with an ECDSA P-256 certificate this run
# makes, and passes `GET /` to the backend over a kept-alive upstream connection. The
# client, `fulcrum-tls-handshakes` (rustls on aws-lc-rs, CPU 0; cipher suites in a
# browser's order, AES-128-GCM first), opens CONNECTIONS new
# connections (default 4000, CONCURRENCY at a time, default 16), each a full handshake
# (no resumption), one request with `Connection: close`, and its response. It offers
# either what a browser offers (`browser`: X25519MLKEM768 then X25519, a key share for
# each) or X25519 alone (`x25519`). nginx 1.22 and HAProxy 2.6 link Debian's OpenSSL 3.0,
# which has no ML-KEM: they answer a browser's offer with X25519. A third pass
# (`resume`) makes the browser's offer again but keeps the session tickets it is given
# and resumes with them (a resumed TLS 1.3 handshake still exchanges keys, but signs
# and verifies no certificate).
#
# Per system and offer it prints the group the server picked, connections a second, the
# handshake's p50 and p99 (connect to handshake done, at the client) and the proxy's CPU
# a connection (user + system, from /proc, over the measured connections): the figure
# that compares the proxies, since the client shares CPU 0 with the backend. A warm-up of
# 500 connections comes first. It fails (exit 1) when a connection fails, when a server
# picks another group than expected (fulcrum X25519MLKEM768 for a browser's offer, the
# others X25519, and every server X25519 when only that is offered), or when fewer than
# 80% of the `resume` pass's connections resume. Every run is bounded (timeout) and stopped; everything
# listens on 127.0.0.1 and is removed at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
connections=4000 concurrency=16 rounds=1
while getopts "n:c:r:" o; do
  case "$o" in
    n) connections="$OPTARG" ;;
    c) concurrency="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    *) sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
for v in "$connections" "$concurrency" "$rounds"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "tls-handshakes: -n, -c and -r take positive counts" >&2; exit 2; }
done
[ $# -ge 1 ] || set -- fulcrum nginx haproxy
for s in "$@"; do
  case "$s" in fulcrum | nginx | haproxy) ;; *) echo "tls-handshakes: unknown system $s" >&2; exit 2 ;; esac
done

# shellcheck source=scripts/setup.sh
source "$root/scripts/setup.sh"
# shellcheck source=bench/e2e/conf.sh
source "$root/bench/e2e/conf.sh"
install_debs nginx haproxy openssl curl python3

bin_dir="${CARGO_TARGET_DIR:-$root/target}/release"
client="$bin_dir/fulcrum-tls-handshakes"
pool="$bin_dir/fulcrum-l7-standalone"
for b in "$client" "$pool"; do
  [ -x "$b" ] || { echo "tls-handshakes: no $b (cargo build --release in bench/e2e/l7-standalone)" >&2; exit 2; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-tlshs.XXXXXX")"
pids=()
cleanup() {
  # TERM first: an nginx master killed outright leaves its worker running
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

NAME=bench.fulcrum.test
mkdir -p "$work/www" "$work/tmp" "$work/lb/tmp"
printf 'backend1: fulcrum TLS handshake benchmark static file\n' >"$work/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1
cat "$work/tls.crt" "$work/tls.key" >"$work/tls.pem"
nginx_backend_conf "$work" 127.0.0.1:18181 >"$work/backend.conf"

cat >"$work/l7.yaml" <<EOF
l7:
  cores: [1]
  access_log: none
services:
  - name: web-tls
    listen: 127.0.0.1:18443
    tls:
      certificates: [{ cert: "$work/tls.crt", key: "$work/tls.key" }]
    routes: [{ cluster: backends }]
    clusters: [{ name: backends, protocol: http1, lb: round_robin, endpoints: [{ address: "127.0.0.1:18181" }] }]
EOF
lb="$work/lb"
nginx_conf "$lb" "  upstream backends { server 127.0.0.1:18181; keepalive 128; }
  server {
    listen 127.0.0.1:18443 ssl backlog=4096;
    ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }" >"$work/nginx-lb.conf"
{ haproxy_loopback_head; cat <<EOF
frontend web
  bind 127.0.0.1:18443 ssl crt $work/tls.pem alpn http/1.1
  default_backend backends
backend backends
  server b1 127.0.0.1:18181
EOF
} >"$work/haproxy.cfg"

# cpu_ticks PID -> user + system clock ticks of PID and its children (nginx's worker)
cpu_ticks() {
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hz="$(getconf CLK_TCK)"

# hs OFFER N -> the client's line, against 127.0.0.1:18443
hs() {
  local args
  case "$1" in
    browser) args=(x25519mlkem768,x25519 "$2" "$concurrency") ;;
    x25519) args=(x25519 "$2" "$concurrency") ;;
    resume) args=(x25519mlkem768,x25519 "$2" "$concurrency" resume) ;;
  esac
  timeout 300 taskset -c 0 "$client" 127.0.0.1:18443 "$NAME" "$work/tls.crt" "${args[@]}"
}

# one_run SYSTEM ROUND
one_run() {
  local sys="$1" round="$2" ng pid
  taskset -c 0 nginx -p "$work" -c "$work/backend.conf" -e "$work/backend.err" &
  ng=$!; pids+=("$ng")
  case "$sys" in
    fulcrum) taskset -c 1 "$pool" "$work/l7.yaml" >"$work/proxy.log" 2>&1 & ;;
    nginx) taskset -c 1 nginx -p "$lb" -c "$work/nginx-lb.conf" -e "$lb/error.log" >"$work/proxy.log" 2>&1 & ;;
    haproxy) taskset -c 1 haproxy -f "$work/haproxy.cfg" -db >"$work/proxy.log" 2>&1 & ;;
  esac
  pid=$!; pids+=("$pid")
  local up=0
  for _ in $(seq 1 100); do
    if curl -sfk -m 1 -o /dev/null --resolve "$NAME:18443:127.0.0.1" "https://$NAME:18443/index.html"; then up=1; break; fi
    sleep 0.1
  done
  [ "$up" = 1 ] || { echo "tls-handshakes: $sys did not answer; its log:" >&2; tail -5 "$work/proxy.log" >&2; exit 1; }
  hs browser 500 >/dev/null || { echo "tls-handshakes: $sys: the warm-up failed" >&2; exit 1; }
  local offer c0 c1 line
  for offer in browser x25519 resume; do
    c0="$(cpu_ticks "$pid")"
    line="$(hs "$offer" "$connections")" || { echo "tls-handshakes: $sys ($offer): $line" >&2; exit 1; }
    c1="$(cpu_ticks "$pid")"
    python3 - "$line" <<EOF
import sys
f = sys.argv[1].split()
v = dict(zip(f[0::2], f[1::2]))
done = int(v['done'])
want = 'X25519MLKEM768' if '$sys' == 'fulcrum' and '$offer' != 'x25519' else 'X25519'
resumed = int(v['resumed'])
if v['failed'] != '0' or v['group'] != want:
    sys.exit('tls-handshakes: $sys ($offer): %s failed, group %s (expected %s)' % (v['failed'], v['group'], want))
if ('$offer' == 'resume') != (resumed * 10 >= done * 8):
    sys.exit('tls-handshakes: $sys ($offer): %d of %d connections resumed' % (resumed, done))
cpu = ($c1 - $c0) * 1e6 / $hz / done
print('round $round %-8s offer %-8s group %-15s %8.0f conn/s  handshake p50 %6.3f ms  p99 %6.3f ms  proxy CPU %6.1f us a connection  (%d ok, %d resumed, %s, %s B in)'
      % ('$sys', '$offer', v['group'], float(v['rate']), float(v['p50_ms']), float(v['p99_ms']), cpu, done, resumed, v['suite'], v['bytes_in']))
EOF
  done
  kill -TERM "$pid" 2>/dev/null || true
  kill -QUIT "$ng" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || kill -0 "$ng" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" "$ng" 2>/dev/null || true
  wait "$pid" "$ng" 2>/dev/null || true
  pids=()
}

for r in $(seq 1 "$rounds"); do
  for sys in "$@"; do one_run "$sys" "$r"; done
done
