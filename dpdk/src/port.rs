//! Ethernet ports (ethdev) and their RX/TX queue handles.

use core::ffi::{c_char, CStr};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fulcrum_dpdk_sys as sys;

use crate::eal::{ensure_initialised, is_initialised};
use crate::error::{check, DpdkError};
use crate::mbuf::{MbufBatch, BURST};
use crate::mempool::Mempool;

/// Ports held by a live [`Port`] handle, one bit per port id.
static CLAIMED: AtomicU64 = AtomicU64::new(0);
const _: () = assert!(sys::RTE_MAX_ETHPORTS <= 64);

/// How to configure a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// RX queues (one per worker).
    pub rx_queues: u16,
    /// TX queues (one per worker).
    pub tx_queues: u16,
    /// RX descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// TX descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// The MTU, or the device default (1500).
    pub mtu: Option<u16>,
    /// Spread RX over the queues by RSS on IP, TCP and UDP headers, as far as
    /// the device supports it.
    pub rss: bool,
    /// Receive frames for any destination MAC.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            rss: false,
            promiscuous: true,
        }
    }
}

/// What a device reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The PMD's name, e.g. `net_ring`.
    pub driver: String,
    /// Most RX queues the device offers.
    pub max_rx_queues: u16,
    /// Most TX queues the device offers.
    pub max_tx_queues: u16,
    /// Smallest MTU.
    pub min_mtu: u16,
    /// Largest MTU.
    pub max_mtu: u16,
    /// The RSS hash types the device supports (`RTE_ETH_RSS_*` bits).
    pub rss_offloads: u64,
}

/// The basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the device for lack of RX descriptors.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// The link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Whether the link is full duplex.
    pub full_duplex: bool,
}

/// An ethdev port, held by one handle at a time.
///
/// Lifecycle: [`Port::configure`] (sets up every queue), [`Port::start`],
/// [`Port::queues`] hands out the per-worker [`RxQueue`]/[`TxQueue`]
/// handles, and [`Port::stop`]/drop (stop and close) once those are dropped.
/// Dropping a port whose queue handles are still alive leaves it running
/// (a worker may still be polling it).
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    /// Shared with every queue handle given out; the strong count says how
    /// many are alive.
    handles: Arc<()>,
    queues: Option<(u16, u16)>,
    started: bool,
    rss_hf: u64,
}

