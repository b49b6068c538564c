//! `fulcrum check` on the example files: every good file passes with its summary, every
//! file in `configs/bad/` fails with exactly the expected `FILE:LINE:COL: message`.

use std::net::IpAddr;

use fulcrum::config::{check_file, check_file_with, load, Forwarding, HealthCheckKind, Host};

/// The bad files are checked against a fixed 4-CPU host so the messages do not depend
/// on the machine running the tests.
fn bad_host() -> Host {
    Host::with_cpus(4)
}

const BAD: &[(&str, &str)] = &[
    ("bad-cidr", "7:14: address: expected an address with a prefix length such as 10.0.0.5/24 or fd00::5/64, found `10.99.0.2`"),
    ("bad-duration", "18:20: drain_timeout: expected a duration such as 300ms, 5s, 2m or 1h, found `30`"),
    ("bad-mac", "10:14: mac: expected a MAC address such as 02:00:00:00:00:11, found `02:00:00:00:11`"),
    ("core-offline", "9:14: core 4095 is not online on this host (online CPUs: 0-3)"),
    ("dsr-off-link", "18:18: backend 10.99.7.12 is on no port's subnet: dsr reaches backends on the link only (use ipip, gue or nat to route)"),
    ("duplicate-core", "9:14: core 1 is listed twice (line 9)"),
    ("duplicate-device", "9:13: device `net_af_packet0` is already used by another port (line 6)"),
    ("duplicate-port-name", "8:11: port name `lan` is already used (line 5)"),
    ("duplicate-service-name", "18:11: service name `web` is already used (line 11)"),
    ("duplicate-vip", "19:10: service `web2` takes the same vip, port and protocol as service `web` (line 12)"),
    ("family-mismatch", "20:18: backend fd99::12 is IPv6 but the vip 10.99.0.100 is IPv4: dsr needs backends of the vip's family"),
    ("gateway-off-subnet", "8:14: gateway 10.98.0.1 is not on the port's subnet 10.99.0.2/24"),
    ("health-timeout", "21:16: health check timeout 1s must be less than its interval 1s"),
    ("ipip-6in4", "20:18: backend 10.99.0.12 is IPv4 but the vip fd99::100 is IPv6: ipip cannot carry IPv6 in IPv4 (4in4, 6in6 and 4in6 are supported)"),
    ("l7-bad-duration", "25:14: bad duration \"5 parsecs\" (use 250ms, 1s, 2m; at most 8760h)"),
    ("l7-forwarding", "16:17: `forwarding` is only for l4 services; an l7 service uses `routes` and `clusters`"),
    ("l7-header-limit", "24:3: l7.limits.max_header_bytes must be at least 8192, found 1024"),
    ("l7-no-kernel-interface", "11:5: l7 service `api` needs a port of its family with `kernel_interface` (the L7 pool listens there)"),
    ("l7-unknown-cluster", "17:9: route leads to cluster `apii`, which the service does not define (clusters: api)"),
    ("l7-unknown-lb", "21:13: unknown variant `fastest`, expected one of round_robin, least_request, random, ring_hash, maglev"),
    ("mbuf-room", "4:19: dpdk.mbuf_data_room 512 cannot hold port lan's frames: mtu 1500 + 154 (headroom, Ethernet and VLAN headers, FCS) needs 1654"),
    ("missing-field", "17:9: missing field `address`"),
    ("missing-vdev", "6:13: device `net_af_packet1` is neither a PCI address (such as 0000:3b:00.0) nor created by a `--vdev=net_af_packet1,...` in dpdk.eal_args"),
    ("nat-port-zero", "18:15: port must be between 1 and 65535, found 0"),
    ("no-ports", "4:8: no ports: at least one port is needed"),
    ("no-workers", "9:10: no workers: `cores` must list at least one core"),
    ("outlier-dsr", "19:7: `outlier_detection` needs `forwarding: nat`: with dsr, ipip and gue the replies bypass fulcrum"),
    ("outlier-ejection", "20:26: max_ejection_time 30s is less than base_ejection_time 1m"),
    ("panic-threshold", "14:22: panic_threshold must be between 0 and 100, found 150"),
    ("syntax", "4:6: illegal placement of ':' indicator"),
    ("table-not-prime", "14:24: maglev_table_size 65536 is not prime (the next prime is 65537)"),
    ("unknown-forwarding", "14:17: unknown variant `tunnel`, expected one of dsr, ipip, gue, nat"),
    ("unknown-key", "14:5: unknown field `fowarding`, expected one of name, vip, port, protocol, mode, forwarding, maglev_table_size, backends, health_check, panic_threshold, drain_timeout, on_unhealthy, outlier_detection, gue_port, tls, routes, clusters"),
    ("unreachable-backend", "17:18: backend fd99::12 is IPv6 but no port has an IPv6 address to reach it"),
    ("weight-range", "18:17: weight must be between 0 and 65535, found 100000"),
    ("wrong-type", "13:11: expected an integer"),
    ("zero-timeout", "19:16: udp_timeout must be more than 0s"),
];

