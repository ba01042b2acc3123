//! smoltcp over DPDK mbufs: a `phy::Device` whose frames are the mbufs of rx/tx bursts (no
//! allocation per packet: received frames are read in place, transmitted frames are written
//! straight into an mbuf from the queue's pool), and the interface configuration (the appliance's
//! own IPv4 address; smoltcp answers ARP and ping for it). When several lcores share the port,
//! the device hands frames of other lcores' flows over and takes theirs ([`super::steer`]).

use std::net::Ipv4Addr;
use std::ptr::NonNull;

use smoltcp::iface::{Config, Interface};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use super::checksum::{fill_tcp_checksum, tcp_checksum_valid};
use super::constants::{BURST_PACKETS_MAX, RX_HELD_PACKETS_MAX};
use super::ffi;
use super::port::{frame_bytes, QueueHandle};
use super::retransmit::RetransmitCounter;
use super::steer::{self, Destination, LcoreSteering, SteeredFrame};

/// Counters of one device (one queue of one port, polled by one lcore).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames smoltcp produced that could not be queued: no mbuf free or the tx burst stayed full.
    pub tx_dropped: u64,
    /// Tx mbuf allocations that failed (the queue's mempool was exhausted).
    pub tx_no_mbuf: u64,
    /// Received frames spread over several mbufs (never within the port's MTU: an mbuf holds a
    /// whole frame): dropped.
    pub rx_dropped_segmented: u64,
    /// Received TCP segments whose checksum is wrong: dropped (see [`super::checksum`]).
    pub rx_dropped_checksum: u64,
    /// Frames received here that belong to another lcore's flow, handed over to it.
    pub steered_out: u64,
    /// Frames other lcores handed over to this one.
    pub steered_in: u64,
    /// ARP frames copied to the other lcores (one copy per other lcore).
    pub arp_copies: u64,
    /// Frames that could not be handed over (ring full, or no mbuf for an ARP copy): dropped.
    pub steer_dropped: u64,
    /// TCP segments smoltcp sent again (see [`super::retransmit`]).
    pub tcp_retransmits: u64,
}

/// A smoltcp device over one DPDK queue.
pub struct MbufDevice {
    queue: QueueHandle,
    /// The other lcores of the port, when there are any.
    steering: Option<LcoreSteering>,
    rx: RxRing,
    /// Separate from `rx` so an rx token (holding them) and a tx token can coexist.
    rx_counters: RxCounters,
    tx: TxRing,
}

#[derive(Debug, Default)]
struct RxCounters {
    packets: u64,
    bytes: u64,
    dropped_segmented: u64,
    dropped_checksum: u64,
    steered_out: u64,
    steered_in: u64,
    arp_copies: u64,
    steer_dropped: u64,
}

#[derive(Debug, Default)]
struct TxCounters {
    packets: u64,
    bytes: u64,
    dropped: u64,
    no_mbuf: u64,
}

/// Mbufs of the last rx burst (and those other lcores handed over) not yet handed to smoltcp.
struct RxRing {
    mbufs: [*mut ffi::rte_mbuf; RX_HELD_PACKETS_MAX],
    count: usize,
    next: usize,
}

/// Frames written by smoltcp, waiting for the next tx burst.
struct TxRing {
    port_id: u16,
    queue_id: u16,
    pool: *mut ffi::rte_mempool,
    mbufs: [*mut ffi::rte_mbuf; BURST_PACKETS_MAX],
    /// Frame length of each queued mbuf, to count the bytes the driver actually took.
    lens_bytes: [u16; BURST_PACKETS_MAX],
    count: usize,
    counters: TxCounters,
    retransmits: RetransmitCounter,
    /// Largest frame smoltcp may write: the port's MTU plus the Ethernet header.
    frame_bytes_max: usize,
    /// Where a frame goes when no mbuf could be had: smoltcp's token must still get a buffer.
    scratch: Box<[u8]>,
}

impl MbufDevice {
    /// A device over `queue`; `steering` when other lcores poll other queues of the same port.
    pub fn new(queue: QueueHandle, steering: Option<LcoreSteering>) -> MbufDevice {
        let frame_bytes_max = frame_bytes(queue.port().mtu());
        let tx = TxRing {
            port_id: queue.port_id(),
            queue_id: queue.queue_id(),
            pool: queue.pool(),
            mbufs: [std::ptr::null_mut(); BURST_PACKETS_MAX],
            lens_bytes: [0; BURST_PACKETS_MAX],
            count: 0,
            counters: TxCounters::default(),
            retransmits: RetransmitCounter::default(),
            frame_bytes_max,
            scratch: vec![0; frame_bytes_max].into_boxed_slice(),
        };
        let rx = RxRing {
            mbufs: [std::ptr::null_mut(); RX_HELD_PACKETS_MAX],
            count: 0,
            next: 0,
        };
        MbufDevice {
            queue,
            steering,
            rx,
            rx_counters: RxCounters::default(),
            tx,
        }
    }

