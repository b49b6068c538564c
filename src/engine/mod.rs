//! The per-packet decision: parse, look the flow up, pick a backend, rewrite, verdict.
//!
//! [`Engine::process`] is the whole data path for one packet; it runs on any
//! [`PacketBuf`](crate::buffer::PacketBuf), a DPDK mbuf in the workers, a heap buffer in
//! tests, benchmarks and fuzzing. [`Engine::process_burst`] is the same for a burst, in
//! passes that overlap the flow table's cache misses; the workers use it.

mod counters;
mod datapath;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod outcome;
mod parse;
mod reply;
mod snapshot;
#[cfg(test)]
mod tests;
mod verdict;
mod vip_index;

pub use counters::{BackendCounters, Counters, BACKEND_COUNTER_SLOTS};
pub use datapath::{Engine, EngineConfig, NatKey, NatValue, MAX_BURST, NAT_PORT_TRIES};
pub use forward::{Encap, Ipip4Template, Ipip6Template, GUE_SPORT_BASE, GUE_SPORT_MASK};
pub use outcome::{ConnectOutcome, HandshakeWatch, HANDSHAKE_WATCH_CAPACITY};
pub use parse::{parse, Meta, L3};
pub use snapshot::{
    Backend, BackendId, BackendState, Forwarding, Mac, NatPorts, PortInfo, Service, ServiceId,
    ServiceMode, Snapshot, VipKey, PROTO_TCP, PROTO_UDP,
};
pub use verdict::{DropReason, Verdict};
pub use vip_index::VipIndex;
