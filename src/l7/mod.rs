//! The L7 termination pool: TLS (rustls), HTTP/1.1 and HTTP/2 (hyper's server), content routing
//! and per-request balancing, with Envoy's resilience semantics.
//!
//! Services with `mode: l7` are handed by the L4 data plane to the kernel; this pool
//! accepts them on its own threads, one per `l7.cores` entry (pinned with
//! `core_affinity`), each a current-thread tokio runtime with its own `SO_REUSEPORT`
//! socket per listener and its own upstream connection pools (nginx's process-per-core
//! shape: a connection and its requests stay on one core). With no DPDK port it serves
//! on host sockets ([`run_standalone`], each service's `listen`).
//!
//! - [`config`]: the YAML types (`l7:` section, a service's `routes`, `clusters`, `tls`).
//! - [`framing`]: refuses request smuggling (CL+TE, differing duplicate CL) from the raw bytes.
//! - [`balance`]: round robin (smooth weighted), least request (P2C), random, ring hash
//!   and Maglev with bounded load.
//! - `state`: the compiled snapshot, swapped lock-free on reload.
//! - `proxy`: the request path. `server`: runtime, listeners, [`L7Pool`].
//! - `upstream`: per-thread upstream pools; HTTP/1.1 exchanges run on the request's own
//!   task in the wire format of `h1` (hyper's client only for HTTP/2 upstreams).
//! - [`metrics`]: counters and latency histograms, Prometheus text.
//! - `cpu`: each pool thread's CPU clock, read every 250 us while it serves requests (a
//!   gauge, and a CPU quota charged as it goes instead of at the scheduler tick).
//! - `health`: active health checks of cluster endpoints (the health module's checker),
//!   their verdicts copied onto the endpoints the request path reads.
//!
//! # Behaviour
//! - HTTP/1.1 keep-alive; pipelined requests are served strictly one after another (hyper
//!   reads the next head only after the previous response), so they cannot be reordered
//!   or smuggled. HTTP/2 over TLS by ALPN `h2`, and prior-knowledge h2c on plain listeners.
//! - Refused before routing (400, connection closed): a request target `*` with a method
//!   other than OPTIONS, more than one `Host`, one that is not `host[:port]`, and none in
//!   HTTP/1.1 or HTTP/2 (where `:authority` may name it instead; an HTTP/1.0 request
//!   without one goes to the endpoint's address as its host). CONNECT → 405 (the pool
//!   makes no tunnels). A target with an authority (absolute form, HTTP/2's `:authority`)
//!   sets the upstream's `Host`, since it named the route.
//! - Rewritten on the way: several `Cookie` fields (an HTTP/2 client's crumbs) reach an
//!   HTTP/1.1 upstream as one, joined by `"; "` (RFC 9113 8.2.3); the Content-Length an
//!   upstream gets is written from the body forwarded (by `h1` for HTTP/1.1, by hyper for
//!   HTTP/2), never the client's as it came (repeated, a list, or empty).
//! - Limits: request head above `max_header_bytes` → 431 (hyper); body above
//!   `max_body_bytes` → 413; head not complete within `header_read_timeout` (also the
//!   keep-alive idle time and the TLS handshake time) → connection closed; body not
//!   complete within `body_read_timeout` → 408. CL+TE or differing duplicate CL → 400 and
//!   the connection is closed.
//! - Upstream: bodies are buffered (within the limit) so a request can be retried.
//!   Connect failure → 503, reset or garbage → 502, no response head within the per-try
//!   timeout → 504, no usable endpoint or circuit breaker open → 503. Idempotent
//!   requests are retried once by default (not POST/PATCH unless `non_idempotent`), on
//!   connect failure, reset and upstream 502/503/504, preferring another endpoint, under a
//!   budget of `budget_percent` of the cluster's active requests (at least 3), after a
//!   jittered exponential back-off. Consecutive 5xx eject an endpoint for
//!   `base_ejection_time × ejections`, at most `max_ejection_time` (300 s, Envoy's
//!   default; the base when that is longer; each full `max_ejection_time` without an
//!   ejection forgives one), and at most `max_ejection_percent` of a cluster's endpoints
//!   at once (at least one);
//!   `health_check` probes every endpoint of a cluster (`http` GET or `tcp` connect, the
//!   L4 checker's jitter and thresholds); one failing them takes no new requests. Below
//!   `panic_threshold` percent healthy (passing the checks and not ejected), health is
//!   ignored and every endpoint takes requests (Envoy's panic mode). With `l7.zone`, a
//!   cluster with endpoints in that zone and outside it sends min(1, 1.4 x the local
//!   zone's healthy share) of its requests to the local endpoints and the rest to the
//!   others (Envoy's locality failover); a side with no usable endpoint falls back to all.
//! - Headers: hop-by-hop headers (and those named in `Connection`) stripped both ways;
//!   `X-Forwarded-For` appended, `X-Forwarded-Proto` set, `X-Request-Id` generated when
//!   absent, W3C `traceparent` continued with a new span id or started.
//!
//! # YAML
//! ```yaml
//! l7:
//!   cores: [2, 3]                  # one pinned thread (own runtime) each; empty: 2 unpinned
//!   limits:
//!     max_header_bytes: 16384      # 431 above (>= 8192)
//!     max_body_bytes: 1048576      # 413 above
//!     header_read_timeout: 10s     # slowloris: head, TLS handshake, keep-alive idle
//!     body_read_timeout: 30s       # 408 after
//!     max_concurrent_streams: 256  # HTTP/2, per connection
//!   timeouts: { connect: 1s, request: 15s, idle: 60s }   # cluster defaults
//!   access_log: stderr             # none | stderr (one JSON object per line)
//! services:
//!   - name: web
//!     mode: l7
//!     listen: 0.0.0.0:443          # standalone mode only
//!     tls:
//!       certificates:              # SNI picks by server_names; the first is the default
//!         - { cert: /etc/fulcrum/web.crt, key: /etc/fulcrum/web.key, server_names: [www.example.com, "*.example.com"] }
//!     routes:                      # first match wins; every given field must match
//!       - name: api
//!         match:
//!           host: api.example.com  # port ignored; "*.example.com" allowed
//!           path: { prefix: /api/ }          # exact | prefix | regex (whole path)
//!           method: GET
//!           headers: [{ name: x-tenant, value: blue }, { name: x-debug }]
//!         cluster: api
//!         prefix_rewrite: /        # replaces the matched prefix
//!         timeout: 5s              # per try
//!         retries: { max_retries: 1, non_idempotent: false, budget_percent: 10,
//!                    base_interval: 25ms, max_interval: 250ms, on_gateway_error: true, on_timeout: false }
//!       - name: site
//!         weighted_clusters: [{ cluster: web-v1, weight: 99 }, { cluster: web-v2, weight: 1 }]
//!     clusters:
//!       - name: api
//!         protocol: http2          # http1 (keep-alive pool) | http2 (multiplexed, prior knowledge)
//!         lb: least_request        # round_robin | least_request | random | ring_hash | maglev
//!         endpoints: [{ address: "10.0.0.11:8080", weight: 2 }, { address: "10.0.0.12:8080" }]
//!       - name: web-v1
//!         lb: ring_hash
//!         hash_on: { cookie: session }       # source_ip | { header: NAME } | { cookie: NAME }
//!         bounded_load: 1.25       # spill past endpoints above 1.25 × average load
//!         sticky_cookie: { name: FULCRUM_STICKY, ttl: 1h }
//!         circuit_breakers: { max_connections: 1024, max_pending: 1024, max_requests: 1024 }
//!         outlier: { consecutive_5xx: 5, base_ejection_time: 30s, max_ejection_percent: 10 }
//!         panic_threshold: 50
//!         timeouts: { connect: 500ms, request: 5s, idle: 30s }
//!         endpoints: [{ address: "10.0.0.21:80" }]
//!       - name: web-v2
//!         endpoints: [{ address: "10.0.0.22:80" }]
//! ```
//! The main config's loader embeds [`config::L7Settings`] as `l7:` and, for a
//! `mode: l7` service, its `tls`, `routes` and `clusters` fields as typed here.

pub mod balance;
pub mod config;
mod cpu;
mod error;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod health;
pub mod metrics;
mod proxy;
mod server;
mod state;
mod tls;
mod upstream;

pub use config::L7Config;
pub use error::{L7Error, UpstreamFailure};
pub use metrics::L7Metrics;
pub use server::{run_standalone, L7Pool, L7Status, ListenerSpec};
