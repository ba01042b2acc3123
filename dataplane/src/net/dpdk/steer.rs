//! Flow steering between the polling lcores of one port.
//!
//! Each lcore runs its own smoltcp, so every frame of a TCP connection must reach the lcore whose
//! socket owns it, and every lcore must learn its peers' MACs. The port's own spreading cannot be
//! trusted for either: a veth picks the receive queue from the sender's transmit queue (which the
//! sender's kernel may change mid-connection), af_packet's fanout may roll over to another socket,
//! and an ARP reply reaches one queue only. So each lcore classifies what it receives:
//!
//! - IPv4 TCP belongs to the lcore [`flow_owner`] names (a hash of the peer's address and both
//!   ports, the same on every lcore); a frame received elsewhere is handed to its owner through a
//!   bounded single-producer single-consumer ring (`rtrb`, one per ordered pair of lcores). The
//!   mbuf itself moves: no copy, no system call.
//! - ARP is processed where it arrived and a copy goes to every other lcore, so each smoltcp fills
//!   its neighbour cache. A copied request becomes a reply, so only one lcore answers it (smoltcp
//!   learns the sender from both, and answers requests only).
//! - Anything else (ICMP, other protocols) stays where it arrived.
//!
//! A full ring drops the frame and counts it; TCP retransmits it.

use std::ptr::NonNull;

use super::ffi;

/// Where a received frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The lcore that received it.
    Here,
    /// The lcore owning its TCP flow.
    Lcore(usize),
    /// Every lcore (ARP): processed here, a copy to each other lcore.
    Everyone,
}

/// Ethernet and IPv4 field positions the classifier reads (no VLAN tags: the port is untagged).
mod field {
    pub const ETHERTYPE: std::ops::Range<usize> = 12..14;
    pub const ETHERNET_HEADER_BYTES: usize = 14;
    pub const IPV4_VERSION_IHL: usize = 14;
    pub const IPV4_FRAGMENT: std::ops::Range<usize> = 20..22;
    pub const IPV4_PROTOCOL: usize = 23;
    pub const IPV4_SOURCE: std::ops::Range<usize> = 26..30;
    /// The ARP operation (Ethernet/IPv4 ARP): 1 = request, 2 = reply.
    pub const ARP_OPERATION: std::ops::Range<usize> = 20..22;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IP_PROTOCOL_TCP: u8 = 6;
/// More-fragments flag and fragment offset: a fragment other than a whole datagram.
const IPV4_FRAGMENT_MASK: u16 = 0x3fff;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// The lcore (of `lcores_count`) owning the TCP flow from `peer_ip:peer_port` to `local_port`.
/// The appliance has one address, so the peer's address and both ports identify the flow.
pub fn flow_owner(peer_ip: [u8; 4], peer_port: u16, local_port: u16, lcores_count: usize) -> usize {
    let key = u64::from(u32::from_be_bytes(peer_ip)) << 32
        | u64::from(peer_port) << 16
        | u64::from(local_port);
    // splitmix64's finaliser: every input bit moves every output bit, so ports spread evenly.
    let mut mixed = key;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^= mixed >> 31;
    (mixed % lcores_count as u64) as usize
}

/// Where `frame` goes when `lcores_count` lcores share the port and lcore `here` received it.
/// Never panics: short or odd frames stay where they are (smoltcp drops what it cannot parse).
pub fn classify(frame: &[u8], here: usize, lcores_count: usize) -> Destination {
    let read_u16 = |range: std::ops::Range<usize>| {
        frame
            .get(range)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    match read_u16(field::ETHERTYPE) {
        Some(ETHERTYPE_ARP) => return Destination::Everyone,
        Some(ETHERTYPE_IPV4) => {}
        _ => return Destination::Here,
    }
    let Some(&version_ihl) = frame.get(field::IPV4_VERSION_IHL) else {
        return Destination::Here;
    };
    let header_bytes = usize::from(version_ihl & 0x0f) * 4;
    let whole = read_u16(field::IPV4_FRAGMENT).is_some_and(|f| f & IPV4_FRAGMENT_MASK == 0);
    let tcp = frame.get(field::IPV4_PROTOCOL) == Some(&IP_PROTOCOL_TCP);
    if version_ihl >> 4 != 4 || header_bytes < 20 || !whole || !tcp {
        return Destination::Here;
    }
    let tcp_start = field::ETHERNET_HEADER_BYTES + header_bytes;
    let (Some(peer_ip), Some(peer_port), Some(local_port)) = (
        frame.get(field::IPV4_SOURCE),
        read_u16(tcp_start..tcp_start + 2),
        read_u16(tcp_start + 2..tcp_start + 4),
    ) else {
        return Destination::Here;
    };
    let peer_ip = [peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3]];
    match flow_owner(peer_ip, peer_port, local_port, lcores_count) {
        owner if owner == here => Destination::Here,
        owner => Destination::Lcore(owner),
    }
}

/// Turns an ARP request into a reply in place (for the copies other lcores learn from, so they
/// do not answer it too). Other frames are left alone.
pub fn arp_request_to_reply(frame: &mut [u8]) {
    if let Some(operation) = frame.get_mut(field::ARP_OPERATION) {
        if u16::from_be_bytes([operation[0], operation[1]]) == ARP_REQUEST {
            operation.copy_from_slice(&ARP_REPLY.to_be_bytes());
        }
    }
}

/// An mbuf handed from one lcore to another; freed if it is dropped undelivered.
#[derive(Debug)]
pub struct SteeredFrame(NonNull<ffi::rte_mbuf>);

// SAFETY: the frame owns its mbuf exclusively; mbufs may be used and freed on any lcore (their
// mempools are multi-producer/multi-consumer).
unsafe impl Send for SteeredFrame {}

impl SteeredFrame {
    /// # Safety
    /// `mbuf` must be a valid mbuf the caller owns and gives up.
    pub unsafe fn new(mbuf: NonNull<ffi::rte_mbuf>) -> SteeredFrame {
        SteeredFrame(mbuf)
    }

