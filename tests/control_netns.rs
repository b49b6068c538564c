//! The control plane on the namespace topology: health checks through the kernel
//! interface, the panic threshold, drains through the admin API, /metrics, and
//! dpdk-dumpcap against a running fulcrum.
//!
//! Needs root, DPDK and namespaces: run by scripts/test.sh with `--test-threads=1`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Health-check interval and thresholds of these tests.
const INTERVAL_MS: u64 = 400;
const UNHEALTHY: u64 = 2;
const HEALTHY: u64 = 2;

fn config(name: &str, panic_threshold: u8) -> String {
    let mut eal = vec![
        "--no-pci".to_owned(),
        format!("--file-prefix=flc-{name}"),
        "--vdev=net_af_packet0,iface=lb0".to_owned(),
        "--log-level=*:warning".to_owned(),
    ];
    eal.extend(eal_mem_args());
    let eal = eal
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "dpdk:\n  eal_args: [{eal}]\nports:\n  - name: lan\n    device: net_af_packet0\n    address: 10.99.0.2/24\n    kernel_interface: flc0\n\
         workers:\n  cores: [1]\nflow_table:\n  capacity: 65536\nadmin:\n  listen: 127.0.0.1:0\n\
         services:\n  - name: web\n    vip: {VIP4}\n    port: 80\n    forwarding: dsr\n    panic_threshold: {panic_threshold}\n    drain_timeout: 60s\n\
         \x20   backends:\n      - address: 10.99.0.11\n      - address: 10.99.0.12\n      - address: 10.99.0.13\n\
         \x20   health_check:\n      kind: http\n      path: /healthz\n      interval: {INTERVAL_MS}ms\n      timeout: 200ms\n\
         \x20     healthy_threshold: {HEALTHY}\n      unhealthy_threshold: {UNHEALTHY}\n"
    )
}

fn topo(cmd: &str, backend: u32) {
    sh(Command::new("bash")
        .arg(root().join("tests/netns/topo.sh"))
        .args([cmd, &backend.to_string()])
        .env("FLC_PREFIX", PREFIX));
}

