//! The upstream connection pool of a cluster, per pool thread.
//!
//! Each pool thread runs a current-thread runtime, so its idle connections live in a
//! thread-local map: taking or returning one is a `RefCell` borrow and a `Vec` push/pop,
//! no lock and no shared cache line.
//!
//! HTTP/1.1 endpoints keep a stack of idle connections (newest first, so the pool shrinks
//! back to what the load needs). An HTTP/1.1 exchange runs on the request's own task
//! ([`super::h1`] is its wire format): the task writes the head and body itself, reads the
//! response head, and the response body reads the rest from the socket as the client
//! takes it, then puts the connection back on the stack. There is no connection task and
//! no channel between a request and its connection (hyper's client has both, and a
//! request paid two task switches and a channel round trip for them). A request that
//! finds its idle connection closed by the upstream before a byte of response goes out
//! again on the next one if it is idempotent; one that is not (POST) probes the
//! connection before it is written, and is never sent twice once written.
//!
//! An HTTP/2 endpoint keeps one multiplexed hyper sender that every request of the
//! thread clones; its connection task is spawned once, when it is made, and ends when its
//! last sender is dropped (pool gone) or the upstream closes it.
//!
//! The breakers are cluster-wide: `max_connections` counts every thread's open upstream
//! connections and `max_pending` the connects in progress (requests waiting for a new
//! connection), both in atomics touched only when a connection is made or closed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::config::UpstreamProtocol;
use super::h1::{self, Framing, H1Error, Step};

/// The body of a request on an HTTP/2 upstream connection: a buffered one, or the
/// client's own body streamed through ([`UpstreamPool::send_streamed`]).
pub type H2Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// An error inside an upstream exchange.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    /// The HTTP/2 preface exchange failed.
    #[error("upstream handshake: {0}")]
    Handshake(hyper::Error),
    /// The request failed on an established connection (reset, garbage, closed).
    #[error("upstream request: {0}")]
    Request(BoxError),
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
    /// How long a response body may wait for upstream data ([`StreamIdle`]).
    stream_idle: StreamIdle,
    /// Held by the pool only (connection tasks hold `shared`): the threads' sweepers see
    /// the pool dropped by a reload and close its idle connections at once.
    alive: Arc<()>,
}

/// An HTTP/1.1 connection to an upstream, owned by whoever is using it: the idle stack,
/// a request writing and reading its head, or a response body being read.
struct H1Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed (the response in progress).
    read: BytesMut,
    /// The request head being written (kept for its capacity).
    write: Vec<u8>,
    /// The response head's lines while they are parsed and the last head's header
    /// names (kept across responses: see [`h1::HeadScratch`]).
    head: h1::HeadScratch,
    /// This connection's place in the cluster's open-connection count.
    _slot: OpenSlot,
}

/// How much a read asks the socket for at least.
const READ_CHUNK: usize = 16 * 1024;
/// Bodies up to this size are written in the same system call as the head.
const INLINE_BODY: usize = 16 * 1024;
/// A response body of known length up to this many bytes is read whole before its
/// response is handed on (see [`H1Conn::read_short_body`]).
const WHOLE_BODY: usize = 16 * 1024;
/// How long an exchange waits for such a body's missing bytes before handing the
/// response on with its body streaming (an upstream that stalls mid-body is then cut off
/// by the stream idle timeout, as any body is).
const SHORT_BODY_WAIT: Duration = Duration::from_millis(10);

impl H1Conn {
    fn new(stream: TcpStream, slot: OpenSlot) -> H1Conn {
        H1Conn {
            stream,
            read: BytesMut::new(),
            write: Vec::with_capacity(1024),
            head: h1::HeadScratch::default(),
            _slot: slot,
        }
    }

