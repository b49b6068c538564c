//! The per-request path: refuse hostile framing, route, buffer the body within limits,
//! rewrite headers, pick an endpoint, send with timeouts, retry under the budget, map
//! failures to 502/503/504, count and log.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body as _, Incoming};

use super::balance::{hash_bytes, Lane};
use super::config::{HashOn, UpstreamProtocol};
use super::error::UpstreamFailure;
use super::framing::Verdicts;
use super::h1::{is_hop_by_hop, HOP_BY_HOP};
use super::metrics::{L7Metrics, StatSet};
use super::state::{Clock, Cluster, Route, Snapshot};
use super::upstream::{SendError, UpstreamBody};

/// The response body type of the pool: the upstream's, passed through as it is (no box
/// per response), or a short one made here.
pub type Body = Either<UpstreamBody, Full<Bytes>>;

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
    /// The client address as text (X-Forwarded-For), made once per connection.
    pub client_ip: HeaderValue,
    /// TLS terminated on this connection.
    pub tls: bool,
    /// Service served by the listener.
    pub service: String,
    /// The framing watch's verdicts.
    pub verdicts: Arc<Verdicts>,
    /// Requests seen so far (HTTP/1: their index; the watch refers to it).
    pub requests: AtomicU64,
}

fn local(status: StatusCode, close: bool) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!("{status}\n")))));
    *r.status_mut() = status;
    if close {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A request refused for its body once routed: counted on `counter` and in the route's
/// statuses, answered locally and the connection closed (its body is not read on).
fn refuse_body(counter: &AtomicU64, route: &Route, status: StatusCode) -> Response<Body> {
    counter.fetch_add(1, Ordering::Relaxed);
    route.stats.count_status(status.as_u16());
    local(status, true)
}

/// Whether the request is a gRPC call (`content-type: application/grpc`, `+proto`, ...).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether the request's `TE` lists `trailers` (the client accepts trailer fields).
pub(super) fn te_accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Removes hop-by-hop headers, and those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests have none: one pass over the names, nothing removed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Most responses carry one `Connection: keep-alive`: take that value out (no copy)
    // and remove what it names without collecting the names first.
    if headers.get_all(header::CONNECTION).iter().count() <= 1 {
        if let Some(v) = headers.remove(header::CONNECTION) {
            if let Ok(v) = v.to_str() {
                // By text: no HeaderName made (a copy for names http does not know).
                for n in v.split(',') {
                    headers.remove(n.trim());
                }
            }
        }
    } else {
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
    }
    if headers.keys().any(is_hop_by_hop) {
        for n in HOP_BY_HOP {
            headers.remove(n);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex, two digits a byte, into `out` (as far as both go).
/// Byte by byte: a digit taken from a `u128` by shifting cost ~8 instructions, and the
/// request id and traceparent write 80 of them a request.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// A new X-Request-Id: a random UUID (version 4 layout), formatted without allocating.
fn new_request_id() -> HeaderValue {
    let mut hex = [0u8; 32];
    hex_into(&mut hex, &rand::random::<u128>().to_ne_bytes());
    let mut b = [b'-'; 36];
    b[0..8].copy_from_slice(&hex[0..8]);
    b[9..13].copy_from_slice(&hex[8..12]);
    b[14] = b'4';
    b[15..18].copy_from_slice(&hex[12..15]);
    b[19] = b'a';
    b[20..23].copy_from_slice(&hex[15..18]);
    b[24..36].copy_from_slice(&hex[18..30]);
    unindexed(HeaderValue::from_bytes(&b).unwrap_or_else(|_| HeaderValue::from_static("invalid")))
}

/// `v`, marked never to be indexed by HPACK (RFC 7541 6.2.3): for the values that differ
/// on every request (a request id, a traceparent's new span). An HTTP/2 upstream
/// connection's encoder would otherwise add each to its dynamic table, evicting the
/// entries that repeat (host, X-Forwarded-For), and walk the stale ones of the same name
/// first: ~40 value comparisons a request on a warm connection. HTTP/1.1 ignores the mark.
fn unindexed(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

/// A valid W3C traceparent continued with a new span id, or a new trace.
pub fn next_traceparent(incoming: Option<&HeaderValue>) -> HeaderValue {
    // "00-" trace(32) "-" span(16) "-" flags(2)
    let mut b = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex_into(&mut b[36..52], &rand::random::<u64>().to_ne_bytes());
    let continued = incoming.map(|v| v.as_bytes()).and_then(|v| {
        let v = v.trim_ascii();
        let mut parts = v.split(|c| *c == b'-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &[u8], n: usize| {
            s.len() == n
                && s.iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        };
        (hex(version, 2)
            && version != b"ff"
            && hex(trace, 32)
            && trace.iter().any(|b| *b != b'0')
            && hex(parent, 16)
            && hex(flags, 2))
        .then_some((trace, flags))
    });
    match continued {
        Some((trace, flags)) => {
            b[3..35].copy_from_slice(trace);
            b[53..55].copy_from_slice(flags);
        }
        None => hex_into(&mut b[3..35], &rand::random::<u128>().to_ne_bytes()),
    }
    unindexed(HeaderValue::from_bytes(&b).unwrap_or_else(|_| HeaderValue::from_static("invalid")))
}

/// Names of the headers the pool sets (parsed once, not per request).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

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
    Response(Response<UpstreamBody>),
    Failed(UpstreamFailure),
}

/// Records a result for outlier detection.
fn observe(cluster: &Cluster, index: usize, failed: bool, clock: &Clock) {
    observe_at(cluster, index, failed, || clock.now_ms());
}

/// [`observe`] with the clock's reading (taken only when a failure may eject).
fn observe_at(cluster: &Cluster, index: usize, failed: bool, now_ms: impl FnOnce() -> u64) {
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
    let now = now_ms();
    let ejected = cluster
        .endpoints
        .iter()
        .filter(|e| e.is_ejected(now))
        .count();
    let cap = (cluster.endpoints.len() * spec.max_ejection_percent as usize / 100).max(1);
    if ejected >= cap || ep.is_ejected(now) {
        return;
    }
    // One earlier ejection forgiven per full `max_ejection_time` since the last one
    // ended, as the L4 tracker does (Envoy lowers its multiplier while a host stays
    // healthy): an endpoint that failed once a day is not ejected longer each day.
    let last_end = ep.ejected_until_ms.load(Ordering::Relaxed);
    let period = u64::try_from(spec.max_ejection_time.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let forgiven = now.saturating_sub(last_end) / period;
    let earlier = u64::from(ep.ejections.load(Ordering::Relaxed)).saturating_sub(forgiven);
    let times = u32::try_from(earlier).unwrap_or(u32::MAX).saturating_add(1);
    ep.ejections.store(times, Ordering::Relaxed);
    let length = u64::try_from(spec.ejection_length(times).as_millis()).unwrap_or(u64::MAX);
    let until = now.saturating_add(length);
    ep.ejected_until_ms.store(until, Ordering::Relaxed);
    ep.consecutive_5xx.store(0, Ordering::Relaxed);
    cluster.stats.ejections.fetch_add(1, Ordering::Relaxed);
}

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 7.2, the host as RFC 3986
/// 3.2.2 has it): a bracketed IPv6 (or future) literal, or a non-empty run of unreserved
/// and sub-delim characters (an IPv4 address or a registered name), then an optional
/// colon and digits. Percent-encoding is refused in a name, as `http`'s `Authority` (and
/// so an HTTP/2 upstream's `:authority`) refuses it: no DNS name carries one, and a Host
/// the upstream path could not carry as an authority would reach an HTTP/2 upstream
/// beside the endpoint's own (found by the request-path fuzz target). Read in place with
/// a table (a parse into `http`'s `Authority` copies the value: ~500 more instructions a
/// request, counted).
fn valid_host(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    let rest = if b.first() == Some(&b'[') {
        match b.iter().position(|&c| c == b']') {
            Some(end)
                if end > 1
                    && b[1..end]
                        .iter()
                        .all(|&c| HOST_BYTE[usize::from(c)] & IN_LITERAL != 0) =>
            {
                &b[end + 1..]
            }
            _ => return false,
        }
    } else {
        let end = b
            .iter()
            .position(|&c| HOST_BYTE[usize::from(c)] & IN_NAME == 0)
            .unwrap_or(b.len());
        if end == 0 {
            return false;
        }
        &b[end..]
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// [`HOST_BYTE`]'s flag of the bytes of a registered name or IPv4 address (unreserved,
/// sub-delims).
const IN_NAME: u8 = 1;
/// [`HOST_BYTE`]'s flag of the bytes of a bracketed literal (hex digits, `:`, `.`, `v`).
const IN_LITERAL: u8 = 2;

/// Where each byte may stand in a Host's host: a table, one load a byte.
static HOST_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
        {
            t[c] |= IN_NAME;
        }
        if b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V') {
            t[c] |= IN_LITERAL;
        }
        c += 1;
    }
    t
};

/// Handles one client request; never fails (errors become responses).
///
/// An `async` block, not an `async fn`: an `async fn` keeps each argument twice in its
/// state (as passed and as bound in its body), and this state is allocated and moved
/// once a request.
pub fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send {
    // split here, so the block keeps the head and the body, not the request as well
    let (parts, body) = req.into_parts();
    async move {
        let start = Instant::now();
        super::cpu::on_request(start);
        let index = conn.requests.fetch_add(1, Ordering::Relaxed);
        let metrics = &shared.metrics;
        // Smuggling: the watch saw this head refused, or both framings survived parsing.
        let both = parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.contains_key(header::CONTENT_LENGTH);
        if conn.verdicts.violation_at.load(Ordering::Relaxed) == index || both {
            metrics.listener.bad_request.fetch_add(1, Ordering::Relaxed);
            return Ok(local(StatusCode::BAD_REQUEST, true));
        }
        // CONNECT asks for a tunnel, which the pool does not make: forwarded, it would
        // reach the upstream as `CONNECT /`, and a 2xx answer would turn the client's
        // connection into a tunnel.
        if parts.method == Method::CONNECT {
            metrics.listener.bad_request.fetch_add(1, Ordering::Relaxed);
            return Ok(local(StatusCode::METHOD_NOT_ALLOWED, true));
        }
        // The asterisk form belongs to OPTIONS alone (RFC 9112 3.2.4): hyper passes
        // `PTIONS * HTTP/1.1` on, and an upstream must not be sent it. More than one
        // Host, or none in HTTP/1.1 (RFC 9112 3.2 says 400 to both): with two the pool
        // would route by the first while the upstream may serve the last. A Host that is
        // not `host[:port]` (the same RFC; nginx too), which the pool could neither route
        // by nor pass on as an HTTP/2 `:authority`. An HTTP/2 request must name its host
        // too, in `:authority` or Host (RFC 9110 7.2; nginx answers 400 as well).
        // (HTTP/1.0 may omit it: the endpoint is then the host.)
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        let (host_count, host_valid) = match (hosts.next(), hosts.next()) {
            (None, _) => (0, true),
            (Some(h), None) => (1, valid_host(h)),
            _ => (2, false),
        };
        if parts.uri == "*" && parts.method != Method::OPTIONS
            || host_count > 1
            || !host_valid
            || host_count == 0
                && parts.version >= http::Version::HTTP_11
                && parts.uri.authority().is_none()
        {
            metrics.listener.bad_request.fetch_add(1, Ordering::Relaxed);
            return Ok(local(StatusCode::BAD_REQUEST, true));
        }
        let snapshot = shared.snapshot.load_full();
        let Some(service) = snapshot.services.get(&conn.service).cloned() else {
            metrics.listener.no_route.fetch_add(1, Ordering::Relaxed);
            return Ok(local(StatusCode::NOT_FOUND, false));
        };
        let raw_host = parts
            .uri
            .authority()
            .map(|a| a.host())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| {
                        h.rsplit_once(':')
                            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                            .map_or(h, |(h, _)| h)
                    })
            })
            .unwrap_or_default();
        // Lowercased only when it has capitals (most clients send it lowercase).
        let host: std::borrow::Cow<'_, str> = if raw_host.bytes().any(|b| b.is_ascii_uppercase()) {
            raw_host.to_ascii_lowercase().into()
        } else {
            raw_host.into()
        };
        let path = parts.uri.path();
        let Some(route) = service
            .routes
            .iter()
            .find(|r| r.matches(&host, path, &parts.method, &parts.headers))
        else {
            metrics.listener.no_route.fetch_add(1, Ordering::Relaxed);
            return Ok(local(StatusCode::NOT_FOUND, false));
        };
        let limits = &snapshot.settings.limits;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
            let too_large = &metrics.listener.body_too_large;
            return Ok(refuse_body(too_large, route, StatusCode::PAYLOAD_TOO_LARGE));
        }
        // A request without a body (most GETs) needs no read, no timer and no buffer.
        let bodiless = body.is_end_stream();
        let cluster = route.target.pick().clone();
        // A gRPC call to an HTTP/2 cluster keeps its body streaming through (client- and
        // bidirectional-streaming calls send a message, wait for one, send the next): not
        // buffered, so neither retried nor held to max_body_bytes / body_read_timeout (the
        // call's deadline and the cluster's request timeout bound it).
        let streamed = !bodiless
            && cluster.spec.protocol == UpstreamProtocol::Http2
            && is_grpc(&parts.headers);
        let mut stream = None;
        let body = if bodiless {
            Bytes::new()
        } else if streamed {
            stream = Some(body);
            Bytes::new()
        } else {
            // boxed, as the HTTP/2 sends in `forward`: a request with a body pays for the
            // allocation, instead of every request's state carrying the read's room
            match Box::pin(tokio::time::timeout(
                limits.body_read_timeout,
                Limited::new(body, limits.max_body_bytes).collect(),
            ))
            .await
            {
                Err(_) => {
                    let timeout = &metrics.listener.body_timeout;
                    return Ok(refuse_body(timeout, route, StatusCode::REQUEST_TIMEOUT));
                }
                Ok(Err(e)) => {
                    let listener = &metrics.listener;
                    return Ok(
                        if e.downcast_ref::<http_body_util::LengthLimitError>()
                            .is_some()
                        {
                            refuse_body(
                                &listener.body_too_large,
                                route,
                                StatusCode::PAYLOAD_TOO_LARGE,
                            )
                        } else {
                            refuse_body(&listener.bad_request, route, StatusCode::BAD_REQUEST)
                        },
                    );
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            }
        };
        // No body was read: no second clock read (a vDSO call per request).
        let body_done = if bodiless || streamed {
            start
        } else {
            Instant::now()
        };

        // What the access log needs of the request, taken before its head is moved.
        let logged = shared
            .access_log
            .as_ref()
            .map(|_| (host.to_string(), path.to_string()));
        let has_host = !host.is_empty();
        drop(host);

        // Upstream head: the client's headers, moved (not copied), then rewritten.
        let mut headers = parts.headers;
        // `te: trailers`, the one TE an HTTP/2 request may carry (RFC 9113 8.2.2), goes on to
        // an HTTP/2 cluster (gRPC servers refuse a call without it); over HTTP/1.1 a TE would
        // also have to be named in Connection, and the pool asks for no trailers there
        let te_trailers =
            cluster.spec.protocol == UpstreamProtocol::Http2 && te_accepts_trailers(&headers);
        strip_hop_by_hop(&mut headers);
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // A target with an authority (absolute form, HTTP/2's :authority) names the host
        // the pool routed by, whatever Host says (RFC 9112 3.2.2): the upstream is told
        // the same. (Without userinfo, which a Host cannot carry.)
        if let Some(a) = parts.uri.authority().filter(|_| has_host) {
            let v = match a.port() {
                Some(p) => HeaderValue::from_str(&format!("{}:{}", a.host(), p.as_str())),
                None => HeaderValue::from_str(a.host()),
            };
            if let Ok(v) = v {
                headers.insert(header::HOST, v);
            }
        }
        let xff = match headers.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + conn.client_ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(conn.client_ip.as_bytes());
                HeaderValue::from_bytes(&v).ok()
            }
            None => Some(conn.client_ip.clone()),
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
        match headers.get_mut(&X_REQUEST_ID) {
            // the client's own id, as unique a request as ours
            Some(id) => id.set_sensitive(true),
            None => {
                headers.insert(X_REQUEST_ID.clone(), new_request_id());
            }
        }
        let request_id = logged.as_ref().map(|_| {
            headers
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        });
        let traceparent = next_traceparent(headers.get(&TRACEPARENT));
        headers.insert(TRACEPARENT.clone(), traceparent);
        let path_and_query = match (
            &route.prefix_rewrite,
            &route.path,
            parts.uri.path_and_query(),
        ) {
            (Some(new), Some(super::state::PathMatcher::Prefix(old)), _) => {
                let mut pq = format!("{new}{}", &path[old.len().min(path.len())..]);
                if let Some(q) = parts.uri.query() {
                    pq.push('?');
                    pq.push_str(q);
                }
                PathAndQuery::from_maybe_shared(Bytes::from(pq)).ok()
            }
            // an absolute-form target with an empty path (`http://h?q`): origin form
            // needs its "/" (RFC 9112 3.2.1), as does an HTTP/2 `:path` (RFC 9113 8.3.1)
            (_, _, Some(pq)) if pq.as_str().starts_with('?') => {
                PathAndQuery::from_maybe_shared(Bytes::from(format!("/{pq}"))).ok()
            }
            (_, _, Some(pq)) => Some(pq.clone()),
            (_, _, None) => Some(PathAndQuery::from_static("/")),
        };

        let outcome = forward(
            &shared,
            route,
            &cluster,
            &conn,
            &parts.method,
            path_and_query,
            headers,
            body,
            stream,
            start,
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
        if let (Some(log), Some((host, path))) = (&shared.access_log, logged) {
            let mut line = String::with_capacity(256);
            line.push_str("{\"service\":\"");
            json_escape(&service.name, &mut line);
            line.push_str("\",\"route\":\"");
            json_escape(&route.name, &mut line);
            line.push_str("\",\"cluster\":\"");
            json_escape(&cluster.name, &mut line);
            line.push_str("\",\"client\":\"");
            let _ = write!(line, "{}", conn.peer.ip());
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
            json_escape(request_id.as_deref().unwrap_or(""), &mut line);
            line.push_str("\"}");
            let _ = log.send(line);
        }
        Ok(response)
    }
}