/// The admin listener's address, from fulcrum's log.
fn admin_addr(f: &Fulcrum) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = f.log_text();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("admin API listening on http://"))
        {
            return l.rsplit("http://").next().unwrap().trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no admin address in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP request to the admin API from the LB namespace.
fn admin(f: &Fulcrum, method: &str, path: &str, body: Option<&str>) -> String {
    let url = format!("http://{}{path}", admin_addr(f));
    let mut c = in_ns(
        &format!("{PREFIX}-lb"),
        &["curl", "-s", "-m", "5", "-X", method],
    );
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = sh(c.arg(&url));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn a_stopped_backend_is_ejected_then_readmitted() {
    let _t = Topology::up("dsr", 1);
    let f = Fulcrum::start("health", &config("health", 50));
    wait_ms(INTERVAL_MS * 3);
    let s = requests(VIP4, 300, &[]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    assert_eq!(s.backends.len(), 3, "{}", s.raw);

    topo("stop-backend", 2);
    // Marked down after `unhealthy_threshold` failed probes: ~interval x (threshold + 1)
    // at most on a calm machine; the bound is looser so a loaded one does not fail here.
    // Then a moment for the workers to take the new backend set.
    let b2 = "fulcrum_backend_healthy{service=\"web\",backend=\"10.99.0.12\"}";
    let down = wait_metric(&f, b2, 0.0, Duration::from_secs(5));
    eprintln!("backend2 marked down {down:?} after its server stopped");
    wait_ms(INTERVAL_MS / 2);
    let s = requests(VIP4, 300, &[]);
    assert_eq!(
        s.failed, 0,
        "connections failed after the ejection window: {}",
        s.raw
    );
    assert!(!s.backends.contains_key("backend2"), "{}", s.raw);
    let m = admin(&f, "GET", "/metrics", None);
    assert!(
        m.contains("fulcrum_backend_healthy{service=\"web\",backend=\"10.99.0.12\"} 0"),
        "{m}"
    );

    topo("start-backend", 2);
    let up = wait_metric(&f, b2, 1.0, Duration::from_secs(5));
    eprintln!("backend2 marked up {up:?} after its server started");
    wait_ms(INTERVAL_MS / 2);
    let s = requests(VIP4, 300, &[]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    assert!(
        s.backends.get("backend2").copied().unwrap_or(0) > 50,
        "backend2 takes traffic again: {}",
        s.raw
    );
    let log = f.stop();
    assert!(
        log.contains("backend 10.99.0.12 of web is unhealthy"),
        "{log}"
    );
    assert!(
        log.contains("backend 10.99.0.12 of web is healthy"),
        "{log}"
    );
}

#[test]
fn below_the_panic_threshold_every_backend_is_used() {
    let _t = Topology::up("dsr", 1);
    let f = Fulcrum::start("panic", &config("panic", 50));
    wait_ms(INTERVAL_MS * 2);
    topo("stop-backend", 2);
    topo("stop-backend", 3);
    wait_metric(
        &f,
        "fulcrum_service_panic{service=\"web\"}",
        1.0,
        Duration::from_secs(5),
    );
    wait_ms(INTERVAL_MS / 2);
    // one healthy of three is below 50%: health is ignored, new flows go to all three
    let s = requests(VIP4, 300, &[]);
    let total = s.backends.values().sum::<u64>() + s.failed;
    assert_eq!(total, 300);
    let ok1 = s.backends.get("backend1").copied().unwrap_or(0);
    assert!(
        (60..=140).contains(&ok1),
        "about a third reach the one live backend: {}",
        s.raw
    );
    assert!(
        s.failed >= 150,
        "the rest go to the two dead ones: {}",
        s.raw
    );
    let m = admin(&f, "GET", "/metrics", None);
    assert!(
        m.contains("fulcrum_service_panic{service=\"web\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("fulcrum_service_backends_healthy{service=\"web\"} 1"),
        "{m}"
    );
    f.stop();
}

#[test]
fn a_drained_backend_finishes_its_transfer_and_takes_no_new_flows() {
    let _t = Topology::up("dsr", 1);
    let f = Fulcrum::start("drain", &config("drain", 0));
    wait_ms(500);
    const BYTES: u64 = 16 << 20;
    let mut t = in_ns(&format!("{PREFIX}-cl"), &["python3"])
        .arg(root().join("tests/netns/transfer.py"))
        .args([VIP4, "80", &BYTES.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(t.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let backend = line
        .trim()
        .strip_prefix("backend ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let n: u32 = backend.trim_start_matches("backend").parse().unwrap();
    let addr = format!("10.99.0.{}", 10 + n);
    let r = admin(
        &f,
        "POST",
        &format!("/api/services/web/backends/{addr}/drain"),
        None,
    );
    assert!(r.contains("draining"), "{r}");
    // new connections avoid it while the transfer goes on
    let s = requests(VIP4, 200, &[]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    assert!(
        !s.backends.contains_key(&backend),
        "{backend} drained: {}",
        s.raw
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    t.wait().unwrap();
    assert_eq!(
        rest.trim(),
        format!("done {BYTES}"),
        "the transfer through the drained backend completed"
    );
    let api = admin(&f, "GET", "/api/services", None);
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    let b = v["services"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == addr.as_str())
        .unwrap()
        .clone();
    assert_eq!(b["weight"], 0, "{api}");
    assert_eq!(b["draining"], true, "{api}");
    // malformed requests are refused with 4xx
    let bad = in_ns(
        &format!("{PREFIX}-lb"),
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "{\"weight\": 70000}",
        ],
    )
    .arg(format!(
        "http://{}/api/services/web/backends/{addr}/weight",
        admin_addr(&f)
    ))
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "400");
    let missing = in_ns(
        &format!("{PREFIX}-lb"),
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
        ],
    )
    .arg(format!(
        "http://{}/api/services/nope/backends/{addr}/drain",
        admin_addr(&f)
    ))
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    f.stop();
}

#[test]
fn metrics_parse_and_count_what_was_sent_and_dumpcap_captures() {
    assert!(
        eal_mem_args().is_empty(),
        "dpdk-dumpcap needs fulcrum on hugepages (scripts/test.sh reserves them): FULCRUM_EAL_MEM={:?}",
        std::env::var("FULCRUM_EAL_MEM")
    );
    let _t = Topology::up("dsr", 1);
    // no health probes here, so the capture sees the client's traffic
    let full = config("metrics", 50);
    let yaml = &full[..full.find("    health_check:").unwrap()];
    let f = Fulcrum::start("metrics", yaml);
    const N: u64 = 400;
    let s = requests(VIP4, N as u32, &["--sport-base", "20000"]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    // port statistics are refreshed every second
    wait_ms(1500);
    let text = admin(&f, "GET", "/metrics", None);
    let lines: Vec<_> = text.lines().map(|l| Ok(l.to_owned())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("valid Prometheus text");
    let sum = |name: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        sum("fulcrum_backend_new_flows_total"),
        N as f64,
        "one new flow per connection"
    );
    assert_eq!(sum("fulcrum_engine_new_flows_total"), N as f64);
    // SYN, ACK, request, FIN and ACK of each connection, at least four of them distinct
    let rx = sum("fulcrum_port_rx_packets_total");
    assert!(
        rx >= (N * 4) as f64,
        "{rx} packets received for {N} connections"
    );
    assert!(
        text.contains("fulcrum_loop_seconds{worker=\"0\",quantile=\"0.99\"}"),
        "{text}"
    );
    // every metric the Grafana dashboard plots is exported
    let dashboard = std::fs::read_to_string(root().join("configs/grafana-dashboard.json")).unwrap();
    let mut names: Vec<&str> = dashboard
        .match_indices("fulcrum_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for n in names {
        assert!(
            text.contains(&format!("\n{n}")),
            "the dashboard plots {n}, which /metrics lacks"
        );
    }

    // dpdk-dumpcap attaches to the running fulcrum as a secondary process
    let pcap = std::env::temp_dir().join("fulcrum-test-dumpcap.pcapng");
    let _ = std::fs::remove_file(&pcap);
    let mut dump = in_ns(
        &format!("{PREFIX}-lb"),
        &[
            "timeout",
            "20",
            "dpdk-dumpcap",
            "--file-prefix=flc-metrics",
            "-i",
            "net_af_packet0",
            "-c",
            "20",
            "-w",
        ],
    )
    .arg(&pcap)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_ms(2500);
    let s = requests(VIP4, 30, &[]);
    assert_eq!(s.failed, 0);
    let st = dump.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut dump.stderr.take().unwrap(), &mut err).unwrap();
    assert!(st.success(), "dpdk-dumpcap failed: {err}");
    let read = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    let captured = String::from_utf8_lossy(&read.stdout);
    // received and transmitted packets are both captured
    assert!(captured.lines().count() >= 20, "{captured}");
    assert!(captured.contains("10.99.0.100.80"), "{captured}");

    // DPDK's telemetry socket answers dpdk-telemetry.py with the port's counters
    let mut tel = Command::new("dpdk-telemetry.py")
        .args(["-f", "flc-metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        tel.stdin.as_mut().unwrap(),
        b"/ethdev/list\n/ethdev/stats,0\n",
    )
    .unwrap();
    drop(tel.stdin.take());
    let out = tel.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim_start_matches("--> ").trim()).ok())
        .collect();
    let stats = answers
        .iter()
        .find_map(|v| v.get("/ethdev/stats"))
        .unwrap_or_else(|| panic!("no /ethdev/stats answer: {text}"));
    let ipackets = stats["ipackets"].as_u64().unwrap_or(0);
    let opackets = stats["opackets"].as_u64().unwrap_or(0);
    // at least the 30 requests just sent: a SYN, a request and an ACK or FIN each
    assert!(ipackets >= 90 && opackets >= 90, "{text}");
    assert!(
        answers.iter().any(|v| v["/ethdev/list"]
            .as_array()
            .is_some_and(|ports| ports.contains(&serde_json::json!(0)))),
        "{text}"
    );
    f.stop();
}

/// A `nat` service with passive checks only (no active health check), tuned short.
fn passive_config(name: &str) -> String {
    topo_config(
        name,
        "10.99.0.2/24",
        &[1],
        &format!(
            "  - name: web\n    vip: {VIP4}\n    port: 80\n    forwarding: nat\n\
             \x20   outlier_detection:\n      consecutive_failures: 3\n      connect_timeout: 300ms\n      base_ejection_time: 10s\n\
             \x20   backends:\n      - address: 10.99.0.11\n      - address: 10.99.0.12\n      - address: 10.99.0.13\n"
        ),
    )
}

/// The value of the first `/metrics` sample whose line starts with `prefix`.
fn metric(m: &str, prefix: &str) -> Option<f64> {
    m.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `/metrics` until the sample starting with `prefix` reads `want`, for at most
/// `bound`; returns how long that took.
fn wait_metric(f: &Fulcrum, prefix: &str, want: f64, bound: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let m = admin(f, "GET", "/metrics", None);
        if metric(&m, prefix) == Some(want) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < bound,
            "{prefix} is not {want} after {bound:?}:\n{m}"
        );
        wait_ms(50);
    }
}

fn metric_sum(m: &str, name: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn nat_connection_failures_eject_a_backend_passively() {
    let t = Topology::up("nat", 1);
    let f = Fulcrum::start("passive", &passive_config("passive"));
    let s = requests(VIP4, 90, &["--timeout", "3"]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    assert_eq!(s.backends.len(), 3, "{}", s.raw);

    // 1. Refused: backend2's server stops, its kernel answers SYNs with RST. A few
    //    connections fail (the threshold, plus those begun before the control thread's
    //    next look), then the backend is ejected and none fails.
    topo("stop-backend", 2);
    let s = requests(VIP4, 60, &["--timeout", "1"]);
    assert!(
        (3..=30).contains(&s.failed),
        "refused connections before the ejection: {}",
        s.raw
    );
    eprintln!("refused before the ejection: {} of 60", s.failed);
    wait_ms(200);
    let s = requests(VIP4, 150, &["--timeout", "3"]);
    assert_eq!(
        s.failed, 0,
        "connections failed after the ejection: {}",
        s.raw
    );
    assert!(!s.backends.contains_key("backend2"), "{}", s.raw);
    let m = admin(&f, "GET", "/metrics", None);
    let b2 = "service=\"web\",backend=\"10.99.0.12\"";
    assert_eq!(
        metric(&m, &format!("fulcrum_backend_ejected{{{b2}}}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, &format!("fulcrum_backend_healthy{{{b2}}}")),
        Some(0.0),
        "{m}"
    );
    let failed = metric(
        &m,
        &format!("fulcrum_backend_connects_total{{{b2},result=\"failed\"}}"),
    );
    assert!(failed.is_some_and(|n| n >= 3.0), "{m}");
    let ok1 = metric(
        &m,
        "fulcrum_backend_connects_total{service=\"web\",backend=\"10.99.0.11\",result=\"ok\"}",
    );
    assert!(ok1.is_some_and(|n| n >= 30.0), "{m}");
    // every live flow is counted against exactly one backend
    let active = metric_sum(&m, "fulcrum_backend_active_flows");
    let entries = metric_sum(&m, "fulcrum_flow_table_entries");
    assert!(
        active > 0.0 && active == entries,
        "active {active} vs entries {entries}\n{m}"
    );
    let api = admin(&f, "GET", "/api/services", None);
    let v: serde_json::Value = serde_json::from_str(&api).expect("services JSON");
    let b = &v["services"][0]["backends"];
    let total: u64 = (0..3).map(|i| b[i]["active_flows"].as_u64().unwrap()).sum();
    assert_eq!(total as f64, entries, "{api}");
    assert_eq!(b[1]["ejected"], true, "{api}");

    // 2. Readmitted when the ejection (10 s, long enough that the checks above finish
    //    inside it on a slow machine) ends; with its server back it serves again.
    topo("start-backend", 2);
    let waited = wait_metric(
        &f,
        &format!("fulcrum_backend_ejected{{{b2}}}"),
        0.0,
        Duration::from_secs(20),
    );
    eprintln!("backend2 readmitted {waited:?} after its server came back");
    let s = requests(VIP4, 150, &["--timeout", "3"]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    assert!(
        s.backends.get("backend2").copied().unwrap_or(0) > 20,
        "backend2 takes traffic again: {}",
        s.raw
    );

    // 3. Timed out: backend3's replies to the LB vanish (a blackhole route in its
    //    namespace), so its SYN-ACKs never come: no answer within connect_timeout.
    sh(&mut in_ns(
        &t.ns("b3"),
        &["ip", "route", "add", "blackhole", "10.99.0.2/32"],
    ));
    let s = requests(VIP4, 40, &["--timeout", "1"]);
    assert!(
        (3..=20).contains(&s.failed),
        "unanswered connections before the ejection: {}",
        s.raw
    );
    eprintln!("unanswered before the ejection: {} of 40", s.failed);
    wait_ms(500);
    let s = requests(VIP4, 100, &["--timeout", "3"]);
    assert_eq!(s.failed, 0, "{}", s.raw);
    assert!(!s.backends.contains_key("backend3"), "{}", s.raw);

    let log = f.stop();
    assert!(log.contains("backend 10.99.0.12 of web ejected"), "{log}");
    assert!(
        log.contains("backend 10.99.0.12 of web readmitted"),
        "{log}"
    );
    assert!(log.contains("backend 10.99.0.13 of web ejected"), "{log}");
    assert!(counter(&log, "engine_connects_refused") >= 3, "{log}");
    assert!(counter(&log, "engine_connects_timed_out") >= 3, "{log}");
}
