//! Workers run on the cores the config names, also when `eal_args` choose the lcores
//! themselves (`-l 0,1 --main-lcore 0`, as the benchmark harness does). Then workers are
//! std threads started by the EAL main lcore, whose affinity is its one CPU; each must
//! pin itself to its own core, not to a core of the CPUs it inherited.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The CPUs a thread may run on (`Cpus_allowed_list` of /proc/PID/task/TID/status).
fn allowed_cpus(pid: u32, tid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// The thread ids of `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// Starts fulcrum with `eal_args` (plus the memory arguments) and one worker on `core`;
/// once it runs, reads the CPUs allowed to its main thread and to each thread named
/// `worker`; stops it. Returns (main thread's CPUs, the workers' CPUs, the log).
fn threads_cpus(
    prefix: &str,
    eal: Vec<String>,
    core: u32,
    worker: &str,
) -> (String, Vec<String>, String) {
    let mut eal = eal;
    eal.extend(common::eal_mem_args());
    let eal = eal
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "dpdk:\n  eal_args: [{eal}]\n  mbufs: 8191\n\
         ports:\n  - name: lan\n    device: net_null0\n    address: 10.99.0.2/24\n\
         workers:\n  cores: [{core}]\n  idle: adaptive\n\
         flow_table:\n  capacity: 4096\n\
         admin:\n  listen: 127.0.0.1:0\n\
         services:\n  - name: web\n    vip: 10.99.0.100\n    port: 80\n    protocol: tcp\n    mode: l4\n\
         \x20   forwarding: nat\n    health_check:\n      kind: none\n    backends:\n\
         \x20     - address: 10.99.0.11\n"
    );
    let dir = std::env::temp_dir().join(format!("fulcrum-test-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("fulcrum.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let log = dir.join("fulcrum.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(common::fulcrum_bin())
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("start fulcrum");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let workers = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("workers running") {
            break threads_named(pid, worker);
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("fulcrum exited ({st}) before starting:\n{text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fulcrum did not start in time:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let main_cpus = allowed_cpus(pid, &pid.to_string());
    let worker_cpus: Vec<String> = workers.iter().map(|t| allowed_cpus(pid, t)).collect();
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let stopped = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > stopped {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    common::remove_dpdk_files(prefix);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (main_cpus, worker_cpus, text)
}

fn base_eal(prefix: &str) -> Vec<String> {
    vec![
        "--no-pci".to_owned(),
        format!("--file-prefix={prefix}"),
        "--vdev=net_null0".to_owned(),
        "--log-level=*:warning".to_owned(),
    ]
}

#[test]
fn workers_pinned_to_their_cores_when_eal_args_choose_lcores() {
    let host = fulcrum::config::Host::detect();
    // the last online CPU: on any machine with two or more, not the main lcore's CPU 0
    let core = *host.online_cpus.last().unwrap();
    let mut eal = base_eal("flc-pin");
    let lcores = if core == 0 {
        "0".to_owned()
    } else {
        format!("0,{core}")
    };
    eal.extend([
        "-l".to_owned(),
        lcores,
        "--main-lcore".to_owned(),
        "0".to_owned(),
    ]);
    let (main_cpus, worker_cpus, text) = threads_cpus("flc-pin", eal, core, "fulcrum-w0");
    assert_eq!(
        main_cpus, "0",
        "the EAL main lcore is pinned to CPU 0:\n{text}"
    );
    assert_eq!(
        worker_cpus,
        vec![core.to_string()],
        "one worker fulcrum-w0, on its configured core {core}:\n{text}"
    );
    assert!(!text.contains("could not be pinned"), "{text}");
}

#[test]
fn the_control_thread_keeps_off_the_workers_cores_by_default() {
    let host = fulcrum::config::Host::detect();
    let core = *host.online_cpus.last().unwrap();
    let (main_cpus, worker_cpus, text) =
        threads_cpus("flc-ctl", base_eal("flc-ctl"), core, "rte-worker-1");
    assert_eq!(
        worker_cpus,
        vec![core.to_string()],
        "worker lcore 1 on its configured core {core}:\n{text}"
    );
    let others = fulcrum::config::Host {
        online_cpus: host
            .online_cpus
            .iter()
            .copied()
            .filter(|&c| c != core)
            .collect(),
    };
    let want = if others.online_cpus.is_empty() {
        host.cpu_list()
    } else {
        others.cpu_list()
    };
    assert_eq!(
        main_cpus, want,
        "the control thread floats over the other CPUs:\n{text}"
    );
}
