//! The Environment Abstraction Layer: process-wide initialisation, lcores and
//! the time-stamp counter.

use core::ffi::{c_char, c_int, c_void};
use std::ffi::CString;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use fulcrum_dpdk_sys as sys;

use crate::error::DpdkError;

/// The program name passed to `rte_eal_init` as `argv[0]`.
const PROGRAM_NAME: &str = "fulcrum";

/// Whether `Eal::init` was attempted (DPDK allows one attempt per process).
static ATTEMPTED: AtomicBool = AtomicBool::new(false);
/// `STATE_*`: whether the EAL is usable now.
static STATE: AtomicU8 = AtomicU8::new(STATE_DOWN);
const STATE_DOWN: u8 = 0;
const STATE_UP: u8 = 1;
const STATE_CLEANED: u8 = 2;

/// Whether the EAL is initialised and not yet cleaned up.
pub fn is_initialised() -> bool {
    STATE.load(Ordering::Acquire) == STATE_UP
}

/// `Err(NotInitialised)` unless the EAL is up.
pub(crate) fn ensure_initialised() -> Result<(), DpdkError> {
    if is_initialised() {
        Ok(())
    } else {
        Err(DpdkError::NotInitialised)
    }
}

/// The initialised DPDK EAL of this process.
///
/// There is at most one: [`Eal::init`] succeeds once per process. Dropping it
/// calls `rte_eal_cleanup`, which releases DPDK's memory, so it must be
/// dropped last, after every [`crate::Port`], queue, [`crate::Mbuf`] and
/// worker is gone (keep it in `main`). It is neither `Send` nor `Sync`: the
/// thread that initialised DPDK is the main lcore, the only one allowed to
/// launch work on other lcores.
///
/// # Workers
///
/// Two ways to run per-core workers both work:
/// * [`Eal::launch`] runs a closure on an EAL worker lcore (`-l 0-N` makes
///   lcores 1..N workers, each a pinned thread) and [`Eal::wait`] joins it.
/// * A `std::thread` calls [`register_thread`] first, which gives it an lcore
///   id so mempool per-lcore caches are used; unregistered threads still work
///   but every mbuf allocation goes to the shared ring.
pub struct Eal {
    _main_thread: PhantomData<*mut ()>,
}

