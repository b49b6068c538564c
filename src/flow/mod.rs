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
//! Sizes: `FlowEntry<FlowKey, u32>` is 64 bytes; the table adds one `u32`
//! bucket head per entry (rounded up to a power of two), so 68 to 72 bytes per
//! flow of capacity.

mod key;
mod state;
mod table;

pub use key::{FlowKey, FlowKeyT, IpAddr16, IPPROTO_TCP, IPPROTO_UDP};
pub use state::{tcp_flags, FlowState, FlowTimeouts};
pub use table::{
    FlowEntry, FlowStats, FlowTable, FlowTableError, InsertOutcome, BUCKETS_PER_FLOW,
    INITIAL_BUCKETS, MAX_CAPACITY, MAX_CHAIN, NIL,
};

/// The forward table's entry (64 bytes; checked at compile time).
pub type ForwardEntry = FlowEntry<FlowKey, u32>;
const _: () = assert!(core::mem::size_of::<ForwardEntry>() <= 64);