impl Port {
    /// The port of the device `name` (`rte_eth_dev_get_port_by_name`), e.g.
    /// `net_ring0` or a PCI address.
    pub fn by_name(name: &str) -> Result<Port, DpdkError> {
        ensure_initialised()?;
        let cname = CString::new(name).map_err(|_| DpdkError::NoSuchPort(name.to_owned()))?;
        let mut id = 0u16;
        // SAFETY: the EAL is initialised, cname is a C string and id a valid
        // out-pointer.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(DpdkError::NoSuchPort(name.to_owned()));
        }
        Self::claim(id, name.to_owned())
    }

    /// The port with id `id`.
    pub fn from_id(id: u16) -> Result<Port, DpdkError> {
        ensure_initialised()?;
        let name = port_name(id).ok_or_else(|| DpdkError::NoSuchPort(format!("#{id}")))?;
        Self::claim(id, name)
    }

    fn claim(id: u16, name: String) -> Result<Port, DpdkError> {
        if u32::from(id) >= sys::RTE_MAX_ETHPORTS {
            return Err(DpdkError::NoSuchPort(name));
        }
        let bit = 1u64 << id;
        if CLAIMED.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Err(DpdkError::PortInUse(id));
        }
        Ok(Port {
            id,
            name,
            handles: Arc::new(()),
            queues: None,
            started: false,
            rss_hf: 0,
        })
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the device supports.
    pub fn info(&self) -> Result<PortInfo, DpdkError> {
        let info = self.raw_info()?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a static C string owned by the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            rss_offloads: info.flow_type_rss_offloads,
        })
    }

    fn raw_info(&self) -> Result<sys::rte_eth_dev_info, DpdkError> {
        // SAFETY: rte_eth_dev_info is plain C data; all-zero is a valid value.
        let mut info: sys::rte_eth_dev_info = unsafe { core::mem::zeroed() };
        // SAFETY: the port id is valid (claimed) and info a valid out-pointer.
        check("rte_eth_dev_info_get", unsafe {
            sys::rte_eth_dev_info_get(self.id, &mut info)
        })?;
        Ok(info)
    }

    fn ensure_no_handles(&self) -> Result<(), DpdkError> {
        if Arc::strong_count(&self.handles) > 1 {
            Err(DpdkError::QueuesInUse(self.id))
        } else {
            Ok(())
        }
    }

    /// Configures the device and sets up every RX queue (filled from `pool`)
    /// and TX queue. The port must be stopped and have no live queue handles.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<(), DpdkError> {
        self.ensure_no_handles()?;
        if self.started {
            self.stop()?;
        }
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(DpdkError::InvalidArgument(
                "a port needs at least one RX and one TX queue".into(),
            ));
        }
        let info = self.raw_info()?;
        // SAFETY: rte_eth_conf is plain C data; all-zero is DPDK's default.
        let mut conf: sys::rte_eth_conf = unsafe { core::mem::zeroed() };
        self.rss_hf = 0;
        if cfg.rss {
            // SAFETY: a pure function returning a constant.
            let wanted = unsafe { sys::fulcrum_rte_eth_rss_ip_tcp_udp() };
            let hf = wanted & info.flow_type_rss_offloads;
            if hf != 0 {
                conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
                self.rss_hf = hf;
            }
        }
        if let Some(mtu) = cfg.mtu {
            conf.rxmode.mtu = u32::from(mtu);
        }
        // SAFETY: the port id is valid and conf outlives the call.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf)
        })?;
        self.queues = None;
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port id and out-pointers.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rx_desc, &mut tx_desc)
        })?;
        // SAFETY: valid port id. -1 (SOCKET_ID_ANY) converts to the u32 DPDK
        // expects for "any socket".
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) } as u32;
        for q in 0..cfg.rx_queues {
            // SAFETY: valid port and queue id; NULL rx_conf means the device
            // defaults; the pool lives for the whole process.
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rx_desc,
                    socket,
                    core::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: valid port and queue id; NULL tx_conf means the defaults.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(self.id, q, tx_desc, socket, core::ptr::null())
            })?;
        }
        // SAFETY: valid, configured port.
        let ret = unsafe {
            if cfg.promiscuous {
                sys::rte_eth_promiscuous_enable(self.id)
            } else {
                sys::rte_eth_promiscuous_disable(self.id)
            }
        };
        // A device without a promiscuous switch (-ENOTSUP) is fine when
        // promiscuous mode is not asked for.
        if ret < 0 && cfg.promiscuous {
            return Err(DpdkError::from_errno("rte_eth_promiscuous_enable", -ret));
        }
        self.queues = Some((cfg.rx_queues, cfg.tx_queues));
        Ok(())
    }

    /// The RSS hash types in effect (`RTE_ETH_RSS_*` bits; 0 without RSS).
    pub fn rss_hash_functions(&self) -> u64 {
        self.rss_hf
    }

    /// Starts the port.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        if self.queues.is_none() {
            return Err(DpdkError::NotConfigured(self.id));
        }
        // SAFETY: valid, configured port.
        check("rte_eth_dev_start", unsafe {
            sys::rte_eth_dev_start(self.id)
        })?;
        self.started = true;
        Ok(())
    }

    /// Stops the port. Every queue handle must have been dropped.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        self.ensure_no_handles()?;
        if self.started {
            // SAFETY: valid port and no queue handle can poll it concurrently.
            check("rte_eth_dev_stop", unsafe {
                sys::rte_eth_dev_stop(self.id)
            })?;
            self.started = false;
        }
        Ok(())
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Hands out one handle per RX and per TX queue (index = queue id). Fails
    /// while handles from an earlier call are alive, or before configure.
    pub fn queues(&mut self) -> Result<(Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let (rxq, txq) = self.queues.ok_or(DpdkError::NotConfigured(self.id))?;
        self.ensure_no_handles()?;
        let rx = (0..rxq)
            .map(|queue| RxQueue {
                port: self.id,
                queue,
                _port_handles: self.handles.clone(),
            })
            .collect();
        let tx = (0..txq)
            .map(|queue| TxQueue {
                port: self.id,
                queue,
                _port_handles: self.handles.clone(),
            })
            .collect();
        Ok((rx, tx))
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = sys::rte_ether_addr { addr_bytes: [0; 6] };
        // SAFETY: valid port and out-pointer.
        check("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(self.id, &mut addr)
        })?;
        Ok(addr.addr_bytes)
    }

    /// The link state, without waiting.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        // SAFETY: rte_eth_link is plain C data; all-zero is valid.
        let mut link: sys::rte_eth_link = unsafe { core::mem::zeroed() };
        // SAFETY: valid port and out-pointer.
        check("rte_eth_link_get_nowait", unsafe {
            sys::rte_eth_link_get_nowait(self.id, &mut link)
        })?;
        Ok(LinkStatus {
            up: u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: u32::from(link.link_duplex()) == sys::RTE_ETH_LINK_FULL_DUPLEX,
        })
    }

    /// The basic counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        // SAFETY: rte_eth_stats is plain C data; all-zero is valid.
        let mut s: sys::rte_eth_stats = unsafe { core::mem::zeroed() };
        // SAFETY: valid port and out-pointer.
        check("rte_eth_stats_get", unsafe {
            sys::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Resets the basic and extended counters.
    pub fn reset_stats(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port.
        check("rte_eth_stats_reset", unsafe {
            sys::rte_eth_stats_reset(self.id)
        })?;
        // SAFETY: valid port. Devices without extended counters return
        // -ENOTSUP, which is not an error here.
        let ret = unsafe { sys::rte_eth_xstats_reset(self.id) };
        if ret < 0 && ret != -95 {
            return Err(DpdkError::from_errno("rte_eth_xstats_reset", -ret));
        }
        Ok(())
    }

    /// The extended counters, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        // SAFETY: valid port; a NULL array with size 0 asks for the count.
        let n = check("rte_eth_xstats_get_names", unsafe {
            sys::rte_eth_xstats_get_names(self.id, core::ptr::null_mut(), 0)
        })? as usize;
        // SAFETY: plain C data; all-zero is valid.
        let mut names: Vec<sys::rte_eth_xstat_name> = vec![unsafe { core::mem::zeroed() }; n];
        // SAFETY: names has room for n entries.
        let got = check("rte_eth_xstats_get_names", unsafe {
            sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32)
        })? as usize;
        names.truncate(got.min(n));
        let mut values = vec![sys::rte_eth_xstat { id: 0, value: 0 }; names.len()];
        // SAFETY: values has room for names.len() entries.
        let got = check("rte_eth_xstats_get", unsafe {
            sys::rte_eth_xstats_get(self.id, values.as_mut_ptr(), values.len() as u32)
        })? as usize;
        values.truncate(got.min(names.len()));
        Ok(values
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                Some((c_chars_to_string(&name.name), v.value))
            })
            .collect())
    }

    /// Stops (if started) and closes the port, reporting errors that drop
    /// would ignore. A `net_pcap` port flushes its output file here.
    pub fn close(mut self) -> Result<(), DpdkError> {
        self.ensure_no_handles()?;
        self.stop()?;
        // SAFETY: valid port, stopped, no queue handles alive.
        let ret = unsafe { sys::rte_eth_dev_close(self.id) };
        self.queues = None;
        // Drop must not close again.
        self.handles = Arc::new(());
        self.started = false;
        let id = self.id;
        self.id = u16::MAX;
        release(id);
        check("rte_eth_dev_close", ret).map(|_| ())
    }
}

