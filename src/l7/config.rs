//! The L7 part of the YAML: the `l7:` section and the `routes` / `clusters` / `tls` of an
//! `l7` service. Every struct denies unknown fields and has defaults, so the main config
//! loader can embed these types as they are.

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::L7Error;
use crate::config::defaults as health_defaults;
pub use crate::config::HealthCheckKind;

/// A standalone L7 file: the `l7:` section and the `l7` services.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct L7Config {
    /// Pool-wide settings.
    #[serde(default)]
    pub l7: L7Settings,
    /// Services served by the pool.
    #[serde(default)]
    pub services: Vec<L7Service>,
}

/// The `l7:` section: cores, limits, timeouts, access log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L7Settings {
    /// CPU cores, one tokio worker thread pinned on each. Empty: two unpinned threads.
    pub cores: Vec<usize>,
    /// Limits against hostile clients.
    pub limits: Limits,
    /// Default upstream timeouts (clusters and routes may override).
    pub timeouts: Timeouts,
    /// Where JSON access log lines go.
    pub access_log: AccessLog,
    /// The zone (failure domain, e.g. a cloud availability zone) this pool runs in: a
    /// cluster with endpoints in it prefers them (zone-aware routing).
    pub zone: Option<String>,
}

impl Default for L7Settings {
    fn default() -> Self {
        L7Settings {
            cores: Vec::new(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            access_log: AccessLog::None,
            zone: None,
        }
    }
}

/// Where access log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLog {
    /// No access log.
    None,
    /// One JSON object per line on standard error.
    Stderr,
}

/// Limits on what a client may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head in bytes (431 above). At least 8192.
    pub max_header_bytes: usize,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Time a client has to send a complete request head (and idle keep-alive time).
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a complete request body (408 after).
    #[serde(deserialize_with = "de_duration")]
    pub body_read_timeout: Duration,
    /// Concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_concurrent_streams: 256,
        }
    }
}

/// Upstream timeouts, Envoy's meaning.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to an endpoint.
    #[serde(deserialize_with = "de_duration")]
    pub connect: Duration,
    /// From sending the request to the upstream's response head, per try (504 after).
    #[serde(deserialize_with = "de_duration")]
    pub request: Duration,
    /// Idle time of a pooled upstream connection.
    #[serde(deserialize_with = "de_duration")]
    pub idle: Duration,
    /// A response body the upstream sends nothing of for this long, while the client
    /// waits for more, is cut off (Envoy's `stream_idle_timeout`; the client sees the
    /// response end early: its connection closed, or its HTTP/2 stream reset).
    #[serde(deserialize_with = "de_duration")]
    pub stream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(15),
            idle: Duration::from_secs(60),
            stream_idle: Duration::from_secs(300),
        }
    }
}

/// One `mode: l7` service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L7Service {
    /// Name (metrics label).
    pub name: String,
    /// Always `l7` here; accepted so a service block reads like the main config's.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Standalone mode: the host socket address to listen on.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// TLS termination; absent: plain HTTP (HTTP/1.1 and h2c).
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Routes, first match wins.
    pub routes: Vec<RouteSpec>,
    /// Upstream clusters.
    pub clusters: Vec<ClusterSpec>,
}

fn default_mode() -> String {
    "l7".to_string()
}

/// TLS certificates of a service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Certificates; SNI picks one by `server_names`, the first is the default.
    pub certificates: Vec<CertificateSpec>,
    /// Session ticket keys from files (48 or 80 random bytes each: `openssl rand 80`, the
    /// size of nginx's `ssl_session_ticket_key` files). The first seals new tickets,
    /// every one opens them. fulcrum instances behind one VIP that share the files resume
    /// each other's sessions; rotate by putting a new file first and dropping the last.
    /// Without them the service draws its own keys and rotates them every 6 hours.
    #[serde(default)]
    pub session_ticket_keys: Vec<PathBuf>,
}

