//! Errors from the DPDK wrappers.

use core::ffi::{c_int, CStr};

use fulcrum_dpdk_sys as sys;

/// Why a DPDK call or wrapper refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpdkError {
    /// [`crate::Eal::init`] was already called in this process (DPDK allows one
    /// initialisation, successful or not).
    #[error("the DPDK EAL was already initialised in this process")]
    AlreadyInitialised,
    /// The call needs an initialised EAL.
    #[error("the DPDK EAL is not initialised")]
    NotInitialised,
    /// A DPDK function failed.
    #[error("{call} failed: {message} (errno {errno})")]
    Call {
        /// The DPDK function.
        call: &'static str,
        /// The positive errno value (from `rte_errno` or the negative return).
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// An argument the wrapper rejected before calling DPDK.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No ethdev port has this name.
    #[error("no DPDK port named {0:?}")]
    NoSuchPort(String),
    /// Another [`crate::Port`] handle holds this port.
    #[error("port {0} is already held by another Port handle")]
    PortInUse(u16),
    /// The operation needs every [`crate::RxQueue`]/[`crate::TxQueue`] of the
    /// port dropped first (configure, stop, queue hand-out).
    #[error("port {0}: queue handles are still alive")]
    QueuesInUse(u16),
    /// The port has not been configured yet.
    #[error("port {0} is not configured")]
    NotConfigured(u16),
    /// The mempool had not enough free mbufs.
    #[error("mempool exhausted")]
    PoolEmpty,
    /// The lcore is not an enabled worker lcore.
    #[error("lcore {0} is not an enabled worker lcore")]
    NoSuchLcore(u32),
}

impl DpdkError {
    /// An error for `call` with the positive `errno`.
    pub(crate) fn from_errno(call: &'static str, errno: i32) -> Self {
        DpdkError::Call {
            call,
            errno,
            message: strerror(errno),
        }
    }

    /// An error for `call` from the current `rte_errno`.
    pub(crate) fn from_rte_errno(call: &'static str) -> Self {
        // SAFETY: reads the calling thread's `rte_errno` (a thread-local int).
        let errno = unsafe { sys::fulcrum_rte_errno() };
        Self::from_errno(call, errno)
    }

    /// The errno of a failed DPDK call, if this error is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DpdkError::Call { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// `Ok(ret)` for a non-negative return, else the error for `-ret`.
pub(crate) fn check(call: &'static str, ret: c_int) -> Result<c_int, DpdkError> {
    if ret < 0 {
        Err(DpdkError::from_errno(call, -ret))
    } else {
        Ok(ret)
    }
}

/// `rte_strerror(errno)` copied into a `String`.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a NUL-terminated string
    // in static or thread-local storage, valid until the next call on this
    // thread; it is copied out at once.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            return format!("errno {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
