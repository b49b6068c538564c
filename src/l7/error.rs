//! Errors of the L7 pool, and where a proxied request failed.

use hyper::StatusCode;

/// Errors starting or configuring the pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum L7Error {
    /// The YAML is malformed or inconsistent.
    #[error("l7 config: {0}")]
    Config(String),
    /// A certificate or key file could not be read or used.
    #[error("tls: {0}")]
    Tls(String),
    /// Binding a listener or building the runtime failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a proxied request did not get an upstream response; each maps to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamFailure {
    /// No endpoint could be picked (all ejected or none healthy): 503.
    NoHealthyEndpoint,
    /// A circuit breaker is open: 503.
    Overflow,
    /// Connecting to the endpoint failed: 503 (Envoy's "upstream connect error").
    ConnectFailure,
    /// The upstream reset the connection or answered garbage: 502.
    Reset,
    /// No response head within the per-try timeout: 504.
    Timeout,
}

impl UpstreamFailure {
    /// The status sent to the client.
    pub fn status(self) -> StatusCode {
        match self {
            UpstreamFailure::NoHealthyEndpoint
            | UpstreamFailure::Overflow
            | UpstreamFailure::ConnectFailure => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamFailure::Reset => StatusCode::BAD_GATEWAY,
            UpstreamFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether a retry may help.
    pub fn retriable(self) -> bool {
        matches!(
            self,
            UpstreamFailure::ConnectFailure | UpstreamFailure::Reset
        )
    }
}
