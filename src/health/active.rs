//! Active health checking: a thread, a tokio current-thread runtime, a task per target.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;
use tokio::task::JoinHandle as TaskHandle;

use super::jitter::Jitter;
use super::probe::probe;
use super::state::{Hysteresis, Transition};
use crate::config::{BackendConfig, HealthCheckKind, ServiceConfig};

/// Shortest probe period accepted; a smaller `interval` is raised to it so that a bad
/// value cannot turn a task into a busy loop.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Reason recorded for targets that have not been probed yet.
const NOT_PROBED: &str = "not probed yet";

/// One backend to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTarget {
    /// The backend id (the key of events and states; unique within one set).
    pub id: u32,
    /// Name of the service the backend belongs to (for messages).
    pub service: String,
    /// Address and port probed.
    pub addr: SocketAddr,
    /// `tcp`, `http` or `none` (never probed, always healthy).
    pub kind: HealthCheckKind,
    /// HTTP path (`http` only).
    pub path: String,
    /// HTTP `Host` header; `None` sends `addr`.
    pub host: Option<String>,
    /// Time between probes (±10% jitter).
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Consecutive successes to turn healthy.
    pub healthy_threshold: u8,
    /// Consecutive failures to turn unhealthy.
    pub unhealthy_threshold: u8,
}

impl HealthTarget {
    /// The target for `backend` of `service` as configured, under backend id `id`.
    /// `None` when no port can be found for a `tcp`/`http` check (validation rules
    /// that out for valid configurations).
    pub fn from_config(
        id: u32,
        service: &ServiceConfig,
        backend: &BackendConfig,
    ) -> Option<HealthTarget> {
        let hc = &service.health_check;
        let port = match (hc.port_for(service, backend), hc.kind) {
            (Some(p), _) => p,
            (None, HealthCheckKind::None) => 0,
            (None, _) => return None,
        };
        Some(HealthTarget {
            id,
            service: service.name.clone(),
            addr: SocketAddr::new(backend.address, port),
            kind: hc.kind,
            path: hc.path.clone(),
            host: None,
            interval: hc.interval,
            timeout: hc.timeout,
            healthy_threshold: hc.healthy_threshold,
            unhealthy_threshold: hc.unhealthy_threshold,
        })
    }
}

/// A change of a target's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    /// The backend id.
    pub id: u32,
    /// The new state.
    pub healthy: bool,
    /// The last probe's result: "connect refused", "timeout", "HTTP 503", "HTTP 200", ...
    pub reason: String,
    /// When the deciding probe finished.
    pub at: Instant,
    /// Consecutive probes that led to the change (equals the threshold that applied).
    pub streak: u32,
}

/// The state of one target, as returned by [`HealthChecker::states`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthStatus {
    /// Whether the backend may take new flows.
    pub healthy: bool,
    /// Successful probes in a row.
    pub consecutive_ok: u32,
    /// Failed probes in a row.
    pub consecutive_fail: u32,
    /// State changes since the target appeared.
    pub transitions: u64,
    /// The last probe's result ("not probed yet" before the first).
    pub last_reason: String,
    /// Probes run since the target appeared.
    pub probes: u64,
}

/// The state a task updates and [`HealthChecker::states`] reads.
#[derive(Debug)]
struct TargetState {
    addr: SocketAddr,
    hysteresis: Hysteresis,
    last_reason: String,
    probes: u64,
}

impl TargetState {
    fn new(t: &HealthTarget) -> TargetState {
        TargetState {
            addr: t.addr,
            hysteresis: Hysteresis::new(t.healthy_threshold, t.unhealthy_threshold),
            last_reason: if t.kind == HealthCheckKind::None {
                "not checked".to_owned()
            } else {
                NOT_PROBED.to_owned()
            },
            probes: 0,
        }
    }
}

type SharedStates = Arc<Mutex<BTreeMap<u32, TargetState>>>;

fn lock(states: &SharedStates) -> MutexGuard<'_, BTreeMap<u32, TargetState>> {
    // A panicking holder cannot leave a map half-updated in a way that matters here.
    states
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Command {
    Update(Vec<HealthTarget>),
    Stop,
}

/// Runs active health checks on its own thread.
///
/// ```no_run
/// # use fulcrum::health::*;
/// let checker = HealthChecker::start(Vec::new()).expect("thread");
/// for event in checker.events() {
///     println!("backend {} healthy={} ({})", event.id, event.healthy, event.reason);
/// }
/// checker.stop();
/// ```
pub struct HealthChecker {
    commands: tokio_mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<HealthEvent>,
    states: SharedStates,
    thread: Option<JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts the checker thread probing `targets` (duplicate ids: the first wins).
    /// Every target starts healthy. Fails only if the thread or runtime cannot be made.
    pub fn start(targets: Vec<HealthTarget>) -> io::Result<HealthChecker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (commands, command_rx) = tokio_mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel();
        let states: SharedStates = Arc::default();
        sync_states(&mut lock(&states), &targets);
        let thread_states = Arc::clone(&states);
        let thread = std::thread::Builder::new()
            .name("fulcrum-health".to_owned())
            .spawn(move || {
                runtime.block_on(control_loop(targets, command_rx, thread_states, event_tx));
            })?;
        Ok(HealthChecker {
            commands,
            events,
            states,
            thread: Some(thread),
        })
    }

    /// Replaces the set of targets (a reload). A target whose id and address are
    /// unchanged keeps its state and streaks (its task restarts if anything else
    /// changed); any other target starts fresh and healthy; missing ones are dropped.
    /// [`states`](Self::states) reflects the new set when this returns; probes follow
    /// within milliseconds.
    pub fn update(&self, targets: Vec<HealthTarget>) {
        sync_states(&mut lock(&self.states), &targets);
        // Fails only once the thread is gone, after stop: nothing to update then.
        let _ = self.commands.send(Command::Update(targets));
    }

    /// State changes since the last call, without blocking.
    pub fn events(&self) -> impl Iterator<Item = HealthEvent> + '_ {
        self.events.try_iter()
    }

    /// Every target's state, by id.
    pub fn states(&self) -> Vec<(u32, HealthStatus)> {
        lock(&self.states)
            .iter()
            .map(|(id, s)| {
                let status = HealthStatus {
                    healthy: s.hysteresis.healthy(),
                    consecutive_ok: s.hysteresis.consecutive_ok(),
                    consecutive_fail: s.hysteresis.consecutive_fail(),
                    transitions: s.hysteresis.transitions(),
                    last_reason: s.last_reason.clone(),
                    probes: s.probes,
                };
                (*id, status)
            })
            .collect()
    }

    /// Whether backend `id` is healthy (`None` for an unknown id).
    pub fn is_healthy(&self, id: u32) -> Option<bool> {
        lock(&self.states).get(&id).map(|s| s.hysteresis.healthy())
    }

    /// Stops every probe and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("targets", &lock(&self.states).len())
            .finish()
    }
}

