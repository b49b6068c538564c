//! The global allocator of fulcrum's binaries: mimalloc, called the way its C API is
//! meant to be called.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every layout to `mi_malloc_aligned`, even
//! when its alignment is one any block already has. In mimalloc 3 that call keeps a fast
//! path only for blocks of at most 1 KiB; a larger block whose size class is not a power
//! of two goes to the over-allocating path (a larger block, an interior pointer, a
//! dearer free). The L7 pool makes three or four such allocations a request (the boxed
//! request future, the upstream response's header map, a timer), which callgrind
//! counted at ~740 instructions of an HTTP/1.1 request's ~29,700 in that path alone.
//!
//! [`Mimalloc`] asks for a plain `mi_malloc` block whenever the plain block's alignment
//! satisfies the layout (see [`plain`]), and for an aligned one otherwise.
//!
//! Lives beside the DPDK bindings, where fulcrum keeps its `unsafe`; links no DPDK.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block is word-aligned.
const WORD: usize = core::mem::size_of::<usize>();
/// `sizeof(max_align_t)` on x86_64 and arm64: a block whose size is a multiple of it is
/// aligned to it (its size class is then a multiple of 16 bytes, and a page's blocks
/// start 16-aligned), as C's `malloc` promises.
const MAX_ALIGN: usize = 16;

/// Whether a plain `mi_malloc(size)` block is aligned enough for `align`: alignment up to
/// a word, or up to [`MAX_ALIGN`] for a size that is a multiple of it.
#[inline(always)]
pub const fn plain(size: usize, align: usize) -> bool {
    align <= WORD || (align <= MAX_ALIGN && size.is_multiple_of(MAX_ALIGN))
}

/// mimalloc as the global allocator (`#[global_allocator] static A: Mimalloc = Mimalloc;`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mimalloc;

// SAFETY: every block comes from mimalloc, which is thread-safe, returns null on failure
// and frees any of its blocks (aligned or not) with `mi_free`. A block is aligned as its
// layout asks: `mi_malloc`'s only where `plain` says its alignment suffices (documented
// above and checked by this crate's tests), `mi_malloc_aligned`'s everywhere else.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: plain C calls; a null return is the failure GlobalAlloc expects.
        unsafe {
            if plain(size, align) {
                mi::mi_malloc(size).cast()
            } else {
                mi::mi_malloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(size, align) {
                mi::mi_zalloc(size).cast()
            } else {
                mi::mi_zalloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract), so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: `ptr` came from this allocator; mimalloc's realloc keeps the contents
        // up to the smaller size and returns null (leaving `ptr` valid) on failure.
        unsafe {
            if plain(new_size, align) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Sizes 1 to 300 bytes, then every 37th to 70,000, 1 MiB and 3 MiB, at every alignment
    /// from 1 to 4,096: allocated, written, zeroed, grown, shrunk and freed through the
    /// allocator, each block aligned as its layout asks.
    #[test]
    fn blocks_are_aligned_as_their_layouts_ask() {
        let a = Mimalloc;
        let sizes = (1..=300usize)
            .chain((301..70_000).step_by(37))
            .chain([1 << 20, 3 << 20]);
        for size in sizes {
            for shift in 0..=12 {
                let align = 1usize << shift;
                let layout = Layout::from_size_align(size, align).unwrap();
                let mut held = Vec::new();
                // several at once, so blocks come from different places of a page
                for _ in 0..3 {
                    // SAFETY: a non-zero size; the block is freed below with its layout.
                    let p = unsafe { a.alloc(layout) };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    // SAFETY: `size` bytes are ours.
                    unsafe { p.write_bytes(0xa5, size) };
                    held.push(p);
                }
                // SAFETY: as above.
                let z = unsafe { a.alloc_zeroed(layout) };
                assert_eq!(z as usize % align, 0, "zeroed size {size} align {align}");
                // SAFETY: `size` bytes are ours and were zeroed.
                assert!(unsafe { core::slice::from_raw_parts(z, size) }
                    .iter()
                    .all(|&b| b == 0));
                held.push(z);
                for new_size in [size / 2 + 1, size * 2 + 5] {
                    let p = held.pop().unwrap();
                    let old = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: `p` was allocated with `old` (every block here has `size`).
                    let q = unsafe { a.realloc(p, old, new_size) };
                    assert!(!q.is_null());
                    assert_eq!(
                        q as usize % align,
                        0,
                        "realloc {size}->{new_size} align {align}"
                    );
                    // SAFETY: the block is now `new_size` bytes with `old`'s alignment.
                    unsafe { a.dealloc(q, Layout::from_size_align(new_size, align).unwrap()) };
                    // SAFETY: a non-zero size, freed below.
                    held.push(unsafe { a.alloc(layout) });
                }
                for p in held {
                    // SAFETY: each was allocated with `layout`.
                    unsafe { a.dealloc(p, layout) };
                }
            }
        }
    }

    #[test]
    fn plain_only_where_malloc_alignment_suffices() {
        assert!(plain(1, 1));
        assert!(plain(24, 8));
        assert!(plain(2600, 8));
        assert!(plain(32, 16));
        assert!(!plain(24, 16), "a 24-byte class is only word-aligned");
        assert!(!plain(64, 32));
        assert!(!plain(4096, 4096));
    }
}
