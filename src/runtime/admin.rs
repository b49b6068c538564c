//! The admin API's view of a running fulcrum: what the control thread publishes for
//! it, the commands it sends back, and the Prometheus metrics.
//!
//! The admin server runs on its own thread; it never touches the control state. It
//! reads the [`View`] the control thread refreshes (services, backends, health, port
//! statistics) and the counters each worker publishes, and sends [`Command`]s (reload,
//! weight, drain) that the control thread carries out on its next tick.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fulcrum_dpdk::PortStats;
use serde_json::{json, Value};

use crate::admin::{
    AdminError, AdminHandler, BackendStats, PromWriter, ServiceStats, StatsSnapshot, WorkerStats,
};
use crate::engine::BackendCounters;

use super::shared::{Published, Shared};

/// How long an API call waits for the control thread.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A backend as the admin API shows it.
#[derive(Debug, Clone, Default)]
pub struct BackendView {
    /// Stable id.
    pub id: u32,
    /// Address as configured.
    pub address: String,
    /// Weight in force (file or API).
    pub weight: u16,
    /// Health-check verdict.
    pub healthy: bool,
    /// Takes no new flows (weight 0, drained, or removed and draining).
    pub draining: bool,
    /// Health transitions so far.
    pub transitions: u64,
    /// Why the last check ended as it did.
    pub reason: String,
    /// Ejected by passive health checks now.
    pub ejected: bool,
    /// Ejections by passive health checks so far.
    pub ejections: u64,
}

/// A service as the admin API shows it.
#[derive(Debug, Clone, Default)]
pub struct ServiceView {
    /// Name.
    pub name: String,
    /// VIP.
    pub vip: String,
    /// Port (None: all).
    pub port: Option<u16>,
    /// `tcp` / `udp`.
    pub protocol: String,
    /// `dsr`, `ipip`, `gue`, `nat` or `l7`.
    pub forwarding: String,
    /// The panic threshold is in force.
    pub panic: bool,
    /// Backends.
    pub backends: Vec<BackendView>,
}

/// A port as the admin API shows it: name, basic stats, extended stats.
pub type PortView = (String, PortStats, Vec<(String, u64)>);

/// What the control thread publishes for the admin API.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Snapshot generation in force.
    pub generation: u64,
    /// Reloads applied.
    pub reloads: u64,
    /// Reloads refused.
    pub reload_failures: u64,
    /// Services.
    pub services: Vec<ServiceView>,
    /// Per port.
    pub ports: Vec<PortView>,
    /// Whether active health checks run.
    pub health_checks: bool,
}

/// A request from the admin API to the control thread.
pub enum Command {
    /// Re-read the file.
    Reload(Sender<Result<String, Vec<String>>>),
    /// Set a backend's weight; `drain` marks weight 0 as a drain with `drain_timeout`.
    SetWeight {
        /// Service name.
        service: String,
        /// Backend address as written in the file.
        backend: String,
        /// New weight.
        weight: u16,
        /// A drain (weight 0, flows end or time out).
        drain: bool,
        /// The answer.
        reply: Sender<Result<(), AdminError>>,
    },
}

/// The [`AdminHandler`] of `fulcrum run`.
pub struct RuntimeAdmin {
    /// Refreshed by the control thread.
    pub view: Arc<Mutex<View>>,
    /// Workers' published counters.
    pub shared: Arc<Shared>,
    /// To the control thread.
    pub commands: Mutex<Sender<Command>>,
    /// The L7 pool's metrics, when it runs.
    pub l7: Option<Arc<crate::l7::L7Metrics>>,
    /// The L7 pool's live state, when it runs.
    pub l7_status: Option<crate::l7::L7Status>,
}

impl RuntimeAdmin {
    fn view(&self) -> View {
        match self.view.lock() {
            Ok(v) => v.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    fn published(&self) -> Vec<Published> {
        self.shared
            .workers
            .iter()
            .map(|w| match w.published.lock() {
                Ok(p) => p.clone(),
                Err(e) => e.into_inner().clone(),
            })
            .collect()
    }

    fn send(&self, c: Command) -> Result<(), AdminError> {
        let tx = self
            .commands
            .lock()
            .map_err(|_| AdminError::BadRequest("control thread gone".into()))?;
        tx.send(c)
            .map_err(|_| AdminError::BadRequest("control thread gone".into()))
    }

    fn weight(
        &self,
        service: &str,
        backend: &str,
        weight: u16,
        drain: bool,
    ) -> Result<(), AdminError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::SetWeight {
            service: service.into(),
            backend: backend.into(),
            weight,
            drain,
            reply,
        })?;
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| AdminError::BadRequest("the control thread did not answer".into()))?
    }
}

/// Per backend id: its counters summed over workers.
pub fn backend_totals(published: &[Published]) -> BTreeMap<u32, BackendCounters> {
    let mut m: BTreeMap<u32, BackendCounters> = BTreeMap::new();
    for p in published {
        for (id, c) in &p.backends {
            let e = m.entry(*id).or_default();
            e.packets += c.packets;
            e.bytes += c.bytes;
            e.new_flows += c.new_flows;
            e.active_flows += c.active_flows;
            e.connects_ok += c.connects_ok;
            e.connects_failed += c.connects_failed;
        }
    }
    m
}