    /// Whether the upstream closed (or wrote to) this idle connection. Readiness comes
    /// from what the runtime's poller has already recorded: an idle connection with no
    /// event costs no system call.
    fn is_stale(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.stream.try_read(&mut probe),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads what the socket has into `read`: `Ok(0)` at the connection's end. Through
    /// `AsyncRead` (not `try_read`): a read shorter than the buffer tells the runtime the
    /// socket is drained, so the next read after the request is written waits for the
    /// poller instead of first trying a `recv` that finds nothing.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    /// Writes the request (head in `write`, then `body`) and reads the response head.
    async fn exchange(
        &mut self,
        method: &Method,
        body: &Bytes,
    ) -> Result<h1::ResponseHead, ExchangeError> {
        let written = if body.len() <= INLINE_BODY {
            self.write.extend_from_slice(body);
            self.stream.write_all(&self.write).await
        } else {
            match self.stream.write_all(&self.write).await {
                Ok(()) => self.stream.write_all(body).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = written {
            return Err(ExchangeError::Unsent(e.into()));
        }
        let mut received = false;
        loop {
            if !self.read.is_empty() {
                received = true;
                if let Some(head) = h1::next_head_with(&mut self.read, method, &mut self.head)
                    .map_err(|e| ExchangeError::Failed(e.into()))?
                {
                    if let Some(len) = self.short_body_pending(&head.framing) {
                        // still coming after the wait: streamed as it comes, as before
                        if let Ok(r) =
                            tokio::time::timeout(SHORT_BODY_WAIT, self.read_short_body(len)).await
                        {
                            r?;
                        }
                    }
                    return Ok(head);
                }
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) if !received => {
                    return Err(ExchangeError::Unanswered(
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into(),
                    ))
                }
                Ok(0) => return Err(ExchangeError::Failed(H1Error::Truncated.into())),
                Ok(_) => {}
                Err(e) if !received => return Err(ExchangeError::Unanswered(e.into())),
                Err(e) => return Err(ExchangeError::Failed(e.into())),
            }
        }
    }

    /// Whether a response's body is short, of known length (at most [`WHOLE_BODY`]
    /// bytes), and not yet all in the read buffer. An upstream may send a response's head
    /// and body in two segments (nginx does: its head by `writev`, its file by
    /// `sendfile`); handed on with its body still on the way, the response's head would
    /// leave for the client at once and its body in a second write: two segments and two
    /// wake-ups of the client for one response, where HAProxy and nginx send one. The
    /// exchange waits for such a body (within [`SHORT_BODY_WAIT`]).
    fn short_body_pending(&self, framing: &h1::Framing) -> Option<u64> {
        match *framing {
            h1::Framing::Length(n) if n <= WHOLE_BODY as u64 && (self.read.len() as u64) < n => {
                Some(n)
            }
            _ => None,
        }
    }

    /// Reads until the read buffer holds `len` bytes (the short body
    /// [`short_body_pending`](Self::short_body_pending) found missing).
    async fn read_short_body(&mut self, len: u64) -> Result<(), ExchangeError> {
        while (self.read.len() as u64) < len {
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return Err(ExchangeError::Failed(H1Error::Truncated.into())),
                Ok(_) => {}
                Err(e) => return Err(ExchangeError::Failed(e.into())),
            }
        }
        Ok(())
    }
}

/// How an HTTP/1.1 exchange failed, as far as a retry on another connection is concerned.
#[derive(Debug)]
enum ExchangeError {
    /// The request could not be written.
    Unsent(BoxError),
    /// Written, then the connection ended (or failed) before a byte of response.
    Unanswered(BoxError),
    /// The response was garbage or broke off.
    Failed(BoxError),
}

impl ExchangeError {
    /// Whether the request may go out again on another connection: an idle connection
    /// the upstream closed as it was taken is the keep-alive race every client meets. A
    /// request that was written is only sent again when it is idempotent.
    fn may_resend(&self, idempotent: bool) -> bool {
        match self {
            ExchangeError::Unsent(_) => true,
            ExchangeError::Unanswered(_) => idempotent,
            ExchangeError::Failed(_) => false,
        }
    }

    fn into_inner(self) -> BoxError {
        match self {
            ExchangeError::Unsent(e) | ExchangeError::Unanswered(e) | ExchangeError::Failed(e) => e,
        }
    }
}

/// An idle HTTP/1.1 connection.
struct Idle {
    conn: Box<H1Conn>,
    since: Instant,
}

/// One thread's idle connections of one pool, by endpoint index.
struct ThreadIdle {
    h1: Vec<Vec<Idle>>,
    h2: Vec<Option<http2::SendRequest<H2Body>>>,
    idle_timeout: Duration,
    /// Most idle connections kept per endpoint (the `max_connections` breaker).
    keep: usize,
}

impl ThreadIdle {
    /// Drops what has been idle too long (its connection task then ends).
    fn sweep(&mut self, now: Instant) {
        for stack in &mut self.h1 {
            stack.retain(|i| now.duration_since(i.since) < self.idle_timeout && !i.conn.is_stale());
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

/// Drops this thread's idle upstream connections, of every pool: for the fuzz harness,
/// which runs each input on a runtime of its own (connections registered with one
/// runtime must not outlive it).
pub(super) fn forget_idle_connections() {
    let _ = IDLE.try_with(|map| map.borrow_mut().clear());
}

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
            stream_idle: StreamIdle {
                timeout: DEFAULT_STREAM_IDLE,
                fired: Arc::default(),
            },
            alive: Arc::new(()),
        }
    }

