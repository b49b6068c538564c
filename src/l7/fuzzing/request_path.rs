//! A client's bytes through the whole request path of the pool, in process: hyper's
//! server (HTTP/1.1, or h2c after the HTTP/2 preface) behind the framing watch, the
//! request handler (routing, body limits, header rewriting, balancing, retries, timeouts)
//! and the upstream pool, to an upstream on loopback that answers with bytes the input
//! chooses. What the upstream receives is checked request by request; a violation panics.
//!
//! # Input
//!
//! `seed: u8` (the sizes of the client's writes), `mode: u8` (how the upstream answers,
//! [`UpstreamMode`], in its low three bits; with [`H2_CLIENT`] set, the client is an
//! HTTP/2 client; with [`H2_UPSTREAM`], the upstream an HTTP/2 server), `client_len: u16` (little endian; the rest of the input when it is
//! longer), the client's bytes, then the upstream's response bytes (sent whole to every
//! request).
//!
//! Without [`H2_CLIENT`] the client's bytes are written to the pool as they are (HTTP/1.x,
//! or raw HTTP/2 frames after the preface). With it, they are read as a run of HTTP/1.1
//! requests (head, then the body its Content-Length announces) and each is sent by the
//! `h2` crate's client over prior-knowledge h2c, all on one connection and at once:
//! the target and Host become `:authority` and `:path` (the Host header kept for every
//! other request, so both forms arrive), headers HTTP/2 cannot carry are left out, and
//! every other header goes as it came, repeated ones (cookie crumbs) as separate fields.
//!
//! With [`H2_UPSTREAM`] the clusters speak HTTP/2 (`protocol: http2`) to an upstream on
//! the `h2` crate's server, which checks each request as below ([`check_forwarded_h2`])
//! and answers with the answer bytes read as an HTTP/1.1 response to the request's method
//! (status, the headers HTTP/2 can carry, body), resets a stream when they are no
//! response, and ends its connection as the mode says (a GOAWAY after answering, or a
//! drop with no answer). A request asking for trailers (`te: trailers`, as gRPC's do) has
//! a whole answer that may carry content end with an `x-fuzz-trailer` trailer, as a gRPC
//! server ends with `grpc-status`.
//!
//! # What every request reaching the upstream must be
//!
//! A complete HTTP/1.1 request (httparse reads its head; an HTTP/2 one to the HTTP/2
//! upstream), not a CONNECT, in origin form (or `*` for OPTIONS), with
//! - no hop-by-hop header (`Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, ...;
//!   over HTTP/2 `te: trailers` alone may go), at most one `Content-Length`, and the
//!   whole body that one announces;
//! - exactly one `Host` (over HTTP/2: `:authority` or `host`, not both), and over
//!   HTTP/1.1 at most one `Cookie` (RFC 9113 8.2.3: an HTTP/2 client's cookie crumbs are
//!   joined before they leave HTTP/2);
//! - exactly one `X-Forwarded-For`, ending with the client's address;
//! - exactly one `X-Forwarded-Proto: http`, at least one `X-Request-Id`;
//! - exactly one W3C `traceparent` of the valid form, with a non-zero trace id.
//!
//! The client's side: over HTTP/1.x, what it gets back reads as HTTP/1.x responses, and
//! each one the handler relayed from the upstream carries the status and body of the
//! first response in the upstream's bytes (`check_relayed`). The HTTP/2 client holds each
//! relayed response to the same, and every request it sent must be answered (a response
//! or a stream reset) within the harness's bound, while the connection stands; a relayed
//! response from the HTTP/2 upstream to a request that asked for trailers must end with
//! the upstream's trailer (`check_trailer`).
//!
//! Real time and real loopback sockets, with short timeouts: a hanging upstream costs
//! tens of milliseconds, most inputs a few. (tokio's paused clock cannot be used: it
//! jumps to the next timer while a loopback socket's data is on its way.)

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::Method;
use http_body_util::Either;
use hyper::body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::super::framing::{Verdicts, Watched};
use super::super::h1::{self, Framing, HeadScratch, Step, HOP_BY_HOP};
use super::super::proxy::{handle, strip_hop_by_hop, te_accepts_trailers, Body, Shared};
use super::super::server::{builder, conn_info, ListenerSpec};
use super::super::state::{Clock, Snapshot};
use super::super::upstream::forget_idle_connections;
use super::super::{L7Config, L7Metrics};
use super::Pieces;

/// Turns of the scheduler with nothing in flight and nothing sent that end an exchange.
const QUIET_TURNS: u32 = 4;

/// The client's address as the pool sees it (TEST-NET-1).
const PEER: &str = "192.0.2.1:40000";

/// The service: three routes (a prefix rewritten, with retries of every method; a
/// weighted split on a header; the rest), two clusters on the same upstream (ring hash
/// on a cookie with sticky sessions; least request). Timeouts are short so a hanging
/// upstream costs little, and so do a body the client announces and never sends (the
/// body read timeout) and a response body without an end (`stream_idle`; `TIMEOUT`: [`FUZZ_TIMEOUT`] a try); `UPSTREAM` is replaced by
/// the upstream's address.
const CONFIG: &str = r#"
l7:
  limits: { max_header_bytes: 8192, max_body_bytes: 4096, header_read_timeout: 2s, body_read_timeout: 20ms, max_concurrent_streams: 8 }
  timeouts: { connect: 100ms, request: TIMEOUT, idle: 2s, stream_idle: 30ms }
services:
  - name: web
    routes:
      - match: { path: { prefix: /api/ } }
        cluster: api
        prefix_rewrite: /v2/
        retries: { max_retries: 2, non_idempotent: true, base_interval: 1ms, max_interval: 2ms, on_timeout: true }
      - match: { headers: [{ name: x-canary }] }
        weighted_clusters: [{ cluster: api, weight: 1 }, { cluster: site, weight: 1 }]
      - cluster: site
        retries: { base_interval: 1ms, max_interval: 2ms }
    clusters:
      - name: api
        protocol: PROTOCOL
        lb: ring_hash
        hash_on: { cookie: session }
        sticky_cookie: { name: S, ttl: 1h }
        endpoints: [{ address: "UPSTREAM" }]
      - name: site
        protocol: PROTOCOL
        lb: least_request
        endpoints: [{ address: "UPSTREAM" }]
"#;

/// The `mode` bit that makes the client an HTTP/2 client (see the module's docs).
pub const H2_CLIENT: u8 = 0x40;

/// The `mode` bit that makes the upstream an HTTP/2 server (prior knowledge) and the
/// clusters speak HTTP/2 to it (see the module's docs).
pub const H2_UPSTREAM: u8 = 0x20;

/// The response header the harness's wrapper adds to each response the handler relayed
/// from the upstream (the HTTP/2 client has no other way to tell them from the pool's own).
const RELAYED: &str = "x-fuzz-relayed";

/// The trailer field the HTTP/2 upstream ends a complete answer with when the request
/// asked for trailers (`te: trailers`, as a gRPC client does): gRPC's status travels so.
const TRAILER: &str = "x-fuzz-trailer";

/// At most this many requests are read from the client's bytes for the HTTP/2 client.
const H2_MAX_REQUESTS: usize = 16;

/// The per-try timeout while fuzzing: a hanging upstream costs three of them.
const FUZZ_TIMEOUT: Duration = Duration::from_millis(10);

