//! The validated configuration: plain typed values, every default applied, every
//! cross-reference checked. Built only by [`super::load`] and friends.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::l7::config::{ClusterSpec, L7Settings, RouteSpec, TlsSpec};

/// Defaults and limits, with units. Documented in the README's configuration reference.
pub mod defaults {
    use std::time::Duration;

    /// `ports[].mtu`, bytes of IP packet.
    pub const MTU: u16 = 1500;
    /// `ports[].rx_desc` / `tx_desc`, descriptors per queue.
    pub const RING_DESCRIPTORS: u16 = 1024;
    /// `workers.burst`, packets per `rx_burst`.
    pub const BURST: u16 = 32;
    /// `flow_table.capacity`, entries per worker.
    pub const FLOW_TABLE_CAPACITY: u32 = 1 << 20;
    /// `flow_table.tcp_established_timeout`.
    pub const TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(300);
    /// `flow_table.tcp_transitory_timeout` (SYN-only, FIN, RST states).
    pub const TCP_TRANSITORY_TIMEOUT: Duration = Duration::from_secs(15);
    /// `flow_table.udp_timeout`.
    pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
    /// `admin.listen`.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9100";
    /// `services[].maglev_table_size`: prime, the Maglev paper's choice.
    pub const MAGLEV_TABLE_SIZE: u32 = 65_537;
    /// `services[].backends[].weight`.
    pub const WEIGHT: u16 = 1;
    /// `services[].health_check.path`.
    pub const HEALTH_PATH: &str = "/";
    /// `services[].health_check.interval`.
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    /// `services[].health_check.timeout`.
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    /// `services[].health_check.healthy_threshold`, consecutive successes.
    pub const HEALTHY_THRESHOLD: u8 = 2;
    /// `services[].health_check.unhealthy_threshold`, consecutive failures.
    pub const UNHEALTHY_THRESHOLD: u8 = 3;
    /// `services[].panic_threshold`, percent of backends healthy.
    pub const PANIC_THRESHOLD: u8 = 50;
    /// `services[].outlier_detection.consecutive_failures` (`nat` services).
    pub const OUTLIER_CONSECUTIVE_FAILURES: u16 = 5;
    /// `services[].outlier_detection.connect_timeout`: no SYN-ACK within it is a failure.
    pub const OUTLIER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// `services[].outlier_detection.base_ejection_time`.
    pub const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(30);
    /// `services[].outlier_detection.max_ejection_time`.
    pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
    /// `services[].drain_timeout`.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// `services[].gue_port`, destination UDP port of GUE packets (the Linux `fou` default
    /// used by Katran's examples).
    pub const GUE_PORT: u16 = 6080;
}

