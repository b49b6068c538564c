//! The admin server against a fake control plane, over real sockets on 127.0.0.1.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fulcrum::admin::{
    fetch_stats, run_top, AdminError, AdminHandler, AdminServer, BackendStats, PromWriter,
    ServiceStats, StatsSnapshot,
};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-token";

#[derive(Default)]
struct FakeControl {
    calls: Mutex<Vec<String>>,
    reload_fails: AtomicBool,
    scrapes: Mutex<u64>,
}

impl FakeControl {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

impl AdminHandler for FakeControl {
    fn metrics(&self, out: &mut String) {
        let mut scrapes = self.scrapes.lock().unwrap();
        *scrapes += 1;
        let mut w = PromWriter::new();
        for (svc, backend, packets) in [("web", "10.0.1.1", 10u64), ("db", "10.0.2.1", 20)] {
            let labels = [("service", svc), ("backend", backend)];
            w.counter(
                "fulcrum_backend_packets_total",
                "Packets sent to a backend.",
                &labels,
                packets,
            );
            w.gauge("fulcrum_backend_healthy", "1 if healthy.", &labels, 1.0);
        }
        // Interleaved with the families above and with a label value needing escapes.
        w.counter(
            "fulcrum_backend_packets_total",
            "Packets sent to a backend.",
            &[("service", "odd \"name\"\\x"), ("backend", "::1")],
            5,
        );
        w.counter(
            "fulcrum_admin_scrapes_total",
            "Scrapes served.",
            &[],
            *scrapes,
        );
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in [1_000u64, 2_000, 3_000, 40_000] {
            h.record(v).unwrap();
        }
        w.histogram_summary(
            "fulcrum_worker_loop_seconds",
            "Time of one poll loop.",
            &[("worker", "0")],
            &h,
            1e-9,
        );
        w.gauge(
            "fulcrum_service_panic",
            "1 in panic mode.\nSecond line.",
            &[("service", "web")],
            0.0,
        );
        w.finish(out);
    }

    fn services(&self) -> Value {
        json!({"services": [{"name": "web", "backends": [{"address": "10.0.1.1", "weight": 1}]}]})
    }

    fn stats(&self) -> Value {
        let snap = StatsSnapshot {
            services: vec![ServiceStats {
                name: "web".into(),
                vip: "10.0.0.10".into(),
                port: Some(80),
                protocol: "tcp".into(),
                panic: false,
                backends: vec![BackendStats {
                    address: "10.0.1.1".into(),
                    weight: 1,
                    healthy: true,
                    draining: false,
                    packets: 100,
                    bytes: 1000,
                    new_flows: 10,
                    active_flows: 1,
                }],
            }],
            workers: Vec::new(),
        };
        serde_json::to_value(&snap).unwrap()
    }

    fn reload(&self) -> Result<String, Vec<String>> {
        self.log("reload".into());
        if self.reload_fails.load(Ordering::Relaxed) {
            Err(vec!["fulcrum.yaml:3:5: unknown key \"bogus\"".into()])
        } else {
            Ok("reloaded: 2 services".into())
        }
    }

    fn set_weight(&self, service: &str, backend: &str, weight: u16) -> Result<(), AdminError> {
        if service != "web" {
            return Err(AdminError::NotFound(format!("no service {service:?}")));
        }
        if backend == "10.9.9.9" {
            return Err(AdminError::BadRequest("backend is being removed".into()));
        }
        self.log(format!("weight {service} {backend} {weight}"));
        Ok(())
    }

    fn drain(&self, service: &str, backend: &str) -> Result<(), AdminError> {
        if service != "web" {
            return Err(AdminError::NotFound(format!("no service {service:?}")));
        }
        self.log(format!("drain {service} {backend}"));
        Ok(())
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request over a fresh connection, raw bytes on the wire.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn start(token: Option<&str>) -> (AdminServer, Arc<FakeControl>) {
    let control = Arc::new(FakeControl::default());
    let server = AdminServer::start(
        "127.0.0.1:0".parse().unwrap(),
        token.map(str::to_owned),
        control.clone(),
    )
    .expect("bind an ephemeral port");
    (server, control)
}

#[test]
fn token_guards_api_but_not_metrics() {
    let (server, _) = start(Some(TOKEN));
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let r = request(addr, "GET", "/api/services", None, "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers.get("www-authenticate").map(String::as_str),
        Some("Bearer")
    );
    assert!(r.json()["error"].as_str().unwrap().contains("token"));
    assert_eq!(
        request(addr, "GET", "/api/services", Some("wrong"), "").status,
        401
    );
    // Unknown /api paths are not revealed without the token.
    assert_eq!(request(addr, "GET", "/api/nope", None, "").status, 401);
    assert_eq!(request(addr, "POST", "/api/reload", None, "").status, 401);

    let r = request(addr, "GET", "/api/services", Some(TOKEN), "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(r.json()["services"][0]["name"], "web");

    let r = request(addr, "GET", "/metrics", None, "");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    server.stop();
}

#[test]
fn open_server_needs_no_token() {
    let (server, _) = start(None);
    let r = request(server.local_addr(), "GET", "/api/stats", None, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["services"][0]["backends"][0]["packets"], 100);
}

#[test]
fn reload_weight_drain_and_refusals() {
    let (server, control) = start(Some(TOKEN));
    let addr = server.local_addr();
    let post = |path: &str, body: &str| request(addr, "POST", path, Some(TOKEN), body);

    let r = post("/api/reload", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"result": "reloaded: 2 services"}));
    control.reload_fails.store(true, Ordering::Relaxed);
    let r = post("/api/reload", "");
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["errors"][0],
        "fulcrum.yaml:3:5: unknown key \"bogus\""
    );

