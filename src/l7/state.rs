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
use regex::Regex;

use super::balance::{smooth_wrr_sequence, Balancer, Endpoint};
use super::config::{ClusterSpec, L7Config, L7Settings, PathMatch, RetrySpec, Timeouts, TlsSpec};
use super::error::L7Error;
use super::metrics::{L7Metrics, StatSet};
use super::tls;
use super::upstream::UpstreamPool;

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
    /// The TLS section it was built from (a reload keeps its session state).
    pub tls_spec: Option<TlsSpec>,
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

/// Threads of a pool with these settings: one per core, two unpinned when none is given.
pub fn pool_threads(settings: &L7Settings) -> usize {
    if settings.cores.is_empty() {
        2
    } else {
        settings.cores.len()
    }
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
    /// Upstream connections: each pool thread keeps its own (no cross-thread wake-ups,
    /// no shared pool lock).
    pub upstream: UpstreamPool,
    /// `host:port` of each endpoint, for the upstream request URI.
    pub authorities: Vec<http::uri::Authority>,
    /// Counters.
    pub stats: Arc<StatSet>,
    /// Requests in flight.
    pub active: AtomicUsize,
    /// Retries in flight.
    pub active_retries: AtomicUsize,
    /// The pool's zone (`l7.zone`) the cluster was built for.
    pub local_zone: Option<String>,
    /// Per endpoint: in the local zone. Empty unless the cluster has endpoints both in
    /// the local zone and outside it (only then does zone-aware routing choose).
    pub local: Vec<bool>,
}

impl Cluster {
    pub(crate) fn build(
        spec: &ClusterSpec,
        defaults: &Timeouts,
        local_zone: Option<&str>,
        stats: Arc<StatSet>,
    ) -> Cluster {
        let timeouts = spec.timeouts.clone().unwrap_or_else(|| defaults.clone());
        let endpoints: Vec<Endpoint> = spec
            .endpoints
            .iter()
            .map(|e| Endpoint::new(e.address, e.weight))
            .collect();
        let balancer = Balancer::build(spec.lb, &endpoints);
        let upstream = UpstreamPool::new(
            spec.protocol,
            endpoints.iter().map(|e| e.addr).collect(),
            timeouts.connect,
            timeouts.idle,
            spec.circuit_breakers.max_connections,
            spec.circuit_breakers.max_pending,
            stats.upstream_connections.clone(),
        )
        .with_stream_idle_timeout(timeouts.stream_idle, stats.stream_idle_timeouts.clone());
        let authorities = endpoints
            .iter()
            .map(|e| {
                http::uri::Authority::from_maybe_shared(Bytes::from(e.addr.to_string()))
                    .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"))
            })
            .collect();
        let mut local: Vec<bool> = spec
            .endpoints
            .iter()
            .map(|e| local_zone.is_some() && e.zone.as_deref() == local_zone)
            .collect();
        if local.iter().all(|&l| l) || !local.iter().any(|&l| l) {
            local.clear();
        }
        Cluster {
            name: spec.name.clone(),
            spec: spec.clone(),
            timeouts,
            endpoints,
            balancer,
            upstream,
            authorities,
            stats,
            active: AtomicUsize::new(0),
            active_retries: AtomicUsize::new(0),
            local_zone: local_zone.map(str::to_owned),
            local,
        }
    }

    /// The cluster's health at `now_ms`, in one pass over its endpoints (the request
    /// path takes it for every try; `/api/l7` shows it).
    pub fn health(&self, now_ms: u64) -> ClusterHealth {
        let (mut healthy, mut local, mut local_healthy) = (0usize, 0usize, 0usize);
        for (i, e) in self.endpoints.iter().enumerate() {
            let ok = e.is_healthy(now_ms);
            healthy += usize::from(ok);
            if self.local.get(i) == Some(&true) {
                local += 1;
                local_healthy += usize::from(ok);
            }
        }
        ClusterHealth {
            healthy,
            panic: healthy * 100 < self.endpoints.len() * self.spec.panic_threshold as usize,
            // Zone-aware routing (Envoy's locality failover with its overprovisioning
            // factor): the local zone takes every request while at least 1/1.4 (~71%)
            // of its endpoints are healthy, then proportionally fewer, none with none.
            local_share: (!self.local.is_empty())
                .then(|| (OVERPROVISIONING * local_healthy as f64 / local.max(1) as f64).min(1.0)),
        }
    }
}

/// What [`Cluster::health`] finds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterHealth {
    /// Endpoints passing their health checks and not ejected.
    pub healthy: usize,
    /// Fewer than `panic_threshold` percent healthy: health is ignored (Envoy's panic
    /// mode), every endpoint takes requests.
    pub panic: bool,
    /// The share of requests the local zone takes; `None`: the cluster does not choose
    /// by zone (no `l7.zone`, or its endpoints all in it or all outside it).
    pub local_share: Option<f64>,
}

/// Envoy's overprovisioning factor for locality failover.
pub const OVERPROVISIONING: f64 = 1.4;

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
                            && spec.timeouts.as_ref().unwrap_or(&cfg.l7.timeouts) == &c.timeouts
                            && c.local_zone == cfg.l7.zone
                    })
                    .cloned();
                let cluster = reused.unwrap_or_else(|| {
                    Arc::new(Cluster::build(
                        spec,
                        &cfg.l7.timeouts,
                        cfg.l7.zone.as_deref(),
                        metrics.cluster(&svc.name, &spec.name),
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
                Some(spec) => Some(tls::server_config(
                    spec,
                    old.and_then(|o| Some((o.tls_spec.as_ref()?, o.tls.as_deref()?))),
                )?),
                None => None,
            };
            services.insert(
                svc.name.clone(),
                Arc::new(ServiceState {
                    name: svc.name.clone(),
                    routes,
                    tls,
                    tls_spec: svc.tls.clone(),
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
        self.ms_at(Instant::now())
    }

    /// `t`, in ms since the epoch (1 for any time before it).
    pub fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_millis() as u64 + 1
    }
}
