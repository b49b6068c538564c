//! The L7 parts of the file: the `l7:` section and an `l7` service's `tls`, `routes` and
//! `clusters`. Their shape (keys, types, durations) is the L7 pool's own types
//! (`crate::l7::config`), read by serde with positions. The rules serde cannot check
//! (ranges, references, regexes) are the pool's own (`problems()` of each type in
//! `crate::l7::config`, which `L7Config::validate` uses too); here each is reported at the
//! route, cluster or value concerned, with what needs the host or the file (cores,
//! kernel interfaces, certificate files).

use std::collections::HashMap;

use serde_saphyr::Location;

use super::{line_of, Validator};
use crate::config::host::Host;
use crate::config::model::{L7Config, Mode, PortConfig, ServiceConfig};
use crate::config::raw::{RawService, S};
use crate::l7::config::{
    duplicates, ClusterSpec, L7Settings, RouteSpec, TlsSpec, NO_CLUSTERS, NO_ROUTES,
};

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
        for problem in l7.problems() {
            self.report.error(at, problem);
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
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if routes.value.is_empty() {
            self.report.error(
                &routes.referenced,
                format!("l7 service `{name}` {NO_ROUTES}"),
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
            self.report.error(list, NO_CLUSTERS);
        }
        for (i, first) in duplicates(clusters.iter().map(|c| c.value.name.as_str())) {
            self.report.error(
                &clusters[i].referenced,
                format!(
                    "cluster name `{}` is already used ({})",
                    clusters[i].value.name,
                    line_of(&clusters[first].referenced)
                ),
            );
        }
        for cluster in clusters {
            for problem in cluster.value.problems() {
                self.report.error(&cluster.referenced, problem);
            }
        }
        clusters.iter().map(|c| c.value.name.clone()).collect()
    }

    fn l7_route(&mut self, r: &RouteSpec, at: &Location, clusters: &[&str]) {
        for problem in r.problems(clusters) {
            self.report.error(at, problem);
        }
    }

    fn l7_tls(&mut self, tls: &TlsSpec, at: &Location) {
        for problem in tls.problems() {
            self.report.error(at, problem);
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