impl Drop for Port {
    /// Stops the port (when no queue handle is alive) and releases the claim;
    /// the device stays open, so `Port::by_name` can take it again. Use
    /// [`Port::close`] to close it.
    fn drop(&mut self) {
        if self.id == u16::MAX {
            return; // closed already
        }
        if self.started && Arc::strong_count(&self.handles) == 1 && is_initialised() {
            // SAFETY: valid port and no queue handle can poll it.
            unsafe {
                sys::rte_eth_dev_stop(self.id);
            }
        }
        release(self.id);
    }
}

fn release(id: u16) {
    if u32::from(id) < sys::RTE_MAX_ETHPORTS {
        CLAIMED.fetch_and(!(1u64 << id), Ordering::AcqRel);
    }
}

fn c_chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The name of port `id`, if it exists.
fn port_name(id: u16) -> Option<String> {
    let mut buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: buf has the RTE_ETH_NAME_MAX_LEN bytes DPDK requires.
    let ret = unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    (ret == 0).then(|| c_chars_to_string(&buf))
}

/// The number of available ports (0 before the EAL is up).
pub fn port_count() -> u16 {
    if !is_initialised() {
        return 0;
    }
    // SAFETY: the EAL is initialised.
    unsafe { sys::rte_eth_dev_count_avail() }
}