/// A running target: its definition and its task (`None` for kind `none`).
struct Running {
    target: HealthTarget,
    task: Option<TaskHandle<()>>,
}

async fn control_loop(
    initial: Vec<HealthTarget>,
    mut commands: tokio_mpsc::UnboundedReceiver<Command>,
    states: SharedStates,
    events: mpsc::Sender<HealthEvent>,
) {
    let mut running: HashMap<u32, Running> = HashMap::new();
    apply(&mut running, initial, &states, &events);
    while let Some(command) = commands.recv().await {
        match command {
            Command::Update(targets) => apply(&mut running, targets, &states, &events),
            Command::Stop => break,
        }
    }
    for r in running.values() {
        if let Some(task) = &r.task {
            task.abort();
        }
    }
}

/// Makes the state map match `targets` (first of duplicate ids wins): keeps entries
/// whose id and address are unchanged (with the new thresholds), adds fresh healthy
/// ones, drops the rest.
fn sync_states(map: &mut BTreeMap<u32, TargetState>, targets: &[HealthTarget]) {
    let mut wanted: BTreeMap<u32, &HealthTarget> = BTreeMap::new();
    for t in targets {
        wanted.entry(t.id).or_insert(t);
    }
    map.retain(|id, s| wanted.get(id).is_some_and(|t| t.addr == s.addr));
    for (id, target) in wanted {
        match map.get_mut(&id) {
            Some(s) => s
                .hysteresis
                .set_thresholds(target.healthy_threshold, target.unhealthy_threshold),
            None => {
                map.insert(id, TargetState::new(target));
            }
        }
    }
}

/// Moves the probe tasks in `running` to `targets` (states are synced by the caller). Runs on the runtime's only thread, so no probe task
/// runs concurrently, and an aborted task is never polled again.
fn apply(
    running: &mut HashMap<u32, Running>,
    targets: Vec<HealthTarget>,
    states: &SharedStates,
    events: &mpsc::Sender<HealthEvent>,
) {
    let mut wanted: BTreeMap<u32, HealthTarget> = BTreeMap::new();
    for t in targets {
        wanted.entry(t.id).or_insert(t);
    }
    running.retain(|id, r| {
        let keep = wanted.get(id).is_some_and(|t| *t == r.target);
        if !keep {
            if let Some(task) = &r.task {
                task.abort();
            }
        }
        keep
    });
    for (id, target) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        let task = (target.kind != HealthCheckKind::None).then(|| {
            tokio::spawn(probe_loop(
                target.clone(),
                Arc::clone(states),
                events.clone(),
                Jitter::from_entropy(u64::from(id)),
            ))
        });
        running.insert(id, Running { target, task });
    }
}

/// Probes one target forever: first at a random offset in `[0, interval)`, then every
/// `interval` ±10% counted from the start of the previous probe.
async fn probe_loop(
    target: HealthTarget,
    states: SharedStates,
    events: mpsc::Sender<HealthEvent>,
    mut jitter: Jitter,
) {
    let interval = target.interval.max(MIN_INTERVAL);
    tokio::time::sleep(jitter.first_offset(interval)).await;
    loop {
        let started = tokio::time::Instant::now();
        let result = probe(
            target.kind,
            target.addr,
            &target.path,
            target.host.as_deref(),
            target.timeout,
        )
        .await;
        let (ok, reason) = match result {
            Ok(reason) => (true, reason),
            Err(failure) => (false, failure.to_string()),
        };
        {
            let mut map = lock(&states);
            // A reload may have removed this target or given its id another address
            // before this task was aborted: then the entry is not ours.
            let Some(state) = map.get_mut(&target.id).filter(|s| s.addr == target.addr) else {
                return;
            };
            state.probes += 1;
            let transition = state.hysteresis.record(ok);
            let streak = if ok {
                state.hysteresis.consecutive_ok()
            } else {
                state.hysteresis.consecutive_fail()
            };
            state.last_reason.clone_from(&reason);
            if transition != Transition::Stay {
                let event = HealthEvent {
                    id: target.id,
                    healthy: transition == Transition::BecameHealthy,
                    reason,
                    at: Instant::now(),
                    streak,
                };
                // The receiver lives as long as the checker; a send error means it is
                // being dropped, and the runtime stops next.
                let _ = events.send(event);
            }
        }
        tokio::time::sleep_until(started + jitter.next_period(interval)).await;
    }
}