    /// Cuts off response bodies that wait more than `timeout` for upstream data
    /// (default [`DEFAULT_STREAM_IDLE`]), counting each in `fired`.
    pub fn with_stream_idle_timeout(mut self, timeout: Duration, fired: Arc<AtomicU64>) -> Self {
        self.stream_idle = StreamIdle { timeout, fired };
        self
    }

    /// An upstream response body with this pool's stream idle timeout.
    fn body(&self, kind: BodyKind) -> UpstreamBody {
        UpstreamBody {
            kind,
            idle: self.stream_idle.clone(),
            timer: None,
            armed: false,
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

    /// Sends a buffered request to HTTP/2 endpoint `index` from the caller's head (an
    /// absolute `uri`): the stream gets one copy of it, and a request the upstream refused
    /// unprocessed is built from it once more and sent on a new connection. A caller that
    /// may retry keeps its head without copying it for each try.
    pub async fn send_h2_buffered(
        &self,
        index: usize,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if self.protocol != UpstreamProtocol::Http2 {
            return Err(SendError::Request(
                "an HTTP/2 request for an HTTP/1.1 upstream".into(),
            ));
        }
        let build = || {
            let mut r = Request::new(h2_body(body.clone()));
            *r.method_mut() = method.clone();
            *r.uri_mut() = uri.clone();
            *r.headers_mut() = headers.clone();
            r
        };
        self.send_h2(index, build(), Some(build)).await
    }

    /// Sends `req` with its body streamed as it arrives (a gRPC call's), on an HTTP/2
    /// connection: nothing is buffered, so the call cannot be retried, and a client- or
    /// bidirectional-streaming call proceeds message by message. HTTP/1.1 pools refuse it.
    pub async fn send_streamed<B>(
        &self,
        index: usize,
        req: Request<B>,
    ) -> Result<Response<UpstreamBody>, SendError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if self.protocol != UpstreamProtocol::Http2 {
            return Err(SendError::Request(
                "a streamed request body needs an HTTP/2 upstream".into(),
            ));
        }
        let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
        self.send_h2(index, req, None::<fn() -> Request<H2Body>>)
            .await
    }

    /// An HTTP/2 exchange with endpoint `index`. A connection that closed before taking
    /// the request (a GOAWAY being processed, an idle close) gets it back, and it goes on a
    /// new connection; a stream the upstream refused unprocessed (past a GOAWAY's last
    /// stream, or REFUSED_STREAM: RFC 9113 8.7, safe to retry whatever the method) is
    /// rebuilt by `again`, when there is one, and sent once more on a new connection.
    async fn send_h2<F>(
        &self,
        index: usize,
        mut req: Request<H2Body>,
        again: Option<F>,
    ) -> Result<Response<UpstreamBody>, SendError>
    where
        F: FnOnce() -> Request<H2Body>,
    {
        h2_head(&mut req);
        let failure = match self.exchange_h2(index, req, false).await {
            Ok(resp) => return Ok(resp),
            Err(f) => f,
        };
        match (failure, again) {
            (H2Failure::Unsent(req), _) => self.exchange_h2(index, *req, true).await,
            (H2Failure::Refused(_), Some(again)) => {
                let mut req = again();
                h2_head(&mut req);
                self.exchange_h2(index, req, true).await
            }
            (H2Failure::Refused(e) | H2Failure::Failed(e), _) => return Err(e),
        }
        .map_err(H2Failure::into_send_error)
    }

    /// One try of [`send_h2`](Self::send_h2): on this thread's connection to endpoint
    /// `index` (`fresh`: on a new one, which replaces it).
    async fn exchange_h2(
        &self,
        index: usize,
        req: Request<H2Body>,
        fresh: bool,
    ) -> Result<Response<UpstreamBody>, H2Failure> {
        let cached = if fresh {
            None
        } else {
            self.with_idle(|t| {
                let slot = &mut t.h2[index];
                if slot.as_ref().is_some_and(|s| s.is_closed()) {
                    *slot = None;
                }
                slot.clone()
            })
        };
        let mut sender = match cached {
            Some(s) => s,
            None => {
                let s = self.connect_h2(index).await.map_err(H2Failure::Failed)?;
                self.with_idle(|t| t.h2[index] = Some(s.clone()));
                s
            }
        };
        if sender.ready().await.is_err() {
            return Err(H2Failure::Unsent(Box::new(req)));
        }
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp.map(|inner| self.body(BodyKind::H2(inner)))),
            Err(mut e) => match e.take_message() {
                Some(req) => Err(H2Failure::Unsent(Box::new(req))),
                None => {
                    let e = e.into_error();
                    if refused_unprocessed(&e) {
                        Err(H2Failure::Refused(SendError::Request(e.into())))
                    } else {
                        Err(H2Failure::Failed(SendError::Request(e.into())))
                    }
                }
            },
        }
    }

