//! The pool: a current-thread tokio runtime per (pinned) thread, listeners, per-connection
//! TLS + HTTP/1.1 / HTTP/2 serving, reload and shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::config::{AccessLog, L7Config, Limits};
use super::error::L7Error;
use super::framing::{Verdicts, Watched};
use super::health::PoolHealth;
use super::metrics::L7Metrics;
use super::proxy::{handle, ConnInfo, Shared};
use super::state::{pool_threads, Clock, Snapshot};
use crate::config::watch::{after_reload, list, watched_l7_files, FileWatch};

/// How long shutdown waits for client connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One socket the pool accepts on, and the service it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Address to bind (port 0: any; see [`L7Pool::local_addrs`]).
    pub addr: SocketAddr,
    /// Terminate TLS (the service must have `tls`).
    pub tls: bool,
    /// Name of the `l7` service.
    pub service: String,
}

/// The live state of a pool's clusters (a cheap handle; it reads the current snapshot).
#[derive(Clone)]
pub struct L7Status(Arc<Shared>);

impl std::fmt::Debug for L7Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("L7Status")
    }
}

impl L7Status {
    /// Every service's clusters and endpoints as JSON: per endpoint its address, zone,
    /// weight, whether it passes the active health checks, whether outlier detection has
    /// it ejected, and its requests in flight; per cluster how many endpoints are
    /// healthy, whether it is in panic and, when zone-aware, the local zone's share.
    pub fn json(&self) -> serde_json::Value {
        use serde_json::json;
        let snapshot = self.0.snapshot.load();
        let now = self.0.clock.now_ms();
        let mut services: Vec<_> = snapshot.services.values().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let services: Vec<_> = services
            .into_iter()
            .map(|svc| {
                let mut clusters: Vec<_> = svc.clusters.values().collect();
                clusters.sort_by(|a, b| a.name.cmp(&b.name));
                let clusters: Vec<_> = clusters
                    .into_iter()
                    .map(|c| {
                        let health = c.health(now);
                        let endpoints: Vec<_> = c
                            .endpoints
                            .iter()
                            .zip(&c.spec.endpoints)
                            .map(|(e, spec)| {
                                json!({
                                    "address": e.addr.to_string(),
                                    "zone": spec.zone,
                                    "weight": e.weight,
                                    "passing_checks": e.checks_pass.load(Ordering::Relaxed),
                                    "ejected": e.is_ejected(now),
                                    "active_requests": e.active.load(Ordering::Relaxed),
                                })
                            })
                            .collect();
                        json!({
                            "name": c.name,
                            "health_checked": c.spec.health_check.is_some(),
                            "healthy_endpoints": health.healthy,
                            "panic": health.panic,
                            "local_zone_share": health.local_share,
                            "endpoints": endpoints,
                        })
                    })
                    .collect();
                json!({"name": svc.name, "clusters": clusters})
            })
            .collect();
        json!({"zone": snapshot.settings.zone, "services": services})
    }
}

/// The running L7 pool.
#[derive(Debug)]
pub struct L7Pool {
    /// One thread per pool core, each running its own current-thread runtime.
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// `true`: stop accepting and finish the requests in progress.
    shutdown: watch::Sender<bool>,
    /// `true`: end the runtimes (after the drain).
    halt: watch::Sender<bool>,
    local_addrs: Vec<SocketAddr>,
    /// Active health checks of cluster endpoints.
    health: PoolHealth,
}

/// Binds a listener with `SO_REUSEPORT`, so every pool thread has its own socket on the
/// address and the kernel spreads new connections over them (nginx's model: no accept
/// lock, no hand-off between threads). Needs the entered runtime of its thread.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pending connections per listener socket.
const LISTEN_BACKLOG: u32 = 1024;

