//! The packet buffer the engine works on.
//!
//! A packet is a contiguous run of bytes with room before it (headroom, for
//! encapsulation headers) and after it (tailroom). The DPDK mbuf implements
//! [`PacketBuf`] in `fulcrum-dpdk`; [`HeapBuf`] implements it over a `Vec` for
//! tests, fuzzing and pcap tooling. Every operation that could run past the
//! buffer returns a [`BufError`] instead of panicking.

use core::fmt;

/// Why a buffer operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufError {
    /// Not enough headroom to prepend the requested bytes.
    NoHeadroom,
    /// Not enough tailroom to append the requested bytes.
    NoTailroom,
    /// Asked to remove more bytes than the packet holds.
    TooShort,
}

impl fmt::Display for BufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BufError::NoHeadroom => "not enough headroom",
            BufError::NoTailroom => "not enough tailroom",
            BufError::TooShort => "packet shorter than the bytes to remove",
        })
    }
}

impl std::error::Error for BufError {}

/// A packet held in a buffer with head- and tailroom.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front (the new bytes are unspecified).
    fn prepend(&mut self, n: usize) -> Result<(), BufError>;
    /// Removes `n` bytes from the front.
    fn adjust(&mut self, n: usize) -> Result<(), BufError>;
    /// Removes `n` bytes from the end.
    fn trim(&mut self, n: usize) -> Result<(), BufError>;
    /// Grows the packet by `n` bytes at the end (the new bytes are unspecified).
    fn append(&mut self, n: usize) -> Result<(), BufError>;
    /// Bytes free before the packet.
    fn headroom(&self) -> usize;
    /// Bytes free after the packet.
    fn tailroom(&self) -> usize;
    /// The packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the packet is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The NIC's RSS hash of the packet, when the device computed one.
    fn rss_hash(&self) -> Option<u32> {
        None
    }
    /// Sets the packet length to `n`, growing or shrinking at the end.
    fn set_len(&mut self, n: usize) -> Result<(), BufError> {
        let len = self.len();
        if n >= len {
            self.append(n - len)
        } else {
            self.trim(len - n)
        }
    }
    /// [`set_len`](Self::set_len) to `len`, then [`prepend`](Self::prepend) `front`
    /// bytes; nothing changes on an error (`NoHeadroom` when `front` does not fit).
    /// Buffers whose lengths live in one header (the mbuf) do it in one step.
    fn set_len_and_prepend(&mut self, len: usize, front: usize) -> Result<(), BufError> {
        if front > self.headroom() {
            return Err(BufError::NoHeadroom);
        }
        self.set_len(len)?;
        self.prepend(front)
    }
}

/// Default headroom of a [`HeapBuf`], the same as DPDK's `RTE_PKTMBUF_HEADROOM`.
pub const DEFAULT_HEADROOM: usize = 128;
/// Default total size of a [`HeapBuf`], the same as a default DPDK mbuf data room.
pub const DEFAULT_BUF_SIZE: usize = 2048 + DEFAULT_HEADROOM;

/// A [`PacketBuf`] over a fixed-size heap allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct HeapBuf {
    storage: Box<[u8]>,
    start: usize,
    end: usize,
}

impl HeapBuf {
    /// A buffer holding a copy of `bytes` with [`DEFAULT_HEADROOM`] before it.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let size = DEFAULT_BUF_SIZE.max(DEFAULT_HEADROOM + bytes.len());
        Self::with_room(
            bytes,
            DEFAULT_HEADROOM,
            size - DEFAULT_HEADROOM - bytes.len(),
        )
    }

    /// A buffer holding a copy of `bytes` with exactly `headroom` and `tailroom` bytes around it.
    pub fn with_room(bytes: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut storage = vec![0u8; headroom + bytes.len() + tailroom].into_boxed_slice();
        storage[headroom..headroom + bytes.len()].copy_from_slice(bytes);
        HeapBuf {
            storage,
            start: headroom,
            end: headroom + bytes.len(),
        }
    }
}

impl fmt::Debug for HeapBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapBuf")
            .field("headroom", &self.start)
            .field("len", &(self.end - self.start))
            .finish()
    }
}

impl PacketBuf for HeapBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> Result<(), BufError> {
        self.start = self.start.checked_sub(n).ok_or(BufError::NoHeadroom)?;
        Ok(())
    }
    fn adjust(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.end - self.start {
            return Err(BufError::TooShort);
        }
        self.start += n;
        Ok(())
    }
    fn trim(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.end - self.start {
            return Err(BufError::TooShort);
        }
        self.end -= n;
        Ok(())
    }
    fn append(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.storage.len() - self.end {
            return Err(BufError::NoTailroom);
        }
        self.end += n;
        Ok(())
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_errors() {
        let mut b = HeapBuf::with_room(&[1, 2, 3], 2, 1);
        assert_eq!(b.prepend(3), Err(BufError::NoHeadroom));
        b.prepend(2).unwrap();
        assert_eq!(b.data(), &[0, 0, 1, 2, 3]);
        assert_eq!(b.append(2), Err(BufError::NoTailroom));
        b.append(1).unwrap();
        assert_eq!(b.adjust(7), Err(BufError::TooShort));
        b.adjust(2).unwrap();
        b.trim(1).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert_eq!(b.trim(4), Err(BufError::TooShort));
        b.set_len(1).unwrap();
        assert_eq!(b.data(), &[1]);
    }
}
