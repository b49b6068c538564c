//! The admin HTTP/1.1 server: a thread, a tokio current-thread runtime, hyper.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::prom;

/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Longest [`AdminServer::stop`] waits for handler calls in progress.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin server asks of the control plane. Calls run on a blocking thread
/// of the server's runtime, one at a time per request; they may take the control
/// plane's locks.
pub trait AdminHandler: Send + Sync + 'static {
    /// Appends the Prometheus exposition (see [`super::PromWriter`]) for `GET /metrics`.
    fn metrics(&self, out: &mut String);
    /// `GET /api/services`: services with backends, health, weight, active flows.
    fn services(&self) -> Value;
    /// `GET /api/stats`: counters for `fulcrum top`, shaped as [`super::StatsSnapshot`].
    fn stats(&self) -> Value;
    /// `POST /api/reload`: re-reads the configuration. `Ok(summary)` → 200
    /// `{"result": summary}`; `Err(errors)` → 422 `{"errors": [..]}`.
    fn reload(&self) -> Result<String, Vec<String>>;
    /// `POST /api/services/{service}/backends/{backend}/weight` with `{"weight": N}`.
    fn set_weight(&self, service: &str, backend: &str, weight: u16) -> Result<(), AdminError>;
    /// `POST /api/services/{service}/backends/{backend}/drain`: weight 0, flows finish.
    fn drain(&self, service: &str, backend: &str) -> Result<(), AdminError>;
    /// `GET /api/l7`: the L7 pool's clusters and endpoints (health, ejection, zone);
    /// no services without a pool.
    fn l7(&self) -> Value {
        json!({"zone": null, "services": []})
    }
}

/// A refusal from the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// No such service or backend (→ 404).
    NotFound(String),
    /// The request cannot be applied (→ 400).
    BadRequest(String),
}

impl AdminError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NotFound(m) | AdminError::BadRequest(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AdminError {}

/// A request that matched a route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Services,
    Stats,
    L7,
    Reload,
    Weight { service: String, backend: String },
    Drain { service: String, backend: String },
}

/// Why a request matched no route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RouteError {
    NotFound,
    /// The path exists for these methods only.
    MethodNotAllowed(&'static str),
    /// A path segment is not valid percent-encoded UTF-8.
    BadSegment,
}

/// Matches `method` and `path` (no query) to a route. Pure.
fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Err(RouteError::NotFound),
    };
    let only = |allowed: Method, allow: &'static str, r: Route| {
        if *method == allowed {
            Ok(r)
        } else {
            Err(RouteError::MethodNotAllowed(allow))
        }
    };
    match segments.as_slice() {
        ["metrics"] => only(Method::GET, "GET", Route::Metrics),
        ["api", "services"] => only(Method::GET, "GET", Route::Services),
        ["api", "stats"] => only(Method::GET, "GET", Route::Stats),
        ["api", "l7"] => only(Method::GET, "GET", Route::L7),
        ["api", "reload"] => only(Method::POST, "POST", Route::Reload),
        ["api", "services", svc, "backends", backend, action @ ("weight" | "drain")]
            if !svc.is_empty() && !backend.is_empty() =>
        {
            let service = percent_decode(svc).ok_or(RouteError::BadSegment)?;
            let backend = percent_decode(backend).ok_or(RouteError::BadSegment)?;
            let r = if *action == "weight" {
                Route::Weight { service, backend }
            } else {
                Route::Drain { service, backend }
            };
            only(Method::POST, "POST", r)
        }
        _ => Err(RouteError::NotFound),
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            // two hex digits, nothing else (`from_str_radix` alone takes "%+f" as 0x0f)
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `header` is `Bearer <token>`.
fn authorized(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some((scheme, presented)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
}

/// Parses the body of a weight request: `{"weight": N}` with `N` in `0..=65535`.
fn parse_weight(body: &[u8]) -> Result<u16, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "body must be a JSON object {\"weight\": N}".to_owned())?;
    if let Some(k) = obj.keys().find(|k| *k != "weight") {
        return Err(format!("unknown field {k:?}; expected {{\"weight\": N}}"));
    }
    let w = obj
        .get("weight")
        .ok_or_else(|| "missing field \"weight\"".to_owned())?;
    let n = w
        .as_u64()
        .ok_or_else(|| format!("weight must be an integer in 0..=65535, got {w}"))?;
    u16::try_from(n).map_err(|_| format!("weight {n} out of range 0..=65535"))
}