/// Limits a valid file stays within.
pub mod limits {
    /// `ports[].mtu` range, bytes (IPv4 minimum 68; jumbo frames up to 9000).
    pub const MTU: std::ops::RangeInclusive<u16> = 68..=9000;
    /// IPv6 needs links of at least 1280 bytes (RFC 8200).
    pub const MTU_IPV6_MIN: u16 = 1280;
    /// `ports[].snat_addresses`: at most this many (with the port's address, 256 full-NAT
    /// source addresses).
    pub const SNAT_ADDRESSES: usize = 255;
    /// `dpdk.mbuf_data_room`.
    pub const MBUF_DATA_ROOM: std::ops::RangeInclusive<u16> = 256..=16384;
    /// What an mbuf holds besides the IP packet of a port's MTU: DPDK's 128 bytes of
    /// headroom, an Ethernet header with two VLAN tags (22) and the frame check sequence
    /// some NICs leave in the buffer (4). Every header fulcrum adds (encapsulation, up to
    /// IPv6 + UDP for GUE, 48 bytes; an ICMP error's IP and ICMP headers) is prepended
    /// into the headroom and nothing grows a packet at its end, so the data room needs no
    /// allowance for them: a frame received at the port's MTU fits as it came.
    pub const MBUF_ROOM_OVERHEAD: u16 = 128 + 22 + 4;
    /// `rx_desc` / `tx_desc` range; must also be a power of two.
    pub const RING_DESCRIPTORS: std::ops::RangeInclusive<u16> = 64..=16384;
    /// `workers.burst` range, packets.
    pub const BURST: std::ops::RangeInclusive<u16> = 1..=512;
    /// `flow_table.capacity` range, entries per worker.
    pub const FLOW_TABLE_CAPACITY: std::ops::RangeInclusive<u32> = 1..=(1 << 28);
    /// `maglev_table_size` upper bound (entries; 4 bytes each per service).
    pub const MAGLEV_TABLE_SIZE_MAX: u32 = 1 << 24;
    /// Maglev balances within about 1% when the table has at least this many entries
    /// per backend (the paper's guidance); fewer gives a warning.
    pub const MAGLEV_ENTRIES_PER_BACKEND: u64 = 100;
    /// `backends[].weight` range; 0 drains a backend (no new flows).
    pub const WEIGHT: std::ops::RangeInclusive<u16> = 0..=u16::MAX;
    /// `healthy_threshold` / `unhealthy_threshold` range, consecutive probes.
    pub const THRESHOLD: std::ops::RangeInclusive<u8> = 1..=100;
    /// `outlier_detection.consecutive_failures` range (0 turns passive checks off).
    pub const OUTLIER_FAILURES: std::ops::RangeInclusive<u16> = 0..=10_000;
    /// `outlier_detection.connect_timeout` upper bound (the engine clock counts ms in u32).
    pub const OUTLIER_CONNECT_TIMEOUT_MAX: std::time::Duration =
        std::time::Duration::from_secs(600);
    /// `panic_threshold` range, percent.
    pub const PANIC_THRESHOLD: std::ops::RangeInclusive<u8> = 0..=100;
    /// Names (ports, services) are at most this long and use `[A-Za-z0-9_.-]`, so they can
    /// be metric labels as they are.
    pub const NAME_LEN: usize = 64;
}

/// A whole validated configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The `dpdk` section.
    pub dpdk: DpdkConfig,
    /// The `ports` section, in file order (port 0 first).
    pub ports: Vec<PortConfig>,
    /// The `workers` section.
    pub workers: WorkersConfig,
    /// The `flow_table` section.
    pub flow_table: FlowTableConfig,
    /// The `admin` section.
    pub admin: AdminConfig,
    /// The `services` section, in file order.
    pub services: Vec<ServiceConfig>,
    /// The `l7` section: the L7 pool's cores, limits, default timeouts, access log.
    pub l7: L7Settings,
}

impl Config {
    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The number of backends over all services: an `l4` service's backends, an `l7`
    /// service's cluster endpoints.
    pub fn backend_count(&self) -> usize {
        self.services
            .iter()
            .map(|s| {
                s.backends.len()
                    + s.l7.as_ref().map_or(0, |l7| {
                        l7.clusters.iter().map(|c| c.endpoints.len()).sum::<usize>()
                    })
            })
            .sum()
    }
}

/// `dpdk`: how the EAL is started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DpdkConfig {
    /// Passed to `rte_eal_init` as given (after the program name).
    pub eal_args: Vec<String>,
    /// Mbufs in the packet pool; default: enough for every RX/TX ring of every worker
    /// plus bursts and hand-off queues in flight. Raise it for `net_pcap` with
    /// `infinite_rx=1`, which loads the whole file into the pool first.
    pub mbufs: Option<u32>,
    /// Bytes of buffer per mbuf, headroom included; default 2,176 (DPDK's). Smaller rooms
    /// pack the pool tighter (a benchmark of small frames); every room must hold the
    /// largest frame a port takes plus [`MBUF_ROOM_OVERHEAD`](limits::MBUF_ROOM_OVERHEAD).
    pub mbuf_data_room: Option<u16>,
}

