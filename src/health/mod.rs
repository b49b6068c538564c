//! Backend health: active probes and passive outlier detection.
//!
//! Two independent pieces the control thread combines into "may this backend take new
//! flows":
//!
//! - [`HealthChecker`] (active): one thread running a tokio current-thread runtime with a
//!   task per [`HealthTarget`]. Each task probes its backend every `interval` (±10%
//!   jitter; the first probe at a random offset in `[0, interval)` so that checks do not
//!   march in step) with a `tcp` connect or an HTTP/1.1 `GET path`, and runs the
//!   result through the [`Hysteresis`] thresholds. State changes come out as
//!   [`HealthEvent`]s, drained without blocking by [`HealthChecker::events`].
//! - [`PassiveHealth`] (passive, no I/O): the data plane reports connection outcomes per
//!   backend; after `consecutive_failures` failures in a row the backend is ejected for a
//!   back-off period that doubles on repeated ejection (Envoy's outlier detection).
//!
//! **Initial state.** Every target starts *healthy* with no probe run yet, so a fresh
//! start (or a reload that adds a backend) serves at once; a dead backend is found
//! within `unhealthy_threshold` probes. Targets whose `kind` is `none` are never probed
//! and stay healthy.
//!
//! Probes use ordinary kernel sockets: in fulcrum they reach backends through the
//! kernel interface the data plane provides (issue 5's exception path).

mod active;
mod jitter;
mod passive;
mod probe;
mod state;

pub use active::{HealthChecker, HealthEvent, HealthStatus, HealthTarget, MIN_INTERVAL};
pub use jitter::Jitter;
pub use passive::{PassiveHealth, PassiveHealthConfig};
pub use probe::{is_request_path, probe, ProbeFailure, REQUEST_PATH_RULE};
pub use state::{Hysteresis, Transition};
