//! Owned packet mbufs and fixed-size bursts of them.
//!
//! Only single-segment mbufs are supported: [`Mbuf::data`] is the first
//! segment, and the ports this crate configures never chain segments (no
//! scatter offload; size the pool's data room for the MTU).

use core::fmt;
use core::ptr::NonNull;

use fulcrum_dpdk_sys as sys;

/// Why an mbuf operation was refused (the same cases as fulcrum's `BufError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MbufError {
    /// Not enough headroom to prepend the requested bytes.
    #[error("not enough headroom")]
    NoHeadroom,
    /// Not enough tailroom to append the requested bytes.
    #[error("not enough tailroom")]
    NoTailroom,
    /// Asked to remove more bytes than the packet holds.
    #[error("packet shorter than the bytes to remove")]
    TooShort,
}

/// An owned DPDK packet buffer: freed to its pool on drop.
///
/// The methods mirror fulcrum's `PacketBuf` trait one for one, so the trait
/// impl in fulcrum is plain delegation.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the only handle to its rte_mbuf; freeing it from another
// thread is allowed by DPDK (pools are thread-safe).
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only reads the mbuf; mutation needs `&mut Mbuf`.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid packet mbuf (from a pktmbuf pool) that
    /// nothing else uses or frees afterwards, with reference count 1 and one
    /// segment.
    #[inline]
    pub unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }

    /// Gives up ownership without freeing.
    #[inline]
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let raw = self.0;
        core::mem::forget(self);
        raw
    }

    /// The raw mbuf, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf for its whole life.
        unsafe { self.0.as_ref() }
    }

    /// The packet bytes (of the first segment).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // buffer (a DPDK invariant every mutator here keeps); the bytes are
        // borrowed for as long as self.
        unsafe {
            core::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// The packet bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (ptr, len) = (m.buf_addr.cast::<u8>(), usize::from(m.data_len));
        let off = usize::from(m.data_off);
        // SAFETY: as in `data`; `&mut self` makes the borrow exclusive and the
        // mbuf's reference count is 1 (from_raw contract), so nobody else
        // reads the buffer.
        unsafe { core::slice::from_raw_parts_mut(ptr.add(off), len) }
    }

    /// Grows the packet by `n` bytes at the front (the new bytes are unspecified).
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<(), MbufError> {
        let n16 = u16::try_from(n).map_err(|_| MbufError::NoHeadroom)?;
        if n > self.headroom() {
            return Err(MbufError::NoHeadroom);
        }
        if let Some(m) = self.single_segment() {
            // what rte_pktmbuf_prepend does to one segment, without the call
            m.data_off -= n16;
            m.data_len += n16;
            m.pkt_len += u32::from(n16);
            return Ok(());
        }
        // SAFETY: the mbuf is valid and owned; n fits the headroom (checked),
        // and DPDK checks again and returns NULL rather than overrun.
        let p = unsafe { sys::fulcrum_rte_pktmbuf_prepend(self.as_ptr(), n16) };
        if p.is_null() {
            Err(MbufError::NoHeadroom)
        } else {
            Ok(())
        }
    }

    /// Sets the packet length to `len` (growing or shrinking at the end), then grows it
    /// by `front` bytes at the front: [`set_len`](Self::set_len) and
    /// [`prepend`](Self::prepend) in one step, which reads the header's lengths once
    /// and writes each once (the encapsulating data path does both to every packet; in
    /// two steps the second re-reads what the first just stored, a narrow store then a
    /// wider load, which the CPU cannot forward). Nothing changes on an error.
    #[inline(always)]
    pub fn set_len_and_prepend(&mut self, len: usize, front: usize) -> Result<(), MbufError> {
        if let Some(m) = self.single_segment() {
            let (off, buf_len) = (usize::from(m.data_off), usize::from(m.buf_len));
            if off + len > buf_len {
                return Err(MbufError::NoTailroom);
            }
            if front > off {
                return Err(MbufError::NoHeadroom);
            }
            // both fit the buffer of at most u16::MAX bytes, so the casts are exact
            let data_len = (front + len) as u16;
            m.data_off = (off - front) as u16;
            m.data_len = data_len;
            m.pkt_len = u32::from(data_len);
            return Ok(());
        }
        self.set_len_and_prepend_chained(len, front)
    }

    /// [`set_len_and_prepend`](Self::set_len_and_prepend) for a chain of segments (out of
    /// line: the single-segment case above is the one every encapsulated packet takes).
    #[cold]
    #[inline(never)]
    fn set_len_and_prepend_chained(&mut self, len: usize, front: usize) -> Result<(), MbufError> {
        if front > self.headroom() {
            return Err(MbufError::NoHeadroom);
        }
        self.set_len(len)?;
        self.prepend(front)
    }

    /// Removes `n` bytes from the front.
    #[inline]
    pub fn adjust(&mut self, n: usize) -> Result<(), MbufError> {
        let n16 = u16::try_from(n).map_err(|_| MbufError::TooShort)?;
        if n > self.len() {
            return Err(MbufError::TooShort);
        }
        // SAFETY: as in prepend; DPDK returns NULL when n exceeds data_len.
        let p = unsafe { sys::fulcrum_rte_pktmbuf_adj(self.as_ptr(), n16) };
        if p.is_null() {
            Err(MbufError::TooShort)
        } else {
            Ok(())
        }
    }

    /// Removes `n` bytes from the end.
    #[inline]
    pub fn trim(&mut self, n: usize) -> Result<(), MbufError> {
        let n16 = u16::try_from(n).map_err(|_| MbufError::TooShort)?;
        if n > self.len() {
            return Err(MbufError::TooShort);
        }
        if let Some(m) = self.single_segment() {
            // rte_pktmbuf_trim on one segment (n <= data_len, checked above)
            m.data_len -= n16;
            m.pkt_len -= u32::from(n16);
            return Ok(());
        }
        // SAFETY: as in prepend; DPDK returns -1 when n exceeds the last
        // segment's data_len.
        let ret = unsafe { sys::fulcrum_rte_pktmbuf_trim(self.as_ptr(), n16) };
        if ret != 0 {
            Err(MbufError::TooShort)
        } else {
            Ok(())
        }
    }

    /// Grows the packet by `n` bytes at the end (the new bytes are unspecified).
    #[inline]
    pub fn append(&mut self, n: usize) -> Result<(), MbufError> {
        let n16 = u16::try_from(n).map_err(|_| MbufError::NoTailroom)?;
        if n > self.tailroom() {
            return Err(MbufError::NoTailroom);
        }
        if let Some(m) = self.single_segment() {
            // rte_pktmbuf_append on one segment (n fits the tailroom, checked above)
            m.data_len += n16;
            m.pkt_len += u32::from(n16);
            return Ok(());
        }
        // SAFETY: as in prepend; DPDK returns NULL when n exceeds the tailroom.
        let p = unsafe { sys::fulcrum_rte_pktmbuf_append(self.as_ptr(), n16) };
        if p.is_null() {
            Err(MbufError::NoTailroom)
        } else {
            Ok(())
        }
    }

    /// The mbuf's header, writable, when the packet is one segment (what every
    /// resize of the data path meets; chains take DPDK's own functions).
    #[inline]
    fn single_segment(&mut self) -> Option<&mut sys::rte_mbuf> {
        // SAFETY: the mbuf is valid and owned (from_raw contract) and `&mut self` makes
        // this the only reference to its header.
        let m = unsafe { self.0.as_mut() };
        (m.nb_segs == 1 && m.next.is_null()).then_some(m)
    }

    /// Bytes free before the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Bytes free after the packet (in the first segment).
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len)
            .saturating_sub(usize::from(m.data_off))
            .saturating_sub(usize::from(m.data_len))
    }

    /// The packet length in bytes (of the first segment).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// Whether the packet is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NIC's RSS hash, when the device computed one
    /// (`ol_flags & RTE_MBUF_F_RX_RSS_HASH`).
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let mut hash = 0u32;
        // SAFETY: the mbuf is valid; the shim writes one u32 to `hash`.
        let has = unsafe { sys::fulcrum_rte_pktmbuf_rss_hash(self.as_ptr(), &mut hash) };
        (has != 0).then_some(hash)
    }

    /// Sets the packet length to `n`, growing or shrinking at the end.
    #[inline]
    pub fn set_len(&mut self, n: usize) -> Result<(), MbufError> {
        let len = self.len();
        if n >= len {
            self.append(n - len)
        } else {
            self.trim(len - n)
        }
    }

    /// The total packet length over all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// The number of segments (1 for everything this crate produces).
    #[inline]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The port the mbuf was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// The mbuf's reference count.
    #[inline]
    pub fn refcnt(&self) -> u16 {
        // SAFETY: the mbuf is valid.
        unsafe { sys::fulcrum_rte_mbuf_refcnt_read(self.as_ptr()) }
    }

    /// Prefetches the first cache line of the packet data.
    #[inline]
    pub fn prefetch_data(&self) {
        let m = self.raw();
        // a hint that never faults; the address is inside the mbuf's buffer anyway
        let p = m
            .buf_addr
            .cast::<u8>()
            .wrapping_add(usize::from(m.data_off));
        // SAFETY: `p` is only used as a prefetch address (an inline instruction on
        // x86_64, DPDK's function elsewhere)
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
        }
        #[cfg(not(target_arch = "x86_64"))]
        unsafe {
            sys::fulcrum_rte_prefetch0(p.cast())
        }
    }

    /// Copies `bytes` into the packet, replacing its contents.
    pub fn copy_from_slice(&mut self, bytes: &[u8]) -> Result<(), MbufError> {
        self.set_len(bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf and is dropped once.
        unsafe { sys::fulcrum_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("headroom", &self.headroom())
            .field("len", &self.len())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

/// The burst size: how many mbufs an [`MbufBatch`] holds.
pub const BURST: usize = 32;

/// Up to [`BURST`] owned mbufs in a fixed array, the unit of RX and TX.
///
/// Mbufs left in the batch are freed when it is dropped or cleared, so
/// nothing leaks. No allocation: the batch is a plain array.
pub struct MbufBatch {
    slots: [*mut sys::rte_mbuf; BURST],
    len: usize,
}

// SAFETY: the batch owns its mbufs (see Mbuf's Send).
unsafe impl Send for MbufBatch {}

impl Default for MbufBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl MbufBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        MbufBatch {
            slots: [core::ptr::null_mut(); BURST],
            len: 0,
        }
    }

    /// The number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the batch holds [`BURST`] mbufs.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// Adds `m` at the end, or hands it back when the batch is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.slots[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Removes the last mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        self.len = self.len.checked_sub(1)?;
        let p = self.slots[self.len];
        // SAFETY: slots[..len] hold owned non-null mbufs; this one just left
        // the batch, so ownership moves to the returned Mbuf.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    /// The mbufs held.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, which has
        // the layout of *mut rte_mbuf, and slots[..len] are non-null owned
        // mbufs borrowed for as long as self.
        unsafe { core::slice::from_raw_parts(self.slots.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The mbufs held, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in as_slice; the borrow is exclusive. Replacing an Mbuf
        // through the slice drops the old one, so ownership stays exact.
        unsafe { core::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Takes every mbuf out, in order. Those the iterator does not yield are
    /// freed when it is dropped.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let end = self.len;
        // Ownership moves to the Drain now, so a leaked Drain leaks mbufs but
        // never frees one twice.
        self.len = 0;
        Drain {
            batch: self,
            pos: 0,
            end,
        }
    }

    /// Frees every mbuf held.
    #[inline]
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: slots[..len] are owned mbufs, freed once, then forgotten.
            unsafe { sys::fulcrum_rte_pktmbuf_free_bulk(self.slots.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Pointer to the first free slot, for DPDK calls that fill the batch.
    #[inline]
    pub(crate) fn spare_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
        // len <= BURST, so this is at most one past the end.
        self.slots[self.len..].as_mut_ptr()
    }

    /// Pointer to the first slot.
    #[inline]
    pub(crate) fn slots_ptr(&mut self) -> *mut *mut sys::rte_mbuf {
        self.slots.as_mut_ptr()
    }

    /// Sets the number of mbufs held.
    ///
    /// # Safety
    ///
    /// `slots[..len]` must be owned non-null mbufs, `len <= BURST`.
    #[inline]
    pub(crate) unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= BURST);
        self.len = len;
    }

    /// Frees `slots[from..len]` and keeps `slots[..from]`.
    #[inline]
    pub(crate) fn truncate(&mut self, from: usize) {
        if from < self.len {
            // SAFETY: slots[from..len] are owned mbufs, freed once and then
            // dropped from the batch.
            unsafe {
                sys::fulcrum_rte_pktmbuf_free_bulk(
                    self.slots[from..].as_mut_ptr(),
                    (self.len - from) as u32,
                )
            };
            self.len = from;
        }
    }

    /// Drops the first `n` slots (whose mbufs someone else took) and moves the
    /// rest to the front.
    #[inline]
    pub(crate) fn forget_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.slots.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl Drop for MbufBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

impl fmt::Debug for MbufBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The iterator of [`MbufBatch::drain`].
pub struct Drain<'a> {
    batch: &'a mut MbufBatch,
    pos: usize,
    end: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.pos == self.end {
            return None;
        }
        let p = self.batch.slots[self.pos];
        self.pos += 1;
        // SAFETY: slots[pos..end] are owned non-null mbufs that left the
        // batch in `drain`; each is yielded once.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.pos;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        if self.pos < self.end {
            // SAFETY: slots[pos..end] are owned mbufs not yielded; freed once.
            unsafe {
                sys::fulcrum_rte_pktmbuf_free_bulk(
                    self.batch.slots[self.pos..].as_mut_ptr(),
                    (self.end - self.pos) as u32,
                )
            };
        }
    }
}
