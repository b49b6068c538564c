//! The upstream connection pool of a cluster, per pool thread.
//!
//! Each pool thread runs a current-thread runtime, so its idle connections live in a
//! thread-local map: taking or returning one is a `RefCell` borrow and a `Vec` push/pop,
//! no lock and no shared cache line. HTTP/1.1 endpoints keep a stack of idle senders
//! (newest first, so the pool shrinks back to what the load needs); an HTTP/2 endpoint
//! keeps one multiplexed sender that every request of the thread clones. A connection's
//! task is spawned once, when it is made; it ends when its last sender is dropped (idle
//! timeout, pool gone) or the upstream closes it.
//!
//! The breakers are cluster-wide: `max_connections` counts every thread's open upstream
//! connections and `max_pending` the connects in progress (requests waiting for a new
//! connection), both in atomics touched only when a connection is made or closed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::config::UpstreamProtocol;

/// The request body sent upstream (buffered by the proxy).
pub type UpstreamRequest = Request<Full<Bytes>>;

/// Why an upstream request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The `max_connections` breaker refused a new upstream connection.
    #[error("cluster max_connections reached")]
    ConnectionLimit,
    /// The `max_pending` breaker refused to make another request wait for a connect.
    #[error("cluster max_pending reached")]
    PendingLimit,
    /// The TCP connect failed or timed out.
    #[error("upstream connect: {0}")]
    Connect(std::io::Error),
    /// The HTTP/2 preface exchange (or HTTP/1 setup) failed.
    #[error("upstream handshake: {0}")]
    Handshake(hyper::Error),
    /// The request failed on an established connection (reset, garbage, closed).
    #[error("upstream request: {0}")]
    Request(hyper::Error),
}

/// What every thread's share of a cluster's pool has in common.
#[derive(Debug)]
struct PoolShared {
    /// Open upstream connections, all threads (also the exported gauge).
    open: Arc<AtomicUsize>,
    /// Connects in progress, all threads.
    connecting: AtomicUsize,
    max_connections: usize,
    max_pending: usize,
}

/// A cluster's upstream pool: the settings and breakers; the idle connections themselves
/// are in each pool thread's [`IDLE`] map under `id`.
#[derive(Debug)]
pub struct UpstreamPool {
    id: u64,
    shared: Arc<PoolShared>,
    protocol: UpstreamProtocol,
    addrs: Vec<SocketAddr>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Held by the pool only (connection tasks hold `shared`): the threads' sweepers see
    /// the pool dropped by a reload and close its idle connections at once.
    alive: Arc<()>,
}

/// An idle HTTP/1.1 connection.
struct Idle {
    sender: http1::SendRequest<Full<Bytes>>,
    since: Instant,
}

/// One thread's idle connections of one pool, by endpoint index.
struct ThreadIdle {
    h1: Vec<Vec<Idle>>,
    h2: Vec<Option<http2::SendRequest<Full<Bytes>>>>,
    idle_timeout: Duration,
    /// Most idle connections kept per endpoint (the `max_connections` breaker).
    keep: usize,
}

impl ThreadIdle {
    /// Drops what has been idle too long (its connection task then ends).
    fn sweep(&mut self, now: Instant) {
        for stack in &mut self.h1 {
            stack.retain(|i| {
                now.duration_since(i.since) < self.idle_timeout && !i.sender.is_closed()
            });
        }
        for slot in &mut self.h2 {
            if slot.as_ref().is_some_and(|s| s.is_closed()) {
                *slot = None;
            }
        }
    }
}

/// Pool ids are small sequential integers: used as their own hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

