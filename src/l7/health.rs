//! Active health checks of cluster endpoints (`clusters[].health_check`).
//!
//! The probing is the health module's [`HealthChecker`], the one the L4 services use: its
//! own thread, a task per endpoint, jitter, hysteresis. This module feeds it the endpoints
//! of every cluster with a check, and a small thread copies its verdicts onto the
//! endpoints the request path reads ([`Endpoint::checks_pass`], an atomic) every
//! [`SYNC_INTERVAL`], logging each change. Nothing here runs on the pool's threads.
//!
//! A target's id stays the same across reloads while its service, cluster and address do
//! (whatever else changed), so the checker keeps its state and streaks: a reload neither
//! readmits an endpoint known to be failing nor makes it wait for its probes again. The
//! checker thread starts with the first cluster that has a check.
//!
//! [`Endpoint::checks_pass`]: super::balance::Endpoint::checks_pass

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::config::HealthCheckKind;
use super::state::{Cluster, Snapshot};
use crate::health::{HealthChecker, HealthTarget};

/// How often verdicts are copied onto the endpoints.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// An endpoint a target probes.
struct Binding {
    id: u32,
    service: String,
    cluster: Arc<Cluster>,
    index: usize,
}

/// The checker and the thread that applies its verdicts, once some cluster has a check.
struct Running {
    checker: Arc<Mutex<HealthChecker>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Target ids by (service, cluster, endpoint address), and the last one given.
type TargetIds = (HashMap<(String, String, SocketAddr), u32>, u32);

/// The pool's active health checking.
pub struct PoolHealth {
    bindings: Arc<ArcSwap<Vec<Binding>>>,
    ids: Mutex<TargetIds>,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for PoolHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHealth")
            .field("targets", &self.bindings.load().len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PoolHealth {
    /// No checks yet ([`update`](Self::update) gives the first set).
    pub fn new() -> PoolHealth {
        PoolHealth {
            bindings: Arc::new(ArcSwap::from_pointee(Vec::new())),
            ids: Mutex::new((HashMap::new(), 0)),
            running: Mutex::new(None),
        }
    }

    /// Probes the endpoints of `snapshot`'s clusters that have a check (and stops probing
    /// the rest); the endpoints of a rebuilt cluster get their target's current verdict
    /// at once. Fails only if the checker thread cannot be started.
    pub fn update(&self, snapshot: &Snapshot) -> std::io::Result<()> {
        let mut targets = Vec::new();
        let mut bindings = Vec::new();
        {
            let mut ids = lock(&self.ids);
            let (map, next) = &mut *ids;
            let mut kept = HashMap::new();
            let mut services: Vec<_> = snapshot.services.values().collect();
            services.sort_by(|a, b| a.name.cmp(&b.name));
            for svc in services {
                let mut clusters: Vec<_> = svc.clusters.values().collect();
                clusters.sort_by(|a, b| a.name.cmp(&b.name));
                for cluster in clusters {
                    let Some(hc) = &cluster.spec.health_check else {
                        continue;
                    };
                    if hc.kind == HealthCheckKind::None {
                        continue;
                    }
                    for (index, e) in cluster.endpoints.iter().enumerate() {
                        let key = (svc.name.clone(), cluster.name.clone(), e.addr);
                        let id = match map.get(&key) {
                            Some(&id) => id,
                            None => {
                                *next += 1;
                                *next
                            }
                        };
                        kept.insert(key, id);
                        targets.push(HealthTarget {
                            id,
                            service: format!("{}/{}", svc.name, cluster.name),
                            addr: e.addr,
                            kind: hc.kind,
                            path: hc.path.clone(),
                            host: hc.host.clone(),
                            interval: hc.interval,
                            timeout: hc.timeout,
                            healthy_threshold: hc.healthy_threshold,
                            unhealthy_threshold: hc.unhealthy_threshold,
                        });
                        bindings.push(Binding {
                            id,
                            service: svc.name.clone(),
                            cluster: cluster.clone(),
                            index,
                        });
                    }
                }
            }
            *map = kept;
        }
        let mut running = lock(&self.running);
        match running.as_ref() {
            Some(r) => lock(&r.checker).update(targets),
            None if targets.is_empty() => {}
            None => *running = Some(self.start(targets)?),
        }
        if let Some(r) = running.as_ref() {
            apply(&lock(&r.checker), &bindings);
        }
        self.bindings.store(Arc::new(bindings));
        Ok(())
    }

    fn start(&self, targets: Vec<HealthTarget>) -> std::io::Result<Running> {
        let checker = Arc::new(Mutex::new(HealthChecker::start(targets)?));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (checker, stop, bindings) = (checker.clone(), stop.clone(), self.bindings.clone());
            std::thread::Builder::new()
                .name("fulcrum-l7-health".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(SYNC_INTERVAL);
                        let checker = lock(&checker);
                        let bindings = bindings.load();
                        for event in checker.events() {
                            if let Some(b) = bindings.iter().find(|b| b.id == event.id) {
                                eprintln!(
                                    "fulcrum l7: endpoint {} of cluster {} (service {}) is {}: {} ({} probes in a row)",
                                    b.cluster.endpoints[b.index].addr,
                                    b.cluster.name,
                                    b.service,
                                    if event.healthy { "healthy" } else { "unhealthy" },
                                    event.reason,
                                    event.streak,
                                );
                            }
                        }
                        apply(&checker, &bindings);
                    }
                })?
        };
        Ok(Running {
            checker,
            stop,
            thread,
        })
    }

    /// Stops the probes and joins the threads.
    pub fn stop(&self) {
        if let Some(r) = lock(&self.running).take() {
            r.stop.store(true, Ordering::Relaxed);
            let _ = r.thread.join();
            if let Ok(checker) = Arc::try_unwrap(r.checker) {
                checker
                    .into_inner()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .stop();
            }
        }
    }
}

impl Default for PoolHealth {
    fn default() -> Self {
        PoolHealth::new()
    }
}

impl Drop for PoolHealth {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the checker's verdicts onto the bound endpoints, and each cluster's count of
/// endpoints failing its checks into its stats.
fn apply(checker: &HealthChecker, bindings: &[Binding]) {
    let mut failing: HashMap<*const Cluster, u64> = HashMap::new();
    for b in bindings {
        let pass = checker.is_healthy(b.id).unwrap_or(true);
        b.cluster.endpoints[b.index]
            .checks_pass
            .store(pass, Ordering::Relaxed);
        *failing.entry(Arc::as_ptr(&b.cluster)).or_default() += u64::from(!pass);
    }
    for b in bindings {
        if let Some(n) = failing.remove(&Arc::as_ptr(&b.cluster)) {
            b.cluster
                .stats
                .endpoints_failing_checks
                .store(n, Ordering::Relaxed);
        }
    }
}