type Forwarded = (
    Response<Body>,
    Duration,
    u32,
    Option<SocketAddr>,
    Option<String>,
);

/// (An `async` block, as [`handle`]'s, so its arguments are kept once.)
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn forward<'a>(
    shared: &'a Shared,
    route: &'a Route,
    cluster: &'a Arc<Cluster>,
    conn: &'a ConnInfo,
    method: &'a Method,
    path_and_query: Option<PathAndQuery>,
    mut headers: HeaderMap,
    body: Bytes,
    mut stream: Option<Incoming>,
    start: Instant,
) -> impl Future<Output = Forwarded> + Send + 'a {
    async move {
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
        // Only the hashing policies read the key (no per-request work for the others).
        let hash_key = match &cluster.spec.hash_on {
            _ if !cluster.balancer.hashes() => 0,
            HashOn::SourceIp => hash_bytes(conn.peer.ip().to_string().as_bytes()),
            HashOn::Header(h) => headers
                .get(h.as_str())
                .map_or_else(rand::random, |v| hash_bytes(v.as_bytes())),
            HashOn::Cookie(c) => {
                cookie_value(&headers, c).map_or_else(rand::random, |v| hash_bytes(v.as_bytes()))
            }
        };
        let sticky_name = cluster.spec.sticky_cookie.as_ref().map(|s| s.name.as_str());
        let sticky_pref = sticky_name
            .and_then(|n| cookie_value(&headers, n))
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .and_then(|id| cluster.endpoints.iter().position(|e| e.id == id));
        let max_tries = 1 + if stream.is_some() {
            0 // a streamed body is sent once
        } else if idempotent(method) || route.retries.non_idempotent {
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
            // the request's start for the first try (microseconds old: health and
            // ejection are judged in ms), a clock read for a retry's
            let now = if tries == 0 {
                clock.ms_at(start)
            } else {
                clock.now_ms()
            };
            let n = cluster.endpoints.len();
            // healthy: passing the active checks and not ejected; in panic health is ignored
            let health = cluster.health(now);
            let usable = |i: usize| {
                (health.panic || cluster.endpoints[i].is_healthy(now))
                    && (last_failed != Some(i) || n == 1)
            };
            // zone-aware routing: the local zone takes its share of requests, the other
            // zones the rest (all zones when the chosen side has no usable endpoint)
            let zone = health
                .local_share
                .map(|share| rand::random::<f64>() < share);
            let pick = |lane: Lane, ok: &dyn Fn(usize) -> bool| {
                cluster.balancer.pick_in(
                    lane,
                    &cluster.endpoints,
                    hash_key,
                    cluster.spec.bounded_load,
                    ok,
                )
            };
            let picked = match sticky_pref.filter(|i| usable(*i) && last_failed.is_none()) {
                Some(i) => Some(i),
                None => match zone {
                    None => pick(Lane::All, &usable),
                    Some(local) => {
                        let lane = if local { Lane::Local } else { Lane::Remote };
                        pick(lane, &|i| usable(i) && cluster.local[i] == local)
                            .or_else(|| pick(Lane::All, &usable))
                    }
                },
            };
            if zone.is_some() && picked.is_some_and(|i| !cluster.local[i]) {
                cluster.stats.cross_zone.fetch_add(1, Ordering::Relaxed);
            }
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
            let h1 = cluster.spec.protocol == UpstreamProtocol::Http1 && stream.is_none();
            // HTTP/1.1 writes origin-form from the borrowed request (no copy for a retry);
            // HTTP/2 needs scheme and authority.
            let uri = path_and_query.clone().filter(|_| !h1).and_then(|pq| {
                let mut p = http::uri::Parts::default();
                p.scheme = Some(Scheme::HTTP);
                p.authority = Some(cluster.authorities[index].clone());
                p.path_and_query = Some(pq);
                Uri::from_parts(p).ok()
            });
            let sent = Instant::now();
            // the try's deadline from the same clock read (`timeout` would read it again)
            let deadline = tokio::time::Instant::from_std(sent + per_try);
            let result = match (&path_and_query, uri) {
                (Some(pq), _) if h1 => {
                    let head = super::h1::RequestHead {
                        method,
                        path_and_query: pq.as_str(),
                        headers: &headers,
                        // a client that named no host: the endpoint is the host
                        host: (!headers.contains_key(header::HOST))
                            .then(|| cluster.authorities[index].as_str()),
                    };
                    Some(
                        tokio::time::timeout_at(
                            deadline,
                            cluster.upstream.send_h1(index, &head, &body),
                        )
                        .await,
                    )
                }
                (_, None) => None,
                (_, Some(uri)) => Some(match stream.take() {
                    None => {
                        // borrowed: the upstream copies the head for the stream (a client
                        // that named no host keeps the endpoint's authority in the URI).
                        // Boxed (as the streamed send below): these ~2.7 KB futures would
                        // otherwise size every request's state, HTTP/1.1 clusters' too,
                        // and that state is allocated and moved once a request.
                        Box::pin(tokio::time::timeout_at(
                            deadline,
                            cluster
                                .upstream
                                .send_h2_buffered(index, method, &uri, &headers, &body),
                        ))
                        .await
                    }
                    Some(b) => {
                        // a streamed body is sent once: its head goes with it
                        let mut req = Request::new(b);
                        *req.method_mut() = method.clone();
                        *req.uri_mut() = uri;
                        *req.headers_mut() = std::mem::take(&mut headers);
                        Box::pin(tokio::time::timeout_at(
                            deadline,
                            cluster.upstream.send_streamed(index, req),
                        ))
                        .await
                    }
                }),
            };
            upstream_time += sent.elapsed();
            let outcome = match result {
                None => TryOutcome::Failed(UpstreamFailure::Reset),
                Some(Err(_)) => TryOutcome::Failed(UpstreamFailure::Timeout),
                Some(Ok(Err(SendError::ConnectionLimit))) => {
                    for s in stats {
                        s.overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    TryOutcome::Failed(UpstreamFailure::Overflow)
                }
                Some(Ok(Err(SendError::PendingLimit))) => {
                    for s in stats {
                        s.pending_overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    TryOutcome::Failed(UpstreamFailure::Overflow)
                }
                Some(Ok(Err(SendError::Connect(_) | SendError::Handshake(_)))) => {
                    TryOutcome::Failed(UpstreamFailure::ConnectFailure)
                }
                Some(Ok(Err(SendError::Request(_)))) => TryOutcome::Failed(UpstreamFailure::Reset),
                Some(Ok(Ok(resp))) => TryOutcome::Response(resp),
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
                    resp.map(Either::Left),
                    upstream_time,
                    tries,
                    Some(endpoint.addr),
                    sticky,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_host_and_port() {
        for good in [
            "a",
            "a.example:80",
            "10.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "h:",
        ] {
            assert!(valid_host(&HeaderValue::from_static(good)), "{good}");
        }
        for bad in [
            "", "x y", "u@h", "u@h:80", "h:8o", "a:b:c", "h/x", "[::1", "[]", "[::1]x", ":80",
            "[x]", "%x", "%41", "a%2e",
        ] {
            assert!(!valid_host(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    proptest::proptest! {
        /// Every Host the front door lets in is one an HTTP/2 upstream can carry as its
        /// `:authority` (`upstream::authority_form` parses it with `http`'s `Authority`).
        #[test]
        fn an_accepted_host_is_an_authority(
            host in proptest::string::bytes_regex("(?s-u)[\\[\\]:a-zA-Z0-9.%@/ vx_~!$&'()*+,;=-]{0,12}").unwrap()
        ) {
            if let Ok(v) = HeaderValue::from_bytes(&host) {
                if valid_host(&v) {
                    proptest::prop_assert!(
                        http::uri::Authority::try_from(v.as_bytes()).is_ok(),
                        "{:?}", v
                    );
                }
            }
        }
    }

    #[test]
    fn traceparent_continues_or_starts() {
        let v = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let next = next_traceparent(Some(&v));
        let next = next.to_str().unwrap();
        assert_eq!(next.len(), 55);
        assert!(next.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!next.contains("00f067aa0ba902b7"));
        assert!(next.ends_with("-01"));
        let bad =
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
        let fresh = next_traceparent(Some(&bad));
        let fresh = fresh.to_str().unwrap();
        assert_eq!(fresh.len(), 55);
        assert!(!fresh.contains("00000000000000000000000000000000"));
    }

    #[test]
    fn per_request_values_are_never_indexed() {
        // HPACK's "never indexed" mark: an HTTP/2 upstream's encoder keeps them out of
        // its dynamic table (they never repeat); the bytes are the same either way
        assert!(next_traceparent(None).is_sensitive());
        let v = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(next_traceparent(Some(&v)).is_sensitive());
        let id = new_request_id();
        assert!(id.is_sensitive());
        assert_eq!(id.len(), 36);
        assert_eq!(id, HeaderValue::from_bytes(id.as_bytes()).unwrap());
    }

    #[tokio::test]
    async fn outlier_ejection_after_consecutive_5xx_and_panic_cap() {
        use crate::l7::config::{ClusterSpec, EndpointSpec, L7Config, Timeouts};
        let yaml = "services:\n  - name: s\n    routes: [{ cluster: c }]\n    clusters:\n      - name: c\n        outlier: { consecutive_5xx: 3, base_ejection_time: 10s }\n        endpoints: [{ address: \"127.0.0.1:1\" }, { address: \"127.0.0.1:2\" }, { address: \"127.0.0.1:3\" }]\n";
        let cfg = L7Config::from_yaml_str(yaml).unwrap();
        let spec: &ClusterSpec = &cfg.services[0].clusters[0];
        let _: &EndpointSpec = &spec.endpoints[0];
        let metrics = L7Metrics::default();
        let cluster = Cluster::build(spec, &Timeouts::default(), None, metrics.cluster("s", "c"));
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

    #[tokio::test]
    async fn ejections_lengthen_and_a_quiet_spell_forgives_them() {
        use crate::l7::config::{L7Config, Timeouts};
        let yaml = "services:\n  - name: s\n    routes: [{ cluster: c }]\n    clusters:\n      - name: c\n        outlier: { consecutive_5xx: 1, base_ejection_time: 10s, max_ejection_time: 60s, max_ejection_percent: 100 }\n        endpoints: [{ address: \"127.0.0.1:1\" }]\n";
        let cfg = L7Config::from_yaml_str(yaml).unwrap();
        let metrics = L7Metrics::default();
        let cluster = Cluster::build(
            &cfg.services[0].clusters[0],
            &Timeouts::default(),
            None,
            metrics.cluster("s", "c"),
        );
        let ep = &cluster.endpoints[0];
        // a failure `at` seconds into the pool's life: how many seconds it ejects for
        let ejected_for = |at: u64| {
            observe_at(&cluster, 0, true, || at * 1000);
            (ep.ejected_until_ms.load(Ordering::Relaxed) - at * 1000) / 1000
        };
        // each failure right after the last ejection ended: 10, 20, 30 s
        assert_eq!(ejected_for(0), 10);
        assert_eq!(ejected_for(11), 20);
        assert_eq!(ejected_for(32), 30);
        // ended at 62 s; 125 s of quiet (two full 60 s periods) forgive two of three
        assert_eq!(ejected_for(187), 20);
        // the cap: 60 s however many came before
        let mut at = 208;
        for _ in 0..10 {
            let length = ejected_for(at);
            assert!(length <= 60, "{length} s");
            at += length + 1;
        }
        assert_eq!(ejected_for(at), 60);
    }

    #[test]
    fn request_ids_are_uuid_v4_shaped() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert_eq!(a.len(), 36);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4') && groups[3].starts_with('a'));
        assert!(a.bytes().all(|c| c == b'-' || HEX.contains(&c)));
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

    #[test]
    fn strips_what_two_connection_lines_name() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("X-One"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-two, keep-alive"),
        );
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn te_trailers_is_recognised() {
        let te = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::TE, HeaderValue::from_static(v));
            }
            te_accepts_trailers(&h)
        };
        assert!(te(&["trailers"]));
        assert!(te(&["gzip;q=0.5, Trailers"]));
        assert!(te(&["gzip", "trailers;q=1"]));
        assert!(!te(&[]));
        assert!(!te(&["gzip, deflate"]));
        assert!(!te(&["trailersx"]));
    }
}