type Body = Full<Bytes>;

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

struct Context {
    token: Option<String>,
    handler: Arc<dyn AdminHandler>,
}

/// Runs `f` against the handler on the blocking pool.
async fn call<T: Send + 'static>(
    ctx: &Arc<Context>,
    f: impl FnOnce(&dyn AdminHandler) -> T + Send + 'static,
) -> Result<T, Response<Body>> {
    let handler = Arc::clone(&ctx.handler);
    tokio::task::spawn_blocking(move || f(handler.as_ref()))
        .await
        .map_err(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, "handler failed"))
}

async fn handle(req: Request<Incoming>, ctx: Arc<Context>) -> Result<Response<Body>, Infallible> {
    Ok(match respond(req, &ctx).await {
        Ok(r) | Err(r) => r,
    })
}

async fn respond(
    req: Request<Incoming>,
    ctx: &Arc<Context>,
) -> Result<Response<Body>, Response<Body>> {
    let path = req.uri().path().to_owned();
    if let Some(token) = &ctx.token {
        let api = path == "/api" || path.starts_with("/api/");
        if api && !authorized(req.headers().get(AUTHORIZATION), token) {
            let mut r = error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(r);
        }
    }
    let route = match route(req.method(), &path) {
        Ok(r) => r,
        Err(RouteError::NotFound) => {
            return Err(error_response(
                StatusCode::NOT_FOUND,
                &format!("no route for {path}"),
            ))
        }
        Err(RouteError::BadSegment) => {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "bad percent-encoding in path",
            ))
        }
        Err(RouteError::MethodNotAllowed(allow)) => {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} not allowed on {path}; use {allow}", req.method()),
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return Err(r);
        }
    };
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| error_response(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body: {e}")))?
        .to_bytes();
    Ok(match route {
        Route::Metrics => {
            let text = call(ctx, |h| {
                let mut out = String::new();
                h.metrics(&mut out);
                out
            })
            .await?;
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(prom::CONTENT_TYPE));
            r
        }
        Route::Services => json_response(StatusCode::OK, &call(ctx, |h| h.services()).await?),
        Route::Stats => json_response(StatusCode::OK, &call(ctx, |h| h.stats()).await?),
        Route::L7 => json_response(StatusCode::OK, &call(ctx, |h| h.l7()).await?),
        Route::Reload => match call(ctx, |h| h.reload()).await? {
            Ok(result) => json_response(StatusCode::OK, &json!({ "result": result })),
            Err(errors) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "errors": errors }),
            ),
        },
        Route::Weight { service, backend } => {
            let weight =
                parse_weight(&body).map_err(|m| error_response(StatusCode::BAD_REQUEST, &m))?;
            let (s, b) = (service.clone(), backend.clone());
            match call(ctx, move |h| h.set_weight(&s, &b, weight)).await? {
                Ok(()) => json_response(
                    StatusCode::OK,
                    &json!({ "result": "ok", "service": service, "backend": backend, "weight": weight }),
                ),
                Err(e) => error_response(e.status(), &e.to_string()),
            }
        }
        Route::Drain { service, backend } => {
            let (s, b) = (service.clone(), backend.clone());
            match call(ctx, move |h| h.drain(&s, &b)).await? {
                Ok(()) => json_response(
                    StatusCode::OK,
                    &json!({ "result": "draining", "service": service, "backend": backend }),
                ),
                Err(e) => error_response(e.status(), &e.to_string()),
            }
        }
    })
}