    /// An HTTP/1.1 exchange of `head` and `body` with endpoint `index`, on the newest
    /// idle connection that takes it, or on a new one. The request is borrowed: a caller
    /// that may try again keeps it.
    pub async fn send_h1(
        &self,
        index: usize,
        head: &h1::RequestHead<'_>,
        body: &Bytes,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if self.protocol != UpstreamProtocol::Http1 {
            return Err(SendError::Request(
                "an HTTP/1.1 request head for an HTTP/2 upstream".into(),
            ));
        }
        let method = head.method;
        let idempotent = matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        // Idle connections the upstream may have closed since: a request they could not
        // take goes to the next one. Only a request that cannot be sent twice pays a
        // probe of the connection first (a `recv` that finds nothing, when its last
        // response left the socket marked readable); an idempotent one is sent again if
        // the connection turns out to be closed.
        while let Some(mut conn) = self.take_h1(index, !idempotent) {
            h1::encode_request_head(head, body.len(), &mut conn.write);
            match conn.exchange(method, body).await {
                Ok(head) => return Ok(self.h1_response(head, conn, index)),
                Err(e) if e.may_resend(idempotent) => continue,
                Err(e) => return Err(SendError::Request(e.into_inner())),
            }
        }
        let (stream, slot) = self.connect(index).await?;
        let mut conn = Box::new(H1Conn::new(stream, slot));
        h1::encode_request_head(head, body.len(), &mut conn.write);
        match conn.exchange(method, body).await {
            Ok(head) => Ok(self.h1_response(head, conn, index)),
            Err(e) => Err(SendError::Request(e.into_inner())),
        }
    }

    /// The response of an exchange, its body reading from `conn`; a body already complete
    /// (none, or no bytes) gives the connection back at once.
    fn h1_response(
        &self,
        head: h1::ResponseHead,
        conn: Box<H1Conn>,
        index: usize,
    ) -> Response<UpstreamBody> {
        let mut body = H1Body {
            conn: Some(conn),
            framing: head.framing,
            keep_alive: head.keep_alive,
            pool: self.id,
            index,
        };
        if body.framing.is_done() {
            body.finish();
        }
        let mut resp = Response::new(self.body(BodyKind::H1(body)));
        // The version stays HTTP/1.1: it belongs to each hop (the client's connection
        // is ours), and an HTTP/1.0 upstream's answer must not close it.
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        resp
    }

    /// The newest idle HTTP/1.1 connection to `index` that has not expired (and, with
    /// `probe`, has not been closed by the upstream as far as the socket knows now).
    fn take_h1(&self, index: usize, probe: bool) -> Option<Box<H1Conn>> {
        self.with_idle(|t| {
            let stack = &mut t.h1[index];
            while let Some(idle) = stack.pop() {
                if idle.since.elapsed() < t.idle_timeout && !(probe && idle.conn.is_stale()) {
                    return Some(idle.conn);
                }
            }
            None
        })
    }

    /// A TCP connection to endpoint `index` under both breakers.
    async fn connect(&self, index: usize) -> Result<(TcpStream, OpenSlot), SendError> {
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
        Ok((stream, open))
    }

    async fn connect_h2(&self, index: usize) -> Result<http2::SendRequest<H2Body>, SendError> {
        let (stream, slot) = self.connect(index).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Handshake)?;
        drive(conn, slot);
        Ok(sender)
    }
}

/// A buffered body for an HTTP/2 connection.
fn h2_body(b: Bytes) -> H2Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// Why one HTTP/2 try failed.
enum H2Failure {
    /// The connection closed before it took the request: the request, back.
    Unsent(Box<Request<H2Body>>),
    /// The upstream refused the stream without processing it.
    Refused(SendError),
    /// Anything else (the request may have been processed).
    Failed(SendError),
}