    pub fn queue(&self) -> &QueueHandle {
        &self.queue
    }

    pub fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            rx_packets: self.rx_counters.packets,
            rx_bytes: self.rx_counters.bytes,
            tx_packets: self.tx.counters.packets,
            tx_bytes: self.tx.counters.bytes,
            tx_dropped: self.tx.counters.dropped,
            tx_no_mbuf: self.tx.counters.no_mbuf,
            rx_dropped_segmented: self.rx_counters.dropped_segmented,
            rx_dropped_checksum: self.rx_counters.dropped_checksum,
            steered_out: self.rx_counters.steered_out,
            steered_in: self.rx_counters.steered_in,
            arp_copies: self.rx_counters.arp_copies,
            steer_dropped: self.rx_counters.steer_dropped,
            tcp_retransmits: self.tx.retransmits.retransmits(),
        }
    }

    /// Takes the frames other lcores handed over and up to a burst of frames from the queue,
    /// once the previous ones are consumed; frames of other lcores' flows are handed to them.
    /// Returns the frames taken (from the queue and from other lcores).
    pub fn rx_burst(&mut self) -> usize {
        if self.rx.next < self.rx.count {
            return 0;
        }
        self.rx.next = 0;
        self.rx.count = match &mut self.steering {
            Some(steering) => steering.receive(&mut self.rx.mbufs[..BURST_PACKETS_MAX]),
            None => 0,
        };
        let steered_in = self.rx.count;
        self.rx_counters.steered_in += steered_in as u64;
        let mut burst = [std::ptr::null_mut(); BURST_PACKETS_MAX];
        // SAFETY: the queue is set up and polled by this lcore only; burst has room for a burst.
        let received = unsafe {
            ffi::riptide_rx_burst(
                self.queue.port_id(),
                self.queue.queue_id(),
                burst.as_mut_ptr(),
                BURST_PACKETS_MAX as u16,
            )
        };
        let received = usize::from(received);
        self.rx_counters.packets += received as u64;
        for &mbuf in &burst[..received] {
            // SAFETY: mbuf was just received and is ours.
            self.rx_counters.bytes += u64::from(unsafe { ffi::riptide_pktmbuf_pkt_len(mbuf) });
            self.dispatch_received(mbuf);
        }
        steered_in + received
    }

    /// Keeps a received frame for this lcore's smoltcp or hands it to the lcore owning it.
    fn dispatch_received(&mut self, mbuf: *mut ffi::rte_mbuf) {
        let Some(steering) = &mut self.steering else {
            self.rx.keep(mbuf);
            return;
        };
        // SAFETY: mbuf was just received and is ours.
        let destination = match unsafe { single_segment(mbuf) } {
            Some(frame) => steer::classify(frame, steering.index(), steering.lcores_count()),
            None => Destination::Here,
        };
        match destination {
            Destination::Here => self.rx.keep(mbuf),
            Destination::Lcore(owner) => {
                self.rx_counters.steered_out += 1;
                // SAFETY: mbuf is ours and given up here.
                let frame = unsafe { SteeredFrame::new(NonNull::new_unchecked(mbuf)) };
                if steering.send(owner, frame).is_err() {
                    self.rx_counters.steer_dropped += 1;
                }
            }
            Destination::Everyone => {
                let here = steering.index();
                for other in (0..steering.lcores_count()).filter(|&i| i != here) {
                    // SAFETY: mbuf is a received frame we own; pool is this queue's pool.
                    let copy = unsafe { copy_for_learning(mbuf, self.tx.pool) };
                    let sent = copy.map(|frame| steering.send(other, frame).is_ok());
                    if sent == Some(true) {
                        self.rx_counters.arp_copies += 1;
                    } else {
                        self.rx_counters.steer_dropped += 1;
                    }
                }
                self.rx.keep(mbuf);
            }
        }
    }

    /// Hands the frames smoltcp wrote to the driver. Frames the driver does not take stay queued
    /// for the next call. Returns the frames sent.
    pub fn flush_tx(&mut self) -> usize {
        self.tx.flush()
    }

    /// Frames written but not yet accepted by the driver.
    pub fn tx_pending(&self) -> usize {
        self.tx.count
    }
}

