//! From the raw file to a [`Config`]: every range, address, duration and
//! cross-reference is checked, and every problem is reported, each at the value it
//! concerns.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_saphyr::Location;

mod l7;

use super::address::{family_name, is_pci_address, parse_cidr, parse_ip, parse_mac};
use super::diagnostic::Report;
use super::duration::{format_duration, parse_duration};
use super::host::Host;
use super::model::{
    defaults, limits, AdminConfig, BackendConfig, Config, DpdkConfig, FlowTableConfig, Forwarding,
    HealthCheckConfig, HealthCheckKind, IdlePolicy, L7Config, Mode, Neighbor, OnUnhealthy,
    OutlierDetectionConfig, PortConfig, Protocol, ServiceConfig, WorkersConfig,
};
use super::raw::{
    RawAdmin, RawBackend, RawConfig, RawFlowTable, RawHealthCheck, RawOutlierDetection, RawPort,
    RawService, RawWorkers, S,
};

/// Checks `raw` against the rules and `host`. The returned configuration is complete
/// (defaults stand in for refused values) but meaningful only if `report` holds no error.
pub(crate) fn validate(raw: RawConfig, host: &Host, report: &mut Report) -> Config {
    let mut v = Validator { report };
    let (eal_args, mbufs, room) = match raw.dpdk {
        Some(d) => (d.eal_args, d.mbufs, d.mbuf_data_room),
        None => (None, None, None),
    };
    let dpdk = DpdkConfig {
        eal_args: eal_args
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.value)
            .collect(),
        mbufs: mbufs.and_then(|m| v.int(&m, "dpdk.mbufs", 1023..=(1u32 << 26))),
        mbuf_data_room: room
            .as_ref()
            .and_then(|r| v.int(r, "dpdk.mbuf_data_room", limits::MBUF_DATA_ROOM)),
    };
    let ports = v.ports(&raw.ports, &dpdk.eal_args);
    if let (Some(r), Some(bytes)) = (&room, dpdk.mbuf_data_room) {
        // every frame a port takes must fit after the headroom (which takes encapsulation)
        for p in &ports {
            if u32::from(p.mtu) + u32::from(limits::MBUF_ROOM_OVERHEAD) > u32::from(bytes) {
                v.report.error(
                    &r.referenced,
                    format!(
                        "dpdk.mbuf_data_room {bytes} cannot hold port {}'s frames: mtu {} + {} \
                         (headroom, Ethernet and VLAN headers, FCS) needs {}",
                        p.name,
                        p.mtu,
                        limits::MBUF_ROOM_OVERHEAD,
                        u32::from(p.mtu) + u32::from(limits::MBUF_ROOM_OVERHEAD)
                    ),
                );
                break;
            }
        }
    }
    let workers = v.workers(&raw.workers.value, host);
    let flow_table = v.flow_table(raw.flow_table.as_ref());
    let admin = v.admin(raw.admin.as_ref());
    let services = match &raw.services {
        Some(services) => v.services(&services.value, &ports),
        None => Vec::new(),
    };
    let l7 = v.l7_settings(raw.l7.as_ref(), host, &workers.cores, &services);
    Config {
        dpdk,
        ports,
        workers,
        flow_table,
        admin,
        services,
        l7,
    }
}

struct Validator<'r> {
    report: &'r mut Report,
}

/// `line N` for messages that refer to an earlier place.
fn line_of(at: &Location) -> String {
    format!("line {}", at.line())
}