/// How the upstream answers each request (the input's second byte, modulo 8: 2 closes, 3
/// hangs, odd values keep the connection, the rest close it after the answer; hanging
/// costs the most time, so it is one value in eight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpstreamMode {
    /// Sends the response bytes and closes the connection.
    AnswerAndClose,
    /// Sends the response bytes and reads the next request on the same connection.
    AnswerAndKeep,
    /// Closes the connection without an answer.
    Close,
    /// Never answers (the pool's timeout ends the try).
    Hang,
}

impl UpstreamMode {
    fn of(b: u8) -> UpstreamMode {
        match b % 8 {
            2 => UpstreamMode::Close,
            3 => UpstreamMode::Hang,
            1 | 5 | 7 => UpstreamMode::AnswerAndKeep,
            _ => UpstreamMode::AnswerAndClose,
        }
    }
}

/// What the harness records as an exchange runs: the upstream's tasks and the handler's
/// wrapper write, [`run`] reads when the runtime is gone.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<SeenLog>>);

#[derive(Default)]
struct SeenLog {
    /// What was wrong with requests the upstream received.
    violations: Vec<String>,
    /// The Host of each request the upstream received (all of them right).
    hosts: Vec<String>,
    /// The Cookie of each, if it had one.
    cookies: Vec<Option<String>>,
    /// Each answered request's method, and whether its response came from the upstream.
    answered: Vec<(Method, bool)>,
}

impl Seen {
    fn with(&self, f: impl FnOnce(&mut SeenLog)) {
        if let Ok(mut log) = self.0.lock() {
            f(&mut log);
        }
    }

    fn take(&self) -> SeenLog {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// A response the client received: its status, and its body (`None`: cut off).
type ClientResponse = (u16, Option<Vec<u8>>);

/// What one input did.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Requests the upstream received (every one of them passed the checks).
    pub forwarded: usize,
    /// Their Host headers, in the order received.
    pub hosts: Vec<String>,
    /// Their Cookie headers.
    pub cookies: Vec<Option<String>>,
    /// The bytes the client received (empty for the HTTP/2 client).
    pub response: Vec<u8>,
    /// The HTTP/2 client's requests and what each got back, in the order sent.
    pub h2_answers: Vec<H2Answer>,
}

/// Requests the pool is working on: counted up when the handler is called, down when its
/// future or its response body is dropped.
#[derive(Clone, Default)]
struct InFlight(Arc<AtomicUsize>);

struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    fn start(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that holds its request's [`InFlightGuard`] until hyper drops it.
struct Tracked {
    body: Pin<Box<Body>>,
    _guard: InFlightGuard,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Runs one input through the pool; panics when a request reaching the upstream, or the
/// start of the client's answer, is not what it must be.
pub fn request_path(data: &[u8]) -> Exchange {
    run(data, FUZZ_TIMEOUT)
}

/// [`request_path`] with a per-try timeout of `timeout` (the tests that expect answers use
/// a long one, so a stalled machine cannot turn them into 504s).
fn run(data: &[u8], timeout: Duration) -> Exchange {
    let [seed, mode, l0, l1, rest @ ..] = data else {
        return Exchange::default();
    };
    let client_len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
    let (client, answer) = rest.split_at(client_len);
    let h2_client = mode & H2_CLIENT != 0;
    let h2_upstream = mode & H2_UPSTREAM != 0;
    let mode = UpstreamMode::of(*mode);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Exchange::default();
    };
    let seen = Seen::default();
    let side = if h2_client {
        ClientSide::H2(h2_requests(client))
    } else {
        ClientSide::Bytes(client)
    };
    let received = rt.block_on(exchange(
        side,
        timeout,
        Pieces::new(*seed),
        answer.to_vec(),
        (mode, h2_upstream),
        seen.clone(),
    ));
    forget_idle_connections();
    drop(rt);
    let seen = seen.take();
    let violations = seen.violations;
    assert!(
        violations.is_empty(),
        "the upstream received requests it must not: {violations:#?}\nclient bytes: {:?}",
        String::from_utf8_lossy(client)
    );
    let response = match received {
        Received::Bytes(response) => response,
        Received::H2(Err(e)) => panic!("{e}\nclient bytes: {:?}", String::from_utf8_lossy(client)),
        Received::H2(Ok(answers)) => {
            for (i, a) in answers.iter().enumerate() {
                let Some((status, true, Some(body))) = &a.response else {
                    continue;
                };
                let checked =
                    check_one_relayed(i, &a.method, *status, body, answer).and_then(|()| {
                        if h2_upstream && a.asked_trailers {
                            check_trailer(i, &a.method, a.trailer.as_deref(), answer)
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = checked {
                    panic!(
                        "over HTTP/2: {e}\nclient bytes: {:?}\nupstream bytes: {:?}",
                        String::from_utf8_lossy(client),
                        String::from_utf8_lossy(answer),
                    );
                }
            }
            return Exchange {
                forwarded: seen.hosts.len(),
                hosts: seen.hosts,
                cookies: seen.cookies,
                response: Vec::new(),
                h2_answers: answers,
            };
        }
    };
    let h2 = client.starts_with(b"PRI * HTTP/2.0");
    if !h2 && !response.is_empty() {
        assert!(
            response.starts_with(b"HTTP/1.1 ") || response.starts_with(b"HTTP/1.0 "),
            "the client's answer does not start as an HTTP/1.x response: {:?}",
            String::from_utf8_lossy(&response[..response.len().min(200)])
        );
        if let Err(e) = check_relayed(&response, &seen.answered, answer) {
            panic!(
                "{e}\nclient bytes: {:?}\nupstream bytes: {:?}\nclient received: {:?}",
                String::from_utf8_lossy(client),
                String::from_utf8_lossy(answer),
                String::from_utf8_lossy(&response)
            );
        }
    }
    Exchange {
        forwarded: seen.hosts.len(),
        hosts: seen.hosts,
        cookies: seen.cookies,
        response,
        h2_answers: Vec::new(),
    }
}

/// What the client sends: its bytes as they are, or requests for the HTTP/2 client.
enum ClientSide<'a> {
    Bytes(&'a [u8]),
    H2(Vec<(http::Request<()>, Bytes)>),
}

/// What the client received: bytes, or the HTTP/2 client's answers (`Err`: a request
/// left unanswered).
enum Received {
    Bytes(Vec<u8>),
    H2(Result<Vec<H2Answer>, String>),
}

/// One request the HTTP/2 client sent, and what came back.
#[derive(Debug)]
pub struct H2Answer {
    /// The request's method.
    pub method: Method,
    /// The response's status, whether the handler relayed it from the upstream, and its
    /// body (`None`: cut off by a reset); `None` for a stream reset before a response.
    pub response: Option<(u16, bool, Option<Vec<u8>>)>,
    /// Whether the request asked for trailers (`te: trailers`).
    pub asked_trailers: bool,
    /// The value of the [`TRAILER`] field in the response's trailers, if any came.
    pub trailer: Option<Vec<u8>>,
}

async fn exchange(
    side: ClientSide<'_>,
    timeout: Duration,
    mut pieces: Pieces,
    answer: Vec<u8>,
    (mode, h2_upstream): (UpstreamMode, bool),
    seen: Seen,
) -> Received {
    let nothing = || match side {
        ClientSide::Bytes(_) => Received::Bytes(Vec::new()),
        ClientSide::H2(_) => Received::H2(Ok(Vec::new())),
    };
    let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
        return nothing();
    };
    let Ok(upstream_addr) = listener.local_addr() else {
        return nothing();
    };
    if h2_upstream {
        tokio::spawn(upstream_h2(listener, Arc::new(answer), mode, seen.clone()));
    } else {
        tokio::spawn(upstream(listener, Arc::new(answer), mode, seen.clone()));
    }

    let text = CONFIG
        .replace("UPSTREAM", &upstream_addr.to_string())
        .replace("PROTOCOL", if h2_upstream { "http2" } else { "http1" })
        .replace("TIMEOUT", &format!("{}ms", timeout.as_millis()));
    let cfg = L7Config::from_yaml_str(&text).expect("the harness's configuration is valid");
    let metrics = Arc::new(L7Metrics::default());
    let snapshot = Snapshot::build(&cfg, None, &metrics).expect("the harness's snapshot builds");
    let limits = snapshot.settings.limits.clone();
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        metrics,
        clock: Clock(Instant::now()),
        access_log: None,
    });
    let spec = ListenerSpec {
        addr: "127.0.0.1:0".parse().expect("an address"),
        tls: false,
        service: "web".into(),
    };
    let peer: SocketAddr = PEER.parse().expect("an address");
    let verdicts = Arc::new(Verdicts::default());
    let conn = conn_info(peer, &spec, verdicts.clone());
    let in_flight = InFlight::default();
    let service = {
        let seen = seen.clone();
        let in_flight = in_flight.clone();
        service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let guard = in_flight.start();
            let method = req.method().clone();
            let seen = seen.clone();
            let answer = handle(req, conn.clone(), shared.clone());
            async move {
                let mut response = answer.await?;
                let relayed = matches!(response.body(), Either::Left(_));
                if relayed {
                    response
                        .headers_mut()
                        .insert(RELAYED, http::HeaderValue::from_static("1"));
                }
                seen.with(|s| s.answered.push((method, relayed)));
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                    body: Box::pin(body),
                    _guard: guard,
                }))
            }
        })
    };

    let client_bytes = match side {
        ClientSide::Bytes(b) => b,
        ClientSide::H2(requests) => {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let io = TokioIo::new(Watched::new(server, limits.max_header_bytes, verdicts));
            let http = builder(&limits);
            let serving = tokio::spawn(async move {
                let _ = http.serve_connection(io, service).await;
            });
            let answers = h2_client(client, requests).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
            return Received::H2(answers);
        }
    };
    // the client's bytes fit the pipe: every write completes before the client reads
    let (mut client, server) = tokio::io::duplex(client_bytes.len() + 64 * 1024);
    let io = TokioIo::new(Watched::new(server, limits.max_header_bytes, verdicts));
    let http = builder(&limits);
    let serving = tokio::spawn(async move {
        let _ = http.serve_connection(io, service).await;
    });

    let mut rest = client_bytes;
    while !rest.is_empty() {
        let n = pieces.next().min(rest.len());
        if client.write_all(&rest[..n]).await.is_err() {
            break;
        }
        rest = &rest[n..];
        tokio::task::yield_now().await;
    }
    // Read until the pool has had nothing in flight and sent nothing for a few turns of
    // the scheduler (every task on this thread ran in each: hyper's, reading the next
    // request from the pipe, among them), then close the client's side and read what is
    // left. A request in flight waits on the upstream's socket: sleep meanwhile.
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut quiet = 0;
    let mut open = true;
    while quiet < QUIET_TURNS && tokio::time::Instant::now() < deadline {
        let wait = async {
            if in_flight.idle() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::select! {
            biased;
            n = client.read(&mut buf) => match n {
                Ok(0) | Err(_) => { open = false; break; }
                Ok(n) => { out.extend_from_slice(&buf[..n]); quiet = 0; }
            },
            _ = wait => {
                quiet = if in_flight.idle() { quiet + 1 } else { 0 };
            }
        }
    }
    if open {
        let _ = client.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
        .await;
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    Received::Bytes(out)
}

/// How long the HTTP/2 client waits for all its answers: far past the harness's
/// timeouts (a hanging upstream costs three tries of [`FUZZ_TIMEOUT`]), so a request left
/// unanswered is the pool's fault.
const H2_ANSWER_BOUND: Duration = Duration::from_secs(5);

/// The client's bytes as HTTP/2 requests, each with its body (see the module's docs).
fn h2_requests(mut bytes: &[u8]) -> Vec<(http::Request<()>, Bytes)> {
    let mut requests = Vec::new();
    while requests.len() < H2_MAX_REQUESTS && !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = head.parse(bytes) else {
            break;
        };
        let announced = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        let end = head_len.saturating_add(announced).min(bytes.len());
        let body = Bytes::copy_from_slice(&bytes[head_len..end]);
        if let Some(request) = h2_request(&head, requests.len() % 2 == 1) {
            requests.push((request, body));
        }
        bytes = &bytes[end..];
    }
    requests
}

