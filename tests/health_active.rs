//! Active health checks against real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fulcrum::config::HealthCheckKind;
use fulcrum::health::{HealthChecker, HealthEvent, HealthStatus, HealthTarget};

/// How a test backend answers.
#[derive(Clone, Copy)]
enum Reply {
    /// Accept and close (TCP checks).
    Close,
    /// An HTTP/1.1 response with this status.
    Status(u16),
    /// Bytes that are not HTTP.
    Garbage,
    /// Accept, read, never answer.
    Hang,
}

/// A listener on 127.0.0.1 served by a thread until `stop`.
struct Backend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepts: Arc<Mutex<Vec<Instant>>>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(port: u16, reply: Reply) -> Backend {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepts = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, a, r) = (stop.clone(), accepts.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        a.lock().unwrap().push(Instant::now());
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_millis(500)))
                            .unwrap();
                        match reply {
                            Reply::Close => {}
                            Reply::Status(code) => {
                                r.lock().unwrap().push(read_head(&mut stream));
                                let resp = format!(
                                    "HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                                );
                                let _ = stream.write_all(resp.as_bytes());
                            }
                            Reply::Garbage => {
                                read_head(&mut stream);
                                let _ = stream.write_all(b"SSH-2.0-nope\r\n\r\n");
                            }
                            Reply::Hang => {
                                read_head(&mut stream);
                                held.push(stream);
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            // Dropping the listener here closes the port.
        });
        Backend {
            addr,
            stop,
            accepts,
            requests,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn target(id: u32, addr: SocketAddr, kind: HealthCheckKind, interval_ms: u64) -> HealthTarget {
    HealthTarget {
        id,
        service: "web".to_owned(),
        addr,
        kind,
        path: "/healthz".to_owned(),
        host: None,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(interval_ms * 8 / 10),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    }
}

fn status(checker: &HealthChecker, id: u32) -> Option<HealthStatus> {
    checker
        .states()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, s)| s)
}

/// Polls `cond` every 10ms up to `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn next_event(checker: &HealthChecker, limit: Duration) -> Option<HealthEvent> {
    let mut got = None;
    wait_for(limit, || {
        got = checker.events().next();
        got.is_some()
    });
    got
}

/// A port with nothing listening (connect is refused), held while the socket lives: bound
/// without `SO_REUSEADDR` and never listening, so no other socket can take the port.
fn closed_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[test]
fn tcp_backend_down_then_up_flips_after_exact_thresholds() {
    let mut backend = Backend::start(0, Reply::Close);
    let addr = backend.addr;
    let interval = 100;
    let checker = HealthChecker::start(vec![target(1, addr, HealthCheckKind::Tcp, interval)])
        .expect("checker");
    let initial = status(&checker, 1).expect("target known at once");
    assert!(initial.healthy, "targets start healthy");
    assert!(wait_for(Duration::from_secs(3), || status(&checker, 1)
        .is_some_and(|s| s.probes >= 2)));
    let s = status(&checker, 1).unwrap();
    assert!(s.healthy && s.consecutive_fail == 0, "{s:?}");
    assert_eq!(s.last_reason, "connected");
    assert!(checker.events().next().is_none(), "no change while up");

    backend.stop();
    let closed_at = Instant::now();
    let down = next_event(&checker, Duration::from_secs(5)).expect("unhealthy event");
    assert!(!down.healthy);
    assert_eq!(down.id, 1);
    assert_eq!(down.reason, "connect refused");
    assert_eq!(down.streak, 3, "exactly unhealthy_threshold failures");
    let took = down.at - closed_at;
    // First failing probe within one period (+10%), then two more periods of 90..110ms.
    assert!(
        took >= Duration::from_millis(170) && took <= Duration::from_millis(1500),
        "{took:?}"
    );
    let s = status(&checker, 1).unwrap();
    assert!(!s.healthy);
    assert_eq!(s.transitions, 1);

    let _backend = Backend::start(addr.port(), Reply::Close);
    let restarted_at = Instant::now();
    let up = next_event(&checker, Duration::from_secs(5)).expect("healthy event");
    assert!(up.healthy);
    assert_eq!(up.streak, 2, "exactly healthy_threshold successes");
    assert_eq!(up.reason, "connected");
    let took = up.at - restarted_at;
    assert!(
        took >= Duration::from_millis(80) && took <= Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(status(&checker, 1).unwrap().transitions, 2);
    assert!(checker.events().next().is_none(), "one event per change");
    checker.stop();
}

#[test]
fn http_status_garbage_and_hang() {
    let ok = Backend::start(0, Reply::Status(200));
    let redirect = Backend::start(0, Reply::Status(302));
    let unavailable = Backend::start(0, Reply::Status(503));
    let garbage = Backend::start(0, Reply::Garbage);
    let hang = Backend::start(0, Reply::Hang);
    let mut targets = vec![
        target(1, ok.addr, HealthCheckKind::Http, 150),
        target(2, redirect.addr, HealthCheckKind::Http, 150),
        target(3, unavailable.addr, HealthCheckKind::Http, 150),
        target(4, garbage.addr, HealthCheckKind::Http, 150),
        target(5, hang.addr, HealthCheckKind::Http, 150),
    ];
    targets[0].host = Some("health.example".to_owned());
    for t in &mut targets {
        t.unhealthy_threshold = 2;
        t.timeout = Duration::from_millis(100);
    }
    let checker = HealthChecker::start(targets).expect("checker");
    let settled = wait_for(Duration::from_secs(6), || {
        let s = checker.states();
        s.len() == 5
            && s[0].1.probes >= 3
            && s[1].1.probes >= 3
            && s[2..].iter().all(|(_, st)| !st.healthy)
    });
    let states = checker.states();
    assert!(settled, "{states:#?}");
    assert!(
        states[0].1.healthy && states[0].1.last_reason == "HTTP 200",
        "{states:#?}"
    );
    assert!(states[1].1.healthy && states[1].1.last_reason == "HTTP 302");
    assert_eq!(states[2].1.last_reason, "HTTP 503");
    assert!(
        states[3].1.last_reason.starts_with("bad HTTP response"),
        "{}",
        states[3].1.last_reason
    );
    assert_eq!(states[4].1.last_reason, "timeout");

    let mut events: Vec<HealthEvent> = checker.events().collect();
    events.sort_by_key(|e| e.id);
    let ids: Vec<u32> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![3, 4, 5]);
    assert!(events.iter().all(|e| !e.healthy && e.streak == 2));

    let request = ok.requests.lock().unwrap()[0].clone();
    assert!(
        request.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("host: health.example\r\n"),
        "{request}"
    );
    let request = redirect.requests.lock().unwrap()[0].clone();
    let host_line = format!("host: {}\r\n", redirect.addr);
    assert!(
        request.to_ascii_lowercase().contains(&host_line),
        "{request}"
    );
    checker.stop();
}