impl Eal {
    /// Initialises DPDK with the EAL arguments `args` (without a program
    /// name; one is prepended), e.g. `["--no-huge", "-m", "256",
    /// "--no-pci", "--file-prefix=x", "--vdev=net_ring0"]`.
    ///
    /// A second call in the same process returns
    /// [`DpdkError::AlreadyInitialised`], whether the first succeeded or not.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if ATTEMPTED.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::AlreadyInitialised);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        for arg in std::iter::once(PROGRAM_NAME).chain(args.iter().map(String::as_str)) {
            let c = CString::new(arg).map_err(|_| {
                DpdkError::InvalidArgument(format!("EAL argument {arg:?} contains a NUL byte"))
            })?;
            owned.push(c);
        }
        // DPDK may keep pointers into argv (getopt permutes the array and some
        // drivers keep option strings), so both the strings and the array are
        // leaked: this happens once per process.
        let strings: &'static mut [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] = Box::leak(
            strings
                .iter()
                .map(|s| s.as_ptr().cast_mut())
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = c_int::try_from(argv.len())
            .map_err(|_| DpdkError::InvalidArgument("too many EAL arguments".into()))?;
        // SAFETY: argv holds argc valid NUL-terminated strings that live for the
        // rest of the process; ATTEMPTED guarantees this runs once.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        STATE.store(STATE_UP, Ordering::Release);
        Ok(Eal {
            _main_thread: PhantomData,
        })
    }

    /// The number of enabled lcores (main and workers).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: the EAL is initialised (self exists).
        unsafe { sys::rte_lcore_count() }
    }

    /// The main lcore's id.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: the EAL is initialised (self exists).
        unsafe { sys::rte_get_main_lcore() }
    }

    /// The ids of the enabled worker lcores, in ascending order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: the EAL is initialised; rte_get_next_lcore accepts u32::MAX
        // (meaning "before the first") and returns RTE_MAX_LCORE at the end.
        let mut id = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above, id < RTE_MAX_LCORE.
            id = unsafe { sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// The TSC frequency in Hz.
    pub fn tsc_hz(&self) -> u64 {
        tsc_hz()
    }

    /// Runs `job` on the worker lcore `lcore` (`rte_eal_remote_launch`). The
    /// job's return value (or -1 if it panicked) is what [`Eal::wait`]
    /// returns.
    pub fn launch<F>(&self, lcore: u32, job: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        if !self.worker_lcores().contains(&lcore) {
            return Err(DpdkError::NoSuchLcore(lcore));
        }
        let job: Box<Job> = Box::new(Box::new(job));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: we are the main lcore (Eal is !Send and created here);
        // `trampoline` takes ownership of `arg` when DPDK runs it.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if ret < 0 {
            // SAFETY: the launch failed, so DPDK never ran the trampoline and
            // `arg` is still the Box we leaked above.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(DpdkError::from_errno("rte_eal_remote_launch", -ret));
        }
        Ok(())
    }

    /// Waits for the job on `lcore` to finish and returns its value (0 if the
    /// lcore was idle).
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: the EAL is initialised and we are the main lcore.
        unsafe { sys::rte_eal_wait_lcore(lcore) }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        STATE.store(STATE_CLEANED, Ordering::Release);
        // SAFETY: the EAL was initialised by this value, which is dropped once.
        unsafe {
            sys::rte_eal_cleanup();
        }
    }
}

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Box<Job>` leaked by `Eal::launch`; DPDK calls the
    // launched function exactly once, so it is reclaimed exactly once.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C.
    catch_unwind(AssertUnwindSafe(move || (*job)())).unwrap_or(-1)
}

/// Registers the calling non-EAL thread (e.g. a `std::thread`) as an lcore and
/// returns its lcore id, so mempool caches serve it.
pub fn register_thread() -> Result<u32, DpdkError> {
    ensure_initialised()?;
    // SAFETY: the EAL is initialised.
    let ret = unsafe { sys::rte_thread_register() };
    if ret < 0 {
        return Err(DpdkError::from_rte_errno("rte_thread_register"));
    }
    lcore_id().ok_or_else(|| DpdkError::from_errno("rte_thread_register", 28 /* ENOSPC */))
}

/// Releases the lcore id of a thread registered with [`register_thread`].
pub fn unregister_thread() {
    if is_initialised() {
        // SAFETY: the EAL is initialised; unregistering an unregistered thread
        // is a no-op in DPDK.
        unsafe { sys::rte_thread_unregister() }
    }
}

/// The calling thread's lcore id, `None` for a thread that is not an lcore.
#[inline]
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads a thread-local variable.
    let id = unsafe { sys::fulcrum_rte_lcore_id() };
    (id != sys::LCORE_ID_ANY).then_some(id)
}

/// The time-stamp counter now. On x86_64 this is `rdtsc` inlined, what DPDK's
/// `rte_get_tsc_cycles` (a static inline function) compiles to, without the call into
/// the C shim (the worker reads it twice a loop).
#[inline]
pub fn tsc_cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc reads the time-stamp counter; no memory is touched.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the cycle counter; no memory is touched.
    unsafe {
        sys::fulcrum_rte_get_tsc_cycles()
    }
}

/// The TSC frequency in Hz (0 before the EAL measured it).
#[inline]
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a global set during rte_eal_init.
    unsafe { sys::fulcrum_rte_get_tsc_hz() }
}

/// Initialises DPDK's packet-capture server (`rte_pdump_init`), so `dpdk-dumpcap` and
/// `dpdk-pdump` can capture the ports of this process. Call once, after [`Eal::init`].
pub fn pdump_init() -> Result<(), DpdkError> {
    ensure_initialised()?;
    // SAFETY: the EAL is initialised; rte_pdump_init registers a multi-process action
    // and takes no pointers.
    let ret = unsafe { sys::rte_pdump_init() };
    if ret < 0 {
        return Err(DpdkError::from_rte_errno("rte_pdump_init"));
    }
    Ok(())
}
