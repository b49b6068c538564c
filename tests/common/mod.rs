//! Shared harness of the namespace integration tests: the topology of
//! `tests/netns/topo.sh`, a running fulcrum, and the test client.
//!
//! These tests need root, DPDK and network namespaces; `scripts/test.sh` sets them up
//! and runs them one at a time (they share namespace names).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespace, interface and DPDK file prefix of the suites that use the defaults;
/// a suite that runs beside them passes its own (`Topology::up_in`, `Fulcrum::start_file_in`,
/// `topo_config_with`).
pub const PREFIX: &str = "flc";
pub const VIP4: &str = "10.99.0.100";
pub const VIP6: &str = "fd99::100";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fulcrum_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fulcrum"))
}

/// EAL memory arguments: `FULCRUM_EAL_MEM` from scripts/setup.sh ("" with hugepages).
pub fn eal_mem_args() -> Vec<String> {
    std::env::var("FULCRUM_EAL_MEM")
        .unwrap_or_else(|_| "--no-huge -m 1024".into())
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// The namespace topology, torn down on drop.
pub struct Topology {
    pub mode: String,
    prefix: String,
}

/// Tears down the topology of `prefix` (what a failed earlier run may have left).
pub fn topology_down(prefix: &str) {
    let _ = Command::new("bash")
        .arg(root().join("tests/netns/topo.sh"))
        .arg("down")
        .env("FLC_PREFIX", prefix)
        .status();
}

impl Topology {
    pub fn up(mode: &str, qpairs: u32) -> Topology {
        Self::up_in(PREFIX, mode, qpairs)
    }

    /// The topology with namespaces and interfaces named `prefix-...`.
    pub fn up_in(prefix: &str, mode: &str, qpairs: u32) -> Topology {
        let mut c = Command::new("bash");
        c.arg(root().join("tests/netns/topo.sh"))
            .args(["up", mode, &qpairs.to_string()])
            .env("FLC_PREFIX", prefix);
        sh(&mut c);
        Topology {
            mode: mode.into(),
            prefix: prefix.into(),
        }
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        topology_down(&self.prefix);
    }
}

/// A fulcrum process running in the LB namespace.
pub struct Fulcrum {
    child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
    file_prefix: String,
    prefix: String,
}

/// A YAML configuration for the topology: one port on lb0 with `address`, `cores` workers.
pub fn topo_config(name: &str, address: &str, cores: &[u32], services: &str) -> String {
    topo_config_with(PREFIX, name, address, cores, "", "", services)
}

/// `topo_config` for the topology of `prefix`, with `port_extra` (indented YAML lines of
/// the port, e.g. its `kernel_interface`) and `sections` (top-level YAML, e.g. `l7:`).
pub fn topo_config_with(
    prefix: &str,
    name: &str,
    address: &str,
    cores: &[u32],
    port_extra: &str,
    sections: &str,
    services: &str,
) -> String {
    let mut eal = vec![
        "--no-pci".to_owned(),
        format!("--file-prefix={prefix}-{name}"),
        format!("--vdev=net_af_packet0,iface=lb0,qpairs={}", cores.len()),
        "--log-level=*:warning".to_owned(),
    ];
    eal.extend(eal_mem_args());
    let eal = eal
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let cores = cores
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "dpdk:\n  eal_args: [{eal}]\nports:\n  - name: lan\n    device: net_af_packet0\n    address: {address}\n{port_extra}\
         workers:\n  cores: [{cores}]\nflow_table:\n  capacity: 65536\nadmin:\n  listen: 127.0.0.1:0\n{sections}services:\n{services}"
    )
}