impl Validator<'_> {
    // ---- value helpers -------------------------------------------------------------

    /// An integer in `range`, or an error naming `key`.
    fn int<T>(&mut self, value: &S<i64>, key: &str, range: RangeInclusive<T>) -> Option<T>
    where
        T: TryFrom<i64> + PartialOrd + std::fmt::Display + Copy,
    {
        match T::try_from(value.value) {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.report.error(
                    &value.referenced,
                    format!(
                        "{key} must be between {} and {}, found {}",
                        range.start(),
                        range.end(),
                        value.value
                    ),
                );
                None
            }
        }
    }

    /// An optional integer with a default.
    fn int_or<T>(
        &mut self,
        value: Option<&S<i64>>,
        key: &str,
        range: RangeInclusive<T>,
        default: T,
    ) -> T
    where
        T: TryFrom<i64> + PartialOrd + std::fmt::Display + Copy,
    {
        value
            .and_then(|v| self.int(v, key, range))
            .unwrap_or(default)
    }

    /// A TCP/UDP port 1..=65535.
    fn port_number(&mut self, value: &S<i64>, key: &str) -> Option<u16> {
        self.int(value, key, 1..=u16::MAX)
    }

    /// A duration; `allow_zero` false refuses `0s`.
    fn duration_or(
        &mut self,
        value: Option<&S<String>>,
        key: &str,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some(value) = value else {
            return default;
        };
        match parse_duration(&value.value) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.report
                    .error(&value.referenced, format!("{key} must be more than 0s"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.report.error(&value.referenced, format!("{key}: {e}"));
                default
            }
        }
    }

    fn ip(&mut self, value: &S<String>, key: &str) -> Option<IpAddr> {
        match parse_ip(&value.value) {
            Ok(ip) => Some(ip),
            Err(e) => {
                self.report.error(&value.referenced, format!("{key}: {e}"));
                None
            }
        }
    }

    /// An address fulcrum sends from or to: not unspecified, not multicast.
    fn unicast_ip(&mut self, value: &S<String>, key: &str) -> Option<IpAddr> {
        let ip = self.ip(value, key)?;
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            self.report.error(
                &value.referenced,
                format!("{key} {ip} is not a unicast address"),
            );
            return None;
        }
        Some(ip)
    }

    /// A name usable as a metric label.
    fn name(&mut self, value: &S<String>, what: &str) {
        let name = &value.value;
        let ok = !name.is_empty()
            && name.len() <= limits::NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            self.report.error(
                &value.referenced,
                format!(
                    "{what} name `{name}` must be 1 to {} letters, digits, `_`, `-` or `.`",
                    limits::NAME_LEN
                ),
            );
        }
    }

    // ---- ports ---------------------------------------------------------------------

    fn ports(&mut self, raw: &S<Vec<S<RawPort>>>, eal_args: &[String]) -> Vec<PortConfig> {
        if raw.value.is_empty() {
            self.report
                .error(&raw.referenced, "no ports: at least one port is needed");
        }
        let eal = EalDevices::from_args(eal_args);
        let mut names: HashMap<&str, Location> = HashMap::new();
        let mut devices: HashMap<&str, Location> = HashMap::new();
        let mut ports = Vec::new();
        for port in &raw.value {
            let p = &port.value;
            self.name(&p.name, "port");
            if let Some(first) = names.insert(&p.name.value, p.name.referenced) {
                self.report.error(
                    &p.name.referenced,
                    format!(
                        "port name `{}` is already used ({})",
                        p.name.value,
                        line_of(&first)
                    ),
                );
            }
            if let Some(first) = devices.insert(&p.device.value, p.device.referenced) {
                self.report.error(
                    &p.device.referenced,
                    format!(
                        "device `{}` is already used by another port ({})",
                        p.device.value,
                        line_of(&first)
                    ),
                );
            } else {
                self.device(&p.device, &eal);
            }
            if let Some(port) = self.port(p) {
                ports.push(port);
            }
        }
        ports
    }

    fn device(&mut self, device: &S<String>, eal: &EalDevices) {
        let name = &device.value;
        if is_pci_address(name) {
            if eal.no_pci {
                self.report.error(
                    &device.referenced,
                    format!("device {name} is a PCI device but dpdk.eal_args has --no-pci"),
                );
            } else if !eal.allowed.is_empty() && !eal.allowed.contains(&normalize_pci(name)) {
                self.report.error(
                    &device.referenced,
                    format!("device {name} is not in the EAL allow list (`-a` in dpdk.eal_args)"),
                );
            }
        } else if !eal.vdevs.iter().any(|v| v == name) {
            self.report.error(
                &device.referenced,
                format!(
                    "device `{name}` is neither a PCI address (such as 0000:3b:00.0) nor created \
                     by a `--vdev={name},...` in dpdk.eal_args"
                ),
            );
        }
    }

    fn port(&mut self, p: &RawPort) -> Option<PortConfig> {
        let cidr = match parse_cidr(&p.address.value) {
            Ok(cidr) => cidr,
            Err(e) => {
                self.report
                    .error(&p.address.referenced, format!("address: {e}"));
                return None;
            }
        };
        let address = cidr.address;
        if address.is_unspecified() || address.is_multicast() {
            self.report.error(
                &p.address.referenced,
                format!("address {address} is not a unicast address"),
            );
        }
        let gateway = p.gateway.as_ref().and_then(|g| {
            let ip = self.unicast_ip(g, "gateway")?;
            if ip.is_ipv4() != address.is_ipv4() {
                self.report.error(
                    &g.referenced,
                    format!(
                        "gateway {ip} is {} but the port address {cidr} is {}",
                        family_name(ip),
                        family_name(address)
                    ),
                );
            } else if ip == address {
                self.report.error(
                    &g.referenced,
                    format!("gateway {ip} is the port's own address"),
                );
            } else if !cidr.contains(ip) {
                self.report.error(
                    &g.referenced,
                    format!("gateway {ip} is not on the port's subnet {cidr}"),
                );
            }
            Some(ip)
        });
        let mut neighbors = Vec::new();
        let mut seen: HashMap<IpAddr, Location> = HashMap::new();
        for n in p.neighbors.iter().flatten() {
            let n = &n.value;
            let ip = self.unicast_ip(&n.address, "neighbor address");
            let mac = match parse_mac(&n.mac.value) {
                Ok(mac) => Some(mac),
                Err(e) => {
                    self.report.error(&n.mac.referenced, format!("mac: {e}"));
                    None
                }
            };
            let Some(ip) = ip else { continue };
            if ip.is_ipv4() != address.is_ipv4() {
                self.report.error(
                    &n.address.referenced,
                    format!(
                        "neighbor {ip} is {} but the port address {cidr} is {}",
                        family_name(ip),
                        family_name(address)
                    ),
                );
            } else if ip == address {
                self.report.error(
                    &n.address.referenced,
                    format!("neighbor {ip} is the port's own address"),
                );
            }
            if let Some(first) = seen.insert(ip, n.address.referenced) {
                self.report.error(
                    &n.address.referenced,
                    format!("neighbor {ip} is listed twice ({})", line_of(&first)),
                );
            }
            if let Some(mac) = mac {
                neighbors.push(Neighbor { address: ip, mac });
            }
        }
        let mtu = self.int_or(p.mtu.as_ref(), "mtu", limits::MTU, defaults::MTU);
        if let (Some(raw), true) = (&p.mtu, address.is_ipv6()) {
            if mtu < limits::MTU_IPV6_MIN {
                self.report.error(
                    &raw.referenced,
                    format!(
                        "mtu {mtu} is below {}, the IPv6 minimum",
                        limits::MTU_IPV6_MIN
                    ),
                );
            }
        }
        let rx_desc = self.descriptors(p.rx_desc.as_ref(), "rx_desc");
        let tx_desc = self.descriptors(p.tx_desc.as_ref(), "tx_desc");
        let kernel_interface = p.kernel_interface.as_ref().and_then(|k| {
            let name = &k.value;
            let ok = !name.is_empty()
                && name.len() < 16
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !ok {
                self.report.error(
                    &k.referenced,
                    format!("kernel_interface `{name}` is not a valid interface name (1 to 15 letters, digits, `-`, `_`, `.`)"),
                );
                return None;
            }
            Some(name.clone())
        });
        let snat_addresses = self.snat_addresses(p, cidr, gateway, &neighbors);
        Some(PortConfig {
            name: p.name.value.clone(),
            device: p.device.value.clone(),
            address,
            prefix_len: cidr.prefix_len,
            gateway,
            neighbors,
            mtu,
            rx_desc,
            tx_desc,
            kernel_interface,
            snat_addresses,
        })
    }

    /// `ports[].snat_addresses`: unicast, the port's family, on its subnet, none of the
    /// port's own, gateway or neighbours, each once, at most [`limits::SNAT_ADDRESSES`].
    fn snat_addresses(
        &mut self,
        p: &RawPort,
        cidr: super::address::Cidr,
        gateway: Option<IpAddr>,
        neighbors: &[Neighbor],
    ) -> Vec<IpAddr> {
        let Some(list) = &p.snat_addresses else {
            return Vec::new();
        };
        let address = cidr.address;
        let mut out = Vec::new();
        let mut seen: HashMap<IpAddr, Location> = HashMap::new();
        for (i, a) in list.iter().enumerate() {
            if i == limits::SNAT_ADDRESSES {
                self.report.error(
                    &a.referenced,
                    format!(
                        "snat_addresses: at most {} addresses",
                        limits::SNAT_ADDRESSES
                    ),
                );
                break;
            }
            let Some(ip) = self.unicast_ip(a, "snat address") else {
                continue;
            };
            let problem = if ip.is_ipv4() != address.is_ipv4() {
                Some(format!(
                    "snat address {ip} is {} but the port address {cidr} is {}",
                    family_name(ip),
                    family_name(address)
                ))
            } else if ip == address {
                Some(format!(
                    "snat address {ip} is the port's own address (used for NAT already)"
                ))
            } else if !cidr.contains(ip) {
                Some(format!(
                    "snat address {ip} is not on the port's subnet {cidr}"
                ))
            } else if gateway == Some(ip) {
                Some(format!("snat address {ip} is the port's gateway"))
            } else if neighbors.iter().any(|n| n.address == ip) {
                Some(format!("snat address {ip} is a neighbor of the port"))
            } else {
                seen.insert(ip, a.referenced)
                    .map(|first| format!("snat address {ip} is listed twice ({})", line_of(&first)))
            };
            match problem {
                Some(m) => self.report.error(&a.referenced, m),
                None => out.push(ip),
            }
        }
        out
    }

    fn descriptors(&mut self, value: Option<&S<i64>>, key: &str) -> u16 {
        let Some(value) = value else {
            return defaults::RING_DESCRIPTORS;
        };
        match self.int(value, key, limits::RING_DESCRIPTORS) {
            Some(n) if n.is_power_of_two() => n,
            Some(n) => {
                self.report.error(
                    &value.referenced,
                    format!("{key} must be a power of two, found {n}"),
                );
                defaults::RING_DESCRIPTORS
            }
            None => defaults::RING_DESCRIPTORS,
        }
    }

    // ---- workers, flow table, admin -------------------------------------------------

    fn workers(&mut self, raw: &RawWorkers, host: &Host) -> WorkersConfig {
        if raw.cores.value.is_empty() {
            self.report.error(
                &raw.cores.referenced,
                "no workers: `cores` must list at least one core",
            );
        }
        let mut cores = Vec::new();
        let mut seen: HashMap<u32, Location> = HashMap::new();
        for core in &raw.cores.value {
            let Ok(index) = u32::try_from(core.value) else {
                self.report.error(
                    &core.referenced,
                    format!("core must be a CPU number, found {}", core.value),
                );
                continue;
            };
            if !host.has_cpu(index) {
                self.report.error(
                    &core.referenced,
                    format!(
                        "core {index} is not online on this host (online CPUs: {})",
                        host.cpu_list()
                    ),
                );
            }
            if let Some(first) = seen.insert(index, core.referenced) {
                self.report.error(
                    &core.referenced,
                    format!("core {index} is listed twice ({})", line_of(&first)),
                );
                continue;
            }
            cores.push(index);
        }
        let burst = self.int_or(raw.burst.as_ref(), "burst", limits::BURST, defaults::BURST);
        let idle = raw
            .idle
            .as_ref()
            .map_or(IdlePolicy::Adaptive, |idle| idle.value);
        WorkersConfig { cores, burst, idle }
    }

    fn flow_table(&mut self, raw: Option<&RawFlowTable>) -> FlowTableConfig {
        let Some(raw) = raw else {
            return FlowTableConfig {
                capacity: defaults::FLOW_TABLE_CAPACITY,
                tcp_established_timeout: defaults::TCP_ESTABLISHED_TIMEOUT,
                tcp_transitory_timeout: defaults::TCP_TRANSITORY_TIMEOUT,
                udp_timeout: defaults::UDP_TIMEOUT,
            };
        };
        FlowTableConfig {
            capacity: self.int_or(
                raw.capacity.as_ref(),
                "capacity",
                limits::FLOW_TABLE_CAPACITY,
                defaults::FLOW_TABLE_CAPACITY,
            ),
            tcp_established_timeout: self.duration_or(
                raw.tcp_established_timeout.as_ref(),
                "tcp_established_timeout",
                defaults::TCP_ESTABLISHED_TIMEOUT,
                false,
            ),
            tcp_transitory_timeout: self.duration_or(
                raw.tcp_transitory_timeout.as_ref(),
                "tcp_transitory_timeout",
                defaults::TCP_TRANSITORY_TIMEOUT,
                false,
            ),
            udp_timeout: self.duration_or(
                raw.udp_timeout.as_ref(),
                "udp_timeout",
                defaults::UDP_TIMEOUT,
                false,
            ),
        }
    }

    fn admin(&mut self, raw: Option<&RawAdmin>) -> AdminConfig {
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 9100));
        let listen = match raw.and_then(|a| a.listen.as_ref()) {
            None => default_listen,
            Some(listen) => match listen.value.parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.report.error(
                        &listen.referenced,
                        format!(
                            "listen: expected an address and port such as 127.0.0.1:9100 or \
                             [::1]:9100, found `{}`",
                            listen.value
                        ),
                    );
                    default_listen
                }
            },
        };
        let token = raw.and_then(|a| a.token.as_ref()).map(|token| {
            if token.value.is_empty() {
                self.report
                    .error(&token.referenced, "token must not be empty");
            }
            token.value.clone()
        });
        AdminConfig { listen, token }
    }

    // ---- services ------------------------------------------------------------------

    fn services(&mut self, raw: &[S<RawService>], ports: &[PortConfig]) -> Vec<ServiceConfig> {
        let mut names: HashMap<&str, Location> = HashMap::new();
        // (service, where its vip is written) for the overlap check.
        let mut placed: Vec<(ServiceConfig, Location)> = Vec::new();
        for service in raw {
            let s = &service.value;
            self.name(&s.name, "service");
            if let Some(first) = names.insert(&s.name.value, s.name.referenced) {
                self.report.error(
                    &s.name.referenced,
                    format!(
                        "service name `{}` is already used ({})",
                        s.name.value,
                        line_of(&first)
                    ),
                );
            }
            let Some(config) = self.service(service, ports) else {
                continue;
            };
            for (other, other_at) in &placed {
                let same_port = match (config.port, other.port) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                if config.vip == other.vip && config.protocol == other.protocol && same_port {
                    self.report.error(
                        &s.vip.referenced,
                        format!(
                            "service `{}` takes the same vip, port and protocol as service `{}` ({})",
                            config.name,
                            other.name,
                            line_of(other_at)
                        ),
                    );
                    break;
                }
            }
            placed.push((config, s.vip.referenced));
        }
        placed.into_iter().map(|(s, _)| s).collect()
    }

    fn service(&mut self, service: &S<RawService>, ports: &[PortConfig]) -> Option<ServiceConfig> {
        let s = &service.value;
        let at = &service.referenced;
        let vip = self.unicast_ip(&s.vip, "vip");
        if let Some(vip) = vip {
            if let Some(port) = ports.iter().find(|p| p.address == vip) {
                self.report.error(
                    &s.vip.referenced,
                    format!("vip {vip} is the address of port `{}`", port.name),
                );
            } else if let Some(port) = ports.iter().find(|p| p.snat_addresses.contains(&vip)) {
                self.report.error(
                    &s.vip.referenced,
                    format!("vip {vip} is a snat address of port `{}`", port.name),
                );
            }
        }
        let port = s.port.as_ref().and_then(|p| self.port_number(p, "port"));
        let protocol = s.protocol.as_ref().map_or(Protocol::Tcp, |p| p.value);
        let mode = s.mode.as_ref().map_or(Mode::L4, |m| m.value);

        let (forwarding, backends, l7) = match mode {
            Mode::L4 => {
                let l7_keys = [
                    ("routes", s.routes.as_ref().map(|v| v.referenced)),
                    ("clusters", s.clusters.as_ref().map(|v| v.referenced)),
                    ("tls", s.tls.as_ref().map(|v| v.referenced)),
                ];
                for (key, at) in l7_keys {
                    if let Some(at) = at {
                        self.report.error(
                            &at,
                            format!("`{key}` is only for l7 services (this one is l4)"),
                        );
                    }
                }
                let forwarding = match &s.forwarding {
                    Some(f) => Some(f.value),
                    None => {
                        self.report.error(
                            at,
                            format!(
                                "service `{}` needs `forwarding`: dsr, ipip, gue or nat",
                                s.name.value
                            ),
                        );
                        None
                    }
                };
                let backends = self.backends(s, vip, port, forwarding, ports);
                (forwarding, backends, None)
            }
            Mode::L7 => {
                self.l7_refusals(s);
                let l7 = self.l7(s, port, protocol, ports, at);
                (None, Vec::new(), l7)
            }
        };

        let maglev_table_size = self.maglev_table_size(s, backends.len());
        if mode == Mode::L4 && !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
            if let Some(raw) = &s.backends {
                self.report.warn(
                    &raw.referenced,
                    "every backend has weight 0: the service takes no new flows",
                );
            }
        }
        let health_check = self.health_check(s, port, &backends);
        let panic_threshold = self.int_or(
            s.panic_threshold.as_ref(),
            "panic_threshold",
            limits::PANIC_THRESHOLD,
            defaults::PANIC_THRESHOLD,
        );
        let drain_timeout = self.duration_or(
            s.drain_timeout.as_ref(),
            "drain_timeout",
            defaults::DRAIN_TIMEOUT,
            true,
        );
        let on_unhealthy = s
            .on_unhealthy
            .as_ref()
            .map_or(OnUnhealthy::Keep, |o| o.value);
        let outlier_detection = self.outlier_detection(s, forwarding);
        let gue_port = match &s.gue_port {
            None => defaults::GUE_PORT,
            Some(raw) => {
                if forwarding.is_some() && forwarding != Some(Forwarding::Gue) {
                    self.report
                        .error(&raw.referenced, "`gue_port` is only for gue services");
                }
                self.port_number(raw, "gue_port")
                    .unwrap_or(defaults::GUE_PORT)
            }
        };
        Some(ServiceConfig {
            name: s.name.value.clone(),
            vip: vip?,
            port,
            protocol,
            mode,
            forwarding,
            maglev_table_size,
            backends,
            health_check,
            panic_threshold,
            drain_timeout,
            on_unhealthy,
            outlier_detection,
            gue_port,
            l7,
        })
    }

    fn l7_refusals(&mut self, s: &RawService) {
        if let Some(f) = &s.forwarding {
            self.report.error(
                &f.referenced,
                "`forwarding` is only for l4 services; an l7 service uses `routes` and `clusters`",
            );
        }
        if let Some(b) = &s.backends {
            self.report.error(
                &b.referenced,
                "`backends` is only for l4 services; an l7 service lists them in `clusters`",
            );
        }
    }

    fn l7(
        &mut self,
        s: &RawService,
        port: Option<u16>,
        protocol: Protocol,
        ports: &[PortConfig],
        at: &Location,
    ) -> Option<L7Config> {
        if protocol != Protocol::Tcp {
            if let Some(p) = &s.protocol {
                self.report
                    .error(&p.referenced, "an l7 service must use protocol tcp");
            }
        }
        if port.is_none() && s.port.is_none() {
            self.report
                .error(at, format!("l7 service `{}` needs a `port`", s.name.value));
        }
        self.l7_sections(s, ports, at)
    }

    fn backends(
        &mut self,
        s: &RawService,
        vip: Option<IpAddr>,
        service_port: Option<u16>,
        forwarding: Option<Forwarding>,
        ports: &[PortConfig],
    ) -> Vec<BackendConfig> {
        let raw: &[S<RawBackend>] = s.backends.as_ref().map_or(&[], |b| &b.value);
        if raw.is_empty() {
            let at = s
                .backends
                .as_ref()
                .map_or(&s.name.referenced, |b| &b.referenced);
            self.report.error(
                at,
                format!("service `{}` needs at least one backend", s.name.value),
            );
        }
        let mut seen: HashMap<(IpAddr, Option<u16>), Location> = HashMap::new();
        let mut backends = Vec::new();
        for backend in raw {
            let b = &backend.value;
            let weight = self.int_or(
                b.weight.as_ref(),
                "weight",
                limits::WEIGHT,
                defaults::WEIGHT,
            );
            let port = b.port.as_ref().and_then(|p| {
                if forwarding.is_some() && forwarding != Some(Forwarding::Nat) {
                    self.report.error(
                        &p.referenced,
                        "a backend `port` is only for nat services (dsr, ipip and gue keep the \
                         destination port)",
                    );
                    return None;
                }
                if service_port.is_none() && s.port.is_none() {
                    self.report.error(
                        &p.referenced,
                        "a backend `port` needs a service `port` (this service takes every port)",
                    );
                    return None;
                }
                self.port_number(p, "port")
            });
            let Some(address) = self.unicast_ip(&b.address, "backend address") else {
                continue;
            };
            let at = &b.address.referenced;
            if let (Some(vip), Some(forwarding)) = (vip, forwarding) {
                self.backend_family(at, address, vip, forwarding);
                if address == vip {
                    self.report
                        .error(at, format!("backend {address} is the service's vip"));
                }
            }
            if let Some(own) = ports.iter().find(|p| p.address == address) {
                self.report.error(
                    at,
                    format!("backend {address} is the address of port `{}`", own.name),
                );
            } else if let Some(own) = ports.iter().find(|p| p.snat_addresses.contains(&address)) {
                self.report.error(
                    at,
                    format!("backend {address} is a snat address of port `{}`", own.name),
                );
            } else if !ports.is_empty()
                && !ports
                    .iter()
                    .any(|p| p.address.is_ipv4() == address.is_ipv4())
            {
                self.report.error(
                    at,
                    format!(
                        "backend {address} is {} but no port has an {} address to reach it",
                        family_name(address),
                        family_name(address)
                    ),
                );
            } else if forwarding == Some(Forwarding::Dsr)
                && !ports.is_empty()
                && !ports.iter().any(|p| p.on_link(address))
                && vip.is_some_and(|vip| vip.is_ipv4() == address.is_ipv4())
            {
                self.report.error(
                    at,
                    format!(
                        "backend {address} is on no port's subnet: dsr reaches backends on the \
                         link only (use ipip, gue or nat to route)"
                    ),
                );
            }
            if let Some(first) = seen.insert((address, port), *at) {
                self.report.error(
                    at,
                    format!("backend {address} is listed twice ({})", line_of(&first)),
                );
            }
            backends.push(BackendConfig {
                address,
                weight,
                port,
            });
        }
        backends
    }

    /// dsr and nat keep the VIP's family; ipip and gue carry 4in4, 6in6 and 4in6.
    fn backend_family(&mut self, at: &Location, backend: IpAddr, vip: IpAddr, fwd: Forwarding) {
        let same = backend.is_ipv4() == vip.is_ipv4();
        match fwd {
            Forwarding::Dsr | Forwarding::Nat if !same => self.report.error(
                at,
                format!(
                    "backend {backend} is {} but the vip {vip} is {}: {} needs backends of the \
                     vip's family",
                    family_name(backend),
                    family_name(vip),
                    fwd.name()
                ),
            ),
            Forwarding::Ipip | Forwarding::Gue if vip.is_ipv6() && backend.is_ipv4() => {
                self.report.error(
                    at,
                    format!(
                        "backend {backend} is IPv4 but the vip {vip} is IPv6: {} cannot carry IPv6 \
                         in IPv4 (4in4, 6in6 and 4in6 are supported)",
                        fwd.name()
                    ),
                )
            }
            _ => {}
        }
    }

    fn maglev_table_size(&mut self, s: &RawService, backend_count: usize) -> u32 {
        let Some(raw) = &s.maglev_table_size else {
            return defaults::MAGLEV_TABLE_SIZE;
        };
        let Some(size) = self.int(raw, "maglev_table_size", 2..=limits::MAGLEV_TABLE_SIZE_MAX)
        else {
            return defaults::MAGLEV_TABLE_SIZE;
        };
        if !is_prime(size) {
            self.report.error(
                &raw.referenced,
                format!(
                    "maglev_table_size {size} is not prime (the next prime is {})",
                    next_prime(size)
                ),
            );
            return defaults::MAGLEV_TABLE_SIZE;
        }
        let count = u64::try_from(backend_count).unwrap_or(u64::MAX);
        if u64::from(size) <= count {
            self.report.error(
                &raw.referenced,
                format!(
                    "maglev_table_size {size} must be larger than the number of backends ({count})"
                ),
            );
        } else if u64::from(size) < count.saturating_mul(limits::MAGLEV_ENTRIES_PER_BACKEND) {
            self.report.warn(
                &raw.referenced,
                format!(
                    "maglev_table_size {size} is less than {} entries per backend ({count} \
                     backends): load will be uneven",
                    limits::MAGLEV_ENTRIES_PER_BACKEND
                ),
            );
        }
        size
    }

    /// Passive checks: on by default for `nat` (fulcrum sees the replies), refused for
    /// the other modes (the replies bypass fulcrum).
    fn outlier_detection(
        &mut self,
        s: &RawService,
        forwarding: Option<Forwarding>,
    ) -> OutlierDetectionConfig {
        let nat = forwarding == Some(Forwarding::Nat);
        let Some(raw) = &s.outlier_detection else {
            return if nat {
                OutlierDetectionConfig {
                    consecutive_failures: defaults::OUTLIER_CONSECUTIVE_FAILURES,
                    ..OutlierDetectionConfig::OFF
                }
            } else {
                OutlierDetectionConfig::OFF
            };
        };
        if !nat {
            self.report.error(
                &raw.referenced,
                "`outlier_detection` needs `forwarding: nat`: with dsr, ipip and gue the replies bypass fulcrum",
            );
            return OutlierDetectionConfig::OFF;
        }
        let o: &RawOutlierDetection = &raw.value;
        let consecutive_failures = self.int_or(
            o.consecutive_failures.as_ref(),
            "consecutive_failures",
            limits::OUTLIER_FAILURES,
            defaults::OUTLIER_CONSECUTIVE_FAILURES,
        );
        let connect_timeout = self.duration_or(
            o.connect_timeout.as_ref(),
            "connect_timeout",
            defaults::OUTLIER_CONNECT_TIMEOUT,
            false,
        );
        if connect_timeout > limits::OUTLIER_CONNECT_TIMEOUT_MAX {
            if let Some(t) = &o.connect_timeout {
                self.report.error(
                    &t.referenced,
                    format!(
                        "connect_timeout must be at most {}",
                        format_duration(limits::OUTLIER_CONNECT_TIMEOUT_MAX)
                    ),
                );
            }
        }
        let base_ejection_time = self.duration_or(
            o.base_ejection_time.as_ref(),
            "base_ejection_time",
            defaults::OUTLIER_BASE_EJECTION,
            false,
        );
        let max_ejection_time = self.duration_or(
            o.max_ejection_time.as_ref(),
            "max_ejection_time",
            defaults::OUTLIER_MAX_EJECTION.max(base_ejection_time),
            false,
        );
        if max_ejection_time < base_ejection_time {
            let at = o
                .max_ejection_time
                .as_ref()
                .map_or(&raw.referenced, |t| &t.referenced);
            self.report.error(
                at,
                format!(
                    "max_ejection_time {} is less than base_ejection_time {}",
                    format_duration(max_ejection_time),
                    format_duration(base_ejection_time)
                ),
            );
        }
        OutlierDetectionConfig {
            consecutive_failures,
            connect_timeout: connect_timeout.min(limits::OUTLIER_CONNECT_TIMEOUT_MAX),
            base_ejection_time,
            max_ejection_time,
        }
    }

    fn health_check(
        &mut self,
        s: &RawService,
        service_port: Option<u16>,
        backends: &[BackendConfig],
    ) -> HealthCheckConfig {
        let Some(raw) = &s.health_check else {
            return HealthCheckConfig::default();
        };
        let h: &RawHealthCheck = &raw.value;
        let kind = h.kind.as_ref().map_or(HealthCheckKind::Tcp, |k| k.value);
        let port = h.port.as_ref().and_then(|p| self.port_number(p, "port"));
        let every_backend_has_port =
            !backends.is_empty() && backends.iter().all(|b| b.port.is_some());
        if kind != HealthCheckKind::None
            && h.port.is_none()
            && service_port.is_none()
            && s.port.is_none()
            && !every_backend_has_port
        {
            self.report.error(
                &raw.referenced,
                "health_check needs a `port`: the service takes every port",
            );
        }
        let path = match &h.path {
            None => defaults::HEALTH_PATH.to_owned(),
            Some(path) => {
                if kind != HealthCheckKind::Http {
                    self.report
                        .error(&path.referenced, "`path` is only for http health checks");
                } else if !crate::health::is_request_path(&path.value) {
                    self.report.error(
                        &path.referenced,
                        format!(
                            "path must be {}, found `{}`",
                            crate::health::REQUEST_PATH_RULE,
                            path.value
                        ),
                    );
                }
                path.value.clone()
            }
        };
        let interval = self.duration_or(
            h.interval.as_ref(),
            "interval",
            defaults::HEALTH_INTERVAL,
            false,
        );
        let timeout = self.duration_or(
            h.timeout.as_ref(),
            "timeout",
            defaults::HEALTH_TIMEOUT,
            false,
        );
        if timeout >= interval {
            let at = h
                .timeout
                .as_ref()
                .or(h.interval.as_ref())
                .map_or(&raw.referenced, |t| &t.referenced);
            self.report.error(
                at,
                format!(
                    "health check timeout {} must be less than its interval {}",
                    format_duration(timeout),
                    format_duration(interval)
                ),
            );
        }
        let healthy_threshold = self.int_or(
            h.healthy_threshold.as_ref(),
            "healthy_threshold",
            limits::THRESHOLD,
            defaults::HEALTHY_THRESHOLD,
        );
        let unhealthy_threshold = self.int_or(
            h.unhealthy_threshold.as_ref(),
            "unhealthy_threshold",
            limits::THRESHOLD,
            defaults::UNHEALTHY_THRESHOLD,
        );
        HealthCheckConfig {
            kind,
            port,
            path,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
        }
    }
}

