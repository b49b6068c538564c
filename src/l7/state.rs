//! The compiled snapshot the request path reads: services, routes, clusters with their
//! balancers, upstream clients and live counters. Built off the request path on start and
//! on reload, published through `ArcSwap`; clusters whose spec did not change keep their
//! state (pools, counters, ejections) across reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use regex::Regex;

use super::balance::{smooth_wrr_sequence, Balancer, Endpoint};
use super::config::{
    ClusterSpec, L7Config, L7Settings, PathMatch, RetrySpec, Timeouts, UpstreamProtocol,
};
use super::error::L7Error;
use super::metrics::{L7Metrics, StatSet};
use super::tls;

/// Everything the request path needs, one immutable snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// Pool-wide settings.
    pub settings: L7Settings,
    /// Services by name.
    pub services: HashMap<String, Arc<ServiceState>>,
}

/// One service: its routes and TLS configuration.
#[derive(Debug)]
pub struct ServiceState {
    /// Name.
    pub name: String,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// TLS configuration, if the service terminates TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Clusters by name.
    pub clusters: HashMap<String, Arc<Cluster>>,
}

/// A compiled path match.
#[derive(Debug)]
pub enum PathMatcher {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Regex over the whole path.
    Regex(Regex),
}

/// Where a route leads.
#[derive(Debug)]
pub enum Target {
    /// One cluster.
    Single(Arc<Cluster>),
    /// A weighted split, taken in a smooth weighted order (exact proportions).
    Weighted {
        /// One cycle of picks (indexes into `clusters`).
        seq: Vec<u16>,
        /// Position in the cycle.
        next: AtomicUsize,
        /// The clusters.
        clusters: Vec<Arc<Cluster>>,
    },
}