/// One HTTP/1.1 head as an HTTP/2 request: an origin-form target with the Host as
/// `:authority` (`keep_host`: the Host header sent too), any other target as it reads;
/// the headers HTTP/2 cannot carry left out (RFC 9113 8.2.2), the rest as they came.
fn h2_request(head: &httparse::Request<'_, '_>, keep_host: bool) -> Option<http::Request<()>> {
    let method = Method::from_bytes(head.method?.as_bytes()).ok()?;
    let target = head.path?;
    let host = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value);
    let uri = match host {
        Some(host) if target.starts_with('/') => http::Uri::builder()
            .scheme("http")
            .authority(host)
            .path_and_query(target)
            .build()
            .ok()?,
        _ => target.parse().ok()?,
    };
    let mut request = http::Request::builder().method(method).uri(uri);
    for h in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        let connection_specific = matches!(
            name.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
        ) || (name == http::header::TE && value != "trailers");
        if connection_specific || (name == http::header::HOST && !keep_host) {
            continue;
        }
        request = request.header(name, value);
    }
    request.body(()).ok()
}

/// Sends `requests` on one prior-knowledge h2c connection over `pipe`, all at once
/// (within the pool's stream limit), and reads every answer. `Err` when some request is
/// still unanswered after [`H2_ANSWER_BOUND`].
async fn h2_client(
    pipe: tokio::io::DuplexStream,
    requests: Vec<(http::Request<()>, Bytes)>,
) -> Result<Vec<H2Answer>, String> {
    let Ok((client, connection)) = h2::client::handshake(pipe).await else {
        return Ok(Vec::new());
    };
    let connection = tokio::spawn(connection);
    let sent = requests.len();
    let mut tasks = tokio::task::JoinSet::new();
    let all = async {
        // (dropped when the last request is sent, or the connection fails)
        let mut client = Some(client);
        for (i, (request, body)) in requests.into_iter().enumerate() {
            let method = request.method().clone();
            let asked_trailers = te_accepts_trailers(request.headers());
            let Some(idle) = client.take() else {
                break;
            };
            let Ok(mut ready) = idle.ready().await else {
                break;
            };
            let sending = ready.send_request(request, body.is_empty());
            client = Some(ready);
            // refused by the h2 crate itself (a pseudo-header it cannot form)
            let Ok((response, mut stream)) = sending else {
                continue;
            };
            if !body.is_empty() {
                let _ = stream.send_data(body, true);
            }
            tasks.spawn(async move {
                let _stream = stream;
                let (response, trailer) = h2_response(response).await;
                (
                    i,
                    H2Answer {
                        method,
                        response,
                        asked_trailers,
                        trailer,
                    },
                )
            });
        }
        drop(client);
        let mut answers = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(answer) = done {
                answers.push(answer);
            }
        }
        answers.sort_by_key(|(i, _)| *i);
        answers.into_iter().map(|(_, a)| a).collect::<Vec<_>>()
    };
    let answers = tokio::time::timeout(H2_ANSWER_BOUND, all).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
    answers.map_err(|_| {
        format!("of {sent} HTTP/2 requests, some were still unanswered after {H2_ANSWER_BOUND:?}")
    })
}

