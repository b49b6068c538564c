//! One probe: a TCP connect or an HTTP/1.1 `GET`, bounded by a timeout.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::HealthCheckKind;

/// `User-Agent` of HTTP probes.
pub const PROBE_USER_AGENT: &str = "fulcrum-health";

/// Why a probe failed; its `Display` is the reason carried by health events.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// The backend answered the SYN with a RST.
    ConnectRefused,
    /// The probe did not complete within its timeout.
    Timeout,
    /// Another connect error (unreachable network, no route, ...).
    Connect(String),
    /// The HTTP response status was not 2xx or 3xx.
    HttpStatus(u16),
    /// The peer sent something that is not an HTTP/1 response, or closed early.
    BadResponse(String),
    /// The configured path is not a valid request target.
    BadPath(String),
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeFailure::ConnectRefused => f.write_str("connect refused"),
            ProbeFailure::Timeout => f.write_str("timeout"),
            ProbeFailure::Connect(e) => write!(f, "connect: {e}"),
            ProbeFailure::HttpStatus(s) => write!(f, "HTTP {s}"),
            ProbeFailure::BadResponse(e) => write!(f, "bad HTTP response: {e}"),
            ProbeFailure::BadPath(p) => write!(f, "invalid path {p:?}"),
        }
    }
}

impl std::error::Error for ProbeFailure {}

impl From<io::Error> for ProbeFailure {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeFailure::ConnectRefused,
            io::ErrorKind::TimedOut => ProbeFailure::Timeout,
            _ => ProbeFailure::Connect(e.to_string()),
        }
    }
}

/// What [`is_request_path`] asks, as both configurations' errors say it.
pub const REQUEST_PATH_RULE: &str =
    "a request path starting with `/` (no spaces, controls, non-ASCII or fragment)";

/// Whether `path` is what an `http` probe can send as its request target, as written:
/// origin form (starts with `/`), every byte one a request target may carry (no spaces,
/// controls or non-ASCII bytes), and no fragment (`#`, which a client never sends). The
/// one rule both configurations apply (an L4 service's `health_check.path` and an L7
/// cluster's), so a path that is accepted is the one every probe sends: `<`, `>` or a
/// backquote would fail every probe with [`ProbeFailure::BadPath`] and keep the
/// endpoint down, a fragment would be dropped and another path probed.
pub fn is_request_path(path: &str) -> bool {
    // (`http` lets bytes above 0x7f through; RFC 3986 wants them percent-encoded)
    path.starts_with('/')
        && path.is_ascii()
        && http::uri::PathAndQuery::try_from(path).is_ok_and(|p| p.as_str() == path)
}

/// Probes `addr` once. `path` and `host` are used by `http` probes only (`host`
/// defaults to `addr`). Returns the success reason ("connected", "HTTP 200").
/// `kind == None` always succeeds without I/O.
pub async fn probe(
    kind: HealthCheckKind,
    addr: SocketAddr,
    path: &str,
    host: Option<&str>,
    timeout: Duration,
) -> Result<String, ProbeFailure> {
    let work = async {
        match kind {
            HealthCheckKind::None => Ok("not checked".to_owned()),
            HealthCheckKind::Tcp => {
                TcpStream::connect(addr).await?;
                Ok("connected".to_owned())
            }
            HealthCheckKind::Http => http_get(addr, path, host).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProbeFailure::Timeout),
    }
}

/// `GET path` over a fresh connection; healthy on 2xx/3xx. Drives the connection in
/// this future (no spawned task outlives a timeout).
async fn http_get(
    addr: SocketAddr,
    path: &str,
    host: Option<&str>,
) -> Result<String, ProbeFailure> {
    let host = match host {
        Some(h) => h.to_owned(),
        None => addr.to_string(),
    };
    let request = Request::get(path)
        .header(HOST, host)
        .header(USER_AGENT, PROBE_USER_AGENT)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ProbeFailure::BadPath(path.to_owned()))?;

    let stream = TcpStream::connect(addr).await?;
    // Probes are tiny; no Nagle delay.
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeFailure::BadResponse(e.to_string()))?;
    let send = sender.send_request(request);
    tokio::pin!(conn);
    tokio::pin!(send);
    let response = tokio::select! {
        biased;
        r = &mut send => r.map_err(|e| ProbeFailure::BadResponse(e.to_string()))?,
        r = &mut conn => {
            // The connection ends right after the response when the server closes it;
            // the response (if any) is then ready in `send`.
            match send.await {
                Ok(response) => response,
                Err(e) => {
                    let cause = match r {
                        Ok(()) => e.to_string(),
                        Err(conn_error) => conn_error.to_string(),
                    };
                    return Err(ProbeFailure::BadResponse(cause));
                }
            }
        }
    };
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        Err(ProbeFailure::HttpStatus(status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_documented() {
        assert_eq!(ProbeFailure::ConnectRefused.to_string(), "connect refused");
        assert_eq!(ProbeFailure::Timeout.to_string(), "timeout");
        assert_eq!(ProbeFailure::HttpStatus(503).to_string(), "HTTP 503");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(ProbeFailure::from(refused), ProbeFailure::ConnectRefused);
    }

    #[test]
    fn request_paths_are_what_a_probe_can_send() {
        for ok in ["/", "/healthz", "/status?full=1&x=%20y", "/a/b.c~d"] {
            assert!(is_request_path(ok), "{ok:?} refused");
            // and the probe's request builder takes it as it is
            let r = Request::get(ok).body(()).expect("a request");
            assert_eq!(r.uri().path_and_query().map(|p| p.as_str()), Some(ok));
        }
        for bad in [
            "",
            "healthz",
            "/a b",
            "/a\tb",
            "/a\r\nX: y",
            "/caf\u{e9}",
            "/a#frag",
            "http://x/",
        ] {
            assert!(!is_request_path(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn kind_none_succeeds_without_io() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        // Port 9 on a TEST-NET address: never contacted for kind `none`.
        let addr: SocketAddr = ([192, 0, 2, 1], 9).into();
        let r = rt.block_on(probe(
            HealthCheckKind::None,
            addr,
            "/",
            None,
            Duration::from_millis(1),
        ));
        assert!(r.is_ok());
    }
}
