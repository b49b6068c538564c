//! `fulcrum run`: EAL, ports, poll-mode workers and the control loop.
//!
//! Start-up: load and validate the file; initialise the EAL from `dpdk.eal_args`
//! (plus `FULCRUM_EAL_EXTRA`, split on spaces, when set: the test and demo scripts use
//! it to add `--no-huge` on machines without hugepages); configure every port with one
//! RX and one TX queue per worker (RSS over IP/TCP/UDP where the device supports it,
//! promiscuous); build the first snapshot; start one worker per core; then run the
//! control loop on the main thread until SIGINT or SIGTERM.

mod admin;
mod control;
mod kernel;
mod l7;
mod loop_stats;
mod mbuf;
mod passive;
mod shared;
mod worker;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use fulcrum_dpdk::{Eal, Mempool, Port, PortConfig as DpdkPortConfig};

use crate::config::{self, Config, Diagnostic};
use crate::control::{build_snapshot, IdRegistry, NeighborTable, Overrides};
use crate::engine::{Engine, EngineConfig};
use crate::flow::FlowTimeouts;

pub use shared::{Frame, Published, Shared};

/// Why `fulcrum run` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration file is invalid.
    #[error("invalid configuration")]
    Config(Vec<Diagnostic>),
    /// DPDK refused something.
    #[error("{context}: {source}")]
    Dpdk {
        /// What fulcrum was doing.
        context: String,
        /// DPDK's error.
        source: fulcrum_dpdk::DpdkError,
    },
    /// The first snapshot could not be built.
    #[error("{0}")]
    Build(#[from] crate::control::BuildError),
    /// Something else.
    #[error("{0}")]
    Other(String),
}

fn dpdk(context: impl Into<String>) -> impl FnOnce(fulcrum_dpdk::DpdkError) -> RunError {
    let context = context.into();
    move |source| RunError::Dpdk { context, source }
}

/// The flow timeouts of the config, in engine milliseconds.
pub fn flow_timeouts(cfg: &Config) -> FlowTimeouts {
    let ms = |d: std::time::Duration| d.as_millis().min(u32::MAX as u128) as u32;
    FlowTimeouts {
        tcp_established: ms(cfg.flow_table.tcp_established_timeout),
        tcp_transitory: ms(cfg.flow_table.tcp_transitory_timeout),
        udp: ms(cfg.flow_table.udp_timeout),
    }
}

/// Mbufs for `workers` workers on `ports` ports with the given ring sizes: every RX and
/// TX ring full, plus per-worker bursts, caches and hand-off queues in flight.
fn pool_size(cfg: &Config) -> u32 {
    if let Some(n) = cfg.dpdk.mbufs {
        return n;
    }
    let w = cfg.workers.cores.len() as u32;
    let rings: u32 = cfg
        .ports
        .iter()
        .map(|p| (p.rx_desc as u32 + p.tx_desc as u32) * w)
        .sum();
    let n =
        rings + w * (256 + 4 * 32 * cfg.ports.len() as u32 + shared::HANDOFF_QUEUE as u32) + 4096;
    // a power of two minus one is the mempool's best size
    n.next_power_of_two() - 1
}

/// A running worker.
enum WorkerHandle {
    /// On an EAL lcore.
    Lcore(u32),
    /// On a std thread (when `eal_args` choose the lcores).
    Thread(std::thread::JoinHandle<()>),
}

