//! The DPDK backend as the server starts it: riptide.toml's `[dpdk]` section becomes an EAL
//! configuration, one port and one polling lcore per worker lcore, each driving the worker core
//! (`session::WorkerCore`) over its own port queue. With several polling lcores each
//! frame is handed to the lcore owning its flow ([`super::steer`]).
//!
//! The server builds the shared state and the worker/shard rings as for the kernel backend (one
//! `WorkerContext` per polling lcore: [`DpdkPlan::worker_lcores`] tells how many), then calls
//! [`DpdkBackend::start`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::Serialize;

use super::constants::{
    AF_PACKET_FRAME_ALIGN_BYTES, AF_PACKET_FRAME_BYTES_DEFAULT, AF_PACKET_HEADER_BYTES,
    AF_PACKET_RX_FRAME_OFFSET_BYTES, LCORE_CONNECTIONS_DEFAULT, LCORE_START_TIMEOUT_MS,
    MEMIF_BUFFER_BYTES_DEFAULT, MEMIF_LOG2_RING_SIZE_MAX, MEMIF_MTU_MAX, MEMIF_SOCKET_FILE,
    MEMIF_SOCKET_PATH_MAX_BYTES, PORT_QUEUES_MAX, RX_DESCRIPTORS_DEFAULT, STEERING_RING_FRAMES,
};
use super::eal::{Eal, EalConfig, EalError, EalMemory, LcoreJoin, Vdev};
use super::lcore::{IdleBackoff, Lcore, LcoreConfig, LcoreStats, LcoreStatsSnapshot};
use super::port::{
    af_xdp_driver_bytes, frame_bytes, mbuf_data_bytes, page_bytes, Port, PortConfig, PortError,
    PortStats,
};
use super::steer::LcoreSteering;
use crate::session::WorkerContext;
use riptide_config::Config;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("invalid [dpdk] configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Eal(#[from] EalError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("writing riptide's XDP object to {dir}: {source}")]
    XdpObject { dir: String, source: std::io::Error },
    #[error(
        "configuring riptide's XDP program on {iface}: {reason} (is the af_xdp PMD's xdp_prog \
         riptide's xdp_steer.o?)"
    )]
    XdpSteering { iface: String, reason: String },
    #[error("lcore {lcore_id} failed to start: {reason}")]
    LcoreStart { lcore_id: u32, reason: String },
    #[error(
        "interface {iface} has MTU {iface_mtu}, below [dpdk] mtu = {mtu}: raise it (ip link set \
         dev {iface} mtu {mtu}, and its peer's) or lower [dpdk] mtu"
    )]
    InterfaceMtu {
        iface: String,
        iface_mtu: u32,
        mtu: u16,
    },
}

/// Everything the backend needs, derived from the configuration; fields may be adjusted before
/// [`DpdkBackend::start`] (tests pick their own file prefix, for example).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkPlan {
    pub eal: EalConfig,
    /// The DPDK device to use: the first vdev's name or the first PCI address.
    pub device: String,
    /// Lcores that poll, one port queue each (the EAL's lcores after the main one).
    pub worker_lcores: Vec<u32>,
    /// The port: one queue per polling lcore, the MTU and mbufs that hold a whole frame.
    pub port: PortConfig,
    pub lcore: LcoreConfig,
    /// The interface of an af_xdp vdev, whose XDP program must learn the address and port.
    pub xdp_iface: Option<String>,
    /// The socket file of a `net_memif` server port (not an abstract one): a stale one left by
    /// a killed run is removed before the PMD binds it.
    pub memif_socket: Option<PathBuf>,
}

