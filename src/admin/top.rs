//! `fulcrum top`: a live view of per-service and per-backend rates (like
//! `ipvsadm -L --rate`), computed from consecutive `GET /api/stats` answers.
//!
//! # The `/api/stats` JSON shape
//!
//! The control plane answers with a [`StatsSnapshot`] serialised by serde
//! (`serde_json::to_value(&snapshot)`). Counters are totals since start (monotonic;
//! a decrease is read as a reset to zero); fields marked optional may be left out.
//!
//! ```json
//! {
//!   "services": [
//!     {
//!       "name": "web", "vip": "10.0.0.10", "port": 80, "protocol": "tcp",
//!       "panic": false,
//!       "backends": [
//!         { "address": "10.0.1.1", "weight": 100, "healthy": true, "draining": false,
//!           "packets": 1234, "bytes": 567890, "new_flows": 12, "active_flows": 3 }
//!       ]
//!     }
//!   ],
//!   "workers": [
//!     { "id": 0, "rx_packets": 1000, "tx_packets": 990, "drops": 10, "flows": 3 }
//!   ]
//! }
//! ```
//!
//! `port` (`null` = every port), `protocol`, `panic`, `draining` and `workers` are
//! optional. Service rates are the sums of their backends' rates.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONNECTION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

/// Default admin port when the URL names none.
pub const DEFAULT_ADMIN_PORT: u16 = 9100;

/// Time one `GET /api/stats` may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest `/api/stats` body read (bytes).
pub const MAX_STATS_BODY: usize = 16 * 1024 * 1024;

/// The `/api/stats` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Services in configuration order.
    pub services: Vec<ServiceStats>,
    /// Per-worker counters (optional).
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
}

/// One service in [`StatsSnapshot`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// Service name.
    pub name: String,
    /// Virtual IP, as text.
    pub vip: String,
    /// Destination port; `None` for every port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `tcp` or `udp` (optional).
    #[serde(default)]
    pub protocol: String,
    /// Whether the panic threshold is in force (health ignored).
    #[serde(default)]
    pub panic: bool,
    /// Backends in configuration order.
    pub backends: Vec<BackendStats>,
}

/// One backend in [`ServiceStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    /// Backend address (the key `top` matches samples by), as text.
    pub address: String,
    /// Current weight (0 = drained).
    pub weight: u16,
    /// Health state.
    pub healthy: bool,
    /// Draining (weight set to 0 at run time, flows finishing).
    #[serde(default)]
    pub draining: bool,
    /// Packets forwarded to it (total).
    pub packets: u64,
    /// Bytes forwarded to it (total).
    pub bytes: u64,
    /// Flows created toward it (total).
    pub new_flows: u64,
    /// Flows currently pinned to it.
    pub active_flows: u64,
}

/// One worker in [`StatsSnapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker index.
    pub id: u32,
    /// Packets received (total).
    pub rx_packets: u64,
    /// Packets sent (total).
    pub tx_packets: u64,
    /// Packets dropped, all reasons (total).
    pub drops: u64,
    /// Flow-table entries in use.
    pub flows: u64,
}

/// Rates of one backend; `None` where there is no earlier sample yet.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendRates {
    /// Backend address.
    pub address: String,
    /// Current weight.
    pub weight: u16,
    /// Health state.
    pub healthy: bool,
    /// Draining.
    pub draining: bool,
    /// Packets per second.
    pub packets_per_s: Option<f64>,
    /// Bytes per second.
    pub bytes_per_s: Option<f64>,
    /// New flows per second.
    pub new_flows_per_s: Option<f64>,
    /// Flows now.
    pub active_flows: u64,
}