/// One certificate chain and its key, PEM files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Names this certificate answers for (`*.example.com` allowed).
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// A route: a match and where it leads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Name (metrics label); defaults to `route<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// What a request must look like.
    #[serde(default, rename = "match")]
    pub matcher: MatchSpec,
    /// The single cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Or weighted clusters (canary).
    #[serde(default)]
    pub weighted_clusters: Vec<WeightedCluster>,
    /// Replace the matched path prefix (prefix matches only).
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Per-try upstream timeout override.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default)]
    pub retries: RetrySpec,
}

/// Route match; every present field must match.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Host (port ignored), exact or `*.suffix`.
    #[serde(default)]
    pub host: Option<String>,
    /// Path match.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// Method, e.g. `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Headers that must be present (with the value, when given).
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// Path match kinds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PathMatch {
    /// The path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
    /// The whole path matches this regex.
    Regex(String),
}

/// A header that must be present.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// Exact value; absent: presence is enough.
    #[serde(default)]
    pub value: Option<String>,
}

/// A cluster with a weight in a split.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    /// Cluster name.
    pub cluster: String,
    /// Relative weight.
    pub weight: u32,
}

/// Retry policy (Envoy semantics).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Retries after the first try.
    pub max_retries: u32,
    /// Retry non-idempotent methods (POST, PATCH) too.
    pub non_idempotent: bool,
    /// Retries in flight may not exceed this percent of active requests (at least 3).
    pub budget_percent: u32,
    /// Back-off base; the n-th retry waits a random time up to `base * 2^n`.
    #[serde(deserialize_with = "de_duration")]
    pub base_interval: Duration,
    /// Back-off cap.
    #[serde(deserialize_with = "de_duration")]
    pub max_interval: Duration,
    /// Retry when the upstream answers 502/503/504.
    pub on_gateway_error: bool,
    /// Retry after a per-try timeout.
    pub on_timeout: bool,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            max_retries: 1,
            non_idempotent: false,
            budget_percent: 10,
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
            on_gateway_error: true,
            on_timeout: false,
        }
    }
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Power of two choices on active requests / weight.
    LeastRequest,
    /// Weighted random.
    Random,
    /// Ketama ring on the hash key, with bounded load.
    RingHash,
    /// Maglev table on the hash key, with bounded load.
    Maglev,
}

/// What a hashing policy hashes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum HashOn {
    /// The client's IP address.
    #[default]
    SourceIp,
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive pools.
    #[default]
    Http1,
    /// HTTP/2 prior knowledge, requests multiplexed.
    Http2,
}

/// A cluster of endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Name, referenced by routes.
    pub name: String,
    /// Upstream protocol.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Balancing policy.
    #[serde(default)]
    pub lb: LbPolicy,
    /// Hash key for `ring_hash` / `maglev`.
    #[serde(default)]
    pub hash_on: HashOn,
    /// Bounded load factor c for hashing policies: spill past endpoints above c * average.
    #[serde(default = "default_bounded_load")]
    pub bounded_load: f64,
    /// Cookie-based sticky sessions.
    #[serde(default)]
    pub sticky_cookie: Option<StickyCookie>,
    /// Endpoints.
    pub endpoints: Vec<EndpointSpec>,
    /// Circuit breakers.
    #[serde(default)]
    pub circuit_breakers: CircuitBreakers,
    /// Outlier ejection.
    #[serde(default)]
    pub outlier: OutlierSpec,
    /// Percent of healthy endpoints below which health is ignored.
    #[serde(default = "default_panic")]
    pub panic_threshold: u32,
    /// Active health checks of the endpoints (none when absent).
    #[serde(default)]
    pub health_check: Option<ClusterHealthCheck>,
    /// Timeout overrides.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

fn default_bounded_load() -> f64 {
    1.25
}
fn default_panic() -> u32 {
    50
}

