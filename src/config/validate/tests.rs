//! One test per rule: each feeds a small file and asserts the exact diagnostics.

use std::time::Duration;

use super::*;
use crate::config::{from_str, Diagnostic, Loaded};

/// A valid file; tests edit it. Line numbers of note:
/// 4 `- name: lan`, 6 `address`, 8 `cores`, 10 `- name: web`, 11 `vip`, 12 `port`,
/// 13 `forwarding`, 14 `backends`, 15 `- address`.
const BASE: &str = "\
dpdk:
  eal_args: [\"--no-pci\", \"--vdev=net_af_packet0,iface=lb0\"]
ports:
  - name: lan
    device: net_af_packet0
    address: 10.0.0.5/24
workers:
  cores: [1]
services:
  - name: web
    vip: 10.0.0.100
    port: 80
    forwarding: dsr
    backends:
      - address: 10.0.0.11
";

fn check(yaml: &str) -> Result<Loaded, Vec<Diagnostic>> {
    from_str("t.yaml", yaml, &Host::with_cpus(4))
}

/// `BASE` with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?}");
    BASE.replacen(from, to, 1)
}

/// The diagnostics as `LINE:COL: message` (warnings marked), or `ok` plus warnings.
fn diagnostics(yaml: &str) -> Vec<String> {
    let items = match check(yaml) {
        Ok(loaded) => loaded.warnings,
        Err(items) => items,
    };
    items
        .iter()
        .map(|d| {
            let text = d.to_string();
            text.strip_prefix("t.yaml:")
                .unwrap_or(&text)
                .trim_start()
                .to_owned()
        })
        .collect()
}

fn config(yaml: &str) -> Config {
    match check(yaml) {
        Ok(loaded) => loaded.config,
        Err(items) => panic!("{items:#?}"),
    }
}

#[test]
fn base_is_valid_and_defaults_apply() {
    assert_eq!(diagnostics(BASE), Vec::<String>::new());
    let c = config(BASE);
    assert_eq!(
        c.dpdk.eal_args,
        ["--no-pci", "--vdev=net_af_packet0,iface=lb0"]
    );
    let port = &c.ports[0];
    assert_eq!(port.address, IpAddr::from([10, 0, 0, 5]));
    assert_eq!(port.prefix_len, 24);
    assert_eq!((port.mtu, port.rx_desc, port.tx_desc), (1500, 1024, 1024));
    assert_eq!(port.gateway, None);
    assert_eq!(c.workers.cores, [1]);
    assert_eq!(c.workers.burst, 32);
    assert_eq!(c.workers.idle, IdlePolicy::Adaptive);
    assert_eq!(c.flow_table.capacity, 1_048_576);
    assert_eq!(
        c.flow_table.tcp_established_timeout,
        Duration::from_secs(300)
    );
    assert_eq!(c.flow_table.tcp_transitory_timeout, Duration::from_secs(15));
    assert_eq!(c.flow_table.udp_timeout, Duration::from_secs(30));
    assert_eq!(c.admin.listen, SocketAddr::from(([127, 0, 0, 1], 9100)));
    assert_eq!(c.admin.token, None);
    let s = &c.services[0];
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.mode, Mode::L4);
    assert_eq!(s.forwarding, Some(Forwarding::Dsr));
    assert_eq!(s.port, Some(80));
    assert_eq!(s.maglev_table_size, 65_537);
    assert_eq!(
        s.backends,
        [BackendConfig {
            address: IpAddr::from([10, 0, 0, 11]),
            weight: 1,
            port: None
        }]
    );
    assert_eq!(s.health_check, HealthCheckConfig::default());
    assert_eq!(s.health_check.kind, HealthCheckKind::None);
    assert_eq!(s.panic_threshold, 50);
    assert_eq!(s.drain_timeout, Duration::from_secs(30));
    assert_eq!(s.on_unhealthy, OnUnhealthy::Keep);
    assert_eq!(s.gue_port, 6080);
    assert_eq!(s.l7, None);
}