impl Target {
    /// The cluster for the next request.
    pub fn pick(&self) -> &Arc<Cluster> {
        match self {
            Target::Single(c) => c,
            Target::Weighted {
                seq,
                next,
                clusters,
            } => {
                let k = next.fetch_add(1, Ordering::Relaxed) % seq.len().max(1);
                let i = seq.get(k).map_or(0, |i| usize::from(*i));
                &clusters[i.min(clusters.len() - 1)]
            }
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Name (metrics label).
    pub name: String,
    /// Counters.
    pub stats: Arc<StatSet>,
    /// Host: exact (lowercase) or `*.suffix`.
    pub host: Option<String>,
    /// Path.
    pub path: Option<PathMatcher>,
    /// Method.
    pub method: Option<Method>,
    /// Headers that must be present (with value).
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Target cluster(s).
    pub target: Target,
    /// Prefix rewrite.
    pub prefix_rewrite: Option<String>,
    /// Per-try timeout override.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retries: RetrySpec,
}

impl Route {
    /// Whether the request matches.
    pub fn matches(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &http::HeaderMap,
    ) -> bool {
        if let Some(h) = &self.host {
            let ok = match h.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                None => host.eq_ignore_ascii_case(h),
            };
            if !ok {
                return false;
            }
        }
        if let Some(p) = &self.path {
            let ok = match p {
                PathMatcher::Exact(e) => path == e,
                PathMatcher::Prefix(pre) => path.starts_with(pre.as_str()),
                PathMatcher::Regex(re) => re
                    .find(path)
                    .is_some_and(|m| m.start() == 0 && m.end() == path.len()),
            };
            if !ok {
                return false;
            }
        }
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        self.headers.iter().all(|(name, value)| match value {
            Some(v) => headers.get_all(name).iter().any(|x| x == v),
            None => headers.contains_key(name),
        })
    }
}

/// The upstream HTTP client of a cluster (keep-alive pool; HTTP/2 multiplexed).
pub type UpstreamClient = Client<LimitedConnector, Full<Bytes>>;

/// Threads of a pool with these settings: one per core, two unpinned when none is given.
pub fn pool_threads(settings: &L7Settings) -> usize {
    if settings.cores.is_empty() {
        2
    } else {
        settings.cores.len()
    }
}

thread_local! {
    /// Index of the pool thread running here (0 outside the pool).
    static POOL_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as pool thread `i` (which upstream pools it uses).
pub fn set_pool_thread(i: usize) {
    POOL_THREAD.with(|t| t.set(i));
}

/// A cluster with its live state.
#[derive(Debug)]
pub struct Cluster {
    /// Name.
    pub name: String,
    /// The spec it was built from (reused across reloads when equal).
    pub spec: ClusterSpec,
    /// Effective timeouts.
    pub timeouts: Timeouts,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Selection structure.
    pub balancer: Balancer,
    /// Upstream clients, one per pool thread: a thread's requests use connections its
    /// own runtime drives (no cross-thread wake-ups, no shared pool lock).
    clients: Vec<UpstreamClient>,
    /// `host:port` of each endpoint, for the upstream request URI.
    pub authorities: Vec<http::uri::Authority>,
    /// Counters.
    pub stats: Arc<StatSet>,
    /// Requests in flight.
    pub active: AtomicUsize,
    /// Retries in flight.
    pub active_retries: AtomicUsize,
}

impl Cluster {
    /// The upstream client of the pool thread running here.
    pub fn client(&self) -> &UpstreamClient {
        let i = POOL_THREAD.with(|t| t.get());
        &self.clients[i % self.clients.len()]
    }

    pub(crate) fn build(
        spec: &ClusterSpec,
        defaults: &Timeouts,
        stats: Arc<StatSet>,
        threads: usize,
    ) -> Cluster {
        let timeouts = spec.timeouts.clone().unwrap_or_else(|| defaults.clone());
        let endpoints: Vec<Endpoint> = spec
            .endpoints
            .iter()
            .map(|e| Endpoint::new(e.address, e.weight))
            .collect();
        let balancer = Balancer::build(spec.lb, &endpoints);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        let open_connections = stats.upstream_connections.clone();
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.idle)
            .pool_max_idle_per_host(spec.circuit_breakers.max_connections);
        if spec.protocol == UpstreamProtocol::Http2 {
            builder.http2_only(true);
        }
        let connector = LimitedConnector {
            inner: connector,
            open: open_connections,
            max: spec.circuit_breakers.max_connections,
            connecting: Arc::default(),
            max_pending: spec.circuit_breakers.max_pending,
        };
        let clients = (0..threads.max(1))
            .map(|_| builder.build(connector.clone()))
            .collect();
        let authorities = endpoints
            .iter()
            .map(|e| {
                http::uri::Authority::from_maybe_shared(Bytes::from(e.addr.to_string()))
                    .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"))
            })
            .collect();
        Cluster {
            name: spec.name.clone(),
            spec: spec.clone(),
            timeouts,
            endpoints,
            balancer,
            clients,
            authorities,
            stats,
            active: AtomicUsize::new(0),
            active_retries: AtomicUsize::new(0),
        }
    }
}

impl Snapshot {
    /// Compiles `cfg`, reusing unchanged clusters of `previous`.
    pub fn build(
        cfg: &L7Config,
        previous: Option<&Snapshot>,
        metrics: &L7Metrics,
    ) -> Result<Snapshot, L7Error> {
        cfg.validate()?;
        let mut services = HashMap::new();
        for svc in &cfg.services {
            let old = previous.and_then(|p| p.services.get(&svc.name));
            let mut clusters = HashMap::new();
            for spec in &svc.clusters {
                let reused = old
                    .and_then(|o| o.clusters.get(&spec.name))
                    .filter(|c| {
                        c.spec == *spec
                            && c.clients.len() == pool_threads(&cfg.l7)
                            && spec.timeouts.as_ref().unwrap_or(&cfg.l7.timeouts) == &c.timeouts
                    })
                    .cloned();
                let cluster = reused.unwrap_or_else(|| {
                    Arc::new(Cluster::build(
                        spec,
                        &cfg.l7.timeouts,
                        metrics.cluster(&svc.name, &spec.name),
                        pool_threads(&cfg.l7),
                    ))
                });
                clusters.insert(spec.name.clone(), cluster);
            }
            let lookup = |name: &str| {
                clusters
                    .get(name)
                    .cloned()
                    .ok_or_else(|| L7Error::Config(format!("unknown cluster {name}")))
            };
            let mut routes = Vec::new();
            for (i, r) in svc.routes.iter().enumerate() {
                let name = r.name.clone().unwrap_or_else(|| format!("route{i}"));
                let target = match &r.cluster {
                    Some(c) => Target::Single(lookup(c)?),
                    None => Target::Weighted {
                        seq: smooth_wrr_sequence(
                            &r.weighted_clusters
                                .iter()
                                .map(|w| w.weight)
                                .collect::<Vec<_>>(),
                        ),
                        next: AtomicUsize::new(0),
                        clusters: r
                            .weighted_clusters
                            .iter()
                            .map(|w| lookup(&w.cluster))
                            .collect::<Result<_, _>>()?,
                    },
                };
                let path = match &r.matcher.path {
                    None => None,
                    Some(PathMatch::Exact(p)) => Some(PathMatcher::Exact(p.clone())),
                    Some(PathMatch::Prefix(p)) => Some(PathMatcher::Prefix(p.clone())),
                    Some(PathMatch::Regex(re)) => Some(PathMatcher::Regex(
                        Regex::new(re).map_err(|e| L7Error::Config(e.to_string()))?,
                    )),
                };
                let method = match &r.matcher.method {
                    None => None,
                    Some(m) => Some(
                        Method::from_bytes(m.as_bytes())
                            .map_err(|e| L7Error::Config(e.to_string()))?,
                    ),
                };
                let mut headers = Vec::new();
                for h in &r.matcher.headers {
                    let n = HeaderName::from_bytes(h.name.as_bytes())
                        .map_err(|e| L7Error::Config(e.to_string()))?;
                    let v = match &h.value {
                        None => None,
                        Some(v) => Some(
                            HeaderValue::from_str(v).map_err(|e| L7Error::Config(e.to_string()))?,
                        ),
                    };
                    headers.push((n, v));
                }
                routes.push(Route {
                    stats: metrics.route(&svc.name, &name),
                    name,
                    host: r.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    path,
                    method,
                    headers,
                    target,
                    prefix_rewrite: r.prefix_rewrite.clone(),
                    timeout: r.timeout,
                    retries: r.retries.clone(),
                });
            }
            let tls = match &svc.tls {
                Some(spec) => Some(tls::server_config(spec)?),
                None => None,
            };
            services.insert(
                svc.name.clone(),
                Arc::new(ServiceState {
                    name: svc.name.clone(),
                    routes,
                    tls,
                    clusters,
                }),
            );
        }
        Ok(Snapshot {
            settings: cfg.l7.clone(),
            services,
        })
    }
}

/// Milliseconds since a fixed epoch (outlier ejection clock).
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

/// The upstream connector: `HttpConnector` under the cluster's `max_connections` and
/// `max_pending` breakers. Each connection holds a slot until it is dropped.
///
/// The pool does not queue requests behind busy connections (at `max_connections` a
/// request is refused at once), so the requests that wait for an upstream connection are
/// those waiting for a new one to be established: `max_pending` bounds those connects in
/// progress, cluster-wide (every pool thread's client shares the counters).
#[derive(Debug, Clone)]
pub struct LimitedConnector {
    inner: HttpConnector,
    open: Arc<AtomicUsize>,
    max: usize,
    /// Connects in progress (requests waiting for their connection).
    connecting: Arc<AtomicUsize>,
    max_pending: usize,
}

/// The `max_pending` circuit breaker refused to make another request wait for a new
/// upstream connection.
#[derive(Debug)]
pub struct PendingLimit;

impl std::fmt::Display for PendingLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cluster max_pending reached")
    }
}