/// Sticky sessions by cookie.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie Max-Age.
    #[serde(default = "default_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(3600)
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Address and port.
    pub address: SocketAddr,
    /// Relative weight (1..=1000).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Its zone; endpoints in `l7.zone` are preferred (zone-aware routing).
    #[serde(default)]
    pub zone: Option<String>,
}

fn default_weight() -> u32 {
    1
}

/// Circuit-breaker thresholds per cluster (Envoy defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakers {
    /// Upstream connections.
    pub max_connections: usize,
    /// Requests waiting for an upstream connection.
    pub max_pending: usize,
    /// Requests in flight to the cluster.
    pub max_requests: usize,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            max_connections: 1024,
            max_pending: 1024,
            max_requests: 1024,
        }
    }
}

/// `clusters[].health_check`: active probes of every endpoint by the health checker the
/// L4 services use (a `tcp` connect or an HTTP/1.1 `GET path`, healthy on 2xx/3xx; first
/// probes spread over the interval, ±10% jitter after; hysteresis by the thresholds). An
/// endpoint failing them takes no new requests unless the cluster is in panic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterHealthCheck {
    /// `http` (the default), `tcp`, or `none` (not probed: always healthy).
    pub kind: HealthCheckKind,
    /// HTTP path (default `/`).
    pub path: String,
    /// HTTP `Host` (default: the endpoint's address).
    pub host: Option<String>,
    /// Time between probes of one endpoint (default 2s).
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Time one probe may take (default 1s); less than `interval`.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Consecutive successes to turn healthy (default 2).
    pub healthy_threshold: u8,
    /// Consecutive failures to turn unhealthy (default 3).
    pub unhealthy_threshold: u8,
}

impl Default for ClusterHealthCheck {
    fn default() -> Self {
        ClusterHealthCheck {
            kind: HealthCheckKind::Http,
            path: health_defaults::HEALTH_PATH.to_owned(),
            host: None,
            interval: health_defaults::HEALTH_INTERVAL,
            timeout: health_defaults::HEALTH_TIMEOUT,
            healthy_threshold: health_defaults::HEALTHY_THRESHOLD,
            unhealthy_threshold: health_defaults::UNHEALTHY_THRESHOLD,
        }
    }
}

impl ClusterHealthCheck {
    /// What is wrong with the check of cluster `name`.
    fn problems(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind == HealthCheckKind::None {
            return out;
        }
        if self.interval < crate::health::MIN_INTERVAL {
            out.push(format!(
                "cluster `{name}`: health_check.interval must be at least {:?}",
                crate::health::MIN_INTERVAL
            ));
        }
        if self.timeout.is_zero() || self.timeout >= self.interval {
            out.push(format!(
                "cluster `{name}`: health_check.timeout must be longer than 0s and shorter than its interval ({:?})",
                self.interval
            ));
        }
        // the L4 services' range: both checkers are the health module's
        let range = crate::config::limits::THRESHOLD;
        for (key, v) in [
            ("healthy_threshold", self.healthy_threshold),
            ("unhealthy_threshold", self.unhealthy_threshold),
        ] {
            if !range.contains(&v) {
                out.push(format!(
                    "cluster `{name}`: health_check.{key} must be within {}..={}, found {v}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if self.kind == HealthCheckKind::Http {
            if !crate::health::is_request_path(&self.path) {
                out.push(format!(
                    "cluster `{name}`: health_check.path must be {}, found {:?}",
                    crate::health::REQUEST_PATH_RULE,
                    self.path
                ));
            }
            if let Some(h) = &self.host {
                if http::HeaderValue::from_str(h).is_err() || h.is_empty() {
                    out.push(format!(
                        "cluster `{name}`: health_check.host {h:?} is not a usable Host value"
                    ));
                }
            }
        }
        out
    }
}

/// Outlier ejection (passive health).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSpec {
    /// Consecutive 5xx (including local 502/504) before ejection; 0 disables.
    pub consecutive_5xx: u32,
    /// Ejection time, multiplied by the number of ejections.
    #[serde(deserialize_with = "de_duration")]
    pub base_ejection_time: Duration,
    /// The longest ejection, however many came before (Envoy's `max_ejection_time`:
    /// 300 s, or `base_ejection_time` when that is longer).
    #[serde(deserialize_with = "de_duration")]
    pub max_ejection_time: Duration,
    /// At most this percent of endpoints ejected (at least one).
    pub max_ejection_percent: u32,
}

impl OutlierSpec {
    /// How long the `times`-th ejection of an endpoint lasts: `base_ejection_time x
    /// times`, at most `max_ejection_time` (or the base, when that is longer).
    pub fn ejection_length(&self, times: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(times)
            .min(self.max_ejection_time.max(self.base_ejection_time))
    }
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            consecutive_5xx: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// The longest duration a setting takes: a year. A longer timeout means "never" to an
/// operator, and deadlines computed from one (now plus the timeout) would overflow the
/// clock; the fuzzer found `connect: 1444444444444444444444442` (seconds) panicking at
/// load before this bound.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `250ms`, `1s`, `2m`, `1h`, or a bare number of seconds, up to
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "us" => value / 1_000_000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "bad duration {text:?} (use 250ms, 1s, 2m; at most 8760h)"
        ))
    })
}