/// A response's status, whether it was relayed, and its body (`None`: reset midway);
/// `None` for a stream reset before its response. Then the value of its [`TRAILER`]
/// trailer, if the body ended with one.
async fn h2_response(
    response: h2::client::ResponseFuture,
) -> (Option<(u16, bool, Option<Vec<u8>>)>, Option<Vec<u8>>) {
    let Ok(response) = response.await else {
        return (None, None);
    };
    let status = response.status().as_u16();
    let relayed = response.headers().contains_key(RELAYED);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            Err(_) => return (Some((status, relayed, None)), None),
        }
    }
    let trailer = match body.trailers().await {
        Ok(Some(trailers)) => trailers.get(TRAILER).map(|v| v.as_bytes().to_vec()),
        Ok(None) => None,
        // reset after the body: not whole after all
        Err(_) => return (Some((status, relayed, None)), None),
    };
    (Some((status, relayed, Some(data))), trailer)
}

/// The upstream: reads requests on every connection the pool opens, checks each, and
/// answers as `mode` says.
async fn upstream(listener: TcpListener, answer: Arc<Vec<u8>>, mode: UpstreamMode, seen: Seen) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let (answer, seen) = (answer.clone(), seen.clone());
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                // a head, then the body its Content-Length announces
                let Forwarded {
                    head_len,
                    body_len,
                    host,
                    cookie,
                } = loop {
                    match check_forwarded(&buf) {
                        Ok(Some(f)) => break f,
                        Ok(None) => {}
                        Err(e) => {
                            seen.with(|s| s.violations.push(e));
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                while buf.len() < head_len + body_len {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            // the pool gave up on the request (a timeout), or sent less
                            // than it announced: only the second is wrong, and the
                            // pool's writes of a buffered body are whole, so say so
                            let got = buf.len() - head_len;
                            seen.with(|s| {
                                s.violations.push(format!(
                                    "a body of {got} bytes where {body_len} were announced"
                                ))
                            });
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..head_len + body_len);
                seen.with(|s| {
                    s.hosts.push(host);
                    s.cookies.push(cookie);
                });
                match mode {
                    UpstreamMode::AnswerAndClose => {
                        let _ = stream.write_all(&answer).await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                    UpstreamMode::AnswerAndKeep => {
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                    UpstreamMode::Close => return,
                    UpstreamMode::Hang => std::future::pending::<()>().await,
                }
            }
        });
    }
}

/// The HTTP/2 upstream: serves every connection the pool opens (prior knowledge), checks
/// each request ([`check_forwarded_h2`]) and answers it as `mode` says, with the input's
/// answer bytes read as an HTTP/1.1 response for the request's method
/// ([`h2_reply`]). `AnswerAndClose` answers and then closes the connection gracefully
/// (a GOAWAY: streams past it are refused unprocessed); `Close` drops the connection
/// with no answer.
async fn upstream_h2(listener: TcpListener, answer: Arc<Vec<u8>>, mode: UpstreamMode, seen: Seen) {
    while let Ok((stream, _)) = listener.accept().await {
        let (answer, seen) = (answer.clone(), seen.clone());
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(stream).await else {
                return;
            };
            // a stream's task asks here for its connection's end
            let (end_tx, mut end_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            loop {
                tokio::select! {
                    next = conn.accept() => match next {
                        Some(Ok((request, respond))) => {
                            let (answer, seen, end) = (answer.clone(), seen.clone(), end_tx.clone());
                            tokio::spawn(h2_stream(request, respond, answer, mode, seen, end));
                        }
                        _ => return,
                    },
                    Some(()) = end_rx.recv() => match mode {
                        UpstreamMode::Close => return,
                        _ => conn.graceful_shutdown(),
                    },
                }
            }
        });
    }
}

