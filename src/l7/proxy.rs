//! The per-request path: refuse hostile framing, route, buffer the body within limits,
//! rewrite headers, pick an endpoint, send with timeouts, retry under the budget, map
//! failures to 502/503/504, count and log.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::balance::hash_bytes;
use super::config::HashOn;
use super::error::UpstreamFailure;
use super::framing::Verdicts;
use super::metrics::{L7Metrics, StatSet};
use super::state::{Clock, Cluster, Route, Snapshot};

/// The response body type of the pool.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// The current snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Metrics.
    pub metrics: Arc<L7Metrics>,
    /// Ejection clock.
    pub clock: Clock,
    /// Access log lines go here (a writer thread prints them).
    pub access_log: Option<std::sync::mpsc::Sender<String>>,
}

/// What a request knows about its connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// TLS terminated on this connection.
    pub tls: bool,
    /// Service served by the listener.
    pub service: String,
    /// The framing watch's verdicts.
    pub verdicts: Arc<Verdicts>,
    /// Requests seen so far (HTTP/1: their index; the watch refers to it).
    pub requests: AtomicU64,
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn local(status: StatusCode, close: bool) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{status}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    if close {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Removes hop-by-hop headers, and those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(s, "{:02x}", rand::random::<u8>());
    }
    s
}

/// A valid W3C traceparent continued with a new span id, or a new trace.
pub fn next_traceparent(incoming: Option<&HeaderValue>) -> String {
    if let Some(v) = incoming.and_then(|v| v.to_str().ok()) {
        let parts: Vec<&str> = v.trim().split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        };
        if parts.len() >= 4
            && hex(parts[0], 2)
            && parts[0] != "ff"
            && hex(parts[1], 32)
            && parts[1].bytes().any(|b| b != b'0')
            && hex(parts[2], 16)
            && hex(parts[3], 2)
        {
            return format!("00-{}-{}-{}", parts[1], random_hex(8), parts[3]);
        }
    }
    format!("00-{}-{}-01", random_hex(16), random_hex(8))
}

fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Tracks one request in flight on a cluster and an endpoint.
struct InFlight<'a> {
    counters: [&'a AtomicUsize; 2],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        for c in self.counters {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// One finished try.
enum TryOutcome {
    Response(Response<Incoming>),
    Failed(UpstreamFailure),
}

/// Records a result for outlier detection.
fn observe(cluster: &Cluster, index: usize, failed: bool, clock: &Clock) {
    let ep = &cluster.endpoints[index];
    let spec = &cluster.spec.outlier;
    if !failed {
        ep.consecutive_5xx.store(0, Ordering::Relaxed);
        return;
    }
    if spec.consecutive_5xx == 0 {
        return;
    }
    let n = ep.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
    if n < spec.consecutive_5xx {
        return;
    }
    let now = clock.now_ms();
    let ejected = cluster
        .endpoints
        .iter()
        .filter(|e| e.is_ejected(now))
        .count();
    let cap = (cluster.endpoints.len() * spec.max_ejection_percent as usize / 100).max(1);
    if ejected >= cap || ep.is_ejected(now) {
        return;
    }
    let times = ep.ejections.fetch_add(1, Ordering::Relaxed) + 1;
    let until = now + spec.base_ejection_time.as_millis() as u64 * u64::from(times);
    ep.ejected_until_ms.store(until, Ordering::Relaxed);
    ep.consecutive_5xx.store(0, Ordering::Relaxed);
    cluster.stats.ejections.fetch_add(1, Ordering::Relaxed);
}

/// Handles one client request; never fails (errors become responses).
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let index = conn.requests.fetch_add(1, Ordering::Relaxed);
    let metrics = &shared.metrics;
    // Smuggling: the watch saw this head refused, or both framings survived parsing.
    let both = req.headers().contains_key(header::TRANSFER_ENCODING)
        && req.headers().contains_key(header::CONTENT_LENGTH);
    if conn.verdicts.violation_at.load(Ordering::Relaxed) == index || both {
        metrics.listener.bad_request.fetch_add(1, Ordering::Relaxed);
        return Ok(local(StatusCode::BAD_REQUEST, true));
    }
    let snapshot = shared.snapshot.load_full();
    let Some(service) = snapshot.services.get(&conn.service).cloned() else {
        metrics.listener.no_route.fetch_add(1, Ordering::Relaxed);
        return Ok(local(StatusCode::NOT_FOUND, false));
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    h.rsplit_once(':')
                        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                        .map_or(h, |(h, _)| h)
                        .to_string()
                })
        })
        .unwrap_or_default()
        .to_ascii_lowercase();
    let path = req.uri().path().to_string();
    let Some(route) = service
        .routes
        .iter()
        .find(|r| r.matches(&host, &path, req.method(), req.headers()))
    else {
        metrics.listener.no_route.fetch_add(1, Ordering::Relaxed);
        return Ok(local(StatusCode::NOT_FOUND, false));
    };
    let limits = &snapshot.settings.limits;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        metrics
            .listener
            .body_too_large
            .fetch_add(1, Ordering::Relaxed);
        route.stats.count_status(413);
        return Ok(local(StatusCode::PAYLOAD_TOO_LARGE, true));
    }
    let body = match tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await
    {
        Err(_) => {
            metrics
                .listener
                .body_timeout
                .fetch_add(1, Ordering::Relaxed);
            route.stats.count_status(408);
            return Ok(local(StatusCode::REQUEST_TIMEOUT, true));
        }
        Ok(Err(e)) => {
            let status = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                metrics
                    .listener
                    .body_too_large
                    .fetch_add(1, Ordering::Relaxed);
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                metrics.listener.bad_request.fetch_add(1, Ordering::Relaxed);
                StatusCode::BAD_REQUEST
            };
            route.stats.count_status(status.as_u16());
            return Ok(local(status, true));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let body_done = Instant::now();

    // Upstream head.
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    if !headers.contains_key(header::HOST) && !host.is_empty() {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
    }
    let client_ip = conn.peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {client_ip}"),
        None => client_ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
    );
    if !headers.contains_key("x-request-id") {
        let id = random_hex(16);
        let uuid = format!(
            "{}-{}-4{}-a{}-{}",
            &id[0..8],
            &id[8..12],
            &id[13..16],
            &id[17..20],
            &id[20..32]
        );
        if let Ok(v) = HeaderValue::from_str(&uuid) {
            headers.insert("x-request-id", v);
        }
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&next_traceparent(headers.get("traceparent"))) {
        headers.insert("traceparent", v);
    }
    let mut path_and_query = match (&route.prefix_rewrite, &route.path) {
        (Some(new), Some(super::state::PathMatcher::Prefix(old))) => {
            format!("{new}{}", &path[old.len().min(path.len())..])
        }
        _ => path.clone(),
    };
    if let Some(q) = parts.uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }

    let cluster = route.target.pick().clone();
    let outcome = forward(
        &shared,
        route,
        &cluster,
        &conn,
        &parts.method,
        &path_and_query,
        &headers,
        body,
    )
    .await;
    let (mut response, upstream_time, tries, endpoint, sticky) = outcome;
    let status = response.status();
    strip_hop_by_hop(response.headers_mut());
    if let Some(cookie) = sticky {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    let total = start.elapsed();
    let inside = total
        .saturating_sub(upstream_time)
        .saturating_sub(body_done - start);
    for stats in [&route.stats, &cluster.stats] {
        stats.count_status(status.as_u16());
        stats.fulcrum_time.record(inside);
        if tries > 0 {
            stats.upstream_time.record(upstream_time);
        }
    }
    if let Some(log) = &shared.access_log {
        let mut line = String::with_capacity(256);
        line.push_str("{\"service\":\"");
        json_escape(&service.name, &mut line);
        line.push_str("\",\"route\":\"");
        json_escape(&route.name, &mut line);
        line.push_str("\",\"cluster\":\"");
        json_escape(&cluster.name, &mut line);
        line.push_str("\",\"client\":\"");
        line.push_str(&client_ip);
        line.push_str("\",\"method\":\"");
        json_escape(parts.method.as_str(), &mut line);
        line.push_str("\",\"host\":\"");
        json_escape(&host, &mut line);
        line.push_str("\",\"path\":\"");
        json_escape(&path, &mut line);
        let _ = write!(
            line,
            "\",\"status\":{},\"upstream\":\"{}\",\"tries\":{tries},\"duration_us\":{},\"upstream_us\":{},\"request_id\":\"",
            status.as_u16(),
            endpoint.map(|e| e.to_string()).unwrap_or_default(),
            total.as_micros(),
            upstream_time.as_micros()
        );
        json_escape(&request_id, &mut line);
        line.push_str("\"}");
        let _ = log.send(line);
    }
    Ok(response)
}