impl H2Failure {
    fn into_send_error(self) -> SendError {
        match self {
            H2Failure::Unsent(_) => SendError::Request("the HTTP/2 connection closed".into()),
            H2Failure::Refused(e) | H2Failure::Failed(e) => e,
        }
    }
}

/// Whether `e` says the upstream did not process the stream: a GOAWAY from the upstream
/// whose last stream is below it (a graceful NO_ERROR close, as nginx sends after
/// `keepalive_requests`), or a RST_STREAM with REFUSED_STREAM.
fn refused_unprocessed(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2e) = s.downcast_ref::<h2::Error>() {
            return match h2e.reason() {
                Some(h2::Reason::REFUSED_STREAM) => true,
                Some(h2::Reason::NO_ERROR) => h2e.is_go_away() && h2e.is_remote(),
                _ => false,
            };
        }
        source = s.source();
    }
    false
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

/// What an HTTP/2 request to an upstream needs of its head: its Host as its
/// `:authority` ([`authority_form`]), and no Content-Length of the client's, in whatever
/// form hyper took it (repeated with one value, a list of one value, empty from an HTTP/2
/// client: the `h2` crate reads that as 0), since hyper writes one from the body (the
/// buffered body's length, a streamed body's exact size when it has one). The HTTP/1.1
/// twin is `h1::encode_request_head`, which writes its own.
fn h2_head<B>(req: &mut Request<B>) {
    authority_form(req);
    req.headers_mut().remove(http::header::CONTENT_LENGTH);
}

/// Moves an HTTP/2 request's `Host` header into its URI's authority (the `:authority`
/// pseudo-header), as RFC 9113 section 8.3.1 has an intermediary do: the upstream then
/// sees the client's host once, where a request carrying both a `host` header and an
/// `:authority` is refused by servers that check them (nginx 1.22 answers 400, "duplicate
/// host header"). A `Host` that is not a valid authority is left as it is, with the
/// request's own URI, for the upstream to judge.
fn authority_form<B>(req: &mut Request<B>) {
    let Some(authority) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
    else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    parts.authority = Some(authority);
    parts.scheme.get_or_insert(http::uri::Scheme::HTTP);
    parts
        .path_and_query
        .get_or_insert(http::uri::PathAndQuery::from_static("/"));
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        req.headers_mut().remove(http::header::HOST);
    }
}

/// An HTTP/1.1 response body, read from its connection as the client takes it. At its
/// end the connection goes back on this thread's idle stack (when the response allows
/// keep-alive and nothing follows it); dropped before its end (the client went away
/// mid-body), the connection is closed, since the rest of the body was not read.
struct H1Body {
    /// Boxed: a response is moved several times on its way out, a connection need not be.
    conn: Option<Box<H1Conn>>,
    framing: Framing,
    keep_alive: bool,
    pool: u64,
    index: usize,
}

impl H1Body {
    /// The body is complete: the connection goes back to the pool if it can be reused.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Bytes past the response: the upstream is not speaking HTTP/1.1 as it should.
        if !self.keep_alive || !conn.read.is_empty() {
            return;
        }
        let _ = IDLE.try_with(|map| {
            if let Ok(mut map) = map.try_borrow_mut() {
                if let Some(t) = map.get_mut(&self.pool) {
                    if let Some(stack) = t.h1.get_mut(self.index) {
                        if stack.len() < t.keep {
                            stack.push(Idle {
                                conn,
                                since: Instant::now(),
                            });
                        }
                    }
                }
            }
        });
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.framing.next(&mut conn.read) {
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Ok(Step::Data(bytes)) => {
                    if self.framing.is_done() {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Ok(Step::End) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => match std::task::ready!(conn.poll_fill(cx)) {
                    Ok(0) if self.framing == Framing::Close => {
                        // The body ran to the connection's end, as it said it would.
                        self.conn = None;
                        return Poll::Ready(None);
                    }
                    Ok(0) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(H1Error::Truncated.into())));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
            }
        }
    }
}

enum BodyKind {
    H1(H1Body),
    H2(Incoming),
    /// Cut off by the stream idle timeout: its connection or stream is dropped.
    Cut,
}

/// Envoy's default `stream_idle_timeout`.
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(300);

/// A pool's stream idle timeout and the counter of bodies it cut off.
#[derive(Debug, Clone)]
struct StreamIdle {
    timeout: Duration,
    fired: Arc<AtomicU64>,
}

