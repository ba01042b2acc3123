//! An ethernet port: one mempool per queue, rx/tx queue setup, RSS when the port has several rx
//! queues, link status and statistics per port and per queue.
//!
//! A [`Port`] is shared (`Arc`) with the [`QueueHandle`]s the lcores poll, so the port is stopped
//! and closed only after the last queue user is gone.

use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::constants::{
    ETHERNET_HEADER_BYTES, MBUFS_PER_QUEUE_DEFAULT, MBUF_CACHE_SIZE, MBUF_DATA_BYTES_MIN,
    MEMPOOL_NAME_MAX_BYTES, PORT_QUEUES_MAX, RX_DESCRIPTORS_DEFAULT, TX_DESCRIPTORS_DEFAULT,
    XDP_PACKET_HEADROOM_BYTES,
};
use super::eal::{rte_strerror, Eal};
use super::ffi;

/// How a port is set up. One rx and one tx queue per lcore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    pub mbufs_per_queue: u32,
    /// Accept frames for any MAC (needed when the appliance answers on a MAC the NIC filters).
    pub promiscuous: bool,
    /// IP MTU of the port: smoltcp sends frames of up to this plus the Ethernet header.
    pub mtu: u16,
    /// Data room of each mbuf after its headroom: a whole frame at least (see [`mbuf_data_bytes`]).
    pub mbuf_data_bytes: u16,
}

/// The MTU of an Ethernet port without jumbo frames.
pub const MTU_DEFAULT: u16 = 1500;

/// The largest Ethernet frame of an IP MTU.
pub fn frame_bytes(mtu: u16) -> usize {
    usize::from(mtu) + usize::from(ETHERNET_HEADER_BYTES)
}

/// What af_xdp needs of an mbuf's data room for a frame of `mtu`: XDP's headroom, then the frame.
pub fn af_xdp_driver_bytes(mtu: u16) -> usize {
    XDP_PACKET_HEADROOM_BYTES + frame_bytes(mtu)
}

/// The mbuf data room (after the headroom) that holds a whole frame of `mtu` and the
/// `driver_copy_bytes` a driver may copy into one mbuf at once: received frames are then always
/// one segment. Never below DPDK's default room.
pub fn mbuf_data_bytes(mtu: u16, driver_copy_bytes: usize) -> usize {
    frame_bytes(mtu)
        .max(driver_copy_bytes)
        .max(usize::from(MBUF_DATA_BYTES_MIN))
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            queues: 1,
            rx_descriptors: RX_DESCRIPTORS_DEFAULT,
            tx_descriptors: TX_DESCRIPTORS_DEFAULT,
            mbufs_per_queue: MBUFS_PER_QUEUE_DEFAULT,
            promiscuous: false,
            mtu: MTU_DEFAULT,
            mbuf_data_bytes: MBUF_DATA_BYTES_MIN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(
        "no DPDK port named '{0}': check [dpdk] vdevs / allow_pci and the EAL log (a vdev whose \
         probe failed has no port)"
    )]
    NotFound(String),
    #[error(
        "port {port_id}: {queues} queues requested, the device offers rx {rx_max} / tx {tx_max}"
    )]
    TooManyQueues {
        port_id: u16,
        queues: u16,
        rx_max: u16,
        tx_max: u16,
    },
    #[error("port {port_id}: invalid configuration: {reason}")]
    InvalidConfig { port_id: u16, reason: String },
    #[error(
        "port {port_id} ({driver}) takes an MTU of {min}..={max}, not [dpdk] mtu = {mtu}: set \
         [dpdk] mtu to at most {max}{hint}"
    )]
    Mtu {
        port_id: u16,
        driver: String,
        mtu: u16,
        min: u16,
        max: u16,
        hint: &'static str,
    },
    #[error(
        "port {port_id}: creating mempool '{name}' ({mbufs} mbufs) failed: {message}; reserve more \
         hugepages (scripts/hugepages.sh) or raise [dpdk] memory_mb"
    )]
    Mempool {
        port_id: u16,
        name: String,
        mbufs: u32,
        message: String,
    },
    #[error("port {port_id}: {operation} failed: {message}")]
    Dpdk {
        port_id: u16,
        operation: &'static str,
        message: String,
    },
}