/// The admin listener, serving on its own thread until [`stop`](Self::stop) or drop.
///
/// `/metrics` is open even when a token is set (a scraper on the same host needs no
/// secret, and the listener is loopback by default, as the config contract says);
/// every `/api/...` path needs `Authorization: Bearer <token>` when one is set.
pub struct AdminServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `listen` (port 0 picks a free port), prints the bound address to stderr
    /// and serves on a new thread.
    pub fn start(
        listen: SocketAddr,
        token: Option<String>,
        handler: Arc<dyn AdminHandler>,
    ) -> Result<AdminServer, io::Error> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let ctx = Arc::new(Context { token, handler });
        let thread = std::thread::Builder::new()
            .name("fulcrum-admin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("fulcrum: admin listener: {e}");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _peer)) = accepted else { continue };
                                let ctx = Arc::clone(&ctx);
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| handle(req, Arc::clone(&ctx)));
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .timer(TokioTimer::new())
                                        .header_read_timeout(HEADER_READ_TIMEOUT)
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Do not hang on a handler call that never returns.
                runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            })?;
        eprintln!("fulcrum: admin API listening on http://{addr}");
        Ok(AdminServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.addr)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(route(&get, "/metrics"), Ok(Route::Metrics));
        assert_eq!(route(&get, "/api/stats"), Ok(Route::Stats));
        assert_eq!(route(&get, "/api/l7"), Ok(Route::L7));
        assert_eq!(
            route(&post, "/api/services/web/backends/2001%3Adb8%3A%3A1/weight"),
            Ok(Route::Weight {
                service: "web".into(),
                backend: "2001:db8::1".into()
            })
        );
        assert_eq!(
            route(&post, "/api/services/web/backends/10.0.0.1/drain"),
            Ok(Route::Drain {
                service: "web".into(),
                backend: "10.0.0.1".into()
            })
        );
        assert_eq!(
            route(&post, "/metrics"),
            Err(RouteError::MethodNotAllowed("GET"))
        );
        assert_eq!(
            route(&get, "/api/reload"),
            Err(RouteError::MethodNotAllowed("POST"))
        );
        assert_eq!(route(&get, "/api/services/"), Err(RouteError::NotFound));
        assert_eq!(
            route(&post, "/api/services//backends/x/drain"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&post, "/api/services/a/backends/%zz/drain"),
            Err(RouteError::BadSegment)
        );
        assert_eq!(
            route(&post, "/api/services/a/backends/%ff/drain"),
            Err(RouteError::BadSegment)
        );
        // a sign is not a hex digit
        assert_eq!(
            route(&post, "/api/services/a/backends/%+f/drain"),
            Err(RouteError::BadSegment)
        );
        assert_eq!(route(&get, "*"), Err(RouteError::NotFound));
    }

    proptest::proptest! {
        /// Any path, any method: a route or a refusal, never a panic; and every string,
        /// each byte escaped, decodes to itself.
        #[test]
        fn any_path_is_routed_or_refused(path in "/\\PC{0,48}", post in proptest::prelude::any::<bool>(),
                                         name in "\\PC{1,16}") {
            let method = if post { Method::POST } else { Method::GET };
            let _ = route(&method, &path);
            let escaped: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
            let r = route(&Method::POST, &format!("/api/services/{escaped}/backends/{escaped}/drain"));
            proptest::prop_assert_eq!(r, Ok(Route::Drain { service: name.clone(), backend: name }));
        }
    }

    #[test]
    fn weights() {
        assert_eq!(parse_weight(br#"{"weight": 0}"#), Ok(0));
        assert_eq!(parse_weight(br#"{"weight": 65535}"#), Ok(65535));
        assert!(parse_weight(br#"{"weight": 65536}"#)
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_weight(br#"{"weight": -1}"#).is_err());
        assert!(parse_weight(br#"{"weight": 1.5}"#).is_err());
        assert!(parse_weight(br#"{"weight": "3"}"#).is_err());
        assert!(parse_weight(br#"{"wieght": 3}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse_weight(br#"[3]"#).is_err());
        assert!(parse_weight(b"").unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn bearer_tokens() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(authorized(Some(&h("Bearer s3cret")), "s3cret"));
        assert!(authorized(Some(&h("bearer s3cret")), "s3cret"));
        assert!(!authorized(Some(&h("Bearer s3cre")), "s3cret"));
        assert!(!authorized(Some(&h("Basic s3cret")), "s3cret"));
        assert!(!authorized(Some(&h("s3cret")), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }
}
