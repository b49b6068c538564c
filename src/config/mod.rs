//! The YAML configuration file: reading, validation, and the typed [`Config`] the rest
//! of fulcrum uses.
//!
//! The file's shape is the contract in the README (keys, defaults, limits). Reading goes
//! in two steps:
//! 1. serde (serde-saphyr) reads the text into a raw model that keeps every value's
//!    line and column. YAML syntax errors, unknown keys, missing keys and values of the
//!    wrong type stop here, at the first one.
//! 2. Validation checks every value and cross-reference and reports *every* problem,
//!    each at the line and column of the value concerned.
//!
//! Messages read `FILE:LINE:COL: message` ([`Diagnostic`]). A file with only warnings
//! is accepted.
//!
//! Rules worth knowing (the full list is in the README):
//! - A health check's `timeout` must be less than its `interval` (an error: a probe
//!   that outlives its interval would overlap the next one).
//! - `maglev_table_size` must be prime and larger than the number of backends; fewer
//!   than 100 entries per backend is a warning.
//! - `dsr` and `nat` backends have the VIP's address family; `ipip` and `gue` carry
//!   4in4, 6in6 and 4in6 (an IPv6 VIP with an IPv4 backend is refused).
//! - `workers.cores` must be online on the host checking the file ([`Host`]).
//! - An `l7` service carries `routes` and `clusters` instead of `forwarding` and
//!   `backends`; they are kept as written ([`Value`]) and their shape is set by the
//!   issue that builds the L7 pool.
//!
//! # Reference
//!
//! Durations are `<integer><unit>` with unit `ms`, `s`, `m` or `h`. Names (ports,
//! services) are 1 to 64 of `[A-Za-z0-9_.-]`. "req." marks a required key.
//!
//! | key | default | rule |
//! |---|---|---|
//! | `dpdk.eal_args` | `[]` | passed to `rte_eal_init` as given |
//! | `ports[].kernel_interface` | none | name of the `net_tap` interface fulcrum creates for the port's address |
//! | `dpdk.mbufs` | sized from the rings | mbufs in the packet pool, 1023 to 2^26 |
//! | `dpdk.mbuf_data_room` | 2176 | bytes per mbuf, headroom included, 256 to 16384; at least every port's `mtu` + 154 |
//! | `ports` | req. | at least one |
//! | `ports[].name` | req. | unique |
//! | `ports[].device` | req. | unique; a PCI address (refused with `--no-pci`, must be in `-a` if any) or a name created by `--vdev` |
//! | `ports[].address` | req. | `ADDR/LEN`, unicast |
//! | `ports[].gateway` | none | same family, on the subnet, not the port address |
//! | `ports[].neighbors[]` | `[]` | `address` (same family, unique) + unicast `mac` |
//! | `ports[].snat_addresses` | `[]` | up to 255 more full-NAT source addresses: unicast, same family, on the subnet, none of the port's address, gateway, neighbours, VIPs or backends, each once |
//! | `ports[].mtu` | 1500 | 68..=9000; IPv6 ports at least 1280 |
//! | `ports[].rx_desc`, `tx_desc` | 1024 | power of two, 64..=16384 |
//! | `workers.cores` | req. | at least one; unique; online on the host |
//! | `workers.burst` | 32 | 1..=512 |
//! | `workers.idle` | `adaptive` | `adaptive` \| `poll` |
//! | `flow_table.capacity` | 1048576 | 1..=2^28 per worker |
//! | `flow_table.tcp_established_timeout` | 300s | > 0 |
//! | `flow_table.tcp_transitory_timeout` | 15s | > 0 |
//! | `flow_table.udp_timeout` | 30s | > 0 |
//! | `admin.listen` | 127.0.0.1:9100 | `IP:PORT` or `[IPv6]:PORT` |
//! | `admin.token` | none | non-empty |
//! | `services[].name` | req. | unique |
//! | `services[].vip` | req. | unicast, not a port address; vip + port + protocol unique (no port overlaps every port) |
//! | `services[].port` | every port | 1..=65535; required for `l7` |
//! | `services[].protocol` | `tcp` | `tcp` \| `udp`; `l7` needs `tcp` |
//! | `services[].mode` | `l4` | `l4` \| `l7` |
//! | `services[].forwarding` | req. for `l4` | `dsr` \| `ipip` \| `gue` \| `nat`; refused for `l7` |
//! | `services[].maglev_table_size` | 65537 | prime, 2..=2^24, larger than the backend count; under 100 per backend warns |
//! | `services[].backends[]` | req. for `l4` | at least one; refused for `l7`; unique address (+ port) |
//! | `backends[].address` | req. | family: see above; a port of its family exists; `dsr`: on a port's subnet; not the vip nor a port address |
//! | `backends[].weight` | 1 | 0..=65535; 0 drains; all 0 warns |
//! | `backends[].port` | service port | `nat` only, needs a service port; 1..=65535 |
//! | `services[].health_check` | kind `none` | absent: no probes |
//! | `health_check.kind` | `tcp` | `tcp` \| `http` \| `none` |
//! | `health_check.port` | backend's port | 1..=65535; required when the service takes every port |
//! | `health_check.path` | `/` | `http` only; starts with `/`, no spaces |
//! | `health_check.interval` | 2s | > 0 |
//! | `health_check.timeout` | 1s | > 0 and less than `interval` (error) |
//! | `health_check.healthy_threshold` | 2 | 1..=100 |
//! | `health_check.unhealthy_threshold` | 3 | 1..=100 |
//! | `services[].panic_threshold` | 50 | percent, 0..=100 |
//! | `services[].drain_timeout` | 30s | 0s allowed (drop drained flows at once) |
//! | `services[].on_unhealthy` | `keep` | `keep` \| `reset` |
//! | `services[].gue_port` | 6080 | `gue` only; 1..=65535 |
//! | `services[].routes`, `clusters` | req. for `l7` | kept as written; refused for `l4` |
mod address;
mod diagnostic;
mod duration;
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod model;
mod raw;
mod validate;
mod value;
pub mod watch;