/// Link state as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Counters of one queue (drivers fill the first RTE_ETHDEV_QUEUE_STAT_CNTRS queues).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub queue_id: u16,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets of this queue dropped by the driver.
    pub rx_dropped: u64,
}

/// Counters of the whole port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    pub port_id: u16,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped because the rx ring was full (the lcore did not keep up).
    pub rx_missed: u64,
    /// Rx mbuf allocation failures (mempool exhausted).
    pub rx_no_mbuf: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub queues: Vec<QueueStats>,
}

/// A started port. Cloning shares it; the last clone stops and closes the device.
#[derive(Debug, Clone)]
pub struct Port {
    inner: Arc<PortInner>,
}

#[derive(Debug)]
struct PortInner {
    port_id: u16,
    name: String,
    queues: u16,
    mtu: u16,
    pools: Vec<Mempool>,
}

/// One rx/tx queue pair of a port and the mempool its lcore allocates from. Send, so it can be
/// handed to the lcore that polls it; only one lcore may poll a queue.
#[derive(Debug)]
pub struct QueueHandle {
    port: Port,
    queue_id: u16,
}

impl Port {
    /// Finds the device by name (`net_af_packet0`, a PCI address, ...), creates its mempools,
    /// configures and starts it.
    ///
    /// Errors: [`PortError::NotFound`], [`PortError::TooManyQueues`], [`PortError::Mtu`],
    /// [`PortError::InvalidConfig`] (mbufs smaller than a frame), [`PortError::Mempool`],
    /// [`PortError::Dpdk`] naming the failing DPDK call.
    pub fn open(_eal: &Eal, name: &str, config: &PortConfig) -> Result<Port, PortError> {
        let port_id = port_id_by_name(name)?;
        if config.queues == 0 || config.queues > PORT_QUEUES_MAX {
            let reason = format!("queues must be 1..={PORT_QUEUES_MAX}");
            return Err(PortError::InvalidConfig { port_id, reason });
        }
        let info = device_info(port_id)?;
        if config.queues > info.max_rx_queues || config.queues > info.max_tx_queues {
            return Err(PortError::TooManyQueues {
                port_id,
                queues: config.queues,
                rx_max: info.max_rx_queues,
                tx_max: info.max_tx_queues,
            });
        }
        if usize::from(config.mbuf_data_bytes) < frame_bytes(config.mtu) {
            let reason = format!(
                "mbufs of {} bytes cannot hold a frame of MTU {}",
                config.mbuf_data_bytes, config.mtu
            );
            return Err(PortError::InvalidConfig { port_id, reason });
        }
        let ethdev_mtu = ethdev_mtu(port_id, config, &info)?;
        configure(port_id, config, ethdev_mtu, &info)?;
        let socket_id = port_socket_id(port_id);
        let mut pools = Vec::with_capacity(usize::from(config.queues));
        for queue_id in 0..config.queues {
            let pool_name = format!("rt_p{port_id}_q{queue_id}");
            pools.push(Mempool::create(
                port_id,
                &pool_name,
                config.mbufs_per_queue,
                config.mbuf_data_bytes,
                socket_id,
            )?);
        }
        let mut descriptors = (config.rx_descriptors, config.tx_descriptors);
        // SAFETY: port_id is valid; the driver clamps the counts to what it supports.
        let result = unsafe {
            ffi::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut descriptors.0, &mut descriptors.1)
        };
        check(port_id, "rte_eth_dev_adjust_nb_rx_tx_desc", result)?;
        for (queue_id, pool) in (0..config.queues).zip(&pools) {
            setup_queue(port_id, queue_id, descriptors, socket_id, pool)?;
        }
        // SAFETY: the port is configured and all its queues are set up.
        check(port_id, "rte_eth_dev_start", unsafe {
            ffi::rte_eth_dev_start(port_id)
        })?;
        if config.promiscuous {
            // SAFETY: port_id is a started port.
            let result = unsafe { ffi::rte_eth_promiscuous_enable(port_id) };
            check(port_id, "rte_eth_promiscuous_enable", result)?;
        }
        let name = name.to_string();
        tracing::info!(port_id, %name, queues = config.queues, mtu = config.mtu, "DPDK port started");
        Ok(Port {
            inner: Arc::new(PortInner {
                port_id,
                name,
                queues: config.queues,
                mtu: config.mtu,
                pools,
            }),
        })
    }

    pub fn id(&self) -> u16 {
        self.inner.port_id
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn queue_count(&self) -> u16 {
        self.inner.queues
    }

    /// The IP MTU the port was opened with.
    pub fn mtu(&self) -> u16 {
        self.inner.mtu
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6], PortError> {
        let mut address = ffi::rte_ether_addr::default();
        // SAFETY: port_id is valid; address is a writable rte_ether_addr.
        let result = unsafe { ffi::rte_eth_macaddr_get(self.inner.port_id, &mut address) };
        check(self.inner.port_id, "rte_eth_macaddr_get", result)?;
        Ok(address.addr_bytes)
    }

    /// The link state now, without waiting.
    pub fn link(&self) -> Result<LinkStatus, PortError> {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: port_id is valid; link is a writable rte_eth_link.
        let result = unsafe { ffi::rte_eth_link_get_nowait(self.inner.port_id, &mut link) };
        check(self.inner.port_id, "rte_eth_link_get_nowait", result)?;
        Ok(LinkStatus {
            up: u32::from(link.link_status()) == ffi::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: u32::from(link.link_duplex()) == ffi::RTE_ETH_LINK_FULL_DUPLEX,
        })
    }

    /// Polls the link until it is up or `timeout` passes; returns the last state seen.
    pub fn wait_link_up(&self, timeout: Duration) -> Result<LinkStatus, PortError> {
        let deadline = Instant::now() + timeout;
        loop {
            let link = self.link()?;
            if link.up || Instant::now() >= deadline {
                return Ok(link);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Port and per-queue counters.
    pub fn stats(&self) -> Result<PortStats, PortError> {
        let port_id = self.inner.port_id;
        let mut raw = ffi::rte_eth_stats::default();
        // SAFETY: port_id is valid; raw is a writable rte_eth_stats.
        check(port_id, "rte_eth_stats_get", unsafe {
            ffi::rte_eth_stats_get(port_id, &mut raw)
        })?;
        let counted = usize::from(self.inner.queues).min(raw.q_ipackets.len());
        let queues = (0..counted)
            .map(|index| QueueStats {
                queue_id: index as u16,
                rx_packets: raw.q_ipackets[index],
                tx_packets: raw.q_opackets[index],
                rx_bytes: raw.q_ibytes[index],
                tx_bytes: raw.q_obytes[index],
                rx_dropped: raw.q_errors[index],
            })
            .collect();
        Ok(PortStats {
            port_id,
            rx_packets: raw.ipackets,
            tx_packets: raw.opackets,
            rx_bytes: raw.ibytes,
            tx_bytes: raw.obytes,
            rx_missed: raw.imissed,
            rx_no_mbuf: raw.rx_nombuf,
            rx_errors: raw.ierrors,
            tx_errors: raw.oerrors,
            queues,
        })
    }

    /// The handle an lcore polls queue `queue_id` through.
    ///
    /// Errors: [`PortError::InvalidConfig`] when the port has no such queue.
    pub fn queue(&self, queue_id: u16) -> Result<QueueHandle, PortError> {
        if queue_id >= self.inner.queues {
            let reason = format!(
                "queue {queue_id} does not exist ({} queues)",
                self.inner.queues
            );
            return Err(PortError::InvalidConfig {
                port_id: self.inner.port_id,
                reason,
            });
        }
        Ok(QueueHandle {
            port: self.clone(),
            queue_id,
        })
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: no QueueHandle is left (they hold the Arc), so no lcore polls the port; stop and
        // close it before its mempools are freed (the driver holds mbufs of them until close).
        unsafe {
            let stopped = ffi::rte_eth_dev_stop(self.port_id);
            let closed = ffi::rte_eth_dev_close(self.port_id);
            if stopped != 0 || closed != 0 {
                tracing::warn!(
                    port_id = self.port_id,
                    stopped,
                    closed,
                    "DPDK port stop/close failed"
                );
            }
        }
    }
}

impl QueueHandle {
    pub fn port_id(&self) -> u16 {
        self.port.inner.port_id
    }

    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }

    pub fn port(&self) -> &Port {
        &self.port
    }

    /// The mempool this queue's rx ring fills from; tx mbufs come from it too.
    pub(crate) fn pool(&self) -> *mut ffi::rte_mempool {
        self.port.inner.pools[usize::from(self.queue_id)].raw
    }

    /// Mbufs currently free in this queue's pool (a gauge of mempool pressure).
    pub fn pool_free_count(&self) -> u32 {
        // SAFETY: the pool lives as long as the port, which this handle keeps alive.
        unsafe { ffi::rte_mempool_avail_count(self.pool()) }
    }
}

/// A DPDK packet mempool, freed when dropped.
#[derive(Debug)]
struct Mempool {
    raw: *mut ffi::rte_mempool,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the pointer is only freed on drop.
unsafe impl Send for Mempool {}
// SAFETY: as above: concurrent get/put on a DPDK mempool is safe by design.
unsafe impl Sync for Mempool {}

impl Mempool {
    fn create(
        port_id: u16,
        name: &str,
        mbufs: u32,
        data_bytes: u16,
        socket_id: i32,
    ) -> Result<Mempool, PortError> {
        let error = |message: String| PortError::Mempool {
            port_id,
            name: name.to_string(),
            mbufs,
            message,
        };
        if name.len() > MEMPOOL_NAME_MAX_BYTES {
            return Err(error("name too long".to_string()));
        }
        let c_name = CString::new(name).map_err(|_| error("name contains NUL".to_string()))?;
        let Ok(data_room_bytes) = u16::try_from(ffi::RTE_PKTMBUF_HEADROOM + u32::from(data_bytes))
        else {
            return Err(error(format!("mbufs of {data_bytes} bytes are too large")));
        };
        // SAFETY: c_name is NUL-terminated; DPDK copies it. Sizes are within DPDK's limits.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(
                c_name.as_ptr(),
                mbufs,
                MBUF_CACHE_SIZE,
                0,
                data_room_bytes,
                socket_id,
            )
        };
        if raw.is_null() {
            // SAFETY: reading rte_errno right after the failing call.
            let errno = unsafe { ffi::riptide_errno() };
            return Err(error(rte_strerror(errno)));
        }
        Ok(Mempool { raw })
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool's port is closed (PortInner::drop ran first: fields drop after the
        // Drop body), so every mbuf is back in the pool or was freed by its holder.
        unsafe { ffi::rte_mempool_free(self.raw) };
    }
}

fn port_id_by_name(name: &str) -> Result<u16, PortError> {
    let c_name = CString::new(name).map_err(|_| PortError::NotFound(name.to_string()))?;
    let mut port_id: u16 = 0;
    // SAFETY: c_name is NUL-terminated and port_id is writable.
    let result = unsafe { ffi::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut port_id) };
    if result != 0 {
        return Err(PortError::NotFound(name.to_string()));
    }
    Ok(port_id)
}