/// One request on the HTTP/2 upstream: its body read, the request checked, the answer.
async fn h2_stream(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    answer: Arc<Vec<u8>>,
    mode: UpstreamMode,
    seen: Seen,
    end: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let (parts, mut body) = request.into_parts();
    let mut received = 0usize;
    while let Some(chunk) = body.data().await {
        // a reset: the pool gave up on the try (a timeout, or its client went away)
        let Ok(chunk) = chunk else {
            return;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        received += chunk.len();
    }
    match check_forwarded_h2(&parts, received) {
        Ok((host, cookie)) => seen.with(|s| {
            s.hosts.push(host);
            s.cookies.push(cookie);
        }),
        Err(e) => {
            seen.with(|s| s.violations.push(e));
            return;
        }
    }
    match mode {
        UpstreamMode::Hang => std::future::pending::<()>().await,
        UpstreamMode::Close => {
            let _ = end.send(());
            // held until the connection is gone, so its end is what the pool sees
            std::future::pending::<()>().await
        }
        UpstreamMode::AnswerAndClose | UpstreamMode::AnswerAndKeep => {
            let trailers = te_accepts_trailers(&parts.headers);
            h2_reply(&mut respond, &answer, &parts.method, trailers);
            if mode == UpstreamMode::AnswerAndClose {
                let _ = end.send(());
            }
        }
    }
}

/// Answers a stream with `answer` read as an HTTP/1.1 response to `method`: its status,
/// the headers HTTP/2 can carry, and its body; a response whose body did not end is sent
/// as far as it goes and the stream reset, and bytes that are no response reset the
/// stream at once (the pool must answer 502 to both). With `trailers` (the request's
/// `te: trailers`), a whole answer that may carry content ends with [`TRAILER`] in
/// trailers, as a gRPC server ends with `grpc-status`.
fn h2_reply(
    respond: &mut h2::server::SendResponse<Bytes>,
    answer: &[u8],
    method: &Method,
    trailers: bool,
) {
    let super::Response::Read {
        status,
        headers,
        framing,
        body,
        end,
        ..
    } = super::read_response(answer, method, None)
    else {
        respond.send_reset(h2::Reason::PROTOCOL_ERROR);
        return;
    };
    // the pool's own stripping (Connection and what it names, the other hop-by-hop
    // headers); HTTP/2 carries the body's length in its frames
    let mut headers = headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(http::header::CONTENT_LENGTH);
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    let whole = end == super::BodyEnd::End
        || matches!(framing, Framing::Close) && end == super::BodyEnd::NeedMore;
    let trailers = trailers && whole && may_trail(method, status);
    let Ok(mut stream) = respond.send_response(response, whole && body.is_empty() && !trailers)
    else {
        return;
    };
    if !body.is_empty() {
        let _ = stream.send_data(Bytes::from(body), whole && !trailers);
    }
    if trailers {
        let mut fields = http::HeaderMap::new();
        fields.insert(TRAILER, http::HeaderValue::from_static("end"));
        let _ = stream.send_trailers(fields);
    }
    if !whole {
        stream.send_reset(h2::Reason::INTERNAL_ERROR);
    }
}

/// Whether a response to `method` with `status` is one the HTTP/2 upstream ends with
/// trailers when asked: a final one that may carry content (not 1xx, not
/// [`h1::bodiless`]: HEAD, 204, 304).
fn may_trail(method: &Method, status: http::StatusCode) -> bool {
    status.as_u16() >= 200 && !h1::bodiless(status, method)
}

/// Checks a request the HTTP/2 upstream received (its head, and `body_len` bytes of
/// body): what [`check_forwarded`] requires of an HTTP/1.1 one, with the host in
/// `:authority` or a `host` header but not both. Returns its host and its cookie (the
/// crumbs joined, which HTTP/2 allows to travel apart).
pub fn check_forwarded_h2(
    parts: &http::request::Parts,
    body_len: usize,
) -> Result<(String, Option<String>), String> {
    let fail = |what: String| Err(format!("{what}, in an HTTP/2 request {parts:?}"));
    if parts.method == Method::CONNECT {
        return fail("a CONNECT (the pool makes no tunnels)".into());
    }
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    if !(path.starts_with('/') || (path == "*" && parts.method == Method::OPTIONS)) {
        return fail(format!("a :path {path:?} not in origin form"));
    }
    let all = |name: &str| -> Vec<&[u8]> {
        parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    };
    let host = match (parts.uri.authority(), &all("host")[..]) {
        (Some(a), []) => a.as_str().to_owned(),
        (None, [h]) => String::from_utf8_lossy(h).into_owned(),
        (Some(_), [_, ..]) => return fail("both :authority and host".into()),
        _ => return fail("not exactly one host".into()),
    };
    match &all("content-length")[..] {
        [] => {}
        [v] if *v == body_len.to_string().as_bytes() => {}
        _ => {
            return fail(format!(
                "a content-length that is not the {body_len} bytes of body"
            ))
        }
    }
    if let Err(e) = pool_headers(&all, true) {
        return fail(e);
    }
    let cookies = all("cookie");
    let cookie = (!cookies.is_empty()).then(|| {
        cookies
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("; ")
    });
    Ok((host, cookie))
}

/// What every forwarded request carries and lacks, whatever its version: no hop-by-hop
/// header (but `te: trailers` to an HTTP/2 upstream, `h2`); exactly one X-Forwarded-For, ending with the client; exactly one
/// `X-Forwarded-Proto: http`; at least one X-Request-Id; exactly one valid traceparent.
/// `all(name)`: the values of the header `name`.
fn pool_headers<'a>(all: &dyn Fn(&str) -> Vec<&'a [u8]>, h2: bool) -> Result<(), String> {
    for hop in HOP_BY_HOP {
        let values = all(hop);
        // `te: trailers` alone, the one TE HTTP/2 carries (RFC 9113 8.2.2; gRPC needs it)
        if h2 && hop == "te" && values[..] == [&b"trailers"[..]] {
            continue;
        }
        if !values.is_empty() {
            return Err(format!("the hop-by-hop header {hop}"));
        }
    }
    match all("x-forwarded-for")[..] {
        [v] => {
            let last = v.rsplit(|b| *b == b',').next().unwrap_or(v).trim_ascii();
            let peer = PEER.split(':').next().unwrap_or(PEER);
            if last != peer.as_bytes() {
                return Err("an x-forwarded-for that does not end with the client".into());
            }
        }
        _ => return Err("not exactly one x-forwarded-for".into()),
    }
    if all("x-forwarded-proto")[..] != [&b"http"[..]] {
        return Err("not exactly one x-forwarded-proto: http".into());
    }
    if all("x-request-id").is_empty() {
        return Err("no x-request-id".into());
    }
    match all("traceparent")[..] {
        [v] if valid_traceparent(v) => Ok(()),
        _ => Err("not exactly one valid traceparent".into()),
    }
}

/// The HTTP/1.x responses in what the client received, in order, read by the pool's own
/// response reader (`h1`, which the `upstream_response` target fuzzes): interim (1xx)
/// ones skipped, a body framed by its head and its request's method. Each is
/// `(status, Some(body))`, or `(status, None)` for a last one the connection cut.
fn client_responses(out: &[u8], methods: &[Method]) -> Result<Vec<ClientResponse>, String> {
    let mut found = Vec::new();
    let mut buf = BytesMut::from(out);
    let mut scratch = HeadScratch::default();
    while !buf.is_empty() {
        let method = methods.get(found.len()).unwrap_or(&Method::GET);
        let head = match h1::next_head_with(&mut buf, method, &mut scratch) {
            Ok(Some(head)) => head,
            Ok(None) => return Err("a response head cut short".into()),
            Err(e) => return Err(format!("an unreadable response head ({e})")),
        };
        let mut framing = head.framing.clone();
        let mut body = Vec::new();
        let complete = loop {
            match framing.next(&mut buf) {
                Ok(Step::Data(b)) => body.extend_from_slice(&b),
                Ok(Step::End) => break true,
                // the client read to the end: a close-delimited body is whole
                Ok(Step::NeedMore) => break matches!(framing, Framing::Close),
                Err(e) => return Err(format!("an unreadable response body ({e})")),
            }
        };
        found.push((head.status.as_u16(), complete.then_some(body)));
        if !complete {
            break;
        }
    }
    Ok(found)
}

/// Holds what the client received against what the upstream sent: every response the
/// handler relayed from the upstream (`answered[i]`: the i-th request's method, and
/// whether its response was relayed) carries the status and body of the first response
/// in `answer` (the upstream sends `answer` to every request), when that response reads
/// complete. A response queue out of step, bytes past a response taken for the next
/// one, or a body altered on the way would each break it.
fn check_relayed(out: &[u8], answered: &[(Method, bool)], answer: &[u8]) -> Result<(), String> {
    let methods: Vec<Method> = answered.iter().map(|(m, _)| m.clone()).collect();
    let responses = client_responses(out, &methods)?;
    for (i, ((method, relayed), (status, body))) in answered.iter().zip(&responses).enumerate() {
        if let (true, Some(body)) = (relayed, body) {
            check_one_relayed(i, method, *status, body, answer)?;
        }
    }
    Ok(())
}

/// Holds the `i`-th response, relayed from the upstream with `status` and `body`, against
/// the first response in `answer` when that one reads complete.
fn check_one_relayed(
    i: usize,
    method: &Method,
    status: u16,
    body: &[u8],
    answer: &[u8],
) -> Result<(), String> {
    let super::Response::Read {
        status: want,
        body: want_body,
        end: super::BodyEnd::End,
        ..
    } = super::read_response(answer, method, None)
    else {
        return Ok(());
    };
    if status != want.as_u16() || body != want_body {
        return Err(format!(
            "response {i} relayed as {status} with {:?}, where the upstream answered {want} with {:?}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&want_body)
        ));
    }
    Ok(())
}

/// Holds the `i`-th response over HTTP/2, relayed whole from an HTTP/2 upstream that was
/// asked for trailers, against the upstream's answer: when that answer reads complete and
/// may carry content, the upstream ended it with [`TRAILER`], and the client must see it
/// (a gRPC client reads its call's status there). Over HTTP/2 both ways, trailers are
/// part of the response.
fn check_trailer(
    i: usize,
    method: &Method,
    trailer: Option<&[u8]>,
    answer: &[u8],
) -> Result<(), String> {
    let super::Response::Read {
        status,
        end: super::BodyEnd::End,
        ..
    } = super::read_response(answer, method, None)
    else {
        return Ok(());
    };
    if may_trail(method, status) && trailer != Some(b"end") {
        return Err(format!(
            "response {i} relayed without the upstream's trailers (got {:?})",
            trailer.map(String::from_utf8_lossy)
        ));
    }
    Ok(())
}