impl DpdkPlan {
    /// Translates `[dpdk]` (and `[tcp] connections_max`). An af_xdp vdev without `xdp_prog`
    /// gets riptide's steering object, written into `runtime_dir`; the port's vdev gets one queue
    /// per polling lcore (`queue_count` for af_xdp, `qpairs` for af_packet), and af_packet ring
    /// frames that hold a frame of the MTU.
    ///
    /// Errors: [`BackendError::InvalidConfig`] naming the key, [`BackendError::XdpObject`].
    pub fn from_config(config: &Config, runtime_dir: &Path) -> Result<DpdkPlan, BackendError> {
        let dpdk = &config.dpdk;
        let invalid = |reason: String| Err(BackendError::InvalidConfig(reason));
        let lcores = plan_lcores(&dpdk.lcores)?;
        let cpus = cpu_ids(&dpdk.cpus, lcores.len())?;
        let (ip_address, gateway) = parse_addresses(&dpdk.ip_address, &dpdk.gateway)?;
        let (vdevs, xdp_iface) = with_xdp_object(&dpdk.vdevs, runtime_dir)?;
        let vdevs = with_queue_count(vdevs, lcores.len() - 1)?;
        let (vdevs, driver_copy_bytes) = with_af_packet_frames(vdevs, dpdk.mtu)?;
        let (vdevs, memif_socket) =
            with_memif_server(vdevs, runtime_dir, dpdk.mtu, lcores.len() - 1)?;
        let device = match (vdevs.first(), dpdk.allow_pci.first()) {
            (Some(vdev), _) => Vdev::parse(vdev)?.name,
            (None, Some(pci)) => pci.clone(),
            (None, None) => return invalid("give a device in vdevs or allow_pci".into()),
        };
        let memory = if dpdk.no_huge {
            EalMemory::NoHuge {
                memory_mb: dpdk.memory_mb,
            }
        } else {
            EalMemory::Hugepages {
                memory_mb: Some(dpdk.memory_mb),
            }
        };
        let eal = EalConfig {
            lcores: lcores.clone(),
            cpus,
            memory_channels: dpdk.memory_channels,
            memory,
            allow_pci: dpdk.allow_pci.clone(),
            vdevs,
            file_prefix: format!("riptide-{}", dpdk.port),
            driver_paths: Vec::new(),
            log_level: None,
            in_memory: false,
        };
        let worker_lcores = lcores[1..].to_vec();
        let Ok(mbuf_data_bytes) = u16::try_from(mbuf_data_bytes(dpdk.mtu, driver_copy_bytes))
        else {
            return invalid(format!(
                "vdevs: af_packet frames of {driver_copy_bytes} bytes do not fit an mbuf"
            ));
        };
        let port = PortConfig {
            // plan_lcores keeps them within PORT_QUEUES_MAX.
            queues: worker_lcores.len() as u16,
            mtu: dpdk.mtu,
            mbuf_data_bytes,
            ..PortConfig::default()
        };
        let mut lcore = LcoreConfig::new(ip_address, dpdk.prefix_len, dpdk.port);
        lcore.gateway = gateway;
        let per_lcore = config.tcp.connections_max as usize / worker_lcores.len();
        lcore.connections_max = per_lcore.clamp(1, LCORE_CONNECTIONS_DEFAULT);
        lcore.listen_backlog = lcore.listen_backlog.min(lcore.connections_max);
        lcore.socket_rx_buffer_bytes = dpdk.socket_rx_buffer_bytes;
        lcore.socket_tx_buffer_bytes = dpdk.socket_tx_buffer_bytes;
        lcore.keepalive_s = config.tcp.keepalive_s;
        lcore.idle = IdleBackoff {
            sleep_us: dpdk.idle_backoff_us,
            ..IdleBackoff::default()
        };
        Ok(DpdkPlan {
            eal,
            device,
            worker_lcores,
            port,
            lcore,
            xdp_iface,
            memif_socket,
        })
    }
}

/// The EAL lcores: the main one plus one polling lcore per port queue.
fn plan_lcores(configured: &[usize]) -> Result<Vec<u32>, BackendError> {
    let invalid = |reason: String| Err(BackendError::InvalidConfig(reason));
    if configured.len() < 2 {
        return invalid(
            "lcores needs the main lcore plus at least one polling lcore, e.g. [0, 1]".into(),
        );
    }
    if configured.len() - 1 > usize::from(PORT_QUEUES_MAX) {
        return invalid(format!(
            "lcores: at most {PORT_QUEUES_MAX} polling lcores (one port queue each)"
        ));
    }
    configured
        .iter()
        .map(|&lcore| u32::try_from(lcore))
        .collect::<Result<_, _>>()
        .map_err(|_| BackendError::InvalidConfig("lcores: lcore id out of range".into()))
}

/// The CPU of each lcore (`cpus`), or none (lcore N on CPU N).
fn cpu_ids(configured: &[usize], lcores_count: usize) -> Result<Vec<u32>, BackendError> {
    if !configured.is_empty() && configured.len() != lcores_count {
        let reason = "cpus: give one CPU per lcore, or none".to_string();
        return Err(BackendError::InvalidConfig(reason));
    }
    configured
        .iter()
        .map(|&cpu| u32::try_from(cpu))
        .collect::<Result<_, _>>()
        .map_err(|_| BackendError::InvalidConfig("cpus: CPU id out of range".into()))
}

/// Gives the port's vdev (the first) one queue per polling lcore: af_xdp's `queue_count`,
/// af_packet's `qpairs`. A count already given must match.
fn with_queue_count(mut vdevs: Vec<String>, queues: usize) -> Result<Vec<String>, BackendError> {
    let Some(first) = vdevs.first_mut() else {
        return Ok(vdevs);
    };
    let vdev = Vdev::parse(first)?;
    let key = match vdev.driver() {
        "net_af_xdp" => "queue_count",
        "net_af_packet" => "qpairs",
        _ => return Ok(vdevs),
    };
    match vdev.option(key).map(str::parse::<usize>) {
        None if queues == 1 => {}
        None => first.push_str(&format!(",{key}={queues}")),
        Some(Ok(given)) if given == queues => {}
        Some(_) => {
            let reason = format!(
                "vdevs: {} has {key}={}, but lcores gives {queues} polling lcores (one queue each)",
                vdev.name,
                vdev.option(key).unwrap_or_default()
            );
            return Err(BackendError::InvalidConfig(reason));
        }
    }
    Ok(vdevs)
}