/// Runs fulcrum from the file at `path` until SIGINT/SIGTERM; with `watch`, polls the
/// file and the files it names that often and reloads when they change.
pub fn run(path: &Path, watch: Option<std::time::Duration>) -> Result<(), RunError> {
    // stamped before the file is read, so an edit made while fulcrum starts is seen
    let mut watch = watch
        .map(|every| config::watch::FileWatch::new(vec![path.to_owned()], every, Instant::now()));
    let before = watch.as_ref().map(config::watch::FileWatch::stamps);
    let cfg = config::load(path).map_err(RunError::Config)?;
    if let (Some(w), Some(before)) = (&mut watch, before) {
        w.rebase(config::watch::watched_files(path, &cfg), before);
        let n = w.paths().count();
        println!("fulcrum: watching {n} file(s) for changes");
    }
    let origin = Instant::now();

    let mut args = cfg.dpdk.eal_args.clone();
    if let Ok(extra) = std::env::var("FULCRUM_EAL_EXTRA") {
        args.extend(extra.split_whitespace().map(str::to_owned));
    }
    // fulcrum adds one thing to eal_args: a net_tap device per port with a
    // kernel_interface (the exception path to the kernel)
    for (i, p) in cfg.ports.iter().enumerate() {
        if let Some(name) = &p.kernel_interface {
            args.push(format!("--vdev={},iface={name}", kernel::tap_device(i)));
        }
    }
    // Workers run on EAL lcores (pinned, with mempool caches, and compatible with
    // secondary processes such as dpdk-dumpcap). Unless eal_args choose lcores
    // themselves, fulcrum adds `--lcores=0@(other CPUs),1@core0,2@core1,...`: worker
    // lcore i+1 is pinned to cores[i]; the main lcore (the control thread, and DPDK's
    // own control threads with it) floats over the CPUs fulcrum may use that no worker
    // owns, so its periodic work does not preempt a worker (all of them if none is left).
    let user_lcores = args.iter().any(|a| {
        a == "-l" || a == "-c" || a.starts_with("--lcores") || (a.starts_with("-l") && a.len() > 2)
    });
    if !user_lcores {
        let allowed: Vec<u32> = match core_affinity::get_core_ids() {
            Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id as u32).collect(),
            _ => crate::config::Host::detect().online_cpus,
        };
        let workers_spec: Vec<String> = cfg
            .workers
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}@{c}", i + 1))
            .collect();
        args.push(format!(
            "--lcores=0@({}),{}",
            control_cpus(&allowed, &cfg.workers.cores).cpu_list(),
            workers_spec.join(",")
        ));
    }
    let eal = Eal::init(&args).map_err(dpdk("rte_eal_init"))?;
    let lcores = if user_lcores {
        Vec::new()
    } else {
        eal.worker_lcores()
    };
    // dpdk-dumpcap / dpdk-pdump attach through the multi-process channel (not with --in-memory)
    if let Err(e) = fulcrum_dpdk::pdump_init() {
        eprintln!("fulcrum: packet capture unavailable: {e}");
    }
    let workers = cfg.workers.cores.len();

    let pool = Mempool::new(
        "fulcrum_pkts",
        pool_size(&cfg),
        256,
        cfg.dpdk
            .mbuf_data_room
            .unwrap_or(Mempool::DEFAULT_DATA_ROOM),
    )
    .map_err(dpdk("creating the mbuf pool"))?;

    let mut ports = Vec::new();
    let mut port_macs = Vec::new();
    let mut rxqs: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    let mut txqs: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for p in &cfg.ports {
        let mut port =
            Port::by_name(&p.device).map_err(dpdk(format!("port {} ({})", p.name, p.device)))?;
        let pc = DpdkPortConfig {
            rx_queues: workers as u16,
            tx_queues: workers as u16,
            rx_desc: p.rx_desc,
            tx_desc: p.tx_desc,
            mtu: None,
            rss: true,
            promiscuous: true,
        };
        port.configure(&pc, &pool)
            .map_err(dpdk(format!("configuring port {}", p.name)))?;
        port.start()
            .map_err(dpdk(format!("starting port {}", p.name)))?;
        let mac = port
            .mac_addr()
            .map_err(dpdk(format!("MAC of port {}", p.name)))?;
        let (rx, tx) = port
            .queues()
            .map_err(dpdk(format!("queues of port {}", p.name)))?;
        for (w, q) in rx.into_iter().enumerate() {
            rxqs[w].push(q);
        }
        for (w, q) in tx.into_iter().enumerate() {
            txqs[w].push(q);
        }
        println!(
            "fulcrum: port {} ({}) up, mac {}, {} queue pair(s), rss functions {:#x}",
            p.name,
            p.device,
            control::fmt_mac(&mac),
            workers,
            port.rss_hash_functions()
        );
        port_macs.push(mac);
        ports.push(port);
    }
    // the kernel interfaces: one more RX/TX queue pair per worker each, polled by the workers
    let mut kernel_of: Vec<Option<usize>> = vec![None; cfg.ports.len()];
    let mut taps = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let Some(name) = &p.kernel_interface else {
            continue;
        };
        let dev = kernel::tap_device(i);
        let mut tap = Port::by_name(&dev).map_err(dpdk(format!("kernel interface {name}")))?;
        let pc = DpdkPortConfig {
            rx_queues: workers as u16,
            tx_queues: workers as u16,
            rx_desc: 512,
            tx_desc: 512,
            mtu: None,
            rss: false,
            promiscuous: false,
        };
        tap.configure(&pc, &pool)
            .map_err(dpdk(format!("configuring kernel interface {name}")))?;
        tap.start()
            .map_err(dpdk(format!("starting kernel interface {name}")))?;
        let (rx, tx) = tap
            .queues()
            .map_err(dpdk(format!("queues of kernel interface {name}")))?;
        for (w, q) in rx.into_iter().enumerate() {
            rxqs[w].push(q);
        }
        for (w, q) in tx.into_iter().enumerate() {
            txqs[w].push(q);
        }
        kernel_of[i] = Some(cfg.ports.len() + taps.len());
        kernel::configure(name, p, &port_macs[i], &cfg).map_err(RunError::Other)?;
        println!(
            "fulcrum: kernel interface {name} carries {}/{} for port {}",
            p.address, p.prefix_len, p.name
        );
        taps.push(tap);
    }

    let mut reg = IdRegistry::default();
    let mut neigh = NeighborTable::default();
    let overrides = Overrides::default();
    let snap = build_snapshot(
        &cfg,
        &port_macs,
        &mut reg,
        &mut neigh,
        &overrides,
        workers as u16,
        0,
        1,
    )?;
    let shared = Shared::new(workers, snap, origin);

    let timeouts = flow_timeouts(&cfg);
    let mut handles = Vec::new();
    for (w, (rx, tx)) in rxqs.into_iter().zip(txqs).enumerate() {
        let worker = worker::Worker {
            id: w as u16,
            core: cfg.workers.cores[w],
            rx,
            tx,
            pool: pool.clone(),
            engine: Engine::new(EngineConfig {
                worker: w as u16,
                flow_capacity: cfg.flow_table.capacity as usize,
                timeouts,
            })
            .map_err(|e| RunError::Other(format!("flow table of worker {w}: {e:?}")))?,
            idle: cfg.workers.idle,
            burst: cfg.workers.burst,
            shared: Arc::clone(&shared),
            kernel_of: kernel_of.clone(),
        };
        match lcores.get(w) {
            Some(&lcore) => {
                eal.launch(lcore, move || {
                    drop(worker.run(false));
                    0
                })
                .map_err(dpdk(format!("launching worker {w} on lcore {lcore}")))?;
                handles.push(WorkerHandle::Lcore(lcore));
            }
            None => {
                // eal_args chose the lcores: workers are std threads pinned to their cores
                let h = std::thread::Builder::new()
                    .name(format!("fulcrum-w{w}"))
                    .spawn(move || drop(worker.run(true)))
                    .map_err(|e| RunError::Other(format!("spawning worker {w}: {e}")))?;
                handles.push(WorkerHandle::Thread(h));
            }
        }
    }

    // the L7 pool after the kernel interfaces carry its VIPs, on its own threads
    let l7_pool = l7::start(&cfg).map_err(RunError::Other)?;
    let l7_metrics = l7_pool.as_ref().map(|p| p.metrics());
    let l7_status = l7_pool.as_ref().map(|p| p.status());

    let view = Arc::new(std::sync::Mutex::new(admin::View::default()));
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let mut ctl = control::Control {
        path: path.to_owned(),
        cfg,
        port_macs,
        reg,
        neigh,
        overrides,
        shared: Arc::clone(&shared),
        generation: 1,
        view: Arc::clone(&view),
        commands: Some(cmd_rx),
        health: None,
        reloads: (0, 0),
        passive: Default::default(),
        passive_last: std::time::Instant::now(),
        l7: l7_pool,
        watch,
    };
    ctl.start_health();
    ctl.configure_passive();
    ctl.resolve_neighbors(std::time::Duration::from_secs(3));
    let handler = Arc::new(admin::RuntimeAdmin {
        view,
        shared: Arc::clone(&shared),
        commands: std::sync::Mutex::new(cmd_tx),
        l7: l7_metrics,
        l7_status,
    });
    let admin_server = match crate::admin::AdminServer::start(
        ctl.cfg.admin.listen,
        ctl.cfg.admin.token.clone(),
        handler,
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("fulcrum: admin listener {}: {e}", ctl.cfg.admin.listen);
            None
        }
    };
    println!(
        "fulcrum: {} workers running on cores {:?}, {} service(s)",
        workers,
        ctl.cfg.workers.cores,
        ctl.cfg.services.len()
    );
    let result = ctl.run_until_stopped(&ports);
    if let Some(s) = admin_server {
        s.stop();
    }
    // the pool stops accepting and finishes its requests while the workers still carry them
    if let Some(pool) = ctl.l7.take() {
        pool.shutdown();
        println!("fulcrum: L7 pool stopped");
    }

    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let ok = match h {
            WorkerHandle::Lcore(l) => eal.wait(l) == 0,
            WorkerHandle::Thread(t) => t.join().is_ok(),
        };
        if !ok {
            eprintln!("fulcrum: a worker panicked");
        }
    }
    ctl.final_report(&ports);
    for p in ports.into_iter().chain(taps) {
        let _ = p.close();
    }
    // the mbuf pool has no destructor of its own: its memory goes with the EAL
    drop(eal);
    result
}