fn de_opt_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    de_duration(de).map(Some)
}

impl L7Config {
    /// Parses and validates a standalone L7 YAML document.
    pub fn from_yaml_str(text: &str) -> Result<L7Config, L7Error> {
        let cfg: L7Config =
            serde_saphyr::from_str(text).map_err(|e| L7Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks references and ranges that serde cannot: the rules below, written once and
    /// shared with `fulcrum check` (`config::validate::l7`, which reports each at its
    /// FILE:LINE:COL); here the first problem is the error.
    pub fn validate(&self) -> Result<(), L7Error> {
        let bad = |m: String| Err(L7Error::Config(m));
        if let Some(p) = self.l7.problems().into_iter().next() {
            return bad(p);
        }
        for svc in &self.services {
            if svc.mode != "l7" {
                return bad(format!("service {}: mode must be l7", svc.name));
            }
            if svc.clusters.is_empty() {
                return bad(format!("service {}: {NO_CLUSTERS}", svc.name));
            }
            if let Some(&(i, _)) = duplicates(svc.clusters.iter().map(|c| c.name.as_str())).first()
            {
                return bad(format!(
                    "service {}: cluster name `{}` is already used",
                    svc.name, svc.clusters[i].name
                ));
            }
            for c in &svc.clusters {
                if let Some(p) = c.problems().into_iter().next() {
                    return bad(format!("service {}: {p}", svc.name));
                }
            }
            if svc.routes.is_empty() {
                return bad(format!("service {}: {NO_ROUTES}", svc.name));
            }
            let names: Vec<&str> = svc.clusters.iter().map(|c| c.name.as_str()).collect();
            for (i, r) in svc.routes.iter().enumerate() {
                if let Some(p) = r.problems(&names).into_iter().next() {
                    return bad(format!("service {} route {i}: {p}", svc.name));
                }
            }
            if let Some(p) = svc
                .tls
                .as_ref()
                .and_then(|t| t.problems().into_iter().next())
            {
                return bad(format!("service {}: {p}", svc.name));
            }
        }
        Ok(())
    }
}

/// Smallest `l7.limits.max_header_bytes`: a request head of ordinary size must fit.
pub const MIN_HEADER_BYTES: usize = 8192;
/// A service without clusters.
pub const NO_CLUSTERS: &str = "an l7 service needs at least one cluster";
/// A service without routes.
pub const NO_ROUTES: &str = "needs at least one route";

/// Repeated names: (index of the repeat, index of the first), in order.
pub fn duplicates<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(usize, usize)> {
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, n) in names.into_iter().enumerate() {
        if let Some(&j) = first.get(n) {
            out.push((i, j));
        } else {
            first.insert(n, i);
        }
    }
    out
}

impl L7Settings {
    /// What is wrong with the limits and timeouts (the cores are the host's business).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.limits.max_header_bytes < MIN_HEADER_BYTES {
            out.push(format!(
                "l7.limits.max_header_bytes must be at least {MIN_HEADER_BYTES}, found {}",
                self.limits.max_header_bytes
            ));
        }
        if self.limits.max_concurrent_streams == 0 {
            out.push("l7.limits.max_concurrent_streams must be at least 1".into());
        }
        if self.zone.as_deref().is_some_and(|z| z.trim().is_empty()) {
            out.push("l7.zone must not be empty".into());
        }
        for (key, d) in [
            (
                "limits.header_read_timeout",
                self.limits.header_read_timeout,
            ),
            ("limits.body_read_timeout", self.limits.body_read_timeout),
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.request", self.timeouts.request),
            ("timeouts.idle", self.timeouts.idle),
            ("timeouts.stream_idle", self.timeouts.stream_idle),
        ] {
            if d.is_zero() {
                out.push(format!("l7.{key} must be longer than 0s"));
            }
        }
        out
    }
}

