//! The admin listener: Prometheus metrics, the JSON API, and `fulcrum top`.
//!
//! [`AdminServer`] serves HTTP/1.1 on its own thread (tokio current-thread runtime +
//! hyper) and calls into the control plane through [`AdminHandler`].
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/metrics` | Prometheus text (rendered with [`PromWriter`]); open even with a token |
//! | GET | `/api/services` | [`AdminHandler::services`] as JSON |
//! | GET | `/api/stats` | [`AdminHandler::stats`]: a [`StatsSnapshot`] as JSON |
//! | GET | `/api/l7` | [`AdminHandler::l7`]: the L7 pool's clusters and endpoints as JSON |
//! | POST | `/api/reload` | 200 `{"result": "..."}` or 422 `{"errors": ["...", ...]}` |
//! | POST | `/api/services/{svc}/backends/{addr}/weight` | body `{"weight": N}` (0..=65535) → 200 `{"result":"ok","service","backend","weight"}` |
//! | POST | `/api/services/{svc}/backends/{addr}/drain` | 200 `{"result":"draining","service","backend"}` |
//!
//! Path segments are percent-decoded (`2001%3Adb8%3A%3A1` or plain `2001:db8::1`).
//! Refusals are JSON `{"error": "message"}`: 400 bad JSON, weight out of range, bad
//! percent-encoding or [`AdminError::BadRequest`]; 401 (with `WWW-Authenticate:
//! Bearer`) for a missing or wrong token on `/api/...` when one is configured; 404 for
//! an unknown path or [`AdminError::NotFound`]; 405 (with `Allow`) for a wrong method;
//! 413 for a body over 64 KiB.

mod prom;
mod server;
mod top;

pub use prom::{
    escape_help, escape_label_value, format_value, sanitize_name, MetricKind, PromWriter,
    CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE, QUANTILES,
};
pub use server::{AdminError, AdminHandler, AdminServer, HEADER_READ_TIMEOUT, MAX_BODY};
pub use top::{
    compute_rates, fetch_stats, render_table, run_top, BackendRates, BackendStats, RateTable,
    ServiceRates, ServiceStats, StatsSnapshot, WorkerRates, WorkerStats,
};