/// What `dpdk.eal_args` says about devices.
#[derive(Debug, Default)]
struct EalDevices {
    /// Names created by `--vdev`.
    vdevs: Vec<String>,
    /// PCI addresses in `-a` / `--allow` (normalized); empty means all.
    allowed: Vec<String>,
    /// `--no-pci` given.
    no_pci: bool,
}

impl EalDevices {
    fn from_args(args: &[String]) -> Self {
        let mut out = EalDevices::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let arg = arg.as_str();
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (arg, None),
            };
            let (flag, inline) = match flag {
                "--vdev" | "--allow" | "--pci-whitelist" => (flag, inline),
                _ if flag.starts_with("-a") && flag.len() > 2 => ("-a", Some(&arg[2..])),
                _ if flag.starts_with("-w") && flag.len() > 2 => ("-a", Some(&arg[2..])),
                _ => (flag, inline),
            };
            match flag {
                "--no-pci" => out.no_pci = true,
                "--vdev" => {
                    if let Some(value) = inline.or_else(|| iter.next().map(String::as_str)) {
                        let name = value.split(',').next().unwrap_or(value);
                        out.vdevs.push(name.to_owned());
                    }
                }
                "-a" | "-w" | "--allow" | "--pci-whitelist" => {
                    if let Some(value) = inline.or_else(|| iter.next().map(String::as_str)) {
                        let name = value.split(',').next().unwrap_or(value);
                        out.allowed.push(normalize_pci(name));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// `3b:00.0` and `0000:3B:00.0` name the same function.
fn normalize_pci(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if lower.len() == 7 {
        format!("0000:{lower}")
    } else {
        lower
    }
}

/// Trial division; table sizes are at most 2^24, so at most ~4096 divisions.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d: u32 = 3;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime above `n` (a hint in messages).
fn next_prime(n: u32) -> u32 {
    let mut candidate = n.saturating_add(1);
    while !is_prime(candidate) && candidate < u32::MAX {
        candidate += 1;
    }
    candidate
}

#[cfg(test)]
mod tests;