pub(super) fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        // One `send` of head and body copied together, not a `writev` of the two: the
        // kernel's vectored path (VFS, iovec import, a fragment per piece) cost ~0.7 us a
        // small response, ~5% of a proxied request at saturation; a 1 MiB body costs the
        // same either way (the kernel's own copy dominates). HAProxy copies too.
        .writev(false)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Counts an open client connection until dropped.
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.listener.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a hyper connection until it ends; when `stop` fires, asks it to finish
/// gracefully (HTTP/1.1: close after the response in progress; HTTP/2: GOAWAY, streams in
/// flight complete). A macro: the connection types differ (TLS or not) and hyper's bounds
/// on `graceful_shutdown` are long.
macro_rules! drive {
    ($conn:expr, $stop:expr) => {{
        let mut stop = $stop;
        let mut conn = std::pin::pin!($conn);
        let stopping = *stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        } else {
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    }};
}

/// What a client connection's requests know of it: `peer`, the listener's service and
/// TLS, the framing watch's `verdicts`.
pub(super) fn conn_info(
    peer: SocketAddr,
    spec: &ListenerSpec,
    verdicts: Arc<Verdicts>,
) -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        peer,
        client_ip: HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        tls: spec.tls,
        service: spec.service.clone(),
        verdicts,
        requests: AtomicU64::new(0),
    })
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    spec: Arc<ListenerSpec>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    shared
        .metrics
        .listener
        .connections
        .fetch_add(1, Ordering::Relaxed);
    shared.metrics.listener.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenConnection(shared.clone());
    let snapshot = shared.snapshot.load_full();
    let limits = snapshot.settings.limits.clone();
    let verdicts = Arc::new(Verdicts::default());
    let conn = conn_info(peer, &spec, verdicts.clone());
    let service = {
        let shared = shared.clone();
        // Boxed: the request's future is kilobytes (`handle` keeps it as small as it can:
        // see there), and HTTP/2 spawns each stream's task, which moved it by value three
        // times (spawn, bind, set_stage); one allocation costs less than those copies.
        service_fn(move |req| Box::pin(handle(req, conn.clone(), shared.clone())))
    };
    let http = builder(&limits);
    if spec.tls {
        let Some(cfg) = snapshot
            .services
            .get(&spec.service)
            .and_then(|s| s.tls.clone())
        else {
            shared
                .metrics
                .listener
                .tls_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let tls =
            match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                _ => {
                    shared
                        .metrics
                        .listener
                        .tls_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
        let io = TokioIo::new(Watched::new(tls, limits.max_header_bytes, verdicts));
        drive!(http.serve_connection(io, service), stop);
    } else {
        let io = TokioIo::new(Watched::new(stream, limits.max_header_bytes, verdicts));
        drive!(http.serve_connection(io, service), stop);
    }
}

async fn accept_loop(
    listener: TcpListener,
    spec: Arc<ListenerSpec>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, spec.clone(), shared.clone(), stop.clone()));
                }
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