thread_local! {
    /// This thread's idle upstream connections, by pool id.
    static IDLE: RefCell<HashMap<u64, ThreadIdle, BuildHasherDefault<IdHasher>>> =
        RefCell::new(HashMap::default());
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// A breaker slot (an open connection, or a connect in progress) held until dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open-connection slot owned by a connection task.
struct OpenSlot(Arc<PoolShared>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamPool {
    /// A pool for these endpoints; `open` is the cluster's open-connections gauge.
    pub fn new(
        protocol: UpstreamProtocol,
        addrs: Vec<SocketAddr>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_connections: usize,
        max_pending: usize,
        open: Arc<AtomicUsize>,
    ) -> UpstreamPool {
        UpstreamPool {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(PoolShared {
                open,
                connecting: AtomicUsize::new(0),
                max_connections,
                max_pending,
            }),
            protocol,
            addrs,
            connect_timeout,
            idle_timeout,
            alive: Arc::new(()),
        }
    }

    /// Runs `f` on this thread's idle set of the pool, made on first use (with its sweeper).
    fn with_idle<R>(&self, f: impl FnOnce(&mut ThreadIdle) -> R) -> R {
        IDLE.with(|map| {
            let mut map = map.borrow_mut();
            let entry = map.entry(self.id).or_insert_with(|| {
                self.spawn_sweeper();
                ThreadIdle {
                    h1: (0..self.addrs.len()).map(|_| Vec::new()).collect(),
                    h2: (0..self.addrs.len()).map(|_| None).collect(),
                    idle_timeout: self.idle_timeout,
                    keep: self.shared.max_connections,
                }
            });
            f(entry)
        })
    }

    /// A task on this thread's runtime that drops expired idle connections, and all of
    /// them once the pool is gone (a reload replaced the cluster).
    fn spawn_sweeper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = self.id;
        let alive: Weak<()> = Arc::downgrade(&self.alive);
        let every =
            (self.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let gone = alive.strong_count() == 0;
                let _ = IDLE.try_with(|map| {
                    let mut map = map.borrow_mut();
                    if gone {
                        map.remove(&id);
                    } else if let Some(t) = map.get_mut(&id) {
                        t.sweep(Instant::now());
                    }
                });
                if gone {
                    return;
                }
            }
        });
    }

    /// Sends `req` to endpoint `index` on an idle connection of this thread, or a new one.
    /// HTTP/2 needs an absolute URI; HTTP/1.1 sends origin-form (an absolute URI is cut
    /// down to it).
    pub async fn send(
        &self,
        index: usize,
        mut req: UpstreamRequest,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self.protocol {
            UpstreamProtocol::Http1 => {
                if req.uri().scheme().is_some() {
                    origin_form(&mut req);
                }
                // Idle connections the upstream may have closed since: a request they
                // could not take comes back and goes to the next one.
                while let Some(mut sender) = self.take_h1(index) {
                    if sender.ready().await.is_err() {
                        continue;
                    }
                    match sender.try_send_request(req).await {
                        Ok(resp) => return Ok(self.wrap_h1(resp, index, sender)),
                        Err(mut e) => match e.take_message() {
                            Some(back) => req = back,
                            None => return Err(SendError::Request(e.into_error())),
                        },
                    }
                }
                let mut sender = self.connect_h1(index).await?;
                sender.ready().await.map_err(SendError::Request)?;
                let resp = sender.send_request(req).await.map_err(SendError::Request)?;
                Ok(self.wrap_h1(resp, index, sender))
            }
            UpstreamProtocol::Http2 => {
                let cached = self.with_idle(|t| {
                    let slot = &mut t.h2[index];
                    if slot.as_ref().is_some_and(|s| s.is_closed()) {
                        *slot = None;
                    }
                    slot.clone()
                });
                let mut sender = match cached {
                    Some(s) => s,
                    None => {
                        let s = self.connect_h2(index).await?;
                        self.with_idle(|t| t.h2[index] = Some(s.clone()));
                        s
                    }
                };
                sender.ready().await.map_err(SendError::Request)?;
                let resp = sender.send_request(req).await.map_err(SendError::Request)?;
                Ok(resp.map(|inner| UpstreamBody {
                    inner,
                    done: false,
                    back: None,
                }))
            }
        }
    }

    /// The newest idle HTTP/1.1 connection to `index` that has not expired.
    fn take_h1(&self, index: usize) -> Option<http1::SendRequest<Full<Bytes>>> {
        self.with_idle(|t| {
            let stack = &mut t.h1[index];
            while let Some(idle) = stack.pop() {
                if idle.since.elapsed() < t.idle_timeout && !idle.sender.is_closed() {
                    return Some(idle.sender);
                }
            }
            None
        })
    }

    fn wrap_h1(
        &self,
        resp: Response<Incoming>,
        index: usize,
        sender: http1::SendRequest<Full<Bytes>>,
    ) -> Response<UpstreamBody> {
        resp.map(|inner| UpstreamBody {
            inner,
            done: false,
            back: Some(Recycle {
                pool: self.id,
                index,
                sender,
            }),
        })
    }

    /// A TCP connection to endpoint `index` under both breakers.
    async fn connect(&self, index: usize) -> Result<(TokioIo<TcpStream>, OpenSlot), SendError> {
        let shared = &self.shared;
        if shared.open.fetch_add(1, Ordering::Relaxed) >= shared.max_connections {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            return Err(SendError::ConnectionLimit);
        }
        let open = OpenSlot(shared.clone());
        if shared.connecting.fetch_add(1, Ordering::Relaxed) >= shared.max_pending {
            shared.connecting.fetch_sub(1, Ordering::Relaxed);
            return Err(SendError::PendingLimit);
        }
        // Pending until connected or failed (or the request gave up: dropped).
        let pending = Slot(&shared.connecting);
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addrs[index]))
                .await
            {
                Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                Ok(r) => r,
            }
            .map_err(SendError::Connect)?;
        drop(pending);
        // Requests are small writes answered at once: no Nagle delay.
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        Ok((TokioIo::new(stream), open))
    }

    async fn connect_h1(&self, index: usize) -> Result<http1::SendRequest<Full<Bytes>>, SendError> {
        let (io, slot) = self.connect(index).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Handshake)?;
        drive(conn, slot);
        Ok(sender)
    }

    async fn connect_h2(&self, index: usize) -> Result<http2::SendRequest<Full<Bytes>>, SendError> {
        let (io, slot) = self.connect(index).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(SendError::Handshake)?;
        drive(conn, slot);
        Ok(sender)
    }
}

