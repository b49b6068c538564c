//! Packet-buffer pools.

use core::ptr::NonNull;
use std::ffi::CString;

use fulcrum_dpdk_sys as sys;

use crate::eal::ensure_initialised;
use crate::error::DpdkError;
use crate::mbuf::{Mbuf, MbufBatch, BURST};

/// A DPDK packet mbuf pool (`rte_pktmbuf_pool_create`).
///
/// A cheap handle: clones refer to the same pool. Pools are never freed (an
/// RX queue or an mbuf may still point into one); they live until the EAL is
/// cleaned up. Allocation and free are thread-safe (the default `ring_mp_mc`
/// driver); lcores get a per-lcore cache of `cache` mbufs.
#[derive(Clone, Debug)]
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: an rte_mempool with the default multi-producer/multi-consumer ops is
// safe to use from any thread; the handle is only a pointer to it.
unsafe impl Send for Mempool {}
// SAFETY: as above; every method is a thread-safe DPDK call.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool named `name` (unique in the process, at most 25 bytes)
    /// of `n` mbufs (best `2^k - 1`) with a per-lcore cache of `cache` and
    /// `data_room` bytes of buffer each, headroom included (2048 + 128 is
    /// DPDK's default, [`Mempool::DEFAULT_DATA_ROOM`]).
    pub fn new(name: &str, n: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        ensure_initialised()?;
        let cname = CString::new(name).map_err(|_| {
            DpdkError::InvalidArgument(format!("mempool name {name:?} contains a NUL byte"))
        })?;
        // SAFETY: the EAL is initialised and cname is a valid C string. DPDK
        // validates the sizes; socket -1 is SOCKET_ID_ANY.
        let raw = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                data_room,
                sys::rte_socket_id() as i32,
            )
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::from_rte_errno("rte_pktmbuf_pool_create"))
    }

    /// DPDK's default mbuf data room, `RTE_MBUF_DEFAULT_BUF_SIZE` (2048 bytes of
    /// data after 128 of headroom).
    pub const DEFAULT_DATA_ROOM: u16 = 2048 + 128;

    /// The raw pool, for FFI (e.g. `rte_eth_rx_queue_setup`).
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// The number of mbufs the pool holds in all.
    pub fn capacity(&self) -> u32 {
        // SAFETY: raw points to a live pool (pools are never freed).
        unsafe { (*self.raw.as_ptr()).size }
    }

    /// Free mbufs (in the ring and in the lcore caches).
    pub fn avail_count(&self) -> u32 {
        // SAFETY: raw points to a live pool.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently allocated.
    pub fn in_use_count(&self) -> u32 {
        // SAFETY: raw points to a live pool.
        unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// One mbuf (reset, empty, default headroom), or `None` if the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: raw points to a live packet-mbuf pool.
        let m = unsafe { sys::fulcrum_rte_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a non-null result is a fresh mbuf that we now own alone.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Appends `n` fresh mbufs to `batch`, all or none. Fails with
    /// [`DpdkError::PoolEmpty`] when the pool has fewer than `n` free, or
    /// [`DpdkError::InvalidArgument`] when they would not fit in the batch.
    pub fn alloc_bulk(&self, batch: &mut MbufBatch, n: usize) -> Result<(), DpdkError> {
        if n > BURST - batch.len() {
            return Err(DpdkError::InvalidArgument(format!(
                "{n} mbufs do not fit in a batch holding {}",
                batch.len()
            )));
        }
        // SAFETY: the spare slots of the batch have room for n pointers; on
        // success DPDK wrote n fresh mbufs there, which the batch now owns.
        unsafe {
            let ret =
                sys::fulcrum_rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), batch.spare_ptr(), n as u32);
            if ret != 0 {
                return Err(DpdkError::PoolEmpty);
            }
            batch.set_len(batch.len() + n);
        }
        Ok(())
    }
}
