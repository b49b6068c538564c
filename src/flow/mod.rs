//! The per-worker connection table.
//!
//! Each worker owns a [`FlowTable`]: fixed capacity, allocated once, no locks,
//! no allocation per packet. It pins a new flow's backend choice so
//! established connections survive backend-set changes, tracks TCP state, and
//! expires idle flows incrementally (see [`FlowTable`]'s module docs in
//! `table.rs` for the layout and the expiry design). The same type serves the
//! forward table ([`FlowKey`] -> backend) and the NAT reverse table (any key
//! implementing [`FlowKeyT`]).
//!
//! Sizes: the forward table's `FlowEntry<FlowKey, FlowTarget>` is 64 bytes; the table adds one `u32`
//! bucket head per entry (rounded up to a power of two), so 68 to 72 bytes per
//! flow of capacity.

mod key;
mod state;
mod table;

pub use key::{FlowKey, FlowKeyT, HashSecret, IpAddr16, IPPROTO_TCP, IPPROTO_UDP};
pub use state::{tcp_flags, FlowState, FlowTimeouts};
pub use table::{
    FlowEntry, FlowStats, FlowTable, FlowTableError, InsertOutcome, BUCKETS_PER_FLOW,
    INITIAL_BUCKETS, MAX_CAPACITY, MAX_CHAIN, NIL,
};

/// What the forward table pins a flow to: its backend and, for full NAT, the source it
/// was given (six bytes, so the entry stays one cache line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowTarget {
    /// The backend's id.
    pub backend: u16,
    /// Full NAT: the LB's source port towards the backend (0 otherwise).
    pub nat_port: u16,
    /// Full NAT: the source address, as an index into the egress port's NAT sources
    /// (0: the port's own address).
    pub nat_addr: u8,
}

/// The forward table's entry (64 bytes; checked at compile time).
pub type ForwardEntry = FlowEntry<FlowKey, FlowTarget>;
const _: () = assert!(core::mem::size_of::<ForwardEntry>() == 64);
