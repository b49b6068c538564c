//! The DPDK mbuf as a [`PacketBuf`]: the engine runs on it unchanged.

use fulcrum_dpdk::{Mbuf, MbufError};

use crate::buffer::{BufError, PacketBuf};

fn err(e: MbufError) -> BufError {
    match e {
        MbufError::NoHeadroom => BufError::NoHeadroom,
        MbufError::NoTailroom => BufError::NoTailroom,
        MbufError::TooShort => BufError::TooShort,
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Result<(), BufError> {
        Mbuf::prepend(self, n).map_err(err)
    }
    #[inline(always)]
    fn set_len_and_prepend(&mut self, len: usize, front: usize) -> Result<(), BufError> {
        Mbuf::set_len_and_prepend(self, len, front).map_err(err)
    }
    #[inline]
    fn adjust(&mut self, n: usize) -> Result<(), BufError> {
        Mbuf::adjust(self, n).map_err(err)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> Result<(), BufError> {
        Mbuf::trim(self, n).map_err(err)
    }
    #[inline]
    fn append(&mut self, n: usize) -> Result<(), BufError> {
        Mbuf::append(self, n).map_err(err)
    }
    #[inline]
    fn headroom(&self) -> usize {
        Mbuf::headroom(self)
    }
    #[inline]
    fn tailroom(&self) -> usize {
        Mbuf::tailroom(self)
    }
    #[inline]
    fn len(&self) -> usize {
        Mbuf::len(self)
    }
    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        Mbuf::rss_hash(self)
    }
}
