//! The control loop on the main thread: signals, reload, neighbour resolution, health
//! checks, admin commands, drain deadlines, and the final report.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fulcrum_dpdk::Port;

use crate::admin::AdminError;
use crate::config::watch::{after_reload, list, watched_files, FileWatch};
use crate::config::{self, Config, Mode, Protocol};
use crate::control::{
    backend_key, build_snapshot, frames, route, IdRegistry, NeighborTable, Overrides,
};
use crate::engine::{BackendCounters, BackendState, Mac};
use crate::health::{HealthChecker, HealthStatus, HealthTarget};

use super::admin::{BackendView, Command, ServiceView, View};
use super::passive::{PassiveEvent, PassiveTracker};
use super::shared::{Frame, Shared};
use super::RunError;

/// How often the control loop wakes while something is going on (a neighbour unresolved,
/// frames from the workers, health events, a reload, an admin command).
const TICK: Duration = Duration::from_millis(10);
/// The longest the control loop sleeps when nothing is going on. The control thread may
/// share a CPU with a worker (a small machine, or `--lcores` mapping both to one CPU), and
/// every wake-up preempts that worker; admin commands wake the loop at once regardless.
const QUIET_TICK: Duration = Duration::from_millis(100);

/// How often the workers' connection outcomes are looked at (passive health).
const PASSIVE_EVERY: Duration = Duration::from_millis(20);
/// How often port statistics are refreshed for the admin API.
const PORT_STATS_EVERY: Duration = Duration::from_secs(1);

/// The control loop's sleep: [`TICK`] after a round that did something, doubling up to
/// [`QUIET_TICK`] over quiet rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    wait: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { wait: TICK }
    }

    /// The sleep after a round; `busy` says whether the round did anything.
    fn after(&mut self, busy: bool) -> Duration {
        self.wait = if busy {
            TICK
        } else {
            (self.wait * 2).min(QUIET_TICK)
        };
        self.wait
    }
}

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
    /// What the admin API reads.
    pub view: Arc<Mutex<View>>,
    /// What the admin API asks.
    pub commands: Option<Receiver<Command>>,
    /// Active health checks (None when no port has a kernel interface to send them from).
    pub health: Option<HealthChecker>,
    /// Reloads applied / refused.
    pub reloads: (u64, u64),
    /// Passive health (outlier detection) from the workers' connection outcomes.
    pub passive: PassiveTracker,
    /// When the workers' outcomes were last looked at.
    pub passive_last: Instant,
    /// The L7 pool, when the file has `l7` services.
    pub l7: Option<crate::l7::L7Pool>,
    /// `--watch`: the configuration file and the files it names, polled for changes.
    pub watch: Option<FileWatch>,
}

impl Control {
    /// Starts the health checker for the configured backends, if probes can be sent.
    pub fn start_health(&mut self) {
        let targets = self.health_targets();
        if self.cfg.ports.iter().all(|p| p.kernel_interface.is_none()) {
            if self
                .cfg
                .services
                .iter()
                .any(|s| s.health_check.kind != config::HealthCheckKind::None)
            {
                println!("fulcrum: health checks need ports[].kernel_interface; backends are treated as healthy");
            }
            return;
        }
        match HealthChecker::start(targets) {
            Ok(h) => self.health = Some(h),
            Err(e) => eprintln!("fulcrum: cannot start health checks: {e}"),
        }
    }

    /// Takes the services' `outlier_detection` settings (start and reload).
    pub fn configure_passive(&mut self) {
        self.passive.configure(&self.cfg, &mut self.reg);
    }

    /// Sums the workers' connection outcomes and ejects or readmits backends; returns
    /// whether a new snapshot is due.
    fn passive_tick(&mut self) -> bool {
        if self.passive_last.elapsed() < PASSIVE_EVERY {
            return false;
        }
        self.passive_last = Instant::now();
        let published: Vec<_> = self
            .shared
            .workers
            .iter()
            .map(|w| match w.published.lock() {
                Ok(p) => p.backends.clone(),
                Err(e) => e.into_inner().backends.clone(),
            })
            .collect();
        let mut totals = std::collections::BTreeMap::new();
        for backends in &published {
            for (id, c) in backends {
                let e: &mut BackendCounters = totals.entry(*id).or_default();
                e.connects_ok += c.connects_ok;
                e.connects_failed += c.connects_failed;
            }
        }
        let events = self.passive.observe(&totals, Instant::now());
        let mut changed = false;
        for ev in events {
            match ev {
                PassiveEvent::Ejected {
                    id,
                    failures,
                    for_ms,
                } => {
                    changed |= self.overrides.ejected.insert(id);
                    println!(
                        "fulcrum: backend {} ejected for {} ms: {failures} connection attempts in a row failed",
                        self.backend_name(id),
                        for_ms
                    );
                }
                PassiveEvent::Readmitted { id } => {
                    changed |= self.overrides.ejected.remove(&id);
                    println!(
                        "fulcrum: backend {} readmitted: its ejection ended",
                        self.backend_name(id)
                    );
                }
            }
        }
        changed
    }

