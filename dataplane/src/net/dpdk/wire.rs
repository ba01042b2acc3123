//! The frames the device itself looks into — to fill and check TCP checksums (`checksum`), to
//! count retransmissions (`retransmit`), to steer a flow to its lcore (`steer`) — parsed once,
//! with smoltcp's wire views and the checks smoltcp's interface applies to what it receives, so
//! the device and smoltcp agree on which frames are IPv4 TCP.

use std::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket};

/// The TCP segment of an Ethernet frame that carries a whole IPv4 datagram.
pub struct Ipv4Tcp<'a> {
    /// The datagram's header as smoltcp parses it: version 4, consistent lengths, not a
    /// fragment (its own checksum is left to smoltcp).
    pub ip: Ipv4Repr,
    /// The segment, header and payload, with a header length smoltcp accepts.
    pub tcp: TcpPacket<&'a [u8]>,
    /// Where the segment lies in the frame.
    pub range: Range<usize>,
}

/// The IPv4 TCP segment of `frame`; `None` for anything else (ARP, ICMP, other protocols,
/// fragments, truncated or malformed headers: smoltcp judges those itself).
pub fn ipv4_tcp(frame: &[u8]) -> Option<Ipv4Tcp<'_>> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet, &ChecksumCapabilities::ignored()).ok()?;
    if ip.next_header != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(packet.payload()).ok()?;
    let start = EthernetFrame::<&[u8]>::header_len() + usize::from(packet.header_len());
    Some(Ipv4Tcp {
        ip,
        tcp,
        range: start..start + ip.payload_len,
    })
}

/// Frames built with smoltcp's own `emit`, for the tests of the modules that parse them.
#[cfg(test)]
pub mod test_frames {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
        TcpRepr, TcpSeqNumber,
    };

    pub const APPLIANCE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    pub const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    /// One TCP segment between two endpoints.
    pub struct Segment<'a> {
        pub src: (Ipv4Address, u16),
        pub dst: (Ipv4Address, u16),
        pub seq: u32,
        pub control: TcpControl,
        pub payload: &'a [u8],
    }

    /// An Ethernet frame with the IPv4 TCP `segment`, every checksum filled in by smoltcp.
    pub fn tcp(segment: &Segment<'_>) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: segment.src.1,
            dst_port: segment.dst.1,
            control: segment.control,
            seq_number: TcpSeqNumber(segment.seq as i32),
            ack_number: Some(TcpSeqNumber(0x0bad_cafe)),
            window_len: 4321,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: segment.payload,
        };
        let ip = Ipv4Repr {
            src_addr: segment.src.0,
            dst_addr: segment.dst.0,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let ethernet = EthernetRepr {
            src_addr: APPLIANCE_MAC,
            dst_addr: PEER_MAC,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut bytes = vec![0; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        ethernet.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut emitted = TcpPacket::new_unchecked(packet.payload_mut());
        let (src, dst) = (segment.src.0.into(), segment.dst.0.into());
        tcp.emit(&mut emitted, &src, &dst, &caps);
        bytes
    }

    /// An ARP request from the peer for `target`.
    pub fn arp_request(target: Ipv4Address) -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: PEER_MAC,
            source_protocol_addr: Ipv4Address::new(10, 0, 0, 2),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let ethernet = EthernetRepr {
            src_addr: PEER_MAC,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut bytes = vec![0; ethernet.buffer_len() + arp.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        ethernet.emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{arp_request, tcp, Segment};
    use super::*;
    use smoltcp::wire::{Ipv4Address, TcpControl};

    const CLIENT: (Ipv4Address, u16) = (Ipv4Address::new(10, 0, 0, 2), 40_000);
    const APPLIANCE: (Ipv4Address, u16) = (Ipv4Address::new(10, 0, 0, 1), 8090);

    fn segment(payload: &[u8]) -> Vec<u8> {
        tcp(&Segment {
            src: CLIENT,
            dst: APPLIANCE,
            seq: 7,
            control: TcpControl::Psh,
            payload,
        })
    }

    #[test]
    fn finds_the_segment_of_an_ipv4_tcp_frame() {
        let frame = segment(b"hello");
        let found = ipv4_tcp(&frame).expect("IPv4 TCP");
        assert_eq!(found.range, 14 + 20..frame.len());
        assert_eq!((found.tcp.src_port(), found.tcp.dst_port()), (40_000, 8090));
        assert_eq!(found.ip.src_addr, CLIENT.0);
        assert_eq!(found.tcp.payload(), b"hello");
        // Ethernet padding after the datagram is not part of the segment.
        let mut padded = segment(b"");
        padded.resize(60, 0);
        assert_eq!(ipv4_tcp(&padded).expect("IPv4 TCP").range, 34..54);
    }

    #[test]
    fn everything_else_is_left_to_smoltcp() {
        assert!(ipv4_tcp(&arp_request(APPLIANCE.0)).is_none());
        let mut fragment = segment(b"x");
        fragment[14 + 6] = 0x20; // More Fragments
        assert!(ipv4_tcp(&fragment).is_none());
        let mut udp = segment(b"x");
        udp[14 + 9] = 17;
        assert!(ipv4_tcp(&udp).is_none());
        let mut version6 = segment(b"x");
        version6[14] = 0x65;
        assert!(ipv4_tcp(&version6).is_none());
        let mut long_ip_header = segment(b"x");
        long_ip_header[14] = 0x4f; // 60 bytes of IPv4 header: more than the frame has
        assert!(ipv4_tcp(&long_ip_header).is_none());
        let mut short_tcp_header = segment(b"x");
        short_tcp_header[14 + 20 + 12] = 4 << 4; // 16 bytes: below TCP's minimum
        assert!(ipv4_tcp(&short_tcp_header).is_none());
        let frame = segment(b"truncated at every length");
        for len in 0..frame.len() {
            assert!(ipv4_tcp(&frame[..len]).is_none(), "len {len}");
        }
    }
}
