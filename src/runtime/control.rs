//! The control loop on the main thread: signals, reload, neighbour resolution,
//! drain deadlines, and the final report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fulcrum_dpdk::Port;

use crate::config::{self, Config};
use crate::control::{build_snapshot, frames, IdRegistry, NeighborTable, Overrides};
use crate::engine::Mac;

use super::shared::{Frame, Shared};
use super::RunError;

/// How often the control loop wakes.
const TICK: Duration = Duration::from_millis(10);

/// `02:00:00:00:00:01`.
pub fn fmt_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The control side's state.
pub struct Control {
    /// The configuration file.
    pub path: PathBuf,
    /// The configuration in force.
    pub cfg: Config,
    /// Each port's MAC.
    pub port_macs: Vec<Mac>,
    /// Stable ids.
    pub reg: IdRegistry,
    /// Neighbours.
    pub neigh: NeighborTable,
    /// Health and operator weights.
    pub overrides: Overrides,
    /// Shared with the workers.
    pub shared: Arc<Shared>,
    /// The generation of the last published snapshot.
    pub generation: u64,
}

impl Control {
    /// Runs until SIGINT or SIGTERM.
    pub fn run_until_stopped(&mut self) -> Result<(), RunError> {
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (signal_hook::consts::SIGINT, &term),
            (signal_hook::consts::SIGTERM, &term),
            (signal_hook::consts::SIGHUP, &hup),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(|e| RunError::Other(format!("installing signal handler: {e}")))?;
        }
        while !term.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                self.reload();
            }
            let now = self.shared.now_ms();
            let mut dirty = false;
            while let Some(f) = self.shared.to_control.pop() {
                if let Some((ip, mac)) = frames::parse_neighbor_answer(&f.bytes) {
                    dirty |= self.neigh.learn(ip, mac, now);
                }
            }
            let (due, forgot) = self.neigh.due(now);
            dirty |= forgot;
            for ip in due {
                self.solicit(ip);
            }
            if self.reg.departed().any(|(_, d)| d.until_ms <= now) {
                dirty = true;
            }
            if dirty {
                self.publish(now);
            }
            std::thread::sleep(TICK);
        }
        println!("fulcrum: stopping");
        Ok(())
    }

    /// Sends an ARP request / neighbour solicitation for `ip` out of the port that reaches it.
    fn solicit(&self, ip: std::net::IpAddr) {
        let Some(port) = self.cfg.ports.iter().position(|p| p.on_link(ip)) else {
            return;
        };
        let p = &self.cfg.ports[port];
        let mac = self.port_macs[port];
        let Some(bytes) = frames::solicitation(mac, p.address, ip) else {
            return;
        };
        let _ = self.shared.workers[0].inject.push(Frame {
            port: port as u16,
            bytes,
        });
    }

    /// Rebuilds and publishes the snapshot.
    fn publish(&mut self, now: u32) -> bool {
        match build_snapshot(
            &self.cfg,
            &self.port_macs,
            &mut self.reg,
            &mut self.neigh,
            &self.overrides,
            self.shared.workers.len() as u16,
            now,
            self.generation + 1,
        ) {
            Ok(s) => {
                self.generation += 1;
                self.shared.snapshot.store(Arc::new(s));
                true
            }
            Err(e) => {
                eprintln!("fulcrum: cannot build a snapshot: {e}");
                false
            }
        }
    }

    /// SIGHUP: re-read the file; apply it if valid, keep the running one if not.
    pub fn reload(&mut self) {
        match config::load(&self.path) {
            Err(diags) => {
                for d in &diags {
                    eprintln!("{d}");
                }
                println!(
                    "fulcrum: reload failed ({} problem(s)); the running configuration stays (generation {})",
                    diags.len(),
                    self.generation
                );
            }
            Ok(new) => {
                if let Some(why) = restart_needed(&self.cfg, &new) {
                    println!("fulcrum: reload refused: {why} needs a restart; the running configuration stays");
                    return;
                }
                let old = std::mem::replace(&mut self.cfg, new);
                let now = self.shared.now_ms();
                if self.publish(now) {
                    println!(
                        "fulcrum: reload ok: generation {}, {} service(s), {} backend(s)",
                        self.generation,
                        self.cfg.services.len(),
                        self.cfg.backend_count()
                    );
                } else {
                    self.cfg = old;
                    println!("fulcrum: reload failed; the running configuration stays");
                }
            }
        }
    }

    /// Prints final counters: `counter NAME VALUE`, summed over workers, then per port.
    pub fn final_report(&self, ports: &[Port]) {
        let mut sums: Vec<(&'static str, u64)> = Vec::new();
        let mut backends: std::collections::BTreeMap<u32, (u64, u64, u64)> = Default::default();
        for w in &self.shared.workers {
            let p = match w.published.lock() {
                Ok(p) => p.clone(),
                Err(e) => e.into_inner().clone(),
            };
            for (name, v) in p.counters {
                match sums.iter_mut().find(|(n, _)| *n == name) {
                    Some(s) => s.1 += v,
                    None => sums.push((name, v)),
                }
            }
            for (id, pk, by, nf) in p.backends {
                let e = backends.entry(id).or_default();
                e.0 += pk;
                e.1 += by;
                e.2 += nf;
            }
        }
        for (name, v) in &sums {
            println!("counter {name} {v}");
        }
        let snap = self.shared.snapshot.load();
        for (id, (pk, by, nf)) in backends {
            let addr = snap
                .backend(id)
                .map(|b| b.addr.to_string())
                .unwrap_or_else(|| format!("#{id}"));
            println!("counter backend_packets{{{addr}}} {pk}");
            println!("counter backend_bytes{{{addr}}} {by}");
            println!("counter backend_new_flows{{{addr}}} {nf}");
        }
        for (i, p) in ports.iter().enumerate() {
            if let Ok(s) = p.stats() {
                let name = &self
                    .cfg
                    .ports
                    .get(i)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                println!("counter port_ipackets{{{name}}} {}", s.ipackets);
                println!("counter port_opackets{{{name}}} {}", s.opackets);
                println!("counter port_imissed{{{name}}} {}", s.imissed);
                println!("counter port_ierrors{{{name}}} {}", s.ierrors);
                println!("counter port_oerrors{{{name}}} {}", s.oerrors);
            }
        }
    }
}

/// What a reload cannot change while running: the EAL, ports, workers and table sizes.
fn restart_needed(old: &Config, new: &Config) -> Option<&'static str> {
    if old.dpdk != new.dpdk {
        return Some("a change of dpdk.eal_args");
    }
    if old.ports.len() != new.ports.len()
        || old
            .ports
            .iter()
            .zip(&new.ports)
            .any(|(a, b)| a.device != b.device)
    {
        return Some("a change of port devices");
    }
    if old.workers.cores != new.workers.cores {
        return Some("a change of workers.cores");
    }
    if old.flow_table.capacity != new.flow_table.capacity {
        return Some("a change of flow_table.capacity");
    }
    None
}
