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

use smoltcp::wire::{ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol};

use super::ffi;
use super::wire::ipv4_tcp;

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
    if let Some(found) = ipv4_tcp(frame) {
        let (peer_ip, peer_port) = (found.ip.src_addr.octets(), found.tcp.src_port());
        return match flow_owner(peer_ip, peer_port, found.tcp.dst_port(), lcores_count) {
            owner if owner == here => Destination::Here,
            owner => Destination::Lcore(owner),
        };
    }
    match EthernetFrame::new_checked(frame).map(|ethernet| ethernet.ethertype()) {
        Ok(EthernetProtocol::Arp) => Destination::Everyone,
        _ => Destination::Here,
    }
}

/// Turns an ARP request into a reply in place (for the copies other lcores learn from, so they
/// do not answer it too). Other frames are left alone.
pub fn arp_request_to_reply(frame: &mut [u8]) {
    let Ok(mut ethernet) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if ethernet.ethertype() != EthernetProtocol::Arp {
        return;
    }
    if let Ok(mut arp) = ArpPacket::new_checked(ethernet.payload_mut()) {
        if arp.operation() == ArpOperation::Request {
            arp.set_operation(ArpOperation::Reply);
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
    use super::super::wire::test_frames::{arp_request, tcp, Segment};
    use super::*;
    use smoltcp::wire::{Ipv4Address, TcpControl};

    /// A TCP segment from 10.0.0.1:`peer_port` to the appliance's `local_port`.
    fn tcp_frame(peer_port: u16, local_port: u16) -> Vec<u8> {
        tcp(&Segment {
            src: (Ipv4Address::new(10, 0, 0, 1), peer_port),
            dst: (Ipv4Address::new(10, 0, 0, 9), local_port),
            seq: 1,
            control: TcpControl::Psh,
            payload: b"request",
        })
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
        let mut arp = arp_request(Ipv4Address::new(10, 0, 0, 9));
        assert_eq!(classify(&arp, 0, 2), Destination::Everyone);
        arp_request_to_reply(&mut arp);
        let ethernet = EthernetFrame::new_checked(&arp[..]).unwrap();
        let reply = ArpPacket::new_checked(ethernet.payload()).unwrap();
        assert_eq!(reply.operation(), ArpOperation::Reply);
        // A reply stays a reply; a TCP frame is not touched.
        let before = arp.clone();
        arp_request_to_reply(&mut arp);
        assert_eq!(arp, before);
        let mut frame = tcp_frame(1, 2);
        let untouched = frame.clone();
        arp_request_to_reply(&mut frame);
        assert_eq!(frame, untouched);

        let mut icmp = tcp_frame(1, 2);
        icmp[14 + 9] = 1;
        assert_eq!(classify(&icmp, 1, 2), Destination::Here);
        let mut fragment = tcp_frame(1, 2);
        fragment[14 + 6..14 + 8].copy_from_slice(&0x2000u16.to_be_bytes());
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
            assert_eq!(destination, Destination::Here, "len {len}");
        }
        let mut bad_ihl = frame.clone();
        bad_ihl[14] = 0x4f;
        assert_eq!(classify(&bad_ihl, 0, 2), Destination::Here);
        let arp = arp_request(Ipv4Address::new(10, 0, 0, 9));
        // Up to the end of the ARP operation field the frame is too short to touch.
        let operation_end = 14 + 8;
        for len in 0..arp.len() {
            let mut short = arp[..len].to_vec();
            arp_request_to_reply(&mut short);
            if len < operation_end {
                assert_eq!(short, arp[..len], "len {len}");
            }
        }
    }
}