impl AdminHandler for RuntimeAdmin {
    fn metrics(&self, out: &mut String) {
        let view = self.view();
        let published = self.published();
        let totals = backend_totals(&published);
        let mut w = PromWriter::new();
        w.gauge(
            "fulcrum_config_generation",
            "Generation of the configuration snapshot in force.",
            &[],
            view.generation as f64,
        );
        w.counter(
            "fulcrum_reloads_total",
            "Configuration reloads applied.",
            &[],
            view.reloads,
        );
        w.counter(
            "fulcrum_reload_failures_total",
            "Configuration reloads refused (the running one stayed).",
            &[],
            view.reload_failures,
        );
        for s in &view.services {
            let sl = [("service", s.name.as_str())];
            w.gauge(
                "fulcrum_service_panic",
                "1 while fewer backends than panic_threshold are healthy and health is ignored.",
                &sl,
                if s.panic { 1.0 } else { 0.0 },
            );
            let healthy = s.backends.iter().filter(|b| b.healthy).count();
            w.gauge(
                "fulcrum_service_backends_healthy",
                "Healthy backends of the service.",
                &sl,
                healthy as f64,
            );
            w.gauge(
                "fulcrum_service_backends",
                "Configured backends of the service.",
                &sl,
                s.backends.len() as f64,
            );
            for b in &s.backends {
                let l = [
                    ("service", s.name.as_str()),
                    ("backend", b.address.as_str()),
                ];
                let c = totals.get(&b.id).copied().unwrap_or_default();
                w.counter(
                    "fulcrum_backend_packets_total",
                    "Packets sent to the backend.",
                    &l,
                    c.packets,
                );
                w.counter(
                    "fulcrum_backend_bytes_total",
                    "Bytes sent to the backend.",
                    &l,
                    c.bytes,
                );
                w.counter(
                    "fulcrum_backend_new_flows_total",
                    "Flows pinned to the backend.",
                    &l,
                    c.new_flows,
                );
                w.gauge(
                    "fulcrum_backend_active_flows",
                    "Flows pinned to the backend in the workers' flow tables now.",
                    &l,
                    c.active_flows as f64,
                );
                for (result, n) in [("ok", c.connects_ok), ("failed", c.connects_failed)] {
                    w.counter(
                        "fulcrum_backend_connects_total",
                        "Full-NAT connection attempts by outcome (passive health): ok = SYN-ACK; failed = RST, ICMP unreachable or no answer within connect_timeout.",
                        &[
                            ("service", s.name.as_str()),
                            ("backend", b.address.as_str()),
                            ("result", result),
                        ],
                        n,
                    );
                }
                w.gauge(
                    "fulcrum_backend_ejected",
                    "1 while passive health checks (outlier detection) eject the backend.",
                    &l,
                    if b.ejected { 1.0 } else { 0.0 },
                );
                w.counter(
                    "fulcrum_backend_ejections_total",
                    "Ejections by passive health checks.",
                    &l,
                    b.ejections,
                );
                w.gauge(
                    "fulcrum_backend_healthy",
                    "1 if health checks pass.",
                    &l,
                    if b.healthy { 1.0 } else { 0.0 },
                );
                w.gauge(
                    "fulcrum_backend_weight",
                    "Maglev weight in force (0: draining).",
                    &l,
                    b.weight as f64,
                );
                w.gauge(
                    "fulcrum_backend_draining",
                    "1 if the backend takes no new flows.",
                    &l,
                    if b.draining { 1.0 } else { 0.0 },
                );
                w.counter(
                    "fulcrum_backend_health_transitions_total",
                    "Health state changes.",
                    &l,
                    b.transitions,
                );
            }
        }
        for (i, p) in published.iter().enumerate() {
            let id = i.to_string();
            let l = [("worker", id.as_str())];
            for (name, v) in &p.counters {
                if let Some(reason) = name.strip_prefix("drop_") {
                    w.counter(
                        "fulcrum_drops_total",
                        "Packets dropped, by reason.",
                        &[("worker", id.as_str()), ("reason", reason)],
                        *v,
                    );
                } else {
                    let metric = format!("fulcrum_{name}_total");
                    w.counter(
                        &metric,
                        "Worker counter (see the README's metrics table).",
                        &l,
                        *v,
                    );
                }
            }
            w.gauge(
                "fulcrum_flow_table_entries",
                "Live flows in the worker's table.",
                &l,
                p.flows as f64,
            );
            w.gauge(
                "fulcrum_flow_table_capacity",
                "Capacity of the worker's flow table.",
                &l,
                p.flow_capacity as f64,
            );
            w.counter(
                "fulcrum_flow_table_evictions_total",
                "Live flows evicted because the table was full.",
                &l,
                p.flow_evictions,
            );
            w.histogram_summary(
                "fulcrum_burst_size",
                "Packets per non-empty poll of all queues.",
                &l,
                &p.burst,
                1.0,
            );
            w.histogram_summary(
                "fulcrum_loop_seconds",
                "Duration of a worker loop that processed packets (under load one in 8 is timed).",
                &l,
                &p.loop_ns,
                1e-9,
            );
        }
        for (name, s, x) in &view.ports {
            let l = [("port", name.as_str())];
            w.counter(
                "fulcrum_port_rx_packets_total",
                "DPDK ipackets.",
                &l,
                s.ipackets,
            );
            w.counter(
                "fulcrum_port_tx_packets_total",
                "DPDK opackets.",
                &l,
                s.opackets,
            );
            w.counter("fulcrum_port_rx_bytes_total", "DPDK ibytes.", &l, s.ibytes);
            w.counter("fulcrum_port_tx_bytes_total", "DPDK obytes.", &l, s.obytes);
            w.counter(
                "fulcrum_port_rx_missed_total",
                "DPDK imissed: packets the NIC dropped for want of RX descriptors.",
                &l,
                s.imissed,
            );
            w.counter(
                "fulcrum_port_rx_errors_total",
                "DPDK ierrors.",
                &l,
                s.ierrors,
            );
            w.counter(
                "fulcrum_port_tx_errors_total",
                "DPDK oerrors.",
                &l,
                s.oerrors,
            );
            w.counter(
                "fulcrum_port_rx_nombuf_total",
                "DPDK rx_nombuf: mbuf allocation failures.",
                &l,
                s.rx_nombuf,
            );
            for (xname, v) in x {
                w.counter(
                    "fulcrum_port_xstat",
                    "DPDK extended statistic.",
                    &[("port", name.as_str()), ("name", xname.as_str())],
                    *v,
                );
            }
        }
        if let Some(l7) = &self.l7 {
            l7.render_prometheus(&mut w);
        }
        w.finish(out);
    }