#[test]
fn first_probes_are_spread_over_the_interval() {
    // One backend per target, so each backend's first accept is its target's first probe.
    let backends: Vec<Backend> = (0..10).map(|_| Backend::start(0, Reply::Close)).collect();
    let interval = 1000;
    let targets = backends
        .iter()
        .zip(1..)
        .map(|(b, id)| target(id, b.addr, HealthCheckKind::Tcp, interval))
        .collect();
    let started = Instant::now();
    let checker = HealthChecker::start(targets).expect("checker");
    let all_probed = wait_for(Duration::from_secs(3), || {
        backends
            .iter()
            .all(|b| !b.accepts.lock().unwrap().is_empty())
    });
    assert!(all_probed);
    checker.stop();
    let firsts: Vec<Duration> = backends
        .iter()
        .map(|b| b.accepts.lock().unwrap()[0] - started)
        .collect();
    let first = firsts.iter().min().unwrap();
    let last = firsts.iter().max().unwrap();
    // Offsets are uniform in [0, 1s): every first probe within the interval (plus
    // scheduling slack), and ten draws spread over less than 200ms with probability
    // ~5e-6 (they would all start at once without jitter).
    assert!(*last < Duration::from_millis(1300), "{firsts:?}");
    assert!(*last - *first >= Duration::from_millis(200), "{firsts:?}");
}

#[test]
fn update_keeps_state_of_unchanged_targets() {
    let (_held, dead) = closed_port();
    let live = Backend::start(0, Reply::Close);
    let mut t1 = target(1, dead, HealthCheckKind::Tcp, 50);
    t1.unhealthy_threshold = 1;
    let t2 = target(2, live.addr, HealthCheckKind::None, 50);
    let checker = HealthChecker::start(vec![t1.clone(), t2.clone()]).expect("checker");
    let down = next_event(&checker, Duration::from_secs(3)).expect("event");
    assert_eq!((down.id, down.healthy), (1, false));

    // Same id and address, other interval: the state survives.
    let mut t1b = t1.clone();
    t1b.interval = Duration::from_millis(60);
    checker.update(vec![t1b.clone(), t2.clone()]);
    std::thread::sleep(Duration::from_millis(30));
    let s = status(&checker, 1).unwrap();
    assert!(!s.healthy);
    assert_eq!(s.transitions, 1);

    // Kind none: never probed, always healthy.
    let s2 = status(&checker, 2).unwrap();
    assert!(s2.healthy);
    assert_eq!(s2.probes, 0);
    assert!(live.accepts.lock().unwrap().is_empty());

    // A new address under the same id starts fresh and healthy.
    let mut t1c = t1b.clone();
    t1c.addr = live.addr;
    checker.update(vec![t1c]);
    assert!(wait_for(Duration::from_secs(2), || checker.states().len() == 1));
    let s = status(&checker, 1).unwrap();
    assert!(s.healthy);
    assert_eq!(s.transitions, 0);
    assert!(wait_for(Duration::from_secs(2), || status(&checker, 1)
        .is_some_and(|s| s.probes >= 2 && s.last_reason == "connected")));
    assert!(checker.events().next().is_none());

    checker.update(Vec::new());
    assert!(wait_for(Duration::from_secs(2), || checker
        .states()
        .is_empty()));
    checker.stop();
}