/// Rates of one service: sums over its backends.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRates {
    /// Service name.
    pub name: String,
    /// `vip:port/protocol` as shown.
    pub endpoint: String,
    /// Panic threshold in force.
    pub panic: bool,
    /// Packets per second.
    pub packets_per_s: Option<f64>,
    /// Bytes per second.
    pub bytes_per_s: Option<f64>,
    /// New flows per second.
    pub new_flows_per_s: Option<f64>,
    /// Flows now.
    pub active_flows: u64,
    /// Its backends.
    pub backends: Vec<BackendRates>,
}

/// Rates of one worker.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRates {
    /// Worker index.
    pub id: u32,
    /// Received packets per second.
    pub rx_per_s: Option<f64>,
    /// Sent packets per second.
    pub tx_per_s: Option<f64>,
    /// Drops per second.
    pub drops_per_s: Option<f64>,
    /// Flow-table entries in use.
    pub flows: u64,
}

/// Everything one refresh of `top` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct RateTable {
    /// Per service.
    pub services: Vec<ServiceRates>,
    /// Per worker.
    pub workers: Vec<WorkerRates>,
}

/// `(cur - prev) / seconds`; a decrease is a counter reset (counted from zero).
fn rate(prev: Option<u64>, cur: u64, seconds: f64) -> Option<f64> {
    let prev = prev?;
    if seconds <= 0.0 {
        return None;
    }
    let delta = if cur >= prev { cur - prev } else { cur };
    Some(delta as f64 / seconds)
}

fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (Some(a), Some(b)) => Some(a + b),
        (Some(a), None) => Some(a),
    })
}

/// Rates between two snapshots taken `elapsed` apart (pure). Services are matched by
/// name, backends by address within their service, workers by id; anything without
/// an earlier sample (or `prev == None`) has no rate.
pub fn compute_rates(
    prev: Option<&StatsSnapshot>,
    cur: &StatsSnapshot,
    elapsed: Duration,
) -> RateTable {
    let secs = elapsed.as_secs_f64();
    let services = cur
        .services
        .iter()
        .map(|s| {
            let old = prev.and_then(|p| p.services.iter().find(|o| o.name == s.name));
            let backends: Vec<BackendRates> = s
                .backends
                .iter()
                .map(|b| {
                    let ob = old.and_then(|o| o.backends.iter().find(|x| x.address == b.address));
                    BackendRates {
                        address: b.address.clone(),
                        weight: b.weight,
                        healthy: b.healthy,
                        draining: b.draining,
                        packets_per_s: rate(ob.map(|o| o.packets), b.packets, secs),
                        bytes_per_s: rate(ob.map(|o| o.bytes), b.bytes, secs),
                        new_flows_per_s: rate(ob.map(|o| o.new_flows), b.new_flows, secs),
                        active_flows: b.active_flows,
                    }
                })
                .collect();
            let port = s.port.map_or_else(|| "*".to_owned(), |p| p.to_string());
            let vip = if s.vip.contains(':') {
                format!("[{}]", s.vip)
            } else {
                s.vip.clone()
            };
            let mut endpoint = format!("{vip}:{port}");
            if !s.protocol.is_empty() {
                endpoint.push('/');
                endpoint.push_str(&s.protocol);
            }
            ServiceRates {
                name: s.name.clone(),
                endpoint,
                panic: s.panic,
                packets_per_s: sum(backends.iter().map(|b| b.packets_per_s)),
                bytes_per_s: sum(backends.iter().map(|b| b.bytes_per_s)),
                new_flows_per_s: sum(backends.iter().map(|b| b.new_flows_per_s)),
                active_flows: backends.iter().map(|b| b.active_flows).sum(),
                backends,
            }
        })
        .collect();
    let workers = cur
        .workers
        .iter()
        .map(|w| {
            let old = prev.and_then(|p| p.workers.iter().find(|o| o.id == w.id));
            WorkerRates {
                id: w.id,
                rx_per_s: rate(old.map(|o| o.rx_packets), w.rx_packets, secs),
                tx_per_s: rate(old.map(|o| o.tx_packets), w.tx_packets, secs),
                drops_per_s: rate(old.map(|o| o.drops), w.drops, secs),
                flows: w.flows,
            }
        })
        .collect();
    RateTable { services, workers }
}

