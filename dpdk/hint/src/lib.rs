//! Memory hints for the packet engine, which forbids `unsafe`: a cache-line prefetch of
//! something it holds a reference to, and transparent-huge-page advice for the large
//! arrays it allocates at start (the flow table).
//!
//! Both are hints: they never change what a program computes, only how long its loads
//! take. They live next to the DPDK bindings because that is where fulcrum keeps
//! `unsafe`, but they do not link DPDK, so the engine without the `dpdk` feature (tests,
//! fuzzing, benches) gets them too.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// Asks the CPU to bring the cache line holding `*r` into all cache levels, without
/// waiting for it. Used to overlap the flow-table misses of a whole burst.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, reads no value into the program and
    // the address comes from a live reference anyway. SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// The huge-page size the advice aligns to (x86_64 and arm64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Advises the kernel to back the whole 2 MiB pages inside `bytes` bytes at `start`
/// with transparent huge pages (`madvise(MADV_HUGEPAGE)`), for memory not yet touched.
/// A big table read at random (the flow table's bucket heads and entries) otherwise
/// misses the TLB on nearly every lookup. Returns whether the kernel took the advice;
/// a refusal (THP disabled, not Linux) only costs speed.
pub fn advise_huge_pages<T>(region: &[core::mem::MaybeUninit<T>]) -> bool {
    let start = region.as_ptr() as usize;
    let end = start + core::mem::size_of_val(region);
    let first = start.next_multiple_of(HUGE_PAGE);
    let last = end - end % HUGE_PAGE;
    if last <= first {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: [first, last) lies inside `region`, memory this process owns; the advice
        // changes only how the kernel backs the pages, never their contents or mapping.
        let rc = unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            )
        };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}