/// af_packet's ring frames for the MTU; returns the vdevs and the bytes the port's driver needs
/// of an mbuf's data room for a frame (af_packet copies a whole ring frame less its header into
/// one, af_xdp receives after its own headroom; 0 for other drivers).
///
/// A received frame longer than `framesz` leaves room for is truncated by the kernel (and then
/// dropped by smoltcp), and the PMD drops a frame to send that does not fit: for an MTU above
/// what the default 2048-byte `framesz` holds, the port's vdev gets a `framesz` that holds a
/// whole frame, a `blocksz` of whole pages that whole frames fill ([`af_packet_geometry`]) and
/// a `framecnt` of as many bytes as the default rings. A `framesz` given in the vdev must be
/// large enough (its `blocksz` is then the operator's).
///
/// af_packet ignores the rx descriptor count: its rings hold `framecnt` frames, 512 unless told,
/// less than one client's TCP window (a 1 MB batch is ~720 frames of a 1500 MTU). A window sent
/// while the lcore is descheduled overflowed them, and the client recovered by retransmissions
/// and timeouts. Without a `framecnt` the rings hold as many bytes as `RX_DESCRIPTORS_DEFAULT`
/// default frames.
fn with_af_packet_frames(
    mut vdevs: Vec<String>,
    mtu: u16,
) -> Result<(Vec<String>, usize), BackendError> {
    let Some(first) = vdevs.first_mut() else {
        return Ok((vdevs, 0));
    };
    let vdev = Vdev::parse(first)?;
    match vdev.driver() {
        "net_af_packet" => {}
        "net_af_xdp" => return Ok((vdevs, af_xdp_driver_bytes(mtu))),
        _ => return Ok((vdevs, 0)),
    }
    let needed = (frame_bytes(mtu) + AF_PACKET_RX_FRAME_OFFSET_BYTES)
        .next_multiple_of(AF_PACKET_FRAME_ALIGN_BYTES);
    let frame_size = match vdev.option("framesz").map(str::parse::<usize>) {
        None if needed <= AF_PACKET_FRAME_BYTES_DEFAULT => AF_PACKET_FRAME_BYTES_DEFAULT,
        None => {
            let (frame_size, block_size) = af_packet_geometry(needed, page_bytes());
            first.push_str(&format!(",framesz={frame_size}"));
            if vdev.option("blocksz").is_none() {
                first.push_str(&format!(",blocksz={block_size}"));
            }
            frame_size
        }
        Some(Ok(given)) if given >= needed => given,
        Some(_) => {
            return Err(BackendError::InvalidConfig(format!(
                "vdevs: {} has framesz={}, too small for a frame of [dpdk] mtu = {mtu}: give \
                 framesz >= {needed} or leave it out (riptide then sizes it)",
                vdev.name,
                vdev.option("framesz").unwrap_or_default()
            )));
        }
    };
    if vdev.option("framecnt").is_none() {
        let ring_bytes = usize::from(RX_DESCRIPTORS_DEFAULT) * AF_PACKET_FRAME_BYTES_DEFAULT;
        let block_bytes = match vdev.option("blocksz").map(str::parse::<usize>) {
            Some(Ok(given)) if given >= frame_size => given,
            _ => af_packet_geometry(frame_size, page_bytes()).1,
        };
        // The kernel wants whole blocks: a multiple of the frames one block holds.
        let frames_per_block = block_bytes / frame_size;
        let frames = ring_bytes.div_ceil(block_bytes) * frames_per_block;
        first.push_str(&format!(",framecnt={frames}"));
    }
    Ok((vdevs, frame_size - AF_PACKET_HEADER_BYTES))
}

/// af_packet ring frames of at least `needed` bytes: `(framesz, blocksz)`. The kernel wants
/// blocks of whole pages; the PMD addresses frame i at i * framesz across blocks, so whole frames
/// must fill each block exactly. Frames of a multiple of an eighth of a page fill a block of at
/// most 8 of them (a 9000 MTU: 9216-byte frames, 4 in a block of 9 pages).
fn af_packet_geometry(needed: usize, page_bytes: usize) -> (usize, usize) {
    let frame_size = needed.next_multiple_of(page_bytes / 8);
    let frames_per_block = page_bytes / greatest_common_divisor(frame_size, page_bytes);
    (frame_size, frame_size * frames_per_block)
}