/// `ports[]`: one DPDK port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Used in logs and metrics.
    pub name: String,
    /// A vdev name (created by a `--vdev` in `eal_args`) or a PCI address.
    pub device: String,
    /// The LB's own address on this port.
    pub address: IpAddr,
    /// The prefix length of the port's subnet.
    pub prefix_len: u8,
    /// Next hop for destinations off the subnet.
    pub gateway: Option<IpAddr>,
    /// Static neighbour entries that never expire.
    pub neighbors: Vec<Neighbor>,
    /// Largest IP packet, bytes (default 1500).
    pub mtu: u16,
    /// RX descriptors per queue (default 1024).
    pub rx_desc: u16,
    /// TX descriptors per queue (default 1024).
    pub tx_desc: u16,
    /// The kernel interface (a `net_tap` device fulcrum creates with this name) that
    /// carries the port's address: traffic for the LB itself and for `l7` services goes
    /// to the kernel through it, and what the kernel sends leaves through the port.
    /// Health checks and the L7 pool need it. None: no kernel interface.
    pub kernel_interface: Option<String>,
    /// Further source addresses of full NAT (`forwarding: nat`) on this port, after
    /// `address`: each adds a full range of NAT source ports per backend, as DPVS's
    /// local-address pools do. Same family, on the subnet; fulcrum answers ARP / ND for
    /// them.
    pub snat_addresses: Vec<IpAddr>,
}

impl PortConfig {
    /// The port's full-NAT source addresses: `address` first, then `snat_addresses`.
    pub fn nat_sources(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.address).chain(self.snat_addresses.iter().copied())
    }

    /// Whether `address` is on this port's subnet.
    pub fn on_link(&self, address: IpAddr) -> bool {
        super::address::Cidr {
            address: self.address,
            prefix_len: self.prefix_len,
        }
        .contains(address)
    }
}

/// `ports[].neighbors[]`: a permanent neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The neighbour's IP address (same family as the port).
    pub address: IpAddr,
    /// Its Ethernet address (unicast).
    pub mac: [u8; 6],
}

/// `workers`: the poll-mode workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkersConfig {
    /// One worker per core, in file order; worker `i` owns queue `i` of every port.
    pub cores: Vec<u32>,
    /// Packets per `rx_burst` (default 32).
    pub burst: u16,
    /// What a worker does when its queues are empty (default `adaptive`).
    pub idle: IdlePolicy,
}

/// `workers.idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdlePolicy {
    /// Back off (pause, then short sleeps) after consecutive empty polls; wakes within
    /// tens of microseconds. Leaves the core to others on a shared machine.
    Adaptive,
    /// Spin on the queues: lowest latency, the core shows 100% busy.
    Poll,
}

/// `flow_table`: the per-worker connection table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Entries per worker.
    pub capacity: u32,
    /// Idle time after which an established TCP flow is forgotten.
    pub tcp_established_timeout: Duration,
    /// Idle time for TCP flows in SYN-only, FIN or RST states.
    pub tcp_transitory_timeout: Duration,
    /// Idle time for UDP flows.
    pub udp_timeout: Duration,
}

/// `admin`: the HTTP listener for metrics and the JSON API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address and port to listen on (default 127.0.0.1:9100).
    pub listen: SocketAddr,
    /// If set, `/api/...` requests need `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// `services[].protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// `services[].mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Packets are forwarded by the data plane (`forwarding`).
    L4,
    /// Connections are handed to the L7 pool (`routes`, `clusters`).
    L7,
}

/// `services[].forwarding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// L2 direct server return: rewrite MACs; the backend holds the VIP on loopback.
    Dsr,
    /// IP-in-IP encapsulation (4in4, 6in6, 4in6), direct server return.
    Ipip,
    /// Generic UDP encapsulation to `gue_port`, direct server return.
    Gue,
    /// Full NAT: DNAT to the backend, SNAT to the port address.
    Nat,
}

impl Forwarding {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Dsr => "dsr",
            Forwarding::Ipip => "ipip",
            Forwarding::Gue => "gue",
            Forwarding::Nat => "nat",
        }
    }
}

/// `services[].on_unhealthy`: what happens to established flows of a backend that
/// turns unhealthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    /// They stay pinned to it (default; a flapping check does not break connections).
    Keep,
    /// They are forgotten, so their next packet picks a healthy backend (TCP sessions
    /// then reset at the new backend).
    Reset,
}

/// `services[].health_check.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    /// A TCP connect.
    Tcp,
    /// `GET path`, healthy on a 2xx or 3xx status.
    Http,
    /// No probes: every backend is healthy.
    None,
}