    fn services(&self) -> Value {
        let view = self.view();
        let totals = backend_totals(&self.published());
        let services: Vec<Value> = view
            .services
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "vip": s.vip, "port": s.port, "protocol": s.protocol,
                    "forwarding": s.forwarding, "panic": s.panic,
                    "backends": s.backends.iter().map(|b| {
                        let c = totals.get(&b.id).copied().unwrap_or_default();
                        json!({"address": b.address, "weight": b.weight, "healthy": b.healthy,
                               "draining": b.draining, "health_transitions": b.transitions,
                               "health_reason": b.reason, "ejected": b.ejected,
                               "ejections": b.ejections, "packets": c.packets, "bytes": c.bytes,
                               "new_flows": c.new_flows, "active_flows": c.active_flows,
                               "connects_ok": c.connects_ok, "connects_failed": c.connects_failed})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"generation": view.generation, "health_checks": view.health_checks, "services": services})
    }

    fn stats(&self) -> Value {
        let view = self.view();
        let published = self.published();
        let totals = backend_totals(&published);
        let snap = StatsSnapshot {
            services: view
                .services
                .iter()
                .map(|s| ServiceStats {
                    name: s.name.clone(),
                    vip: s.vip.clone(),
                    port: s.port,
                    protocol: s.protocol.clone(),
                    panic: s.panic,
                    backends: s
                        .backends
                        .iter()
                        .map(|b| {
                            let c = totals.get(&b.id).copied().unwrap_or_default();
                            BackendStats {
                                address: b.address.clone(),
                                weight: b.weight,
                                healthy: b.healthy,
                                draining: b.draining,
                                packets: c.packets,
                                bytes: c.bytes,
                                new_flows: c.new_flows,
                                active_flows: c.active_flows,
                            }
                        })
                        .collect(),
                })
                .collect(),
            workers: published
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let get = |n: &str| {
                        p.counters
                            .iter()
                            .find(|(k, _)| *k == n)
                            .map(|(_, v)| *v)
                            .unwrap_or(0)
                    };
                    let drops: u64 = p
                        .counters
                        .iter()
                        .filter(|(k, _)| k.starts_with("drop_"))
                        .map(|(_, v)| v)
                        .sum();
                    WorkerStats {
                        id: i as u32,
                        rx_packets: get("worker_rx_packets"),
                        tx_packets: get("worker_tx_packets"),
                        drops,
                        flows: p.flows,
                    }
                })
                .collect(),
        };
        serde_json::to_value(snap).unwrap_or(Value::Null)
    }

    fn reload(&self) -> Result<String, Vec<String>> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Reload(reply))
            .map_err(|e| vec![format!("{e:?}")])?;
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| vec!["the control thread did not answer".to_owned()])?
    }

    fn set_weight(&self, service: &str, backend: &str, weight: u16) -> Result<(), AdminError> {
        self.weight(service, backend, weight, false)
    }

    fn drain(&self, service: &str, backend: &str) -> Result<(), AdminError> {
        self.weight(service, backend, 0, true)
    }

    fn l7(&self) -> Value {
        match &self.l7_status {
            Some(status) => status.json(),
            None => json!({"zone": null, "services": []}),
        }
    }
}