fn greatest_common_divisor(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The port's vdev as a `net_memif` server in polling mode; returns the vdevs and the socket
/// file the PMD binds (None for an abstract socket).
///
/// - `role=server` (added when absent): the appliance listens, a load generator connects (its
///   role `client`). DPDK's memif server masks the interrupts of every ring when a client
///   connects, so neither side writes or reads an eventfd per burst: both poll.
/// - `socket=<runtime_dir>/memif.sock` with `socket-abstract=no` unless given: a file the
///   operator can find and permission (DPDK 22.11's default is the abstract `/run/memif.sock`).
/// - `rsize` (log2 of the ring slots) as many as the default rx descriptors: the client's
///   TCP window in flight fits the ring (1024 slots by default, less than a 1 MB batch).
/// - `bsize` (bytes of a ring buffer) must hold a whole frame: a frame split over buffers would
///   reach the port as a chained mbuf, which the device drops.
///
/// DPDK 22.11's memif takes frames of at most 1518 bytes (MTU 1500) and has no RSS: the server
/// takes as many rings as its client opens, so it serves one polling lcore.
fn with_memif_server(
    mut vdevs: Vec<String>,
    runtime_dir: &Path,
    mtu: u16,
    polling_lcores: usize,
) -> Result<(Vec<String>, Option<PathBuf>), BackendError> {
    let Some(first) = vdevs.first_mut() else {
        return Ok((vdevs, None));
    };
    let vdev = Vdev::parse(first)?;
    if vdev.driver() != "net_memif" {
        return Ok((vdevs, None));
    }
    let invalid = |reason: String| Err(BackendError::InvalidConfig(reason));
    let name = &vdev.name;
    if polling_lcores != 1 {
        return invalid(format!(
            "vdevs: {name} (memif) serves one polling lcore (no RSS, and the server takes the \
             client's ring count): give lcores = [main, one polling lcore]"
        ));
    }
    if mtu > MEMIF_MTU_MAX {
        return invalid(format!(
            "vdevs: {name}: DPDK 22.11's memif takes frames of at most {} bytes: set [dpdk] mtu \
             <= {MEMIF_MTU_MAX}",
            frame_bytes(MEMIF_MTU_MAX)
        ));
    }
    match vdev.option("role") {
        None => first.push_str(",role=server"),
        Some("server") => {}
        Some(other) => {
            return invalid(format!(
                "vdevs: {name} has role={other}: the appliance is the memif server (role=server); \
                 its clients connect to its socket"
            ));
        }
    }
    match vdev.option("rsize").map(str::parse::<u32>) {
        None => first.push_str(&format!(",rsize={}", RX_DESCRIPTORS_DEFAULT.ilog2())),
        Some(Ok(log2)) if (1..=MEMIF_LOG2_RING_SIZE_MAX).contains(&log2) => {}
        Some(_) => {
            return invalid(format!(
                "vdevs: {name} has rsize={}: the log2 of the ring slots, 1..={MEMIF_LOG2_RING_SIZE_MAX}",
                vdev.option("rsize").unwrap_or_default()
            ));
        }
    }
    let buffer_bytes = match vdev.option("bsize").map(str::parse::<usize>) {
        None => MEMIF_BUFFER_BYTES_DEFAULT,
        Some(Ok(bytes)) => bytes,
        Some(Err(_)) => 0,
    };
    if buffer_bytes < frame_bytes(mtu) {
        return invalid(format!(
            "vdevs: {name} has bsize={}: a ring buffer must hold a whole frame of [dpdk] mtu = \
             {mtu} ({} bytes), or leave bsize out",
            vdev.option("bsize").unwrap_or_default(),
            frame_bytes(mtu)
        ));
    }
    let abstract_socket = match vdev.option("socket-abstract") {
        None => {
            first.push_str(",socket-abstract=no");
            false
        }
        Some("no") => false,
        Some("yes") => true,
        Some(other) => {
            return invalid(format!(
                "vdevs: {name} has socket-abstract={other}: give yes or no"
            ));
        }
    };
    let socket = match vdev.option("socket") {
        Some(path) => PathBuf::from(path),
        None => {
            let path =
                std::path::absolute(runtime_dir.join(MEMIF_SOCKET_FILE)).map_err(|error| {
                    BackendError::InvalidConfig(format!("the runtime directory: {error}"))
                })?;
            first.push_str(&format!(",socket={}", path.display()));
            path
        }
    };
    let socket_bytes = socket.as_os_str().len();
    if socket_bytes >= MEMIF_SOCKET_PATH_MAX_BYTES
        || socket.to_str().is_none_or(|s| s.contains(','))
    {
        return invalid(format!(
            "vdevs: {name}: the memif socket path {} must be shorter than {MEMIF_SOCKET_PATH_MAX_BYTES} \
             bytes and have no ','; give socket=<shorter path>",
            socket.display()
        ));
    }
    if abstract_socket {
        return Ok((vdevs, None));
    }
    if !socket.is_absolute() {
        return invalid(format!(
            "vdevs: {name}: socket={} must be an absolute path",
            socket.display()
        ));
    }
    Ok((vdevs, Some(socket)))
}

/// A memif server's socket file left behind by a run that was killed (the PMD unlinks it when it
/// closes the port, and cannot bind over it). A socket someone still listens on is another
/// memif server: that is an error, never removed.
fn remove_stale_memif_socket(socket: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::symlink_metadata(socket) else {
        return Ok(());
    };
    let in_use = |reason: String| {
        Err(BackendError::InvalidConfig(format!(
            "vdevs: memif socket {}: {reason}",
            socket.display()
        )))
    };
    if !metadata.file_type().is_socket() {
        return in_use("exists and is not a socket: remove it or give another socket=".into());
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => {
            in_use("another memif server listens on it: stop it or give another socket=".into())
        }
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::warn!(socket = %socket.display(), "removed the memif socket left by an earlier run that did not stop cleanly");
            std::fs::remove_file(socket).or_else(|error| in_use(error.to_string()))
        }
        Err(error) => in_use(error.to_string()),
    }
}