fn device_info(port_id: u16) -> Result<ffi::rte_eth_dev_info, PortError> {
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: port_id is valid; info is writable.
    let result = unsafe { ffi::rte_eth_dev_info_get(port_id, &mut info) };
    check(port_id, "rte_eth_dev_info_get", result)?;
    Ok(info)
}

/// The device's NUMA socket, or any socket when the device does not say.
fn port_socket_id(port_id: u16) -> i32 {
    // SAFETY: port_id is valid.
    let socket_id = unsafe { ffi::rte_eth_dev_socket_id(port_id) };
    if socket_id < 0 {
        ffi::SOCKET_ID_ANY
    } else {
        socket_id
    }
}

/// The MTUs a device takes, by ethdev's rule (rte_eth_dev_configure checks it): `min_mtu` up to
/// `max_mtu`, and a frame (the MTU plus the device's overhead) no longer than `max_rx_pktlen`.
/// The overhead is `max_rx_pktlen - max_mtu` when the driver gives both, else Ethernet header and
/// CRC (18 bytes).
pub fn mtu_range(min_mtu: u16, max_mtu: u16, max_rx_pktlen: u32) -> (u16, u16) {
    const HEADER_AND_CRC_BYTES: u32 = 18;
    let overhead = if max_mtu != u16::MAX && max_rx_pktlen > u32::from(max_mtu) {
        max_rx_pktlen - u32::from(max_mtu)
    } else {
        HEADER_AND_CRC_BYTES
    };
    let by_frame = max_rx_pktlen.saturating_sub(overhead);
    let max = u16::try_from(by_frame).unwrap_or(u16::MAX).min(max_mtu);
    (min_mtu, max)
}