impl ClusterSpec {
    /// What is wrong with this cluster on its own.
    pub fn problems(&self) -> Vec<String> {
        let name = &self.name;
        let mut out = Vec::new();
        if self.endpoints.is_empty() {
            out.push(format!("cluster `{name}` needs at least one endpoint"));
        }
        for e in &self.endpoints {
            if e.weight == 0 || e.weight > 1000 {
                out.push(format!(
                    "cluster `{name}`: endpoint {} has weight {}; expected 1 to 1000",
                    e.address, e.weight
                ));
            }
            if e.zone.as_deref().is_some_and(|z| z.trim().is_empty()) {
                out.push(format!(
                    "cluster `{name}`: endpoint {} has an empty zone",
                    e.address
                ));
            }
            if e.address.port() == 0 || e.address.ip().is_unspecified() {
                out.push(format!(
                    "cluster `{name}`: endpoint {} is not a usable address",
                    e.address
                ));
            }
        }
        let addrs: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        for (i, _) in duplicates(addrs.iter().map(String::as_str)) {
            out.push(format!(
                "cluster `{name}`: endpoint {} is listed twice",
                self.endpoints[i].address
            ));
        }
        if self.bounded_load.is_nan() || self.bounded_load < 1.0 {
            out.push(format!(
                "cluster `{name}`: bounded_load must be at least 1.0"
            ));
        }
        if self.panic_threshold > 100 {
            out.push(format!(
                "cluster `{name}`: panic_threshold is a percent (0 to 100)"
            ));
        }
        if self.outlier.max_ejection_percent > 100 {
            out.push(format!(
                "cluster `{name}`: outlier.max_ejection_percent is a percent (0 to 100)"
            ));
        }
        if let Some(hc) = &self.health_check {
            out.extend(hc.problems(name));
        }
        let cb = &self.circuit_breakers;
        if cb.max_connections == 0 || cb.max_pending == 0 || cb.max_requests == 0 {
            out.push(format!(
                "cluster `{name}`: circuit_breakers limits must be at least 1"
            ));
        }
        out
    }
}