/// Runs a connection's task until the upstream closes it or its last sender is dropped;
/// `slot` (its place in the cluster's open-connection count) is released with it.
fn drive<C>(conn: C, slot: OpenSlot)
where
    C: std::future::Future + Send + 'static,
{
    tokio::spawn(async move {
        let _slot = slot;
        let _ = conn.await;
    });
}

/// Rewrites an absolute URI to origin-form (`/path?query`) for an HTTP/1.1 request line,
/// setting `Host` from the authority when the client sent none.
fn origin_form(req: &mut UpstreamRequest) {
    let uri = std::mem::take(req.uri_mut());
    let mut parts = uri.into_parts();
    if let Some(authority) = parts.authority.take() {
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
    parts.scheme = None;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"));
}

/// An HTTP/1.1 connection to give back to its pool when its response is fully read.
struct Recycle {
    pool: u64,
    index: usize,
    sender: http1::SendRequest<Full<Bytes>>,
}

/// An upstream response body. An HTTP/1.1 one returns its connection to this thread's
/// idle stack when it is dropped after its end was read; dropped earlier (the client went
/// away mid-body), the connection is closed, since its remaining bytes were not read.
pub struct UpstreamBody {
    inner: Incoming,
    done: bool,
    back: Option<Recycle>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let Some(back) = self.back.take() else {
            return;
        };
        if !(self.done || self.inner.is_end_stream()) || back.sender.is_closed() {
            return;
        }
        let _ = IDLE.try_with(|map| {
            if let Ok(mut map) = map.try_borrow_mut() {
                if let Some(t) = map.get_mut(&back.pool) {
                    if let Some(stack) = t.h1.get_mut(back.index) {
                        if stack.len() < t.keep {
                            stack.push(Idle {
                                sender: back.sender,
                                since: Instant::now(),
                            });
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_keeps_path_and_sets_host() {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = "http://10.0.0.1:8080/a/b?c=d".parse().unwrap();
        origin_form(&mut req);
        assert_eq!(req.uri().to_string(), "/a/b?c=d");
        assert_eq!(req.headers()[http::header::HOST], "10.0.0.1:8080");

        let mut req = Request::new(Full::new(Bytes::new()));
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("example.com"),
        );
        *req.uri_mut() = "http://10.0.0.1:8080/".parse().unwrap();
        origin_form(&mut req);
        assert_eq!(req.uri().to_string(), "/");
        assert_eq!(req.headers()[http::header::HOST], "example.com");
    }

    #[tokio::test]
    async fn breakers_refuse_before_connecting() {
        let open = Arc::new(AtomicUsize::new(0));
        let pool = UpstreamPool::new(
            UpstreamProtocol::Http1,
            vec!["127.0.0.1:9".parse().unwrap()],
            Duration::from_millis(200),
            Duration::from_secs(1),
            1,
            1,
            open.clone(),
        );
        open.store(1, Ordering::Relaxed);
        assert!(matches!(
            pool.connect(0).await,
            Err(SendError::ConnectionLimit)
        ));
        assert_eq!(
            open.load(Ordering::Relaxed),
            1,
            "a refusal leaves the count as it was"
        );
        open.store(0, Ordering::Relaxed);
        pool.shared.connecting.store(1, Ordering::Relaxed);
        assert!(matches!(
            pool.connect(0).await,
            Err(SendError::PendingLimit)
        ));
        assert_eq!(open.load(Ordering::Relaxed), 0);
        assert_eq!(pool.shared.connecting.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection_and_closes_it_when_idle() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await;
                        }
                    }
                });
            }
        });
        let open = Arc::new(AtomicUsize::new(0));
        let pool = UpstreamPool::new(
            UpstreamProtocol::Http1,
            vec![addr],
            Duration::from_secs(1),
            Duration::from_millis(300),
            8,
            8,
            open.clone(),
        );
        for _ in 0..5 {
            let mut req = Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = format!("http://{addr}/x").parse().unwrap();
            let resp = pool.send(0, req).await.unwrap();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "keep-alive: one connection"
        );
        assert_eq!(open.load(Ordering::Relaxed), 1);
        // Past the idle timeout the sweeper drops it and the connection task ends.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(open.load(Ordering::Relaxed), 0, "idle connection closed");

        // A pool dropped (a reload replaced its cluster) closes its idle connections at
        // the next sweep, without waiting for a long idle timeout.
        let pool = UpstreamPool::new(
            UpstreamProtocol::Http1,
            vec![addr],
            Duration::from_secs(1),
            Duration::from_secs(60),
            8,
            8,
            open.clone(),
        );
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = format!("http://{addr}/x").parse().unwrap();
        let resp = pool.send(0, req).await.unwrap();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        assert_eq!(open.load(Ordering::Relaxed), 1);
        drop(pool);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            open.load(Ordering::Relaxed),
            0,
            "dropped pool's connection closed"
        );
    }
}