impl L7Pool {
    /// Starts one thread per `l7.cores` entry (pinned; two unpinned when empty), each with
    /// a current-thread tokio runtime and its own `SO_REUSEPORT` socket on every listener
    /// address: a connection lives on the thread that accepted it, with that thread's
    /// upstream connection pools, so the request path shares no scheduler state between
    /// cores.
    pub fn start(cfg: Arc<L7Config>, listeners: Vec<ListenerSpec>) -> Result<L7Pool, L7Error> {
        let metrics = Arc::new(L7Metrics::default());
        let snapshot = Snapshot::build(&cfg, None, &metrics)?;
        for l in &listeners {
            match snapshot.services.get(&l.service) {
                None => {
                    return Err(L7Error::Config(format!(
                        "listener {}: unknown service {}",
                        l.addr, l.service
                    )))
                }
                Some(s) if l.tls && s.tls.is_none() => {
                    return Err(L7Error::Config(format!(
                        "listener {}: service {} has no tls",
                        l.addr, l.service
                    )))
                }
                _ => {}
            }
        }
        let cores = cfg.l7.cores.clone();
        let threads = pool_threads(&cfg.l7);
        let access_log = match cfg.l7.access_log {
            AccessLog::None => None,
            AccessLog::Stderr => {
                let (tx, rx) = std::sync::mpsc::channel::<String>();
                std::thread::Builder::new()
                    .name("fulcrum-l7-log".into())
                    .spawn(move || {
                        use std::io::Write;
                        // Buffered: one write per batch of lines the channel holds.
                        let mut out = std::io::BufWriter::new(std::io::stderr());
                        while let Ok(line) = rx.recv() {
                            let _ = writeln!(out, "{line}");
                            while let Ok(more) = rx.try_recv() {
                                let _ = writeln!(out, "{more}");
                            }
                            let _ = out.flush();
                        }
                    })?;
                Some(tx)
            }
        };
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            clock: Clock(Instant::now()),
            access_log,
        });
        // before the pool's threads: a checker that cannot start leaves none behind
        let health = PoolHealth::new();
        health.update(&shared.snapshot.load())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (halt_tx, halt_rx) = watch::channel(false);
        // Every runtime and its listeners are made here, so a bind error is returned; the
        // first thread's sockets fix the ports (port 0) the others bind too.
        let mut local_addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
        let specs: Vec<Arc<ListenerSpec>> = listeners.into_iter().map(Arc::new).collect();
        let mut prepared = Vec::with_capacity(threads);
        for i in 0..threads {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let entered = runtime.enter();
            let mut sockets = Vec::with_capacity(specs.len());
            for (k, addr) in local_addrs.iter_mut().enumerate() {
                let listener = bind_reuseport(*addr)?;
                if i == 0 {
                    *addr = listener.local_addr()?;
                }
                sockets.push((listener, specs[k].clone()));
            }
            drop(entered);
            prepared.push((runtime, sockets));
        }
        // The CPUs the machine has online, not the calling thread's affinity: under
        // fulcrum run that thread is the EAL main lcore, pinned to one CPU.
        let online = crate::config::Host::detect();
        let mut handles = Vec::with_capacity(threads);
        for (i, (runtime, sockets)) in prepared.into_iter().enumerate() {
            let core = cores.get(i).copied().filter(|&c| online.has_cpu(c as u32));
            let shared = shared.clone();
            let stop = stop_rx.clone();
            let mut halt = halt_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("fulcrum-l7-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            eprintln!("fulcrum l7: worker {i} could not be pinned to core {core}");
                        }
                    }
                    super::cpu::install(shared.metrics.worker_cpu_ns(i));
                    runtime.block_on(async move {
                        tokio::spawn(super::cpu::account());
                        for (listener, spec) in sockets {
                            tokio::spawn(accept_loop(listener, spec, shared.clone(), stop.clone()));
                        }
                        // Until halt is set, or the pool is dropped without `shutdown`.
                        while !*halt.borrow_and_update() {
                            if halt.changed().await.is_err() {
                                break;
                            }
                        }
                    });
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })?;
            handles.push(handle);
        }
        Ok(L7Pool {
            threads: handles,
            shared,
            shutdown: stop_tx,
            halt: halt_tx,
            local_addrs,
            health,
        })
    }

    /// Applies a new configuration: routes, clusters (unchanged ones keep their state)
    /// and certificates. Cores and limits apply to new connections; listeners stay.
    pub fn reload(&self, cfg: Arc<L7Config>) -> Result<(), L7Error> {
        let old = self.shared.snapshot.load_full();
        let next = Arc::new(Snapshot::build(&cfg, Some(&old), &self.shared.metrics)?);
        self.shared.snapshot.store(next.clone());
        // (the new snapshot serves already: a checker that cannot start is reported)
        self.health.update(&next)?;
        Ok(())
    }

    /// The pool's metrics.
    pub fn metrics(&self) -> Arc<L7Metrics> {
        self.shared.metrics.clone()
    }

    /// A handle on the pool's live state, for the admin API's `GET /api/l7`.
    pub fn status(&self) -> L7Status {
        L7Status(self.shared.clone())
    }

    /// The bound addresses, in the order of the listeners given to [`L7Pool::start`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops accepting, lets every connection finish the requests it has in progress
    /// (HTTP/1.1 closes after the current response, HTTP/2 sends GOAWAY), waits up to
    /// `DRAIN_TIMEOUT` for them, then ends the rest.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.shared.metrics.listener.open.load(Ordering::Relaxed) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.halt.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.health.stop();
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> u64 {
        self.shared.metrics.listener.open.load(Ordering::Relaxed)
    }

    /// Blocks until SIGINT or SIGTERM; SIGHUP reloads from `path`, and so does a change
    /// of a watched file (`watch`).
    fn wait_signals(
        &self,
        path: &Path,
        mut running: Arc<L7Config>,
        mut watch: Option<FileWatch>,
    ) -> Result<(), L7Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut hup = signal(SignalKind::hangup())?;
            loop {
                let next_poll = watch.as_ref().map(FileWatch::next_poll);
                let due = async {
                    match next_poll {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    _ = term.recv() => return Ok(()),
                    _ = hup.recv() => self.reload_file(path, &mut running, watch.as_mut()),
                    _ = due => {
                        let Some(w) = watch.as_mut() else { continue };
                        let changed = w.poll(std::time::Instant::now());
                        if !changed.is_empty() {
                            eprintln!("fulcrum l7: changed on disk: {}; reloading", list(&changed));
                            self.reload_file(path, &mut running, Some(w));
                        }
                    }
                }
            }
        })
    }

    /// Reloads from `path` into `running`, or keeps the running configuration if it
    /// cannot; the watched files as they were before they were read become the watch's
    /// base either way.
    fn reload_file(&self, path: &Path, running: &mut Arc<L7Config>, watch: Option<&mut FileWatch>) {
        let before = watch.as_ref().map(|w| w.stamps());
        // the files the configuration read names, applied or refused
        let mut named = Vec::new();
        match load(path).map(Arc::new) {
            Ok(cfg) => {
                named = watched_l7_files(path, &cfg);
                match self.reload(Arc::clone(&cfg)) {
                    Ok(()) => {
                        eprintln!("fulcrum l7: reloaded {}", path.display());
                        *running = cfg;
                    }
                    Err(e) => eprintln!("fulcrum l7: reload failed, keeping the old config: {e}"),
                }
            }
            Err(e) => eprintln!("fulcrum l7: reload failed, keeping the old config: {e}"),
        }
        if let (Some(w), Some(before)) = (watch, before) {
            w.rebase(after_reload(watched_l7_files(path, running), named), before);
        }
    }
}