/// The appliance's address and its gateway ("" = none).
fn parse_addresses(
    ip_address: &str,
    gateway: &str,
) -> Result<(Ipv4Addr, Option<Ipv4Addr>), BackendError> {
    let invalid = |reason: String| Err(BackendError::InvalidConfig(reason));
    let Ok(address) = ip_address.parse::<Ipv4Addr>() else {
        return invalid(format!("ip_address '{ip_address}' is not an IPv4 address"));
    };
    if gateway.is_empty() {
        return Ok((address, None));
    }
    match gateway.parse::<Ipv4Addr>() {
        Ok(gateway) => Ok((address, Some(gateway))),
        Err(_) => invalid(format!("gateway '{gateway}' is not an IPv4 address")),
    }
}

/// Adds `xdp_prog=<riptide's object>` to af_xdp vdevs that have none; returns the vdevs and the
/// af_xdp interface (whose program needs configuring once the PMD loaded it).
fn with_xdp_object(
    vdevs: &[String],
    runtime_dir: &Path,
) -> Result<(Vec<String>, Option<String>), BackendError> {
    let mut result = Vec::with_capacity(vdevs.len());
    let mut xdp_iface = None;
    for text in vdevs {
        let vdev = Vdev::parse(text)?;
        if vdev.driver() != "net_af_xdp" {
            result.push(text.clone());
            continue;
        }
        xdp_iface = vdev.option("iface").map(str::to_string);
        if vdev.option("xdp_prog").is_some() {
            result.push(text.clone());
            continue;
        }
        let path = riptide_ebpf::write_xdp_object(runtime_dir).map_err(|source| {
            BackendError::XdpObject {
                dir: runtime_dir.display().to_string(),
                source,
            }
        })?;
        result.push(format!("{text},xdp_prog={}", path.display()));
    }
    Ok((result, xdp_iface))
}

/// Port, lcore and XDP counters of the backend.
#[derive(Debug, Clone, Serialize)]
pub struct DpdkStats {
    pub port: PortStats,
    pub lcores: Vec<LcoreStatsSnapshot>,
}

/// The running backend. Stop it with [`DpdkBackend::stop`] (dropping it stops it too).
pub struct DpdkBackend {
    stop: Arc<AtomicBool>,
    lcores: Vec<LcoreJoin>,
    lcore_stats: Vec<Arc<LcoreStats>>,
    xdp_maps: Option<riptide_ebpf::XdpMaps>,
    // Declared last: dropped after the lcores stopped, the port before the EAL.
    port: Option<Port>,
    eal: Option<Eal>,
}

impl DpdkBackend {
    /// Starts the EAL, the port (one queue per polling lcore) and one worker-core loop per
    /// polling lcore; `contexts` has one `WorkerContext` per entry of `plan.worker_lcores`.
    ///
    /// Errors: EAL, port and XDP errors (each naming its fix), [`BackendError::LcoreStart`].
    pub fn start(
        plan: &DpdkPlan,
        contexts: Vec<WorkerContext>,
    ) -> Result<DpdkBackend, BackendError> {
        if contexts.len() != plan.worker_lcores.len() {
            let reason = format!(
                "{} worker contexts for {} polling lcores",
                contexts.len(),
                plan.worker_lcores.len()
            );
            return Err(BackendError::InvalidConfig(reason));
        }
        check_interface_mtu(plan)?;
        if let Some(socket) = &plan.memif_socket {
            remove_stale_memif_socket(socket)?;
        }
        let eal = Eal::init(&plan.eal)?;
        if let Some(iface) = &plan.xdp_iface {
            remove_stale_xdp(iface)?;
        }
        let port = Port::open(&eal, &plan.device, &plan.port)?;
        let xdp_maps = match &plan.xdp_iface {
            Some(iface) => Some(configure_xdp(iface, plan)?),
            None => None,
        };
        let mut backend = DpdkBackend {
            stop: Arc::new(AtomicBool::new(false)),
            lcores: Vec::new(),
            lcore_stats: Vec::new(),
            xdp_maps,
            port: Some(port),
            eal: Some(eal),
        };
        let lcores_count = plan.worker_lcores.len();
        let mut steering = LcoreSteering::mesh(lcores_count, STEERING_RING_FRAMES).into_iter();
        for ((queue_id, &lcore_id), ctx) in (0u16..).zip(&plan.worker_lcores).zip(contexts) {
            // One lcore alone owns every flow of its port: nothing to hand over.
            let steering = steering.next().filter(|_| lcores_count > 1);
            backend.launch(lcore_id, queue_id, steering, plan.lcore.clone(), ctx)?;
        }
        // A memif server's link is up only while a client is connected: nothing to wait for.
        let link_wait = match plan.memif_socket {
            Some(_) => Duration::ZERO,
            None => Duration::from_secs(1),
        };
        let link = backend.port()?.wait_link_up(link_wait)?;
        tracing::info!(device = %plan.device, ?link, lcores = ?plan.worker_lcores, "DPDK backend ready");
        Ok(backend)
    }

