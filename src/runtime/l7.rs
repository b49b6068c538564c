//! The L7 pool inside `fulcrum run`: the main configuration's `l7:` section and `l7`
//! services, turned into the pool's own configuration, and the listeners on each
//! service's VIP and port. The runtime puts those VIPs on the kernel interface (see
//! [`super::kernel`]), so the pool accepts there what the workers hand to the kernel, and
//! its upstream connections leave through the same interface.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Mode};
use crate::l7::config::L7Service;
use crate::l7::{L7Config, L7Pool, ListenerSpec};

/// The pool's configuration: the `l7:` section and every `l7` service.
pub fn pool_config(cfg: &Config) -> L7Config {
    L7Config {
        l7: cfg.l7.clone(),
        services: cfg
            .services
            .iter()
            .filter(|s| s.mode == Mode::L7)
            .filter_map(|s| {
                let l7 = s.l7.as_ref()?;
                Some(L7Service {
                    name: s.name.clone(),
                    mode: "l7".to_owned(),
                    listen: s.port.map(|p| SocketAddr::new(s.vip, p)),
                    tls: l7.tls.clone(),
                    routes: l7.routes.clone(),
                    clusters: l7.clusters.clone(),
                })
            })
            .collect(),
    }
}

/// One listener per `l7` service, on its VIP and port.
pub fn listeners(cfg: &Config) -> Vec<ListenerSpec> {
    pool_config(cfg)
        .services
        .iter()
        .filter_map(|s| {
            Some(ListenerSpec {
                addr: s.listen?,
                tls: s.tls.is_some(),
                service: s.name.clone(),
            })
        })
        .collect()
}

/// Starts the pool when the file has `l7` services.
pub fn start(cfg: &Config) -> Result<Option<L7Pool>, String> {
    let listeners = listeners(cfg);
    if listeners.is_empty() {
        return Ok(None);
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| {
            format!(
                "{} ({}{})",
                l.addr,
                l.service,
                if l.tls { ", tls" } else { "" }
            )
        })
        .collect();
    let pool = L7Pool::start(Arc::new(pool_config(cfg)), listeners)
        .map_err(|e| format!("starting the L7 pool: {e}"))?;
    println!(
        "fulcrum: L7 pool on cores {:?} listening on {}",
        cfg.l7.cores,
        addrs.join(", ")
    );
    Ok(Some(pool))
}

/// Applies `cfg`'s routes, clusters and certificates to the running pool.
pub fn reload(pool: &L7Pool, cfg: &Config) -> Result<(), String> {
    pool.reload(Arc::new(pool_config(cfg)))
        .map_err(|e| format!("the L7 pool refused the configuration: {e}"))
}

/// Why the pool cannot take `new` without a restart: its listeners or cores changed.
pub fn restart_needed(old: &Config, new: &Config) -> Option<&'static str> {
    if listeners(old) != listeners(new) {
        return Some("a change of l7 services' vip, port or tls on/off");
    }
    if old.l7.cores != new.l7.cores {
        return Some("a change of l7.cores");
    }
    None
}