type Forwarded = (
    Response<Body>,
    Duration,
    u32,
    Option<SocketAddr>,
    Option<String>,
);

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Shared,
    route: &Route,
    cluster: &Arc<Cluster>,
    conn: &ConnInfo,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Forwarded {
    let clock = shared.clock;
    let stats: [&StatSet; 2] = [&route.stats, &cluster.stats];
    let breakers = &cluster.spec.circuit_breakers;
    if cluster.active.load(Ordering::Relaxed) >= breakers.max_requests {
        for s in stats {
            s.overflow.fetch_add(1, Ordering::Relaxed);
        }
        return (
            local(UpstreamFailure::Overflow.status(), false),
            Duration::ZERO,
            0,
            None,
            None,
        );
    }
    let hash_key = match &cluster.spec.hash_on {
        HashOn::SourceIp => hash_bytes(conn.peer.ip().to_string().as_bytes()),
        HashOn::Header(h) => headers
            .get(h.as_str())
            .map_or_else(rand::random, |v| hash_bytes(v.as_bytes())),
        HashOn::Cookie(c) => {
            cookie_value(headers, c).map_or_else(rand::random, |v| hash_bytes(v.as_bytes()))
        }
    };
    let sticky_name = cluster.spec.sticky_cookie.as_ref().map(|s| s.name.as_str());
    let sticky_pref = sticky_name
        .and_then(|n| cookie_value(headers, n))
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .and_then(|id| cluster.endpoints.iter().position(|e| e.id == id));
    let max_tries = 1 + if idempotent(method) || route.retries.non_idempotent {
        route.retries.max_retries
    } else {
        0
    };
    let per_try = route.timeout.unwrap_or(cluster.timeouts.request);
    let mut upstream_time = Duration::ZERO;
    let mut last_failed: Option<usize> = None;
    let mut tries = 0u32;
    let mut last: Option<(TryOutcome, usize)> = None;
    while tries < max_tries {
        if tries > 0 {
            // Retry budget: retries in flight at most budget% of active requests (min 3).
            let budget = (cluster.active.load(Ordering::Relaxed)
                * route.retries.budget_percent as usize
                / 100)
                .max(3);
            if cluster.active_retries.load(Ordering::Relaxed) >= budget {
                for s in stats {
                    s.retry_budget_exhausted.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            for s in stats {
                s.retries.fetch_add(1, Ordering::Relaxed);
            }
            let cap = route
                .retries
                .max_interval
                .min(route.retries.base_interval * 2u32.saturating_pow(tries - 1));
            let wait = cap.mul_f64(rand::random::<f64>());
            cluster.active_retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
        let now = clock.now_ms();
        let n = cluster.endpoints.len();
        let healthy = cluster
            .endpoints
            .iter()
            .filter(|e| !e.is_ejected(now))
            .count();
        let panic = healthy * 100 < n * cluster.spec.panic_threshold as usize;
        let usable = |i: usize| {
            (panic || !cluster.endpoints[i].is_ejected(now)) && (last_failed != Some(i) || n == 1)
        };
        let picked = match sticky_pref.filter(|i| usable(*i) && last_failed.is_none()) {
            Some(i) => Some(i),
            None => cluster.balancer.pick(
                &cluster.endpoints,
                hash_key,
                cluster.spec.bounded_load,
                &usable,
            ),
        };
        let Some(index) = picked else {
            if tries > 0 {
                cluster.active_retries.fetch_sub(1, Ordering::Relaxed);
            }
            break;
        };
        let endpoint = &cluster.endpoints[index];
        cluster.active.fetch_add(1, Ordering::Relaxed);
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            counters: [&cluster.active, &endpoint.active],
        };
        let uri: Result<Uri, _> = format!("http://{}{}", endpoint.addr, path_and_query).parse();
        let outcome = match uri {
            Err(_) => TryOutcome::Failed(UpstreamFailure::Reset),
            Ok(uri) => {
                let mut req = Request::new(Full::new(body.clone()));
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri;
                *req.headers_mut() = headers.clone();
                let sent = Instant::now();
                let result = tokio::time::timeout(per_try, cluster.client.request(req)).await;
                upstream_time += sent.elapsed();
                match result {
                    Err(_) => TryOutcome::Failed(UpstreamFailure::Timeout),
                    Ok(Err(e)) if e.is_connect() => {
                        let mut source = std::error::Error::source(&e);
                        let mut limit = false;
                        while let Some(s) = source {
                            limit |= s.is::<super::state::ConnectionLimit>();
                            source = s.source();
                        }
                        if limit {
                            for s in stats {
                                s.overflow.fetch_add(1, Ordering::Relaxed);
                            }
                            TryOutcome::Failed(UpstreamFailure::Overflow)
                        } else {
                            TryOutcome::Failed(UpstreamFailure::ConnectFailure)
                        }
                    }
                    Ok(Err(_)) => TryOutcome::Failed(UpstreamFailure::Reset),
                    Ok(Ok(resp)) => TryOutcome::Response(resp),
                }
            }
        };
        drop(guard);
        if tries > 0 {
            cluster.active_retries.fetch_sub(1, Ordering::Relaxed);
        }
        tries += 1;
        let (failed, retry) = match &outcome {
            TryOutcome::Response(r) => {
                let s = r.status().as_u16();
                (
                    s >= 500,
                    route.retries.on_gateway_error && matches!(s, 502..=504),
                )
            }
            TryOutcome::Failed(f) => (
                true,
                f.retriable() || (*f == UpstreamFailure::Timeout && route.retries.on_timeout),
            ),
        };
        observe(cluster, index, failed, &clock);
        last = Some((outcome, index));
        if !retry {
            break;
        }
        last_failed = Some(index);
    }
    match last {
        None => (
            local(UpstreamFailure::NoHealthyEndpoint.status(), false),
            upstream_time,
            tries,
            None,
            None,
        ),
        Some((TryOutcome::Failed(f), index)) => (
            local(f.status(), false),
            upstream_time,
            tries,
            Some(cluster.endpoints[index].addr),
            None,
        ),
        Some((TryOutcome::Response(resp), index)) => {
            let endpoint = &cluster.endpoints[index];
            let sticky = match (&cluster.spec.sticky_cookie, sticky_pref) {
                (Some(s), pref) if pref != Some(index) => Some(format!(
                    "{}={:016x}; Max-Age={}; Path=/; HttpOnly",
                    s.name,
                    endpoint.id,
                    s.ttl.as_secs()
                )),
                _ => None,
            };
            (
                resp.map(|b| b.boxed()),
                upstream_time,
                tries,
                Some(endpoint.addr),
                sticky,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_continues_or_starts() {
        let v = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let next = next_traceparent(Some(&v));
        assert!(next.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!next.contains("00f067aa0ba902b7"));
        assert!(next.ends_with("-01"));
        let bad =
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
        let fresh = next_traceparent(Some(&bad));
        assert_eq!(fresh.len(), 55);
        assert!(!fresh.contains("00000000000000000000000000000000"));
    }

    #[tokio::test]
    async fn outlier_ejection_after_consecutive_5xx_and_panic_cap() {
        use crate::l7::config::{ClusterSpec, EndpointSpec, L7Config, Timeouts};
        let yaml = "services:\n  - name: s\n    routes: [{ cluster: c }]\n    clusters:\n      - name: c\n        outlier: { consecutive_5xx: 3, base_ejection_time: 10s }\n        endpoints: [{ address: \"127.0.0.1:1\" }, { address: \"127.0.0.1:2\" }, { address: \"127.0.0.1:3\" }]\n";
        let cfg = L7Config::from_yaml_str(yaml).unwrap();
        let spec: &ClusterSpec = &cfg.services[0].clusters[0];
        let _: &EndpointSpec = &spec.endpoints[0];
        let metrics = L7Metrics::default();
        let cluster = Cluster::build(spec, &Timeouts::default(), metrics.cluster("s", "c"));
        let clock = Clock(Instant::now());
        observe(&cluster, 0, true, &clock);
        observe(&cluster, 0, true, &clock);
        observe(&cluster, 0, false, &clock);
        observe(&cluster, 0, true, &clock);
        observe(&cluster, 0, true, &clock);
        assert!(
            !cluster.endpoints[0].is_ejected(clock.now_ms()),
            "a success resets the streak"
        );
        observe(&cluster, 0, true, &clock);
        assert!(cluster.endpoints[0].is_ejected(clock.now_ms()));
        assert_eq!(cluster.stats.ejections.load(Ordering::Relaxed), 1);
        // max_ejection_percent 10% of 3 rounds to 0: at least one, but not two.
        for _ in 0..3 {
            observe(&cluster, 1, true, &clock);
        }
        assert!(!cluster.endpoints[1].is_ejected(clock.now_ms()));
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