/// The MTU to give ethdev for the configured one, checked against the device's range
/// ([`mtu_range`]) and, for af_xdp, against a page per mbuf.
///
/// af_packet is the exception: it reports a fixed 1518-byte `max_rx_pktlen` that its datapath
/// does not enforce (it copies whole ring frames, `framesz`, which [`super::backend`] sizes for
/// the MTU), and the MTU on the wire is its kernel interface's. ethdev gets at most its 1500.
fn ethdev_mtu(
    port_id: u16,
    config: &PortConfig,
    info: &ffi::rte_eth_dev_info,
) -> Result<u16, PortError> {
    let (min, mut max) = mtu_range(info.min_mtu, info.max_mtu, info.max_rx_pktlen);
    let driver = driver_name(info);
    let mut hint = "";
    match driver.as_str() {
        "net_af_packet" => return Ok(config.mtu.min(max)),
        "net_af_xdp" => {
            // DPDK 22.11's af_xdp (no multi-buffer) makes the queue's mempool its UMEM, whose
            // chunks (one mempool object each) may not exceed a page. Its dev_info assumes an
            // object of exactly a page; riptide's objects also carry the mempool's alignment.
            let fits_page = |mtu: u16| {
                mbuf_data_bytes(mtu, af_xdp_driver_bytes(mtu))
                    .try_into()
                    .is_ok_and(|data_bytes| mempool_object_bytes(data_bytes) <= page_bytes())
            };
            let page_max = (min..=max).rev().find(|&mtu| fits_page(mtu)).unwrap_or(min);
            max = max.min(page_max);
            hint = " (DPDK 22.11's af_xdp holds a frame in one page; af_packet takes jumbo frames)";
        }
        _ => {}
    }
    if (min..=max).contains(&config.mtu) {
        return Ok(config.mtu);
    }
    Err(PortError::Mtu {
        port_id,
        driver,
        mtu: config.mtu,
        min,
        max,
        hint,
    })
}