    pub fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.0.as_ptr()
    }

    /// Gives the mbuf back to the caller, who now owns it.
    pub fn into_mbuf(self) -> *mut ffi::rte_mbuf {
        let mbuf = self.0.as_ptr();
        std::mem::forget(self);
        mbuf
    }
}

impl Drop for SteeredFrame {
    fn drop(&mut self) {
        // SAFETY: the frame owns the mbuf; it is freed exactly once, here.
        unsafe { ffi::riptide_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// One lcore's ends of the steering rings: a producer towards every other lcore and a consumer
/// from each of them.
pub struct LcoreSteering {
    index: usize,
    /// Indexed by destination lcore; None at `index`.
    outbound: Vec<Option<rtrb::Producer<SteeredFrame>>>,
    inbound: Vec<rtrb::Consumer<SteeredFrame>>,
}

impl std::fmt::Debug for LcoreSteering {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LcoreSteering")
            .field("index", &self.index)
            .field("lcores_count", &self.outbound.len())
            .finish()
    }
}

impl LcoreSteering {
    /// The steering ends of `lcores_count` lcores (index i for the lcore polling queue i), each
    /// ring holding `ring_frames` frames.
    pub fn mesh(lcores_count: usize, ring_frames: usize) -> Vec<LcoreSteering> {
        let mut lcores: Vec<LcoreSteering> = (0..lcores_count)
            .map(|index| LcoreSteering {
                index,
                outbound: (0..lcores_count).map(|_| None).collect(),
                inbound: Vec::with_capacity(lcores_count.saturating_sub(1)),
            })
            .collect();
        for from in 0..lcores_count {
            for to in (0..lcores_count).filter(|&to| to != from) {
                let (producer, consumer) = rtrb::RingBuffer::new(ring_frames);
                lcores[from].outbound[to] = Some(producer);
                lcores[to].inbound.push(consumer);
            }
        }
        lcores
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn lcores_count(&self) -> usize {
        self.outbound.len()
    }

    /// Hands `frame` to lcore `to`. A full ring gives the frame back (the caller drops it).
    ///
    /// # Errors
    /// The frame, when the ring towards `to` is full or `to` is this lcore or unknown.
    pub fn send(&mut self, to: usize, frame: SteeredFrame) -> Result<(), SteeredFrame> {
        match self.outbound.get_mut(to).and_then(Option::as_mut) {
            Some(producer) => producer
                .push(frame)
                .map_err(|rtrb::PushError::Full(frame)| frame),
            None => Err(frame),
        }
    }

    /// Moves frames other lcores sent here into `out`, at most `out.len()`; returns how many.
    pub fn receive(&mut self, out: &mut [*mut ffi::rte_mbuf]) -> usize {
        let mut count = 0;
        for consumer in &mut self.inbound {
            while count < out.len() {
                let Ok(frame) = consumer.pop() else { break };
                out[count] = frame.into_mbuf();
                count += 1;
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (20-byte header) + the first 4 bytes of TCP, from 10.0.0.1:`peer_port`.
    fn tcp_frame(peer_port: u16, local_port: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 4];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        frame[14] = 0x45;
        frame[23] = IP_PROTOCOL_TCP;
        frame[26..30].copy_from_slice(&[10, 0, 0, 1]);
        frame[34..36].copy_from_slice(&peer_port.to_be_bytes());
        frame[36..38].copy_from_slice(&local_port.to_be_bytes());
        frame
    }

    #[test]
    fn tcp_goes_to_its_flow_owner_from_any_lcore() {
        for peer_port in 40_000..40_064 {
            let frame = tcp_frame(peer_port, 8090);
            let owner = flow_owner([10, 0, 0, 1], peer_port, 8090, 3);
            for here in 0..3 {
                let expected = if here == owner {
                    Destination::Here
                } else {
                    Destination::Lcore(owner)
                };
                assert_eq!(classify(&frame, here, 3), expected);
            }
        }
    }

    #[test]
    fn flows_spread_over_every_lcore() {
        let mut per_lcore = [0u32; 4];
        for peer_port in 32_768..33_768 {
            per_lcore[flow_owner([10, 213, 7, 1], peer_port, 8090, 4)] += 1;
        }
        // 1000 flows over 4 lcores: each gets a fair share (250 expected).
        assert!(
            per_lcore.iter().all(|&count| (180..=320).contains(&count)),
            "{per_lcore:?}"
        );
    }

    #[test]
    fn arp_goes_everywhere_and_other_frames_stay() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        arp[20..22].copy_from_slice(&ARP_REQUEST.to_be_bytes());
        assert_eq!(classify(&arp, 0, 2), Destination::Everyone);
        arp_request_to_reply(&mut arp);
        assert_eq!(&arp[20..22], &ARP_REPLY.to_be_bytes());

        let mut icmp = tcp_frame(1, 2);
        icmp[23] = 1;
        assert_eq!(classify(&icmp, 1, 2), Destination::Here);
        let mut fragment = tcp_frame(1, 2);
        fragment[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
        assert_eq!(classify(&fragment, 1, 2), Destination::Here);
        let mut ipv6 = tcp_frame(1, 2);
        ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(classify(&ipv6, 1, 2), Destination::Here);
    }

    #[test]
    fn truncated_frames_never_panic() {
        let frame = tcp_frame(40_000, 8090);
        for len in 0..frame.len() {
            let destination = classify(&frame[..len], 0, 2);
            if len < frame.len() {
                assert_eq!(destination, Destination::Here, "len {len}");
            }
        }
        let mut bad_ihl = frame.clone();
        bad_ihl[14] = 0x4f;
        assert_eq!(classify(&bad_ihl, 0, 2), Destination::Here);
        let mut short = vec![0u8; 21];
        arp_request_to_reply(&mut short[..5]);
        arp_request_to_reply(&mut short);
    }
}
