//! Building a worker [`Snapshot`] from the configuration and the control side's state.
//!
//! This runs off the hot path, on every reload, health change, weight change and
//! neighbour change: it assigns stable ids, applies weights, health and the panic
//! threshold, builds every Maglev table and resolves next hops.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::config::{self, Config};
use crate::engine::{
    Backend, BackendId, BackendState, Forwarding, Ipip4Template, Ipip6Template, Mac, NatPorts,
    PortInfo, Service, ServiceMode, Snapshot, VipIndex, VipKey, PROTO_TCP, PROTO_UDP,
};
use crate::maglev::{MaglevBackend, MaglevError, MaglevTable};

use super::neighbors::NeighborTable;
use super::registry::{BackendKey, IdRegistry};

/// First full-NAT source port. The range ends below the kernel's default ephemeral
/// range (32768-60999), so sockets of the LB host on the same address never collide
/// with NAT flows.
pub const NAT_PORT_BASE: u16 = 1024;
/// One past the last full-NAT source port.
pub const NAT_PORT_END: u32 = 32768;

/// Run-time changes on top of the file: health and operator weights.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Backends that active health checks say are down.
    pub unhealthy: HashSet<BackendId>,
    /// Backends ejected by passive checks (outlier detection), for their back-off period.
    pub ejected: HashSet<BackendId>,
    /// Weights set through the admin API (0 = drain), by backend.
    pub weights: HashMap<BackendKey, u16>,
    /// Backends drained through the admin API (weight 0), with the engine-clock
    /// millisecond the drain began: their flows end or move after `drain_timeout`.
    pub drains: HashMap<BackendKey, u32>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A Maglev table could not be built (validation should have caught it).
    #[error("service {service}: {error:?}")]
    Maglev {
        /// The service.
        service: String,
        /// What Maglev said.
        error: MaglevError,
    },
    /// More services than ids.
    #[error("too many services")]
    TooManyServices,
}

/// The key of a backend of `service` in the registry.
pub fn backend_key(service: &config::ServiceConfig, b: &config::BackendConfig) -> BackendKey {
    BackendKey {
        service: service.name.clone(),
        addr: b.address,
        port: b.port,
    }
}

/// The name Maglev hashes for a backend: its address, and its port when it has one.
/// Every fulcrum with the same configuration hashes the same names, so they agree.
pub fn maglev_name(b: &config::BackendConfig) -> String {
    match b.port {
        Some(p) => format!("{}:{p}", b.address),
        None => b.address.to_string(),
    }
}

/// Builds the Maglev table of `service` with every backend healthy and the file's
/// weights (what `fulcrum maglev` prints).
pub fn maglev_table(service: &config::ServiceConfig) -> Result<MaglevTable, MaglevError> {
    let names: Vec<String> = service.backends.iter().map(maglev_name).collect();
    let mb: Vec<MaglevBackend<'_>> = service
        .backends
        .iter()
        .zip(&names)
        .map(|(b, n)| MaglevBackend {
            name: n.as_bytes(),
            weight: b.weight as u32,
        })
        .collect();
    MaglevTable::build(&mb, service.maglev_table_size as usize)
}

/// The port index and next-hop address for `addr`: the first port whose subnet holds
/// it, else the first port of its family with a gateway.
pub fn route(cfg: &Config, addr: IpAddr) -> Option<(u16, IpAddr)> {
    if let Some(i) = cfg.ports.iter().position(|p| p.on_link(addr)) {
        return Some((i as u16, addr));
    }
    cfg.ports
        .iter()
        .enumerate()
        .find_map(|(i, p)| match p.gateway {
            Some(gw) if gw.is_ipv4() == addr.is_ipv4() => Some((i as u16, gw)),
            _ => None,
        })
}