/// Every available port: id and device name, in id order.
pub fn ports() -> Vec<(u16, String)> {
    let mut out = Vec::new();
    if !is_initialised() {
        return out;
    }
    let mut id = 0u64;
    loop {
        // SAFETY: the EAL is initialised; any id is accepted and the next
        // valid ownerless port (or RTE_MAX_ETHPORTS) returned.
        id = unsafe {
            sys::rte_eth_find_next_owned_by(id as u16, u64::from(sys::RTE_ETH_DEV_NO_OWNER))
        };
        if id >= u64::from(sys::RTE_MAX_ETHPORTS) {
            return out;
        }
        if let Some(name) = port_name(id as u16) {
            out.push((id as u16, name));
        }
        id += 1;
    }
}

/// The receive side of one queue of a port: give one to each worker.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    _port_handles: Arc<()>,
}

impl RxQueue {
    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The queue id.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to the batch's free room; returns how many mbufs arrived.
    #[inline]
    pub fn rx_burst(&mut self, batch: &mut MbufBatch) -> usize {
        self.rx_burst_up_to(batch, BURST)
    }

    /// Receives up to `max` mbufs (and at most the batch's free room); returns how many
    /// arrived.
    #[inline]
    pub fn rx_burst_up_to(&mut self, batch: &mut MbufBatch, max: usize) -> usize {
        let room = (BURST - batch.len()).min(max);
        if room == 0 {
            return 0;
        }
        // SAFETY: this handle is the only one for (port, queue) and the port
        // cannot be stopped or reconfigured while it lives; DPDK writes at most
        // `room` owned mbufs into the batch's spare slots.
        unsafe {
            let n = usize::from(sys::fulcrum_rte_eth_rx_burst(
                self.port,
                self.queue,
                batch.spare_ptr(),
                room as u16,
            ))
            .min(room);
            batch.set_len(batch.len() + n);
            n
        }
    }
}

/// The transmit side of one queue of a port: give one to each worker.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    _port_handles: Arc<()>,
}

impl TxQueue {
    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The queue id.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    #[inline]
    fn burst(&mut self, batch: &mut MbufBatch) -> usize {
        let len = batch.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: this handle is the only one for (port, queue); the device
        // takes ownership of the first `sent` mbufs of the batch.
        usize::from(unsafe {
            sys::fulcrum_rte_eth_tx_burst(self.port, self.queue, batch.slots_ptr(), len as u16)
        })
        .min(len)
    }

    /// Sends the batch; the mbufs the device did not take are freed. Returns
    /// how many were sent (the rest, `len - sent`, were dropped). The batch is
    /// empty afterwards.
    #[inline]
    pub fn tx_burst(&mut self, batch: &mut MbufBatch) -> usize {
        let sent = self.burst(batch);
        batch.forget_front(sent);
        batch.truncate(0);
        sent
    }

    /// Sends the batch; the mbufs the device did not take stay in it (moved
    /// to the front) for a retry. Returns how many were sent.
    #[inline]
    pub fn tx_burst_keep(&mut self, batch: &mut MbufBatch) -> usize {
        let sent = self.burst(batch);
        batch.forget_front(sent);
        sent
    }
}