    fn health_targets(&mut self) -> Vec<HealthTarget> {
        let mut out = Vec::new();
        for s in &self.cfg.services {
            for b in &s.backends {
                let reachable = route(&self.cfg, b.address)
                    .and_then(|(p, _)| self.cfg.ports.get(p as usize))
                    .is_some_and(|p| p.kernel_interface.is_some());
                if !reachable {
                    continue;
                }
                let id = self.reg.backend(&backend_key(s, b));
                if let Some(t) = HealthTarget::from_config(id, s, b) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Runs until SIGINT or SIGTERM.
    pub fn run_until_stopped(&mut self, ports: &[Port]) -> Result<(), RunError> {
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
        self.refresh_view();
        let mut last_stats = Instant::now() - PORT_STATS_EVERY;
        let mut backoff = Backoff::new();
        let mut woken = false;
        while !term.load(Ordering::Relaxed) {
            let mut busy = woken;
            if hup.swap(false, Ordering::Relaxed) {
                let _ = self.reload();
                busy = true;
            }
            if let Some(w) = &mut self.watch {
                let changed = w.poll(Instant::now());
                if !changed.is_empty() {
                    println!("fulcrum: changed on disk: {}; reloading", list(&changed));
                    let _ = self.reload();
                    busy = true;
                }
            }
            busy |= self.serve_commands();
            let now = self.shared.now_ms();
            let (mut dirty, neighbors_busy) = self.neighbor_tick(now);
            if self.reg.departed().any(|(_, d)| d.until_ms <= now) {
                dirty = true;
            }
            dirty |= self.health_events();
            dirty |= self.passive_tick();
            if dirty {
                self.publish(now);
            }
            if last_stats.elapsed() >= PORT_STATS_EVERY {
                last_stats = Instant::now();
                self.refresh_port_stats(ports);
            }
            busy |= dirty || neighbors_busy || !self.neigh.all_resolved();
            woken = self.wait_for_command(backoff.after(busy));
        }
        println!("fulcrum: stopping");
        if let Some(h) = self.health.take() {
            h.stop();
        }
        Ok(())
    }

    /// Reads neighbour answers and sends the requests that are due; returns whether a
    /// MAC changed (a new snapshot is due) and whether there was anything to do (a frame
    /// from the workers read, a request sent).
    fn neighbor_tick(&mut self, now: u32) -> (bool, bool) {
        let mut dirty = false;
        let mut busy = false;
        while let Some(f) = self.shared.to_control.pop() {
            busy = true;
            if let Some((ip, mac)) = frames::parse_neighbor_answer(&f.bytes) {
                dirty |= self.neigh.learn(ip, mac, now);
            }
        }
        let (due, forgot) = self.neigh.due(now);
        busy |= !due.is_empty();
        for ip in due {
            self.solicit(ip);
        }
        (dirty | forgot, busy)
    }

    /// At start-up: resolves the next hops before fulcrum says it is running, for at most
    /// `max`, so the first connections are not dropped for want of a MAC.
    pub fn resolve_neighbors(&mut self, max: Duration) {
        let start = Instant::now();
        while start.elapsed() < max {
            let now = self.shared.now_ms();
            if self.neighbor_tick(now).0 {
                self.publish(now);
            }
            if self.neigh.all_resolved() {
                return;
            }
            std::thread::sleep(TICK);
        }
        println!("fulcrum: some next hops are still unresolved; their traffic waits for ARP / ND");
    }

    /// Applies health transitions; returns whether any happened.
    fn health_events(&mut self) -> bool {
        let Some(h) = &self.health else { return false };
        let mut changed = false;
        let events: Vec<_> = h.events().collect();
        for ev in events {
            let name = self.backend_name(ev.id);
            if ev.healthy {
                changed |= self.overrides.unhealthy.remove(&ev.id);
                println!("fulcrum: backend {name} is healthy ({})", ev.reason);
            } else {
                changed |= self.overrides.unhealthy.insert(ev.id);
                println!("fulcrum: backend {name} is unhealthy ({})", ev.reason);
            }
        }
        changed
    }

    fn backend_name(&self, id: u32) -> String {
        let snap = self.shared.snapshot.load();
        match snap.backend(id) {
            Some(b) => {
                let svc = snap
                    .services
                    .get(b.service as usize)
                    .and_then(|s| s.as_ref());
                format!(
                    "{} of {}",
                    b.addr,
                    svc.map(|s| s.name.as_str()).unwrap_or("?")
                )
            }
            None => format!("#{id}"),
        }
    }

    /// Serves the admin commands waiting; returns whether there were any.
    fn serve_commands(&mut self) -> bool {
        let Some(rx) = self.commands.take() else {
            return false;
        };
        let mut served = false;
        while let Ok(cmd) = rx.try_recv() {
            self.serve(cmd);
            served = true;
        }
        self.commands = Some(rx);
        served
    }

    /// Sleeps for `wait`, or until an admin command arrives (served at once); returns
    /// whether one did.
    fn wait_for_command(&mut self, wait: Duration) -> bool {
        let Some(rx) = self.commands.take() else {
            std::thread::sleep(wait);
            return false;
        };
        let got = match rx.recv_timeout(wait) {
            Ok(cmd) => {
                self.serve(cmd);
                true
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // the admin server is gone: sleep instead of spinning on the channel
                std::thread::sleep(wait);
                false
            }
        };
        self.commands = Some(rx);
        got
    }

    fn serve(&mut self, cmd: Command) {
        match cmd {
            Command::Reload(reply) => {
                let _ = reply.send(self.reload());
            }
            Command::SetWeight {
                service,
                backend,
                weight,
                drain,
                reply,
            } => {
                let _ = reply.send(self.set_weight(&service, &backend, weight, drain));
            }
        }
    }

    fn set_weight(
        &mut self,
        service: &str,
        backend: &str,
        weight: u16,
        drain: bool,
    ) -> Result<(), AdminError> {
        let svc = self
            .cfg
            .service(service)
            .ok_or_else(|| AdminError::NotFound(format!("no service {service:?}")))?;
        // the admin server has percent-decoded the path segment
        let addr: IpAddr = backend
            .parse()
            .map_err(|_| AdminError::BadRequest(format!("{backend:?} is not an address")))?;
        let b = svc
            .backends
            .iter()
            .find(|b| b.address == addr)
            .ok_or_else(|| {
                AdminError::NotFound(format!("service {service:?} has no backend {addr}"))
            })?;
        if svc.mode == Mode::L7 {
            return Err(AdminError::BadRequest(
                "an l7 service balances per request; set weights in its clusters".into(),
            ));
        }
        let key = backend_key(svc, b);
        let now = self.shared.now_ms();
        if weight == 0 {
            self.overrides.drains.insert(key.clone(), now);
        } else {
            self.overrides.drains.remove(&key);
        }
        self.overrides.weights.insert(key, weight);
        println!(
            "fulcrum: backend {addr} of {service}: weight {weight}{}",
            if drain || weight == 0 {
                " (draining)"
            } else {
                ""
            }
        );
        if self.publish(now) {
            Ok(())
        } else {
            Err(AdminError::BadRequest(
                "the new weights could not be applied".into(),
            ))
        }
    }

    /// Sends an ARP request / neighbour solicitation for `ip` out of the port that reaches it.
    fn solicit(&self, ip: IpAddr) {
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
                self.refresh_view();
                true
            }
            Err(e) => {
                eprintln!("fulcrum: cannot build a snapshot: {e}");
                false
            }
        }
    }

    /// SIGHUP, `POST /api/reload` and `--watch`: re-read the file; apply it if valid,
    /// keep the running one if not. The watched files, as they were before the reload
    /// read them, become the watch's base either way.
    pub fn reload(&mut self) -> Result<String, Vec<String>> {
        let before = self.watch.as_ref().map(FileWatch::stamps);
        let mut named = Vec::new();
        let result = self.apply_file(&mut named);
        if let (Some(w), Some(before)) = (&mut self.watch, before) {
            w.rebase(
                after_reload(watched_files(&self.path, &self.cfg), named),
                before,
            );
        }
        result
    }

    /// [`reload`](Self::reload)'s work. A configuration that parses leaves the files it
    /// names in `named`, applied or refused.
    fn apply_file(&mut self, named: &mut Vec<PathBuf>) -> Result<String, Vec<String>> {
        match config::load(&self.path) {
            Err(diags) => {
                for d in &diags {
                    eprintln!("{d}");
                }
                self.reloads.1 += 1;
                println!(
                    "fulcrum: reload failed ({} problem(s)); the running configuration stays (generation {})",
                    diags.len(),
                    self.generation
                );
                self.refresh_view();
                Err(diags.iter().map(|d| d.to_string()).collect())
            }
            Ok(new) => {
                *named = watched_files(&self.path, &new);
                if let Some(why) = restart_needed(&self.cfg, &new) {
                    self.reloads.1 += 1;
                    println!("fulcrum: reload refused: {why} needs a restart; the running configuration stays");
                    self.refresh_view();
                    return Err(vec![format!("{why} needs a restart")]);
                }
                if let Some(pool) = &self.l7 {
                    if let Err(why) = super::l7::reload(pool, &new) {
                        self.reloads.1 += 1;
                        println!("fulcrum: reload refused: {why}; the running configuration stays");
                        self.refresh_view();
                        return Err(vec![why]);
                    }
                }
                let old = std::mem::replace(&mut self.cfg, new);
                // operator weights survive a reload only for backends still configured
                let keys: Vec<_> = self
                    .cfg
                    .services
                    .iter()
                    .flat_map(|s| s.backends.iter().map(|b| backend_key(s, b)))
                    .collect();
                self.overrides.weights.retain(|k, _| keys.contains(k));
                self.overrides.drains.retain(|k, _| keys.contains(k));
                self.configure_passive();
                let now = self.shared.now_ms();
                if self.publish(now) {
                    self.reloads.0 += 1;
                    let targets = self.health_targets();
                    if let Some(h) = &self.health {
                        h.update(targets);
                    }
                    let msg = format!(
                        "generation {}, {} service(s), {} backend(s)",
                        self.generation,
                        self.cfg.services.len(),
                        self.cfg.backend_count()
                    );
                    println!("fulcrum: reload ok: {msg}");
                    self.refresh_view();
                    Ok(msg)
                } else {
                    self.cfg = old;
                    if let Some(pool) = &self.l7 {
                        // back to the routes and clusters that match the running L4 side
                        let _ = super::l7::reload(pool, &self.cfg);
                    }
                    self.reloads.1 += 1;
                    println!("fulcrum: reload failed; the running configuration stays");
                    Err(vec!["the new configuration could not be applied".into()])
                }
            }
        }
    }

    /// Refreshes services and backends in the admin view.
    fn refresh_view(&mut self) {
        let snap = self.shared.snapshot.load();
        let states: HashMap<u32, HealthStatus> = self
            .health
            .as_ref()
            .map(|h| h.states().into_iter().collect())
            .unwrap_or_default();
        let services = self
            .cfg
            .services
            .iter()
            .map(|s| {
                let sid = self.reg.service(&s.name);
                let panic = snap
                    .services
                    .get(sid as usize)
                    .and_then(|x| x.as_ref())
                    .is_some_and(|x| x.panic);
                let backends = s
                    .backends
                    .iter()
                    .map(|b| {
                        let key = backend_key(s, b);
                        let id = self.reg.backend(&key);
                        let st = states.get(&id);
                        let draining = snap
                            .backend(id)
                            .is_some_and(|x| matches!(x.state, BackendState::Draining { .. }));
                        BackendView {
                            id,
                            address: b.address.to_string(),
                            weight: self
                                .overrides
                                .weights
                                .get(&key)
                                .copied()
                                .unwrap_or(b.weight),
                            healthy: !self.overrides.unhealthy.contains(&id)
                                && !self.overrides.ejected.contains(&id),
                            ejected: self.passive.is_ejected(id),
                            ejections: self.passive.ejections(id),
                            draining,
                            transitions: st.map(|s| s.transitions).unwrap_or(0),
                            reason: st.map(|s| s.last_reason.clone()).unwrap_or_default(),
                        }
                    })
                    .collect();
                ServiceView {
                    name: s.name.clone(),
                    vip: s.vip.to_string(),
                    port: s.port,
                    protocol: match s.protocol {
                        Protocol::Tcp => "tcp".into(),
                        Protocol::Udp => "udp".into(),
                    },
                    forwarding: match (s.mode, s.forwarding) {
                        (Mode::L7, _) => "l7".into(),
                        (_, Some(f)) => f.name().into(),
                        (_, None) => "-".into(),
                    },
                    panic,
                    backends,
                }
            })
            .collect();
        if let Ok(mut v) = self.view.lock() {
            v.generation = self.generation;
            v.reloads = self.reloads.0;
            v.reload_failures = self.reloads.1;
            v.services = services;
            v.health_checks = self.health.is_some();
        }
    }

    fn refresh_port_stats(&mut self, ports: &[Port]) {
        // health states change without events too (probe counts, reasons)
        self.refresh_view();
        let stats: Vec<_> = ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let name = self.cfg.ports.get(i).map(|c| c.name.clone())?;
                Some((name, p.stats().ok()?, p.xstats().unwrap_or_default()))
            })
            .collect();
        if let Ok(mut v) = self.view.lock() {
            v.ports = stats;
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
            for (id, c) in p.backends {
                let (pk, by, nf) = (c.packets, c.bytes, c.new_flows);
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
        println!("counter reloads {}", self.reloads.0);
        println!("counter reload_failures {}", self.reloads.1);
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
        return Some("a change of the dpdk section");
    }
    if old.ports.len() != new.ports.len()
        || old
            .ports
            .iter()
            .zip(&new.ports)
            .any(|(a, b)| a.device != b.device || a.kernel_interface != b.kernel_interface)
    {
        return Some("a change of port devices or kernel interfaces");
    }
    // A flow holds its full-NAT source by its position in the port's list: the list may
    // grow at the end while running, not lose or move an address.
    if old
        .ports
        .iter()
        .zip(&new.ports)
        .any(|(a, b)| !b.snat_addresses.starts_with(&a.snat_addresses))
    {
        return Some("removing or reordering ports[].snat_addresses (adding at the end is fine)");
    }
    if old.workers.cores != new.workers.cores {
        return Some("a change of workers.cores");
    }
    if old.flow_table != new.flow_table {
        return Some("a change of flow_table");
    }
    if old.admin != new.admin {
        return Some("a change of admin");
    }
    super::l7::restart_needed(old, new)
}

#[cfg(test)]
mod tests {
    use super::{restart_needed, Backoff, QUIET_TICK, TICK};
    use crate::config::{from_str, Config, Host};