/// A request the upstream received, as [`check_forwarded`] read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// Bytes of its head.
    pub head_len: usize,
    /// Bytes of its body (its Content-Length).
    pub body_len: usize,
    /// Its Host.
    pub host: String,
    /// Its Cookie, if it has one.
    pub cookie: Option<String>,
}

/// Reads one request head at the start of `buf` as the upstream receives it: `Ok(None)`
/// while incomplete, `Ok(Some(_))` when complete and right, and `Err` with what is wrong
/// otherwise.
pub fn check_forwarded(buf: &[u8]) -> Result<Option<Forwarded>, String> {
    let mut headers = vec![httparse::EMPTY_HEADER; 1024];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "an unreadable request head ({e}): {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(400)])
            ))
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let fail = |what: String| Err(format!("{what}, in {head:?}"));
    if req.version != Some(1) {
        return fail("not HTTP/1.1".into());
    }
    let (method, path) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
    if method == "CONNECT" {
        return fail("a CONNECT (the pool makes no tunnels)".into());
    }
    if !(path.starts_with('/') || (path == "*" && method == "OPTIONS")) {
        return fail(format!("a request target {path:?} not in origin form"));
    }
    let all = |name: &str| -> Vec<&[u8]> {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let body_len = match all("content-length")[..] {
        [] => 0,
        [v] => match std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return fail("a content-length that is not a number".into()),
        },
        _ => return fail("more than one content-length".into()),
    };
    let host = match all("host")[..] {
        [h] => String::from_utf8_lossy(h).into_owned(),
        _ => return fail("not exactly one host".into()),
    };
    let cookie = match all("cookie")[..] {
        [] => None,
        [c] => Some(String::from_utf8_lossy(c).into_owned()),
        _ => return fail("more than one cookie".into()),
    };
    if let Err(e) = pool_headers(&all, false) {
        return fail(e);
    }
    Ok(Some(Forwarded {
        head_len,
        body_len,
        host,
        cookie,
    }))
}