    fn port(&self) -> Result<&Port, BackendError> {
        self.port
            .as_ref()
            .ok_or_else(|| BackendError::InvalidConfig("backend stopped".into()))
    }

    fn launch(
        &mut self,
        lcore_id: u32,
        queue_id: u16,
        steering: Option<LcoreSteering>,
        config: LcoreConfig,
        ctx: WorkerContext,
    ) -> Result<(), BackendError> {
        let queue = self.port()?.queue(queue_id)?;
        let stop = Arc::clone(&self.stop);
        let (ready_sender, ready) = mpsc::channel::<Result<Arc<LcoreStats>, String>>();
        let eal = self
            .eal
            .as_ref()
            .ok_or_else(|| BackendError::InvalidConfig("no EAL".into()))?;
        // The lcore polls its reply rings every turn and never blocks on its eventfd: the
        // servers' replies need no wakeup write (see `mesh::ring::Waker`).
        ctx.links.waker.reader_running();
        let join = eal.launch(lcore_id, move || {
            // The core holds continuations that are not Send: it is built on its lcore.
            let core = crate::session::WorkerCore::new(ctx);
            match Lcore::sharing_port(queue, steering, config, core) {
                Ok(mut lcore) => {
                    let _ = ready_sender.send(Ok(lcore.stats()));
                    lcore.run(&stop);
                }
                Err(error) => {
                    let _ = ready_sender.send(Err(error.to_string()));
                }
            }
        })?;
        self.lcores.push(join);
        match ready.recv_timeout(Duration::from_millis(LCORE_START_TIMEOUT_MS)) {
            Ok(Ok(stats)) => {
                self.lcore_stats.push(stats);
                Ok(())
            }
            Ok(Err(reason)) => Err(BackendError::LcoreStart { lcore_id, reason }),
            Err(_) => Err(BackendError::LcoreStart {
                lcore_id,
                reason: "no answer".into(),
            }),
        }
    }

    /// Port and lcore counters now.
    ///
    /// Errors: [`BackendError::Port`] when the driver cannot report.
    pub fn stats(&self) -> Result<DpdkStats, BackendError> {
        let port = self.port()?.stats()?;
        let lcores = self
            .lcore_stats
            .iter()
            .map(|stats| stats.snapshot())
            .collect();
        Ok(DpdkStats { port, lcores })
    }

    /// Counters of riptide's XDP program, when the port is af_xdp.
    pub fn xdp_counters(&self) -> Option<riptide_ebpf::XdpCounters> {
        self.xdp_maps.as_ref().and_then(|maps| maps.counters().ok())
    }

    /// Stops the lcores, then the port and the EAL; returns the final counters (read after
    /// the lcores stopped, so port and lcore figures agree).
    ///
    /// Errors: [`BackendError::Port`] when the final counters cannot be read (it stops anyway).
    pub fn stop(mut self) -> Result<DpdkStats, BackendError> {
        self.stop_lcores();
        let stats = self.stats();
        self.shut_down();
        stats
    }

    fn stop_lcores(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for join in self.lcores.drain(..) {
            if !join.join() {
                tracing::error!("a DPDK lcore loop panicked");
            }
        }
    }

    fn shut_down(&mut self) {
        self.stop_lcores();
        self.xdp_maps = None;
        self.port = None;
        self.eal = None;
    }
}

