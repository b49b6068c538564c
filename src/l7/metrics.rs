//! Counters and latency histograms per route and per cluster, rendered as Prometheus text.
//!
//! Counters are atomics; histograms (hdrhistogram, microseconds) are sharded by thread,
//! each shard behind a mutex only its thread takes on the request path. A route or
//! cluster keeps its `StatSet` across reloads (looked up by name when a snapshot is
//! built, never per request).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::admin::PromWriter;

/// Largest latency recorded, in microseconds (60 s); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// One thread's part of a histogram, on its own cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<Option<Histogram<u64>>>);

/// Shards per histogram: each thread records into one (picked once per thread), so pool
/// threads do not contend for one lock or bounce its cache line; the scrape merges them.
fn shard_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 64)
    })
}

thread_local! {
    /// The shard this thread records into.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits over 1 us ..= 60 s; the bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// A latency histogram in microseconds, sharded by thread (a shard's histogram is made on
/// its first record).
#[derive(Debug)]
pub struct Latency(Box<[Shard]>);

impl Latency {
    fn new() -> Latency {
        Latency(
            (0..shard_count())
                .map(|_| Shard(Mutex::new(None)))
                .collect(),
        )
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let shard = &self.0[SHARD.with(|s| *s) % self.0.len()];
        if let Ok(mut h) = shard.0.lock() {
            let _ = h.get_or_insert_with(new_histogram).record(us);
        }
    }

    /// Every shard's durations in one histogram (microseconds).
    pub fn merged(&self) -> Histogram<u64> {
        let mut merged: Option<Histogram<u64>> = None;
        for shard in self.0.iter() {
            let Ok(h) = shard.0.lock() else { continue };
            if let Some(h) = h.as_ref() {
                match merged.as_mut() {
                    None => merged = Some(h.clone()),
                    Some(m) => {
                        let _ = m.add(h);
                    }
                }
            }
        }
        merged.unwrap_or_else(new_histogram)
    }
}

/// Counters for one route or one cluster.
#[derive(Debug)]
pub struct StatSet {
    /// Responses by status class, index 0 = 1xx .. 4 = 5xx.
    pub by_class: [AtomicU64; 5],
    /// 502 responses (backend failed or answered garbage).
    pub status_502: AtomicU64,
    /// 503 responses (no healthy endpoint, breaker open, connect failure).
    pub status_503: AtomicU64,
    /// 504 responses (upstream timeout).
    pub status_504: AtomicU64,
    /// Retries sent.
    pub retries: AtomicU64,
    /// Retries not sent because the budget was spent.
    pub retry_budget_exhausted: AtomicU64,
    /// Requests refused by the `max_connections` or `max_requests` circuit breaker.
    pub overflow: AtomicU64,
    /// Requests refused by the `max_pending` circuit breaker.
    pub pending_overflow: AtomicU64,
    /// Outlier ejections.
    pub ejections: AtomicU64,
    /// Endpoints failing the cluster's active health checks now (clusters).
    pub endpoints_failing_checks: AtomicU64,
    /// Requests sent outside the pool's zone by a zone-aware cluster (clusters).
    pub cross_zone: AtomicU64,
    /// Upstream connections open (clusters; the `max_connections` breaker counts these).
    pub upstream_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Response bodies cut off by `timeouts.stream_idle` (clusters).
    pub stream_idle_timeouts: Arc<AtomicU64>,
    /// Time inside fulcrum (total to response head, minus upstream time).
    pub fulcrum_time: Latency,
    /// Upstream time (request sent to response head, all tries).
    pub upstream_time: Latency,
}

impl StatSet {
    fn new() -> StatSet {
        StatSet {
            by_class: Default::default(),
            status_502: AtomicU64::new(0),
            status_503: AtomicU64::new(0),
            status_504: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            retry_budget_exhausted: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            pending_overflow: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            endpoints_failing_checks: AtomicU64::new(0),
            cross_zone: AtomicU64::new(0),
            upstream_connections: Arc::default(),
            stream_idle_timeouts: Arc::default(),
            fulcrum_time: Latency::new(),
            upstream_time: Latency::new(),
        }
    }

    /// Counts one response with `status`.
    pub fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        match status {
            502 => self.status_502.fetch_add(1, Ordering::Relaxed),
            503 => self.status_503.fetch_add(1, Ordering::Relaxed),
            504 => self.status_504.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Responses of class `n`xx.
    pub fn class(&self, n: usize) -> u64 {
        self.by_class[n.clamp(1, 5) - 1].load(Ordering::Relaxed)
    }
}

/// Connection-level refusals, before any route is known.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Requests refused before routing: 400 (smuggling attempts, malformed framing, no or
    /// two Host headers (HTTP/2: neither Host nor `:authority`), a Host that is not
    /// `host[:port]`, `*` with a method other than OPTIONS) and 405 (CONNECT).
    pub bad_request: AtomicU64,
    /// Requests refused with 413.
    pub body_too_large: AtomicU64,
    /// Requests refused with 408 (body read timeout).
    pub body_timeout: AtomicU64,
    /// Requests with no matching route (404).
    pub no_route: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Client connections open now (the drain on shutdown waits for these).
    pub open: AtomicU64,
}

/// All metrics of the pool.
#[derive(Debug, Default)]
pub struct L7Metrics {
    routes: Mutex<BTreeMap<(String, String), Arc<StatSet>>>,
    clusters: Mutex<BTreeMap<(String, String), Arc<StatSet>>>,
    /// Refusals before routing.
    pub listener: ListenerStats,
    /// Each pool thread's CPU time in nanoseconds, by thread index ([`super::cpu`]).
    workers_cpu_ns: Mutex<Vec<Arc<AtomicU64>>>,
}

impl L7Metrics {
    /// The stats of route `route` of `service`, created on first use.
    pub fn route(&self, service: &str, route: &str) -> Arc<StatSet> {
        Self::entry(&self.routes, service, route)
    }

    /// The stats of cluster `cluster` of `service`, created on first use.
    pub fn cluster(&self, service: &str, cluster: &str) -> Arc<StatSet> {
        Self::entry(&self.clusters, service, cluster)
    }

    /// The CPU-time cell of pool thread `n`, created on first use.
    pub fn worker_cpu_ns(&self, n: usize) -> Arc<AtomicU64> {
        match self.workers_cpu_ns.lock() {
            Ok(mut v) => {
                while v.len() <= n {
                    v.push(Arc::new(AtomicU64::new(0)));
                }
                v[n].clone()
            }
            Err(_) => Arc::new(AtomicU64::new(0)),
        }
    }

    fn entry(
        map: &Mutex<BTreeMap<(String, String), Arc<StatSet>>>,
        a: &str,
        b: &str,
    ) -> Arc<StatSet> {
        match map.lock() {
            Ok(mut m) => m
                .entry((a.to_string(), b.to_string()))
                .or_insert_with(|| Arc::new(StatSet::new()))
                .clone(),
            Err(_) => Arc::new(StatSet::new()),
        }
    }

    /// Adds every counter and histogram to the admin API's exposition (`w` escapes the
    /// label values: route and cluster names are the operator's).
    pub fn render_prometheus(&self, w: &mut PromWriter) {
        let l = &self.listener;
        for (name, help, v) in [
            (
                "fulcrum_l7_bad_requests_total",
                "Requests refused before routing: 400 (smuggling, bad framing, no or two Host, * beyond OPTIONS), 405 (CONNECT).",
                &l.bad_request,
            ),
            (
                "fulcrum_l7_body_too_large_total",
                "Requests refused with 413.",
                &l.body_too_large,
            ),
            (
                "fulcrum_l7_body_timeouts_total",
                "Requests refused with 408.",
                &l.body_timeout,
            ),
            (
                "fulcrum_l7_no_route_total",
                "Requests with no matching route (404).",
                &l.no_route,
            ),
            (
                "fulcrum_l7_connections_total",
                "Client connections accepted.",
                &l.connections,
            ),
            (
                "fulcrum_l7_tls_failures_total",
                "TLS handshakes failed or timed out.",
                &l.tls_failures,
            ),
        ] {
            w.counter(name, help, &[], v.load(Ordering::Relaxed));
        }
        if let Ok(workers) = self.workers_cpu_ns.lock() {
            for (i, ns) in workers.iter().enumerate() {
                w.counter_f64(
                    "fulcrum_l7_worker_cpu_seconds_total",
                    "CPU time of each pool thread (its thread CPU clock, read every 250 us while it serves requests, else every 100 ms).",
                    &[("worker", &i.to_string())],
                    ns.load(Ordering::Relaxed) as f64 / 1e9,
                );
            }
        }
        for (kind, map) in [("route", &self.routes), ("cluster", &self.clusters)] {
            let Ok(map) = map.lock() else { continue };
            for ((svc, n), s) in map.iter() {
                let labels = [("service", svc.as_str()), (kind, n.as_str())];
                for c in 1..=5 {
                    let class = format!("{c}xx");
                    w.counter(
                        &format!("fulcrum_l7_{kind}_responses_total"),
                        &format!("Responses by status class per {kind}."),
                        &[labels[0], labels[1], ("class", &class)],
                        s.class(c),
                    );
                }
                for (code, v) in [
                    ("502", &s.status_502),
                    ("503", &s.status_503),
                    ("504", &s.status_504),
                ] {
                    w.counter(
                        &format!("fulcrum_l7_{kind}_gateway_errors_total"),
                        &format!("502, 503 and 504 apart per {kind}."),
                        &[labels[0], labels[1], ("code", code)],
                        v.load(Ordering::Relaxed),
                    );
                }
                for (metric, help, v) in [
                    ("retries_total", "Retries sent.", &s.retries),
                    (
                        "retry_budget_exhausted_total",
                        "Retries skipped: budget spent.",
                        &s.retry_budget_exhausted,
                    ),
                    (
                        "overflow_total",
                        "Requests refused by the max_connections or max_requests circuit breaker.",
                        &s.overflow,
                    ),
                    ("ejections_total", "Outlier ejections.", &s.ejections),
                    (
                        "pending_overflow_total",
                        "Requests refused by the max_pending circuit breaker (connects in progress).",
                        &s.pending_overflow,
                    ),
                ] {
                    w.counter(
                        &format!("fulcrum_l7_{kind}_{metric}"),
                        help,
                        &labels,
                        v.load(Ordering::Relaxed),
                    );
                }
                if kind == "cluster" {
                    w.gauge(
                        "fulcrum_l7_cluster_upstream_connections",
                        "Upstream connections open.",
                        &labels,
                        s.upstream_connections.load(Ordering::Relaxed) as f64,
                    );
                    w.gauge(
                        "fulcrum_l7_cluster_endpoints_failing_checks",
                        "Endpoints failing the cluster's active health checks.",
                        &labels,
                        s.endpoints_failing_checks.load(Ordering::Relaxed) as f64,
                    );
                    w.counter(
                        "fulcrum_l7_cluster_cross_zone_requests_total",
                        "Requests (tries) a zone-aware cluster sent outside l7.zone.",
                        &labels,
                        s.cross_zone.load(Ordering::Relaxed),
                    );
                    w.counter(
                        "fulcrum_l7_cluster_stream_idle_timeouts",
                        "Response bodies cut off after timeouts.stream_idle without upstream data.",
                        &labels,
                        s.stream_idle_timeouts.load(Ordering::Relaxed),
                    );
                }
                for (part, h) in [("fulcrum", &s.fulcrum_time), ("upstream", &s.upstream_time)] {
                    w.histogram_summary(
                        &format!("fulcrum_l7_{kind}_latency_seconds"),
                        "Latency to response head: time inside fulcrum vs upstream.",
                        &[labels[0], labels[1], ("part", part)],
                        &h.merged(),
                        1e-6,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of `m` alone.
    fn render(m: &L7Metrics) -> String {
        let mut w = PromWriter::new();
        m.render_prometheus(&mut w);
        let mut out = String::new();
        w.finish(&mut out);
        out
    }

    #[test]
    fn names_are_escaped_and_families_declared_once() {
        let m = L7Metrics::default();
        m.route("web", "a\"b\\c\nd").count_status(200);
        m.route("web", "plain").count_status(200);
        let out = render(&m);
        assert!(
            out.contains(
                "fulcrum_l7_route_responses_total{service=\"web\",route=\"a\\\"b\\\\c\\nd\",class=\"2xx\"} 1"
            ),
            "{out}"
        );
        // every sample line is one line: no raw newline got into a label
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("fulcrum_l7_"), "{line:?}");
        }
        assert_eq!(
            out.matches("# TYPE fulcrum_l7_route_responses_total counter")
                .count(),
            1
        );
        assert_eq!(
            out.matches("# TYPE fulcrum_l7_route_latency_seconds summary")
                .count(),
            1
        );
    }

    #[test]
    fn counts_and_renders() {
        let m = L7Metrics::default();
        let r = m.route("web", "api");
        r.count_status(200);
        r.count_status(502);
        r.count_status(504);
        r.upstream_time.record(Duration::from_millis(3));
        assert!(Arc::ptr_eq(&r, &m.route("web", "api")));
        let out = render(&m);
        assert!(
            out.contains(
                "fulcrum_l7_route_responses_total{service=\"web\",route=\"api\",class=\"5xx\"} 2"
            ),
            "{out}"
        );
        assert!(out.contains(
            "fulcrum_l7_route_gateway_errors_total{service=\"web\",route=\"api\",code=\"504\"} 1"
        ));
        assert!(
            out.contains("part=\"upstream\",quantile=\"0.5\"} 0.003"),
            "{out}"
        );
    }
}