impl RxRing {
    /// Queues a frame for smoltcp; the caller has checked there is room (at most one queue burst
    /// plus one burst from other lcores are held).
    fn keep(&mut self, mbuf: *mut ffi::rte_mbuf) {
        self.mbufs[self.count] = mbuf;
        self.count += 1;
    }
}

/// The bytes of a one-segment mbuf, or None for a segmented one.
///
/// # Safety
/// `mbuf` must be a valid mbuf that outlives the returned slice.
unsafe fn single_segment<'a>(mbuf: *mut ffi::rte_mbuf) -> Option<&'a [u8]> {
    if ffi::riptide_pktmbuf_segs_count(mbuf) != 1 {
        return None;
    }
    // A one-segment mbuf's data is data_len contiguous bytes at mtod.
    Some(std::slice::from_raw_parts(
        ffi::riptide_pktmbuf_data(mbuf).cast::<u8>(),
        usize::from(ffi::riptide_pktmbuf_data_len(mbuf)),
    ))
}

/// A copy of an ARP frame for another lcore to learn from, a request turned into a reply; None
/// when the pool is empty.
///
/// # Safety
/// `mbuf` must be a valid one-segment mbuf; `pool` a live mempool.
unsafe fn copy_for_learning(
    mbuf: *mut ffi::rte_mbuf,
    pool: *mut ffi::rte_mempool,
) -> Option<SteeredFrame> {
    let frame = single_segment(mbuf)?;
    let copy = NonNull::new(ffi::riptide_pktmbuf_alloc(pool))?;
    // The copy is owned from here on, so an early return frees it.
    let copy = SteeredFrame::new(copy);
    let data = ffi::riptide_pktmbuf_append(copy.as_ptr(), frame.len() as u16);
    if data.is_null() {
        return None;
    }
    let bytes = std::slice::from_raw_parts_mut(data.cast::<u8>(), frame.len());
    bytes.copy_from_slice(frame);
    steer::arp_request_to_reply(bytes);
    Some(copy)
}

impl TxRing {
    fn flush(&mut self) -> usize {
        if self.count == 0 {
            return 0;
        }
        // SAFETY: the first `count` entries are mbufs we own; the driver takes ownership of the
        // first `sent` of them.
        let sent = unsafe {
            ffi::riptide_tx_burst(
                self.port_id,
                self.queue_id,
                self.mbufs.as_mut_ptr(),
                self.count as u16,
            )
        };
        let sent = usize::from(sent);
        self.counters.packets += sent as u64;
        self.counters.bytes += self.lens_bytes[..sent]
            .iter()
            .map(|&len| u64::from(len))
            .sum::<u64>();
        self.mbufs.copy_within(sent..self.count, 0);
        self.lens_bytes.copy_within(sent..self.count, 0);
        self.count -= sent;
        sent
    }
}

impl Drop for MbufDevice {
    fn drop(&mut self) {
        let unread = self.rx.count - self.rx.next;
        // SAFETY: mbufs [next, count) of the rx burst and [0, count) of the tx queue are ours.
        unsafe {
            ffi::riptide_pktmbuf_free_bulk(
                self.rx.mbufs[self.rx.next..].as_mut_ptr(),
                unread as u32,
            );
            ffi::riptide_pktmbuf_free_bulk(self.tx.mbufs.as_mut_ptr(), self.tx.count as u32);
        }
    }
}

/// One received frame; the mbuf goes back to its pool when the token is consumed or dropped.
pub struct MbufRxToken<'a> {
    mbuf: *mut ffi::rte_mbuf,
    counters: &'a mut RxCounters,
}

pub struct MbufTxToken<'a> {
    tx: &'a mut TxRing,
}

