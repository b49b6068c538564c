//! The L7 pool through `fulcrum run` on the namespace topology: the client's connections
//! reach fulcrum's DPDK port, the workers hand the `l7` VIP to the kernel interface, the
//! pool terminates TLS and HTTP there and opens its upstream connections back out through
//! the data plane to the backend namespaces (tests/netns/l7_upstream.py servers over
//! HTTP/1.1, nginx over h2c for the HTTP/2 upstream cluster).
//!
//! Needs root, DPDK and namespaces: run by scripts/test.sh with `--test-threads=1`.
//! Namespace prefix `fl7`, so it runs beside the other suites.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{root, sh, topo_config_with, topology_down, Fulcrum};

const PREFIX: &str = "fl7";
const VIP: &str = "10.99.0.100";
const CLIENT: &str = "10.99.0.10";

/// `ip netns exec fl7-NAME ARGS`.
fn in_ns(name: &str, args: &[&str]) -> Command {
    common::in_ns(&format!("{PREFIX}-{name}"), args)
}

/// The topology plus the upstream servers; torn down on drop (the servers first).
struct Topology {
    upstreams: Vec<Child>,
    _topology: common::Topology,
}

/// nginx's h2c port on every backend (HTTP/2 upstreams; see `h2_upstream`).
const H2_PORT: u16 = 8010;