    #[test]
    fn the_loop_backs_off_when_quiet_and_wakes_fast_when_busy() {
        let mut b = Backoff::new();
        assert_eq!(b.after(true), TICK);
        let quiet: Vec<_> = (0..6).map(|_| b.after(false).as_millis()).collect();
        assert_eq!(quiet, vec![20, 40, 80, 100, 100, 100]);
        assert_eq!(QUIET_TICK.as_millis(), 100);
        // one busy round is enough to come back to the short tick
        assert_eq!(b.after(true), TICK);
        assert_eq!(b.after(false).as_millis(), 20);
    }

    fn config(snat: &str) -> Config {
        let yaml = format!(
            "dpdk:\n  eal_args: [\"--no-pci\", \"--vdev=net_null0\"]\nports:\n  - name: lan\n    \
             device: net_null0\n    address: 10.0.0.2/24\n    snat_addresses: [{snat}]\n\
             workers:\n  cores: [0]\nservices:\n  - name: web\n    vip: 10.1.0.1\n    port: 80\n    \
             forwarding: nat\n    backends: [{{ address: 10.0.0.11 }}]\n"
        );
        match from_str("t.yaml", &yaml, &Host::with_cpus(4)) {
            Ok(l) => l.config,
            Err(d) => panic!("{d:?}"),
        }
    }

    #[test]
    fn snat_addresses_may_only_grow_at_the_end_on_reload() {
        let old = config("10.0.0.3, 10.0.0.4");
        assert_eq!(restart_needed(&old, &config("10.0.0.3, 10.0.0.4")), None);
        assert_eq!(
            restart_needed(&old, &config("10.0.0.3, 10.0.0.4, 10.0.0.5")),
            None
        );
        for changed in ["10.0.0.3", "10.0.0.4, 10.0.0.3", "10.0.0.3, 10.0.0.5", ""] {
            let why = restart_needed(&old, &config(changed));
            assert!(
                why.is_some_and(|w| w.contains("snat_addresses")),
                "[{changed}]: {why:?}"
            );
        }
    }
}