impl Device for MbufDevice {
    type RxToken<'a> = MbufRxToken<'a>;
    type TxToken<'a> = MbufTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(MbufRxToken<'_>, MbufTxToken<'_>)> {
        if self.rx.next >= self.rx.count {
            return None;
        }
        let mbuf = self.rx.mbufs[self.rx.next];
        self.rx.next += 1;
        Some((
            MbufRxToken {
                mbuf,
                counters: &mut self.rx_counters,
            },
            MbufTxToken { tx: &mut self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<MbufTxToken<'_>> {
        Some(MbufTxToken { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        // smoltcp's MTU of an Ethernet medium counts the Ethernet header; its MSS follows.
        capabilities.max_transmission_unit = self.tx.frame_bytes_max;
        capabilities.max_burst_size = Some(BURST_PACKETS_MAX);
        // The tokens compute and verify TCP checksums, faster than smoltcp (super::checksum).
        capabilities.checksum.tcp = Checksum::None;
        capabilities
    }
}

impl RxToken for MbufRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        // SAFETY: the token owns its mbuf until it is freed in Drop below, after f returns.
        let result = match unsafe { single_segment(self.mbuf) } {
            Some(frame) if tcp_checksum_valid(frame) => f(frame),
            Some(_) => {
                // smoltcp drops an empty frame as malformed.
                self.counters.dropped_checksum += 1;
                f(&[])
            }
            None => {
                // An empty frame makes smoltcp drop it as malformed; our MTU never produces these.
                self.counters.dropped_segmented += 1;
                f(&[])
            }
        };
        drop(self);
        result
    }
}

impl Drop for MbufRxToken<'_> {
    fn drop(&mut self) {
        // SAFETY: this token owns the mbuf; it is freed exactly once, here.
        unsafe { ffi::riptide_pktmbuf_free(self.mbuf) };
    }
}

impl TxToken for MbufTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let len = len.min(self.tx.frame_bytes_max);
        if self.tx.count == BURST_PACKETS_MAX {
            self.tx.flush();
        }
        let mbuf = if self.tx.count < BURST_PACKETS_MAX {
            self.tx.alloc(len)
        } else {
            None
        };
        let Some((mbuf, data)) = mbuf else {
            if self.tx.count < BURST_PACKETS_MAX {
                self.tx.counters.no_mbuf += 1;
            }
            self.tx.counters.dropped += 1;
            let result = f(&mut self.tx.scratch[..len]);
            // smoltcp counts the frame as sent; it will be sent again.
            self.tx.retransmits.observe(&self.tx.scratch[..len]);
            return result;
        };
        // SAFETY: data points at len writable bytes appended to the mbuf we own.
        let frame = unsafe { std::slice::from_raw_parts_mut(data, len) };
        let result = f(frame);
        fill_tcp_checksum(frame);
        self.tx.retransmits.observe(frame);
        self.tx.mbufs[self.tx.count] = mbuf;
        self.tx.lens_bytes[self.tx.count] = len as u16;
        self.tx.count += 1;
        result
    }
}

impl TxRing {
    /// An mbuf with `len` bytes of room appended, or None when the pool is empty.
    fn alloc(&mut self, len: usize) -> Option<(*mut ffi::rte_mbuf, *mut u8)> {
        // SAFETY: the pool belongs to this queue and outlives the device.
        let mbuf = unsafe { ffi::riptide_pktmbuf_alloc(self.pool) };
        if mbuf.is_null() {
            return None;
        }
        // SAFETY: mbuf is freshly allocated and ours; len is at most a frame, which its data room
        // holds (Port::open checks the mbuf size against the MTU).
        let data = unsafe { ffi::riptide_pktmbuf_append(mbuf, len as u16) };
        if data.is_null() {
            // SAFETY: mbuf is ours and not queued anywhere.
            unsafe { ffi::riptide_pktmbuf_free(mbuf) };
            return None;
        }
        Some((mbuf, data.cast::<u8>()))
    }
}

/// The appliance's address on the DPDK port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub mac: [u8; 6],
    pub ip_address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    #[error("invalid interface configuration: {0}")]
    InvalidConfig(String),
}

/// A smoltcp interface with the appliance's IPv4 address (and default route via the gateway).
///
/// Errors: [`NetError::InvalidConfig`] for a prefix over 32, a multicast/broadcast MAC or an
/// unspecified address.
pub fn build_interface(
    config: &InterfaceConfig,
    device: &mut impl Device,
    now: Instant,
) -> Result<Interface, NetError> {
    if config.prefix_len > 32 {
        return Err(NetError::InvalidConfig(format!(
            "prefix_len {} > 32",
            config.prefix_len
        )));
    }
    if config.ip_address.is_unspecified() || config.ip_address.is_broadcast() {
        return Err(NetError::InvalidConfig(format!(
            "ip_address {}",
            config.ip_address
        )));
    }
    let mac = EthernetAddress(config.mac);
    if !mac.is_unicast() {
        return Err(NetError::InvalidConfig(format!(
            "port MAC {mac} is not unicast"
        )));
    }
    let mut interface = Interface::new(Config::new(HardwareAddress::Ethernet(mac)), device, now);
    let address: Ipv4Address = config.ip_address;
    interface.update_ip_addrs(|addresses| {
        // One address: the vector's capacity (smoltcp's IFACE_MAX_ADDR_COUNT) is at least 1.
        let _ = addresses.push(IpCidr::new(address.into(), config.prefix_len));
    });
    if let Some(gateway) = config.gateway {
        interface
            .routes_mut()
            .add_default_ipv4_route(gateway)
            .map_err(|_| NetError::InvalidConfig("route table full".to_string()))?;
    }
    Ok(interface)
}
