//! The file as serde reads it: every key the contract names, every value wrapped in
//! [`Spanned`] so validation can point at its line and column. Unknown keys are
//! refused here; everything else (ranges, addresses, durations, cross-references) is
//! checked in [`super::validate`], which reports every problem at once.
//!
//! Integers are read as `i64` and strings are kept as text so a value out of range or
//! malformed is a validation message with a position, not the first serde error.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::model::{Forwarding, HealthCheckKind, IdlePolicy, Mode, OnUnhealthy, Protocol};
use crate::l7::config::{ClusterSpec, L7Settings, RouteSpec, TlsSpec};

/// A value and where it is in the file.
pub type S<T> = Spanned<T>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub dpdk: Option<RawDpdk>,
    pub ports: S<Vec<S<RawPort>>>,
    pub workers: S<RawWorkers>,
    #[serde(default)]
    pub flow_table: Option<RawFlowTable>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub services: Option<S<Vec<S<RawService>>>>,
    /// The L7 pool's settings (typed by the pool; serde reports their shape errors).
    #[serde(default)]
    pub l7: Option<S<L7Settings>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpdk {
    #[serde(default)]
    pub eal_args: Option<Vec<S<String>>>,
    #[serde(default)]
    pub mbufs: Option<S<i64>>,
    #[serde(default)]
    pub mbuf_data_room: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    pub name: S<String>,
    pub device: S<String>,
    pub address: S<String>,
    #[serde(default)]
    pub gateway: Option<S<String>>,
    #[serde(default)]
    pub neighbors: Option<Vec<S<RawNeighbor>>>,
    #[serde(default)]
    pub mtu: Option<S<i64>>,
    #[serde(default)]
    pub rx_desc: Option<S<i64>>,
    #[serde(default)]
    pub tx_desc: Option<S<i64>>,
    #[serde(default)]
    pub kernel_interface: Option<S<String>>,
    #[serde(default)]
    pub snat_addresses: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNeighbor {
    pub address: S<String>,
    pub mac: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkers {
    pub cores: S<Vec<S<i64>>>,
    #[serde(default)]
    pub burst: Option<S<i64>>,
    #[serde(default)]
    pub idle: Option<S<IdlePolicy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlowTable {
    #[serde(default)]
    pub capacity: Option<S<i64>>,
    #[serde(default)]
    pub tcp_established_timeout: Option<S<String>>,
    #[serde(default)]
    pub tcp_transitory_timeout: Option<S<String>>,
    #[serde(default)]
    pub udp_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default)]
    pub listen: Option<S<String>>,
    #[serde(default)]
    pub token: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: S<String>,
    pub vip: S<String>,
    #[serde(default)]
    pub port: Option<S<i64>>,
    #[serde(default)]
    pub protocol: Option<S<Protocol>>,
    #[serde(default)]
    pub mode: Option<S<Mode>>,
    #[serde(default)]
    pub forwarding: Option<S<Forwarding>>,
    #[serde(default)]
    pub maglev_table_size: Option<S<i64>>,
    #[serde(default)]
    pub backends: Option<S<Vec<S<RawBackend>>>>,
    #[serde(default)]
    pub health_check: Option<S<RawHealthCheck>>,
    #[serde(default)]
    pub panic_threshold: Option<S<i64>>,
    #[serde(default)]
    pub drain_timeout: Option<S<String>>,
    #[serde(default)]
    pub on_unhealthy: Option<S<OnUnhealthy>>,
    #[serde(default)]
    pub outlier_detection: Option<S<RawOutlierDetection>>,
    #[serde(default)]
    pub gue_port: Option<S<i64>>,
    /// L7 only: TLS termination.
    #[serde(default)]
    pub tls: Option<S<TlsSpec>>,
    /// L7 only: routes, first match wins.
    #[serde(default)]
    pub routes: Option<S<Vec<S<RouteSpec>>>>,
    /// L7 only: upstream clusters.
    #[serde(default)]
    pub clusters: Option<S<Vec<S<ClusterSpec>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: S<String>,
    #[serde(default)]
    pub weight: Option<S<i64>>,
    #[serde(default)]
    pub port: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlierDetection {
    #[serde(default)]
    pub consecutive_failures: Option<S<i64>>,
    #[serde(default)]
    pub connect_timeout: Option<S<String>>,
    #[serde(default)]
    pub base_ejection_time: Option<S<String>>,
    #[serde(default)]
    pub max_ejection_time: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(default)]
    pub kind: Option<S<HealthCheckKind>>,
    #[serde(default)]
    pub port: Option<S<i64>>,
    #[serde(default)]
    pub path: Option<S<String>>,
    #[serde(default)]
    pub interval: Option<S<String>>,
    #[serde(default)]
    pub timeout: Option<S<String>>,
    #[serde(default)]
    pub healthy_threshold: Option<S<i64>>,
    #[serde(default)]
    pub unhealthy_threshold: Option<S<i64>>,
}