/// `00-` 32 lowercase hex digits (not all zero) `-` 16 of them (not all zero) `-` 2.
fn valid_traceparent(v: &[u8]) -> bool {
    let hex = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let parts: Vec<&[u8]> = v.split(|b| *b == b'-').collect();
    matches!(parts[..], [version, trace, parent, flags]
        if version == b"00"
            && trace.len() == 32 && hex(trace) && trace.iter().any(|b| *b != b'0')
            && parent.len() == 16 && hex(parent) && parent.iter().any(|b| *b != b'0')
            && flags.len() == 2 && hex(flags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(seed: u8, mode: u8, client: &[u8], answer: &[u8]) -> Vec<u8> {
        let mut data = vec![seed, mode];
        data.extend_from_slice(&(client.len() as u16).to_le_bytes());
        data.extend_from_slice(client);
        data.extend_from_slice(answer);
        data
    }

    /// A per-try timeout no stall of a loaded machine reaches.
    const LONG: Duration = Duration::from_secs(5);

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// A plain request reaches the upstream rewritten as it must be, and its answer
    /// reaches the client; the rewritten prefix and a POST body too.
    #[test]
    fn requests_reach_the_upstream_and_the_answers_come_back() {
        for mode in [0, 1] {
            let client = b"GET /a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 10.0.0.9\r\n\r\n\
                           POST /api/b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
            let ex = run(&input(7, mode, client, OK), LONG);
            assert_eq!(
                ex.forwarded,
                2,
                "{:?}",
                String::from_utf8_lossy(&ex.response)
            );
            let text = String::from_utf8_lossy(&ex.response);
            assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        }
    }

    /// The HTTP/2 client's requests reach the upstream as HTTP/1.1 and their answers come
    /// back on their streams; an HTTP/2 client's cookie crumbs reach the upstream as one
    /// Cookie (the harness's third find: two were sent).
    #[test]
    fn an_http2_clients_requests_and_cookie_crumbs() {
        let client = b"GET /a HTTP/1.1\r\nhost: x\r\ncookie: a=1\r\ncookie: b=2\r\n\r\n\
                       POST /api/b HTTP/1.1\r\nhost: y\r\ncontent-length: 3\r\n\r\nabc\
                       HEAD /c HTTP/1.1\r\nhost: z\r\nconnection: close\r\n\r\n";
        for mode in [0, 1] {
            let ex = run(&input(7, H2_CLIENT | mode, client, OK), LONG);
            assert_eq!(ex.forwarded, 3, "{:?}", ex.h2_answers);
            let mut hosts = ex.hosts.clone();
            hosts.sort();
            assert_eq!(hosts, ["x", "y", "z"]);
            let crumbs = ex.hosts.iter().position(|h| h == "x").unwrap();
            assert_eq!(ex.cookies[crumbs].as_deref(), Some("a=1; b=2"));
            let answers: Vec<_> = ex.h2_answers.iter().map(|a| a.response.clone()).collect();
            assert_eq!(
                answers,
                [
                    Some((200, true, Some(b"ok".to_vec()))),
                    Some((200, true, Some(b"ok".to_vec()))),
                    Some((200, true, Some(Vec::new()))),
                ]
            );
        }
        // the pool's own answer, not relayed: 502 for an upstream that closes
        let ex = run(
            &input(7, H2_CLIENT | 2, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", OK),
            LONG,
        );
        assert!(
            matches!(
                ex.h2_answers[..],
                [H2Answer {
                    response: Some((502, false, Some(_))),
                    ..
                }]
            ),
            "{:?}",
            ex.h2_answers
        );
    }

    /// An HTTP/2 upstream gets the requests of both clients, with the host as its
    /// `:authority`, and its answers come back; failing, it makes the same gateway errors.
    #[test]
    fn an_http2_upstream_serves_both_clients() {
        let client = b"GET /a HTTP/1.1\r\nhost: x\r\ncookie: a=1\r\n\r\n\
                       POST /api/b HTTP/1.1\r\nhost: y\r\ncontent-length: 3\r\n\r\nabc";
        for mode in [0, 1] {
            let ex = run(&input(7, H2_UPSTREAM | mode, client, OK), LONG);
            assert_eq!(ex.hosts, ["x", "y"]);
            let text = String::from_utf8_lossy(&ex.response);
            assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
            let ex = run(&input(7, H2_UPSTREAM | H2_CLIENT | mode, client, OK), LONG);
            let mut hosts = ex.hosts.clone();
            hosts.sort();
            assert_eq!(hosts, ["x", "y"]);
            let ok = Some((200, true, Some(b"ok".to_vec())));
            let answers: Vec<_> = ex.h2_answers.iter().map(|a| a.response.clone()).collect();
            assert_eq!(answers, [ok.clone(), ok]);
        }
        // an HTTP/2 upstream gets one Content-Length, the body's: the harness's fourth find
        // (an HTTP/2 client's repeated one went on twice) and seventh (an HTTP/2 client's
        // empty one, which the h2 crate takes for 0, went on empty)
        let twice =
            b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc";
        let empty = b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: \r\n\r\n";
        for (client, stream) in [(0, &twice[..]), (H2_CLIENT, twice), (H2_CLIENT, empty)] {
            let ex = run(&input(7, H2_UPSTREAM | client, stream, OK), LONG);
            assert_eq!(ex.forwarded, 1);
        }
        // a request asking for trailers (as gRPC does) gets the upstream's over HTTP/2
        // both ways, and its answer as ever over HTTP/1.1
        let grpc = b"POST /api/g HTTP/1.1\r\nhost: g\r\nte: trailers\r\n\
                     content-type: application/grpc\r\ncontent-length: 3\r\n\r\nabc";
        for mode in [0, 1] {
            let ex = run(&input(7, H2_UPSTREAM | H2_CLIENT | mode, grpc, OK), LONG);
            assert!(
                matches!(&ex.h2_answers[..], [H2Answer { asked_trailers: true, trailer: Some(t), .. }] if t == b"end"),
                "{:?}",
                ex.h2_answers
            );
            let ex = run(&input(7, H2_UPSTREAM | mode, grpc, OK), LONG);
            let text = String::from_utf8_lossy(&ex.response);
            assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
            assert!(text.contains("ok"), "{text}");
        }
        // the asterisk form keeps its host too
        let options = b"OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n";
        let ex = run(&input(7, H2_UPSTREAM, options, OK), LONG);
        assert_eq!(ex.hosts, ["a"]);
        // an HTTP/2 request naming no host, in :authority or Host, is refused (the
        // harness's fifth find: the endpoint's address was sent as its host)
        let ex = run(&input(7, H2_UPSTREAM | H2_CLIENT, options, OK), LONG);
        assert_eq!(ex.forwarded, 0);
        assert!(
            matches!(
                ex.h2_answers[..],
                [H2Answer {
                    response: Some((400, false, _)),
                    ..
                }]
            ),
            "{:?}",
            ex.h2_answers
        );
        let get = b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n";
        for (mode, answer, status) in [
            (2, OK, "HTTP/1.1 502"),
            (0, &b"garbage\r\n\r\n"[..], "HTTP/1.1 502"),
            (3, OK, "HTTP/1.1 504"),
        ] {
            let timeout = if mode == 3 {
                Duration::from_millis(250)
            } else {
                LONG
            };
            let ex = run(&input(1, H2_UPSTREAM | mode, get, answer), timeout);
            let text = String::from_utf8_lossy(&ex.response);
            assert!(text.starts_with(status), "mode {mode}: {text:?}");
        }
    }

    /// The HTTP/2 upstream's check tells apart what a proxy must not send.
    #[test]
    fn the_http2_check_refuses_what_a_proxy_must_not_send() {
        let request = |uri: &str, extra: &[(&str, &str)]| {
            let mut r = http::Request::builder()
                .uri(uri)
                .header("x-forwarded-for", "192.0.2.1")
                .header("x-forwarded-proto", "http")
                .header("x-request-id", "1")
                .header(
                    "traceparent",
                    "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
                );
            for (n, v) in extra {
                r = r.header(*n, *v);
            }
            r.body(()).unwrap().into_parts().0
        };
        assert_eq!(
            check_forwarded_h2(
                &request("http://a/x", &[("cookie", "a=1"), ("cookie", "b=2")]),
                0
            ),
            Ok(("a".into(), Some("a=1; b=2".into())))
        );
        assert_eq!(
            check_forwarded_h2(&request("/x", &[("host", "b")]), 0).map(|r| r.0),
            Ok("b".into())
        );
        for (uri, extra, len, why) in [
            ("http://a/x", &[("host", "a")][..], 0, "both"),
            ("/x", &[][..], 0, "host"),
            (
                "http://a/x",
                &[("content-length", "3")][..],
                2,
                "content-length",
            ),
            (
                "http://a/x",
                &[("connection", "close")][..],
                0,
                "hop-by-hop",
            ),
            (
                "http://a/x",
                &[("x-forwarded-for", "1.2.3.4")][..],
                0,
                "x-forwarded-for",
            ),
        ] {
            let e = check_forwarded_h2(&request(uri, extra), len).unwrap_err();
            assert!(e.contains(why), "{uri} {extra:?}: {e}");
        }
    }

    /// The trailer check can fail: a response that may carry content, relayed without the
    /// upstream's trailer; not so for HEAD, 204, or an answer that does not read whole.
    #[test]
    fn the_trailer_check_sees_them_dropped() {
        assert_eq!(check_trailer(0, &Method::POST, Some(b"end"), OK), Ok(()));
        assert!(check_trailer(0, &Method::POST, None, OK).is_err());
        assert!(check_trailer(0, &Method::GET, Some(b"x"), OK).is_err());
        assert_eq!(check_trailer(0, &Method::HEAD, None, OK), Ok(()));
        let none = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(check_trailer(0, &Method::GET, None, none), Ok(()));
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nok";
        assert_eq!(check_trailer(0, &Method::GET, None, cut), Ok(()));
    }

    /// The upstream failing in each way the harness can make it fail: 502 for a reset or
    /// garbage, 504 for a hang, and nothing forwarded twice for a POST without retries.
    #[test]
    fn upstream_failures_become_gateway_errors() {
        let get = b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n";
        let ex = run(&input(1, 2, get, b""), LONG);
        assert!(
            ex.response.starts_with(b"HTTP/1.1 502"),
            "{:?}",
            String::from_utf8_lossy(&ex.response)
        );
        let ex = run(&input(1, 0, get, b"garbage\r\n\r\n"), LONG);
        assert!(
            ex.response.starts_with(b"HTTP/1.1 502"),
            "{:?}",
            String::from_utf8_lossy(&ex.response)
        );
        // long enough for a try's connect and send on a loaded machine, short for a test
        let hang = Duration::from_millis(250);
        let ex = run(&input(1, 3, get, OK), hang);
        assert!(
            ex.response.starts_with(b"HTTP/1.1 504"),
            "{:?}",
            String::from_utf8_lossy(&ex.response)
        );
        // the /api/ route retries any method twice on a timeout: three tries
        let post = b"POST /api/x HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
        let ex = run(&input(1, 3, post, OK), hang);
        assert_eq!(ex.forwarded, 3);
    }

    /// A method other than OPTIONS with the asterisk form, and CONNECT (the pool makes
    /// no tunnels), are refused, not forwarded (the first was this harness's find).
    #[test]
    fn asterisk_form_beyond_options_and_connect_are_refused() {
        refused(b"PTIONS * HTTP/1.1\r\nhost: a\r\n\r\n", b"HTTP/1.1 400");
        refused(
            b"CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n",
            b"HTTP/1.1 405",
        );
        let options = b"OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n";
        assert_eq!(run(&input(3, 0, options, OK), LONG).forwarded, 1);
    }

    /// Runs `client` and asserts that nothing reached the upstream and the answer starts
    /// with `status`.
    fn refused(client: &[u8], status: &[u8]) {
        let ex = run(&input(3, 0, client, OK), LONG);
        assert_eq!(ex.forwarded, 0);
        let text = String::from_utf8_lossy(&ex.response);
        assert!(ex.response.starts_with(status), "{text:?}");
    }

    /// Two Host headers are refused (the harness's second find), none in HTTP/1.1, and one
    /// that is no `host[:port]`; an absolute-form target's authority replaces the Host the
    /// client sent, as it named the route.
    #[test]
    fn host_is_one_and_the_one_routed_by() {
        refused(
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            b"HTTP/1.1 400",
        );
        refused(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 400");
        // a Host that is not host[:port] (the harness's sixth find: over HTTP/2 it went
        // beside the endpoint's :authority, as it was no authority to replace it with),
        // and one with a percent sign (the same fault, found by CI's 30 s smoke run: RFC
        // 3986 allows percent-encoding in a name, `http`'s Authority does not)
        for bad in [&b"x y"[..], b"u@h", b"", b"h:8o", b"%x", b"a%41"] {
            let client = [&b"GET / HTTP/1.1\r\nhost: "[..], bad, b"\r\n\r\n"].concat();
            refused(&client, b"HTTP/1.1 400");
            let ex = run(&input(3, H2_UPSTREAM, &client, OK), LONG);
            assert_eq!(ex.forwarded, 0, "{:?}", String::from_utf8_lossy(bad));
        }
        // HTTP/1.0 may name no host: the endpoint's address is sent
        let ex = run(&input(3, 0, b"GET / HTTP/1.0\r\n\r\n", OK), LONG);
        assert_eq!(ex.hosts.len(), 1);
        assert!(ex.hosts[0].starts_with("127.0.0.1:"), "{:?}", ex.hosts);
        let absolute = b"GET http://user@h:81/x HTTP/1.1\r\nhost: a\r\n\r\n";
        let ex = run(&input(3, 0, absolute, OK), LONG);
        assert_eq!(ex.forwarded, 1);
        assert_eq!(ex.hosts, ["h:81"]);
        // an absolute-form target with an empty path goes on with "/" before its query
        // (found by the fuzz target: "GET ?q" was sent), to either upstream protocol
        for mode in [0, H2_UPSTREAM] {
            let absolute = b"GET http://h?q HTTP/1.1\r\nhost: h\r\n\r\n";
            let ex = run(&input(3, mode, absolute, OK), LONG);
            assert_eq!(ex.forwarded, 1, "{mode}");
        }
    }

    /// The checks can fail: heads a proxy must not send are told apart.
    #[test]
    fn the_checks_refuse_what_a_proxy_must_not_send() {
        let good = "GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: http\r\n\
                    x-request-id: 1\r\ntraceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n";
        let read = Forwarded {
            head_len: good.len() + 2,
            body_len: 0,
            host: "a".into(),
            cookie: None,
        };
        assert_eq!(
            check_forwarded(format!("{good}\r\n").as_bytes()),
            Ok(Some(read))
        );
        assert_eq!(check_forwarded(good.as_bytes()), Ok(None));
        for (bad, why) in [
            ("connection: close\r\n", "hop-by-hop"),
            ("transfer-encoding: chunked\r\n", "hop-by-hop"),
            (
                "content-length: 1\r\ncontent-length: 1\r\n",
                "more than one content-length",
            ),
            ("host: b\r\n", "host"),
            ("cookie: a=1\r\ncookie: b=2\r\n", "more than one cookie"),
            ("x-forwarded-for: 192.0.2.1\r\n", "x-forwarded-for"),
            ("x-forwarded-proto: http\r\n", "x-forwarded-proto"),
            (
                "traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n",
                "traceparent",
            ),
        ] {
            let e = check_forwarded(format!("{good}{bad}\r\n").as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let spoofed = good.replace(
            "x-forwarded-for: 192.0.2.1",
            "x-forwarded-for: 192.0.2.1, 10.0.0.1",
        );
        assert!(check_forwarded(format!("{spoofed}\r\n").as_bytes()).is_err());
        let absolute = good.replace("GET / ", "GET http://a/ ");
        assert!(check_forwarded(format!("{absolute}\r\n").as_bytes()).is_err());
        assert!(!valid_traceparent(
            b"00-00000000000000000000000000000000-0123456789abcdef-01"
        ));
    }

    /// The relay check reads HEAD, chunked and interim responses, and sees a relayed
    /// response that is not the upstream's first one.
    #[test]
    fn the_relay_check_sees_a_response_out_of_step() {
        let answered = [
            (Method::GET, true),
            (Method::HEAD, true),
            (Method::GET, true),
            (Method::GET, false),
        ];
        let good: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
            HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\
            HTTP/1.1 502 Bad Gateway\r\ncontent-length: 4\r\n\r\n502\n";
        assert_eq!(check_relayed(good, &answered, OK), Ok(()));
        let bad = String::from_utf8_lossy(good).replace("2\r\nok\r\n0", "2\r\nno\r\n0");
        let e = check_relayed(bad.as_bytes(), &answered, OK).unwrap_err();
        assert!(e.contains("response 2"), "{e}");
        // the bytes past the upstream's first response are not a response of their own
        let e = check_relayed(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra",
            &answered[..1],
            OK,
        );
        assert!(e.is_err());
    }

    /// Streams of requests that reach the pool's interesting states more often than
    /// random bytes: request lines, framing and hop-by-hop headers, and bodies, mostly in
    /// their places, sometimes not.
    fn requests() -> impl Strategy<Value = Vec<u8>> {
        let line = prop::sample::select(vec![
            &b"GET / HTTP/1.1\r\n"[..],
            b"GET /api/x?q=1 HTTP/1.1\r\n",
            b"POST /api/ HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"GET http://h/abs HTTP/1.1\r\n",
            b"HEAD / HTTP/1.0\r\n",
            b"DELETE /api/../x HTTP/1.1\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n",
            b"PTIONS * HTTP/1.1\r\n",
        ]);
        let header = prop::sample::select(vec![
            &b"Host: a\r\n"[..],
            b"Content-Length: 3\r\n",
            b"Content-Length: 3, 4\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Connection: close, host, x-forwarded-for, traceparent, x-request-id\r\n",
            b"Connection: keep-alive, content-length, x-forwarded-proto\r\n",
            b"X-Forwarded-For: 1.2.3.4\r\n",
            b"X-Forwarded-Proto: https\r\n",
            b"traceparent: 00-0123456789abcdef0123456789abcdef-0123456789abcdef-01\r\n",
            b"traceparent: ff-x\r\n",
            b"TE: trailers\r\n",
            b"Upgrade: h2c\r\n",
            b"Expect: 100-continue\r\n",
            b"x-canary: 1\r\n",
            b"Cookie: session=abc; S=0\r\n",
            b"Cookie: a=1\r\n",
            b"Content-Type: application/grpc\r\n",
        ]);
        let body = prop::sample::select(vec![&b""[..], b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"\r\n"]);
        // most with a Host, since HTTP/1.1 without one is refused at once
        let host = prop::sample::select(vec![
            &b"Host: a\r\n"[..],
            b"Host: a\r\n",
            b"Host: a\r\n",
            b"",
        ]);
        let request = (line, host, proptest::collection::vec(header, 0..5), body).prop_map(
            |(line, host, headers, body)| {
                [&[line, host][..], &headers, &[&b"\r\n"[..], body]]
                    .concat()
                    .concat()
            },
        );
        proptest::collection::vec(request, 0..4).prop_map(|rs| rs.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever a client sends, what reaches the upstream is a well-formed request
        /// with the pool's headers, and the client hears HTTP/1.1 back.
        #[test]
        fn whatever_the_client_sends_the_upstream_gets_clean_requests(
            client in requests(),
            seed in any::<u8>(),
            mode in 0u8..4,
            garbage in any::<bool>(),
            h2 in any::<bool>(),
            h2_upstream in any::<bool>(),
        ) {
            let answer: &[u8] = if garbage { b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxHTTP/1.1 200" } else { OK };
            let mode = if h2 { mode | H2_CLIENT } else { mode };
            let mode = if h2_upstream { mode | H2_UPSTREAM } else { mode };
            request_path(&input(seed, mode, &client, answer));
        }
    }
}