/// Bytes of one object of a packet mempool whose mbufs have `data_bytes` after their headroom
/// (header, mbuf, headroom, data and DPDK's alignment), as rte_pktmbuf_pool_create lays it out.
fn mempool_object_bytes(data_bytes: u16) -> usize {
    let element_bytes = std::mem::size_of::<ffi::rte_mbuf>()
        + ffi::RTE_PKTMBUF_HEADROOM as usize
        + usize::from(data_bytes);
    let mut sizes = ffi::rte_mempool_objsz::default();
    // SAFETY: sizes is writable; flags 0 are rte_pktmbuf_pool_create's.
    let total = unsafe { ffi::rte_mempool_calc_obj_size(element_bytes as u32, 0, &mut sizes) };
    total as usize
}

pub(crate) fn page_bytes() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(4096)
}

fn driver_name(info: &ffi::rte_eth_dev_info) -> String {
    if info.driver_name.is_null() {
        return String::new();
    }
    // SAFETY: a non-null driver_name is the driver's static NUL-terminated name.
    unsafe { CStr::from_ptr(info.driver_name) }
        .to_string_lossy()
        .into_owned()
}

/// Queue counts, MTU and RSS: with several queues, spread flows by IP addresses and TCP ports so
/// each connection stays on one queue (and one lcore's TCP stack).
fn configure(
    port_id: u16,
    config: &PortConfig,
    mtu: u16,
    info: &ffi::rte_eth_dev_info,
) -> Result<(), PortError> {
    let mut conf = ffi::rte_eth_conf::default();
    conf.rxmode.mtu = u32::from(mtu);
    if config.queues > 1 {
        // SAFETY: plain constant getter in the shim.
        let wanted = unsafe { ffi::riptide_rss_hf_ip_tcp() };
        let offered = info.flow_type_rss_offloads & wanted;
        if offered == 0 {
            tracing::warn!(
                port_id,
                "port offers no IP/TCP RSS; several queues will share flows"
            );
        } else {
            conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = offered;
        }
    }
    // SAFETY: conf is a fully initialised rte_eth_conf; the port is stopped.
    let result =
        unsafe { ffi::rte_eth_dev_configure(port_id, config.queues, config.queues, &conf) };
    check(port_id, "rte_eth_dev_configure", result)
}

