# Configuration the benchmarks' peers share, sourced by bench/e2e/run.sh and
# bench/tools/l7-loopback.sh so both measure the same backend and the same proxy work.

# nginx_backend_conf DIR LISTEN [EXTRA]: an nginx configuration serving DIR/www
# statically on LISTEN (a port, or address:port), one worker, keep-alive without limits,
# no access log; EXTRA (more `server` blocks) goes into its `http` block. Its pid, error
# log and temporary files go under DIR.
#
# `sendfile on; tcp_nopush on;` as in Debian's own /etc/nginx/nginx.conf: a response's
# head and its file leave in one segment. E2E_BACKEND_NOPUSH=off (nginx's built-in default)
# makes nginx send the head (writev) and the file (sendfile) as two segments, which
# every system in the path pays for (the client core's req/s with no load balancer drops
# by about a sixth on the AMD EPYC VM) and which a proxy must not turn into two segments
# to its client (fulcrum's pool waits for such a body: `H1Conn::short_body_pending`).
nginx_backend_conf() {
  local dir="$1" listen="$2" extra="${3:-}"
  nginx_conf "$dir" "  sendfile on;
  tcp_nopush ${E2E_BACKEND_NOPUSH:-on};
  keepalive_timeout 120s;
  keepalive_requests 10000000;
  server {
    listen $listen backlog=4096;
    root $dir/www;
    location = /nginx_status { stub_status; }
  }
$extra"
}

# nginx_conf DIR HTTP: the head every nginx of the benchmarks shares (backends and
# proxies): one worker as root, in the foreground, its pid, error log and temporary
# files under DIR, no access log, TCP_NODELAY; HTTP (lines) goes into its `http` block.
nginx_conf() {
  local dir="$1" http="$2"
  cat <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 16384;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
daemon off;
events { worker_connections 8192; }
http {
  access_log off;
  tcp_nodelay on;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
$http
}
EOF
}

# haproxy_loopback_head: `global` and `defaults` of the loopback tools' HAProxy
# (tools/l7-loopback.sh, tools/tls-handshakes.sh): one thread, HTTP mode, keep-alive on
# both sides, idle upstream connections reused; more `defaults` lines may follow.
haproxy_loopback_head() {
  cat <<'EOF'
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  timeout http-keep-alive 60s
  http-reuse safe
EOF
}

# haproxy_added_headers: the frontend lines that make HAProxy add the headers fulcrum's L7
# pool adds to every request (X-Forwarded-For is `option forwardfor`'s, in the defaults).
haproxy_added_headers() {
  cat <<'EOF'
  # The headers fulcrum's pool adds (X-Forwarded-For is option forwardfor's).
  unique-id-format %[uuid]
  http-request set-header X-Request-Id %[unique-id]
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header traceparent 00-%[rand,bytes(4,4),hex,lower]%[rand,bytes(4,4),hex,lower]%[rand,bytes(4,4),hex,lower]%[rand,bytes(4,4),hex,lower]-%[rand,bytes(4,4),hex,lower]%[rand,bytes(4,4),hex,lower]-01
EOF
}
