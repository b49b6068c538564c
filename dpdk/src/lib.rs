//! Thin safe wrappers over DPDK 22.11 for fulcrum: the EAL, mbuf pools, owned
//! mbufs and bursts, ethdev ports and per-worker queue handles. No
//! load-balancer logic lives here.
//!
//! ```no_run
//! use fulcrum_dpdk::{Eal, Mempool, MbufBatch, Port, PortConfig};
//! let args: Vec<String> = ["--no-huge", "-m", "256", "--no-pci", "--file-prefix=demo", "--vdev=net_ring0"]
//!     .iter().map(|s| s.to_string()).collect();
//! let eal = Eal::init(&args)?;
//! let pool = Mempool::new("pool", 8191, 256, Mempool::DEFAULT_DATA_ROOM)?;
//! let mut port = Port::by_name("net_ring0")?;
//! port.configure(&PortConfig::default(), &pool)?;
//! port.start()?;
//! let (mut rx, mut tx) = port.queues()?;
//! let mut batch = MbufBatch::new();
//! rx[0].rx_burst(&mut batch);
//! tx[0].tx_burst(&mut batch);
//! # drop((rx, tx)); drop(port); drop(eal);
//! # Ok::<(), fulcrum_dpdk::DpdkError>(())
//! ```
//!
//! # EAL arguments that work on the development VM (as root)
//!
//! * without hugepages: `-l 0-1 --no-pci --no-huge -m 256
//!   --file-prefix=<unique> --vdev=...`
//! * with hugepages mounted on `/dev/hugepages`: `-l 0-1 --no-pci -m 256
//!   --huge-unlink --file-prefix=<unique> --vdev=...`
//!
//! Every process needs its own `--file-prefix` (the tests use name + pid) so
//! parallel runs do not collide; `rte_eal_cleanup` leaves
//! `/var/run/dpdk/<prefix>` behind.
//!
//! Drivers for virtual devices (`net_ring`, `net_null`, `net_pcap`,
//! `net_af_packet`, `net_af_xdp`, `net_tap`, `net_memif`, `net_virtio_user`)
//! are loaded by the EAL from Debian's plugin folder without `-d`; see
//! [`fulcrum_dpdk_sys`] and [`PMD_DIR`].

mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use eal::{
    is_initialised, lcore_id, pdump_init, register_thread, tsc_cycles, tsc_hz, unregister_thread,
    Eal,
};
pub use error::{strerror, DpdkError};
pub use mbuf::{Drain, Mbuf, MbufBatch, MbufError, BURST};
pub use mempool::Mempool;
pub use port::{
    port_count, ports, LinkStatus, Port, PortConfig, PortInfo, PortStats, RxQueue, TxQueue,
};

pub use fulcrum_dpdk_sys as sys;

/// The folder the EAL loads PMD plugins from (`RTE_EAL_PMD_PATH` of the
/// system DPDK build).
pub const PMD_DIR: &str = {
    let bytes = sys::RTE_EAL_PMD_PATH;
    // Strip the trailing NUL of the C string constant.
    match core::str::from_utf8(bytes.split_at(bytes.len() - 1).0) {
        Ok(s) => s,
        Err(_) => panic!("RTE_EAL_PMD_PATH is not UTF-8"),
    }
};