fn setup_queue(
    port_id: u16,
    queue_id: u16,
    (rx_descriptors, tx_descriptors): (u16, u16),
    socket_id: i32,
    pool: &Mempool,
) -> Result<(), PortError> {
    let socket = u32::try_from(socket_id).unwrap_or(ffi::SOCKET_ID_ANY as u32);
    // SAFETY: the port is configured with this many queues; a null rxconf/txconf asks for the
    // driver's defaults; the pool outlives the port (PortInner drops it after closing).
    let result = unsafe {
        ffi::rte_eth_rx_queue_setup(
            port_id,
            queue_id,
            rx_descriptors,
            socket,
            std::ptr::null(),
            pool.raw,
        )
    };
    check(port_id, "rte_eth_rx_queue_setup", result)?;
    // SAFETY: as above.
    let result = unsafe {
        ffi::rte_eth_tx_queue_setup(port_id, queue_id, tx_descriptors, socket, std::ptr::null())
    };
    check(port_id, "rte_eth_tx_queue_setup", result)
}

/// DPDK calls return 0 or a negative errno.
fn check(port_id: u16, operation: &'static str, result: i32) -> Result<(), PortError> {
    if result == 0 {
        return Ok(());
    }
    Err(PortError::Dpdk {
        port_id,
        operation,
        message: rte_strerror(-result),
    })
}

/// The name of a port id (for logs and stats), if the port exists.
pub fn port_name(port_id: u16) -> Option<String> {
    let mut buffer = [0 as std::ffi::c_char; 64];
    // SAFETY: buffer is writable and larger than RTE_ETH_NAME_MAX_LEN (64 including the NUL).
    let result = unsafe { ffi::rte_eth_dev_get_name_by_port(port_id, buffer.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: DPDK wrote a NUL-terminated name into buffer.
    let name = unsafe { CStr::from_ptr(buffer.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_range_follows_ethdevs_rule() {
        // af_packet: no max_mtu, a fixed 1518-byte max_rx_pktlen (header and CRC over 1500).
        assert_eq!(mtu_range(68, u16::MAX, 1518), (68, 1500));
        // af_xdp on 4 KiB pages: both given, the overhead is their difference.
        assert_eq!(mtu_range(68, 3542, 3560), (68, 3542));
        // A NIC whose frame limit is below its max_mtu plus the overhead it implies.
        assert_eq!(mtu_range(68, 9600, 9618), (68, 9600));
        assert_eq!(mtu_range(68, u16::MAX, 9018), (68, 9000));
    }

    #[test]
    fn mbufs_hold_a_whole_frame_and_what_the_driver_copies() {
        assert_eq!(frame_bytes(1500), 1514);
        assert_eq!(mbuf_data_bytes(1500, 0), 2048);
        assert_eq!(mbuf_data_bytes(9000, 0), 9014);
        assert_eq!(mbuf_data_bytes(9000, 9184), 9184);
        assert_eq!(af_xdp_driver_bytes(1500), 1770);
    }
}