impl RouteSpec {
    /// What is wrong with this route, given the names of its service's clusters.
    pub fn problems(&self, clusters: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let targets: Vec<&str> = match (&self.cluster, self.weighted_clusters.is_empty()) {
            (Some(c), true) => vec![c.as_str()],
            (None, false) => self
                .weighted_clusters
                .iter()
                .map(|w| w.cluster.as_str())
                .collect(),
            _ => {
                out.push(
                    "a route needs exactly one of `cluster` and `weighted_clusters`".to_string(),
                );
                Vec::new()
            }
        };
        for t in targets {
            if !clusters.contains(&t) {
                out.push(format!(
                    "route leads to cluster `{t}`, which the service does not define (clusters: {})",
                    clusters.join(", ")
                ));
            }
        }
        if !self.weighted_clusters.is_empty()
            && self
                .weighted_clusters
                .iter()
                .map(|w| u64::from(w.weight))
                .sum::<u64>()
                == 0
        {
            out.push("weighted_clusters: the weights sum to 0".into());
        }
        match &self.matcher.path {
            Some(PathMatch::Regex(re)) => {
                if let Err(e) = regex::Regex::new(re) {
                    let first = e.to_string();
                    let first = first.lines().last().unwrap_or("").trim().to_owned();
                    out.push(format!("path regex `{re}` does not compile: {first}"));
                }
            }
            Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) if !p.starts_with('/') => {
                out.push(format!("path `{p}` must start with `/`"));
            }
            _ => {}
        }
        if self.prefix_rewrite.is_some() && !matches!(self.matcher.path, Some(PathMatch::Prefix(_)))
        {
            out.push("prefix_rewrite needs a `prefix` path match".into());
        }
        if let Some(m) = &self.matcher.method {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                out.push(format!("`{m}` is not an HTTP method"));
            }
        }
        for h in &self.matcher.headers {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                out.push(format!("`{}` is not a header name", h.name));
            }
        }
        if self.retries.budget_percent > 100 {
            out.push("retries.budget_percent is a percent (0 to 100)".into());
        }
        out
    }
}