/// A rate with an SI suffix: `-` when unknown, `12`, `3.4`, `1.2K`, `5.6M`, `7.8G`.
fn human(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "-".to_owned();
    };
    let (v, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "K")
    } else {
        (v, "")
    };
    if suffix.is_empty() && (v == v.trunc() || v >= 100.0) {
        format!("{v:.0}")
    } else {
        format!("{v:.1}{suffix}")
    }
}

/// The table as text (no screen control codes).
pub fn render_table(table: &RateTable) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<34} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "SERVICE / BACKEND", "WEIGHT", "STATE", "PKT/s", "BYTES/s", "NEWFL/s", "ACTIVE"
    );
    for svc in &table.services {
        let title = format!("{} {}", svc.name, svc.endpoint);
        let state = if svc.panic { "PANIC" } else { "" };
        let _ = writeln!(
            s,
            "{:<34} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9}",
            title,
            "",
            state,
            human(svc.packets_per_s),
            human(svc.bytes_per_s),
            human(svc.new_flows_per_s),
            svc.active_flows
        );
        for b in &svc.backends {
            let state = match (b.healthy, b.draining) {
                (_, true) => "draining",
                (true, false) => "up",
                (false, false) => "DOWN",
            };
            let _ = writeln!(
                s,
                "  -> {:<29} {:>6} {:>8} {:>9} {:>9} {:>8} {:>9}",
                b.address,
                b.weight,
                state,
                human(b.packets_per_s),
                human(b.bytes_per_s),
                human(b.new_flows_per_s),
                b.active_flows
            );
        }
    }
    if !table.workers.is_empty() {
        let _ = writeln!(
            s,
            "\n{:<8} {:>9} {:>9} {:>9} {:>9}",
            "WORKER", "RX/s", "TX/s", "DROP/s", "FLOWS"
        );
        for w in &table.workers {
            let _ = writeln!(
                s,
                "{:<8} {:>9} {:>9} {:>9} {:>9}",
                w.id,
                human(w.rx_per_s),
                human(w.tx_per_s),
                human(w.drops_per_s),
                w.flows
            );
        }
    }
    s
}

/// Where the admin API is.
struct Target {
    addr: SocketAddr,
    host: String,
}

/// Parses `http://host[:port][/...]` or `host[:port]`; the port defaults to 9100.
fn parse_admin_url(url: &str) -> Result<Target, String> {
    if url.starts_with("https://") {
        return Err("https is not supported by the admin API".to_owned());
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("no host in admin URL {url:?}"));
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.matches(':').count() == 1,
    };
    let with_port = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{DEFAULT_ADMIN_PORT}")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("admin URL {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("admin URL {url:?}: no address"))?;
    Ok(Target {
        addr,
        host: with_port,
    })
}

async fn get_stats(target: &Target, token: Option<&str>) -> Result<StatsSnapshot, String> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", target.addr))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let mut request = Request::get("/api/stats")
        .header(HOST, &target.host)
        .header(CONNECTION, "close");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_STATS_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "GET /api/stats: HTTP {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET /api/stats: bad JSON: {e}"))
    };
    tokio::pin!(conn);
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        r = &mut exchange => r,
        // The connection closed; the exchange holds the outcome.
        _ = &mut conn => exchange.await,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

fn fetch_with(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    token: Option<&str>,
) -> Result<StatsSnapshot, String> {
    rt.block_on(async {
        match tokio::time::timeout(FETCH_TIMEOUT, get_stats(target, token)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "GET /api/stats: no answer within {FETCH_TIMEOUT:?}"
            )),
        }
    })
}

/// One `GET /api/stats` from `admin_url` (`http://host:port` or `host:port`).
pub fn fetch_stats(admin_url: &str, token: Option<&str>) -> Result<StatsSnapshot, String> {
    let target = parse_admin_url(admin_url)?;
    fetch_with(&runtime()?, &target, token)
}