/// The CPUs of the main lcore: those of `allowed` (the process's affinity) that no worker
/// owns, or all of `allowed` when the workers own every one.
fn control_cpus(allowed: &[u32], workers: &[u32]) -> crate::config::Host {
    let mut cpus: Vec<u32> = allowed
        .iter()
        .copied()
        .filter(|c| !workers.contains(c))
        .collect();
    if cpus.is_empty() {
        cpus = allowed.to_vec();
    }
    cpus.sort_unstable();
    cpus.dedup();
    crate::config::Host { online_cpus: cpus }
}

#[cfg(test)]
mod tests {
    use super::control_cpus;

    #[test]
    fn the_control_thread_keeps_off_the_workers_cores() {
        assert_eq!(control_cpus(&[0, 1, 2, 3], &[2, 3]).cpu_list(), "0-1");
        assert_eq!(control_cpus(&[0, 1, 2, 3, 4], &[1, 3]).cpu_list(), "0,2,4");
        // a process confined (taskset) to its workers' cores keeps its control thread there
        assert_eq!(control_cpus(&[1], &[1]).cpu_list(), "1");
        assert_eq!(control_cpus(&[2, 3], &[2, 3]).cpu_list(), "2-3");
        // CPUs outside the process's affinity are never used
        assert_eq!(control_cpus(&[4, 5], &[1]).cpu_list(), "4-5");
    }
}