/// `services[]`: one virtual service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: String,
    /// Virtual IP.
    pub vip: IpAddr,
    /// Destination port; `None` means every port.
    pub port: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// `l4` or `l7`.
    pub mode: Mode,
    /// How packets reach backends: `Some` for every `l4` service, `None` for `l7`.
    pub forwarding: Option<Forwarding>,
    /// Prime Maglev lookup-table size.
    pub maglev_table_size: u32,
    /// Backends, in file order (empty for `l7`).
    pub backends: Vec<BackendConfig>,
    /// Active health checking.
    pub health_check: HealthCheckConfig,
    /// Percent: when fewer than this share of backends is healthy, health is ignored.
    pub panic_threshold: u8,
    /// How long a removed or drained backend keeps its established flows.
    pub drain_timeout: Duration,
    /// Established flows of a backend that turns unhealthy.
    pub on_unhealthy: OnUnhealthy,
    /// Passive health from the connections fulcrum sees (`nat` only; off for others).
    pub outlier_detection: OutlierDetectionConfig,
    /// GUE destination UDP port (meaningful for `gue` only).
    pub gue_port: u16,
    /// The L7 sections, for `l7` services.
    pub l7: Option<L7Config>,
}

/// The L7 part of an `l7` service, in the L7 pool's own types (`crate::l7::config`).
#[derive(Clone, Debug, PartialEq)]
pub struct L7Config {
    /// TLS termination; `None`: plain HTTP/1.1 and h2c.
    pub tls: Option<TlsSpec>,
    /// Routes, first match wins.
    pub routes: Vec<RouteSpec>,
    /// Upstream clusters.
    pub clusters: Vec<ClusterSpec>,
}

/// `services[].backends[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// The backend's address.
    pub address: IpAddr,
    /// Relative Maglev weight; 0 drains (no new flows).
    pub weight: u16,
    /// `nat` only: the backend's port (defaults to the service port).
    pub port: Option<u16>,
}

/// `services[].outlier_detection`: passive health checks of a `nat` service, whose
/// replies pass through fulcrum. A RST answering a SYN, no SYN-ACK within
/// `connect_timeout`, or an ICMP unreachable is a connection failure; a SYN-ACK is a
/// success. `consecutive_failures` in a row eject the backend for `base_ejection_time`,
/// doubled on each repeated ejection up to `max_ejection_time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierDetectionConfig {
    /// Failures in a row that eject a backend; 0 = passive checks off.
    pub consecutive_failures: u16,
    /// A SYN not answered within this is a failure.
    pub connect_timeout: Duration,
    /// First ejection's length.
    pub base_ejection_time: Duration,
    /// Longest ejection.
    pub max_ejection_time: Duration,
}

impl OutlierDetectionConfig {
    /// Passive checks off (services whose replies fulcrum does not see).
    pub const OFF: OutlierDetectionConfig = OutlierDetectionConfig {
        consecutive_failures: 0,
        connect_timeout: defaults::OUTLIER_CONNECT_TIMEOUT,
        base_ejection_time: defaults::OUTLIER_BASE_EJECTION,
        max_ejection_time: defaults::OUTLIER_MAX_EJECTION,
    };

    /// Whether passive checks run.
    pub fn enabled(&self) -> bool {
        self.consecutive_failures > 0
    }
}

/// `services[].health_check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// `tcp`, `http` or `none` (`none` when the section is absent).
    pub kind: HealthCheckKind,
    /// Port probed; `None` means the port the backend serves (its `nat` port, else the
    /// service port).
    pub port: Option<u16>,
    /// HTTP path (default `/`).
    pub path: String,
    /// Time between probes of one backend (default 2s).
    pub interval: Duration,
    /// Time a probe may take (default 1s); always less than `interval`.
    pub timeout: Duration,
    /// Consecutive successes to turn healthy (default 2).
    pub healthy_threshold: u8,
    /// Consecutive failures to turn unhealthy (default 3).
    pub unhealthy_threshold: u8,
}

impl HealthCheckConfig {
    /// The port to probe `backend` of `service` on; validation guarantees one exists for
    /// `tcp` and `http` checks.
    pub fn port_for(&self, service: &ServiceConfig, backend: &BackendConfig) -> Option<u16> {
        self.port.or(backend.port).or(service.port)
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: HealthCheckKind::None,
            port: None,
            path: defaults::HEALTH_PATH.to_owned(),
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            healthy_threshold: defaults::HEALTHY_THRESHOLD,
            unhealthy_threshold: defaults::UNHEALTHY_THRESHOLD,
        }
    }
}