impl Fulcrum {
    /// Writes `yaml` to a file and starts fulcrum on it; waits until its workers run.
    pub fn start(name: &str, yaml: &str) -> Fulcrum {
        let dir = std::env::temp_dir().join(format!("fulcrum-test-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("fulcrum.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self::start_file(name, &config)
    }

    pub fn start_file(name: &str, config: &Path) -> Fulcrum {
        Self::start_file_in(PREFIX, name, config)
    }

    /// Starts fulcrum on `config` in the LB namespace of the topology of `prefix`.
    pub fn start_file_in(prefix: &str, name: &str, config: &Path) -> Fulcrum {
        Self::start_with_args(prefix, name, config, &[])
    }

    /// [`start_file_in`](Self::start_file_in) with more arguments after `run -c FILE`.
    pub fn start_with_args(prefix: &str, name: &str, config: &Path, extra: &[&str]) -> Fulcrum {
        let dir = config.parent().unwrap().to_owned();
        let log = dir.join("fulcrum.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = in_ns(&format!("{prefix}-lb"), &[])
            .arg(fulcrum_bin())
            .args(["run", "-c"])
            .arg(config)
            .args(extra)
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start fulcrum");
        let mut f = Fulcrum {
            child: Some(child),
            config: config.to_owned(),
            log,
            file_prefix: format!("{prefix}-{name}"),
            prefix: prefix.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = f.log_text();
            if text.contains("workers running") {
                break;
            }
            if let Some(st) = f.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("fulcrum exited ({st}) before starting:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "fulcrum did not start in time:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        f
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        sh(Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]));
    }

    /// Replaces the config file and sends SIGHUP; waits for the reload to be logged.
    pub fn reload(&self, yaml: &str) -> String {
        let before = self.log_text().len();
        std::fs::File::create(&self.config)
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        self.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log_text();
            let new = &text[before.min(text.len())..];
            if new.contains("reload") && new.contains('\n') {
                std::thread::sleep(Duration::from_millis(300));
                return self.log_text()[before..].to_owned();
            }
            assert!(Instant::now() < deadline, "no reload logged:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The admin API's /metrics, fetched from the LB namespace.
    pub fn metrics(&self) -> String {
        self.admin_get("/metrics")
    }

    /// A GET of the admin API's `path`, fetched from the LB namespace.
    pub fn admin_get(&self, path: &str) -> String {
        let log = self.log_text();
        let addr = log
            .lines()
            .find_map(|l| l.split("admin API listening on http://").nth(1))
            .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"))
            .trim()
            .to_owned();
        let out = sh(
            in_ns(&format!("{}-lb", self.prefix), &["curl", "-s", "-m", "5"])
                .arg(format!("http://{addr}{path}")),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGINT, wait for exit 0, return the log (with the final counters).
    pub fn stop(mut self) -> String {
        self.signal("INT");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fulcrum did not exit after SIGINT:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = self.log_text();
        assert!(status.success(), "fulcrum exited with {status}:\n{text}");
        text
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_dpdk_files(&self.file_prefix);
    }
}

/// Removes the hugepage files and the runtime directory of DPDK file prefix `prefix`.
pub fn remove_dpdk_files(prefix: &str) {
    if let Ok(rd) = std::fs::read_dir("/dev/hugepages") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

/// A final counter `name` from fulcrum's exit report (`counter NAME VALUE` lines).
pub fn counter(log: &str, name: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.strip_prefix("counter "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().parse::<u64>().unwrap_or(0))
        .sum()
}

/// The test client's result.
#[derive(Debug, Default)]
pub struct Spread {
    pub backends: BTreeMap<String, u64>,
    pub seen_as: BTreeMap<String, u64>,
    pub failed: u64,
    pub raw: String,
}

/// Sends `n` requests from the client namespace, each on a new connection.
pub fn requests(host: &str, n: u32, extra: &[&str]) -> Spread {
    let mut c = in_ns(&format!("{PREFIX}-cl"), &["python3"]);
    c.arg(root().join("tests/netns/client.py"))
        .args([host, "80", &n.to_string()])
        .args(extra)
        .stderr(Stdio::inherit());
    let out = sh(&mut c);
    let raw = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let v: serde_json::Value = serde_json::from_str(&raw).expect("client JSON");
    let map = |k: &str| -> BTreeMap<String, u64> {
        v[k].as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Spread {
        backends: map("backends"),
        seen_as: map("seen_as"),
        failed: v["failed"].as_u64().unwrap_or(0),
        raw,
    }
}

/// Asserts each named backend's share is within `tol` (relative) of its expected share.
pub fn assert_spread(s: &Spread, expected: &[(&str, f64)], tol: f64) {
    let total: u64 = s.backends.values().sum();
    assert!(total > 0, "no successful requests: {}", s.raw);
    let wsum: f64 = expected.iter().map(|(_, w)| w).sum();
    for (name, w) in expected {
        let want = w / wsum;
        let got = *s.backends.get(*name).unwrap_or(&0) as f64 / total as f64;
        assert!(
            (got - want).abs() <= tol * want,
            "{name}: share {got:.3}, expected {want:.3} ±{:.0}%: {}",
            tol * 100.0,
            s.raw
        );
    }
}
