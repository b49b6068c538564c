//! Test backends and clients for the L7 pool tests: all on 127.0.0.1, all bounded in time.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Everything a test needs bounded: a request never waits longer than this.
pub const STEP: Duration = Duration::from_secs(10);

/// Starts an echo backend named `name` on 127.0.0.1 (HTTP/1.1 and h2c). It answers 200
/// with `x-backend: name` and copies what it saw into `x-seen-*` headers; waits `delay`
/// before answering.
pub async fn echo(name: &'static str, delay: Duration) -> SocketAddr {
    echo_counted(name, delay, Arc::new(AtomicUsize::new(0))).await
}

/// Like [`echo`], counting requests in `hits`.
pub async fn echo_counted(
    name: &'static str,
    delay: Duration,
    hits: Arc<AtomicUsize>,
) -> SocketAddr {
    echo_backend(name, delay, hits, None).await
}

/// An echo backend (as [`echo`]) whose `GET /healthz` answers 200 while `healthy` is
/// set and 503 otherwise; it serves every other request normally, so only active health
/// checks can tell. `hits` counts the other requests, `probes` the health checks.
pub async fn echo_with_health(
    name: &'static str,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
) -> SocketAddr {
    echo_backend(name, Duration::ZERO, hits, Some((healthy, probes))).await
}

/// The echo backends: `health`, when given, is the `/healthz` flag and probe count.
async fn echo_backend(
    name: &'static str,
    delay: Duration,
    hits: Arc<AtomicUsize>,
    health: Option<(Arc<AtomicBool>, Arc<AtomicUsize>)>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (hits, health) = (hits.clone(), health.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (hits, health) = (hits.clone(), health.clone());
                    async move {
                        if let Some((healthy, probes)) =
                            health.filter(|_| req.uri().path() == "/healthz")
                        {
                            probes.fetch_add(1, Ordering::Relaxed);
                            let status = if healthy.load(Ordering::Relaxed) {
                                200
                            } else {
                                503
                            };
                            let r = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok::<_, Infallible>(r);
                        }
                        hits.fetch_add(1, Ordering::Relaxed);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok(echo_response(name, req).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn echo_response(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut r = Response::builder()
        .header("x-backend", name)
        .header(
            "x-seen-path",
            parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        )
        .header("x-seen-body-len", body.len().to_string());
    if let Some(a) = parts.uri.authority() {
        // an HTTP/2 request's :authority
        r = r.header("x-seen-authority", a.as_str());
    }
    for h in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "traceparent",
        "host",
        "connection",
        "x-hop",
        "te",
    ] {
        if let Some(v) = parts.headers.get(h) {
            r = r.header(format!("x-seen-{h}"), v.clone());
        }
    }
    r = r.header("keep-alive", "timeout=5");
    r.body(Full::new(Bytes::from(name.to_string()))).unwrap()
}

/// A backend that answers every request with bytes that are not HTTP.
pub async fn garbage() -> SocketAddr {
    raw_backend(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"SSH-2.0-OpenSSH_9.2 this is not http\r\n\r\n")
            .await;
        let _ = s.shutdown().await;
    })
    .await
}

/// A backend that reads the request and never answers (holds the socket 30 s).
pub async fn hanging() -> SocketAddr {
    raw_backend(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await
}

/// A backend whose first connection reads the request then resets (RST); later
/// connections are served by an echo handler named `name`.
pub async fn reset_once(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            if first {
                first = false;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                #[allow(deprecated)] // zero linger is the point: drop sends RST
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
                continue;
            }
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(echo_response(name, req).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn raw_backend<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(f(stream));
        }
    });
    addr
}

/// An address nothing listens on, reserved while the value lives (see [`ClosedPort`]).
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    ClosedPort {
        _socket: socket,
        addr,
    }
}

/// A loopback port where nothing listens, held for as long as the value lives: a TCP
/// socket bound to it (without `SO_REUSEADDR`) that never listens. A connect there is
/// refused, and no other socket can bind the port meanwhile; a port read off a listener
/// and dropped could be taken by another socket before the test used it, and two such
/// reads could even give the same port twice.
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// The port's address.
    pub addr: SocketAddr,
}

impl std::fmt::Display for ClosedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// A plain-HTTP client (HTTP/1.1 keep-alive, or h2c prior knowledge when `h2`).
pub fn client(
    h2: bool,
) -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    let mut b = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    if h2 {
        b.http2_only(true);
    }
    b.build_http()
}

/// `req` through `client`, each step bounded by [`STEP`]; returns (status, x-backend,
/// headers, body).
pub async fn exchange(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    req: Request<Full<Bytes>>,
) -> (u16, String, http::HeaderMap, Bytes) {
    let resp = tokio::time::timeout(STEP, client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let backend = headers
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, backend, headers, body)
}

/// A GET through `client`; returns (status, x-backend, headers).
pub async fn get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
    host: &str,
) -> (u16, String, http::HeaderMap) {
    let req = Request::get(url)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, backend, headers, body) = exchange(client, req).await;
    assert!(
        status != 200 || backend == String::from_utf8_lossy(&body),
        "body and x-backend agree"
    );
    (status, backend, headers)
}

/// Sends raw bytes on a new connection and reads until the peer closes or `wait` passes.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