impl std::error::Error for PendingLimit {}

/// The `max_connections` circuit breaker refused a new upstream connection.
#[derive(Debug)]
pub struct ConnectionLimit;

impl std::fmt::Display for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cluster max_connections reached")
    }
}

impl std::error::Error for ConnectionLimit {}

/// An upstream connection holding a breaker slot.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    open: Arc<AtomicUsize>,
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: hyper_util::client::legacy::connect::Connection>
    hyper_util::client::legacy::connect::Connection for Counted<T>
{
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.inner.connected()
    }
}

type ConnectFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    Counted<hyper_util::rt::TokioIo<tokio::net::TcpStream>>,
                    Box<dyn std::error::Error + Send + Sync>,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<http::Uri> for LimitedConnector {
    type Response = Counted<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = ConnectFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<http::Uri>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let open = self.open.clone();
        if open.fetch_add(1, Ordering::Relaxed) >= self.max {
            open.fetch_sub(1, Ordering::Relaxed);
            return Box::pin(async {
                Err(Box::new(ConnectionLimit) as Box<dyn std::error::Error + Send + Sync>)
            });
        }
        let pending = self.connecting.clone();
        if pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            pending.fetch_sub(1, Ordering::Relaxed);
            open.fetch_sub(1, Ordering::Relaxed);
            return Box::pin(async {
                Err(Box::new(PendingLimit) as Box<dyn std::error::Error + Send + Sync>)
            });
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            // The slot is held by `Counted` from here on; a failed connect frees it on drop.
            let guard = Counted { inner: (), open };
            // Pending until connected or failed (or the request gave up: dropped).
            let waiting = Counted {
                inner: (),
                open: pending,
            };
            let io = connecting.await.map_err(Box::new)?;
            drop(waiting);
            let open = guard.open.clone();
            open.fetch_add(1, Ordering::Relaxed);
            drop(guard);
            Ok(Counted { inner: io, open })
        })
    }
}