fn load(path: &Path) -> Result<L7Config, L7Error> {
    let text = std::fs::read_to_string(path)?;
    L7Config::from_yaml_str(&text)
}

/// Serves the `l7` services of the file at `path` on host sockets (each service's
/// `listen`), until SIGINT/SIGTERM; SIGHUP reloads the file, and so does a change of
/// the file or of a file it names when `watch` (the interval between polls) is given.
pub fn run_standalone(path: &Path, watch: Option<std::time::Duration>) -> Result<(), L7Error> {
    let mut watch =
        watch.map(|every| FileWatch::new(vec![path.to_owned()], every, std::time::Instant::now()));
    let before = watch.as_ref().map(FileWatch::stamps);
    let cfg = load(path)?;
    if let (Some(w), Some(before)) = (&mut watch, before) {
        w.rebase(watched_l7_files(path, &cfg), before);
        eprintln!(
            "fulcrum l7: watching {} file(s) for changes",
            w.paths().count()
        );
    }
    let listeners: Vec<ListenerSpec> = cfg
        .services
        .iter()
        .filter_map(|s| {
            s.listen.map(|addr| ListenerSpec {
                addr,
                tls: s.tls.is_some(),
                service: s.name.clone(),
            })
        })
        .collect();
    if listeners.is_empty() {
        return Err(L7Error::Config("no service has `listen`".into()));
    }
    let names: Vec<String> = listeners.iter().map(|l| l.service.clone()).collect();
    let cfg = Arc::new(cfg);
    let pool = L7Pool::start(Arc::clone(&cfg), listeners)?;
    for (addr, svc) in pool.local_addrs().iter().zip(&names) {
        eprintln!("fulcrum l7: listening on {addr} ({svc})");
    }
    let result = pool.wait_signals(path, cfg, watch);
    pool.shutdown();
    result
}