impl TlsSpec {
    /// What is wrong with the TLS section (file access is checked where it is read).
    pub fn problems(&self) -> Vec<String> {
        if self.certificates.is_empty() {
            vec!["tls needs at least one certificate".into()]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
l7:
  cores: [0]
  limits: { max_header_bytes: 16384, header_read_timeout: 2s }
  timeouts: { connect: 250ms, request: 2s }
services:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - name: api
        match: { host: api.example.com, path: { prefix: /api/ }, method: GET }
        cluster: api
        prefix_rewrite: /
      - match: { path: { regex: "^/v[0-9]+/.*$" } }
        weighted_clusters: [{ cluster: api, weight: 90 }, { cluster: canary, weight: 10 }]
    clusters:
      - name: api
        lb: ring_hash
        hash_on: { header: x-user }
        endpoints: [{ address: "127.0.0.1:9001", weight: 2 }, { address: "127.0.0.1:9002" }]
      - name: canary
        protocol: http2
        endpoints: [{ address: "127.0.0.1:9003" }]
"#;

    #[test]
    fn parses_example() {
        let cfg = L7Config::from_yaml_str(EXAMPLE).unwrap();
        assert_eq!(cfg.l7.cores, vec![0]);
        assert_eq!(cfg.l7.limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(cfg.l7.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(cfg.l7.timeouts.connect, Duration::from_millis(250));
        let svc = &cfg.services[0];
        assert_eq!(
            svc.routes[0].matcher.path,
            Some(PathMatch::Prefix("/api/".into()))
        );
        assert_eq!(svc.routes[1].weighted_clusters[1].weight, 10);
        assert_eq!(svc.clusters[0].hash_on, HashOn::Header("x-user".into()));
        assert_eq!(svc.clusters[0].endpoints[1].weight, 1);
        assert_eq!(svc.clusters[1].protocol, UpstreamProtocol::Http2);
        assert_eq!(svc.routes[0].retries.max_retries, 1);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_refs() {
        assert!(L7Config::from_yaml_str("l7: { corez: [1] }").is_err());
        let bad_ref = EXAMPLE.replace("cluster: api\n", "cluster: nope\n");
        assert!(L7Config::from_yaml_str(&bad_ref).is_err());
        let bad_dur = EXAMPLE.replace("connect: 250ms", "connect: 250parsecs");
        assert!(L7Config::from_yaml_str(&bad_dur).is_err());
    }

    #[test]
    fn ejections_grow_with_their_count_up_to_the_cap() {
        let spec = OutlierSpec {
            base_ejection_time: Duration::from_secs(10),
            ..OutlierSpec::default()
        };
        assert_eq!(spec.ejection_length(1), Duration::from_secs(10));
        assert_eq!(spec.ejection_length(7), Duration::from_secs(70));
        assert_eq!(spec.ejection_length(30), Duration::from_secs(300));
        assert_eq!(spec.ejection_length(31), Duration::from_secs(300));
        assert_eq!(spec.ejection_length(u32::MAX), Duration::from_secs(300));
        // a base longer than the cap: the base (Envoy's rule)
        let long = OutlierSpec {
            base_ejection_time: Duration::from_secs(400),
            ..OutlierSpec::default()
        };
        assert_eq!(long.ejection_length(3), Duration::from_secs(400));
        let yaml = "services:\n  - name: s\n    routes: [{ cluster: c }]\n    clusters:\n      - name: c\n        outlier: { max_ejection_time: 1m }\n        endpoints: [{ address: \"127.0.0.1:1\" }]\n";
        let cfg = L7Config::from_yaml_str(yaml).unwrap();
        let outlier = &cfg.services[0].clusters[0].outlier;
        assert_eq!(outlier.max_ejection_time, Duration::from_secs(60));
        assert_eq!(outlier.ejection_length(3), Duration::from_secs(60));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("8760h"), Some(MAX_DURATION));
        assert_eq!(parse_duration("8761h"), None);
        // past what a Duration holds: refused, not a panic
        assert_eq!(parse_duration("1444444444444444444444442"), None);
        assert_eq!(parse_duration("1e400"), None);
    }

    #[test]
    fn cluster_health_checks() {
        let doc = |hc: &str| {
            format!(
                "services:\n  - name: s\n    routes: [{{ cluster: c }}]\n    clusters:\n      - name: c\n        health_check: {hc}\n        endpoints: [{{ address: \"127.0.0.1:80\" }}]\n"
            )
        };
        // defaults: an HTTP GET of / every 2s, 1s timeout, thresholds 2 and 3
        let cfg = L7Config::from_yaml_str(&doc("{}")).unwrap();
        let hc = cfg.services[0].clusters[0].health_check.clone().unwrap();
        assert_eq!(hc, ClusterHealthCheck::default());
        assert_eq!(hc.kind, HealthCheckKind::Http);
        assert_eq!(
            (hc.interval, hc.timeout),
            (Duration::from_secs(2), Duration::from_secs(1))
        );
        let cfg = L7Config::from_yaml_str(&doc(
            "{ kind: tcp, interval: 500ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 5 }",
        ))
        .unwrap();
        let hc = cfg.services[0].clusters[0].health_check.clone().unwrap();
        assert_eq!(hc.kind, HealthCheckKind::Tcp);
        assert_eq!(hc.unhealthy_threshold, 5);
        for (bad, why) in [
            ("{ timeout: 2s }", "shorter than its interval"),
            (
                "{ interval: 5ms, timeout: 1ms }",
                "interval must be at least",
            ),
            (
                "{ healthy_threshold: 0 }",
                "healthy_threshold must be within 1..=100",
            ),
            (
                "{ unhealthy_threshold: 101 }",
                "unhealthy_threshold must be within 1..=100, found 101",
            ),
            ("{ path: healthz }", "starting with `/`"),
            ("{ host: \"\" }", "not a usable Host"),
        ] {
            let err = L7Config::from_yaml_str(&doc(bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(L7Config::from_yaml_str(&doc("{ kind: icmp }")).is_err());
        assert!(L7Config::from_yaml_str(&doc("{ pathh: / }")).is_err());
        // `none`: not probed, nothing else checked
        assert!(L7Config::from_yaml_str(&doc("{ kind: none, timeout: 9s }")).is_ok());
    }
}