    let r = post(
        "/api/services/web/backends/10.0.1.1/weight",
        r#"{"weight": 7}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["weight"], 7);
    let r = post(
        "/api/services/web/backends/2001%3adb8%3A%3A1/weight",
        r#"{"weight":0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post("/api/services/web/backends/10.0.1.2/drain", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], "draining");

    // Refusals: none of these reach the handler.
    let cases = [
        (
            "/api/services/web/backends/10.0.1.1/weight",
            r#"{"weight": 70000}"#,
            400,
            "out of range",
        ),
        (
            "/api/services/web/backends/10.0.1.1/weight",
            r#"{"weight": -3}"#,
            400,
            "integer",
        ),
        (
            "/api/services/web/backends/10.0.1.1/weight",
            "{weight: 1",
            400,
            "invalid JSON",
        ),
        (
            "/api/services/web/backends/10.0.1.1/weight",
            "",
            400,
            "invalid JSON",
        ),
        (
            "/api/services/web/backends/10.0.1.1/weight",
            r#"{"w": 1}"#,
            400,
            "unknown field",
        ),
        ("/api/services/web/backends/%G1/drain", "", 400, "percent"),
        (
            "/api/services/web/backends/10.0.1.1/explode",
            "",
            404,
            "no route",
        ),
    ];
    for (path, body, status, needle) in cases {
        let r = post(path, body);
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    // Refusals from the handler.
    let r = post(
        "/api/services/nope/backends/10.0.1.1/weight",
        r#"{"weight": 1}"#,
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no service \"nope\"");
    let r = post("/api/services/nope/backends/10.0.1.1/drain", "");
    assert_eq!(r.status, 404);
    let r = post(
        "/api/services/web/backends/10.9.9.9/weight",
        r#"{"weight": 1}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "backend is being removed");

    // Wrong methods and paths.
    let r = request(addr, "DELETE", "/api/reload", Some(TOKEN), "");
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").map(String::as_str), Some("POST"));
    let r = request(addr, "POST", "/api/stats", Some(TOKEN), "");
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").map(String::as_str), Some("GET"));
    assert_eq!(request(addr, "POST", "/metrics", None, "").status, 405);
    assert_eq!(request(addr, "GET", "/", None, "").status, 404);
    assert_eq!(
        request(addr, "GET", "/api/nope", Some(TOKEN), "").status,
        404
    );

    // Oversized body.
    let big = format!(r#"{{"weight": 1, "pad": "{}"}}"#, "x".repeat(70_000));
    let r = post("/api/services/web/backends/10.0.1.1/weight", &big);
    assert_eq!(r.status, 413);

    assert_eq!(
        *control.calls.lock().unwrap(),
        vec![
            "reload",
            "reload",
            "weight web 10.0.1.1 7",
            "weight web 2001:db8::1 0",
            "drain web 10.0.1.2",
        ]
    );
    server.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "stopped server still accepts"
    );
}

/// One parsed sample: name, labels (unescaped), value text.
type Sample = (String, Vec<(String, String)>, String);

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` (without `:` for label names).
fn is_name(s: &str, colon: bool) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Parses `{k="v",...}` at the start of `s`; returns the labels (unescaped) and the rest.
fn parse_labels(s: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').expect("{");
    loop {
        let eq = rest.find('=').expect("label '='");
        let name = &rest[..eq];
        assert!(is_name(name, false), "label name {name:?}");
        let mut chars = rest[eq + 1..].char_indices();
        assert_eq!(chars.next(), Some((0, '"')), "opening quote");
        let mut value = String::new();
        let mut escaped = false;
        let mut close = None;
        for (i, c) in chars {
            match (escaped, c) {
                (true, '\\' | '"') => {
                    value.push(c);
                    escaped = false;
                }
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, other) => panic!("bad escape \\{other}"),
                (false, '\\') => escaped = true,
                (false, '"') => {
                    close = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let close = eq + 1 + close.expect("closing quote");
        labels.push((name.to_owned(), value));
        rest = &rest[close + 1..];
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        rest = rest.strip_prefix(',').expect("',' between labels");
    }
}

/// A strict line-level check of the text format: HELP then TYPE once per family and
/// before its samples, samples of a family contiguous, names, label syntax and values
/// valid. Returns every sample as (name, labels, value).
fn check_exposition(text: &str) -> Vec<Sample> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name, true), "{line}");
            assert!(seen.insert(name.to_owned()), "family {name} declared twice");
            current = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(current.as_deref(), Some(name), "TYPE right after its HELP");
            assert!(["counter", "gauge", "summary"].contains(&kind), "{line}");
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("name end");
        let name = &line[..name_end];
        assert!(is_name(name, true), "{line}");
        let family = current.as_deref().expect("sample before any HELP");
        let base = [name.strip_suffix("_sum"), name.strip_suffix("_count")]
            .into_iter()
            .flatten()
            .find(|b| *b == family)
            .unwrap_or(name);
        assert_eq!(base, family, "sample outside its family: {line}");
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if rest.starts_with('{') {
            (labels, rest) = parse_labels(rest);
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        assert!(
            ["NaN", "+Inf", "-Inf"].contains(&value) || value.parse::<f64>().is_ok(),
            "{line}"
        );
        samples.push((name.to_owned(), labels, value.to_owned()));
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let (server, _) = start(Some(TOKEN));
    let addr = server.local_addr();
    request(addr, "GET", "/metrics", None, "");
    let text = request(addr, "GET", "/metrics", None, "").body;

    // A third-party parser of the format.
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let find = |metric: &str, label: &str, value: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label) == Some(value))
            .map(|s| s.value.clone())
    };
    assert_eq!(
        find("fulcrum_backend_packets_total", "backend", "10.0.2.1"),
        Some(prometheus_parse::Value::Counter(20.0))
    );
    assert_eq!(
        find("fulcrum_backend_healthy", "service", "web"),
        Some(prometheus_parse::Value::Gauge(1.0))
    );
    let scrapes = scrape
        .samples
        .iter()
        .find(|s| s.metric == "fulcrum_admin_scrapes_total");
    assert_eq!(
        scrapes.map(|s| s.value.clone()),
        Some(prometheus_parse::Value::Counter(2.0))
    );
    match find("fulcrum_worker_loop_seconds", "worker", "0") {
        Some(prometheus_parse::Value::Summary(q)) => {
            assert_eq!(q.len(), 3);
            assert!((q[0].quantile - 0.5).abs() < 1e-9);
            assert!((q[0].count - 2e-6).abs() < 1e-8, "{q:?}");
            assert!((q[2].count - 40e-6).abs() < 1e-7, "{q:?}");
        }
        other => panic!("summary expected, got {other:?}"),
    }
    assert_eq!(
        scrape.docs.get("fulcrum_service_panic").map(String::as_str),
        Some("1 in panic mode.\\nSecond line.")
    );

    // A strict check of grouping and escaping (the parser above is lenient there).
    let samples = check_exposition(&text);
    let odd = samples
        .iter()
        .find(|(_, labels, _)| labels.iter().any(|(_, v)| v.starts_with("odd")))
        .expect("escaped sample");
    assert_eq!(
        odd.1[0],
        ("service".to_owned(), "odd \"name\"\\x".to_owned())
    );
    assert_eq!(odd.2, "5");
    // Three samples of the packets family, contiguous despite interleaved calls.
    let packets: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 == "fulcrum_backend_packets_total")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(packets.len(), 3);
    assert_eq!(packets[2] - packets[0], 2);
}

#[test]
fn fetch_stats_and_top_against_the_server() {
    let (server, _) = start(Some(TOKEN));
    let url = format!("http://{}", server.local_addr());
    let snap = fetch_stats(&url, Some(TOKEN)).expect("stats");
    assert_eq!(snap.services[0].backends[0].new_flows, 10);
    let err = fetch_stats(&url, None).unwrap_err();
    assert!(err.contains("401"), "{err}");
    run_top(
        &url,
        Duration::from_millis(20),
        Some(2),
        Some(TOKEN.to_owned()),
    )
    .expect("top runs");
    assert!(run_top(&url, Duration::from_millis(20), Some(1), None).is_err());
    server.stop();
    assert!(fetch_stats(&url, Some(TOKEN)).is_err());
}
