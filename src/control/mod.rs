//! The control side's logic that needs no DPDK: stable ids, neighbours, and building
//! the snapshot workers read.

mod build;
pub mod frames;
mod neighbors;
mod registry;

pub use build::{
    backend_key, build_snapshot, maglev_name, maglev_table, route, BuildError, Overrides,
    NAT_PORT_BASE, NAT_PORT_END,
};
pub use neighbors::{NeighborTable, REFRESH_MS, RETRY_MS, STALE_MS};
pub use registry::{BackendKey, Departed, IdRegistry};