#[test]
fn each_bad_file_fails_with_its_message() {
    for (name, expected) in BAD {
        let path = format!("configs/bad/{name}.yaml");
        let found: Vec<String> = match check_file_with(&path, &bad_host()) {
            Ok(summary) => panic!("{path} passed: {summary}"),
            Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(found, [format!("{path}:{expected}")], "{path}");
    }
}

#[test]
fn every_bad_file_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir("configs/bad")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    name.strip_suffix(".yaml").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    let listed: Vec<String> = BAD.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn good_files_pass_on_this_host() {
    for (name, summary) in [
        ("demo", "1 port, 1 worker, 1 service (3 backends)"),
        ("dsr", "1 port, 1 worker, 2 services (4 backends)"),
        ("ipip", "1 port, 1 worker, 1 service (3 backends)"),
        ("gue", "1 port, 1 worker, 1 service (3 backends)"),
        ("nat", "1 port, 1 worker, 1 service (3 backends)"),
        ("ipv6", "1 port, 1 worker, 1 service (3 backends)"),
        // an l7 service's backends are its clusters' endpoints (2 + 2 + 1)
        ("l7", "1 port, 1 worker, 1 service (5 backends)"),
    ] {
        let path = format!("configs/{name}.yaml");
        match check_file(&path) {
            Ok(s) => {
                assert_eq!(s.to_string(), format!("{path}: ok: {summary}"));
                assert_eq!(s.warnings, []);
            }
            Err(d) => panic!("{d:#?}"),
        }
    }
}

#[test]
fn bare_metal_template_passes_on_a_large_host() {
    let path = "configs/bare-metal.yaml";
    match check_file_with(path, &Host::with_cpus(64)) {
        Ok(s) => {
            assert_eq!(
                s.to_string(),
                "configs/bare-metal.yaml: ok: 2 ports, 4 workers, 4 services (9 backends)"
            );
            assert_eq!(s.warnings, []);
        }
        Err(d) => panic!("{d:#?}"),
    }
    // On a 2-CPU host only the cores are wrong.
    let small = check_file_with(path, &Host::with_cpus(2))
        .err()
        .unwrap_or_default();
    assert!(!small.is_empty());
    assert!(
        small.iter().all(|d| d.message.starts_with("core ")),
        "{small:#?}"
    );
}

#[test]
fn demo_loads_as_the_namespace_topology() {
    let config = match load("configs/demo.yaml") {
        Ok(c) => c,
        Err(d) => panic!("{d:#?}"),
    };
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    assert_eq!(config.ports.len(), 1);
    assert_eq!(Some(config.ports[0].address), ip("10.99.0.2"));
    assert_eq!(config.ports[0].prefix_len, 24);
    assert!(config
        .dpdk
        .eal_args
        .iter()
        .any(|a| a == "--vdev=net_af_packet0,iface=lb0"));
    assert_eq!(config.workers.cores, [1]);
    let web = config.service("web");
    assert_eq!(web.map(|s| s.vip), ip("10.99.0.100"));
    assert_eq!(web.and_then(|s| s.port), Some(80));
    assert_eq!(web.and_then(|s| s.forwarding), Some(Forwarding::Dsr));
    assert_eq!(
        web.map(|s| s
            .backends
            .iter()
            .map(|b| (b.address, b.weight))
            .collect::<Vec<_>>()),
        Some(
            ["10.99.0.11", "10.99.0.12", "10.99.0.13"]
                .iter()
                .filter_map(|a| ip(a))
                .map(|a| (a, 1))
                .collect()
        )
    );
    let health = web.map(|s| &s.health_check);
    assert_eq!(health.map(|h| h.kind), Some(HealthCheckKind::Http));
    assert_eq!(health.map(|h| h.path.as_str()), Some("/"));
}

#[test]
fn nat_health_checks_probe_each_backend_port() {
    let config = match load("configs/nat.yaml") {
        Ok(c) => c,
        Err(d) => panic!("{d:#?}"),
    };
    let web = &config.services[0];
    let ports: Vec<Option<u16>> = web
        .backends
        .iter()
        .map(|b| web.health_check.port_for(web, b))
        .collect();
    assert_eq!(ports, [Some(8080), Some(8080), Some(80)]);
    assert_eq!(
        config.ports[0].nat_sources().count(),
        3,
        "the address and two more"
    );
}