/// Builds the snapshot. `port_macs[i]` is port i's MAC; `workers` the worker count.
#[allow(clippy::too_many_arguments)]
pub fn build_snapshot(
    cfg: &Config,
    port_macs: &[Mac],
    reg: &mut IdRegistry,
    neigh: &mut NeighborTable,
    overrides: &Overrides,
    workers: u16,
    now_ms: u32,
    generation: u64,
) -> Result<Snapshot, BuildError> {
    let ports: Vec<PortInfo> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            for n in &p.neighbors {
                neigh.add_static(n.address, n.mac);
            }
            PortInfo {
                name: p.name.clone(),
                mac: port_macs.get(i).copied().unwrap_or([0; 6]),
                ipv4: match p.address {
                    IpAddr::V4(a) => Some((a, p.prefix_len)),
                    IpAddr::V6(_) => None,
                },
                ipv6: match p.address {
                    IpAddr::V6(a) => Some((a, p.prefix_len)),
                    IpAddr::V4(_) => None,
                },
                nat_sources: p.nat_sources().map(Into::into).collect(),
                mtu: p.mtu,
            }
        })
        .collect();

    // ids first, so departed backends are known before the tables are built
    let mut present = Vec::new();
    for s in &cfg.services {
        reg.service(&s.name);
        for b in &s.backends {
            let k = backend_key(s, b);
            reg.backend(&k);
            present.push(k);
        }
    }
    let drain: HashMap<&str, u32> = cfg
        .services
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.drain_timeout.as_millis().min(u32::MAX as u128) as u32,
            )
        })
        .collect();
    reg.retire_missing(&present, now_ms, |svc| drain.get(svc).copied().unwrap_or(0));
    reg.expire_departed(now_ms);

    let mut services: Vec<Option<Service>> = vec![None; reg.service_id_bound()];
    let mut backends: Vec<Option<Backend>> = vec![None; reg.backend_id_bound()];
    let mut vips = HashMap::default();
    let mut vip_addrs = Vec::new();
    let mut wanted = Vec::new();

    let mut make_backend = |reg_id: BackendId,
                            service: u16,
                            addr: IpAddr,
                            port: Option<u16>,
                            state: BackendState,
                            healthy: bool,
                            reset_on_unhealthy: bool,
                            neigh: &mut NeighborTable| {
        let (egress_port, next_hop_mac) = match route(cfg, addr) {
            Some((p, hop)) => {
                neigh.want(hop);
                wanted.push(hop);
                (p, neigh.get(hop))
            }
            None => (0, None),
        };
        let ipip4 = next_hop_mac.and_then(|mac| {
            let p = ports.get(usize::from(egress_port))?;
            Ipip4Template::new(p, addr, mac)
        });
        let ipip6 = next_hop_mac.and_then(|mac| {
            let p = ports.get(usize::from(egress_port))?;
            Ipip6Template::new(p, addr, mac)
        });
        Backend {
            id: reg_id,
            service,
            addr,
            port,
            egress_port,
            next_hop_mac,
            state,
            healthy,
            ipip4,
            ipip6,
            keep_until: Backend::keep_until(state, healthy, reset_on_unhealthy),
        }
    };

    for s in &cfg.services {
        let sid = reg.service(&s.name);
        let proto = match s.protocol {
            config::Protocol::Tcp => PROTO_TCP,
            config::Protocol::Udp => PROTO_UDP,
        };
        let mode = match (s.mode, s.forwarding) {
            (config::Mode::L7, _) => ServiceMode::L7,
            (config::Mode::L4, Some(config::Forwarding::Dsr)) | (config::Mode::L4, None) => {
                ServiceMode::L4(Forwarding::Dsr)
            }
            (config::Mode::L4, Some(config::Forwarding::Ipip)) => ServiceMode::L4(Forwarding::Ipip),
            (config::Mode::L4, Some(config::Forwarding::Gue)) => {
                ServiceMode::L4(Forwarding::Gue { port: s.gue_port })
            }
            (config::Mode::L4, Some(config::Forwarding::Nat)) => ServiceMode::L4(Forwarding::Nat),
        };
        let ids: Vec<BackendId> = s
            .backends
            .iter()
            .map(|b| reg.backend(&backend_key(s, b)))
            .collect();
        let healthy: Vec<bool> = ids
            .iter()
            .map(|id| !overrides.unhealthy.contains(id) && !overrides.ejected.contains(id))
            .collect();
        let n_healthy = healthy.iter().filter(|h| **h).count();
        let panic = !s.backends.is_empty()
            && n_healthy * 100 < s.panic_threshold as usize * s.backends.len();
        let names: Vec<String> = s.backends.iter().map(maglev_name).collect();
        let weights: Vec<u32> = s
            .backends
            .iter()
            .zip(&healthy)
            .map(|(b, h)| {
                let w = overrides
                    .weights
                    .get(&backend_key(s, b))
                    .copied()
                    .unwrap_or(b.weight);
                if *h || panic {
                    w as u32
                } else {
                    0
                }
            })
            .collect();
        let mb: Vec<MaglevBackend<'_>> = names
            .iter()
            .zip(&weights)
            .map(|(n, w)| MaglevBackend {
                name: n.as_bytes(),
                weight: *w,
            })
            .collect();
        let maglev = if s.mode == config::Mode::L7 {
            MaglevTable::build(&[], s.maglev_table_size as usize)
        } else {
            MaglevTable::build(&mb, s.maglev_table_size as usize)
        }
        .map_err(|error| BuildError::Maglev {
            service: s.name.clone(),
            error,
        })?;

        let drain_ms = s.drain_timeout.as_millis().min(u32::MAX as u128) as u32;
        for (i, b) in s.backends.iter().enumerate() {
            let state = if weights[i] == 0 && healthy[i] {
                // weight 0 takes no new flows; established ones continue until they end,
                // or, for a drain through the API, until drain_timeout has passed
                match overrides.drains.get(&backend_key(s, b)) {
                    Some(since) => BackendState::Draining {
                        until: since.saturating_add(drain_ms),
                    },
                    None => BackendState::Draining { until: u32::MAX },
                }
            } else {
                BackendState::Active
            };
            let reset = s.on_unhealthy == config::OnUnhealthy::Reset;
            let be = make_backend(
                ids[i], sid, b.address, b.port, state, healthy[i], reset, neigh,
            );
            backends[ids[i] as usize] = Some(be);
        }
        vips.insert(
            VipKey {
                vip: s.vip,
                proto,
                port: s.port.unwrap_or(0),
            },
            sid,
        );
        if !vip_addrs.contains(&s.vip) {
            vip_addrs.push(s.vip);
        }
        services[sid as usize] = Some(Service {
            id: sid,
            name: s.name.clone(),
            vip: s.vip,
            port: s.port,
            proto,
            mode,
            maglev,
            members: ids,
            panic,
            reset_on_unhealthy: s.on_unhealthy == config::OnUnhealthy::Reset,
            connect_timeout_ms: if s.outlier_detection.enabled() {
                s.outlier_detection
                    .connect_timeout
                    .as_millis()
                    .clamp(1, u32::MAX as u128) as u32
            } else {
                0
            },
        });
    }

    for (key, d) in reg.departed() {
        let be = make_backend(
            d.id,
            d.service,
            key.addr,
            key.port,
            BackendState::Draining { until: d.until_ms },
            true,
            false,
            neigh,
        );
        backends[d.id as usize] = Some(be);
    }
    neigh.retain_wanted(&wanted);

    let workers = workers.max(1);
    let per_worker = ((NAT_PORT_END - NAT_PORT_BASE as u32) / workers as u32) as u16;
    Ok(Snapshot {
        generation,
        ports,
        services,
        backends,
        vip_index: VipIndex::build(vips.iter()),
        vips,
        vip_addrs,
        nat_ports: NatPorts {
            base: NAT_PORT_BASE,
            per_worker,
            workers,
        },
    })
}