#[test]
fn every_key_is_read() {
    let yaml = "\
dpdk:
  eal_args: [\"--vdev=net_af_packet0,iface=lb0\"]
ports:
  - name: lan
    device: net_af_packet0
    address: fd00::5/64
    gateway: fd00::1
    neighbors:
      - address: fd00::11
        mac: \"02:00:00:00:00:11\"
    mtu: 9000
    rx_desc: 2048
    tx_desc: 512
workers:
  cores: [0, 2]
  burst: 64
  idle: poll
flow_table:
  capacity: 4096
  tcp_established_timeout: 1h
  tcp_transitory_timeout: 500ms
  udp_timeout: 2m
admin:
  listen: \"[::1]:9200\"
  token: s3cret
services:
  - name: dns
    vip: fd00::100
    port: 53
    protocol: udp
    mode: l4
    forwarding: gue
    gue_port: 7000
    maglev_table_size: 251
    backends:
      - address: fd00::11
        weight: 0
      - address: fd00::12
        weight: 65535
    health_check:
      kind: http
      port: 8080
      path: /healthz
      interval: 5s
      timeout: 300ms
      healthy_threshold: 1
      unhealthy_threshold: 100
    panic_threshold: 0
    drain_timeout: 0s
    on_unhealthy: reset
";
    assert_eq!(diagnostics(yaml), Vec::<String>::new());
    let c = config(yaml);
    let p = &c.ports[0];
    assert_eq!(p.gateway, "fd00::1".parse().ok());
    assert_eq!(
        p.neighbors,
        [Neighbor {
            address: "fd00::11".parse().unwrap_or(IpAddr::from([0; 4])),
            mac: [2, 0, 0, 0, 0, 0x11]
        }]
    );
    assert_eq!((p.mtu, p.rx_desc, p.tx_desc), (9000, 2048, 512));
    assert_eq!(c.workers.cores, [0, 2]);
    assert_eq!((c.workers.burst, c.workers.idle), (64, IdlePolicy::Poll));
    assert_eq!(
        c.flow_table,
        FlowTableConfig {
            capacity: 4096,
            tcp_established_timeout: Duration::from_secs(3600),
            tcp_transitory_timeout: Duration::from_millis(500),
            udp_timeout: Duration::from_secs(120),
        }
    );
    assert_eq!(
        c.admin.listen,
        "[::1]:9200".parse().unwrap_or(c.admin.listen)
    );
    assert_eq!(c.admin.listen.port(), 9200);
    assert_eq!(c.admin.token.as_deref(), Some("s3cret"));
    let s = &c.services[0];
    assert_eq!(
        (s.protocol, s.forwarding, s.gue_port, s.maglev_table_size),
        (Protocol::Udp, Some(Forwarding::Gue), 7000, 251)
    );
    assert_eq!(
        s.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [0, 65535]
    );
    assert_eq!(
        s.health_check,
        HealthCheckConfig {
            kind: HealthCheckKind::Http,
            port: Some(8080),
            path: "/healthz".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_millis(300),
            healthy_threshold: 1,
            unhealthy_threshold: 100,
        }
    );
    assert_eq!(s.panic_threshold, 0);
    assert_eq!(s.drain_timeout, Duration::ZERO);
    assert_eq!(s.on_unhealthy, OnUnhealthy::Reset);
}

// ---- shape errors from serde: the first one, with its position ------------------------

#[test]
fn unknown_key() {
    assert_eq!(
        diagnostics(&edit("    port: 80\n", "    port: 80\n    colour: red\n")),
        [
            "13:5: unknown field `colour`, expected one of name, vip, port, protocol, mode, \
          forwarding, maglev_table_size, backends, health_check, panic_threshold, \
          drain_timeout, on_unhealthy, outlier_detection, gue_port, tls, routes, clusters"
        ]
    );
    assert_eq!(
        diagnostics(&format!("{BASE}extra: 1\n")),
        [
            "16:1: unknown field `extra`, expected one of dpdk, ports, workers, flow_table, \
          admin, services, l7"
        ]
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        diagnostics(&edit("port: 80", "port: http")),
        ["12:11: expected an integer"]
    );
    assert_eq!(
        diagnostics(&edit("vip: 10.0.0.100", "vip: [10.0.0.100]")),
        ["11:10: expected a single value (a string), not a list or mapping"]
    );
    assert_eq!(
        diagnostics(&edit("forwarding: dsr", "forwarding: tunnel")),
        ["13:17: unknown variant `tunnel`, expected one of dsr, ipip, gue, nat"]
    );
}

#[test]
fn missing_required_key() {
    assert_eq!(
        diagnostics(&edit("    device: net_af_packet0\n", "")),
        ["5:5: missing field `device`"]
    );
    assert_eq!(
        diagnostics(&edit("workers:\n  cores: [1]\n", "")),
        ["7:1: missing field `workers`"]
    );
    assert_eq!(
        diagnostics(&edit("vip: 10.0.0.100", "vip:")),
        ["11:8: missing value: expected string"]
    );
}

#[test]
fn yaml_syntax_and_empty_file() {
    assert_eq!(
        diagnostics(""),
        ["the file is empty: expected a mapping with `ports`, `workers` and `services`"]
    );
    assert_eq!(
        diagnostics(&edit("    port: 80\n", "    port: 80\n    port: 81\n")),
        ["13:5: duplicate mapping key: port"]
    );
    let broken = diagnostics(&edit("iface=lb0\"]", "iface=lb0\""));
    assert_eq!(broken, ["3:6: illegal placement of ':' indicator"]);
}

// ---- validation: every problem at once ----------------------------------------------

#[test]
fn reports_every_problem_in_file_order() {
    let yaml = BASE
        .replace("cores: [1]", "cores: [1, 9]")
        .replace(
            "    port: 80\n",
            "    port: 80\n    maglev_table_size: 100\n",
        )
        .replace(
            "      - address: 10.0.0.11\n",
            "      - address: 10.0.0.11\n        weight: 70000\n      - address: 10.0.0.300\n",
        );
    assert_eq!(
        diagnostics(&yaml),
        [
            "8:14: core 9 is not online on this host (online CPUs: 0-3)",
            "13:24: maglev_table_size 100 is not prime (the next prime is 101)",
            "17:17: weight must be between 0 and 65535, found 70000",
            "18:18: backend address: expected an IPv4 or IPv6 address, found `10.0.0.300`",
        ]
    );
}

#[test]
fn table_size_prime_and_large_enough() {
    assert_eq!(
        diagnostics(&edit(
            "port: 80\n",
            "port: 80\n    maglev_table_size: 65536\n"
        )),
        ["13:24: maglev_table_size 65536 is not prime (the next prime is 65537)"]
    );
    assert_eq!(
        diagnostics(&edit("port: 80\n", "port: 80\n    maglev_table_size: 1\n")),
        ["13:24: maglev_table_size must be between 2 and 16777216, found 1"]
    );
    assert_eq!(
        diagnostics(&edit("port: 80\n", "port: 80\n    maglev_table_size: 2\n")),
        ["13:24: warning: maglev_table_size 2 is less than 100 entries per backend (1 backends): load will be uneven"]
    );
    let two = BASE.replace(
        "      - address: 10.0.0.11\n",
        "      - address: 10.0.0.11\n      - address: 10.0.0.12\n",
    );
    assert_eq!(
        diagnostics(&two.replace("port: 80\n", "port: 80\n    maglev_table_size: 2\n")),
        ["13:24: maglev_table_size 2 must be larger than the number of backends (2)"]
    );
    // A warning does not refuse the file.
    assert!(check(&edit(
        "port: 80\n",
        "port: 80\n    maglev_table_size: 101\n"
    ))
    .is_ok());
    assert_eq!(
        diagnostics(&edit(
            "port: 80\n",
            "port: 80\n    maglev_table_size: 101\n"
        )),
        Vec::<String>::new()
    );
}

const SECOND_SERVICE: &str = "  - name: web2
    vip: 10.0.0.100
    port: 80
    forwarding: dsr
    backends:
      - address: 10.0.0.12
";

#[test]
fn duplicate_vip_port_protocol() {
    assert_eq!(
        diagnostics(&format!("{BASE}{SECOND_SERVICE}")),
        ["17:10: service `web2` takes the same vip, port and protocol as service `web` (line 11)"]
    );
    // Another protocol or port is fine; "every port" overlaps any port.
    let udp = SECOND_SERVICE.replace("port: 80\n", "port: 80\n    protocol: udp\n");
    assert_eq!(diagnostics(&format!("{BASE}{udp}")), Vec::<String>::new());
    let other_port = SECOND_SERVICE.replace("port: 80", "port: 443");
    assert_eq!(
        diagnostics(&format!("{BASE}{other_port}")),
        Vec::<String>::new()
    );
    let all_ports = SECOND_SERVICE.replace("    port: 80\n", "");
    assert_eq!(
        diagnostics(&format!("{BASE}{all_ports}")),
        ["17:10: service `web2` takes the same vip, port and protocol as service `web` (line 11)"]
    );
}

#[test]
fn duplicate_service_name() {
    let again = SECOND_SERVICE
        .replace("name: web2", "name: web")
        .replace("port: 80", "port: 443");
    assert_eq!(
        diagnostics(&format!("{BASE}{again}")),
        ["16:11: service name `web` is already used (line 10)"]
    );
}

fn six(forwarding: &str, vip: &str, backend: &str) -> Vec<String> {
    let yaml = BASE
        .replace(
            "    address: 10.0.0.5/24\n",
            "    address: 10.0.0.5/24\n  - name: lan6\n    device: net_af_packet1\n    address: fd00::5/64\n",
        )
        .replace(",iface=lb0\"]", ",iface=lb0\", \"--vdev=net_af_packet1,iface=lb1\"]")
        .replace("forwarding: dsr", &format!("forwarding: {forwarding}"))
        .replace("vip: 10.0.0.100", &format!("vip: {vip}"))
        .replace("address: 10.0.0.11", &format!("address: {backend}"));
    diagnostics(&yaml)
}

#[test]
fn backend_family_per_forwarding_mode() {
    // Lines: 3 more for the second port; the backend is on 18, column 18.
    assert_eq!(
        six("dsr", "10.0.0.100", "fd00::11"),
        ["18:18: backend fd00::11 is IPv6 but the vip 10.0.0.100 is IPv4: dsr needs backends of the vip's family"]
    );
    assert_eq!(
        six("nat", "fd00::100", "10.0.0.11"),
        ["18:18: backend 10.0.0.11 is IPv4 but the vip fd00::100 is IPv6: nat needs backends of the vip's family"]
    );
    assert_eq!(six("dsr", "fd00::100", "fd00::11"), Vec::<String>::new());
    // ipip and gue: 4in4, 6in6, 4in6 allowed; 6in4 refused.
    for mode in ["ipip", "gue"] {
        assert_eq!(six(mode, "10.0.0.100", "10.0.0.11"), Vec::<String>::new());
        assert_eq!(six(mode, "fd00::100", "fd00::11"), Vec::<String>::new());
        assert_eq!(six(mode, "10.0.0.100", "fd00::11"), Vec::<String>::new());
        assert_eq!(
            six(mode, "fd00::100", "10.0.0.11"),
            [format!("18:18: backend 10.0.0.11 is IPv4 but the vip fd00::100 is IPv6: {mode} cannot carry IPv6 in IPv4 (4in4, 6in6 and 4in6 are supported)")]
        );
    }
}

#[test]
fn backend_needs_a_port_of_its_family() {
    assert_eq!(
        diagnostics(
            &edit("forwarding: dsr", "forwarding: ipip")
                .replace("address: 10.0.0.11", "address: fd00::11")
        ),
        ["15:18: backend fd00::11 is IPv6 but no port has an IPv6 address to reach it"]
    );
}

#[test]
fn backend_is_not_the_vip_or_a_port_address() {
    assert_eq!(
        diagnostics(&edit("address: 10.0.0.11", "address: 10.0.0.100")),
        ["15:18: backend 10.0.0.100 is the service's vip"]
    );
    assert_eq!(
        diagnostics(&edit("address: 10.0.0.11", "address: 10.0.0.5")),
        ["15:18: backend 10.0.0.5 is the address of port `lan`"]
    );
    assert_eq!(
        diagnostics(&edit("vip: 10.0.0.100", "vip: 10.0.0.5")),
        ["11:10: vip 10.0.0.5 is the address of port `lan`"]
    );
    assert_eq!(
        diagnostics(&edit("vip: 10.0.0.100", "vip: 224.0.0.1")),
        ["11:10: vip 224.0.0.1 is not a unicast address"]
    );
}

#[test]
fn duplicate_backend() {
    let twice = edit(
        "      - address: 10.0.0.11\n",
        "      - address: 10.0.0.11\n      - address: 10.0.0.11\n",
    );
    assert_eq!(
        diagnostics(&twice),
        ["16:18: backend 10.0.0.11 is listed twice (line 15)"]
    );
}

#[test]
fn cores_exist_and_are_unique() {
    assert_eq!(
        diagnostics(&edit("cores: [1]", "cores: [1, 4]")),
        ["8:14: core 4 is not online on this host (online CPUs: 0-3)"]
    );
    assert_eq!(
        diagnostics(&edit("cores: [1]", "cores: [1, 2, 1]")),
        ["8:17: core 1 is listed twice (line 8)"]
    );
    assert_eq!(
        diagnostics(&edit("cores: [1]", "cores: [-1]")),
        ["8:11: core must be a CPU number, found -1"]
    );
    let sparse = Host {
        online_cpus: vec![0, 2],
    };
    let err = from_str("t.yaml", BASE, &sparse).err().unwrap_or_default();
    assert_eq!(
        err.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["t.yaml:8:11: core 1 is not online on this host (online CPUs: 0,2)"]
    );
}

#[test]
fn no_ports_no_workers() {
    assert_eq!(
        diagnostics(&edit("cores: [1]", "cores: []")),
        ["8:10: no workers: `cores` must list at least one core"]
    );
    let no_ports = "ports: []\nworkers:\n  cores: [1]\n";
    assert_eq!(
        diagnostics(no_ports),
        ["1:8: no ports: at least one port is needed"]
    );
}

const SECOND_PORT: &str = "  - name: lan2
    device: net_af_packet1
    address: 10.1.0.5/24
";

fn with_second_port(port: &str) -> String {
    edit(
        "    address: 10.0.0.5/24\n",
        &format!("    address: 10.0.0.5/24\n{port}"),
    )
    .replace(
        ",iface=lb0\"]",
        ",iface=lb0\", \"--vdev=net_af_packet1,iface=lb1\"]",
    )
}

#[test]
fn ports_unique_by_name_and_device() {
    assert_eq!(
        diagnostics(&with_second_port(SECOND_PORT)),
        Vec::<String>::new()
    );
    assert_eq!(
        diagnostics(&with_second_port(&SECOND_PORT.replace("lan2", "lan"))),
        ["7:11: port name `lan` is already used (line 4)"]
    );
    assert_eq!(
        diagnostics(&with_second_port(
            &SECOND_PORT.replace("net_af_packet1", "net_af_packet0")
        )),
        ["8:13: device `net_af_packet0` is already used by another port (line 5)"]
    );
}

#[test]
fn devices_exist_in_eal_args() {
    assert_eq!(
        diagnostics(&edit("device: net_af_packet0", "device: net_af_packet7")),
        ["5:13: device `net_af_packet7` is neither a PCI address (such as 0000:3b:00.0) nor created by a `--vdev=net_af_packet7,...` in dpdk.eal_args"]
    );
    assert_eq!(
        diagnostics(&edit("device: net_af_packet0", "device: 0000:3b:00.0")),
        ["5:13: device 0000:3b:00.0 is a PCI device but dpdk.eal_args has --no-pci"]
    );
    let pci = |args: &str| {
        diagnostics(
            &edit("device: net_af_packet0", "device: \"0000:3b:00.0\"")
                .replace("[\"--no-pci\", \"--vdev=net_af_packet0,iface=lb0\"]", args),
        )
    };
    assert_eq!(pci("[]"), Vec::<String>::new());
    assert_eq!(pci("[\"-a\", \"0000:3b:00.0\"]"), Vec::<String>::new());
    assert_eq!(
        pci("[\"-a3b:00.0,rxq_cqe_comp_en=0\"]"),
        Vec::<String>::new()
    );
    assert_eq!(pci("[\"--allow=0000:3B:00.0\"]"), Vec::<String>::new());
    assert_eq!(
        pci("[\"-a\", \"0000:3b:00.1\"]"),
        ["5:13: device 0000:3b:00.0 is not in the EAL allow list (`-a` in dpdk.eal_args)"]
    );
    // `--vdev NAME,...` as two arguments.
    assert_eq!(
        diagnostics(&edit(
            "\"--vdev=net_af_packet0,iface=lb0\"",
            "\"--vdev\", \"net_af_packet0,iface=lb0\""
        )),
        Vec::<String>::new()
    );
}

fn with_neighbor(address: &str, mac: &str) -> String {
    edit(
        "    address: 10.0.0.5/24\n",
        &format!("    address: 10.0.0.5/24\n    neighbors:\n      - address: {address}\n        mac: \"{mac}\"\n"),
    )
}

#[test]
fn neighbors() {
    assert_eq!(
        diagnostics(&with_neighbor("10.0.0.11", "02:00:00:00:00:11")),
        Vec::<String>::new()
    );
    assert_eq!(
        diagnostics(&with_neighbor("10.0.0.11", "02:00:00:00:11")),
        ["9:14: mac: expected a MAC address such as 02:00:00:00:00:11, found `02:00:00:00:11`"]
    );
    assert_eq!(
        diagnostics(&with_neighbor("10.0.0.11", "ff:ff:ff:ff:ff:ff")),
        ["9:14: mac: MAC address ff:ff:ff:ff:ff:ff is a multicast or broadcast address"]
    );
    assert_eq!(
        diagnostics(&with_neighbor("fd00::11", "02:00:00:00:00:11")),
        ["8:18: neighbor fd00::11 is IPv6 but the port address 10.0.0.5/24 is IPv4"]
    );
    let twice = with_neighbor("10.0.0.11", "02:00:00:00:00:11").replace(
        "        mac: \"02:00:00:00:00:11\"\n",
        "        mac: \"02:00:00:00:00:11\"\n      - address: 10.0.0.11\n        mac: \"02:00:00:00:00:12\"\n",
    );
    assert_eq!(
        diagnostics(&twice),
        ["10:18: neighbor 10.0.0.11 is listed twice (line 8)"]
    );
}

#[test]
fn port_address_gateway_mtu_descriptors() {
    assert_eq!(
        diagnostics(&edit("address: 10.0.0.5/24", "address: 10.0.0.5")),
        ["6:14: address: expected an address with a prefix length such as 10.0.0.5/24 or fd00::5/64, found `10.0.0.5`"]
    );
    assert_eq!(
        diagnostics(&edit("address: 10.0.0.5/24", "address: 10.0.0.5/33")),
        ["6:14: address: prefix length /33 is longer than 32 bits for `10.0.0.5/33`"]
    );
    let port_key = |line: &str| {
        edit(
            "    address: 10.0.0.5/24\n",
            &format!("    address: 10.0.0.5/24\n    {line}\n"),
        )
    };
    assert_eq!(
        diagnostics(&port_key("gateway: 10.0.0.1")),
        Vec::<String>::new()
    );
    assert_eq!(
        diagnostics(&port_key("gateway: 10.0.1.1")),
        ["7:14: gateway 10.0.1.1 is not on the port's subnet 10.0.0.5/24"]
    );
    assert_eq!(
        diagnostics(&port_key("gateway: fd00::1")),
        ["7:14: gateway fd00::1 is IPv6 but the port address 10.0.0.5/24 is IPv4"]
    );
    assert_eq!(
        diagnostics(&port_key("mtu: 67")),
        ["7:10: mtu must be between 68 and 9000, found 67"]
    );
    assert_eq!(
        diagnostics(&port_key("rx_desc: 1000")),
        ["7:14: rx_desc must be a power of two, found 1000"]
    );
    assert_eq!(
        diagnostics(&port_key("tx_desc: 32")),
        ["7:14: tx_desc must be between 64 and 16384, found 32"]
    );
    let v6 = six("dsr", "fd00::100", "fd00::11");
    assert_eq!(v6, Vec::<String>::new());
    let v6_small_mtu = BASE
        .replace("address: 10.0.0.5/24", "address: fd00::5/64\n    mtu: 1280")
        .replace("vip: 10.0.0.100", "vip: fd00::100")
        .replace("address: 10.0.0.11", "address: fd00::11");
    assert_eq!(diagnostics(&v6_small_mtu), Vec::<String>::new());
    assert_eq!(
        diagnostics(&v6_small_mtu.replace("mtu: 1280", "mtu: 1279")),
        ["7:10: mtu 1279 is below 1280, the IPv6 minimum"]
    );
}

#[test]
fn names_are_metric_labels() {
    assert_eq!(
        diagnostics(&edit("name: web", "name: \"web site\"")),
        ["10:11: service name `web site` must be 1 to 64 letters, digits, `_`, `-` or `.`"]
    );
    assert_eq!(
        diagnostics(&edit("name: lan", "name: \"\"")),
        ["4:11: port name `` must be 1 to 64 letters, digits, `_`, `-` or `.`"]
    );
}

#[test]
fn weights_in_range() {
    let weight = |w: &str| {
        diagnostics(&edit(
            "      - address: 10.0.0.11\n",
            &format!("      - address: 10.0.0.11\n        weight: {w}\n"),
        ))
    };
    assert_eq!(weight("65535"), Vec::<String>::new());
    assert_eq!(
        weight("-1"),
        ["16:17: weight must be between 0 and 65535, found -1"]
    );
    assert_eq!(
        weight("0"),
        ["15:7: warning: every backend has weight 0: the service takes no new flows"]
    );
}

fn service_key(line: &str) -> Vec<String> {
    diagnostics(&edit(
        "    port: 80\n",
        &format!("    port: 80\n    {line}\n"),
    ))
}

#[test]
fn panic_threshold_percent() {
    assert_eq!(service_key("panic_threshold: 100"), Vec::<String>::new());
    assert_eq!(
        service_key("panic_threshold: 101"),
        ["13:22: panic_threshold must be between 0 and 100, found 101"]
    );
}

#[test]
fn service_port_range() {
    assert_eq!(
        diagnostics(&edit("port: 80", "port: 0")),
        ["12:11: port must be between 1 and 65535, found 0"]
    );
    assert_eq!(
        diagnostics(&edit("port: 80", "port: 65536")),
        ["12:11: port must be between 1 and 65535, found 65536"]
    );
}

#[test]
fn nat_backend_ports() {
    let nat = |port: &str| {
        diagnostics(&edit("forwarding: dsr", "forwarding: nat").replace(
            "      - address: 10.0.0.11\n",
            &format!("      - address: 10.0.0.11\n        port: {port}\n"),
        ))
    };
    assert_eq!(nat("8080"), Vec::<String>::new());
    assert_eq!(
        nat("0"),
        ["16:15: port must be between 1 and 65535, found 0"]
    );
    let loaded = check(&edit("forwarding: dsr", "forwarding: nat").replace(
        "      - address: 10.0.0.11\n",
        "      - address: 10.0.0.11\n        port: 8080\n",
    ));
    let port = loaded.ok().map(|l| l.config.services[0].backends[0].port);
    assert_eq!(port, Some(Some(8080)));
    assert_eq!(
        diagnostics(&edit(
            "      - address: 10.0.0.11\n",
            "      - address: 10.0.0.11\n        port: 8080\n"
        )),
        ["16:15: a backend `port` is only for nat services (dsr, ipip and gue keep the destination port)"]
    );
    assert_eq!(
        diagnostics(
            &edit("forwarding: dsr", "forwarding: nat")
                .replace("    port: 80\n", "")
                .replace(
                    "      - address: 10.0.0.11\n",
                    "      - address: 10.0.0.11\n        port: 8080\n"
                )
        ),
        ["15:15: a backend `port` needs a service `port` (this service takes every port)"]
    );
}

#[test]
fn zero_and_malformed_durations() {
    let flow = |line: &str| diagnostics(&format!("{BASE}flow_table:\n  {line}\n"));
    assert_eq!(flow("udp_timeout: 1s"), Vec::<String>::new());
    assert_eq!(
        flow("udp_timeout: 0s"),
        ["17:16: udp_timeout must be more than 0s"]
    );
    assert_eq!(
        flow("tcp_established_timeout: 300"),
        ["17:28: tcp_established_timeout: expected a duration such as 300ms, 5s, 2m or 1h, found `300`"]
    );
    assert_eq!(
        flow("capacity: 0"),
        ["17:13: capacity must be between 1 and 268435456, found 0"]
    );
    assert_eq!(service_key("drain_timeout: 0s"), Vec::<String>::new());
    assert_eq!(
        service_key("drain_timeout: soon"),
        ["13:20: drain_timeout: expected a duration such as 300ms, 5s, 2m or 1h, found `soon`"]
    );
}

fn health(lines: &str) -> Vec<String> {
    service_key(&format!("health_check:\n{lines}"))
}

#[test]
fn health_check_rules() {
    assert_eq!(
        health("      kind: http\n      path: /up"),
        Vec::<String>::new()
    );
    // The refused interval falls back to its default (2s), so the 1s timeout is not
    // reported against it as well.
    assert_eq!(
        health("      interval: 0s"),
        ["14:17: interval must be more than 0s"]
    );
}

#[test]
fn health_timeout_below_interval() {
    assert_eq!(
        health("      interval: 1s\n      timeout: 1s"),
        ["15:16: health check timeout 1s must be less than its interval 1s"]
    );
    assert_eq!(
        health("      interval: 500ms"),
        ["14:17: health check timeout 1s must be less than its interval 500ms"]
    );
    assert_eq!(
        health("      timeout: 0s"),
        ["14:16: timeout must be more than 0s"]
    );
}

#[test]
fn health_thresholds_path_port() {
    assert_eq!(
        health("      healthy_threshold: 0"),
        ["14:26: healthy_threshold must be between 1 and 100, found 0"]
    );
    assert_eq!(
        health("      kind: tcp\n      path: /x"),
        ["15:13: `path` is only for http health checks"]
    );
    assert_eq!(
        health("      kind: http\n      path: healthz"),
        ["15:13: path must be a request path starting with `/` (no spaces, controls, non-ASCII or fragment), found `healthz`"]
    );
    // accepted before the rule was the probe's own: every probe would have failed
    // building its request (`<`), the backend down for good; or probed another path
    // than the one written (the fragment dropped)
    for path in ["/a<b", "/status#top"] {
        assert_eq!(
            health(&format!("      kind: http\n      path: \"{path}\"")),
            [format!("15:13: path must be a request path starting with `/` (no spaces, controls, non-ASCII or fragment), found `{path}`")]
        );
    }
    assert_eq!(
        health("      port: 0"),
        ["14:13: port must be between 1 and 65535, found 0"]
    );
    let all_ports = edit("    port: 80\n", "    health_check:\n      kind: tcp\n");
    assert_eq!(
        diagnostics(&all_ports),
        ["13:7: health_check needs a `port`: the service takes every port"]
    );
    assert_eq!(
        diagnostics(&all_ports.replace("kind: tcp", "kind: none")),
        Vec::<String>::new()
    );
}

#[test]
fn gue_port_only_for_gue() {
    assert_eq!(
        service_key("gue_port: 6081"),
        ["13:15: `gue_port` is only for gue services"]
    );
    let gue = edit("forwarding: dsr", "forwarding: gue");
    assert_eq!(
        diagnostics(&gue.replace("    port: 80\n", "    port: 80\n    gue_port: 0\n")),
        ["13:15: gue_port must be between 1 and 65535, found 0"]
    );
}

#[test]
fn forwarding_required_for_l4() {
    assert_eq!(
        diagnostics(&edit("    forwarding: dsr\n", "")),
        ["10:5: service `web` needs `forwarding`: dsr, ipip, gue or nat"]
    );
    assert_eq!(
        diagnostics(&edit(
            "    backends:\n      - address: 10.0.0.11\n",
            "    backends: []\n"
        )),
        ["14:15: service `web` needs at least one backend"]
    );
}

const L7: &str = "  - name: api
    vip: 10.0.0.101
    port: 80
    mode: l7
    routes:
      - match: { host: api.example.com, path: { prefix: / } }
        cluster: web
    clusters:
      - name: web
        lb: least_request
        endpoints: [{ address: \"10.0.0.11:8080\" }]
";

/// BASE with a kernel interface (line 18 onwards shifts by one), where the L7 pool listens.
fn l7_base() -> String {
    BASE.replace(
        "    address: 10.0.0.5/24\n",
        "    address: 10.0.0.5/24\n    kernel_interface: fl0\n",
    )
}

#[test]
fn l7_services() {
    let base = l7_base();
    let c = config(&format!("{base}{L7}"));
    let api = c.service("api");
    assert_eq!(api.map(|s| (s.mode, s.forwarding)), Some((Mode::L7, None)));
    let l7 = api
        .and_then(|s| s.l7.as_ref())
        .map(|l7| (l7.routes.len(), l7.clusters.len()));
    assert_eq!(l7, Some((1, 1)));
    // BASE's one backend and the cluster's one endpoint
    assert_eq!(c.backend_count(), 2);
    assert_eq!(
        diagnostics(&format!("{base}{}", L7.replace("    mode: l7\n", "    mode: l7\n    forwarding: nat\n"))),
        ["21:17: `forwarding` is only for l4 services; an l7 service uses `routes` and `clusters`"]
    );
    assert_eq!(
        diagnostics(&format!(
            "{base}{}",
            L7.replace("    mode: l7\n", "    mode: l7\n    protocol: udp\n")
        )),
        ["21:15: an l7 service must use protocol tcp"]
    );
    let no_clusters = L7.split("    clusters:").next().unwrap_or(L7);
    assert_eq!(
        diagnostics(&format!("{base}{no_clusters}")),
        ["17:5: l7 service `api` needs `clusters`"]
    );
    assert_eq!(
        service_key("routes: []"),
        ["13:13: `routes` is only for l7 services (this one is l4)"]
    );
    // without a kernel interface the pool has nowhere to listen
    assert_eq!(
        diagnostics(&format!("{BASE}{L7}")),
        ["16:5: l7 service `api` needs a port of its family with `kernel_interface` (the L7 pool listens there)"]
    );
}

#[test]
fn l7_references_and_shapes() {
    let base = l7_base();
    let d = |from: &str, to: &str| diagnostics(&format!("{base}{}", L7.replace(from, to)));
    assert_eq!(
        d("        cluster: web\n", "        cluster: nope\n"),
        ["22:9: route leads to cluster `nope`, which the service does not define (clusters: web)"]
    );
    assert_eq!(
        d("{ prefix: / }", "{ regex: \"(\" }"),
        ["22:9: path regex `(` does not compile: error: unclosed group"]
    );
    assert_eq!(
        d("        lb: least_request\n", "        lb: fastest\n"),
        ["26:13: unknown variant `fastest`, expected one of round_robin, least_request, random, ring_hash, maglev"]
    );
    assert_eq!(
        d("        lb: least_request\n", "        lbb: random\n"),
        ["26:9: unknown field `lbb`, expected one of name, protocol, lb, hash_on, bounded_load, sticky_cookie, endpoints, circuit_breakers, outlier, panic_threshold, health_check, timeouts"]
    );
    assert_eq!(
        d(
            "        lb: least_request\n",
            "        lb: least_request\n        health_check: { kind: icmp }\n"
        ),
        ["27:31: unknown variant `icmp`, expected one of tcp, http, none"]
    );
    assert_eq!(
        d(
            "        lb: least_request\n",
            "        lb: least_request\n        health_check: { interval: 1s, timeout: 1s }\n"
        ),
        ["25:9: cluster `web`: health_check.timeout must be longer than 0s and shorter than its interval (1s)"]
    );
    assert_eq!(
        d("\"10.0.0.11:8080\" }", "\"10.0.0.11:8080\", zone: \"\" }"),
        ["25:9: cluster `web`: endpoint 10.0.0.11:8080 has an empty zone"]
    );
    assert_eq!(
        d(":8080\" }]", ":8080\", weight: 0 }]"),
        ["25:9: cluster `web`: endpoint 10.0.0.11:8080 has weight 0; expected 1 to 1000"]
    );
    let l7 = |section: &str| diagnostics(&format!("{base}{L7}l7:\n{section}\n"));
    assert_eq!(
        l7("  cores: [0]\n  timeouts: { connect: 250ms }"),
        Vec::<String>::new()
    );
    assert_eq!(
        l7("  timeouts: { connect: 2 parsecs }"),
        ["29:24: bad duration \"2 parsecs\" (use 250ms, 1s, 2m; at most 8760h)"]
    );
    assert_eq!(
        l7("  limits: { max_header_bytes: 100 }"),
        ["29:3: l7.limits.max_header_bytes must be at least 8192, found 100"]
    );
}

#[test]
fn admin_listener() {
    let admin = |lines: &str| diagnostics(&format!("{BASE}admin:\n{lines}\n"));
    assert_eq!(admin("  listen: 0.0.0.0:9100"), Vec::<String>::new());
    assert_eq!(
        admin("  listen: localhost:9100"),
        ["17:11: listen: expected an address and port such as 127.0.0.1:9100 or [::1]:9100, found `localhost:9100`"]
    );
    assert_eq!(admin("  token: \"\""), ["17:10: token must not be empty"]);
}

#[test]
fn eal_device_forms() {
    let args: Vec<String> = [
        "--no-pci",
        "--vdev=net_pcap0,rx_pcap=a.pcap",
        "--vdev",
        "net_ring0",
        "-a",
        "0000:3B:00.0",
        "-w3c:00.1,x=1",
        "--allow=5e:00.0",
    ]
    .map(str::to_owned)
    .to_vec();
    let eal = EalDevices::from_args(&args);
    assert!(eal.no_pci);
    assert_eq!(eal.vdevs, ["net_pcap0", "net_ring0"]);
    assert_eq!(
        eal.allowed,
        ["0000:3b:00.0", "0000:3c:00.1", "0000:5e:00.0"]
    );
}

#[test]
fn primes() {
    let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
    assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    assert!(is_prime(65_537));
    assert!(!is_prime(65_535));
    assert!(is_prime(16_777_213));
    assert_eq!(next_prime(65_536), 65_537);
    assert_eq!(next_prime(100), 101);
}

#[test]
fn hostile_nesting_is_refused_not_a_crash() {
    let depth = 100_000;
    let yaml = format!(
        "{BASE}  - name: api\n    vip: 10.0.0.101\n    port: 80\n    mode: l7\n    clusters: []\n    routes: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    // the typed routes refuse the first nested list; the parser never recurses deep
    let found = diagnostics(&yaml);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("21:"), "{found:?}");
}

#[test]
fn dsr_backends_are_on_link() {
    assert_eq!(
        diagnostics(&edit("address: 10.0.0.11", "address: 10.0.1.11")),
        ["15:18: backend 10.0.1.11 is on no port's subnet: dsr reaches backends on the link only (use ipip, gue or nat to route)"]
    );
    for routed in ["ipip", "gue", "nat"] {
        let yaml = edit("address: 10.0.0.11", "address: 10.0.1.11")
            .replace("forwarding: dsr", &format!("forwarding: {routed}"));
        assert_eq!(diagnostics(&yaml), Vec::<String>::new(), "{routed}");
    }
}

#[test]
fn snat_addresses() {
    let with = |list: &str| {
        edit(
            "    address: 10.0.0.5/24\n",
            &format!(
                "    address: 10.0.0.5/24\n    gateway: 10.0.0.1\n    snat_addresses: {list}\n"
            ),
        )
    };
    let ok = check(&with("[10.0.0.6, 10.0.0.7]")).unwrap();
    let port = &ok.config.ports[0];
    assert_eq!(port.snat_addresses, [ip("10.0.0.6"), ip("10.0.0.7")]);
    assert_eq!(
        port.nat_sources().collect::<Vec<_>>(),
        [ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")]
    );
    // absent: the port's address alone
    let base = check(BASE).unwrap();
    assert_eq!(base.config.ports[0].nat_sources().count(), 1);

    assert_eq!(
        diagnostics(&with("[10.0.0.6, 10.0.0.6]")),
        ["8:32: snat address 10.0.0.6 is listed twice (line 8)"]
    );
    assert_eq!(
        diagnostics(&with("[10.0.1.6]")),
        ["8:22: snat address 10.0.1.6 is not on the port's subnet 10.0.0.5/24"]
    );
    assert_eq!(
        diagnostics(&with("[fd00::6]")),
        ["8:22: snat address fd00::6 is IPv6 but the port address 10.0.0.5/24 is IPv4"]
    );
    assert_eq!(
        diagnostics(&with("[10.0.0.5]")),
        ["8:22: snat address 10.0.0.5 is the port's own address (used for NAT already)"]
    );
    assert_eq!(
        diagnostics(&with("[10.0.0.1]")),
        ["8:22: snat address 10.0.0.1 is the port's gateway"]
    );
    assert_eq!(
        diagnostics(&with("[224.0.0.1]")),
        ["8:22: snat address 224.0.0.1 is not a unicast address"]
    );
    // a VIP or a backend may not be one
    assert_eq!(
        diagnostics(&with("[10.0.0.100]")),
        ["13:10: vip 10.0.0.100 is a snat address of port `lan`"]
    );
    assert_eq!(
        diagnostics(&with("[10.0.0.11]")),
        ["17:18: backend 10.0.0.11 is a snat address of port `lan`"]
    );
    let many: Vec<String> = (0..256)
        .map(|i| format!("10.0.{}.{}", 1 + i / 200, 10 + i % 200))
        .collect();
    let too_many = BASE.replace("10.0.0.5/24", "10.0.0.5/16").replacen(
        "    address: 10.0.0.5/16\n",
        &format!(
            "    address: 10.0.0.5/16\n    snat_addresses: [{}]\n",
            many.join(", ")
        ),
        1,
    );
    let d = diagnostics(&too_many);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].ends_with("snat_addresses: at most 255 addresses"),
        "{d:?}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn mbuf_data_room_holds_a_full_frame_after_the_headroom() {
    // 128 bytes of headroom (where every encapsulation goes) + 22 of Ethernet with two
    // VLAN tags + 4 of FCS + the MTU: 256 bytes hold a port of MTU 102, not 103
    let room = |mtu: u16, room: u16| {
        edit("dpdk:\n", &format!("dpdk:\n  mbuf_data_room: {room}\n")).replace(
            "    address: 10.0.0.5/24\n",
            &format!("    address: 10.0.0.5/24\n    mtu: {mtu}\n"),
        )
    };
    assert_eq!(diagnostics(&room(102, 256)), Vec::<String>::new());
    assert_eq!(
        diagnostics(&room(103, 256)),
        ["2:19: dpdk.mbuf_data_room 256 cannot hold port lan's frames: mtu 103 + 154 (headroom, Ethernet and VLAN headers, FCS) needs 257"]
    );
    assert_eq!(config(&room(1500, 1654)).dpdk.mbuf_data_room, Some(1654));
}