/// Polls `/api/stats` every `interval` and prints the rate table: the screen is
/// cleared between refreshes when stdout is a terminal, blocks follow each other
/// otherwise. Stops after `iterations` refreshes (`None`: never). The first refresh
/// has no rates yet (`-`). An error on the first poll is returned; later ones are
/// shown and polling goes on.
pub fn run_top(
    admin_url: &str,
    interval: Duration,
    iterations: Option<u32>,
    token: Option<String>,
) -> Result<(), String> {
    let target = parse_admin_url(admin_url)?;
    let rt = runtime()?;
    let tty = std::io::stdout().is_terminal();
    let mut prev: Option<(StatsSnapshot, Instant)> = None;
    let mut done = 0u32;
    loop {
        let at = Instant::now();
        let text = match fetch_with(&rt, &target, token.as_deref()) {
            Ok(cur) => {
                let table = match &prev {
                    Some((p, t)) => compute_rates(Some(p), &cur, at - *t),
                    None => compute_rates(None, &cur, Duration::ZERO),
                };
                prev = Some((cur, at));
                render_table(&table)
            }
            Err(e) if prev.is_none() => return Err(e),
            Err(e) => format!("error: {e}\n"),
        };
        let mut out = std::io::stdout().lock();
        let header = format!("fulcrum top: {admin_url}, every {interval:?}\n\n");
        let written = if tty {
            write!(out, "\x1b[H\x1b[2J{header}{text}")
        } else {
            writeln!(out, "{header}{text}")
        };
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(()); // stdout closed (e.g. `| head`)
        }
        drop(out);
        done += 1;
        if iterations.is_some_and(|n| done >= n) {
            return Ok(());
        }
        std::thread::sleep(interval.saturating_sub(at.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(address: &str, packets: u64, bytes: u64, new_flows: u64) -> BackendStats {
        BackendStats {
            address: address.to_owned(),
            weight: 1,
            healthy: true,
            draining: false,
            packets,
            bytes,
            new_flows,
            active_flows: 2,
        }
    }

    fn snapshot(backends: Vec<BackendStats>, rx: u64) -> StatsSnapshot {
        StatsSnapshot {
            services: vec![ServiceStats {
                name: "web".to_owned(),
                vip: "10.0.0.10".to_owned(),
                port: Some(80),
                protocol: "tcp".to_owned(),
                panic: false,
                backends,
            }],
            workers: vec![WorkerStats {
                id: 0,
                rx_packets: rx,
                tx_packets: rx,
                drops: 0,
                flows: 4,
            }],
        }
    }

    #[test]
    fn rates_from_two_snapshots() {
        let a = snapshot(
            vec![
                backend("10.0.1.1", 100, 10_000, 10),
                backend("10.0.1.2", 0, 0, 0),
            ],
            50,
        );
        let b = snapshot(
            vec![
                backend("10.0.1.1", 300, 30_000, 14),
                backend("10.0.1.2", 50, 500, 1),
            ],
            250,
        );
        let t = compute_rates(Some(&a), &b, Duration::from_secs(2));
        let s = &t.services[0];
        assert_eq!(s.endpoint, "10.0.0.10:80/tcp");
        assert_eq!(s.backends[0].packets_per_s, Some(100.0));
        assert_eq!(s.backends[0].bytes_per_s, Some(10_000.0));
        assert_eq!(s.backends[0].new_flows_per_s, Some(2.0));
        assert_eq!(s.backends[1].packets_per_s, Some(25.0));
        assert_eq!(s.packets_per_s, Some(125.0));
        assert_eq!(s.bytes_per_s, Some(10_250.0));
        assert_eq!(s.new_flows_per_s, Some(2.5));
        assert_eq!(s.active_flows, 4);
        assert_eq!(t.workers[0].rx_per_s, Some(100.0));
        assert_eq!(t.workers[0].flows, 4);
    }

    #[test]
    fn first_sample_new_backend_and_reset() {
        let cur = snapshot(vec![backend("10.0.1.1", 40, 400, 4)], 0);
        let t = compute_rates(None, &cur, Duration::ZERO);
        assert_eq!(t.services[0].packets_per_s, None);
        assert_eq!(t.workers[0].rx_per_s, None);

        // Counter went down (restart): counted from zero. New backend: no rate.
        let prev = snapshot(vec![backend("10.0.1.1", 1000, 10_000, 40)], 0);
        let cur = snapshot(
            vec![
                backend("10.0.1.1", 40, 400, 4),
                backend("10.0.1.9", 5, 5, 5),
            ],
            0,
        );
        let t = compute_rates(Some(&prev), &cur, Duration::from_secs(1));
        assert_eq!(t.services[0].backends[0].packets_per_s, Some(40.0));
        assert_eq!(t.services[0].backends[1].packets_per_s, None);
        assert_eq!(t.services[0].packets_per_s, Some(40.0));

        // Zero elapsed: no division by zero.
        let t = compute_rates(Some(&prev), &cur, Duration::ZERO);
        assert_eq!(t.services[0].backends[0].packets_per_s, None);
    }

    #[test]
    fn table_text() {
        let a = snapshot(vec![backend("10.0.1.1", 0, 0, 0)], 0);
        let mut b = snapshot(vec![backend("10.0.1.1", 2_500, 3_000_000, 7)], 0);
        b.services[0].backends[0].healthy = false;
        b.services[0].vip = "2001:db8::10".to_owned();
        b.services[0].port = None;
        let text = render_table(&compute_rates(Some(&a), &b, Duration::from_secs(1)));
        assert!(text.contains("web [2001:db8::10]:*/tcp"), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("-> 10.0.1.1"))
            .expect("backend line");
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            ["->", "10.0.1.1", "1", "DOWN", "2.5K", "3.0M", "7", "2"]
        );
        assert!(text.contains("WORKER"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human(None), "-");
        assert_eq!(human(Some(0.0)), "0");
        assert_eq!(human(Some(2.5)), "2.5");
        assert_eq!(human(Some(999.4)), "999");
        assert_eq!(human(Some(1_500.0)), "1.5K");
        assert_eq!(human(Some(2e9)), "2.0G");
    }

    #[test]
    fn admin_urls() {
        let t = parse_admin_url("http://127.0.0.1:9200/").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:9200".parse().expect("addr"));
        let t = parse_admin_url("127.0.0.1").expect("valid");
        assert_eq!(t.addr.port(), DEFAULT_ADMIN_PORT);
        let t = parse_admin_url("[::1]:9300").expect("valid");
        assert_eq!(t.addr, "[::1]:9300".parse().expect("addr"));
        let t = parse_admin_url("[::1]").expect("valid");
        assert_eq!(t.addr.port(), DEFAULT_ADMIN_PORT);
        assert!(parse_admin_url("https://127.0.0.1").is_err());
        assert!(parse_admin_url("http://").is_err());
    }

    #[test]
    fn stats_json_shape_round_trips_and_tolerates_omissions() {
        let json = r#"{"services":[{"name":"web","vip":"10.0.0.10","backends":[
            {"address":"10.0.1.1","weight":3,"healthy":true,"packets":1,"bytes":2,
             "new_flows":3,"active_flows":4}]}]}"#;
        let s: StatsSnapshot = serde_json::from_str(json).expect("minimal shape parses");
        assert_eq!(s.services[0].port, None);
        assert!(s.workers.is_empty());
        let full = snapshot(vec![backend("10.0.1.1", 1, 2, 3)], 9);
        let v = serde_json::to_value(&full).expect("serialises");
        assert_eq!(v["services"][0]["backends"][0]["new_flows"], 3);
        assert_eq!(v["workers"][0]["rx_packets"], 9);
        let back: StatsSnapshot = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, full);
    }
}