use std::path::Path;

pub use address::{is_pci_address, parse_cidr, parse_ip, parse_mac, AddressError, Cidr};
pub use diagnostic::{Diagnostic, Severity};
pub use duration::{format_duration, parse_duration, DurationError};
pub use host::{parse_cpu_list, Host};
pub use model::{
    defaults, limits, AdminConfig, BackendConfig, Config, DpdkConfig, FlowTableConfig, Forwarding,
    HealthCheckConfig, HealthCheckKind, IdlePolicy, L7Config, Mode, Neighbor, OnUnhealthy,
    OutlierDetectionConfig, PortConfig, Protocol, ServiceConfig, WorkersConfig,
};
pub use value::Value;

use diagnostic::Report;

/// A configuration file larger than this is refused unread (bytes).
pub const MAX_FILE_SIZE: u64 = 16 << 20;

/// A valid configuration and the warnings it drew.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings (never errors), in file order.
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates `path` against this host. On failure, every diagnostic found
/// (errors and warnings) in file order.
pub fn load(path: impl AsRef<Path>) -> Result<Config, Vec<Diagnostic>> {
    load_with(path, &Host::detect()).map(|loaded| loaded.config)
}

/// Reads and validates `path` against `host`, keeping the warnings.
pub fn load_with(path: impl AsRef<Path>, host: &Host) -> Result<Loaded, Vec<Diagnostic>> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = read(path, &file)?;
    from_str(&file, &text, host)
}

/// Validates YAML `text`; `file` names it in diagnostics.
pub fn from_str(file: &str, text: &str, host: &Host) -> Result<Loaded, Vec<Diagnostic>> {
    let mut report = Report::new(file);
    let blank = text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
    if blank {
        report.file_error(
            "the file is empty: expected a mapping with `ports`, `workers` and `services`",
        );
        return Err(report.into_sorted());
    }
    let raw: raw::RawConfig = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            report.yaml_error(&error);
            return Err(report.into_sorted());
        }
    };
    let config = validate::validate(raw, host, &mut report);
    if report.has_errors() {
        Err(report.into_sorted())
    } else {
        Ok(Loaded {
            config,
            warnings: report.into_sorted(),
        })
    }
}

fn read(path: &Path, file: &str) -> Result<String, Vec<Diagnostic>> {
    let refuse = |message: String| {
        let mut report = Report::new(file);
        report.file_error(message);
        report.into_sorted()
    };
    let size = std::fs::metadata(path)
        .map_err(|e| refuse(format!("cannot read the file: {e}")))?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(refuse(format!(
            "the file is {size} bytes; at most {MAX_FILE_SIZE} are read"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| refuse(format!("cannot read the file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        refuse(format!(
            "the file is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// What `fulcrum check` prints for a valid file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The file as named.
    pub file: String,
    /// Number of ports.
    pub ports: usize,
    /// Number of workers (cores).
    pub workers: usize,
    /// Number of services.
    pub services: usize,
    /// Number of backends over all services.
    pub backends: usize,
    /// Warnings, in file order.
    pub warnings: Vec<Diagnostic>,
}

impl Summary {
    fn new(file: &str, loaded: Loaded) -> Self {
        let config = &loaded.config;
        Summary {
            file: file.to_owned(),
            ports: config.ports.len(),
            workers: config.workers.cores.len(),
            services: config.services.len(),
            backends: config.backend_count(),
            warnings: loaded.warnings,
        }
    }
}

/// `1 port`, `2 ports`.
fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

impl std::fmt::Display for Summary {
    /// `configs/demo.yaml: ok: 1 port, 1 worker, 3 services (7 backends)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: ok: {}, {}, {} ({})",
            self.file,
            count(self.ports, "port", "ports"),
            count(self.workers, "worker", "workers"),
            count(self.services, "service", "services"),
            count(self.backends, "backend", "backends"),
        )
    }
}

/// Validates `path` against this host, as `fulcrum check -c FILE` does.
pub fn check_file(path: impl AsRef<Path>) -> Result<Summary, Vec<Diagnostic>> {
    check_file_with(path, &Host::detect())
}

/// Validates `path` against `host` (for checking a file meant for another machine).
pub fn check_file_with(path: impl AsRef<Path>, host: &Host) -> Result<Summary, Vec<Diagnostic>> {
    let path = path.as_ref();
    let file = path.display().to_string();
    load_with(path, host).map(|loaded| Summary::new(&file, loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_pluralizes() {
        let mut s = Summary {
            file: "configs/demo.yaml".into(),
            ports: 1,
            workers: 1,
            services: 3,
            backends: 7,
            warnings: Vec::new(),
        };
        assert_eq!(
            s.to_string(),
            "configs/demo.yaml: ok: 1 port, 1 worker, 3 services (7 backends)"
        );
        s.ports = 2;
        s.workers = 4;
        s.services = 1;
        s.backends = 1;
        assert_eq!(
            s.to_string(),
            "configs/demo.yaml: ok: 2 ports, 4 workers, 1 service (1 backend)"
        );
    }

    #[test]
    fn missing_file_is_one_diagnostic_without_position() {
        let err = check_file("/nonexistent/fulcrum.yaml")
            .err()
            .unwrap_or_default();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].line, 0);
        assert!(
            err[0]
                .to_string()
                .starts_with("/nonexistent/fulcrum.yaml: cannot read the file: "),
            "{}",
            err[0]
        );
    }
}