/// nginx (Debian's 1.22) in backend namespace `b{b}`: h2c on [`H2_PORT`], answering like
/// tests/netns/l7_upstream.py's `ok` mode, closing each connection after 3 streams
/// (`keepalive_requests 3`: a GOAWAY, and the streams past it refused) so the pool's
/// HTTP/2 upstream connections through the data plane keep being replaced. Single
/// process (`master_process off`), so killing it leaves no worker behind.
fn h2_upstream(b: u32) -> Child {
    let dir = std::env::temp_dir().join(format!("fulcrum-{PREFIX}-nginx-b{b}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let d = dir.display();
    let conf = format!(
        "user root;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\ndaemon off;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 3;\n  \
         client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
         fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  \
         scgi_temp_path {d}/tmp/scgi;\n  default_type text/plain;\n  \
         server {{ listen {H2_PORT} http2; location / {{ add_header x-backend backend{b} always; \
         return 200 \"backend{b} path=$uri xff=$http_x_forwarded_for \
         proto=$http_x_forwarded_proto h2\\n\"; }} }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    in_ns(&format!("b{b}"), &["nginx", "-e"])
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (Debian package nginx)")
}

impl Topology {
    fn up() -> Topology {
        topology_down(PREFIX);
        let mut t = Topology {
            upstreams: Vec::new(),
            _topology: common::Topology::up_in(PREFIX, "nat", 1),
        };
        // (backend namespace, port, mode): see `config` for which cluster uses which
        let servers: &[(u32, u16, &str)] = &[
            (1, 8001, "ok"),
            (2, 8001, "ok"),
            (3, 8001, "ok"),
            (2, 8002, "slow"),
            (2, 8004, "garbage"),
            (3, 8005, "hang"),
            (1, 8006, "reset-once"),
        ];
        for &(b, port, mode) in servers {
            let (mode, delay) = match mode {
                "slow" => ("ok", "300"),
                m => (m, "0"),
            };
            let child = in_ns(&format!("b{b}"), &["python3"])
                .arg(root().join("tests/netns/l7_upstream.py"))
                .args([&format!("backend{b}"), &port.to_string(), mode, delay])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start an upstream");
            t.upstreams.push(child);
        }
        for b in 1..=3 {
            t.upstreams.push(h2_upstream(b));
        }
        let h2: Vec<(u32, u16, &str)> = (1..=3).map(|b| (b, H2_PORT, "h2")).collect();
        for &(b, port, _) in servers.iter().chain(&h2) {
            let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !in_ns(&format!("b{b}"), &["bash", "-c", &probe])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                assert!(
                    Instant::now() < deadline,
                    "upstream b{b}:{port} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.upstreams {
            let _ = c.kill();
            let _ = c.wait();
        }
        for b in 1..=3 {
            let _ = std::fs::remove_dir_all(
                std::env::temp_dir().join(format!("fulcrum-{PREFIX}-nginx-b{b}")),
            );
        }
    }
}

/// A self-signed certificate for `api.test` and `www.test`, made with openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    certificate_named(dir, "web", "www.test")
}

/// [`certificate`] with subject `CN={cn}`, written to `{stem}.crt` and `{stem}.key`.
fn certificate_named(dir: &Path, stem: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    sh(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=DNS:www.test,DNS:api.test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null()));
    (cert, key)
}

/// Routes of both services (TLS on 443, plain on 80); `canary` is v2's weight in percent.
fn services(cert: &Path, key: &Path, canary: u32) -> String {
    let routes = format!(
        "    routes:
      - name: api
        match: {{ host: api.test, path: {{ prefix: /api/ }} }}
        cluster: api
      - name: lr
        match: {{ path: {{ prefix: /lr/ }} }}
        cluster: lr
      - name: rr
        match: {{ path: {{ prefix: /rr/ }} }}
        cluster: rr
      - name: down
        match: {{ path: {{ prefix: /down/ }} }}
        cluster: down
      - name: garbage
        match: {{ path: {{ prefix: /garbage/ }} }}
        cluster: garbage
      - name: hang
        match: {{ path: {{ prefix: /hang/ }} }}
        cluster: hang
        timeout: 500ms
      - name: flaky
        match: {{ path: {{ prefix: /flaky/ }} }}
        cluster: flaky
      - name: h2up
        match: {{ path: {{ prefix: /h2/ }} }}
        cluster: h2up
      - name: site
        match: {{ host: www.test }}
        weighted_clusters: [{{ cluster: v1, weight: {v1} }}, {{ cluster: v2, weight: {canary} }}]
    clusters:
      - {{ name: api, endpoints: [{{ address: \"10.99.0.11:8001\" }}] }}
      - {{ name: v1, endpoints: [{{ address: \"10.99.0.12:8001\" }}] }}
      - {{ name: v2, endpoints: [{{ address: \"10.99.0.13:8001\" }}] }}
      - name: lr
        lb: least_request
        endpoints: [{{ address: \"10.99.0.11:8001\" }}, {{ address: \"10.99.0.12:8002\" }}, {{ address: \"10.99.0.13:8001\" }}]
      - name: rr
        endpoints: [{{ address: \"10.99.0.11:8001\" }}, {{ address: \"10.99.0.12:8001\" }}, {{ address: \"10.99.0.13:8001\" }}]
      - name: down
        health_check: {{ kind: tcp, interval: 200ms, timeout: 150ms, unhealthy_threshold: 2 }}
        endpoints: [{{ address: \"10.99.0.11:9\" }}, {{ address: \"10.99.0.12:9\" }}]
      - {{ name: garbage, endpoints: [{{ address: \"10.99.0.12:8004\" }}] }}
      - {{ name: hang, endpoints: [{{ address: \"10.99.0.13:8005\" }}] }}
      - {{ name: flaky, endpoints: [{{ address: \"10.99.0.11:8006\" }}] }}
      - name: h2up
        protocol: http2
        endpoints: [{{ address: \"10.99.0.11:{H2_PORT}\" }}, {{ address: \"10.99.0.12:{H2_PORT}\" }}, {{ address: \"10.99.0.13:{H2_PORT}\" }}]
",
        v1 = 100 - canary
    );
    format!(
        "  - name: web
    vip: {VIP}
    port: 443
    mode: l7
    tls:
      certificates: [{{ cert: {cert}, key: {key} }}]
{routes}  - name: plain
    vip: {VIP}
    port: 80
    mode: l7
{routes}",
        cert = cert.display(),
        key = key.display()
    )
}

fn config(name: &str, services: &str) -> String {
    topo_config_with(
        PREFIX,
        name,
        "10.99.0.2/24",
        &[1],
        "    kernel_interface: fl7k0\n",
        "l7:\n  cores: [0]\n  limits: { header_read_timeout: 2s, body_read_timeout: 2s }\n  timeouts: { connect: 500ms, request: 5s }\n",
        services,
    )
}

/// Writes `yaml` into `dir` (beside the test's certificate) and starts fulcrum on it.
fn start(name: &str, dir: &Path, yaml: &str) -> Fulcrum {
    let config = dir.join("fulcrum.yaml");
    std::fs::write(&config, yaml).unwrap();
    Fulcrum::start_file_in(PREFIX, name, &config)
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fulcrum-l7-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// curl from the client namespace; `args` after the common ones. Returns stdout.
fn curl(args: &[&str]) -> String {
    let resolve = [
        format!("api.test:443:{VIP}"),
        format!("www.test:443:{VIP}"),
        format!("api.test:80:{VIP}"),
        format!("www.test:80:{VIP}"),
    ];
    let mut c = in_ns("cl", &["curl", "-s", "-k", "-m", "60"]);
    for r in &resolve {
        c.args(["--resolve", r]);
    }
    let out = c.args(args).output().expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A curl config file asking `url` `n` times, each response to /dev/null.
fn url_file(dir: &Path, name: &str, url: &str, n: usize) -> String {
    let path = dir.join(name);
    let mut text = String::with_capacity(n * (url.len() + 40));
    for _ in 0..n {
        text.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
    }
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// curl over HTTP/2 asking every URL of the config file `file` (see [`url_file`]),
/// `parallel` at once on one connection (0: one after the other), printing `write_out`
/// for each. Returns what curl printed.
fn curl_file(file: &str, parallel: u32, write_out: &str) -> String {
    let parallel = parallel.to_string();
    let mut args = vec!["--http2"];
    if parallel != "0" {
        args.extend(["--parallel", "--parallel-max", &parallel]);
    }
    args.extend(["-w", write_out, "-K", file]);
    curl(&args)
}

/// Counts lines of curl's `-w` output.
fn tally(out: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in out.lines() {
        *m.entry(l.trim().to_owned()).or_default() += 1;
    }
    m
}

/// One metric's value (the sum over lines that start with `prefix`).
fn metric(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn tls_h1_h2_routing_canary_balancing_and_reload() {
    let _t = Topology::up();
    let dir = test_dir("route");
    let (cert, key) = certificate(&dir);
    let f = start("route", &dir, &config("route", &services(&cert, &key, 10)));
    assert!(
        f.log_text().contains("L7 pool on cores [0] listening on"),
        "{}",
        f.log_text()
    );

    // 1. HTTP/1.1 and HTTP/2 over TLS, routed by host and path; XFF is the client
    for version in ["--http1.1", "--http2"] {
        let out = curl(&[version, "-w", " %{http_version}", "https://api.test/api/x"]);
        assert_eq!(
            out,
            format!(
                "backend1 path=/api/x xff={CLIENT} proto=https\n {}",
                if version == "--http2" { "2" } else { "1.1" }
            ),
            "{version}"
        );
    }
    // the same host on another path: no api route; www.test goes to the site split
    let out = curl(&[
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        "https://api.test/other",
    ]);
    assert_eq!(out, "404");
    let out = curl(&["--http2", "https://www.test/home"]);
    assert!(
        out.starts_with("backend2 path=/home") || out.starts_with("backend3 path=/home"),
        "{out}"
    );
    // plain HTTP on port 80, h2c by prior knowledge
    let out = curl(&["--http2-prior-knowledge", "http://api.test/api/y"]);
    assert_eq!(
        out,
        format!("backend1 path=/api/y xff={CLIENT} proto=http\n")
    );

    // 2. a 10% canary over 10,000 requests (HTTP/2, one connection, 50 streams at once)
    let file = url_file(&dir, "canary.curl", "https://www.test/c", 10_000);
    let started = Instant::now();
    let out = curl_file(&file, 50, "%header{x-backend}\n");
    let t = tally(&out);
    let (v1, v2) = (
        t.get("backend2").copied().unwrap_or(0),
        t.get("backend3").copied().unwrap_or(0),
    );
    assert_eq!(v1 + v2, 10_000, "{t:?}");
    assert!(
        (900..=1100).contains(&v2),
        "canary share {v2} of 10000: {t:?}"
    );
    eprintln!("canary: {v2} of 10000 to v2 in {:?}", started.elapsed());

    // 3a. least_request keeps new requests away from the slow backend (300 ms per request)
    let file = url_file(&dir, "lr.curl", "https://www.test/lr/", 300);
    let out = curl_file(&file, 30, "%header{x-backend}\n");
    let t = tally(&out);
    assert_eq!(t.values().sum::<u64>(), 300, "{t:?}");
    let slow = t.get("backend2").copied().unwrap_or(0);
    // Ties between idle endpoints go either way at random; a loaded machine makes them
    // more frequent, so the bound sits between an idle run's ~12 and round robin's 100.
    assert!(
        slow < 75,
        "the slow backend took {slow} of 300 (round robin would give 100): {t:?}"
    );

    // 3b. one HTTP/2 connection's requests spread over every endpoint
    let file = url_file(&dir, "rr.curl", "https://www.test/rr/", 30);
    let out = curl_file(&file, 0, "%{num_connects} %header{x-backend}\n");
    let t = tally(&out);
    let connects: u64 = out
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(connects, 1, "one connection: {out}");
    let per_backend: BTreeMap<&str, u64> = ["backend1", "backend2", "backend3"]
        .iter()
        .map(|b| {
            (
                *b,
                t.iter()
                    .filter(|(k, _)| k.ends_with(b))
                    .map(|(_, v)| *v)
                    .sum(),
            )
        })
        .collect();
    assert_eq!(per_backend.values().sum::<u64>(), 30, "{t:?}");
    assert!(
        per_backend.values().all(|&n| n == 10),
        "round robin per request: {per_backend:?}"
    );

    // 3c. HTTP/2 upstreams (nginx h2c) through the data plane, which close each
    // connection after 3 streams: 300 requests over one client connection, 30 at once,
    // every one answered (the streams nginx refused past its GOAWAY sent again), round
    // robin per request, the client's address in X-Forwarded-For
    let file = url_file(&dir, "h2up.curl", "https://www.test/h2/x", 300);
    let out = curl_file(&file, 30, "%{http_code} %header{x-backend}\n");
    let t = tally(&out);
    for b in ["backend1", "backend2", "backend3"] {
        assert_eq!(
            t.get(&format!("200 {b}")).copied(),
            Some(100),
            "round robin over the h2c upstreams, every request 200: {t:?}"
        );
    }
    let out = curl(&["--http1.1", "https://www.test/h2/one"]);
    assert!(
        out.ends_with(&format!(" path=/h2/one xff={CLIENT} proto=https h2\n")),
        "{out}"
    );

    // the pool's metrics are in fulcrum's /metrics
    let m = f.metrics();
    assert!(
        metric(
            &m,
            "fulcrum_l7_cluster_responses_total{service=\"web\",cluster=\"v2\",class=\"2xx\"}"
        ) >= 900,
        "{m}"
    );

    // SIGHUP: the canary goes to 50% without a restart
    let log = f.reload(&config("route", &services(&cert, &key, 50)));
    assert!(log.contains("reload ok"), "{log}");
    let file = url_file(&dir, "half.curl", "https://www.test/c", 200);
    let out = curl_file(&file, 0, "%header{x-backend}\n");
    let t = tally(&out);
    assert_eq!(t.get("backend3").copied(), Some(100), "{t:?}");

    // a reload the pool refuses (a route to an unknown cluster) keeps everything running
    let bad = services(&cert, &key, 50).replace("cluster: api\n", "cluster: nope\n");
    let log = f.reload(&config("route", &bad));
    assert!(log.contains("reload failed"), "{log}");
    let out = curl(&["https://api.test/api/z"]);
    assert!(out.starts_with("backend1 path=/api/z"), "{out}");

    let log = f.stop();
    assert!(log.contains("L7 pool stopped"), "{log}");
}

/// A raw exchange from the client: sends `parts` (waiting `gap` between them), then reads
/// until the server closes or `wait` passes. Returns what came back.
fn raw(parts: &[&str], gap_ms: u64, wait_ms: u64) -> String {
    let script = r#"
import socket, sys, time, json
parts = json.loads(sys.argv[1]); gap = int(sys.argv[2]) / 1000; wait = int(sys.argv[3]) / 1000
s = socket.create_connection((sys.argv[4], 80), timeout=5)
try:
    for p in parts:
        s.sendall(p.encode())
        time.sleep(gap)
except OSError:
    pass
s.settimeout(wait)
out = b""
end = time.time() + wait
while time.time() < end:
    try:
        b = s.recv(65536)
    except socket.timeout:
        break
    except OSError:
        out += b"<reset>"
        break
    if not b:
        out += b"<closed>"
        break
    out += b
sys.stdout.write(out.decode("latin-1"))
"#;
    let parts = format!(
        "[{}]",
        parts
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = sh(&mut in_ns(
        "cl",
        &[
            "python3",
            "-c",
            script,
            &parts,
            &gap_ms.to_string(),
            &wait_ms.to_string(),
            VIP,
        ],
    ));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gateway_errors_retries_and_hostile_clients() {
    let _t = Topology::up();
    let dir = test_dir("errors");
    let (cert, key) = certificate(&dir);
    let f = start(
        "errors",
        &dir,
        &config("errors", &services(&cert, &key, 10)),
    );

    // 4. every endpoint down: 503; garbage: 502; hanging past the route timeout: 504
    let code = |path: &str| {
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://www.test{path}"),
        ])
    };
    assert_eq!(code("/down/"), "503");
    assert_eq!(code("/garbage/"), "502");
    let started = Instant::now();
    assert_eq!(code("/hang/"), "504");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // a backend that resets once: the GET succeeds by a retry
    let out = curl(&["-w", " %{http_code}", "https://www.test/flaky/"]);
    assert!(
        out.starts_with("backend1 path=/flaky/") && out.ends_with(" 200"),
        "{out}"
    );
    let m = f.metrics();
    let c = |cluster: &str, what: &str| {
        metric(
            &m,
            &format!("fulcrum_l7_cluster_{what}{{service=\"web\",cluster=\"{cluster}\""),
        )
    };
    assert_eq!(metric(&m, "fulcrum_l7_cluster_gateway_errors_total{service=\"web\",cluster=\"down\",code=\"503\"}"), 1, "{m}");
    assert_eq!(metric(&m, "fulcrum_l7_cluster_gateway_errors_total{service=\"web\",cluster=\"garbage\",code=\"502\"}"), 1, "{m}");
    assert_eq!(metric(&m, "fulcrum_l7_cluster_gateway_errors_total{service=\"web\",cluster=\"hang\",code=\"504\"}"), 1, "{m}");
    assert_eq!(c("flaky", "retries_total"), 1, "{m}");
    // active health checks run from fulcrum's host through the kernel interface: the
    // closed ports of `down` fail their TCP probes (panic mode then sends to both, so
    // its answer stays 503); `garbage` has no check
    assert_eq!(c("garbage", "endpoints_failing_checks"), 0, "{m}");
    let t = Instant::now();
    loop {
        let m = f.metrics();
        let failing = metric(
            &m,
            "fulcrum_l7_cluster_endpoints_failing_checks{service=\"web\",cluster=\"down\"}",
        );
        if failing == 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = f.log_text();
    assert!(
        log.contains("of cluster down (service web) is unhealthy: connect refused"),
        "{log}"
    );
    // ... and the admin API shows each endpoint's state
    let text = f.admin_get("/api/l7");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let web = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap_or_else(|| panic!("no service web: {text}"));
    let cluster = |name: &str| {
        web["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no cluster {name}: {text}"))
            .clone()
    };
    let down = cluster("down");
    assert_eq!(down["healthy_endpoints"], 0, "{text}");
    assert_eq!(down["panic"], true, "{text}");
    assert_eq!(down["endpoints"][0]["address"], "10.99.0.11:9", "{text}");
    assert_eq!(down["endpoints"][0]["passing_checks"], false, "{text}");
    assert_eq!(
        cluster("garbage")["endpoints"][0]["passing_checks"],
        true,
        "{text}"
    );
    assert_eq!(code("/down/"), "503");
    assert_eq!(
        metric(
            &m,
            "fulcrum_l7_cluster_responses_total{service=\"web\",cluster=\"flaky\",class=\"2xx\"}"
        ),
        1,
        "{m}"
    );

    // 5. smuggling: Content-Length with Transfer-Encoding, and two differing lengths
    let cl_te = "POST /api/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let out = raw(&[cl_te], 0, 2000);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(!out.contains("smuggled"), "{out}");
    let cl_cl = "POST /api/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd";
    let out = raw(&[cl_cl], 0, 2000);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    // slowloris: a head dribbled out one line a second is cut at header_read_timeout
    // (2s) while another client is served
    let slow = std::thread::spawn(|| {
        let started = Instant::now();
        let out = raw(
            &[
                "GET /api/ HTTP/1.1\r\n",
                "Host: api.test\r\n",
                "X-A: 1\r\n",
                "X-B: 1\r\n",
                "X-C: 1\r\n",
                "X-D: 1\r\n",
                "X-E: 1\r\n",
                "\r\n",
            ],
            1000,
            3000,
        );
        (out, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = curl(&["http://api.test/api/meanwhile"]);
    assert!(out.starts_with("backend1 path=/api/meanwhile"), "{out}");
    let (out, took) = slow.join().unwrap();
    assert!(!out.contains("200 OK"), "the slow head was served: {out}");
    assert!(
        out.contains("<closed>") || out.contains("<reset>") || out.contains(" 408"),
        "{out}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    let out = curl(&["https://api.test/api/after"]);
    assert!(out.starts_with("backend1 path=/api/after"), "{out}");
    let m = f.metrics();
    // CL+TE is refused by fulcrum's framing check (counted); differing duplicate
    // Content-Length is already refused by hyper's parser, before the pool counts it
    assert!(metric(&m, "fulcrum_l7_bad_requests_total") >= 1, "{m}");
    f.stop();
}

/// The subject of the certificate the TLS service at the VIP serves for `www.test`.
fn served_subject() -> String {
    let out = in_ns(
        "cl",
        &[
            "sh",
            "-c",
            &format!(
                "openssl s_client -connect {VIP}:443 -servername www.test </dev/null 2>/dev/null \
                 | openssl x509 -noout -subject"
            ),
        ],
    )
    .output()
    .expect("run openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until the log past `from` holds `n` lines containing `what`.
fn wait_log(f: &Fulcrum, from: usize, what: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = f.log_text();
        let new = text[from.min(text.len())..].to_owned();
        if new.lines().filter(|l| l.contains(what)).count() >= n {
            return new;
        }
        assert!(Instant::now() < deadline, "no {what:?} in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watched_files_reload_a_renewed_certificate_and_refuse_a_bad_edit_without_a_signal() {
    let _t = Topology::up();
    let dir = test_dir("watch");
    let (cert, key) = certificate(&dir);
    let config_path = dir.join("fulcrum.yaml");
    let yaml = config("watch", &services(&cert, &key, 10));
    std::fs::write(&config_path, &yaml).unwrap();
    let f = Fulcrum::start_with_args(PREFIX, "watch", &config_path, &["--watch", "200ms"]);
    assert!(
        f.log_text().contains("watching 3 file(s) for changes"),
        "{}",
        f.log_text()
    );
    assert_eq!(served_subject(), "subject=CN = www.test");

    // a renewal as certbot or cert-manager makes it: new files renamed over the old
    // ones, the certificate first; the watch waits for them to hold still
    let mark = f.log_text().len();
    let (new_cert, new_key) = certificate_named(&dir, "renewed", "renewed.test");
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    let new = wait_log(&f, mark, "reload ok", 1);
    assert!(new.contains("changed on disk:"), "{new}");
    assert!(new.contains("web.crt") && new.contains("web.key"), "{new}");
    assert_eq!(served_subject(), "subject=CN = renewed.test");
    let out = curl(&["https://api.test/api/renewed"]);
    assert!(out.starts_with("backend1 path=/api/renewed"), "{out}");

    // a bad edit is refused once, with its place in the file, and not retried until the
    // file changes again; the running configuration keeps serving
    let mark = f.log_text().len();
    std::fs::write(&config_path, format!("{yaml}bogus_key: 1\n")).unwrap();
    let new = wait_log(&f, mark, "reload failed", 1);
    assert!(new.contains("fulcrum.yaml:"), "{new}");
    std::thread::sleep(Duration::from_millis(1500));
    let new = f.log_text()[mark..].to_owned();
    assert_eq!(new.matches("reload failed").count(), 1, "retried: {new}");
    let out = curl(&["https://api.test/api/still"]);
    assert!(out.starts_with("backend1 path=/api/still"), "{out}");

    // the edit mended: applied (the canary now 50%)
    let mark = f.log_text().len();
    std::fs::write(&config_path, config("watch", &services(&cert, &key, 50))).unwrap();
    wait_log(&f, mark, "reload ok", 1);
    let log = f.stop();
    assert_eq!(common::counter(&log, "reloads"), 2, "{log}");
    assert_eq!(common::counter(&log, "reload_failures"), 1, "{log}");
}