/// A response body cut off after waiting [`StreamIdle::timeout`] for upstream data.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent no body data for {0:?} (stream idle timeout)")]
pub struct StreamIdleTimeout(pub Duration);

/// An upstream response body: HTTP/1.1 read by the pool itself, HTTP/2 from hyper.
///
/// While the client waits for more and the upstream sends nothing, a timer runs; past
/// the pool's stream idle timeout the body ends with [`StreamIdleTimeout`] and its
/// connection is dropped. The timer is made the first time a read has to wait (a body
/// that arrives with its head never makes one) and re-armed after each piece of data;
/// while the client does not ask for more, nothing is timed.
pub struct UpstreamBody {
    kind: BodyKind,
    idle: StreamIdle,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `timer` runs from the current wait (not a finished one).
    armed: bool,
}

impl UpstreamBody {
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            BodyKind::H1(b) => b.poll_data(cx).map(|o| o.map(|r| r.map(Frame::data))),
            BodyKind::H2(inner) => Pin::new(inner)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(Into::into))),
            BodyKind::Cut => Poll::Ready(None),
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("end", &self.is_end_stream())
            .finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(r) = this.poll_inner(cx) {
            this.armed = false;
            return Poll::Ready(r);
        }
        let deadline = tokio::time::Instant::now() + this.idle.timeout;
        let timer = match &mut this.timer {
            Some(t) => {
                if !this.armed {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => this
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        this.armed = true;
        std::task::ready!(timer.as_mut().poll(cx));
        // Waited too long: the connection goes (its rest is unread) and the body ends.
        this.kind = BodyKind::Cut;
        this.timer = None;
        this.idle.fired.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Some(Err(StreamIdleTimeout(this.idle.timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::H1(b) => b.conn.is_none() || b.framing.is_done(),
            BodyKind::H2(inner) => inner.is_end_stream(),
            BodyKind::Cut => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::H1(b) => match b.framing.exact_remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            BodyKind::H2(inner) => inner.size_hint(),
            BodyKind::Cut => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request sent upstream, owned (the proxy sends from its borrowed head).
    type UpstreamRequest = Request<Bytes>;

    impl UpstreamPool {
        /// Sends `req` to endpoint `index` on an idle connection of this thread, or a new one.
        /// HTTP/2 needs an absolute URI; HTTP/1.1 sends origin-form (an absolute URI is cut
        /// down to it). (The proxy sends from its borrowed head: [`send_h1`](Self::send_h1),
        /// [`send_h2_buffered`](Self::send_h2_buffered); this owned form is the tests'.)
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
                    let (parts, body) = req.into_parts();
                    let head = h1::RequestHead {
                        method: &parts.method,
                        path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                        headers: &parts.headers,
                        host: None,
                    };
                    self.send_h1(index, &head, &body).await
                }
                UpstreamProtocol::Http2 => {
                    let (parts, body) = req.into_parts();
                    self.send_h2_buffered(index, &parts.method, &parts.uri, &parts.headers, &body)
                        .await
                }
            }
        }
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
        *req.uri_mut() =
            http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"));
    }

    /// A request for `uri` with `host` as its Host header (none: no header).
    fn request(uri: &str, host: Option<&'static str>) -> UpstreamRequest {
        let mut req = Request::new(Bytes::new());
        if let Some(h) = host {
            req.headers_mut()
                .insert(http::header::HOST, http::HeaderValue::from_static(h));
        }
        *req.uri_mut() = uri.parse().unwrap();
        req
    }

    #[test]
    fn origin_form_keeps_path_and_sets_host() {
        let mut req = request("http://10.0.0.1:8080/a/b?c=d", None);
        origin_form(&mut req);
        assert_eq!(req.uri().to_string(), "/a/b?c=d");
        assert_eq!(req.headers()[http::header::HOST], "10.0.0.1:8080");

        let mut req = request("http://10.0.0.1:8080/", Some("example.com"));
        origin_form(&mut req);
        assert_eq!(req.uri().to_string(), "/");
        assert_eq!(req.headers()[http::header::HOST], "example.com");
    }

    #[test]
    fn authority_form_moves_host_into_the_authority() {
        let mut req = request("http://10.0.0.1:8080/a?b=c", Some("www.example.com:8443"));
        authority_form(&mut req);
        assert_eq!(req.uri().to_string(), "http://www.example.com:8443/a?b=c");
        assert!(!req.headers().contains_key(http::header::HOST));

        // no Host: the endpoint's authority stays
        let mut req = request("http://10.0.0.1:8080/", None);
        authority_form(&mut req);
        assert_eq!(req.uri().to_string(), "http://10.0.0.1:8080/");

        // a Host that is no authority is left for the upstream to judge
        let mut req = request("http://10.0.0.1:8080/", Some("bad host"));
        authority_form(&mut req);
        assert_eq!(req.uri().to_string(), "http://10.0.0.1:8080/");
        assert_eq!(req.headers()[http::header::HOST], "bad host");
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
            let mut req = Request::new(Bytes::new());
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
        let waited = until_closed(&open, Duration::from_secs(5)).await;
        assert!(
            waited >= Duration::from_millis(250),
            "closed only past the idle timeout: {waited:?}"
        );

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
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = format!("http://{addr}/x").parse().unwrap();
        let resp = pool.send(0, req).await.unwrap();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        assert_eq!(open.load(Ordering::Relaxed), 1);
        drop(pool);
        // at the next sweep (every 5 s), well before the 60 s idle timeout
        until_closed(&open, Duration::from_secs(20)).await;
    }

    /// Waits until `open` reads 0, at most `bound`; returns how long that took.
    async fn until_closed(open: &AtomicUsize, bound: Duration) -> Duration {
        let t = std::time::Instant::now();
        while open.load(Ordering::Relaxed) != 0 {
            assert!(t.elapsed() < bound, "connection still open after {bound:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t.elapsed()
    }

    /// A scripted upstream: for each accepted connection, answers each request head with
    /// the next response of `script` (connection index, request index) -> bytes, then
    /// closes when the script says `None`.
    async fn scripted(
        script: fn(usize, usize) -> Option<&'static [u8]>,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let conn = counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    let mut req = 0;
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            match script(conn, req) {
                                Some(resp) => {
                                    let _ = s.write_all(resp).await;
                                }
                                None => return,
                            }
                            req += 1;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn pool_for(addr: SocketAddr) -> UpstreamPool {
        UpstreamPool::new(
            UpstreamProtocol::Http1,
            vec![addr],
            Duration::from_secs(1),
            Duration::from_secs(30),
            8,
            8,
            Arc::new(AtomicUsize::new(0)),
        )
    }

    #[tokio::test]
    async fn a_body_stalled_mid_way_is_cut_off_after_the_stream_idle_timeout() {
        // The head promises 10 bytes, 4 come, then nothing (the connection stays open).
        let (addr, _) =
            scripted(|_, _| Some(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabcd")).await;
        let fired = Arc::new(AtomicU64::new(0));
        let pool =
            pool_for(addr).with_stream_idle_timeout(Duration::from_millis(200), fired.clone());
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = "/x".parse().unwrap();
        let resp = pool.send(0, req).await.unwrap();
        let mut body = resp.into_body();
        let first = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"abcd"));
        let start = Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            http_body_util::BodyExt::frame(&mut body),
        )
        .await
        .expect("the body ends, the client is not held")
        .unwrap()
        .unwrap_err();
        assert!(err.is::<StreamIdleTimeout>(), "{err}");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert_eq!(fired.load(Ordering::Relaxed), 1);
        assert!(body.is_end_stream());
        assert!(http_body_util::BodyExt::frame(&mut body).await.is_none());
        // The cut connection is not reused: the next request opens a new one and is
        // cut off the same way.
        drop(body);
        assert!(get(&pool, Method::GET).await.is_err());
        assert_eq!(fired.load(Ordering::Relaxed), 2);
    }

    /// An upstream that answers one request with `pieces`, each written after its delay
    /// (a response sent in several writes), then waits for the next request.
    async fn paced(pieces: Vec<(u64, &'static [u8])>) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            for (delay_ms, bytes) in pieces {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let _ = s.write_all(bytes).await;
            }
            let _ = s.read(&mut buf).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_slow_body_that_keeps_coming_is_not_cut_off() {
        // Eight pieces 80 ms apart: 640 ms in all, each gap well under the 500 ms timeout
        // (the margin is for a loaded machine stalling this one-thread runtime).
        let mut pieces = vec![(
            0,
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..],
        )];
        pieces.extend([(80, &b"2\r\nok\r\n"[..]); 8]);
        pieces.push((0, b"0\r\n\r\n"));
        let addr = paced(pieces).await;
        let fired = Arc::new(AtomicU64::new(0));
        let pool =
            pool_for(addr).with_stream_idle_timeout(Duration::from_millis(500), fired.clone());
        let (status, body) = get(&pool, Method::GET).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"okokokokokokokok");
        assert_eq!(fired.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_short_body_sent_after_its_head_comes_with_the_response() {
        // the head, then (as nginx's writev and sendfile do) the body in a second write
        let addr = paced(vec![
            (0, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            (2, b"hello"),
        ])
        .await;
        let pool = pool_for(addr);
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = "/x".parse().unwrap();
        let resp = pool.send(0, req).await.unwrap();
        // the whole body is already there: its frame is ready at the first poll
        let mut body = std::pin::pin!(resp.into_body());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) else {
            panic!("the body was not in yet when the response was handed on");
        };
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"hello"));
    }

    async fn get(pool: &UpstreamPool, method: Method) -> Result<(u16, Vec<u8>), String> {
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = method;
        *req.uri_mut() = "/x".parse().unwrap();
        let resp = pool.send(0, req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body.to_vec()))
    }

    #[tokio::test]
    async fn chunked_and_close_delimited_bodies_and_reuse() {
        let (addr, accepted) = scripted(|conn, req| match (conn, req) {
            (0, 0) => Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            (0, 1) => Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"),
            (0, 2) => Some(b"HTTP/1.1 200 OK\r\n\r\nuntil close"),
            _ => None,
        })
        .await;
        let pool = pool_for(addr);
        assert_eq!(
            get(&pool, Method::GET).await.unwrap(),
            (200, b"abc".to_vec())
        );
        assert_eq!(
            get(&pool, Method::GET).await.unwrap(),
            (404, b"nope".to_vec())
        );
        // A body without a length runs to the connection's close. The script sends the
        // third answer and then nothing (it would close only on a fourth request), so the
        // body cannot end, and the connection is never put back for reuse.
        let third = tokio::time::timeout(Duration::from_millis(300), get(&pool, Method::GET)).await;
        assert!(
            third.is_err(),
            "a close-delimited body ends only when the upstream closes"
        );
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "keep-alive reused one connection"
        );
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_used_and_garbage_is_an_error() {
        // connection 0 answers once then closes; connection 1 answers with garbage;
        // connection 2 answers properly
        let (addr, accepted) = scripted(|conn, req| match (conn, req) {
            (0, 0) => Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (1, 0) => Some(b"SSH-2.0-garbage\r\n\r\n"),
            (2, _) => Some(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes"),
            _ => None,
        })
        .await;
        let pool = pool_for(addr);
        assert_eq!(
            get(&pool, Method::GET).await.unwrap(),
            (200, b"ok".to_vec())
        );
        // the server closes connection 0 when it reads the next head: the idle connection
        // looks alive, the request is written, the answer is the connection's end, and an
        // idempotent request goes out again on a new connection (1), which answers garbage
        let err = get(&pool, Method::GET).await.unwrap_err();
        assert!(err.contains("malformed"), "{err}");
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
        // the garbage connection was not kept: the next request connects again
        assert_eq!(
            get(&pool, Method::GET).await.unwrap(),
            (200, b"yes".to_vec())
        );
        assert_eq!(accepted.load(Ordering::Relaxed), 3);
        // a POST is not sent again once written: connection 2 is idle and healthy here,
        // so it simply succeeds
        assert_eq!(
            get(&pool, Method::POST).await.unwrap(),
            (200, b"yes".to_vec())
        );
    }

    #[tokio::test]
    async fn a_written_post_is_not_resent_when_the_connection_ends() {
        let (addr, accepted) = scripted(|conn, req| match (conn, req) {
            (0, 0) => Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (_, _) => None,
        })
        .await;
        let pool = pool_for(addr);
        assert_eq!(
            get(&pool, Method::GET).await.unwrap(),
            (200, b"ok".to_vec())
        );
        let err = get(&pool, Method::POST).await.unwrap_err();
        assert!(err.contains("upstream request"), "{err}");
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "not sent a second time"
        );

        // An upstream that closes right after answering: the idle connection is seen
        // closed when taken, so even a POST goes out on a new one and succeeds.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::Relaxed);
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        });
        let pool = pool_for(addr);
        assert_eq!(
            get(&pool, Method::GET).await.unwrap(),
            (200, b"ok".to_vec())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            get(&pool, Method::POST).await.unwrap(),
            (200, b"ok".to_vec())
        );
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }
}