impl Drop for DpdkBackend {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The kernel interface behind an af_packet or af_xdp vdev carries the frames: smoltcp's largest
/// would not get through an interface of a smaller MTU (the kernel drops them), so the start
/// stops with the fix instead. An interface that does not exist is the EAL pre-flight's error.
fn check_interface_mtu(plan: &DpdkPlan) -> Result<(), BackendError> {
    let Some(text) = plan.eal.vdevs.first() else {
        return Ok(());
    };
    let vdev = Vdev::parse(text)?;
    let (true, Some(iface)) = (
        matches!(vdev.driver(), "net_af_packet" | "net_af_xdp"),
        vdev.option("iface"),
    ) else {
        return Ok(());
    };
    let path = format!("/sys/class/net/{iface}/mtu");
    let Some(iface_mtu) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    if iface_mtu < u32::from(plan.port.mtu) {
        return Err(BackendError::InterfaceMtu {
            iface: iface.to_string(),
            iface_mtu,
            mtu: plan.port.mtu,
        });
    }
    Ok(())
}

/// The af_xdp PMD attaches its XDP program through netlink, so a run that ended without cleaning
/// up (SIGKILL, a crash) leaves it on the interface, and the PMD refuses to attach over it. Detach
/// riptide's leftover before the port opens (another program is never touched: that is an error).
/// After `Eal::init`, whose file-prefix lock keeps a second live appliance out.
fn remove_stale_xdp(iface: &str) -> Result<(), BackendError> {
    match riptide_ebpf::xdp::remove_stale(iface) {
        Ok(Some(program_id)) => {
            tracing::warn!(
                iface,
                program_id,
                "detached riptide's XDP program left attached by an earlier run that did not stop cleanly"
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(error) => Err(BackendError::XdpSteering {
            iface: iface.to_string(),
            reason: error.to_string(),
        }),
    }
}

fn configure_xdp(iface: &str, plan: &DpdkPlan) -> Result<riptide_ebpf::XdpMaps, BackendError> {
    let error = |reason: String| BackendError::XdpSteering {
        iface: iface.to_string(),
        reason,
    };
    let mut maps = riptide_ebpf::XdpMaps::open_attached(iface).map_err(|e| error(e.to_string()))?;
    let steer = riptide_ebpf::XdpConfig {
        ip: plan.lcore.ip_address,
        ports: vec![plan.lcore.tcp_port],
    };
    maps.configure(&steer).map_err(|e| error(e.to_string()))?;
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::load(None).expect("embedded defaults");
        config.dpdk.lcores = vec![0, 1];
        config.dpdk.vdevs = vec!["net_af_packet0,iface=lo".to_string()];
        config.dpdk.ip_address = "10.1.2.3".to_string();
        config.dpdk.prefix_len = 24;
        config.dpdk.gateway = String::new();
        config.dpdk.port = 8090;
        config
    }

    #[test]
    fn plan_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.dpdk.no_huge = true;
        config.dpdk.memory_mb = 256;
        config.dpdk.gateway = "10.1.2.1".to_string();
        config.tcp.connections_max = 100_000;
        config.tcp.keepalive_s = 7;
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.device, "net_af_packet0");
        assert_eq!(plan.worker_lcores, vec![1]);
        assert_eq!(plan.eal.lcores, vec![0, 1]);
        assert_eq!(plan.eal.memory, EalMemory::NoHuge { memory_mb: 256 });
        assert_eq!(plan.lcore.ip_address, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(plan.lcore.gateway, Some(Ipv4Addr::new(10, 1, 2, 1)));
        assert_eq!(plan.lcore.connections_max, LCORE_CONNECTIONS_DEFAULT);
        assert_eq!(plan.lcore.keepalive_s, 7);
        assert_eq!(plan.xdp_iface, None);
    }

    #[test]
    fn several_polling_lcores_get_one_queue_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.dpdk.lcores = vec![0, 1, 2];
        config.dpdk.cpus = vec![0, 1, 1];
        config.tcp.connections_max = 600;
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.worker_lcores, vec![1, 2]);
        assert_eq!(plan.eal.cpus, vec![0, 1, 1]);
        assert_eq!(
            plan.eal.vdevs,
            ["net_af_packet0,iface=lo,qpairs=2,framecnt=4096"]
        );
        config.dpdk.vdevs = vec!["net_af_packet0,iface=lo,framecnt=1024".to_string()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(
            plan.eal.vdevs,
            ["net_af_packet0,iface=lo,framecnt=1024,qpairs=2"]
        );
        assert_eq!(plan.lcore.connections_max, 300);
        config.dpdk.vdevs = vec!["net_af_xdp0,iface=eth7,xdp_prog=/own.o".to_string()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(
            plan.eal.vdevs,
            ["net_af_xdp0,iface=eth7,xdp_prog=/own.o,queue_count=2"]
        );
        config.dpdk.vdevs = vec!["net_af_xdp0,iface=eth7,xdp_prog=/own.o,queue_count=2".into()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.eal.vdevs, config.dpdk.vdevs);
    }

    #[test]
    fn the_mtu_sizes_the_port_mbufs_and_af_packet_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!((plan.port.mtu, plan.port.mbuf_data_bytes), (1500, 2048));
        assert_eq!(plan.eal.vdevs, ["net_af_packet0,iface=lo,framecnt=4096"]);

        // 9014-byte frames land 66 bytes into a ring frame: 9216-byte frames, 4 to a 9-page
        // block, rings of as many bytes as the default ones; mbufs take a whole ring frame.
        config.dpdk.mtu = 9000;
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.port.mtu, 9000);
        assert_eq!(plan.port.mbuf_data_bytes, 9216 - 32);
        if page_bytes() == 4096 {
            assert_eq!(
                plan.eal.vdevs,
                ["net_af_packet0,iface=lo,framesz=9216,blocksz=36864,framecnt=912"]
            );
        }

        config.dpdk.vdevs = vec!["net_af_packet0,iface=lo,framesz=16384,blocksz=16384".into()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(
            plan.eal.vdevs,
            ["net_af_packet0,iface=lo,framesz=16384,blocksz=16384,framecnt=512"]
        );
        assert_eq!(plan.port.mbuf_data_bytes, 16384 - 32);

        config.dpdk.vdevs = vec!["net_af_packet0,iface=lo,framesz=4096".into()];
        let error = DpdkPlan::from_config(&config, dir.path()).unwrap_err();
        assert!(error.to_string().contains("framesz >= 9088"), "{error}");

        // af_xdp receives after XDP's 256-byte headroom.
        config.dpdk.mtu = 3442;
        config.dpdk.vdevs = vec!["net_af_xdp0,iface=eth7,xdp_prog=/own.o".into()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.port.mbuf_data_bytes, 256 + 3442 + 14);
    }

