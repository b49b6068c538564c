//! The L7 parts of the file: the `l7:` section and an `l7` service's `tls`, `routes` and
//! `clusters`. Their shape (keys, types, durations) is the L7 pool's own types
//! (`crate::l7::config`), read by serde with positions; here are the rules serde cannot
//! check (ranges, references, regexes, files), each reported at the route, cluster or
//! value concerned.

use std::collections::HashMap;

use serde_saphyr::Location;

use super::{line_of, Validator};
use crate::config::host::Host;
use crate::config::model::{L7Config, Mode, PortConfig, ServiceConfig};
use crate::config::raw::{RawService, S};
use crate::l7::config::{ClusterSpec, L7Settings, PathMatch, RouteSpec, TlsSpec};

/// Smallest `l7.limits.max_header_bytes`: a request head of ordinary size must fit.
const MIN_HEADER_BYTES: usize = 8192;

impl Validator<'_> {
    /// The `l7:` section (defaults when absent).
    pub(super) fn l7_settings(
        &mut self,
        raw: Option<&S<L7Settings>>,
        host: &Host,
        worker_cores: &[u32],
        services: &[ServiceConfig],
    ) -> L7Settings {
        let Some(raw) = raw else {
            return L7Settings::default();
        };
        let at = &raw.referenced;
        let l7 = &raw.value;
        if !services.iter().any(|s| s.mode == Mode::L7) {
            self.report
                .warn(at, "the `l7` section has no effect: no service has mode l7");
        }
        let mut seen: HashMap<usize, ()> = HashMap::new();
        for &core in &l7.cores {
            if !host.has_cpu(u32::try_from(core).unwrap_or(u32::MAX)) {
                self.report.error(
                    at,
                    format!(
                        "l7.cores: core {core} is not online on this host (online CPUs: {})",
                        host.cpu_list()
                    ),
                );
            }
            if seen.insert(core, ()).is_some() {
                self.report
                    .error(at, format!("l7.cores: core {core} is listed twice"));
            }
            if worker_cores.iter().any(|&w| w as usize == core) {
                // a poll-mode worker never yields its core: the pool's thread would starve
                self.report.warn(
                    at,
                    format!("l7.cores: core {core} also runs a poll-mode worker (workers.cores)"),
                );
            }
        }
        if l7.limits.max_header_bytes < MIN_HEADER_BYTES {
            self.report.error(
                at,
                format!(
                    "l7.limits.max_header_bytes must be at least {MIN_HEADER_BYTES}, found {}",
                    l7.limits.max_header_bytes
                ),
            );
        }
        if l7.limits.max_concurrent_streams == 0 {
            self.report
                .error(at, "l7.limits.max_concurrent_streams must be at least 1");
        }
        let zero = [
            ("limits.header_read_timeout", l7.limits.header_read_timeout),
            ("limits.body_read_timeout", l7.limits.body_read_timeout),
            ("timeouts.connect", l7.timeouts.connect),
            ("timeouts.request", l7.timeouts.request),
            ("timeouts.idle", l7.timeouts.idle),
        ];
        for (key, d) in zero {
            if d.is_zero() {
                self.report
                    .error(at, format!("l7.{key} must be longer than 0s"));
            }
        }
        l7.clone()
    }

    /// An `l7` service's `tls`, `routes` and `clusters`; `None` when one is missing.
    pub(super) fn l7_sections(
        &mut self,
        s: &RawService,
        ports: &[PortConfig],
        at: &Location,
    ) -> Option<L7Config> {
        let name = &s.name.value;
        if !ports
            .iter()
            .any(|p| p.kernel_interface.is_some() && p.address.is_ipv4() == is_v4(&s.vip.value))
        {
            self.report.error(
                at,
                format!(
                    "l7 service `{name}` needs a port of its family with `kernel_interface` (the L7 pool listens there)"
                ),
            );
        }
        let Some(clusters) = &s.clusters else {
            self.report
                .error(at, format!("l7 service `{name}` needs `clusters`"));
            return None;
        };
        let Some(routes) = &s.routes else {
            self.report
                .error(at, format!("l7 service `{name}` needs `routes`"));
            return None;
        };
        let names = self.l7_clusters(&clusters.value, &clusters.referenced);
        if routes.value.is_empty() {
            self.report.error(
                &routes.referenced,
                format!("l7 service `{name}` needs at least one route"),
            );
        }
        for route in &routes.value {
            self.l7_route(&route.value, &route.referenced, &names);
        }
        if let Some(tls) = &s.tls {
            self.l7_tls(&tls.value, &tls.referenced);
        }
        Some(L7Config {
            tls: s.tls.as_ref().map(|t| t.value.clone()),
            routes: routes.value.iter().map(|r| r.value.clone()).collect(),
            clusters: clusters.value.iter().map(|c| c.value.clone()).collect(),
        })
    }

    /// Checks the clusters; returns their names.
    fn l7_clusters(&mut self, clusters: &[S<ClusterSpec>], list: &Location) -> Vec<String> {
        if clusters.is_empty() {
            self.report
                .error(list, "an l7 service needs at least one cluster");
        }
        let mut seen: HashMap<&str, Location> = HashMap::new();
        for cluster in clusters {
            let c = &cluster.value;
            let at = &cluster.referenced;
            if let Some(first) = seen.insert(&c.name, *at) {
                self.report.error(
                    at,
                    format!(
                        "cluster name `{}` is already used ({})",
                        c.name,
                        line_of(&first)
                    ),
                );
            }
            if c.endpoints.is_empty() {
                self.report.error(
                    at,
                    format!("cluster `{}` needs at least one endpoint", c.name),
                );
            }
            let mut addrs = HashMap::new();
            for e in &c.endpoints {
                if e.weight == 0 || e.weight > 1000 {
                    self.report.error(
                        at,
                        format!(
                            "cluster `{}`: endpoint {} has weight {}; expected 1 to 1000",
                            c.name, e.address, e.weight
                        ),
                    );
                }
                if e.address.port() == 0 || e.address.ip().is_unspecified() {
                    self.report.error(
                        at,
                        format!(
                            "cluster `{}`: endpoint {} is not a usable address",
                            c.name, e.address
                        ),
                    );
                }
                if addrs.insert(e.address, ()).is_some() {
                    self.report.error(
                        at,
                        format!(
                            "cluster `{}`: endpoint {} is listed twice",
                            c.name, e.address
                        ),
                    );
                }
            }
            if c.bounded_load.is_nan() || c.bounded_load < 1.0 {
                self.report.error(
                    at,
                    format!("cluster `{}`: bounded_load must be at least 1.0", c.name),
                );
            }
            if c.panic_threshold > 100 {
                self.report.error(
                    at,
                    format!(
                        "cluster `{}`: panic_threshold is a percent (0 to 100)",
                        c.name
                    ),
                );
            }
            if c.outlier.max_ejection_percent > 100 {
                self.report.error(
                    at,
                    format!(
                        "cluster `{}`: outlier.max_ejection_percent is a percent (0 to 100)",
                        c.name
                    ),
                );
            }
            let cb = &c.circuit_breakers;
            if cb.max_connections == 0 || cb.max_pending == 0 || cb.max_requests == 0 {
                self.report.error(
                    at,
                    format!(
                        "cluster `{}`: circuit_breakers limits must be at least 1",
                        c.name
                    ),
                );
            }
        }
        clusters.iter().map(|c| c.value.name.clone()).collect()
    }

    fn l7_route(&mut self, r: &RouteSpec, at: &Location, clusters: &[String]) {
        let targets: Vec<&str> = match (&r.cluster, r.weighted_clusters.is_empty()) {
            (Some(c), true) => vec![c.as_str()],
            (None, false) => r
                .weighted_clusters
                .iter()
                .map(|w| w.cluster.as_str())
                .collect(),
            _ => {
                self.report.error(
                    at,
                    "a route needs exactly one of `cluster` and `weighted_clusters`",
                );
                Vec::new()
            }
        };
        for t in targets {
            if !clusters.iter().any(|c| c == t) {
                self.report.error(
                    at,
                    format!(
                        "route leads to cluster `{t}`, which the service does not define (clusters: {})",
                        clusters.join(", ")
                    ),
                );
            }
        }
        if !r.weighted_clusters.is_empty()
            && r.weighted_clusters
                .iter()
                .map(|w| u64::from(w.weight))
                .sum::<u64>()
                == 0
        {
            self.report
                .error(at, "weighted_clusters: the weights sum to 0");
        }
        match &r.matcher.path {
            Some(PathMatch::Regex(re)) => {
                if let Err(e) = regex::Regex::new(re) {
                    let first = e.to_string();
                    let first = first.lines().last().unwrap_or("").trim().to_owned();
                    self.report
                        .error(at, format!("path regex `{re}` does not compile: {first}"));
                }
            }
            Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) if !p.starts_with('/') => {
                self.report
                    .error(at, format!("path `{p}` must start with `/`"));
            }
            _ => {}
        }
        if r.prefix_rewrite.is_some() && !matches!(r.matcher.path, Some(PathMatch::Prefix(_))) {
            self.report
                .error(at, "prefix_rewrite needs a `prefix` path match");
        }
        if let Some(m) = &r.matcher.method {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                self.report
                    .error(at, format!("`{m}` is not an HTTP method"));
            }
        }
        for h in &r.matcher.headers {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                self.report
                    .error(at, format!("`{}` is not a header name", h.name));
            }
        }
        if r.retries.budget_percent > 100 {
            self.report
                .error(at, "retries.budget_percent is a percent (0 to 100)");
        }
    }

    fn l7_tls(&mut self, tls: &TlsSpec, at: &Location) {
        if tls.certificates.is_empty() {
            self.report.error(at, "tls needs at least one certificate");
        }
        for c in &tls.certificates {
            for path in [&c.cert, &c.key] {
                if let Err(e) = std::fs::metadata(path) {
                    self.report
                        .error(at, format!("tls: cannot read {}: {e}", path.display()));
                }
            }
        }
    }
}

/// Whether `vip` is written as IPv4 (an invalid one is reported elsewhere).
fn is_v4(vip: &str) -> bool {
    !vip.contains(':')
}