    #[test]
    fn af_packet_frames_fill_whole_blocks_of_pages() {
        for page in [4096, 65_536] {
            for needed in [1580, 2064, 4000, 9080, 9666] {
                let (frame, block) = af_packet_geometry(needed, page);
                assert!(frame >= needed && frame % 16 == 0, "{needed}: {frame}");
                assert!(block % page == 0 && block % frame == 0, "{needed}: {block}");
                assert!(block / frame <= 8, "{needed}: {frame} in {block}");
            }
        }
        assert_eq!(af_packet_geometry(2048, 4096), (2048, 4096));
    }

    #[test]
    fn af_xdp_vdev_gets_riptides_xdp_object() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.dpdk.vdevs = vec!["net_af_xdp0,iface=eth7".to_string()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        let vdev = Vdev::parse(&plan.eal.vdevs[0]).unwrap();
        let object = vdev.option("xdp_prog").expect("xdp_prog added");
        assert_eq!(
            std::fs::read(object).unwrap(),
            riptide_ebpf::XDP_STEER_OBJECT
        );
        assert_eq!(plan.xdp_iface.as_deref(), Some("eth7"));
        config.dpdk.vdevs = vec!["net_af_xdp0,iface=eth7,xdp_prog=/own.o".to_string()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.eal.vdevs, config.dpdk.vdevs);
    }

    #[test]
    fn memif_vdev_becomes_a_polling_server_on_a_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        config.dpdk.vdevs = vec!["net_memif0".to_string()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        let socket = dir.path().join("memif.sock");
        assert_eq!(
            plan.eal.vdevs,
            [format!(
                "net_memif0,role=server,rsize=12,socket-abstract=no,socket={}",
                socket.display()
            )]
        );
        assert_eq!(plan.memif_socket, Some(socket));
        assert_eq!(plan.device, "net_memif0");

        config.dpdk.vdevs = vec!["net_memif0,role=server,rsize=10,socket=/run/rt.sock".into()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(
            plan.eal.vdevs,
            ["net_memif0,role=server,rsize=10,socket=/run/rt.sock,socket-abstract=no"]
        );
        assert_eq!(plan.memif_socket, Some(PathBuf::from("/run/rt.sock")));

        config.dpdk.vdevs = vec!["net_memif0,socket-abstract=yes,socket=/rt".into()];
        let plan = DpdkPlan::from_config(&config, dir.path()).unwrap();
        assert_eq!(plan.memif_socket, None);
    }

    #[test]
    fn memif_limits_are_named() {
        let dir = tempfile::tempdir().unwrap();
        type Breaks = fn(&mut Config);
        let cases: [(&str, Breaks); 6] = [
            ("role=server", |config| {
                config.dpdk.vdevs = vec!["net_memif0,role=client".into()]
            }),
            ("mtu <= 1500", |config| config.dpdk.mtu = 9000),
            ("one polling lcore", |config| {
                config.dpdk.lcores = vec![0, 1, 2]
            }),
            ("1..=14", |config| {
                config.dpdk.vdevs = vec!["net_memif0,rsize=15".into()]
            }),
            ("whole frame", |config| {
                config.dpdk.vdevs = vec!["net_memif0,bsize=1024".into()]
            }),
            ("shorter than 108", |config| {
                config.dpdk.vdevs = vec![format!("net_memif0,socket=/{}", "d".repeat(120))]
            }),
        ];
        for (key, breaks) in cases {
            let mut config = config();
            config.dpdk.vdevs = vec!["net_memif0".into()];
            breaks(&mut config);
            let error = DpdkPlan::from_config(&config, dir.path()).unwrap_err();
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn stale_memif_socket_is_removed_but_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memif.sock");
        remove_stale_memif_socket(&path).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let error = remove_stale_memif_socket(&path).unwrap_err();
        assert!(
            error.to_string().contains("another memif server"),
            "{error}"
        );
        drop(listener);
        remove_stale_memif_socket(&path).unwrap();
        assert!(!path.exists());
        std::fs::write(&path, "").unwrap();
        let error = remove_stale_memif_socket(&path).unwrap_err();
        assert!(error.to_string().contains("not a socket"), "{error}");
    }

    #[test]
    fn invalid_sections_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        type Breaks = fn(&mut Config);
        let cases: [(&str, Breaks); 7] = [
            ("lcores", |config| config.dpdk.lcores = vec![1]),
            ("at most 64 polling lcores", |config| {
                config.dpdk.lcores = (0..66).collect()
            }),
            ("cpus", |config| config.dpdk.cpus = vec![0]),
            ("qpairs=3", |config| {
                config.dpdk.lcores = vec![0, 1, 2];
                config.dpdk.vdevs = vec!["net_af_packet0,iface=lo,qpairs=3".to_string()];
            }),
            ("ip_address", |config| {
                config.dpdk.ip_address = "fe80::1".to_string()
            }),
            ("gateway", |config| config.dpdk.gateway = "nope".to_string()),
            ("vdevs or allow_pci", |config| config.dpdk.vdevs.clear()),
        ];
        for (key, breaks) in cases {
            let mut config = config();
            breaks(&mut config);
            let error = DpdkPlan::from_config(&config, dir.path()).unwrap_err();
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }
}
